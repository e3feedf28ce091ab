/* handler.c - the request path (DESIGN.md §4).  One client connection,
 * requests served one at a time: parse, authenticate the virtual key,
 * resolve the alias to its routes, ask limiterd, decrypt the one
 * credential needed, let the provider's adapter build the upstream call,
 * relay or translate the answer, settle usage and log one line. */
#include "handler.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapter.h"
#include "http.h"
#include "limit_client.h"
#include "sse.h"
#include "store.h"
#include "upstream.h"
#include "vault.h"

volatile sig_atomic_t handler_busy;

/* Everything one request needs; lives on handle_request's stack. */
struct req_ctx {
	const struct proxyd_config *cfg;
	struct store *st;
	struct http_conn *hc;
	struct limiter *lim;
	struct http_request *req;
	int keep_alive;
	int close_after;     /* the connection cannot be reused */
	char request_id[40];
	int64_t t0;

	struct vkey_row vk;
	int authed;

	/* for the log line and the ledger */
	const char *alias;
	char provider[16];   /* copies: the routes are freed before the log line */
	char asg_id[48];
	int status;
	int attempts;
	int64_t prompt_tokens, completion_tokens;

	/* rate-limit headers of the route that answered */
	struct limit_answer la;
	int have_la;

	/* streaming */
	struct xlate *x;
	struct sse_parser sse;
	struct buf out;
	int stream_started;
	int stream_failed;
	int client_gone;
	struct proxy_error serr;
};

/* ---- response helpers ---------------------------------------------- */

static void fmt_duration(int64_t ms, char *out, size_t n)
{
	if (ms < 0)
		ms = 0;
	if (ms < 1000)
		snprintf(out, n, "%lldms", (long long)ms);
	else if (ms < 60000)
		snprintf(out, n, "%.3gs", (double)ms / 1000.0);
	else
		snprintf(out, n, "%lldm%llds", (long long)(ms / 60000), (long long)(ms % 60000 / 1000));
}

/* The headers every proxied answer carries. */
static void common_headers(struct req_ctx *rc, struct buf *h)
{
	buf_printf(h, "x-request-id: %s\r\nx-llmproxy-pid: %ld\r\n", rc->request_id, (long)getpid());
	if (!rc->have_la)
		return;
	char d[32];
	const struct limit_answer *a = &rc->la;
	if (a->limit_requests >= 0) {
		fmt_duration(a->reset_requests_ms, d, sizeof d);
		buf_printf(h,
			   "x-ratelimit-limit-requests: %lld\r\n"
			   "x-ratelimit-remaining-requests: %lld\r\n"
			   "x-ratelimit-reset-requests: %s\r\n",
			   (long long)a->limit_requests,
			   (long long)(a->remaining_requests < 0 ? 0 : a->remaining_requests), d);
	}
	if (a->limit_tokens >= 0) {
		fmt_duration(a->reset_tokens_ms, d, sizeof d);
		buf_printf(h,
			   "x-ratelimit-limit-tokens: %lld\r\n"
			   "x-ratelimit-remaining-tokens: %lld\r\n"
			   "x-ratelimit-reset-tokens: %s\r\n",
			   (long long)a->limit_tokens,
			   (long long)(a->remaining_tokens < 0 ? 0 : a->remaining_tokens), d);
	}
}

static cJSON *error_json(const struct proxy_error *e)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *er = cJSON_AddObjectToObject(o, "error");
	cJSON_AddStringToObject(er, "message", e->message);
	if (e->type)
		cJSON_AddStringToObject(er, "type", e->type);
	else
		cJSON_AddNullToObject(er, "type");
	if (e->param)
		cJSON_AddStringToObject(er, "param", e->param);
	else
		cJSON_AddNullToObject(er, "param");
	if (e->code)
		cJSON_AddStringToObject(er, "code", e->code);
	else
		cJSON_AddNullToObject(er, "code");
	return o;
}

/* The one place client-visible errors are written. */
static void respond_error(struct req_ctx *rc, const struct proxy_error *e, const char *extra)
{
	struct buf h;
	buf_init(&h);
	common_headers(rc, &h);
	if (extra)
		buf_puts(&h, extra);
	cJSON *o = error_json(e);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (rc->close_after)
		rc->keep_alive = 0;
	if (http_respond(rc->hc, e->status, "application/json", h.data, s, strlen(s), rc->keep_alive))
		rc->keep_alive = 0;
	rc->status = e->status;
	cJSON_free(s);
	buf_free(&h);
}

static void fail(struct req_ctx *rc, int status, const char *type, const char *code,
		 const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void fail(struct req_ctx *rc, int status, const char *type, const char *code,
		 const char *param, const char *fmt, ...)
{
	struct proxy_error e = {.status = status, .type = type, .code = code, .param = param};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.message, sizeof e.message, fmt, ap);
	va_end(ap);
	respond_error(rc, &e, NULL);
}

static void respond_json(struct req_ctx *rc, int status, const char *body, size_t len)
{
	struct buf h;
	buf_init(&h);
	if (rc->close_after)
		rc->keep_alive = 0;
	common_headers(rc, &h);
	if (http_respond(rc->hc, status, "application/json", h.data, body, len, rc->keep_alive))
		rc->keep_alive = 0;
	rc->status = status;
	buf_free(&h);
}

/* ---- authentication --------------------------------------------------- */

static const char *presented_key(const struct http_request *req)
{
	const char *a = http_get_header(req, "authorization");
	if (a) {
		if (ascii_ncasecmp(a, "Bearer ", 7) != 0)
			return NULL;
		a += 7;
		while (*a == ' ')
			a++;
		return *a ? a : NULL;
	}
	a = http_get_header(req, "api-key"); /* what Azure SDKs send */
	return a && *a ? a : NULL;
}

/* Before an early refusal (unknown route, wrong method, bad key): reads a
 * small body the client already sent, so the connection stays usable and
 * closing it does not reset the answer away.  A client waiting for
 * 100-continue has sent nothing; large or chunked bodies close instead. */
static void drain_small_body(struct req_ctx *rc)
{
	const struct http_request *req = rc->req;
	if (!rc->close_after || req->expect_continue || req->chunked ||
	    req->content_length < 0 || req->content_length > PROXYD_DRAIN_MAX_BYTES)
		return;
	if (http_read_body(rc->hc, rc->req) == HTTP_OK)
		rc->close_after = 0;
}

/* The 401 for a missing or bad key. */
static void auth_fail(struct req_ctx *rc, const char *msg)
{
	drain_small_body(rc);
	fail(rc, 401, "invalid_request_error", "invalid_api_key", NULL, "%s", msg);
}

/* 0 when the key is valid; otherwise the 401 has been sent. */
static int authenticate(struct req_ctx *rc)
{
	const char *key = presented_key(rc->req);
	if (!key) {
		auth_fail(rc, "You didn't provide an API key. Send your virtual key as "
			      "'Authorization: Bearer <key>'.");
		return -1;
	}
	unsigned char hash[32];
	vault_hash_vkey(rc->cfg->vkey_hkey, key, hash);
	int r = store_find_vkey_by_hash(rc->st, hash, &rc->vk);
	if (r < 0) {
		fail(rc, 500, "server_error", "store_error", NULL, "the proxy's store cannot be read");
		return -1;
	}
	if (r == 1) {
		auth_fail(rc, "Incorrect API key provided. Use a virtual key issued by this proxy.");
		return -1;
	}
	if (rc->vk.disabled) {
		auth_fail(rc, "This virtual key has been revoked.");
		return -1;
	}
	if (rc->vk.expires_at && wall_s() >= rc->vk.expires_at) {
		auth_fail(rc, "This virtual key has expired.");
		return -1;
	}
	rc->authed = 1;
	return 0;
}

/* ---- /v1/models --------------------------------------------------------- */

static void serve_models(struct req_ctx *rc, const char *one)
{
	struct alias_row *a = NULL;
	size_t n = 0;
	if (store_list_aliases(rc->st, rc->vk.id, &a, &n) < 0) {
		fail(rc, 500, "server_error", "store_error", NULL, "the proxy's store cannot be read");
		return;
	}
	cJSON *list = cJSON_CreateObject(), *found = NULL;
	cJSON_AddStringToObject(list, "object", "list");
	cJSON *data = cJSON_AddArrayToObject(list, "data");
	for (size_t i = 0; i < n; i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddStringToObject(m, "id", a[i].alias);
		cJSON_AddStringToObject(m, "object", "model");
		cJSON_AddNumberToObject(m, "created", (double)a[i].created_at);
		cJSON_AddStringToObject(m, "owned_by", a[i].owned_by ? a[i].owned_by : "llmproxy");
		if (one && strcmp(one, a[i].alias) == 0)
			found = m;
		cJSON_AddItemToArray(data, m);
	}
	if (one && !found) {
		fail(rc, 404, "invalid_request_error", "model_not_found", "model",
		     "The model '%.200s' does not exist or you do not have access to it.", one);
	} else {
		char *s = cJSON_PrintUnformatted(one ? found : list);
		respond_json(rc, 200, s, strlen(s));
		cJSON_free(s);
	}
	cJSON_Delete(list);
	store_free_aliases(a, n);
}

/* ---- streaming relay --------------------------------------------------- */

static int flush_out(struct req_ctx *rc)
{
	if (!rc->out.len)
		return 0;
	int r = http_stream_write(rc->hc, rc->out.data, rc->out.len);
	buf_reset(&rc->out);
	if (r) {
		rc->client_gone = 1;
		return -1;
	}
	return 0;
}

static int on_sse_event(void *ctx, const char *event, const char *data, size_t len)
{
	struct req_ctx *rc = ctx;
	(void)event;
	if (rc->x->ad->stream_event(rc->x, data, len, &rc->out, &rc->serr) < 0) {
		rc->stream_failed = 1;
		flush_out(rc);
		return 1;
	}
	return flush_out(rc) ? 1 : 0;
}

static int start_stream(struct req_ctx *rc)
{
	struct buf h;
	buf_init(&h);
	common_headers(rc, &h);
	buf_puts(&h, "X-Accel-Buffering: no\r\n");
	int r = http_stream_begin(rc->hc, 200, "text/event-stream; charset=utf-8", h.data,
				  rc->keep_alive);
	buf_free(&h);
	rc->stream_started = 1;
	rc->status = 200;
	if (r)
		rc->client_gone = 1;
	return r;
}

static int on_stream(void *ctx, long status, const char *p, size_t n)
{
	struct req_ctx *rc = ctx;
	(void)status;
	if (!rc->stream_started && start_stream(rc))
		return 1;
	int r = sse_feed(&rc->sse, p, n, on_sse_event, rc);
	if (r < 0) {
		proxy_error_set(&rc->serr, 502, "upstream_error", "bad_upstream_response", NULL,
				"the provider sent an oversized stream event");
		rc->stream_failed = 1;
	}
	return r != 0;
}

static int client_gone(void *ctx)
{
	struct req_ctx *rc = ctx;
	if (!rc->client_gone && http_peer_closed(rc->hc))
		rc->client_gone = 1;
	return rc->client_gone;
}

/* Ends a started stream: an SSE error event when it failed, never a clean
 * [DONE] for a broken upstream.  A stream that ended properly ([DONE]
 * seen) counts as complete whatever the connection did afterwards. */
static void finish_stream(struct req_ctx *rc, const struct upstream_result *res)
{
	struct buf scratch;
	if (!rc->client_gone && !rc->stream_failed && (res->outcome == UP_OK || rc->x->done)) {
		sse_finish(&rc->sse, on_sse_event, rc);
		if (!rc->stream_failed && rc->x->ad->stream_end(rc->x, &rc->out) < 0) {
			proxy_error_set(&rc->serr, 502, "upstream_error", "upstream_stream_broken", NULL,
					"the provider's stream ended before it was complete");
			rc->stream_failed = 1;
		}
	} else {
		/* let the adapter settle what it saw (its usage estimate for a
		 * stream cut short); nothing of this reaches the client */
		buf_init(&scratch);
		rc->x->ad->stream_end(rc->x, &scratch);
		buf_free(&scratch);
		if (!rc->stream_failed && !rc->client_gone) {
			log_msg("%s: upstream stream broke off: %s", rc->request_id, res->detail);
			proxy_error_set(&rc->serr, 502, "upstream_error", "upstream_stream_broken", NULL,
					"the provider's stream broke off before it was complete");
			rc->stream_failed = 1;
		}
	}
	if (rc->client_gone)
		return;
	if (rc->stream_failed) {
		cJSON *o = error_json(&rc->serr);
		sse_emit_json(&rc->out, o);
		cJSON_Delete(o);
		rc->status = rc->serr.status;
	}
	if (flush_out(rc) == 0 && http_stream_end(rc->hc))
		rc->client_gone = 1;
}

/* Frees an upstream header list, wiping it first: it carried the credential. */
static void free_headers(struct curl_slist *h)
{
	for (struct curl_slist *p = h; p; p = p->next)
		wipe(p->data, strlen(p->data));
	curl_slist_free_all(h);
}

/* ---- routing ------------------------------------------------------------ */

/* Orders routes by a weighted random draw without replacement. */
static void weighted_order(struct route *r, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint64_t total = 0;
		for (size_t j = i; j < n; j++)
			total += (uint64_t)(r[j].weight > 0 ? r[j].weight : 1);
		uint64_t pick;
		random_bytes(&pick, sizeof pick);
		pick %= total;
		size_t j = i;
		for (; j < n; j++) {
			uint64_t w = (uint64_t)(r[j].weight > 0 ? r[j].weight : 1);
			if (pick < w)
				break;
			pick -= w;
		}
		if (j != i && j < n) {
			struct route t = r[i];
			r[i] = r[j];
			r[j] = t;
		}
	}
}

static int64_t requested_completion(const cJSON *body, int64_t dflt)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens");
	if (!cJSON_IsNumber(m))
		m = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
	if (cJSON_IsNumber(m) && m->valuedouble > 0)
		/* no model writes more; and keeps the conversion defined */
		return m->valuedouble < PROXYD_MAX_COMPLETION_ESTIMATE ? (int64_t)m->valuedouble
								       : PROXYD_MAX_COMPLETION_ESTIMATE;
	return dflt;
}

static void fill_specs(struct limit_reserve_req *lr, const struct route *r, const struct vkey_row *vk)
{
	memset(lr, 0, sizeof *lr);
	struct limit_spec *s = &lr->specs[lr->nspecs++];
	snprintf(s->key, sizeof s->key, "asg:%s", r->asg_id);
	s->rps = r->rps;
	s->burst = r->burst;
	s->rpm = r->rpm;
	s->tpm = r->tpm;
	if (vk->rpm || vk->tpm) {
		s = &lr->specs[lr->nspecs++];
		snprintf(s->key, sizeof s->key, "vkey:%s", vk->id);
		s->rpm = vk->rpm;
		s->tpm = vk->tpm;
	}
	if (r->conn_rpm || r->conn_tpm) {
		s = &lr->specs[lr->nspecs++];
		snprintf(s->key, sizeof s->key, "conn:%s", r->conn_id);
		s->rpm = r->conn_rpm;
		s->tpm = r->conn_tpm;
	}
}

static void settle(struct req_ctx *rc, uint64_t reservation, const struct route *r, int denied)
{
	if (!rc->lim)
		return;
	struct limit_settle_req s = {
		.reservation = reservation,
		.prompt_tokens = rc->prompt_tokens,
		.completion_tokens = rc->completion_tokens,
		.status = rc->status,
		.latency_ms = mono_ms() - rc->t0,
		.denied = denied,
	};
	snprintf(s.vkey_id, sizeof s.vkey_id, "%s", rc->vk.id);
	snprintf(s.asg_id, sizeof s.asg_id, "%s", r ? r->asg_id : "");
	snprintf(s.alias, sizeof s.alias, "%s", rc->alias ? rc->alias : "");
	snprintf(s.provider, sizeof s.provider, "%s", r ? r->provider : "");
	limiter_settle(rc->lim, &s);
}

static void respond_rate_limited(struct req_ctx *rc, const struct limit_answer *a)
{
	rc->la = *a; /* the x-ratelimit-* headers of the bucket that said no */
	rc->have_la = 1;
	int64_t ms = a->retry_after_ms > 0 ? a->retry_after_ms : 1;
	char extra[128];
	snprintf(extra, sizeof extra, "Retry-After: %lld\r\nretry-after-ms: %lld\r\n",
		 (long long)((ms + 999) / 1000), (long long)ms);
	int tokens = strcmp(a->denied_type, "tokens") == 0;
	const char *scope = strncmp(a->denied_key, "vkey:", 5) == 0   ? "virtual key"
			    : strncmp(a->denied_key, "conn:", 5) == 0 ? "connection"
								      : "assignment";
	struct proxy_error e = {.status = 429, .type = tokens ? "tokens" : "requests",
				.code = "rate_limit_exceeded"};
	snprintf(e.message, sizeof e.message,
		 "Rate limit reached for model '%.128s' on %s per %s of the %s. "
		 "Please try again in %.3gs.",
		 rc->alias, tokens ? "tokens" : "requests",
		 tokens ? "minute" : (strcmp(scope, "assignment") == 0 ? "second/minute" : "minute"),
		 scope, (double)ms / 1000.0);
	respond_error(rc, &e, extra);
}

/* Turns one upstream exchange into the client's answer.  Returns 1 when
 * the client has been answered (or is gone); 0 with uerr filled and
 * *retryable set when the request failed before the provider did any
 * work, so another route may take it. */
static int answer(struct req_ctx *rc, const struct route *r, struct xlate *x,
		  struct upstream_result *res, struct proxy_error *uerr, int *retryable)
{
	int done = 0;
	*retryable = 0;
	if (res->streamed || rc->stream_started) {
		finish_stream(rc, res);
		done = 1;
	} else if (res->outcome == UP_CLIENT_GONE) {
		rc->client_gone = 1;
		rc->status = 499;
		done = 1;
	} else if (res->outcome == UP_OK && res->status >= 200 && res->status < 300) {
		struct buf outb;
		buf_init(&outb);
		if (x->ad->response(x, res->body.data, res->body.len, &outb, uerr) == 0) {
			respond_json(rc, 200, outb.data, outb.len);
			done = 1;
		}
		/* else: the provider did the work; resending it elsewhere would
		 * do (and bill) it twice */
		buf_free(&outb);
	} else if (res->outcome == UP_OK) {
		x->ad->error(x, res->status, res->body.data, res->body.len, uerr);
		*retryable = res->status == 429 || res->status >= 500;
	} else if (res->outcome == UP_TIMEOUT) {
		proxy_error_set(uerr, 504, "upstream_error", "upstream_timeout", NULL,
				"the provider behind '%.128s' did not answer in time", rc->alias);
		*retryable = !res->answered;
	} else if (res->outcome == UP_BROKEN) {
		proxy_error_set(uerr, 502, "upstream_error", "upstream_broken", NULL,
				"the provider's answer for '%.128s' broke off", rc->alias);
	} else {
		/* curl's reason names hosts and ports: the log gets it, the
		 * client does not */
		proxy_error_set(uerr, 502, "upstream_error", "upstream_unreachable", NULL,
				"the provider behind '%.128s' cannot be reached", rc->alias);
		*retryable = 1;
	}
	if (res->outcome != UP_OK && res->outcome != UP_CLIENT_GONE && !done)
		log_msg("%s: upstream %s via connection %s: %s", rc->request_id, r->provider,
			r->conn_name, res->detail);
	if (!done)
		rc->status = uerr->status;
	return done;
}

/* The tokens this attempt is charged, for the ledger and the token bucket:
 * the provider's usage, else (an answer without usage, a stream cut short)
 * the adapter's estimate of what it relayed, else nothing. */
static void account_usage(struct req_ctx *rc, const struct xlate *x, int done, int64_t prompt_est)
{
	if (x->usage.have) {
		rc->prompt_tokens = x->usage.prompt_tokens;
		rc->completion_tokens = x->usage.completion_tokens;
	} else if ((done && rc->status < 300) || rc->stream_started) {
		rc->prompt_tokens = x->usage.prompt_tokens ? x->usage.prompt_tokens : prompt_est;
		rc->completion_tokens = x->usage.completion_tokens;
	} else {
		rc->prompt_tokens = rc->completion_tokens = 0;
	}
}

/* Chat completions and embeddings. */
static void serve_proxy(struct req_ctx *rc, enum api_op op)
{
	cJSON *body = NULL;
	struct route *routes = NULL;
	size_t nroutes = 0;
	struct proxy_error last = {0};
	int have_last = 0;

	body = cJSON_ParseWithLength(rc->req->body ? rc->req->body : "", rc->req->body_len);
	if (!body) {
		fail(rc, 400, "invalid_request_error", "invalid_json", NULL,
		     "We could not parse the JSON body of your request. The body must be a JSON object.");
		goto out;
	}
	if (!cJSON_IsObject(body)) {
		fail(rc, 400, "invalid_request_error", "invalid_json", NULL,
		     "The request body must be a JSON object.");
		goto out;
	}
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
	if (!cJSON_IsString(model) || !model->valuestring[0]) {
		fail(rc, 400, "invalid_request_error", "missing_required_parameter", "model",
		     "you must provide a model parameter");
		goto out;
	}
	rc->alias = model->valuestring;
	const cJSON *stream = cJSON_GetObjectItemCaseSensitive(body, "stream");
	int is_stream = op == OP_CHAT && cJSON_IsTrue(stream);
	if (stream && !cJSON_IsBool(stream) && !cJSON_IsNull(stream)) {
		fail(rc, 400, "invalid_request_error", "invalid_type", "stream",
		     "'stream' must be a boolean");
		goto out;
	}
	const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
	if (so && !cJSON_IsNull(so) && !is_stream) {
		fail(rc, 400, "invalid_request_error", NULL, "stream_options",
		     "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
		goto out;
	}
	const cJSON *payload;
	if (op == OP_CHAT) {
		payload = cJSON_GetObjectItemCaseSensitive(body, "messages");
		if (!cJSON_IsArray(payload) || cJSON_GetArraySize(payload) == 0) {
			fail(rc, 400, "invalid_request_error",
			     cJSON_IsArray(payload) ? "empty_array" : "missing_required_parameter",
			     "messages", "'messages' must be a non-empty array of messages");
			goto out;
		}
	} else {
		payload = cJSON_GetObjectItemCaseSensitive(body, "input");
		if (!payload || cJSON_IsNull(payload)) {
			fail(rc, 400, "invalid_request_error", "missing_required_parameter", "input",
			     "you must provide an input parameter");
			goto out;
		}
	}
	int wants_usage = is_stream && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));

	if (store_find_routes(rc->st, rc->vk.id, rc->alias, &routes, &nroutes) < 0) {
		fail(rc, 500, "server_error", "store_error", NULL, "the proxy's store cannot be read");
		goto out;
	}
	/* keep the routes whose model does this operation */
	const char *want_kind = op == OP_CHAT ? "chat" : "embedding";
	size_t keep = 0;
	for (size_t i = 0; i < nroutes; i++) {
		if (strcmp(routes[i].kind, want_kind) == 0) {
			struct route t = routes[keep];
			routes[keep++] = routes[i];
			routes[i] = t;
		}
	}
	if (nroutes == 0) {
		fail(rc, 404, "invalid_request_error", "model_not_found", "model",
		     "The model '%.200s' does not exist or you do not have access to it.", rc->alias);
		goto out;
	}
	if (keep == 0) {
		fail(rc, 400, "invalid_request_error", "model_not_supported", "model",
		     "The model '%.200s' does not support %s.", rc->alias,
		     op == OP_CHAT ? "chat completions" : "embeddings");
		goto out;
	}
	weighted_order(routes, keep);

	int64_t prompt_est = estimate_tokens_json(payload);
	int64_t est = prompt_est + (op == OP_CHAT ? requested_completion(body, rc->cfg->completion_estimate) : 0);
	size_t max_attempts = (size_t)(rc->cfg->max_attempts > 0 ? rc->cfg->max_attempts : 1);
	struct limit_answer denial = {0};
	int denied = 0;

	for (size_t i = 0; i < keep && rc->attempts < (int)max_attempts; i++) {
		const struct route *r = &routes[i];
		const struct adapter *ad = adapter_for(r->provider);
		uint64_t reservation = 0;
		if (!ad) {
			proxy_error_set(&last, 500, "server_error", "bad_connection", NULL,
					"connection '%s' has an unknown provider", r->conn_name);
			have_last = 1;
			continue;
		}

		/* 1. the limiter */
		if (rc->lim) {
			struct limit_reserve_req lr;
			struct limit_answer a;
			fill_specs(&lr, r, &rc->vk);
			lr.est_tokens = est;
			if (limiter_reserve(rc->lim, &lr, &a) < 0) {
				if (!rc->cfg->fail_open) {
					fail(rc, 503, "server_error", "limiter_unavailable", NULL,
					     "The rate limiter is not answering; try again shortly.");
					goto out;
				}
				log_msg("limiterd not answering; passing request (fail-open)");
			} else if (!a.allowed) {
				denial = a;
				denied = 1;
				if (strncmp(a.denied_key, "vkey:", 5) == 0)
					break; /* the key itself is over: no route helps */
				continue; /* another assignment may have room */
			} else {
				rc->la = a;
				rc->have_la = 1;
				reservation = a.reservation;
			}
		}
		rc->attempts++;
		snprintf(rc->provider, sizeof rc->provider, "%s", r->provider);
		snprintf(rc->asg_id, sizeof rc->asg_id, "%s", r->asg_id);

		/* 2. the credential, for as short a time as possible */
		char *cred = NULL;
		size_t cred_len = 0;
		if (vault_open(rc->cfg->master, r->conn_id, r->secret, r->secret_len, &cred, &cred_len) < 0) {
			proxy_error_set(&last, 500, "server_error", "credential_unreadable", NULL,
					"the credential of connection '%s' cannot be decrypted "
					"(wrong master key?)", r->conn_name);
			have_last = 1;
			rc->status = 500;
			settle(rc, reservation, r, 0);
			continue;
		}

		struct xlate x = {.ad = ad, .op = op, .route = r, .alias = rc->alias, .stream = is_stream,
				  .client_wants_usage = wants_usage, .master = rc->cfg->master,
				  .prompt_estimate = prompt_est};
		struct upstream_req ur = {.is_stream = 0};
		struct proxy_error berr = {0};
		buf_init(&ur.url);
		buf_init(&ur.body);
		cJSON *copy = cJSON_Duplicate(body, 1);
		int brc = ad->build(&x, copy, cred, &ur, &berr);
		cJSON_Delete(copy);
		if (brc < 0) {
			free_secret(cred);
			if (ad->free_state)
				ad->free_state(&x);
			buf_free(&ur.url);
			buf_free(&ur.body);
			free_headers(ur.headers);
			rc->status = berr.status;
			settle(rc, reservation, r, 0);
			if (berr.status >= 500 && i + 1 < keep) {
				last = berr;
				have_last = 1;
				continue;
			}
			respond_error(rc, &berr, NULL);
			goto out;
		}

		/* 3. the upstream exchange */
		struct upstream_opts uo = {
			.connect_timeout_ms = rc->cfg->connect_timeout_ms,
			.first_byte_timeout_ms = rc->cfg->first_byte_timeout_ms,
			.request_timeout_ms = rc->cfg->request_timeout_ms,
			.stream_idle_timeout_ms = rc->cfg->stream_idle_timeout_ms,
			.max_body = PROXYD_MAX_UPSTREAM_BODY,
		};
		struct upstream_io io = {.on_stream = on_stream, .client_gone = client_gone, .ctx = rc};
		struct upstream_result res;
		rc->x = &x;
		sse_init(&rc->sse, SSE_MAX_EVENT_BYTES);
		buf_init(&rc->out);
		upstream_perform(&ur, &uo, &io, &res);
		free_headers(ur.headers);
		/* kept until now only to strike it from whatever the provider said
		 * back; an upstream that echoes a key of unknown shape is covered */
		scrub_exact(res.body.data, cred);
		free_secret(cred);
		buf_free(&ur.url);
		buf_free(&ur.body);

		int retryable = 0;
		struct proxy_error uerr = {0};
		int done = answer(rc, r, &x, &res, &uerr, &retryable);
		account_usage(rc, &x, done, prompt_est);
		settle(rc, reservation, r, 0);
		if (ad->free_state)
			ad->free_state(&x);
		sse_free(&rc->sse);
		buf_free(&rc->out);
		rc->x = NULL;

		if (done) {
			if (rc->client_gone)
				rc->keep_alive = 0;
			upstream_result_free(&res);
			goto out;
		}
		if (retryable && i + 1 < keep && rc->attempts < (int)max_attempts) {
			log_msg("%s: upstream %s answered %d via connection %s; trying the next route",
				rc->request_id, r->provider, uerr.status, r->conn_name);
			last = uerr;
			have_last = 1;
			upstream_result_free(&res);
			continue;
		}
		char extra[96] = "";
		if (uerr.status == 429 && res.retry_after[0])
			snprintf(extra, sizeof extra, "Retry-After: %s\r\n", res.retry_after);
		if (rc->attempts > 1)
			strncat(extra, "x-should-retry: false\r\n", sizeof extra - strlen(extra) - 1);
		respond_error(rc, &uerr, extra[0] ? extra : NULL);
		upstream_result_free(&res);
		goto out;
	}

	if (denied && (!have_last || rc->attempts == 0)) {
		rc->status = 429;
		respond_rate_limited(rc, &denial);
		settle(rc, 0, NULL, 1);
	} else if (have_last) {
		respond_error(rc, &last, rc->attempts > 1 ? "x-should-retry: false\r\n" : NULL);
	} else {
		fail(rc, 502, "upstream_error", "no_route", NULL,
		     "no upstream could take the request for '%.128s'", rc->alias);
	}
out:
	if (routes)
		store_free_routes(routes, nroutes);
	rc->alias = rc->alias ? xstrdup(rc->alias) : NULL; /* body is freed below */
	cJSON_Delete(body);
}

/* ---- dispatch ----------------------------------------------------------- */

enum route_kind { R_NONE, R_HEALTH, R_METRICS, R_CHAT, R_EMBED, R_MODELS, R_MODEL };

static enum route_kind match(const char *path, const char **want_method, const char **arg)
{
	*arg = NULL;
	if (strcmp(path, "/healthz") == 0) {
		*want_method = "GET";
		return R_HEALTH;
	}
	if (strcmp(path, "/metrics") == 0) {
		*want_method = "GET";
		return R_METRICS;
	}
	const char *p = strncmp(path, "/v1/", 4) == 0 ? path + 3 : path;
	if (strcmp(p, "/chat/completions") == 0) {
		*want_method = "POST";
		return R_CHAT;
	}
	if (strcmp(p, "/embeddings") == 0) {
		*want_method = "POST";
		return R_EMBED;
	}
	if (strcmp(p, "/models") == 0) {
		*want_method = "GET";
		return R_MODELS;
	}
	if (strncmp(p, "/models/", 8) == 0 && p[8]) {
		*want_method = "GET";
		*arg = p + 8;
		return R_MODEL;
	}
	return R_NONE;
}

/* A client-chosen string made safe for one log line. */
static void log_safe(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src && src[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = c < 0x20 || c == 0x7f || c == ' ' ? '?' : (char)c;
	}
	dst[i] = 0;
}

static void log_request(struct req_ctx *rc)
{
	char alias[96];
	log_safe(alias, sizeof alias, rc->alias ? rc->alias : "-");
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	log_msg("%s %s %s %s vkey=%s alias=%s provider=%s status=%d latency_ms=%lld "
		"prompt_tokens=%lld completion_tokens=%lld attempts=%d",
		ts, rc->request_id, rc->req->method, rc->req->path, rc->authed ? rc->vk.id : "-",
		alias, rc->provider[0] ? rc->provider : "-", rc->status,
		(long long)(mono_ms() - rc->t0), (long long)rc->prompt_tokens,
		(long long)rc->completion_tokens, rc->attempts);
}

static int has_body(const struct http_request *req)
{
	return req->chunked || req->content_length > 0;
}

/* Serves one parsed request.  Returns whether the connection may go on. */
static int handle_request(const struct proxyd_config *cfg, struct store *st, struct http_conn *hc,
			  struct limiter *lim, struct http_request *req)
{
	struct req_ctx rc = {.cfg = cfg, .st = st, .hc = hc, .lim = lim, .req = req,
			     .keep_alive = req->keep_alive, .t0 = mono_ms()};
	char rnd[25];
	random_alnum(rnd, 24);
	snprintf(rc.request_id, sizeof rc.request_id, "req_%s", rnd);

	const char *want = NULL, *arg = NULL;
	enum route_kind k = match(req->path, &want, &arg);
	/* a body we do not read makes the connection unusable */
	rc.close_after = has_body(req);

	if (k == R_NONE) {
		drain_small_body(&rc);
		fail(&rc, 404, "invalid_request_error", "unknown_url", NULL,
		     "Unknown request URL: %s %.200s.", req->method, req->path);
		goto done;
	}
	if (strcmp(req->method, want) != 0) {
		drain_small_body(&rc);
		char allow[64];
		snprintf(allow, sizeof allow, "Allow: %s\r\n", want);
		struct proxy_error e = {.status = 405, .type = "invalid_request_error",
					.code = "method_not_allowed"};
		snprintf(e.message, sizeof e.message, "Method %s is not allowed for %.200s; use %s.",
			 req->method, req->path, want);
		respond_error(&rc, &e, allow);
		goto done;
	}
	if (k == R_HEALTH) {
		static const char ok[] = "{\"status\":\"ok\"}";
		respond_json(&rc, 200, ok, sizeof ok - 1);
		goto done;
	}
	if (k == R_METRICS) {
		struct buf m;
		buf_init(&m);
		if (!lim || limiter_metrics(lim, &m) < 0) {
			buf_free(&m);
			fail(&rc, 503, "server_error", "limiter_unavailable", NULL,
			     "metrics come from limiterd, which is not answering");
			goto done;
		}
		struct buf h;
		buf_init(&h);
		common_headers(&rc, &h);
		if (http_respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", h.data, m.data,
				 m.len, rc.keep_alive))
			rc.keep_alive = 0;
		rc.status = 200;
		buf_free(&h);
		buf_free(&m);
		goto done;
	}
	if (authenticate(&rc) < 0)
		goto done;
	if (req->expect_continue && http_send_continue(hc)) {
		rc.keep_alive = 0;
		goto done;
	}
	if (has_body(req) || strcmp(req->method, "POST") == 0) {
		int r = http_read_body(hc, req);
		if (r != HTTP_OK) {
			rc.close_after = 1;
			if (r == 413)
				fail(&rc, 413, "invalid_request_error", "request_too_large", NULL,
				     "The request body is larger than this proxy accepts.");
			else if (r == 408)
				fail(&rc, 408, "invalid_request_error", "request_timeout", NULL,
				     "The request body did not arrive in time.");
			else
				fail(&rc, 400, "invalid_request_error", "bad_request", NULL,
				     "The request body is malformed.");
			goto done;
		}
	}
	rc.close_after = 0;
	if (k == R_MODELS || k == R_MODEL)
		serve_models(&rc, arg);
	else
		serve_proxy(&rc, k == R_CHAT ? OP_CHAT : OP_EMBEDDINGS);
done:
	log_request(&rc);
	if (rc.alias && (k == R_CHAT || k == R_EMBED))
		free((char *)rc.alias);
	return rc.keep_alive && !rc.close_after && !rc.client_gone;
}

/* Answers a request whose head could not be read (then the connection
 * closes: its framing can no longer be trusted). */
static void reject_head(struct http_conn *hc, int status)
{
	struct proxy_error e = {.status = status, .type = "invalid_request_error"};
	const char *msg;
	switch (status) {
	case 408: e.code = "request_timeout"; msg = "The request did not arrive in time."; break;
	case 413: e.code = "request_too_large"; msg = "The request body is larger than this proxy accepts."; break;
	case 431: e.code = "headers_too_large"; msg = "The request headers are too large."; break;
	case 501: e.code = "not_implemented"; msg = "This transfer coding or method is not supported."; break;
	case 505: e.code = "http_version_not_supported"; msg = "Only HTTP/1.0 and HTTP/1.1 are supported."; break;
	default: e.code = "bad_request"; msg = "The request is malformed."; break;
	}
	snprintf(e.message, sizeof e.message, "%s", msg);
	char rnd[25], extra[96];
	random_alnum(rnd, 24);
	snprintf(extra, sizeof extra, "x-request-id: req_%s\r\nx-llmproxy-pid: %ld\r\n", rnd, (long)getpid());
	cJSON *o = error_json(&e);
	char *s = cJSON_PrintUnformatted(o);
	http_respond(hc, status, "application/json", extra, s, strlen(s), 0);
	cJSON_free(s);
	cJSON_Delete(o);
	log_msg("rejected a request head: %d %s", status, e.code);
}

/* We end the connection while the client may still be sending (a refused
 * head, an unread body): closing with unread input makes the kernel answer
 * with a reset that can destroy the response still in flight.  Say we are
 * done writing, then read what still comes, briefly and boundedly. */
static void linger_close(int rfd, int wfd)
{
	char junk[4096];
	size_t total = 0;
	if (shutdown(wfd, SHUT_WR) < 0)
		return; /* not a socket */
	int64_t end = mono_ms() + PROXYD_LINGER_MS;
	while (total < PROXYD_LINGER_MAX_BYTES) {
		int64_t left = end - mono_ms();
		struct pollfd p = {.fd = rfd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		ssize_t n = read(rfd, junk, sizeof junk);
		if (n <= 0)
			break;
		total += (size_t)n;
	}
}

int handler_serve(const struct proxyd_config *cfg, struct store *st, struct limiter *lim, int rfd,
		  int wfd, volatile sig_atomic_t *stop)
{
	int we_close = 0;
	struct http_conn *hc = http_conn_new(rfd, wfd, &cfg->http);
	if (lim)
		limiter_conn_event(lim, +1);
	for (int n = 0; !*stop; n++) {
		struct http_request req;
		memset(&req, 0, sizeof req);
		int r = http_read_head(hc, &req);
		if (r == HTTP_CLOSED) {
			http_request_free(&req);
			break;
		}
		if (r != HTTP_OK) {
			reject_head(hc, r);
			http_request_free(&req);
			we_close = 1;
			break;
		}
		handler_busy = 1;
		int more = handle_request(cfg, st, hc, lim, &req);
		handler_busy = 0;
		http_request_free(&req);
		if (!more || (cfg->http.max_requests && n + 1 >= cfg->http.max_requests)) {
			we_close = 1;
			break;
		}
	}
	if (we_close)
		linger_close(rfd, wfd);
	if (lim)
		limiter_conn_event(lim, -1);
	http_conn_free(hc);
	upstream_cleanup();
	return 0;
}
