/* test_gemini.c - the Google adapter: fixture tests of the OpenAI <->
 * Gemini translation (tests/fixtures/gemini/NAME.*), URL/auth selection,
 * error mapping, the service-account JWT and the shared token cache
 * (against a token server forked on loopback).
 *
 * Fixture files for NAME:
 *   NAME.meta.json             optional: {"flavour":"vertex", "op":"embeddings",
 *                              "remote", "stream", "want_usage", "truncated",
 *                              "stream_error":{"status","code"}}
 *   NAME.openai-request.json   what the client sends
 *   NAME.gemini-request.json   the exact upstream body expected
 *   NAME.expect-error.json     instead: {"status", "param"?, "message_contains"?}
 *   NAME.gemini-response.json  / .sse   the upstream answer
 *   NAME.openai-response.json  / .sse   what the client must see
 * Comparison: both sides parsed, "created" keys removed, and a string in
 * the expected file containing '*' is a glob ('*' = any run of characters)
 * for generated ids (e.g. "call_*__thought__U0lH"); then cJSON_Compare. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adapters/gemini_xlate.h"
#include "adapters/google_auth.h"
#include "sse.h"
#include "t.h"
#include "vault.h"

static char fixdir[512] = "tests/fixtures/gemini";

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	if (len)
		*len = b.len;
	if (!b.data)
		return xstrdup("");
	return b.data;
}

static char *fixture(const char *name, const char *kind, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s.%s", fixdir, name, kind);
	return slurp(path, len);
}

static cJSON *fixture_json(const char *name, const char *kind)
{
	char *s = fixture(name, kind, NULL);
	if (!s)
		return NULL;
	cJSON *j = cJSON_Parse(s);
	if (!j)
		printf("FAIL %s: %s.%s is not JSON\n", name, name, kind);
	free(s);
	return j;
}

static int glob_match(const char *pat, const char *s)
{
	if (!*pat)
		return !*s;
	if (*pat == '*') {
		for (;; s++) {
			if (glob_match(pat + 1, s))
				return 1;
			if (!*s)
				return 0;
		}
	}
	return *s && *pat == *s && glob_match(pat + 1, s + 1);
}

/* Removes "created" and copies expected glob strings onto matching actual
 * strings, so cJSON_Compare sees equal values. */
static void canon(cJSON *act, const cJSON *exp)
{
	if (cJSON_IsObject(act)) {
		cJSON_DeleteItemFromObjectCaseSensitive(act, "created");
		cJSON *c;
		cJSON_ArrayForEach(c, act)
		{
			const cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, c->string);
			if (cJSON_IsString(c) && cJSON_IsString(e) && strchr(e->valuestring, '*') &&
			    glob_match(e->valuestring, c->valuestring))
				cJSON_SetValuestring(c, e->valuestring);
			else if (e)
				canon(c, e);
		}
	} else if (cJSON_IsArray(act)) {
		int i = 0;
		cJSON *c;
		cJSON_ArrayForEach(c, act)
		{
			const cJSON *e = cJSON_GetArrayItem(exp, i++);
			if (cJSON_IsString(c) && cJSON_IsString(e) && strchr(e->valuestring, '*') &&
			    glob_match(e->valuestring, c->valuestring))
				cJSON_SetValuestring(c, e->valuestring);
			else if (e)
				canon(c, e);
		}
	}
}

static void strip_created(cJSON *j)
{
	if (cJSON_IsObject(j))
		cJSON_DeleteItemFromObjectCaseSensitive(j, "created");
	cJSON *c;
	if (cJSON_IsObject(j) || cJSON_IsArray(j))
		cJSON_ArrayForEach(c, j) strip_created(c);
}

/* CHECK that actual equals expected under the rules above. */
static void check_json(const char *what, cJSON *act, cJSON *exp)
{
	strip_created(exp);
	canon(act, exp);
	int same = act && exp && cJSON_Compare(act, exp, 1);
	CHECK(same);
	if (!same) {
		char *a = act ? cJSON_PrintUnformatted(act) : NULL;
		char *e = exp ? cJSON_PrintUnformatted(exp) : NULL;
		printf("  %s %s\n  got:  %s\n  want: %s\n", t_name, what, a ? a : "(null)", e ? e : "(null)");
		cJSON_free(a);
		cJSON_free(e);
	}
}

struct events {
	char **ev;
	size_t n;
};

static int collect_event(void *ctx, const char *event, const char *data, size_t len)
{
	(void)event;
	struct events *e = ctx;
	e->ev = xreallocarray(e->ev, e->n + 1, sizeof *e->ev);
	e->ev[e->n++] = xstrndup(data, len);
	return 0;
}

static void split_sse(const char *text, size_t len, struct events *out, size_t chunk)
{
	struct sse_parser p;
	sse_init(&p, SSE_MAX_EVENT_BYTES);
	for (size_t off = 0; off < len; off += chunk) /* split anywhere */
		sse_feed(&p, text + off, len - off < chunk ? len - off : chunk, collect_event, out);
	sse_finish(&p, collect_event, out);
	sse_free(&p);
}

static void free_events(struct events *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->ev[i]);
	free(e->ev);
	e->ev = NULL;
	e->n = 0;
}

static void run_fixture(const char *name)
{
	T_BEGIN(name);
	cJSON *meta = fixture_json(name, "meta.json");
	const cJSON *fv = cJSON_GetObjectItemCaseSensitive(meta, "flavour");
	enum gem_flavour fl = cJSON_IsString(fv) && strcmp(fv->valuestring, "vertex") == 0 ? GEM_VERTEX
											 : GEM_AISTUDIO;
	const cJSON *opv = cJSON_GetObjectItemCaseSensitive(meta, "op");
	int embed = cJSON_IsString(opv) && strcmp(opv->valuestring, "embeddings") == 0;
	const cJSON *rv = cJSON_GetObjectItemCaseSensitive(meta, "remote");
	const char *remote = cJSON_IsString(rv) ? rv->valuestring : "gemini-2.5-flash";
	int stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "stream"));
	int want_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "want_usage"));

	cJSON *oreq = fixture_json(name, "openai-request.json");
	CHECK(oreq != NULL);
	cJSON *greq = NULL;
	struct proxy_error err = {0};
	int b64 = 0;
	int64_t est = 0;
	int rc = embed ? gem_embed_request(oreq, fl, remote, &greq, &b64, &est, &err)
		       : gem_chat_request(oreq, fl, &greq, &err);
	cJSON *experr = fixture_json(name, "expect-error.json");
	if (experr) {
		CHECK_INT(rc, -1);
		CHECK_INT(err.status, cJSON_GetObjectItemCaseSensitive(experr, "status")->valueint);
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(experr, "param");
		if (cJSON_IsString(p))
			CHECK_STR(err.param, p->valuestring);
		const cJSON *mc = cJSON_GetObjectItemCaseSensitive(experr, "message_contains");
		if (cJSON_IsString(mc)) {
			CHECK(strstr(err.message, mc->valuestring) != NULL);
			if (!strstr(err.message, mc->valuestring))
				printf("  message: %s\n", err.message);
		}
		cJSON_Delete(experr);
		goto out;
	}
	CHECK_INT(rc, 0);
	if (rc < 0)
		printf("  error: %d %s\n", err.status, err.message);
	cJSON *want = fixture_json(name, "gemini-request.json");
	if (want) {
		check_json("request", greq, want);
		cJSON_Delete(want);
	}

	/* non-stream answer */
	size_t glen = 0;
	char *gres = fixture(name, "gemini-response.json", &glen);
	if (gres) {
		cJSON *gj = cJSON_Parse(gres);
		cJSON *ores = NULL;
		struct usage u = {0};
		rc = embed ? gem_embed_response(gj, fl, "gem", b64, est, &ores, &u, &err)
			   : gem_chat_response(gj, "gem", 1700000000, &ores, &u, &err);
		CHECK_INT(rc, 0);
		cJSON *exp = fixture_json(name, "openai-response.json");
		check_json("response", ores, exp);
		/* x->usage mirrors the usage object */
		const cJSON *us = cJSON_GetObjectItemCaseSensitive(exp, "usage");
		if (us && !embed) {
			CHECK_INT(u.have, 1);
			CHECK_INT(u.prompt_tokens, cJSON_GetObjectItemCaseSensitive(us, "prompt_tokens")->valueint);
			CHECK_INT(u.completion_tokens,
				  cJSON_GetObjectItemCaseSensitive(us, "completion_tokens")->valueint);
		}
		cJSON_Delete(exp);
		cJSON_Delete(ores);
		cJSON_Delete(gj);
		free(gres);
	}

	/* stream answer: fed in 7-byte pieces through the real splitter */
	char *gsse = fixture(name, "gemini-response.sse", &glen);
	if (gsse) {
		CHECK(stream);
		struct events in = {0}, outev = {0};
		split_sse(gsse, glen, &in, 7);
		struct gem_stream *st = gem_stream_new("gem", 1700000000, want_usage);
		struct buf out;
		buf_init(&out);
		struct usage u = {0};
		int failed = 0;
		for (size_t i = 0; i < in.n && !failed; i++) {
			int r = gem_stream_event(st, in.ev[i], strlen(in.ev[i]), &out, &u, &err);
			if (r < 0)
				failed = 1;
		}
		const cJSON *se = cJSON_GetObjectItemCaseSensitive(meta, "stream_error");
		if (se) {
			CHECK_INT(failed, 1);
			CHECK_INT(err.status, cJSON_GetObjectItemCaseSensitive(se, "status")->valueint);
			CHECK_STR(err.code, cJSON_GetObjectItemCaseSensitive(se, "code")->valuestring);
		} else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(meta, "truncated"))) {
			size_t before = out.len;
			CHECK_INT(gem_stream_end(st, &out), -1);
			CHECK_INT(out.len, before);
			CHECK(strstr(out.data ? out.data : "", "[DONE]") == NULL);
		} else {
			CHECK_INT(failed, 0);
			CHECK_INT(gem_stream_end(st, &out), 0);
			split_sse(out.data ? out.data : "", out.len, &outev, 4096);
			size_t wlen = 0;
			char *wtext = fixture(name, "openai-response.sse", &wlen);
			struct events wev = {0};
			split_sse(wtext ? wtext : "", wlen, &wev, 4096);
			CHECK_INT(outev.n, wev.n);
			for (size_t i = 0; i < outev.n && i < wev.n; i++) {
				if (strcmp(wev.ev[i], "[DONE]") == 0) {
					CHECK_STR(outev.ev[i], "[DONE]");
					continue;
				}
				cJSON *a = cJSON_Parse(outev.ev[i]);
				cJSON *e = cJSON_Parse(wev.ev[i]);
				check_json("chunk", a, e);
				cJSON_Delete(a);
				cJSON_Delete(e);
			}
			/* every chunk is a complete "data: ...\n\n" event */
			CHECK(out.len >= 2 && out.data[out.len - 1] == '\n' && out.data[out.len - 2] == '\n');
			free_events(&wev);
			free(wtext);
		}
		buf_free(&out);
		gem_stream_free(st);
		free_events(&in);
		free_events(&outev);
		free(gsse);
	}
out:
	cJSON_Delete(greq);
	cJSON_Delete(oreq);
	cJSON_Delete(meta);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every NAME that has an openai-request.json. */
static void run_all_fixtures(void)
{
	DIR *d = opendir(fixdir);
	CHECK(d != NULL);
	if (!d)
		return;
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *suf = ".openai-request.json";
		size_t l = strlen(de->d_name), sl = strlen(suf);
		if (l > sl && strcmp(de->d_name + l - sl, suf) == 0) {
			names = xreallocarray(names, n + 1, sizeof *names);
			names[n++] = xstrndup(de->d_name, l - sl);
		}
	}
	closedir(d);
	qsort(names, n, sizeof *names, cmp_str);
	CHECK(n >= 40);
	for (size_t i = 0; i < n; i++) {
		run_fixture(names[i]);
		free(names[i]);
	}
	free(names);
}

/* ------------------------------------------------------------------ */

static void test_finish_reasons(void)
{
	T_BEGIN("gemini-finish");
	CHECK_STR(gem_finish_reason("STOP", 0), "stop");
	CHECK_STR(gem_finish_reason("STOP", 1), "tool_calls");
	CHECK_STR(gem_finish_reason(NULL, 1), "tool_calls");
	CHECK_STR(gem_finish_reason("MAX_TOKENS", 1), "length");
	CHECK_STR(gem_finish_reason("SAFETY", 1), "content_filter");
	CHECK_STR(gem_finish_reason("SOMETHING_NEW", 0), "stop");
}

static void test_errors(void)
{
	struct proxy_error e;
	T_BEGIN("gemini-error-1");
	const char *bad_key =
		"{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\","
		"\"status\":\"INVALID_ARGUMENT\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
		"\"reason\":\"API_KEY_INVALID\",\"domain\":\"googleapis.com\"}]}}";
	gem_error_map(400, bad_key, strlen(bad_key), "Gemini-AIStudio", "gemini-x", &e);
	CHECK_INT(e.status, 502);
	CHECK_STR(e.type, "upstream_error");
	CHECK_STR(e.code, "upstream_auth_failed");
	CHECK(strstr(e.message, "Gemini-AIStudio") != NULL);
	CHECK(strstr(e.message, "API key not valid") != NULL);

	T_BEGIN("gemini-error-2");
	const char *s401 = "{\"error\":{\"code\":401,\"message\":\"API keys are not supported by this API.\",\"status\":\"UNAUTHENTICATED\"}}";
	gem_error_map(401, s401, strlen(s401), "V", NULL, &e);
	CHECK_INT(e.status, 502);
	CHECK_STR(e.code, "upstream_auth_failed");
	gem_error_map(403, "{}", 2, "V", NULL, &e);
	CHECK_INT(e.status, 502);
	CHECK_STR(e.code, "upstream_auth_failed");

	T_BEGIN("gemini-error-3");
	const char *q = "[{\"error\":{\"code\":429,\"message\":\"Resource exhausted.\",\"status\":\"RESOURCE_EXHAUSTED\"}}]";
	gem_error_map(429, q, strlen(q), "V", NULL, &e);
	CHECK_INT(e.status, 429);
	CHECK_STR(e.type, "requests");
	CHECK_STR(e.code, "rate_limit_exceeded");
	CHECK(strstr(e.message, "Resource exhausted.") != NULL);

	T_BEGIN("gemini-error-4");
	const char *nf = "{\"error\":{\"code\":404,\"message\":\"models/nope is not found\",\"status\":\"NOT_FOUND\"}}";
	gem_error_map(404, nf, strlen(nf), "V", "nope", &e);
	CHECK_INT(e.status, 404);
	CHECK_STR(e.code, "model_not_found");
	CHECK(strstr(e.message, "upstream model not found") != NULL);

	T_BEGIN("gemini-error-5");
	gem_error_map(503, "<html>oops</html>", 17, "V", NULL, &e);
	CHECK_INT(e.status, 502);
	CHECK_STR(e.type, "upstream_error");
	const char *inv = "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received. Unknown name \\\"x\\\"\",\"status\":\"INVALID_ARGUMENT\"}}";
	gem_error_map(400, inv, strlen(inv), "V", NULL, &e);
	CHECK_INT(e.status, 400);
	CHECK(strstr(e.message, "Unknown name") != NULL);

	T_BEGIN("gemini-error-6"); /* a key echoed in an upstream message is masked */
	const char *leak = "{\"error\":{\"code\":400,\"message\":\"bad key AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI here\"}}";
	gem_error_map(400, leak, strlen(leak), "V", NULL, &e);
	CHECK(strstr(e.message, "AIzaSyDdI0hCZtE6vySjMm") == NULL);
}

static void test_schema_bounds(void)
{
	struct proxy_error e = {0};
	T_BEGIN("gemini-schema-depth");
	struct buf b;
	buf_init(&b);
	for (int i = 0; i < 200; i++)
		buf_puts(&b, "{\"type\":\"array\",\"items\":");
	buf_puts(&b, "{}");
	for (int i = 0; i < 200; i++)
		buf_puts(&b, "}");
	cJSON *deep = cJSON_Parse(b.data);
	CHECK(deep != NULL);
	CHECK(gem_clean_schema(deep, 0, "x", &e) == NULL);
	CHECK_INT(e.status, 400);
	CHECK(strstr(e.message, "deeply") != NULL);
	cJSON_Delete(deep);
	buf_free(&b);

	T_BEGIN("gemini-schema-recursive-ref");
	const char *rec = "{\"type\":\"object\",\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":"
			  "{\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/N\"}}}}},"
			  "\"properties\":{\"root\":{\"$ref\":\"#/$defs/N\"}}}";
	cJSON *r = cJSON_Parse(rec);
	cJSON *c = gem_clean_schema(r, 0, "x", &e);
	CHECK(c != NULL);
	char *s = c ? cJSON_PrintUnformatted(c) : NULL;
	CHECK(s && !strstr(s, "$ref") && !strstr(s, "$defs"));
	cJSON_free(s);
	cJSON_Delete(c);
	cJSON_Delete(r);

	T_BEGIN("gemini-schema-blowup"); /* triply recursive: exponential, must be cut short */
	const char *two = "{\"$defs\":{\"N\":{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/N\"},"
			  "\"b\":{\"$ref\":\"#/$defs/N\"},\"c\":{\"$ref\":\"#/$defs/N\"}}}},\"$ref\":\"#/$defs/N\"}";
	r = cJSON_Parse(two);
	c = gem_clean_schema(r, 0, "x", &e);
	CHECK(c != NULL);
	s = c ? cJSON_PrintUnformatted(c) : NULL;
	/* a few levels, not the 100k tokens a deep expansion bills per request */
	CHECK(s && strlen(s) < 16384);
	CHECK(s && !strstr(s, "$ref"));
	cJSON_free(s);
	cJSON_Delete(c);
	cJSON_Delete(r);

	T_BEGIN("gemini-schema-defaults"); /* Gemini: items on arrays, a type on described nodes */
	r = cJSON_Parse("{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\"},"
			"\"note\":{\"description\":\"free text\"},\"mode\":{\"enum\":[\"\",\"a\"]}}}");
	c = gem_clean_schema(r, 0, "x", &e);
	s = c ? cJSON_PrintUnformatted(c) : NULL;
	CHECK(s && strstr(s, "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}"));
	CHECK(s && strstr(s, "\"note\":{\"description\":\"free text\",\"type\":\"string\"}"));
	CHECK(s && strstr(s, "\"enum\":[\"a\"]") && strstr(s, "\"nullable\":true"));
	cJSON_free(s);
	cJSON_Delete(c);
	cJSON_Delete(r);

	T_BEGIN("gemini-tool-result-text"); /* JSON followed by prose is text, whole */
	{
		cJSON *req = cJSON_Parse(
			"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"t?\"},"
			"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_x\",\"type\":\"function\","
			"\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
			"{\"role\":\"tool\",\"tool_call_id\":\"call_x\",\"content\":\"{\\\"t\\\":21} (approx)\"}]}");
		cJSON *out = NULL;
		CHECK(req != NULL);
		CHECK_INT(gem_chat_request(req, GEM_AISTUDIO, &out, &e), 0);
		char *g = out ? cJSON_PrintUnformatted(out) : NULL;
		CHECK(g && strstr(g, "\"response\":{\"content\":\"{\\\"t\\\":21} (approx)\"}"));
		CHECK(g && !strstr(g, "\"id\":\"call_x\"")); /* a minted id is not sent back */
		cJSON_free(g);
		cJSON_Delete(out);
		cJSON_Delete(req);
	}

	T_BEGIN("gemini-embed-batch-cap"); /* AI Studio: at most 100 per batchEmbedContents */
	{
		cJSON *req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "model", "emb");
		cJSON *in = cJSON_AddArrayToObject(req, "input");
		for (int i = 0; i < 101; i++)
			cJSON_AddItemToArray(in, cJSON_CreateString("x"));
		cJSON *out = NULL;
		int b64 = 0;
		int64_t est = 0;
		CHECK_INT(gem_embed_request(req, GEM_AISTUDIO, "text-embedding-004", &out, &b64, &est, &e), -1);
		CHECK_STR(e.param, "input");
		CHECK(strstr(e.message, "100") != NULL);
		cJSON_DeleteItemFromArray(in, 0);
		CHECK_INT(gem_embed_request(req, GEM_AISTUDIO, "text-embedding-004", &out, &b64, &est, &e), 0);
		cJSON_Delete(out);
		cJSON_Delete(req);
	}

	T_BEGIN("gemini-schema-pointer");
	const char *ptr = "{\"definitions\":{\"a/b\":{\"type\":\"string\"}},\"type\":\"object\","
			  "\"properties\":{\"p\":{\"$ref\":\"#/definitions/a~1b\",\"description\":\"d\"}}}";
	r = cJSON_Parse(ptr);
	c = gem_clean_schema(r, 0, "x", &e);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "properties"), "p");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "type")), "string");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "description")), "d");
	cJSON_Delete(c);
	cJSON_Delete(r);
}

static void test_stream_garbage(void)
{
	T_BEGIN("gemini-stream-garbage");
	struct gem_stream *st = gem_stream_new("gem", 1, 1);
	struct buf out;
	buf_init(&out);
	struct usage u = {0};
	struct proxy_error e = {0};
	CHECK_INT(gem_stream_event(st, "{not json", 9, &out, &u, &e), -1);
	CHECK_INT(e.status, 502);
	CHECK_INT(gem_stream_event(st, "  ", 2, &out, &u, &e), 0);
	CHECK_INT(gem_stream_event(st, "\"str\"", 5, &out, &u, &e), -1);
	const char *many = "{\"candidates\":[{\"index\":99,\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}";
	CHECK_INT(gem_stream_event(st, many, strlen(many), &out, &u, &e), -1);
	CHECK_INT(gem_stream_end(st, &out), -1); /* never finished */
	CHECK_INT(out.len, 0);
	buf_free(&out);
	gem_stream_free(st);

	T_BEGIN("gemini-response-garbage");
	cJSON *res = NULL;
	cJSON *j = cJSON_Parse("{\"candidates\":[]}");
	CHECK_INT(gem_chat_response(j, "gem", 0, &res, &u, &e), -1);
	CHECK_INT(e.status, 502);
	cJSON_Delete(j);
	j = cJSON_Parse("{\"embeddings\":[{\"values\":[\"x\"]}]}");
	CHECK_INT(gem_embed_response(j, GEM_AISTUDIO, "gem", 0, 0, &res, &u, &e), -1);
	cJSON_Delete(j);
}

/* ------------------------------------------------------------------ */
/* URLs and auth through the adapter                                   */

static unsigned char master[MASTER_KEY_BYTES];

struct built {
	int rc;
	struct proxy_error err;
	char url[1024];
	char headers[2048];
	char *body;
};

static void build_with(const char *provider, const char *endpoint, const char *options,
		       const char *remote, const char *cred, int op, int stream, struct built *b)
{
	struct route r = {0};
	r.provider = (char *)provider;
	r.endpoint = (char *)endpoint;
	r.options = (char *)(options ? options : "{}");
	r.remote = (char *)remote;
	r.conn_id = (char *)"conn-test1";
	r.conn_name = (char *)"TestConn";
	struct xlate x = {.ad = &adapter_google, .op = op, .route = &r, .alias = "gem", .stream = stream,
			  .master = master};
	const char *chat = "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	const char *emb = "{\"model\":\"gem\",\"input\":\"hi\"}";
	cJSON *body = cJSON_Parse(op == OP_CHAT ? chat : emb);
	struct upstream_req ur = {0};
	buf_init(&ur.url);
	buf_init(&ur.body);
	memset(b, 0, sizeof *b);
	b->rc = adapter_google.build(&x, body, cred, &ur, &b->err);
	snprintf(b->url, sizeof b->url, "%s", ur.url.data ? ur.url.data : "");
	size_t off = 0;
	for (struct curl_slist *h = ur.headers; h; h = h->next)
		off += (size_t)snprintf(b->headers + off, sizeof b->headers - off, "%s\n", h->data);
	b->body = ur.body.data ? xstrdup(ur.body.data) : NULL;
	if (b->rc == 0)
		CHECK_INT(ur.is_stream, stream);
	curl_slist_free_all(ur.headers);
	buf_free(&ur.url);
	buf_free(&ur.body);
	adapter_google.free_state(&x);
	cJSON_Delete(body);
}

static void test_urls(void)
{
	struct built b;
	T_BEGIN("google-url-aistudio");
	build_with("google", "https://generativelanguage.googleapis.com/", NULL, "gemini-2.5-flash",
		   "AIzaSyTEST", OP_CHAT, 0, &b);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent");
	CHECK(strstr(b.headers, "x-goog-api-key: AIzaSyTEST\n") != NULL);
	CHECK(strstr(b.headers, "Authorization") == NULL);
	CHECK(strstr(b.headers, "Content-Type: application/json") != NULL);
	CHECK(b.body && strstr(b.body, "\"contents\""));
	free(b.body);

	T_BEGIN("google-url-aistudio-stream");
	build_with("gemini", "http://127.0.0.1:9", NULL, "models/we ird/x", "k1", OP_CHAT, 1, &b);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1beta/models/we%20ird%2Fx:streamGenerateContent?alt=sse");
	free(b.body);

	T_BEGIN("google-url-aistudio-embed");
	build_with("gemini", "http://127.0.0.1:9", NULL, "text-embedding-004", "k1", OP_EMBEDDINGS, 0, &b);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1beta/models/text-embedding-004:batchEmbedContents");
	CHECK(b.body && strstr(b.body, "\"models/text-embedding-004\""));
	free(b.body);

	T_BEGIN("google-url-vertex-express");
	build_with("google", "https://aiplatform.googleapis.com", NULL, "gemini-3-flash-preview", "AQ.Ab8RTEST",
		   OP_CHAT, 0, &b);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-3-flash-preview:generateContent");
	CHECK(strstr(b.headers, "x-goog-api-key: AQ.Ab8RTEST\n") != NULL);
	free(b.body);

	T_BEGIN("google-url-vertex-bearer");
	build_with("google", "https://aiplatform.googleapis.com", "{\"project\":\"my-proj\"}", "gemini-2.5-pro",
		   "ya29.TOKEN", OP_CHAT, 1, &b);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
	CHECK(strstr(b.headers, "Authorization: Bearer ya29.TOKEN\n") != NULL);
	CHECK(strstr(b.headers, "x-goog-api-key") == NULL);
	free(b.body);

	T_BEGIN("google-url-vertex-regional");
	build_with("google", "https://aiplatform.googleapis.com", "{\"project\":\"p\",\"location\":\"us-central1\"}",
		   "gemini-2.5-pro", "ya29.T", OP_CHAT, 0, &b);
	CHECK_STR(b.url, "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent");
	free(b.body);
	build_with("google", "https://aiplatform.googleapis.com", "{\"project\":\"p\",\"location\":\"eu\"}",
		   "gemini-2.5-pro", "ya29.T", OP_CHAT, 0, &b); /* multi-region: its own host */
	CHECK_STR(b.url, "https://aiplatform.eu.rep.googleapis.com/v1/projects/p/locations/eu/publishers/google/models/gemini-2.5-pro:generateContent");
	free(b.body);
	build_with("vertex", "http://127.0.0.1:9", "{\"project\":\"p\",\"location\":\"europe-west4\",\"auth\":\"bearer\",\"api_version\":\"v1beta1\"}",
		   "m", "tok", OP_EMBEDDINGS, 0, &b);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1beta1/projects/p/locations/europe-west4/publishers/google/models/m:predict");
	CHECK(strstr(b.headers, "Authorization: Bearer tok\n") != NULL);
	CHECK(b.body && strstr(b.body, "\"instances\""));
	free(b.body);

	T_BEGIN("google-url-vertex-express-forced");
	build_with("vertex", "http://127.0.0.1:9/", NULL, "m", "plainkey\n", OP_CHAT, 0, &b);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1/publishers/google/models/m:generateContent");
	CHECK(strstr(b.headers, "x-goog-api-key: plainkey\n") != NULL);
	free(b.body);

	T_BEGIN("google-url-flavour-option");
	build_with("google", "http://127.0.0.1:9", "{\"flavour\":\"vertex\",\"auth\":\"api-key\"}", "m", "ya29.x",
		   OP_CHAT, 0, &b);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1/publishers/google/models/m:generateContent");
	CHECK(strstr(b.headers, "x-goog-api-key: ya29.x\n") != NULL);
	free(b.body);

	T_BEGIN("google-url-errors");
	build_with("vertex", "http://127.0.0.1:9", NULL, "m", "ya29.T", OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	CHECK_INT(b.err.status, 502);
	CHECK(strstr(b.err.message, "project") != NULL);
	CHECK(strstr(b.err.message, "ya29") == NULL);
	free(b.body);
	build_with("google", "http://127.0.0.1:9", NULL, "m", "mystery", OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	CHECK(strstr(b.err.message, "flavour") != NULL);
	free(b.body);
	build_with("gemini", "http://127.0.0.1:9", NULL, "m", "bad\r\nX-Evil: 1", OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	CHECK(strstr(b.err.message, "X-Evil") == NULL);
	free(b.body);
	build_with("vertex", "http://127.0.0.1:9", "{\"project\":\"p\",\"location\":\"../x\"}", "m", "ya29.T",
		   OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	free(b.body);
	build_with("google", "http://127.0.0.1:9", NULL, "m", "{\"type\":\"authorized_user\"}", OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	CHECK(strstr(b.err.message, "service_account") != NULL);
	free(b.body);
	/* a bad request is a 400 before any credential use */
	struct route r = {.provider = "gemini", .endpoint = "http://127.0.0.1:9", .options = "{}", .remote = "m",
			  .conn_id = "c", .conn_name = "n"};
	struct xlate x = {.ad = &adapter_google, .op = OP_CHAT, .route = &r, .alias = "gem"};
	cJSON *body = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"1\":2}}");
	struct upstream_req ur = {0};
	struct proxy_error e = {0};
	CHECK_INT(adapter_google.build(&x, body, "k", &ur, &e), -1);
	CHECK_INT(e.status, 400);
	CHECK_STR(e.param, "logit_bias");
	adapter_google.free_state(&x);
	curl_slist_free_all(ur.headers);
	buf_free(&ur.url);
	buf_free(&ur.body);
	cJSON_Delete(body);
}

/* The adapter callbacks end to end on one stream. */
static void test_adapter_stream(void)
{
	T_BEGIN("google-adapter-stream");
	struct route r = {.provider = "gemini", .endpoint = "http://127.0.0.1:9", .options = "{}", .remote = "m",
			  .conn_id = "c", .conn_name = "n"};
	struct xlate x = {.ad = &adapter_google, .op = OP_CHAT, .route = &r, .alias = "gem", .stream = 1,
			  .client_wants_usage = 0};
	cJSON *body = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}");
	struct upstream_req ur = {0};
	struct proxy_error e = {0};
	CHECK_INT(adapter_google.build(&x, body, "k", &ur, &e), 0);
	struct buf out;
	buf_init(&out);
	const char *ev1 = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}]}}],\"responseId\":\"r\"}";
	const char *ev2 = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"!\"}]},\"finishReason\":\"STOP\"}],"
			  "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2}}";
	CHECK_INT(adapter_google.stream_event(&x, ev1, strlen(ev1), &out, &e), 0);
	CHECK_INT(x.done, 0);
	CHECK_INT(adapter_google.stream_event(&x, ev2, strlen(ev2), &out, &e), 0);
	CHECK_INT(x.done, 1);
	CHECK_INT(x.usage.have, 1);
	CHECK_INT(x.usage.prompt_tokens, 4);
	CHECK_INT(x.usage.completion_tokens, 2);
	CHECK_INT(adapter_google.stream_end(&x, &out), 0);
	CHECK(strstr(out.data, "\"usage\"") == NULL); /* not asked */
	CHECK(strstr(out.data, "data: [DONE]\n\n") != NULL);
	buf_free(&out);
	adapter_google.free_state(&x);
	curl_slist_free_all(ur.headers);
	buf_free(&ur.url);
	buf_free(&ur.body);
	cJSON_Delete(body);

	T_BEGIN("google-adapter-response");
	struct xlate x2 = {.ad = &adapter_google, .op = OP_CHAT, .route = &r, .alias = "my-alias"};
	body = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
	struct upstream_req ur2 = {0};
	CHECK_INT(adapter_google.build(&x2, body, "k", &ur2, &e), 0);
	buf_init(&out);
	const char *g = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ok\"}]},\"finishReason\":\"STOP\"}],"
			"\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1,\"totalTokenCount\":4},"
			"\"modelVersion\":\"gemini-2.5-flash-001\",\"responseId\":\"abc\"}";
	CHECK_INT(adapter_google.response(&x2, g, strlen(g), &out, &e), 0);
	cJSON *res = cJSON_Parse(out.data);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, "model")), "my-alias");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, "id")), "chatcmpl-abc");
	CHECK(cJSON_GetObjectItemCaseSensitive(res, "created")->valuedouble > 1.6e9);
	CHECK_INT(x2.usage.prompt_tokens, 3);
	CHECK_INT(adapter_google.response(&x2, "nope", 4, &out, &e), -1);
	CHECK_INT(e.status, 502);
	cJSON_Delete(res);
	buf_free(&out);
	adapter_google.free_state(&x2);
	curl_slist_free_all(ur2.headers);
	buf_free(&ur2.url);
	buf_free(&ur2.body);
	cJSON_Delete(body);
}

/* ------------------------------------------------------------------ */
/* service account: JWT and token cache                                */

static char *pem_private, *pem_public;

static void make_rsa(void)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	pem_private = xstrndup(p, (size_t)n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(b, k);
	n = BIO_get_mem_data(b, &p);
	pem_public = xstrndup(p, (size_t)n);
	BIO_free(b);
	EVP_PKEY_free(k);
}

static int b64url_decode(const char *s, size_t n, unsigned char *out, size_t *olen)
{
	unsigned acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		const char *q = strchr(tab, s[i]);
		if (!q || !s[i])
			return -1;
		acc = (acc << 6) | (unsigned)(q - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*olen = o;
	return 0;
}

/* 1 when jwt is "h.c.s" with a valid RS256 signature under pem_public. */
static int jwt_verify(const char *jwt, cJSON **hdr, cJSON **claims)
{
	const char *d1 = strchr(jwt, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d2)
		return 0;
	unsigned char h[1024], c[2048], sig[1024];
	size_t hl, cl, sl;
	if (b64url_decode(jwt, (size_t)(d1 - jwt), h, &hl) || b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), c, &cl) ||
	    b64url_decode(d2 + 1, strlen(d2 + 1), sig, &sl))
		return 0;
	if (hdr)
		*hdr = cJSON_ParseWithLength((char *)h, hl);
	if (claims)
		*claims = cJSON_ParseWithLength((char *)c, cl);
	BIO *b = BIO_new_mem_buf(pem_public, -1);
	EVP_PKEY *pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
		 EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return ok;
}

/* A one-purpose OAuth token server in a child process: POST /token
 * verifies the assertion and answers {"access_token":"ya29.tok-N"};
 * /ttl100 answers expires_in 100 (inside the refresh margin); /fail
 * answers invalid_grant. */
static pid_t token_server(int *port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0)
		return -1;
	socklen_t al = sizeof a;
	getsockname(s, (struct sockaddr *)&a, &al);
	*port = ntohs(a.sin_port);
	pid_t pid = fork();
	if (pid != 0) {
		close(s);
		return pid;
	}
	int count = 0;
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		struct buf req;
		buf_init(&req);
		char tmp[4096];
		ssize_t n;
		size_t need = 0;
		while ((n = read(c, tmp, sizeof tmp)) > 0) {
			buf_append(&req, tmp, (size_t)n);
			char *hend = strstr(req.data, "\r\n\r\n");
			if (hend && !need) {
				char *cl = strcasestr(req.data, "content-length:");
				need = (size_t)(hend + 4 - req.data) + (cl ? (size_t)atol(cl + 15) : 0);
			}
			if (need && req.len >= need)
				break;
		}
		char *as = strstr(req.data ? req.data : "", "assertion=");
		int ok = as && strstr(req.data, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") &&
			 jwt_verify(as + 10, NULL, NULL);
		char body[256];
		int status = 200;
		if (strstr(req.data ? req.data : "", "POST /fail") || !ok) {
			status = 400;
			snprintf(body, sizeof body, "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}");
		} else {
			count++;
			int ttl = strstr(req.data, "POST /ttl100") ? 100 : 3599;
			snprintf(body, sizeof body, "{\"access_token\":\"ya29.tok-%d\",\"expires_in\":%d,\"token_type\":\"Bearer\"}",
				 count, ttl);
		}
		char resp[512];
		int rl = snprintf(resp, sizeof resp,
				  "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
				  status, strlen(body), body);
		ssize_t w = write(c, resp, (size_t)rl);
		(void)w;
		close(c);
		buf_free(&req);
	}
}

static char *sa_json(int port, const char *path)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "service_account");
	cJSON_AddStringToObject(o, "project_id", "sa-proj");
	cJSON_AddStringToObject(o, "private_key_id", "kid123");
	cJSON_AddStringToObject(o, "private_key", pem_private);
	cJSON_AddStringToObject(o, "client_email", "bot@sa-proj.iam.gserviceaccount.com");
	char uri[128];
	snprintf(uri, sizeof uri, "http://127.0.0.1:%d%s", port, path);
	cJSON_AddStringToObject(o, "token_uri", uri);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static void test_jwt(void)
{
	T_BEGIN("google-jwt");
	char *js = sa_json(1, "/token");
	struct gauth_sa sa;
	char e[256];
	CHECK_INT(gauth_sa_parse(js, &sa, e, sizeof e), 0);
	CHECK_STR(sa.project_id, "sa-proj");
	char *jwt = NULL;
	CHECK_INT(gauth_make_jwt(&sa, 1700000000, &jwt, e, sizeof e), 0);
	cJSON *h = NULL, *c = NULL;
	CHECK(jwt && jwt_verify(jwt, &h, &c));
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "alg")), "RS256");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "typ")), "JWT");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "kid")), "kid123");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "iss")), "bot@sa-proj.iam.gserviceaccount.com");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scope")), GAUTH_SCOPE);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "aud")), "http://127.0.0.1:1/token");
	CHECK_INT(cJSON_GetObjectItemCaseSensitive(c, "iat")->valuedouble, 1700000000);
	CHECK_INT(cJSON_GetObjectItemCaseSensitive(c, "exp")->valuedouble, 1700003600);
	/* a tampered token does not verify (the check can fail) */
	if (jwt) {
		size_t l = strlen(jwt);
		jwt[l - 5] = jwt[l - 5] == 'A' ? 'B' : 'A';
		CHECK(!jwt_verify(jwt, NULL, NULL));
	}
	cJSON_Delete(h);
	cJSON_Delete(c);
	free_secret(jwt);
	gauth_sa_free(&sa);
	free(js);

	T_BEGIN("google-sa-parse");
	CHECK_INT(gauth_sa_parse("{\"type\":\"service_account\",\"client_email\":\"x\"}", &sa, e, sizeof e), -1);
	CHECK_INT(gauth_sa_parse("{\"type\":\"service_account\",\"client_email\":\"x\",\"private_key\":\"junk\"}", &sa,
				 e, sizeof e), 0);
	CHECK_INT(gauth_make_jwt(&sa, 1, &jwt, e, sizeof e), -1);
	CHECK_STR(sa.token_uri, GAUTH_DEFAULT_TOKEN_URI);
	gauth_sa_free(&sa);
	CHECK_INT(gauth_sa_parse("nope", &sa, e, sizeof e), -1);
}

static int file_contains(const char *path, const char *needle)
{
	size_t n = 0;
	char *s = slurp(path, &n);
	if (!s)
		return 0;
	int found = memmem(s, n, needle, strlen(needle)) != NULL;
	free(s);
	return found;
}

static void test_token_cache(void)
{
	int port = 0;
	pid_t srv = token_server(&port);
	CHECK(srv > 0);
	char dir[] = "/tmp/gemtest-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char cache[600];
	snprintf(cache, sizeof cache, "%s/tokens", dir);
	char *js = sa_json(port, "/token");
	struct gauth_sa sa;
	char e[256];
	struct proxy_error err = {0};
	char *tok = NULL;
	CHECK_INT(gauth_sa_parse(js, &sa, e, sizeof e), 0);

	T_BEGIN("google-token-1"); /* first use exchanges, then the cache answers */
	CHECK_INT(gauth_token(&sa, "conn-sa1", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-1");
	free_secret(tok);
	CHECK_INT(gauth_token(&sa, "conn-sa1", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-1");
	free_secret(tok);
	struct stat st;
	CHECK(stat(cache, &st) == 0 && (st.st_mode & 0777) == 0700);
	char tf[700];
	snprintf(tf, sizeof tf, "%s/conn-sa1.tok", cache);
	CHECK(stat(tf, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(!file_contains(tf, "ya29"));
	CHECK(!file_contains(tf, "tok-1"));

	T_BEGIN("google-token-2"); /* another connection id: its own token */
	CHECK_INT(gauth_token(&sa, "conn-sa2", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-2");
	free_secret(tok);

	T_BEGIN("google-token-3"); /* a wrong master key cannot read it: refresh */
	unsigned char other[MASTER_KEY_BYTES];
	memset(other, 7, sizeof other);
	CHECK_INT(gauth_token(&sa, "conn-sa1", other, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-3");
	free_secret(tok);

	T_BEGIN("google-token-4"); /* a short-lived token is refreshed every time */
	char *js2 = sa_json(port, "/ttl100");
	struct gauth_sa sa2;
	CHECK_INT(gauth_sa_parse(js2, &sa2, e, sizeof e), 0);
	CHECK_INT(gauth_token(&sa2, "conn-sa4", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-4");
	free_secret(tok);
	CHECK_INT(gauth_token(&sa2, "conn-sa4", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-5");
	free_secret(tok);
	gauth_sa_free(&sa2);
	free(js2);

	T_BEGIN("google-token-5"); /* concurrent processes: one exchange */
	const int kids = 12;
	pid_t pids[12];
	for (int i = 0; i < kids; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			char *t = NULL;
			struct proxy_error pe;
			int r = gauth_token(&sa, "conn-burst", master, cache, &t, &pe);
			_exit(r == 0 && t && strcmp(t, "ya29.tok-6") == 0 ? 0 : 1);
		}
	}
	int all_ok = 1;
	for (int i = 0; i < kids; i++) {
		int ws = 0;
		waitpid(pids[i], &ws, 0);
		all_ok &= WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
	}
	CHECK(all_ok);
	CHECK_INT(gauth_token(&sa, "conn-other", master, cache, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-7"); /* exactly one exchange happened for the burst */
	free_secret(tok);

	T_BEGIN("google-token-6"); /* token endpoint errors: a clear 502 */
	char *js3 = sa_json(port, "/fail");
	struct gauth_sa sa3;
	CHECK_INT(gauth_sa_parse(js3, &sa3, e, sizeof e), 0);
	CHECK_INT(gauth_token(&sa3, "conn-fail", master, cache, &tok, &err), -1);
	CHECK_INT(err.status, 502);
	CHECK_STR(err.message, "service account token exchange failed: invalid_grant: Invalid JWT Signature.");
	CHECK(strstr(err.message, "PRIVATE") == NULL);
	gauth_sa_free(&sa3);
	free(js3);
	char *js4 = sa_json(1, "/token"); /* nothing listens on port 1 */
	CHECK_INT(gauth_sa_parse(js4, &sa3, e, sizeof e), 0);
	CHECK_INT(gauth_token(&sa3, "conn-down", master, cache, &tok, &err), -1);
	CHECK_INT(err.status, 502);
	CHECK(strstr(err.message, "unreachable") != NULL);
	free(sa3.token_uri);
	sa3.token_uri = xstrdup("http://example.com/token");
	CHECK_INT(gauth_exchange(&sa3, 1, &tok, &(int64_t){0}, &err), -1);
	CHECK(strstr(err.message, "https") != NULL);
	gauth_sa_free(&sa3);
	free(js4);

	T_BEGIN("google-token-7"); /* a group-writable cache dir is not trusted */
	char bad[700];
	snprintf(bad, sizeof bad, "%s/open", dir);
	mkdir(bad, 0777);
	chmod(bad, 0777);
	CHECK_INT(gauth_token(&sa, "conn-sa1", master, bad, &tok, &err), 0);
	CHECK_STR(tok, "ya29.tok-8");
	free_secret(tok);
	char bf[800];
	snprintf(bf, sizeof bf, "%s/conn-sa1.tok", bad);
	CHECK(stat(bf, &st) != 0);

	T_BEGIN("google-token-8"); /* through the adapter: Vertex with a key file */
	struct built b;
	char opts[800];
	snprintf(opts, sizeof opts, "{\"token_cache\":\"%s\"}", cache);
	build_with("vertex", "http://127.0.0.1:9", opts, "gemini-2.5-pro", js, OP_CHAT, 0, &b);
	CHECK_INT(b.rc, 0);
	CHECK_STR(b.url, "http://127.0.0.1:9/v1/projects/sa-proj/locations/global/publishers/google/models/gemini-2.5-pro:generateContent");
	CHECK(strstr(b.headers, "Authorization: Bearer ya29.tok-") != NULL);
	free(b.body);
	char *jsf = sa_json(port, "/fail");
	snprintf(opts, sizeof opts, "{\"token_cache\":\"%s/t2\"}", dir);
	build_with("google", "https://aiplatform.googleapis.com", opts, "m", jsf, OP_CHAT, 0, &b);
	CHECK_INT(b.rc, -1);
	CHECK_INT(b.err.status, 502);
	CHECK(strstr(b.err.message, "invalid_grant") != NULL);
	free(b.body);
	free(jsf);

	gauth_sa_free(&sa);
	free(js);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
	const char *fd = getenv("GEMINI_FIXTURES");
	if (argc > 1)
		fd = argv[1];
	if (fd)
		snprintf(fixdir, sizeof fixdir, "%s", fd);
	log_set_prog("test_gemini");
	random_bytes(master, sizeof master);
	make_rsa();
	run_all_fixtures();
	test_finish_reasons();
	test_errors();
	test_schema_bounds();
	test_stream_garbage();
	test_urls();
	test_adapter_stream();
	test_jwt();
	test_token_cache();
	free_secret(pem_private);
	free(pem_public);
	return T_END();
}
