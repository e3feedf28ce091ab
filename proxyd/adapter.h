/* adapter.h - the one interface every provider family implements
 * (DESIGN.md §5).  The request path (handler.c) never names a provider: it
 * picks an adapter with adapter_for(route->provider) and calls these. */
#ifndef LLMPROXY_ADAPTER_H
#define LLMPROXY_ADAPTER_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdint.h>

#include "store.h"
#include "util.h"
#include "vault.h"

enum api_op { OP_CHAT = 0, OP_EMBEDDINGS = 1 };

/* A client-visible error; handler.c renders it OpenAI-shaped:
 * {"error":{"message","type","param","code"}}.  type/code/param point to
 * static strings (or NULL for JSON null). */
struct proxy_error {
	int status;
	const char *type;
	const char *code;
	const char *param;
	char message[512];
};
void proxy_error_set(struct proxy_error *e, int status, const char *type, const char *code,
		     const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The upstream request an adapter builds.  Header lines are "Name: value";
 * the request path wipes and frees them (they may carry the credential). */
struct upstream_req {
	struct buf url;
	struct curl_slist *headers;
	struct buf body;
	int is_stream; /* the upstream answer will be SSE */
};

struct usage {
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int have; /* provider reported usage (else the path estimates) */
};

/* Per-request translation context.  Owned by the request path; the adapter
 * keeps its own state in x->state and frees it in free_state. */
struct xlate {
	const struct adapter *ad;
	enum api_op op;
	const struct route *route;
	const char *alias;        /* what the client asked for, shown back as model */
	int stream;               /* client asked stream: true */
	int client_wants_usage;   /* client asked stream_options.include_usage */
	const unsigned char *master; /* master key, for adapters that cache secrets */
	int64_t prompt_estimate;  /* the path's estimate of the prompt's tokens */
	struct usage usage;       /* filled by response / stream_event */
	int done;                 /* stream reached its proper end */
	void *state;
};

struct adapter {
	const char *name;
	/* Builds url, headers and body from the client's JSON body (which the
	 * adapter may modify).  credential is the clear provider secret.
	 * Returns 0, or -1 with err filled (4xx for untranslatable input,
	 * 502 for upstream auth failures such as a token exchange). */
	int (*build)(struct xlate *x, cJSON *body, const char *credential,
		     struct upstream_req *out, struct proxy_error *err);
	/* A whole 2xx upstream body -> OpenAI JSON appended to out; sets
	 * x->usage.  -1 with err filled when the body is not understood (502). */
	int (*response)(struct xlate *x, const char *body, size_t len, struct buf *out,
			struct proxy_error *err);
	/* One upstream SSE event (its data, "data:" lines joined) -> zero or
	 * more complete OpenAI SSE events ("data: ...\n\n") appended to out.
	 * Sets x->done when the event ends the stream properly.  -1 when the
	 * event is an upstream error: err filled, the path emits an SSE error. */
	int (*stream_event)(struct xlate *x, const char *data, size_t len, struct buf *out,
			    struct proxy_error *err);
	/* The upstream body ended.  Appends closing events (a synthesised
	 * finish chunk, usage chunk, "data: [DONE]\n\n") when the stream ended
	 * properly; returns -1 when it ended too early (the path then emits an
	 * SSE error event instead of [DONE]). */
	int (*stream_end)(struct xlate *x, struct buf *out);
	/* A non-2xx upstream answer -> client error.  Keeps the upstream's
	 * message for 4xx, minus anything secret; never echoes the credential. */
	void (*error)(struct xlate *x, long status, const char *body, size_t len,
		      struct proxy_error *out);
	void (*free_state)(struct xlate *x);
};

/* The adapter for a connection's provider string, or NULL. */
const struct adapter *adapter_for(const char *provider);

extern const struct adapter adapter_openai;
extern const struct adapter adapter_azure;
extern const struct adapter adapter_google;

/* Shared helpers for adapters (adapter.c). */
/* Appends "data: <json>\n\n" for a cJSON object. */
void sse_emit_json(struct buf *out, const cJSON *obj);
void sse_emit_done(struct buf *out);
/* Percent-encodes s for use as one URL path segment. */
void url_append_segment(struct buf *url, const char *s);
/* Appends a header line "name: value" to the list. */
struct curl_slist *header_add(struct curl_slist *h, const char *name, const char *value);
/* Appends "Authorization: Bearer <token>" (no copy of the token is left). */
struct curl_slist *header_add_bearer(struct curl_slist *h, const char *token);
/* Endpoint without trailing slashes, appended to url. */
void url_append_base(struct buf *url, const char *endpoint);
/* The string option key from the route's options JSON, or NULL (malloc'd). */
char *route_option(const struct route *r, const char *key);
/* Estimate of the prompt's tokens (chars / 4) for reservations and for
 * providers that report no usage. */
int64_t estimate_tokens_json(const cJSON *v);
/* Masks anything in s that looks like a credential (sk-..., AIza..., AQ...,
 * ya29..., vk-..., Bearer tokens, long base64 runs) in place. */
void scrub_secrets(char *s);
/* Overwrites every occurrence of secret (when 8 bytes or longer) in s. */
void scrub_exact(char *s, const char *secret);

#endif
