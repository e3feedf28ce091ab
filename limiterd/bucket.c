/* bucket.c - see bucket.h.
 *
 * Keys and reservations live in slot arrays that grow up to their bound;
 * slots are named by index (not pointer) so growing never invalidates a
 * link.  Each array has a chained hash index and a doubly linked list:
 * keys in least-recently-used order, reservations in creation order (which
 * is also expiry order, the TTL being constant). */
#include "bucket.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define EPS 1e-6 /* slack for float refill arithmetic */
#define NIL (-1)

struct tb {
	double level;
	double cap;  /* <= 0: this bucket does not exist */
	double rate; /* per millisecond */
};

struct key_entry {
	char key[LP_KEY_MAX];
	uint64_t hash;
	int32_t hnext;      /* hash chain, or free list */
	int32_t prev, next; /* LRU list, head = most recently used */
	int64_t last_ms;    /* levels are as of this time */
	int64_t used_ms;    /* last reserve */
	struct tb req, rpm, tok;
};

struct resv {
	uint64_t id;
	int64_t expires_ms;
	int64_t tokens;
	int nkeys;
	char keys[LP_MAX_SPECS][LP_KEY_MAX];
	double charged[LP_MAX_SPECS]; /* taken from each key's bucket */
	int32_t hnext;      /* hash chain, or free list */
	int32_t prev, next; /* creation order, head = oldest */
};

struct bucket_set {
	int64_t ttl_ms;
	uint64_t next_id;
	uint64_t evicted;

	struct key_entry *k;
	size_t kmax, kcap, kcount;
	int32_t kfree;
	int32_t *khead;
	size_t kmask;
	int32_t lru_head, lru_tail;

	struct resv *r;
	size_t rmax, rcap, rcount;
	int32_t rfree;
	int32_t *rhead;
	size_t rmask;
	int32_t fifo_head, fifo_tail;
};

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;
	while (p < n)
		p <<= 1;
	return p;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t hash_id(uint64_t id, size_t mask)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 29) & mask;
}

struct bucket_set *bucket_new(size_t max_keys, size_t max_resv, int64_t ttl_ms, uint64_t first_id)
{
	struct bucket_set *bs = xcalloc(1, sizeof *bs);
	bs->kmax = max_keys ? max_keys : BUCKET_MAX_KEYS;
	if (bs->kmax < LP_MAX_SPECS + 1)
		bs->kmax = LP_MAX_SPECS + 1; /* one reserve must not evict its own keys */
	bs->rmax = max_resv ? max_resv : BUCKET_MAX_RESERVATIONS;
	bs->ttl_ms = ttl_ms > 0 ? ttl_ms : BUCKET_DEFAULT_TTL_MS;
	bs->next_id = first_id ? first_id : 1;
	bs->kmask = pow2_at_least(bs->kmax) - 1;
	bs->khead = xmalloc((bs->kmask + 1) * sizeof *bs->khead);
	for (size_t i = 0; i <= bs->kmask; i++)
		bs->khead[i] = NIL;
	bs->rmask = pow2_at_least(bs->rmax) - 1;
	bs->rhead = xmalloc((bs->rmask + 1) * sizeof *bs->rhead);
	for (size_t i = 0; i <= bs->rmask; i++)
		bs->rhead[i] = NIL;
	bs->kfree = bs->rfree = NIL;
	bs->lru_head = bs->lru_tail = NIL;
	bs->fifo_head = bs->fifo_tail = NIL;
	return bs;
}

void bucket_free(struct bucket_set *bs)
{
	if (!bs)
		return;
	free(bs->k);
	free(bs->khead);
	free(bs->r);
	free(bs->rhead);
	free(bs);
}

size_t bucket_count(const struct bucket_set *bs) { return bs->kcount; }
size_t bucket_open_reservations(const struct bucket_set *bs) { return bs->rcount; }
uint64_t bucket_resv_evicted(const struct bucket_set *bs) { return bs->evicted; }

/* ---- single token bucket ---- */

static void tb_refill(struct tb *b, int64_t dt)
{
	if (b->cap <= 0 || dt <= 0)
		return;
	b->level += b->rate * (double)dt;
	if (b->level > b->cap)
		b->level = b->cap;
}

/* Applies a (possibly changed) limit: new buckets start full. */
static void tb_set(struct tb *b, double cap, double rate_per_ms)
{
	if (cap <= 0) {
		b->cap = b->level = b->rate = 0;
		return;
	}
	if (b->cap <= 0 || b->level > cap)
		b->level = cap;
	b->cap = cap;
	b->rate = rate_per_ms;
}

static int64_t ms_ceil(double ms)
{
	if (ms <= 0)
		return 0;
	if (ms >= (double)LP_MAX_COUNT)
		return LP_MAX_COUNT;
	return (int64_t)ceil(ms);
}

/* Milliseconds until the bucket holds need (or is full, for a need above
 * its capacity); 0 when it does now. */
static int64_t tb_wait(const struct tb *b, double need)
{
	double n = need > b->cap ? b->cap : need;
	double deficit = n - b->level;
	if (deficit <= EPS)
		return 0;
	int64_t w = ms_ceil((deficit - EPS) / b->rate);
	return w < 1 ? 1 : w;
}

static int64_t tb_remaining(const struct tb *b)
{
	double r = floor(b->level + EPS);
	return r < 0 ? 0 : (int64_t)r;
}

static int64_t tb_reset_ms(const struct tb *b) { return ms_ceil((b->cap - b->level - EPS) / b->rate); }

static int tb_full(const struct tb *b) { return b->cap <= 0 || b->level >= b->cap - EPS; }

/* ---- keys ---- */

static void lru_unlink(struct bucket_set *bs, int32_t i)
{
	struct key_entry *e = &bs->k[i];
	if (e->prev != NIL)
		bs->k[e->prev].next = e->next;
	else
		bs->lru_head = e->next;
	if (e->next != NIL)
		bs->k[e->next].prev = e->prev;
	else
		bs->lru_tail = e->prev;
	e->prev = e->next = NIL;
}

static void lru_push_front(struct bucket_set *bs, int32_t i)
{
	struct key_entry *e = &bs->k[i];
	e->prev = NIL;
	e->next = bs->lru_head;
	if (bs->lru_head != NIL)
		bs->k[bs->lru_head].prev = i;
	bs->lru_head = i;
	if (bs->lru_tail == NIL)
		bs->lru_tail = i;
}

static int32_t key_find(const struct bucket_set *bs, const char *key, uint64_t h)
{
	for (int32_t i = bs->khead[h & bs->kmask]; i != NIL; i = bs->k[i].hnext)
		if (bs->k[i].hash == h && strcmp(bs->k[i].key, key) == 0)
			return i;
	return NIL;
}

static void key_remove(struct bucket_set *bs, int32_t i)
{
	struct key_entry *e = &bs->k[i];
	int32_t *pp = &bs->khead[e->hash & bs->kmask];
	while (*pp != i)
		pp = &bs->k[*pp].hnext;
	*pp = e->hnext;
	lru_unlink(bs, i);
	e->key[0] = '\0';
	e->hnext = bs->kfree;
	bs->kfree = i;
	bs->kcount--;
}

static void entry_refill(struct key_entry *e, int64_t now_ms)
{
	int64_t dt = now_ms - e->last_ms;
	if (dt <= 0)
		return;
	tb_refill(&e->req, dt);
	tb_refill(&e->rpm, dt);
	tb_refill(&e->tok, dt);
	e->last_ms = now_ms;
}

size_t bucket_gc(struct bucket_set *bs, int64_t now_ms)
{
	size_t dropped = 0;
	int32_t i = bs->lru_tail;
	for (int n = 0; i != NIL && n < BUCKET_GC_BATCH; n++) {
		int32_t prev = bs->k[i].prev;
		struct key_entry *e = &bs->k[i];
		if (now_ms - e->used_ms >= BUCKET_IDLE_MS) {
			entry_refill(e, now_ms);
			if (tb_full(&e->req) && tb_full(&e->rpm) && tb_full(&e->tok)) {
				key_remove(bs, i);
				dropped++;
			}
		}
		i = prev;
	}
	return dropped;
}

/* Finds key or creates it (all buckets absent), evicting when full. */
static int32_t key_get(struct bucket_set *bs, const char *key, int64_t now_ms)
{
	uint64_t h = hash_str(key);
	int32_t i = key_find(bs, key, h);
	if (i != NIL) {
		/* fresh at once: a later lookup in the same reserve may evict or
		 * collect, and must not pick a key this reserve already holds */
		bs->k[i].used_ms = now_ms;
		lru_unlink(bs, i);
		lru_push_front(bs, i);
		return i;
	}
	if (bs->kcount >= bs->kmax) {
		bucket_gc(bs, now_ms);
		if (bs->kcount >= bs->kmax)
			key_remove(bs, bs->lru_tail);
	}
	if (bs->kfree == NIL) {
		size_t ncap = bs->kcap ? bs->kcap * 2 : 16;
		if (ncap > bs->kmax)
			ncap = bs->kmax;
		bs->k = xreallocarray(bs->k, ncap, sizeof *bs->k);
		for (size_t j = ncap; j > bs->kcap; j--) {
			bs->k[j - 1].hnext = bs->kfree;
			bs->kfree = (int32_t)(j - 1);
		}
		bs->kcap = ncap;
	}
	i = bs->kfree;
	struct key_entry *e = &bs->k[i];
	bs->kfree = e->hnext;
	memset(e, 0, sizeof *e);
	snprintf(e->key, sizeof e->key, "%s", key);
	e->hash = h;
	e->last_ms = e->used_ms = now_ms;
	e->hnext = bs->khead[h & bs->kmask];
	bs->khead[h & bs->kmask] = i;
	e->prev = e->next = NIL;
	lru_push_front(bs, i);
	bs->kcount++;
	return i;
}

/* ---- reservations ---- */

static void resv_remove(struct bucket_set *bs, int32_t i)
{
	struct resv *r = &bs->r[i];
	int32_t *pp = &bs->rhead[hash_id(r->id, bs->rmask)];
	while (*pp != i)
		pp = &bs->r[*pp].hnext;
	*pp = r->hnext;
	if (r->prev != NIL)
		bs->r[r->prev].next = r->next;
	else
		bs->fifo_head = r->next;
	if (r->next != NIL)
		bs->r[r->next].prev = r->prev;
	else
		bs->fifo_tail = r->prev;
	r->id = 0;
	r->hnext = bs->rfree;
	bs->rfree = i;
	bs->rcount--;
}

size_t bucket_expire(struct bucket_set *bs, int64_t now_ms)
{
	size_t n = 0;
	while (bs->fifo_head != NIL && bs->r[bs->fifo_head].expires_ms <= now_ms) {
		resv_remove(bs, bs->fifo_head);
		n++;
	}
	return n;
}

static struct resv *resv_new(struct bucket_set *bs, int64_t now_ms)
{
	bucket_expire(bs, now_ms);
	if (bs->rcount >= bs->rmax) {
		resv_remove(bs, bs->fifo_head); /* its tokens stay consumed */
		bs->evicted++;
	}
	if (bs->rfree == NIL) {
		size_t ncap = bs->rcap ? bs->rcap * 2 : 16;
		if (ncap > bs->rmax)
			ncap = bs->rmax;
		bs->r = xreallocarray(bs->r, ncap, sizeof *bs->r);
		for (size_t j = ncap; j > bs->rcap; j--) {
			bs->r[j - 1].hnext = bs->rfree;
			bs->rfree = (int32_t)(j - 1);
		}
		bs->rcap = ncap;
	}
	int32_t i = bs->rfree;
	struct resv *r = &bs->r[i];
	bs->rfree = r->hnext;
	memset(r, 0, sizeof *r);
	r->id = bs->next_id++;
	if (bs->next_id == 0)
		bs->next_id = 1;
	r->expires_ms = now_ms + bs->ttl_ms;
	size_t h = hash_id(r->id, bs->rmask);
	r->hnext = bs->rhead[h];
	bs->rhead[h] = i;
	r->next = NIL;
	r->prev = bs->fifo_tail;
	if (bs->fifo_tail != NIL)
		bs->r[bs->fifo_tail].next = i;
	else
		bs->fifo_head = i;
	bs->fifo_tail = i;
	bs->rcount++;
	return r;
}

static int32_t resv_find(const struct bucket_set *bs, uint64_t id)
{
	for (int32_t i = bs->rhead[hash_id(id, bs->rmask)]; i != NIL; i = bs->r[i].hnext)
		if (bs->r[i].id == id)
			return i;
	return NIL;
}

/* ---- reserve / settle ---- */

static int request_ok(const struct lp_reserve *req)
{
	if (req->nspecs < 0 || req->nspecs > LP_MAX_SPECS || req->est_tokens < 0 ||
	    req->est_tokens > LP_MAX_COUNT)
		return 0;
	for (int i = 0; i < req->nspecs; i++) {
		const struct lp_spec *s = &req->specs[i];
		size_t n = strnlen(s->key, LP_KEY_MAX);
		if (n == 0 || n >= LP_KEY_MAX || !isfinite(s->rps) || s->rps < 0 ||
		    s->rps > LP_MAX_RATE || s->burst < 0 || s->rpm < 0 || s->tpm < 0 ||
		    s->burst > LP_MAX_COUNT || s->rpm > LP_MAX_COUNT || s->tpm > LP_MAX_COUNT)
			return 0;
		for (int j = 0; j < i; j++)
			if (strcmp(req->specs[j].key, s->key) == 0)
				return 0;
	}
	return 1;
}

/* Keeps in *best the bucket with the least remaining (ties: smaller limit). */
static void tighter(const struct tb *b, const struct tb **best)
{
	if (b->cap <= 0)
		return;
	if (!*best || tb_remaining(b) < tb_remaining(*best) ||
	    (tb_remaining(b) == tb_remaining(*best) && b->cap < (*best)->cap))
		*best = b;
}

static void fill_headers(const struct bucket_set *bs, const int32_t *idx, int n,
			 struct lp_reserve_ans *ans)
{
	const struct tb *rq = NULL, *tk = NULL;
	for (int i = 0; i < n; i++) {
		const struct key_entry *e = &bs->k[idx[i]];
		tighter(&e->req, &rq);
		tighter(&e->rpm, &rq);
		tighter(&e->tok, &tk);
	}
	ans->limit_requests = rq ? (int64_t)rq->cap : -1;
	ans->remaining_requests = rq ? tb_remaining(rq) : -1;
	ans->reset_requests_ms = rq ? tb_reset_ms(rq) : -1;
	ans->limit_tokens = tk ? (int64_t)tk->cap : -1;
	ans->remaining_tokens = tk ? tb_remaining(tk) : -1;
	ans->reset_tokens_ms = tk ? tb_reset_ms(tk) : -1;
}

static void consider(const struct tb *b, double need, int type, const char *key, int64_t *worst,
		     struct lp_reserve_ans *ans)
{
	if (b->cap <= 0)
		return;
	int64_t w = tb_wait(b, need);
	if (w > *worst) {
		*worst = w;
		ans->denied_type = type;
		snprintf(ans->denied_key, sizeof ans->denied_key, "%s", key);
	}
}

int bucket_reserve(struct bucket_set *bs, const struct lp_reserve *req, int64_t now_ms,
		   struct lp_reserve_ans *ans)
{
	int32_t idx[LP_MAX_SPECS];
	int64_t worst = 0;
	int has_tok = 0;

	memset(ans, 0, sizeof *ans);
	if (!request_ok(req)) {
		ans->denied_type = LP_DENIED_REQUESTS;
		ans->limit_requests = ans->remaining_requests = ans->reset_requests_ms = -1;
		ans->limit_tokens = ans->remaining_tokens = ans->reset_tokens_ms = -1;
		return -1;
	}
	for (int i = 0; i < req->nspecs; i++)
		idx[i] = key_get(bs, req->specs[i].key, now_ms);
	for (int i = 0; i < req->nspecs; i++) {
		const struct lp_spec *s = &req->specs[i];
		struct key_entry *e = &bs->k[idx[i]];
		entry_refill(e, now_ms);
		e->used_ms = now_ms;
		lru_unlink(bs, idx[i]);
		lru_push_front(bs, idx[i]);
		double cap = s->burst > 0 ? (double)s->burst : ceil(s->rps);
		tb_set(&e->req, s->rps > 0 ? cap : 0, s->rps / 1000.0);
		tb_set(&e->rpm, (double)s->rpm, (double)s->rpm / 60000.0);
		tb_set(&e->tok, (double)s->tpm, (double)s->tpm / 60000.0);
		consider(&e->req, 1, LP_DENIED_REQUESTS, s->key, &worst, ans);
		consider(&e->rpm, 1, LP_DENIED_REQUESTS, s->key, &worst, ans);
		consider(&e->tok, (double)req->est_tokens, LP_DENIED_TOKENS, s->key, &worst, ans);
		has_tok |= e->tok.cap > 0;
	}
	if (worst > 0) {
		ans->allowed = 0;
		ans->retry_after_ms = worst;
		fill_headers(bs, idx, req->nspecs, ans);
		return 0;
	}
	ans->allowed = 1;
	ans->denied_type = LP_DENIED_NONE;
	ans->denied_key[0] = '\0';
	struct resv *r = has_tok ? resv_new(bs, now_ms) : NULL;
	for (int i = 0; i < req->nspecs; i++) {
		struct key_entry *e = &bs->k[idx[i]];
		if (e->req.cap > 0)
			e->req.level -= 1;
		if (e->rpm.cap > 0)
			e->rpm.level -= 1;
		if (e->tok.cap > 0) {
			/* an estimate above the bucket (a huge max_tokens) takes the
			 * whole bucket, not more: a client's claim cannot put a
			 * shared bucket into unbounded debt; settling charges what
			 * was really used */
			double take = (double)req->est_tokens < e->tok.cap ? (double)req->est_tokens : e->tok.cap;
			e->tok.level -= take;
			r->charged[r->nkeys] = take;
			snprintf(r->keys[r->nkeys++], LP_KEY_MAX, "%s", e->key);
		}
	}
	if (r) {
		r->tokens = req->est_tokens;
		ans->reservation = r->id;
	}
	fill_headers(bs, idx, req->nspecs, ans);
	return 0;
}

int bucket_settle(struct bucket_set *bs, uint64_t id, int64_t actual_tokens, int64_t now_ms)
{
	if (id == 0)
		return 1;
	int32_t i = resv_find(bs, id);
	if (i == NIL)
		return 1;
	struct resv *r = &bs->r[i];
	if (r->expires_ms <= now_ms) {
		resv_remove(bs, i);
		return 1;
	}
	if (actual_tokens < 0)
		actual_tokens = 0;
	for (int j = 0; j < r->nkeys; j++) {
		double diff = r->charged[j] - (double)actual_tokens; /* > 0 refund, < 0 charge */
		int32_t ki = key_find(bs, r->keys[j], hash_str(r->keys[j]));
		if (ki == NIL)
			continue; /* evicted: it was refilled anyway */
		struct key_entry *e = &bs->k[ki];
		if (e->tok.cap <= 0)
			continue;
		entry_refill(e, now_ms);
		e->tok.level += diff;
		if (e->tok.level > e->tok.cap)
			e->tok.level = e->tok.cap;
	}
	resv_remove(bs, i);
	return 0;
}

int bucket_peek(struct bucket_set *bs, const char *key, int64_t now_ms, double *requests,
		double *rpm, double *tokens)
{
	int32_t i = key_find(bs, key, hash_str(key));
	if (i == NIL)
		return -1;
	struct key_entry e = bs->k[i];
	int64_t dt = now_ms - e.last_ms;
	tb_refill(&e.req, dt);
	tb_refill(&e.rpm, dt);
	tb_refill(&e.tok, dt);
	*requests = e.req.cap > 0 ? e.req.level : NAN;
	*rpm = e.rpm.cap > 0 ? e.rpm.level : NAN;
	*tokens = e.tok.cap > 0 ? e.tok.level : NAN;
	return 0;
}
