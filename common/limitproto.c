/* limitproto.c - see limitproto.h.  The encoder and the decoder share one
 * set of validators, so a message the encoder produces is exactly a message
 * the decoder accepts. */
#include "limitproto.h"

#include <math.h>
#include <string.h>

/* ---- validation (shared by both directions) ---- */

static int count_ok(int64_t v) { return v >= 0 && v <= LP_MAX_COUNT; }
static int opt_count_ok(int64_t v) { return v >= -1 && v <= LP_MAX_COUNT; }

/* Keys name buckets: printable ASCII without spaces, 1..LP_KEY_MAX-1 bytes. */
static int key_ok(const char *k)
{
	size_t n = strnlen(k, LP_KEY_MAX);
	if (n == 0 || n >= LP_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return 0;
	return 1;
}

/* Labels (ids, alias, provider): no control bytes; UTF-8 passes through. */
static int label_ok(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	if (n >= cap)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return 0;
	return 1;
}

static int reserve_ok(const struct lp_reserve *r)
{
	if (r->nspecs < 0 || r->nspecs > LP_MAX_SPECS || !count_ok(r->est_tokens))
		return 0;
	for (int i = 0; i < r->nspecs; i++) {
		const struct lp_spec *s = &r->specs[i];
		if (!key_ok(s->key) || !isfinite(s->rps) || s->rps < 0 || s->rps > LP_MAX_RATE ||
		    !count_ok(s->burst) || !count_ok(s->rpm) || !count_ok(s->tpm))
			return 0;
		for (int j = 0; j < i; j++)
			if (strcmp(r->specs[j].key, s->key) == 0)
				return 0; /* one spec per bucket owner */
	}
	return 1;
}

static int reserve_ans_ok(const struct lp_reserve_ans *a)
{
	if (a->allowed != 0 && a->allowed != 1)
		return 0;
	if (a->allowed ? a->denied_type != LP_DENIED_NONE
		       : (a->denied_type != LP_DENIED_REQUESTS && a->denied_type != LP_DENIED_TOKENS))
		return 0;
	if (strnlen(a->denied_key, LP_KEY_MAX) >= LP_KEY_MAX ||
	    (a->denied_key[0] && !key_ok(a->denied_key)))
		return 0;
	return count_ok(a->retry_after_ms) && opt_count_ok(a->limit_requests) &&
	       opt_count_ok(a->remaining_requests) && opt_count_ok(a->reset_requests_ms) &&
	       opt_count_ok(a->limit_tokens) && opt_count_ok(a->remaining_tokens) &&
	       opt_count_ok(a->reset_tokens_ms);
}

static int settle_ok(const struct lp_settle *s)
{
	return count_ok(s->prompt_tokens) && count_ok(s->completion_tokens) &&
	       s->status >= 0 && s->status <= 999 && count_ok(s->latency_ms) &&
	       s->denied >= LP_DENIED_NONE && s->denied <= LP_DENIED_TOKENS &&
	       label_ok(s->vkey_id, sizeof s->vkey_id) && label_ok(s->asg_id, sizeof s->asg_id) &&
	       label_ok(s->alias, sizeof s->alias) && label_ok(s->provider, sizeof s->provider);
}

static int error_code_ok(int c) { return c <= LP_E_SHORT && c >= LP_E_TRAILING; }

/* ---- encoder ---- */

struct wr {
	unsigned char b[LP_MAX_MSG];
	size_t n;
	int overflow;
};

static void w_bytes(struct wr *w, const void *p, size_t n)
{
	if (w->overflow || n > sizeof w->b - w->n) {
		w->overflow = 1;
		return;
	}
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void w_u8(struct wr *w, unsigned v)
{
	unsigned char c = (unsigned char)v;
	w_bytes(w, &c, 1);
}

static void w_u64(struct wr *w, uint64_t v)
{
	unsigned char c[8];
	for (int i = 0; i < 8; i++)
		c[i] = (unsigned char)(v >> (8 * i));
	w_bytes(w, c, 8);
}

static void w_i64(struct wr *w, int64_t v) { w_u64(w, (uint64_t)v); }

static void w_i32(struct wr *w, int32_t v)
{
	uint32_t u = (uint32_t)v;
	unsigned char c[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
			      (unsigned char)(u >> 24)};
	w_bytes(w, c, 4);
}

static void w_f64(struct wr *w, double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof u);
	w_u64(w, u);
}

/* Strings were validated to be shorter than 256 by their buffer sizes. */
static void w_str(struct wr *w, const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);
	w_u8(w, (unsigned)n);
	w_bytes(w, s, n);
}

int lp_encode(const struct lp_msg *m, struct buf *out)
{
	struct wr w;
	w.n = 0;
	w.overflow = 0;

	if (m->type == LP_METRICS_ANS) {
		if (m->u.metrics.len > LP_MAX_METRICS || (m->u.metrics.len && !m->u.metrics.text))
			return LP_E_SIZE;
		unsigned char hdr[2] = {LP_VERSION, LP_METRICS_ANS};
		buf_append(out, hdr, 2);
		if (m->u.metrics.len)
			buf_append(out, m->u.metrics.text, m->u.metrics.len);
		return 0;
	}

	w_u8(&w, LP_VERSION);
	w_u8(&w, (unsigned)m->type);
	switch (m->type) {
	case LP_PING:
	case LP_PONG:
	case LP_METRICS:
	case LP_SETTLE_ANS:
	case LP_CONN_ANS:
		break;
	case LP_RESERVE: {
		const struct lp_reserve *r = &m->u.reserve;
		if (!reserve_ok(r))
			return LP_E_VALUE;
		w_u8(&w, (unsigned)r->nspecs);
		for (int i = 0; i < r->nspecs; i++) {
			w_str(&w, r->specs[i].key, sizeof r->specs[i].key);
			w_f64(&w, r->specs[i].rps);
			w_i64(&w, r->specs[i].burst);
			w_i64(&w, r->specs[i].rpm);
			w_i64(&w, r->specs[i].tpm);
		}
		w_i64(&w, r->est_tokens);
		break;
	}
	case LP_RESERVE_ANS: {
		const struct lp_reserve_ans *a = &m->u.reserve_ans;
		if (!reserve_ans_ok(a))
			return LP_E_VALUE;
		w_u8(&w, (unsigned)a->allowed);
		w_u8(&w, (unsigned)a->denied_type);
		w_str(&w, a->denied_key, sizeof a->denied_key);
		w_i64(&w, a->retry_after_ms);
		w_u64(&w, a->reservation);
		w_i64(&w, a->limit_requests);
		w_i64(&w, a->remaining_requests);
		w_i64(&w, a->reset_requests_ms);
		w_i64(&w, a->limit_tokens);
		w_i64(&w, a->remaining_tokens);
		w_i64(&w, a->reset_tokens_ms);
		break;
	}
	case LP_SETTLE: {
		const struct lp_settle *s = &m->u.settle;
		if (!settle_ok(s))
			return LP_E_VALUE;
		w_u64(&w, s->reservation);
		w_i64(&w, s->prompt_tokens);
		w_i64(&w, s->completion_tokens);
		w_i32(&w, s->status);
		w_i64(&w, s->latency_ms);
		w_u8(&w, (unsigned)s->denied);
		w_str(&w, s->vkey_id, sizeof s->vkey_id);
		w_str(&w, s->asg_id, sizeof s->asg_id);
		w_str(&w, s->alias, sizeof s->alias);
		w_str(&w, s->provider, sizeof s->provider);
		break;
	}
	case LP_CONN_EVENT:
		if (m->u.conn_delta != 1 && m->u.conn_delta != -1)
			return LP_E_VALUE;
		w_i32(&w, m->u.conn_delta);
		break;
	case LP_ERROR:
		if (!error_code_ok(m->u.error.code) ||
		    !label_ok(m->u.error.message, sizeof m->u.error.message))
			return LP_E_VALUE;
		w_u8(&w, (unsigned)-m->u.error.code);
		w_str(&w, m->u.error.message, sizeof m->u.error.message);
		break;
	default:
		return LP_E_TYPE;
	}
	if (w.overflow)
		return LP_E_SIZE;
	buf_append(out, w.b, w.n);
	return 0;
}

/* ---- decoder ---- */

struct rd {
	const unsigned char *p;
	size_t left;
	int err; /* first error seen, 0 if none */
};

static int r_bytes(struct rd *r, void *dst, size_t n)
{
	if (r->err)
		return -1;
	if (n > r->left) {
		r->err = LP_E_SHORT;
		return -1;
	}
	memcpy(dst, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

static unsigned r_u8(struct rd *r)
{
	unsigned char c = 0;
	r_bytes(r, &c, 1);
	return c;
}

static uint64_t r_u64(struct rd *r)
{
	unsigned char c[8] = {0};
	uint64_t v = 0;
	r_bytes(r, c, 8);
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | c[i];
	return v;
}

static int64_t r_i64(struct rd *r) { return (int64_t)r_u64(r); }

static int32_t r_i32(struct rd *r)
{
	unsigned char c[4] = {0};
	r_bytes(r, c, 4);
	uint32_t u = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
	return (int32_t)u;
}

static double r_f64(struct rd *r)
{
	uint64_t u = r_u64(r);
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

/* Reads a string into dst (cap bytes with the NUL); rejects longer strings
 * and embedded NULs. */
static void r_str(struct rd *r, char *dst, size_t cap)
{
	dst[0] = '\0';
	unsigned n = r_u8(r);
	if (r->err)
		return;
	if (n >= cap) {
		r->err = LP_E_SIZE;
		return;
	}
	if (r_bytes(r, dst, n) < 0)
		return;
	dst[n] = '\0';
	if (memchr(dst, '\0', n))
		r->err = LP_E_VALUE;
}

int lp_decode(const void *data, size_t len, struct lp_msg *m)
{
	const unsigned char *p = data;
	struct rd r;

	memset(m, 0, sizeof *m);
	if (len < 2)
		return LP_E_SHORT;
	if (p[0] != LP_VERSION)
		return LP_E_VERSION;
	m->type = p[1];
	if (m->type == LP_METRICS_ANS) {
		if (len - 2 > LP_MAX_METRICS)
			return LP_E_SIZE;
		m->u.metrics.text = (const char *)p + 2;
		m->u.metrics.len = len - 2;
		return 0;
	}
	if (len > LP_MAX_MSG)
		return LP_E_SIZE;
	r.p = p + 2;
	r.left = len - 2;
	r.err = 0;

	int ok = 1;
	switch (m->type) {
	case LP_PING:
	case LP_PONG:
	case LP_METRICS:
	case LP_SETTLE_ANS:
	case LP_CONN_ANS:
		break;
	case LP_RESERVE: {
		struct lp_reserve *q = &m->u.reserve;
		unsigned n = r_u8(&r);
		if (!r.err && n > LP_MAX_SPECS)
			return LP_E_VALUE;
		q->nspecs = (int)n;
		for (unsigned i = 0; i < n && !r.err; i++) {
			r_str(&r, q->specs[i].key, sizeof q->specs[i].key);
			q->specs[i].rps = r_f64(&r);
			q->specs[i].burst = r_i64(&r);
			q->specs[i].rpm = r_i64(&r);
			q->specs[i].tpm = r_i64(&r);
		}
		q->est_tokens = r_i64(&r);
		ok = reserve_ok(q);
		break;
	}
	case LP_RESERVE_ANS: {
		struct lp_reserve_ans *a = &m->u.reserve_ans;
		a->allowed = (int)r_u8(&r);
		a->denied_type = (int)r_u8(&r);
		r_str(&r, a->denied_key, sizeof a->denied_key);
		a->retry_after_ms = r_i64(&r);
		a->reservation = r_u64(&r);
		a->limit_requests = r_i64(&r);
		a->remaining_requests = r_i64(&r);
		a->reset_requests_ms = r_i64(&r);
		a->limit_tokens = r_i64(&r);
		a->remaining_tokens = r_i64(&r);
		a->reset_tokens_ms = r_i64(&r);
		ok = reserve_ans_ok(a);
		break;
	}
	case LP_SETTLE: {
		struct lp_settle *s = &m->u.settle;
		s->reservation = r_u64(&r);
		s->prompt_tokens = r_i64(&r);
		s->completion_tokens = r_i64(&r);
		s->status = r_i32(&r);
		s->latency_ms = r_i64(&r);
		s->denied = (int)r_u8(&r);
		r_str(&r, s->vkey_id, sizeof s->vkey_id);
		r_str(&r, s->asg_id, sizeof s->asg_id);
		r_str(&r, s->alias, sizeof s->alias);
		r_str(&r, s->provider, sizeof s->provider);
		ok = settle_ok(s);
		break;
	}
	case LP_CONN_EVENT:
		m->u.conn_delta = r_i32(&r);
		ok = m->u.conn_delta == 1 || m->u.conn_delta == -1;
		break;
	case LP_ERROR:
		m->u.error.code = -(int)r_u8(&r);
		r_str(&r, m->u.error.message, sizeof m->u.error.message);
		ok = error_code_ok(m->u.error.code) &&
		     label_ok(m->u.error.message, sizeof m->u.error.message);
		break;
	default:
		return LP_E_TYPE;
	}
	if (r.err)
		return r.err;
	if (r.left)
		return LP_E_TRAILING;
	return ok ? 0 : LP_E_VALUE;
}

const char *lp_strerror(int code)
{
	switch (code) {
	case 0: return "ok";
	case LP_E_SHORT: return "truncated message";
	case LP_E_VERSION: return "unknown protocol version";
	case LP_E_TYPE: return "unknown message type";
	case LP_E_SIZE: return "message or field too large";
	case LP_E_VALUE: return "field out of range";
	case LP_E_TRAILING: return "trailing bytes";
	default: return "unknown error";
	}
}

const char *lp_denied_name(int d)
{
	return d == LP_DENIED_REQUESTS ? "requests" : d == LP_DENIED_TOKENS ? "tokens" : "";
}

int lp_denied_parse(const char *s)
{
	if (s && strcmp(s, "requests") == 0)
		return LP_DENIED_REQUESTS;
	if (s && strcmp(s, "tokens") == 0)
		return LP_DENIED_TOKENS;
	return LP_DENIED_NONE;
}
