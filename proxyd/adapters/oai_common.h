/* oai_common.h - what the OpenAI-shaped adapters (openai, azure) share:
 * the body rewrite, the answer rewrite, stream filtering and error mapping.
 * Provider specifics (URLs, auth) stay in openai.c and azure.c. */
#ifndef LLMPROXY_OAI_COMMON_H
#define LLMPROXY_OAI_COMMON_H

#include "adapter.h"

struct oai_state {
	int injected_usage;     /* we added stream_options.include_usage */
	int azure;              /* filter Azure's empty-choices / filter chunks */
	int64_t completion_chars; /* content seen, to estimate usage if none came */
	char id[96];
	int64_t created;
};

/* Sets model to remote and, for streams, asks for usage when allow_usage
 * (the upstream accepts stream_options) and the client did not.  Returns
 * 0 or -1 with err (client mistakes OpenAI would reject: 400). */
int oai_prepare_body(struct xlate *x, cJSON *body, const char *remote, int allow_usage,
		     struct upstream_req *out, struct proxy_error *err);
int oai_response(struct xlate *x, const char *body, size_t len, struct buf *out,
		 struct proxy_error *err);
int oai_stream_event(struct xlate *x, const char *data, size_t len, struct buf *out,
		     struct proxy_error *err);
int oai_stream_end(struct xlate *x, struct buf *out);
void oai_error(struct xlate *x, long status, const char *body, size_t len,
	       struct proxy_error *out);
void oai_free_state(struct xlate *x);

#endif
