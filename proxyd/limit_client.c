/* limit_client.c - see limit_client.h.
 *
 * A REQ socket must alternate send/receive; after a timeout it is stuck
 * waiting for an answer that may never come, so it is closed and the next
 * call makes a fresh one (which also picks up a restarted limiterd).  The
 * context and socket are created on first use, so a limiter opened before a
 * fork is still safe to use in the child as long as it was not used yet.
 *
 * Settles and connection events do not wait for their answer: it is
 * collected at the start of the next call (or at close), so the answer to
 * a client never waits on bookkeeping that follows it. */
#include "limit_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "limitproto.h"

#define LIMIT_ENDPOINT_MAX 256
#define LIMIT_RECONNECT_IVL_MS 20 /* ipc reconnects are cheap; notice a restart soon */

_Static_assert(LIMIT_MAX_SPECS == LP_MAX_SPECS, "limit_client and limitproto agree on specs");

struct limiter {
	char endpoint[LIMIT_ENDPOINT_MAX];
	int timeout_ms;
	void *ctx;
	void *sock;
	int last_denied; /* enum lp_denied of the last reserve, for its settle */
	int pending;     /* answer type still owed for a send_async, or 0 */
	struct buf tx;
};

struct limiter *limiter_open(const char *endpoint, int timeout_ms)
{
	if (!endpoint || strlen(endpoint) >= LIMIT_ENDPOINT_MAX)
		return NULL;
	struct limiter *l = xcalloc(1, sizeof *l);
	snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
	l->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	buf_init(&l->tx);
	return l;
}

static void drop_socket(struct limiter *l)
{
	if (l->sock)
		zmq_close(l->sock); /* ZMQ_LINGER=0: nothing waits for a dead peer */
	l->sock = NULL;
}

static int collect_pending(struct limiter *l, int64_t deadline);

void limiter_close(struct limiter *l)
{
	if (!l)
		return;
	/* LINGER=0 would drop a queued settle: wait (bounded) for its answer */
	collect_pending(l, mono_ms() + l->timeout_ms);
	drop_socket(l);
	if (l->ctx)
		zmq_ctx_term(l->ctx);
	buf_free(&l->tx);
	free(l);
}

static int ensure_socket(struct limiter *l)
{
	if (l->sock)
		return 0;
	if (!l->ctx) {
		l->ctx = zmq_ctx_new();
		if (!l->ctx)
			return -1;
		zmq_ctx_set(l->ctx, ZMQ_BLOCKY, 0);
	}
	l->sock = zmq_socket(l->ctx, ZMQ_REQ);
	if (!l->sock)
		return -1;
	int zero = 0, one = 1, ivl = LIMIT_RECONNECT_IVL_MS;
	int64_t maxmsg = LP_MAX_METRICS + 2;
	zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof zero);
	/* queue nothing for a peer that is not there: the send waits (bounded)
	 * for a live connection instead */
	zmq_setsockopt(l->sock, ZMQ_IMMEDIATE, &one, sizeof one);
	zmq_setsockopt(l->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
	zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
	if (zmq_connect(l->sock, l->endpoint) < 0) {
		drop_socket(l);
		return -1;
	}
	return 0;
}

int limiter_connect(struct limiter *l) { return ensure_socket(l); }

/* Waits up to ms for events on the socket; 1 ready, 0 not. */
static int wait_for(struct limiter *l, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left < 0)
			left = 0;
		zmq_pollitem_t it = {l->sock, 0, events, 0};
		int rc = zmq_poll(&it, 1, (long)left);
		if (rc > 0)
			return 1;
		if (rc == 0 || zmq_errno() != EINTR || left == 0)
			return 0;
	}
}

/* Receives the answer owed for an earlier send_async.  0 ok (or nothing
 * owed), -1 when it did not come in time (the socket is then dropped). */
static int collect_pending(struct limiter *l, int64_t deadline)
{
	int want = l->pending;
	if (!want || !l->sock)
		return 0;
	l->pending = 0;
	struct lp_msg a;
	zmq_msg_t keep;
	int ok = 0;
	if (wait_for(l, ZMQ_POLLIN, deadline)) {
		zmq_msg_init(&keep);
		if (zmq_msg_recv(&keep, l->sock, ZMQ_DONTWAIT) >= 0)
			ok = !zmq_msg_more(&keep) &&
			     lp_decode(zmq_msg_data(&keep), zmq_msg_size(&keep), &a) == 0 && a.type == want;
		zmq_msg_close(&keep);
	}
	if (ok)
		return 0;
	drop_socket(l);
	return -1;
}

/* Encodes and sends m once any owed answer is in.  0 sent; -1 failed (the
 * socket is dropped when it was the send that failed). */
static int send_msg(struct limiter *l, const struct lp_msg *m, int64_t deadline)
{
	collect_pending(l, deadline);
	buf_reset(&l->tx);
	if (lp_encode(m, &l->tx) < 0 || ensure_socket(l) < 0)
		return -1;
	if (!wait_for(l, ZMQ_POLLOUT, deadline) ||
	    zmq_send(l->sock, l->tx.data, l->tx.len, ZMQ_DONTWAIT) < 0) {
		drop_socket(l);
		return -1;
	}
	return 0;
}

/* Sends m without waiting for the answer (of type want). */
static int send_async(struct limiter *l, const struct lp_msg *m, int want)
{
	if (send_msg(l, m, mono_ms() + l->timeout_ms) < 0)
		return -1;
	l->pending = want;
	return 0;
}

/* Sends m and decodes the answer into ans, expecting type want.  On any
 * failure (timeout, bad answer, error answer) the socket is dropped and -1
 * returned.  ans->u.metrics.text points into *keep, which the caller closes. */
static int call(struct limiter *l, const struct lp_msg *m, int want, struct lp_msg *ans,
		zmq_msg_t *keep)
{
	int64_t deadline = mono_ms() + l->timeout_ms;
	if (send_msg(l, m, deadline) < 0)
		return -1;
	if (!wait_for(l, ZMQ_POLLIN, deadline))
		goto fail;
	zmq_msg_init(keep);
	if (zmq_msg_recv(keep, l->sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(keep);
		goto fail;
	}
	if (zmq_msg_more(keep) || lp_decode(zmq_msg_data(keep), zmq_msg_size(keep), ans) < 0 ||
	    ans->type != want) {
		if (ans->type == LP_ERROR)
			log_msg("limiterd refused our message: %s", ans->u.error.message);
		zmq_msg_close(keep);
		goto fail;
	}
	return 0;
fail:
	drop_socket(l);
	return -1;
}

static int64_t clamp_count(int64_t v) { return v < 0 ? 0 : v > LP_MAX_COUNT ? LP_MAX_COUNT : v; }

int limiter_reserve(struct limiter *l, const struct limit_reserve_req *req, struct limit_answer *ans)
{
	struct lp_msg m, a;
	zmq_msg_t keep;

	memset(&m, 0, sizeof m);
	m.type = LP_RESERVE;
	if (req->nspecs < 0 || req->nspecs > LIMIT_MAX_SPECS)
		return -1;
	m.u.reserve.nspecs = req->nspecs;
	m.u.reserve.est_tokens = clamp_count(req->est_tokens);
	for (int i = 0; i < req->nspecs; i++) {
		const struct limit_spec *s = &req->specs[i];
		struct lp_spec *d = &m.u.reserve.specs[i];
		snprintf(d->key, sizeof d->key, "%s", s->key);
		d->rps = s->rps;
		d->burst = s->burst;
		d->rpm = s->rpm;
		d->tpm = s->tpm;
	}
	l->last_denied = LP_DENIED_NONE;
	if (call(l, &m, LP_RESERVE_ANS, &a, &keep) < 0)
		return -1;
	zmq_msg_close(&keep);

	const struct lp_reserve_ans *r = &a.u.reserve_ans;
	memset(ans, 0, sizeof *ans);
	ans->allowed = r->allowed;
	snprintf(ans->denied_type, sizeof ans->denied_type, "%s", lp_denied_name(r->denied_type));
	snprintf(ans->denied_key, sizeof ans->denied_key, "%s", r->denied_key);
	ans->retry_after_ms = r->retry_after_ms;
	ans->reservation = r->reservation;
	ans->limit_requests = r->limit_requests;
	ans->remaining_requests = r->remaining_requests;
	ans->reset_requests_ms = r->reset_requests_ms;
	ans->limit_tokens = r->limit_tokens;
	ans->remaining_tokens = r->remaining_tokens;
	ans->reset_tokens_ms = r->reset_tokens_ms;
	l->last_denied = r->allowed ? LP_DENIED_NONE : r->denied_type;
	return 0;
}

/* Copies a label, replacing control bytes the protocol refuses. */
static void copy_label(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
	for (char *p = dst; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = '?';
}


int limiter_settle(struct limiter *l, const struct limit_settle_req *req)
{
	struct lp_msg m;

	memset(&m, 0, sizeof m);
	m.type = LP_SETTLE;
	struct lp_settle *s = &m.u.settle;
	s->reservation = req->reservation;
	s->prompt_tokens = clamp_count(req->prompt_tokens);
	s->completion_tokens = clamp_count(req->completion_tokens);
	s->status = req->status < 0 || req->status > 999 ? 0 : req->status;
	s->latency_ms = clamp_count(req->latency_ms);
	/* denied is a flag in limit_client.h: the type (requests or tokens)
	 * comes from this connection's last reserve, which is the one that was
	 * denied since a proxyd runs one request at a time */
	if (req->denied)
		s->denied = req->denied == LP_DENIED_TOKENS ? LP_DENIED_TOKENS
			    : l->last_denied                ? l->last_denied
							    : LP_DENIED_REQUESTS;
	l->last_denied = LP_DENIED_NONE;
	copy_label(s->vkey_id, sizeof s->vkey_id, req->vkey_id);
	copy_label(s->asg_id, sizeof s->asg_id, req->asg_id);
	copy_label(s->alias, sizeof s->alias, req->alias);
	copy_label(s->provider, sizeof s->provider, req->provider);
	return send_async(l, &m, LP_SETTLE_ANS);
}

int limiter_conn_event(struct limiter *l, int delta)
{
	struct lp_msg m;
	memset(&m, 0, sizeof m);
	m.type = LP_CONN_EVENT;
	m.u.conn_delta = delta < 0 ? -1 : 1;
	return send_async(l, &m, LP_CONN_ANS);
}

int limiter_metrics(struct limiter *l, struct buf *out)
{
	struct lp_msg m, a;
	zmq_msg_t keep;
	memset(&m, 0, sizeof m);
	m.type = LP_METRICS;
	if (call(l, &m, LP_METRICS_ANS, &a, &keep) < 0)
		return -1;
	buf_append(out, a.u.metrics.text, a.u.metrics.len);
	zmq_msg_close(&keep);
	return 0;
}
