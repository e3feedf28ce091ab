/* gemini_xlate.h - pure translation between OpenAI chat/embeddings JSON and
 * Google's generateContent / batchEmbedContents / predict JSON (AI Studio
 * and Vertex).  No I/O: everything here is a function of its inputs (plus
 * random ids for tool calls Gemini did not name), so the fixture tests and
 * the fuzzer drive it directly.  Wire facts: reference/PROVIDERS.md §c, §d
 * and reference/OPENAI_TO_GEMINI.md. */
#ifndef LLMPROXY_GEMINI_XLATE_H
#define LLMPROXY_GEMINI_XLATE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

/* Bounds. */
#define GEM_MAX_CHOICES 16           /* n / candidateCount */
#define GEM_SCHEMA_MAX_DEPTH 48      /* nesting of a JSON schema */
#define GEM_SCHEMA_MAX_NODES 20000   /* schema objects after $ref inlining */
#define GEM_REF_MAX_DEPTH 3          /* nested $ref expansions on one path: a
                                      * recursive schema stays a few KB */
#define GEM_MAX_MESSAGES 4096
#define GEM_MAX_EMBED_AISTUDIO 100   /* batchEmbedContents' cap per call */
#define GEM_MAX_EMBED_VERTEX 250     /* :predict instances per call */

/* Separator used to carry a Gemini thought signature inside an OpenAI
 * tool_call id ("<id>__thought__<base64 signature>"), as LiteLLM does. */
#define GEM_THOUGHT_SEP "__thought__"

/* Vertex (aiplatform v1) differs from AI Studio (v1beta) in the request
 * only by having no `id` on functionCall / functionResponse parts. */
enum gem_flavour { GEM_AISTUDIO = 0, GEM_VERTEX = 1 };

/* OpenAI chat request -> GenerateContentRequest.  *out is a new object
 * owned by the caller.  Returns 0, or -1 with err filled (400 naming the
 * offending field in param and message). */
int gem_chat_request(const cJSON *oai, enum gem_flavour fl, cJSON **out, struct proxy_error *err);

/* OpenAI embeddings request -> batchEmbedContents (AI Studio, needs the
 * remote name for each entry's "models/<remote>") or predict (Vertex).
 * *b64 is set when the client asked encoding_format "base64". *est gets a
 * token estimate of the input.  0, or -1 with err filled. */
int gem_embed_request(const cJSON *oai, enum gem_flavour fl, const char *remote, cJSON **out,
		      int *b64, int64_t *est, struct proxy_error *err);

/* GenerateContentResponse -> chat.completion (new object, caller owns).
 * Fills *u from usageMetadata.  created is the unix time to show.
 * 0, or -1 with err filled (502) when the body is not a response. */
int gem_chat_response(const cJSON *gem, const char *alias, int64_t created, cJSON **out,
		      struct usage *u, struct proxy_error *err);

/* batchEmbedContents / predict response -> OpenAI embeddings list.
 * est is used as prompt_tokens when the upstream reports no count. */
int gem_embed_response(const cJSON *gem, enum gem_flavour fl, const char *alias, int b64,
		       int64_t est, cJSON **out, struct usage *u, struct proxy_error *err);

/* Streaming: one state per response, fed one SSE event's data at a time. */
struct gem_stream;
/* New stream state; alias is copied.  Free with gem_stream_free. */
struct gem_stream *gem_stream_new(const char *alias, int64_t created, int want_usage);
void gem_stream_free(struct gem_stream *st);
/* One event -> zero or more "data: ...\n\n" chunks appended to out.
 * Returns 1 when the stream has seen a finish for every choice (it ended
 * properly as far as Gemini says), 0 otherwise, -1 on an error event
 * (err filled, OpenAI-shaped).  *u is updated when the event carries usage. */
int gem_stream_event(struct gem_stream *st, const char *data, size_t len, struct buf *out,
		     struct usage *u, struct proxy_error *err);
/* EOF: appends finish chunks, the usage chunk when asked, and [DONE].
 * Returns 0, or -1 (nothing appended) when no finish was ever seen. */
int gem_stream_end(struct gem_stream *st, struct buf *out);

/* A non-2xx Google answer (JSON error object, possibly array-wrapped, or
 * anything else) -> client error.  conn_name names the connection in
 * credential errors; remote names the model in 404s.  The message is
 * scrubbed of anything that looks like a key. */
void gem_error_map(long status, const char *body, size_t len, const char *conn_name,
		   const char *remote, struct proxy_error *out);

/* Finish reason mapping (STOP -> "stop", ...); has_tool_calls gives
 * "tool_calls" precedence on a normal stop.  Static string. */
const char *gem_finish_reason(const char *gemini, int has_tool_calls);

/* Cleans a JSON Schema into Gemini's OpenAPI-subset Schema: returns a new
 * object (caller owns) or NULL with err filled (400, param NULL; the message names where). */
cJSON *gem_clean_schema(const cJSON *schema, int property_ordering, const char *where,
			struct proxy_error *err);

#endif
