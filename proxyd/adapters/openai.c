/* openai.c - OpenAI and any OpenAI-compatible server (vLLM, Bedrock's
 * /openai/v1, ...): Bearer auth, body passed through with the model
 * replaced by the remote name.
 *
 * URL rule: an endpoint with no path gets "/v1" (https://api.openai.com ->
 * https://api.openai.com/v1/chat/completions); an endpoint that has a path
 * is taken as the API base as given (…/openai/v1 -> …/openai/v1/chat/...).
 * Option stream_usage=false stops the proxy from adding
 * stream_options.include_usage for servers that reject it. */
#include <stdlib.h>
#include <string.h>

#include "oai_common.h"

/* Whether the endpoint URL has a path beyond "/". */
static int has_path(const char *endpoint)
{
	const char *p = strstr(endpoint, "://");
	p = p ? p + 3 : endpoint;
	p = strchr(p, '/');
	if (!p)
		return 0;
	while (*p == '/')
		p++;
	return *p != 0;
}

static int openai_build(struct xlate *x, cJSON *body, const char *credential,
			struct upstream_req *out, struct proxy_error *err)
{
	const struct route *r = x->route;
	url_append_base(&out->url, r->endpoint);
	if (!has_path(r->endpoint))
		buf_puts(&out->url, "/v1");
	buf_puts(&out->url, x->op == OP_CHAT ? "/chat/completions" : "/embeddings");

	out->headers = header_add_bearer(out->headers, credential);
	char *org = route_option(r, "organization");
	if (org) {
		out->headers = header_add(out->headers, "OpenAI-Organization", org);
		free(org);
	}
	char *proj = route_option(r, "project");
	if (proj) {
		out->headers = header_add(out->headers, "OpenAI-Project", proj);
		free(proj);
	}
	char *su = route_option(r, "stream_usage");
	int allow_usage = !(su && (strcmp(su, "false") == 0 || strcmp(su, "0") == 0));
	free(su);
	return oai_prepare_body(x, body, r->remote, allow_usage, out, err);
}

const struct adapter adapter_openai = {
	.name = "openai",
	.build = openai_build,
	.response = oai_response,
	.stream_event = oai_stream_event,
	.stream_end = oai_stream_end,
	.error = oai_error,
	.free_state = oai_free_state,
};
