/* azure.c - Azure OpenAI and Azure AI Foundry (reference/PROVIDERS.md §b).
 *
 * URL forms, chosen from the endpoint and options:
 *  - classic (default): {endpoint}/openai/deployments/{deployment}/{op}
 *    ?api-version=V, V from the connection or 2024-05-01-preview; hosts
 *    *.openai.azure.com, *.cognitiveservices.azure.com and
 *    *.services.ai.azure.com all take this form;
 *  - v1 (--option api=v1, or an endpoint ending in /openai/v1):
 *    {base}/openai/v1/{op}, deployment name in the body's model,
 *    api-version only when the connection sets one;
 *  - Foundry model inference (an endpoint ending in /models, or
 *    --option api=models): {endpoint}/{op}?api-version=V with the
 *    deployment name as model.
 * Auth: api-key header; --option auth=bearer sends an Entra token as
 * Authorization: Bearer instead. */
#include <stdlib.h>
#include <string.h>

#include "oai_common.h"

#define AZURE_DEFAULT_API_VERSION "2024-05-01-preview"
/* stream_options (include_usage) exists from this api-version on */
#define AZURE_STREAM_USAGE_SINCE "2024-09-01-preview"

enum azure_form { AZ_CLASSIC, AZ_V1, AZ_MODELS };

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	while (n && s[n - 1] == '/')
		n--;
	return n >= m && ascii_ncasecmp(s + n - m, suffix, m) == 0;
}

static enum azure_form azure_form(const struct route *r)
{
	char *api = route_option(r, "api");
	enum azure_form f = AZ_CLASSIC;
	if (api && strcmp(api, "v1") == 0)
		f = AZ_V1;
	else if (api && strcmp(api, "models") == 0)
		f = AZ_MODELS;
	else if (ends_with(r->endpoint, "/openai/v1"))
		f = AZ_V1;
	else if (ends_with(r->endpoint, "/models"))
		f = AZ_MODELS;
	free(api);
	return f;
}

/* api-versions are dates (YYYY-MM-DD[-preview]); "preview"/"latest"/"v1"
 * name the newest surface. */
static int version_at_least(const char *v, const char *since)
{
	if (!v || !(v[0] >= '0' && v[0] <= '9'))
		return 1;
	return strncmp(v, since, 10) >= 0;
}

static int azure_build(struct xlate *x, cJSON *body, const char *credential,
		       struct upstream_req *out, struct proxy_error *err)
{
	const struct route *r = x->route;
	const char *deployment = r->deployment && r->deployment[0] ? r->deployment : r->remote;
	const char *op = x->op == OP_CHAT ? "/chat/completions" : "/embeddings";
	enum azure_form form = azure_form(r);
	const char *version = r->api_version && r->api_version[0] ? r->api_version : NULL;
	struct oai_state *st;

	url_append_base(&out->url, r->endpoint);
	if (form == AZ_CLASSIC) {
		if (!ends_with(r->endpoint, "/openai"))
			buf_puts(&out->url, "/openai");
		buf_puts(&out->url, "/deployments/");
		url_append_segment(&out->url, deployment);
		buf_puts(&out->url, op);
		if (!version)
			version = AZURE_DEFAULT_API_VERSION;
	} else if (form == AZ_V1) {
		if (!ends_with(r->endpoint, "/openai/v1"))
			buf_puts(&out->url, "/openai/v1");
		buf_puts(&out->url, op);
	} else {
		buf_puts(&out->url, op);
		if (!version)
			version = AZURE_DEFAULT_API_VERSION;
	}
	if (version) {
		buf_puts(&out->url, "?api-version=");
		url_append_segment(&out->url, version);
	}

	char *auth = route_option(r, "auth");
	if (auth && strcmp(auth, "bearer") == 0) {
		out->headers = header_add_bearer(out->headers, credential);
	} else {
		out->headers = header_add(out->headers, "api-key", credential);
	}
	free(auth);

	x->state = xcalloc(1, sizeof(struct oai_state));
	st = x->state;
	st->azure = 1;
	int allow_usage = form == AZ_V1 || version_at_least(version, AZURE_STREAM_USAGE_SINCE);
	return oai_prepare_body(x, body, form == AZ_CLASSIC ? r->remote : deployment, allow_usage,
				out, err);
}

const struct adapter adapter_azure = {
	.name = "azure",
	.build = azure_build,
	.response = oai_response,
	.stream_event = oai_stream_event,
	.stream_end = oai_stream_end,
	.error = oai_error,
	.free_state = oai_free_state,
};
