/* fuzz_gemini.c - libFuzzer harness for the Gemini translators.  The
 * first byte picks the target, the rest is the input:
 *   0: OpenAI chat request JSON -> gem_chat_request (AI Studio and Vertex)
 *   1: OpenAI embeddings request JSON -> gem_embed_request
 *   2: GenerateContentResponse JSON -> gem_chat_response
 *   3: embeddings answer JSON -> gem_embed_response (both flavours)
 *   4: a Gemini SSE stream, split by the real splitter (sse.c), every
 *      event through gem_stream_event, then gem_stream_end
 *   5: an error body -> gem_error_map
 *   6: a JSON schema -> gem_clean_schema
 * Build: clang -fsanitize=fuzzer,address,undefined (see tests/fuzz/run). */
/* srcs: proxyd/adapters/gemini_xlate.c proxyd/adapters/google.c proxyd/adapters/google_auth.c proxyd/adapters/openai.c proxyd/adapters/azure.c proxyd/adapters/oai_common.c proxyd/adapter.c proxyd/sse.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/gemini_xlate.h"
#include "sse.h"

struct sctx {
	struct gem_stream *st;
	struct buf *out;
	int failed;
};

static int on_event(void *ctx, const char *event, const char *data, size_t len)
{
	(void)event;
	struct sctx *c = ctx;
	struct usage u = {0};
	struct proxy_error e;
	if (!c->failed && gem_stream_event(c->st, data, len, c->out, &u, &e) < 0)
		c->failed = 1;
	return 0;
}

static void json_target(int t, const char *s, size_t n)
{
	cJSON *j = cJSON_ParseWithLength(s, n);
	cJSON *out = NULL;
	struct proxy_error e;
	struct usage u = {0};
	int b64 = 0;
	int64_t est = 0;
	if (!j)
		return;
	switch (t) {
	case 0:
		if (gem_chat_request(j, GEM_AISTUDIO, &out, &e) == 0)
			cJSON_Delete(out);
		if (gem_chat_request(j, GEM_VERTEX, &out, &e) == 0)
			cJSON_Delete(out);
		break;
	case 1:
		if (gem_embed_request(j, GEM_AISTUDIO, "m", &out, &b64, &est, &e) == 0)
			cJSON_Delete(out);
		if (gem_embed_request(j, GEM_VERTEX, "m", &out, &b64, &est, &e) == 0)
			cJSON_Delete(out);
		break;
	case 2:
		if (gem_chat_response(j, "alias", 1, &out, &u, &e) == 0)
			cJSON_Delete(out);
		break;
	case 3:
		if (gem_embed_response(j, GEM_AISTUDIO, "a", 1, 3, &out, &u, &e) == 0)
			cJSON_Delete(out);
		if (gem_embed_response(j, GEM_VERTEX, "a", 0, 3, &out, &u, &e) == 0)
			cJSON_Delete(out);
		break;
	case 6:
		cJSON_Delete(gem_clean_schema(j, 1, "fuzz", &e));
		break;
	}
	cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int t = data[0] % 7;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	if (t == 4) {
		struct buf out;
		buf_init(&out);
		struct gem_stream *st = gem_stream_new("alias", 1, data[0] & 8);
		struct sctx c = {.st = st, .out = &out};
		struct sse_parser p;
		sse_init(&p, 1 << 20);
		size_t half = n / 2; /* split in two reads at an arbitrary point */
		sse_feed(&p, s, half, on_event, &c);
		sse_feed(&p, s + half, n - half, on_event, &c);
		sse_finish(&p, on_event, &c);
		if (!c.failed)
			gem_stream_end(st, &out);
		sse_free(&p);
		gem_stream_free(st);
		buf_free(&out);
	} else if (t == 5) {
		struct proxy_error e;
		gem_error_map(400 + (long)(data[0] % 200), s, n, "conn", "remote", &e);
	} else {
		json_target(t, s, n);
	}
	return 0;
}
