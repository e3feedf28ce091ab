/* test_oai.c - the OpenAI and Azure adapters: upstream URL, auth header
 * and body for each URL form; answer rewriting; stream filtering (usage
 * chunk hidden, Azure's empty-choices and filter chunks); error mapping. */
#include <stdlib.h>

#include "adapter.h"
#include "t.h"

static struct route mkroute(const char *provider, const char *endpoint, const char *deployment,
			    const char *api_version, const char *options)
{
	struct route r;
	memset(&r, 0, sizeof r);
	r.asg_id = "asg-1";
	r.alias = "gpt-4";
	r.remote = "gpt-4o-2024";
	r.deployment = (char *)deployment;
	r.kind = "chat";
	r.conn_id = "conn-1";
	r.conn_name = "Main";
	r.provider = (char *)provider;
	r.endpoint = (char *)endpoint;
	r.api_version = (char *)api_version;
	r.options = (char *)(options ? options : "{}");
	return r;
}

struct built {
	char url[512];
	char headers[512];
	char body[1024];
	int rc;
};

static struct built build(const struct adapter *ad, struct route *r, const char *body_json,
			  int stream, int op, struct xlate *x)
{
	struct built b;
	memset(&b, 0, sizeof b);
	memset(x, 0, sizeof *x);
	x->ad = ad;
	x->op = op;
	x->route = r;
	x->alias = "gpt-4";
	x->stream = stream;
	cJSON *body = cJSON_Parse(body_json);
	const cJSON *so = cJSON_GetObjectItem(body, "stream_options");
	x->client_wants_usage = cJSON_IsTrue(cJSON_GetObjectItem(so, "include_usage"));
	struct upstream_req ur;
	memset(&ur, 0, sizeof ur);
	buf_init(&ur.url);
	buf_init(&ur.body);
	struct proxy_error err;
	b.rc = ad->build(x, body, "sk-secret-credential-1234", &ur, &err);
	snprintf(b.url, sizeof b.url, "%s", ur.url.data);
	snprintf(b.body, sizeof b.body, "%s", ur.body.data);
	size_t off = 0;
	for (struct curl_slist *h = ur.headers; h; h = h->next)
		off += (size_t)snprintf(b.headers + off, sizeof b.headers - off, "%s\n", h->data);
	curl_slist_free_all(ur.headers);
	buf_free(&ur.url);
	buf_free(&ur.body);
	cJSON_Delete(body);
	return b;
}

static char *stream_through(struct xlate *x, const char **events, int n, int *end_rc)
{
	struct buf out;
	buf_init(&out);
	struct proxy_error err;
	for (int i = 0; i < n; i++)
		x->ad->stream_event(x, events[i], strlen(events[i]), &out, &err);
	*end_rc = x->ad->stream_end(x, &out);
	return out.data;
}

int main(void)
{
	struct xlate x;
	struct built b;
	const char *chat = "{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.2}";

	T_BEGIN("oai-1.1 openai base endpoint gets /v1");
	struct route r = mkroute("openai", "https://api.openai.com", NULL, NULL, NULL);
	b = build(&adapter_openai, &r, chat, 0, OP_CHAT, &x);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "https://api.openai.com/v1/chat/completions");
	CHECK(strstr(b.headers, "Authorization: Bearer sk-secret-credential-1234\n") != NULL);
	CHECK(strstr(b.body, "\"model\":\"gpt-4o-2024\"") != NULL);
	CHECK(strstr(b.body, "\"temperature\":0.2") != NULL);
	CHECK(strstr(b.body, "stream_options") == NULL);
	adapter_openai.free_state(&x);

	T_BEGIN("oai-1.2 endpoint with a path is the API base (Bedrock)");
	r = mkroute("openai", "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/", NULL, NULL, NULL);
	b = build(&adapter_openai, &r, chat, 0, OP_EMBEDDINGS, &x);
	CHECK_STR(b.url, "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/embeddings");
	adapter_openai.free_state(&x);

	T_BEGIN("oai-1.3 stream asks for usage when the client did not");
	r = mkroute("openai", "http://127.0.0.1:9", NULL, NULL, NULL);
	b = build(&adapter_openai, &r,
		  "{\"model\":\"gpt-4\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		  1, OP_CHAT, &x);
	CHECK(strstr(b.body, "\"stream_options\":{\"include_usage\":true}") != NULL);
	{
		const char *ev[] = {
			"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}",
			"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}",
			"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}",
			"[DONE]"};
		int end_rc;
		char *out = stream_through(&x, ev, 4, &end_rc);
		CHECK_INT(end_rc, 0);
		CHECK(strstr(out, "\"usage\"") == NULL);              /* hidden */
		CHECK(strstr(out, "\"model\":\"gpt-4\"") != NULL);     /* alias shown */
		CHECK(strstr(out, "gpt-4o-2024") == NULL);
		CHECK(strstr(out, "data: [DONE]\n\n") != NULL);
		CHECK_INT(x.usage.prompt_tokens, 9);
		CHECK_INT(x.usage.completion_tokens, 2);
		free(out);
	}
	adapter_openai.free_state(&x);

	T_BEGIN("oai-1.4 usage chunk kept when the client asked");
	b = build(&adapter_openai, &r,
		  "{\"model\":\"gpt-4\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}",
		  1, OP_CHAT, &x);
	{
		const char *ev[] = {
			"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}",
			"[DONE]"};
		int end_rc;
		char *out = stream_through(&x, ev, 2, &end_rc);
		CHECK(strstr(out, "\"completion_tokens\":4") != NULL);
		free(out);
	}
	adapter_openai.free_state(&x);

	T_BEGIN("oai-1.5 a stream without [DONE] is broken");
	b = build(&adapter_openai, &r, "{\"model\":\"gpt-4\",\"stream\":true,\"messages\":[]}", 1, OP_CHAT, &x);
	{
		const char *ev[] = {"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}"};
		int end_rc;
		char *out = stream_through(&x, ev, 1, &end_rc);
		CHECK_INT(end_rc, -1);
		CHECK(strstr(out, "[DONE]") == NULL);
		free(out);
	}
	adapter_openai.free_state(&x);

	T_BEGIN("oai-1.6 stream_usage=false leaves the body alone");
	r = mkroute("openai", "http://127.0.0.1:9/v1", NULL, NULL, "{\"stream_usage\":\"false\"}");
	b = build(&adapter_openai, &r, "{\"model\":\"gpt-4\",\"stream\":true,\"messages\":[]}", 1, OP_CHAT, &x);
	CHECK(strstr(b.body, "stream_options") == NULL);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1/chat/completions");
	adapter_openai.free_state(&x);

	T_BEGIN("oai-2.1 non-stream answer: model is the alias, usage taken");
	r = mkroute("openai", "https://api.openai.com", NULL, NULL, NULL);
	b = build(&adapter_openai, &r, chat, 0, OP_CHAT, &x);
	{
		const char *ans = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}";
		struct buf out;
		struct proxy_error err;
		buf_init(&out);
		CHECK_INT(adapter_openai.response(&x, ans, strlen(ans), &out, &err), 0);
		CHECK(strstr(out.data, "\"model\":\"gpt-4\"") != NULL);
		CHECK(strstr(out.data, "\"content\":\"Hi\"") != NULL);
		CHECK_INT(x.usage.prompt_tokens, 19);
		CHECK_INT(x.usage.completion_tokens, 10);
		buf_reset(&out);
		CHECK_INT(adapter_openai.response(&x, "<html>", 6, &out, &err), -1);
		CHECK_INT(err.status, 502);
		buf_free(&out);
	}

	T_BEGIN("oai-3.1 upstream 401 is the proxy's credential, not the client's key");
	{
		struct proxy_error e;
		const char *body = "{\"error\":{\"message\":\"Incorrect API key provided: sk-secr***1234.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
		adapter_openai.error(&x, 401, body, strlen(body), &e);
		CHECK_INT(e.status, 502);
		CHECK_STR(e.code, "upstream_auth_failed");
		CHECK(strstr(e.message, "sk-") == NULL);
		CHECK(strstr(e.message, "Main") != NULL);
	}
	T_BEGIN("oai-3.2 upstream 429 keeps type and code");
	{
		struct proxy_error e;
		const char *body = "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}";
		adapter_openai.error(&x, 429, body, strlen(body), &e);
		CHECK_INT(e.status, 429);
		CHECK_STR(e.type, "insufficient_quota");
		CHECK_STR(e.code, "insufficient_quota");
	}
	T_BEGIN("oai-3.3 upstream 400 keeps message and param");
	{
		struct proxy_error e;
		const char *body = "{\"error\":{\"message\":\"Unsupported parameter: 'max_tokens'\",\"type\":\"invalid_request_error\",\"param\":\"max_tokens\",\"code\":\"unsupported_parameter\"}}";
		adapter_openai.error(&x, 400, body, strlen(body), &e);
		CHECK_INT(e.status, 400);
		CHECK_STR(e.param, "max_tokens");
		CHECK(strstr(e.message, "Unsupported parameter") != NULL);
	}
	T_BEGIN("oai-3.4 upstream 5xx becomes 502; non-JSON bodies too");
	{
		struct proxy_error e;
		adapter_openai.error(&x, 503, "<html>busy</html>", 17, &e);
		CHECK_INT(e.status, 502);
		CHECK_STR(e.type, "upstream_error");
	}
	adapter_openai.free_state(&x);

	T_BEGIN("az-1.1 classic URL with the default api-version and api-key header");
	r = mkroute("azure", "https://my-company.openai.azure.com/", "deployment-name-in-azure", NULL, NULL);
	b = build(&adapter_azure, &r, chat, 0, OP_CHAT, &x);
	CHECK_STR(b.url, "https://my-company.openai.azure.com/openai/deployments/deployment-name-in-azure/chat/completions?api-version=2024-05-01-preview");
	CHECK(strstr(b.headers, "api-key: sk-secret-credential-1234\n") != NULL);
	CHECK(strstr(b.headers, "Authorization") == NULL);
	adapter_azure.free_state(&x);

	T_BEGIN("az-1.2 the connection's api-version; deployment escaped");
	r = mkroute("azure", "https://x.cognitiveservices.azure.com", "dep/../x y", "2024-10-21", NULL);
	b = build(&adapter_azure, &r, chat, 0, OP_EMBEDDINGS, &x);
	CHECK_STR(b.url, "https://x.cognitiveservices.azure.com/openai/deployments/dep%2F..%2Fx%20y/embeddings?api-version=2024-10-21");
	adapter_azure.free_state(&x);

	T_BEGIN("az-1.3 v1 form: deployment in the body, no api-version");
	r = mkroute("azure", "https://r.openai.azure.com/openai/v1", "dep1", NULL, NULL);
	b = build(&adapter_azure, &r, chat, 0, OP_CHAT, &x);
	CHECK_STR(b.url, "https://r.openai.azure.com/openai/v1/chat/completions");
	CHECK(strstr(b.body, "\"model\":\"dep1\"") != NULL);
	adapter_azure.free_state(&x);
	r = mkroute("azure", "https://r.openai.azure.com", "dep1", NULL, "{\"api\":\"v1\",\"auth\":\"bearer\"}");
	b = build(&adapter_azure, &r, chat, 0, OP_CHAT, &x);
	CHECK_STR(b.url, "https://r.openai.azure.com/openai/v1/chat/completions");
	CHECK(strstr(b.headers, "Authorization: Bearer sk-secret-credential-1234\n") != NULL);
	adapter_azure.free_state(&x);

	T_BEGIN("az-1.4 Foundry model inference form");
	r = mkroute("azure", "https://r.services.ai.azure.com/models", "mistral-large", NULL, NULL);
	b = build(&adapter_azure, &r, chat, 0, OP_CHAT, &x);
	CHECK_STR(b.url, "https://r.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview");
	CHECK(strstr(b.body, "\"model\":\"mistral-large\"") != NULL);
	adapter_azure.free_state(&x);

	T_BEGIN("az-2.1 old api-version: no stream_options, usage estimated");
	r = mkroute("azure", "https://my.openai.azure.com", "dep", NULL, NULL);
	b = build(&adapter_azure, &r,
		  "{\"model\":\"gpt-4\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}",
		  1, OP_CHAT, &x);
	CHECK(strstr(b.body, "stream_options") == NULL);
	x.prompt_estimate = 5;
	{
		const char *ev[] = {
			"{\"id\":\"\",\"choices\":[],\"created\":0,\"model\":\"\",\"object\":\"\",\"system_fingerprint\":null,\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}",
			"{\"id\":\"c9\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello there\"},\"finish_reason\":null}]}",
			"{\"id\":\"\",\"choices\":[{\"finish_reason\":null,\"index\":0,\"content_filter_offsets\":{\"check_offset\":1},\"content_filter_results\":{}}],\"created\":0,\"model\":\"\",\"object\":\"\"}",
			"{\"id\":\"c9\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
			"[DONE]"};
		int end_rc;
		char *out = stream_through(&x, ev, 5, &end_rc);
		CHECK_INT(end_rc, 0);
		CHECK(strstr(out, "prompt_filter_results") == NULL);
		CHECK(strstr(out, "content_filter_offsets") == NULL);
		CHECK(strstr(out, "\"id\":\"\"") == NULL);
		CHECK(strstr(out, "\"object\":\"\"") == NULL);
		CHECK(strstr(out, "Hello there") != NULL);
		CHECK(strstr(out, "\"finish_reason\":\"stop\"") != NULL);
		/* the client asked for usage: an estimate, since Azure could not say */
		CHECK(strstr(out, "\"choices\":[],\"usage\":{\"prompt_tokens\":5,") != NULL);
		CHECK_INT(x.usage.completion_tokens, 3);
		free(out);
	}
	adapter_azure.free_state(&x);

	T_BEGIN("az-2.2 new api-version asks for usage");
	r = mkroute("azure", "https://my.openai.azure.com", "dep", "2024-10-21", NULL);
	b = build(&adapter_azure, &r, "{\"model\":\"gpt-4\",\"stream\":true,\"messages\":[]}", 1, OP_CHAT, &x);
	CHECK(strstr(b.body, "\"include_usage\":true") != NULL);
	adapter_azure.free_state(&x);

	T_BEGIN("az-3.1 Azure error codes are strings; content filter kept");
	{
		struct proxy_error e;
		const char *body = "{\"error\":{\"message\":\"The response was filtered\",\"type\":null,\"param\":\"prompt\",\"code\":\"content_filter\",\"status\":400}}";
		adapter_azure.error(&x, 400, body, strlen(body), &e);
		CHECK_INT(e.status, 400);
		CHECK_STR(e.code, "content_filter");
		CHECK_STR(e.type, "invalid_request_error");
		const char *nf = "{\"error\":{\"code\":\"DeploymentNotFound\",\"message\":\"The API deployment for this resource does not exist.\"}}";
		adapter_azure.error(&x, 404, nf, strlen(nf), &e);
		CHECK_INT(e.status, 404);
		CHECK_STR(e.code, "DeploymentNotFound");
	}

	T_BEGIN("scrub-1.1 credentials masked, prose and URLs kept");
	{
		char m[] = "Incorrect API key provided: sk-proj-abcdefgh1234. See https://platform.openai.com/account/api-keys now";
		scrub_secrets(m);
		CHECK(strstr(m, "abcdefgh") == NULL);
		CHECK(strstr(m, "https://platform.openai.com/account/api-keys") != NULL);
		CHECK(strstr(m, "Incorrect API key provided") != NULL);
		char g[] = "key AIzaSyA1234567890abcdefg and ya29.a0AfB_token-xyz and vk-front-1234";
		scrub_secrets(g);
		CHECK(strstr(g, "1234567890") == NULL);
		CHECK(strstr(g, "a0AfB") == NULL);
		CHECK(strstr(g, "front-1234") == NULL);
	}
	T_BEGIN("scrub-1.2 the exact credential is struck wherever it appears");
	{
		char m[] = "{\"error\":{\"message\":\"key q7Zk2-custom-secret-9 is not valid; q7Zk2-custom-secret-9\"}}";
		scrub_exact(m, "q7Zk2-custom-secret-9");
		CHECK(strstr(m, "q7Zk2") == NULL);
		CHECK(strstr(m, "is not valid") != NULL);
		char short_one[] = "abc abc";
		scrub_exact(short_one, "abc"); /* too short to be a credential: left */
		CHECK_STR(short_one, "abc abc");
		scrub_exact(NULL, "whatever-secret");
	}
	return T_END();
}
