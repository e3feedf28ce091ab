/* oai_common.c - see oai_common.h. */
#include "oai_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct oai_state *state(struct xlate *x)
{
	if (!x->state)
		x->state = xcalloc(1, sizeof(struct oai_state));
	return x->state;
}

int oai_prepare_body(struct xlate *x, cJSON *body, const char *remote, int allow_usage,
		     struct upstream_req *out, struct proxy_error *err)
{
	struct oai_state *st = state(x);
	(void)err;
	cJSON_DeleteItemFromObjectCaseSensitive(body, "model");
	cJSON_AddStringToObject(body, "model", remote);
	if (x->op == OP_CHAT && x->stream) {
		cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
		cJSON *iu = so ? cJSON_GetObjectItemCaseSensitive(so, "include_usage") : NULL;
		if (allow_usage && !cJSON_IsTrue(iu)) {
			if (!cJSON_IsObject(so)) {
				cJSON_DeleteItemFromObjectCaseSensitive(body, "stream_options");
				so = cJSON_AddObjectToObject(body, "stream_options");
			}
			cJSON_DeleteItemFromObjectCaseSensitive(so, "include_usage");
			cJSON_AddBoolToObject(so, "include_usage", 1);
			st->injected_usage = 1;
		} else if (!allow_usage && so) {
			/* this upstream rejects the field: strip it, account by estimate */
			cJSON_DeleteItemFromObjectCaseSensitive(body, "stream_options");
		}
	}
	char *s = cJSON_PrintUnformatted(body);
	if (!s)
		fatal("out of memory");
	buf_puts(&out->body, s);
	cJSON_free(s);
	out->is_stream = x->stream;
	return 0;
}

/* An upstream's token count, bounded so that the conversion is defined. */
static int64_t token_count(const cJSON *n)
{
	if (!cJSON_IsNumber(n) || !(n->valuedouble > 0))
		return 0;
	return n->valuedouble < 1e15 ? (int64_t)n->valuedouble : (int64_t)1e15;
}

static void take_usage(struct xlate *x, const cJSON *usage)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
	if (!cJSON_IsNumber(p))
		return;
	x->usage.prompt_tokens = token_count(p);
	x->usage.completion_tokens = token_count(c);
	x->usage.have = 1;
}

static void set_model(cJSON *obj, const char *alias)
{
	if (cJSON_GetObjectItemCaseSensitive(obj, "model"))
		cJSON_ReplaceItemInObjectCaseSensitive(obj, "model", cJSON_CreateString(alias));
	else
		cJSON_AddStringToObject(obj, "model", alias);
}

int oai_response(struct xlate *x, const char *body, size_t len, struct buf *out,
		 struct proxy_error *err)
{
	cJSON *o = cJSON_ParseWithLength(body, len);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		proxy_error_set(err, 502, "upstream_error", "bad_upstream_response", NULL,
				"the provider returned a response that is not JSON");
		return -1;
	}
	take_usage(x, cJSON_GetObjectItemCaseSensitive(o, "usage"));
	set_model(o, x->alias);
	char *s = cJSON_PrintUnformatted(o);
	buf_puts(out, s);
	cJSON_free(s);
	cJSON_Delete(o);
	return 0;
}

static void count_content(struct oai_state *st, const cJSON *choices)
{
	const cJSON *ch;
	cJSON_ArrayForEach(ch, choices)
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(ch, "delta");
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
		if (cJSON_IsString(c))
			st->completion_chars += (int64_t)strlen(c->valuestring);
		const cJSON *tc = cJSON_GetObjectItemCaseSensitive(d, "tool_calls");
		const cJSON *t;
		cJSON_ArrayForEach(t, tc)
		{
			const cJSON *a = cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(t, "function"), "arguments");
			if (cJSON_IsString(a))
				st->completion_chars += (int64_t)strlen(a->valuestring);
		}
	}
}

/* Azure's asynchronous content filter sends choices without a delta; the
 * OpenAI SDKs expect every choice to carry one.  Drop such choices. */
static void drop_choices_without_delta(cJSON *choices)
{
	for (int i = cJSON_GetArraySize(choices) - 1; i >= 0; i--) {
		cJSON *ch = cJSON_GetArrayItem(choices, i);
		if (!cJSON_GetObjectItemCaseSensitive(ch, "delta") &&
		    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(ch, "finish_reason")))
			cJSON_DeleteItemFromArray(choices, i);
		else if (!cJSON_GetObjectItemCaseSensitive(ch, "delta"))
			cJSON_AddObjectToObject(ch, "delta");
	}
}

static void emit_usage_chunk(struct xlate *x, struct oai_state *st, struct buf *out)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", st->id[0] ? st->id : "chatcmpl-llmproxy");
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)(st->created ? st->created : wall_s()));
	cJSON_AddStringToObject(o, "model", x->alias);
	cJSON_AddArrayToObject(o, "choices");
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", (double)x->usage.prompt_tokens);
	cJSON_AddNumberToObject(u, "completion_tokens", (double)x->usage.completion_tokens);
	cJSON_AddNumberToObject(u, "total_tokens",
				(double)(x->usage.prompt_tokens + x->usage.completion_tokens));
	sse_emit_json(out, o);
	cJSON_Delete(o);
}

/* The estimate used when the upstream could not be asked for usage. */
static void estimate_usage(struct xlate *x, struct oai_state *st)
{
	if (x->usage.have)
		return;
	x->usage.prompt_tokens = x->prompt_estimate;
	x->usage.completion_tokens = st->completion_chars / 4 + (st->completion_chars ? 1 : 0);
}

int oai_stream_event(struct xlate *x, const char *data, size_t len, struct buf *out,
		     struct proxy_error *err)
{
	struct oai_state *st = state(x);
	if (len >= 6 && strncmp(data, "[DONE]", 6) == 0) {
		estimate_usage(x, st);
		if (x->client_wants_usage && !x->usage.have)
			emit_usage_chunk(x, st, out); /* estimated: upstream could not say */
		sse_emit_done(out);
		x->done = 1;
		return 0;
	}
	cJSON *o = cJSON_ParseWithLength(data, len);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return 0; /* not JSON: nothing a client could use */
	}
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
	if (e) {
		oai_error(x, 500, data, len, err);
		cJSON_Delete(o);
		return -1;
	}
	cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
	if (cJSON_IsObject(usage))
		take_usage(x, usage);
	if (st->azure && cJSON_IsArray(choices))
		drop_choices_without_delta(choices);
	int nchoices = cJSON_GetArraySize(choices);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	if (cJSON_IsString(id) && id->valuestring[0] && !st->id[0])
		snprintf(st->id, sizeof st->id, "%s", id->valuestring);
	const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
	if (cJSON_IsNumber(created) && created->valuedouble > 0 && !st->created)
		st->created = (int64_t)created->valuedouble;

	if (nchoices == 0 && !cJSON_IsObject(usage))
		goto drop; /* Azure's prompt_filter_results chunk and the like */
	if (nchoices == 0 && st->injected_usage)
		goto drop; /* the usage chunk the client did not ask for */
	count_content(st, choices);
	if (st->injected_usage)
		cJSON_DeleteItemFromObjectCaseSensitive(o, "usage");
	set_model(o, x->alias);
	if (st->azure) {
		/* Azure may leave id/object/created empty on filter chunks */
		if (!cJSON_IsString(id) || !id->valuestring[0])
			cJSON_ReplaceItemInObjectCaseSensitive(
				o, "id", cJSON_CreateString(st->id[0] ? st->id : "chatcmpl-llmproxy"));
		cJSON_ReplaceItemInObjectCaseSensitive(o, "object",
						       cJSON_CreateString("chat.completion.chunk"));
		if (!cJSON_IsNumber(created) || created->valuedouble <= 0)
			cJSON_ReplaceItemInObjectCaseSensitive(
				o, "created", cJSON_CreateNumber((double)(st->created ? st->created : wall_s())));
	}
	sse_emit_json(out, o);
drop:
	cJSON_Delete(o);
	return 0;
}

int oai_stream_end(struct xlate *x, struct buf *out)
{
	struct oai_state *st = state(x);
	(void)out;
	estimate_usage(x, st);
	return x->done ? 0 : -1; /* OpenAI-shaped streams end with [DONE] */
}

void oai_error(struct xlate *x, long status, const char *body, size_t len, struct proxy_error *out)
{
	const char *conn = x->route ? x->route->conn_name : "?";
	char msg[400] = "";
	const char *type = NULL, *code = NULL;
	static char codebuf[64], typebuf[64], parambuf[64];
	const char *param = NULL;
	cJSON *o = cJSON_ParseWithLength(body, len);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
	if (cJSON_IsArray(o)) /* some servers wrap errors in an array */
		e = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(o, 0), "error");
	if (cJSON_IsObject(e)) {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param");
		if (cJSON_IsString(m))
			snprintf(msg, sizeof msg, "%s", m->valuestring);
		if (cJSON_IsString(t)) {
			snprintf(typebuf, sizeof typebuf, "%s", t->valuestring);
			type = typebuf;
		}
		if (cJSON_IsString(c)) {
			snprintf(codebuf, sizeof codebuf, "%s", c->valuestring);
			code = codebuf;
		} else if (cJSON_IsNumber(c)) {
			snprintf(codebuf, sizeof codebuf, "%d", (int)c->valuedouble);
			code = codebuf;
		}
		if (cJSON_IsString(p)) {
			snprintf(parambuf, sizeof parambuf, "%s", p->valuestring);
			param = parambuf;
		}
	} else if (cJSON_IsString(e)) {
		snprintf(msg, sizeof msg, "%s", e->valuestring);
	}
	cJSON_Delete(o);
	scrub_secrets(msg);

	if (status == 401 || status == 403) {
		/* the client's virtual key was fine; our credential was not */
		proxy_error_set(out, 502, "upstream_error", "upstream_auth_failed", NULL,
				"the provider rejected the credential of connection '%s' (HTTP %ld)",
				conn, status);
	} else if (status == 429) {
		proxy_error_set(out, 429, type ? type : "requests",
				code ? code : "rate_limit_exceeded", param,
				"%s", msg[0] ? msg : "the provider is rate limiting this connection");
	} else if (status >= 400 && status < 500) {
		if (status == 404 && !msg[0])
			snprintf(msg, sizeof msg, "the provider has no such model or deployment");
		proxy_error_set(out, (int)status, type ? type : "invalid_request_error", code, param,
				"%s", msg[0] ? msg : "the provider rejected the request");
	} else {
		proxy_error_set(out, 502, "upstream_error", "upstream_server_error", NULL,
				"the provider failed (HTTP %ld)%s%s", status, msg[0] ? ": " : "", msg);
	}
}

void oai_free_state(struct xlate *x)
{
	free(x->state);
	x->state = NULL;
}
