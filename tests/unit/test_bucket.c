/* test_bucket.c - limiterd's buckets with an injected clock. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bucket.h"
#include "t.h"

static struct lp_spec spec(const char *key, double rps, int64_t burst, int64_t rpm, int64_t tpm)
{
	struct lp_spec s;
	memset(&s, 0, sizeof s);
	snprintf(s.key, sizeof s.key, "%s", key);
	s.rps = rps;
	s.burst = burst;
	s.rpm = rpm;
	s.tpm = tpm;
	return s;
}

static struct lp_reserve one(struct lp_spec a, int64_t est)
{
	struct lp_reserve r;
	memset(&r, 0, sizeof r);
	r.specs[0] = a;
	r.nspecs = 1;
	r.est_tokens = est;
	return r;
}

static struct lp_reserve two(struct lp_spec a, struct lp_spec b, int64_t est)
{
	struct lp_reserve r = one(a, est);
	r.specs[1] = b;
	r.nspecs = 2;
	return r;
}

/* Reserves n times at now; returns how many were allowed. */
static int burst_count(struct bucket_set *bs, const struct lp_reserve *r, int n, int64_t now)
{
	struct lp_reserve_ans a;
	int ok = 0;
	for (int i = 0; i < n; i++) {
		bucket_reserve(bs, r, now, &a);
		ok += a.allowed;
	}
	return ok;
}

static double tokens_of(struct bucket_set *bs, const char *key, int64_t now)
{
	double rq, rpm, tk;
	if (bucket_peek(bs, key, now, &rq, &rpm, &tk) < 0)
		return -1e18;
	return tk;
}

static double requests_of(struct bucket_set *bs, const char *key, int64_t now)
{
	double rq, rpm, tk;
	if (bucket_peek(bs, key, now, &rq, &rpm, &tk) < 0)
		return -1e18;
	return rq;
}

static int near(double a, double b) { return fabs(a - b) < 1e-3; }

static void test_burst_and_refill(void)
{
	T_BEGIN("bucket-1 burst/refill");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve r = one(spec("asg:a", 5, 0, 0, 0), 0);
	struct lp_reserve_ans a;
	int64_t t = 1000000;

	CHECK_INT(bucket_reserve(bs, &r, t, &a), 0);
	CHECK_INT(a.allowed, 1);
	CHECK_INT(a.limit_requests, 5);
	CHECK_INT(a.remaining_requests, 4);
	CHECK_INT(a.reset_requests_ms, 200);
	CHECK_INT(a.limit_tokens, -1);
	CHECK_INT(a.reservation, 0); /* no token bucket: nothing to settle */
	CHECK_INT(burst_count(bs, &r, 10, t), 4);
	bucket_reserve(bs, &r, t, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_STR(lp_denied_name(a.denied_type), "requests");
	CHECK_STR(a.denied_key, "asg:a");
	CHECK_INT(a.retry_after_ms, 200);
	CHECK_INT(a.remaining_requests, 0);
	bucket_reserve(bs, &r, t + 150, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.retry_after_ms, 50);
	bucket_reserve(bs, &r, t + 199, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.retry_after_ms, 1);
	CHECK_INT(burst_count(bs, &r, 3, t + 200), 1);
	/* a whole second refills the whole burst, never more */
	CHECK_INT(burst_count(bs, &r, 20, t + 5000), 5);
	/* the clock going backwards refills nothing and breaks nothing */
	CHECK_INT(burst_count(bs, &r, 3, t + 100), 0);
	bucket_free(bs);
}

static void test_explicit_burst(void)
{
	T_BEGIN("bucket-2 explicit burst");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve r = one(spec("asg:b", 1, 3, 0, 0), 0);
	struct lp_reserve_ans a;
	CHECK_INT(burst_count(bs, &r, 10, 0), 3);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.retry_after_ms, 1000);
	CHECK_INT(a.limit_requests, 3);
	/* fractional rate: capacity ceil(0.5) = 1, one every two seconds */
	struct lp_reserve h = one(spec("asg:half", 0.5, 0, 0, 0), 0);
	CHECK_INT(burst_count(bs, &h, 5, 0), 1);
	bucket_reserve(bs, &h, 0, &a);
	CHECK_INT(a.retry_after_ms, 2000);
	CHECK_INT(burst_count(bs, &h, 5, 1999), 0);
	CHECK_INT(burst_count(bs, &h, 5, 2000), 1);
	bucket_free(bs);
}

static void test_rpm(void)
{
	T_BEGIN("bucket-3 rpm window");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = one(spec("vkey:k", 0, 0, 3, 0), 0);
	CHECK_INT(burst_count(bs, &r, 10, 0), 3);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.retry_after_ms, 20000);
	CHECK_INT(a.limit_requests, 3);
	/* rps and rpm on one key: rpm is the tighter one here */
	struct lp_reserve b = one(spec("asg:both", 10, 0, 3, 0), 0);
	bucket_reserve(bs, &b, 0, &a);
	CHECK_INT(a.limit_requests, 3); /* tightest bucket reported */
	CHECK_INT(a.remaining_requests, 2);
	CHECK_INT(a.reset_requests_ms, 20000);
	CHECK_INT(burst_count(bs, &b, 10, 0), 2);
	bucket_reserve(bs, &b, 1000, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.retry_after_ms, 19000);
	CHECK_INT(burst_count(bs, &b, 10, 20000), 1);
	bucket_free(bs);
}

static void test_tokens(void)
{
	T_BEGIN("bucket-4 tpm");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = one(spec("asg:t", 0, 0, 0, 1000), 400);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 1);
	CHECK(a.reservation != 0);
	CHECK_INT(a.limit_tokens, 1000);
	CHECK_INT(a.remaining_tokens, 600);
	CHECK_INT(a.limit_requests, -1);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 1);
	CHECK_INT(a.remaining_tokens, 200);
	CHECK_INT(bucket_open_reservations(bs), 2);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_STR(lp_denied_name(a.denied_type), "tokens");
	CHECK_INT(a.reservation, 0);
	CHECK_INT(a.retry_after_ms, 12000); /* 200 tokens at 1000/min */
	CHECK_INT(bucket_open_reservations(bs), 2);
	bucket_free(bs);
}

static void test_all_or_nothing(void)
{
	T_BEGIN("bucket-5 all-or-nothing");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = two(spec("asg:A", 10, 0, 0, 0), spec("conn:B", 1, 1, 0, 0), 0);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 1);
	CHECK_INT(a.remaining_requests, 0); /* conn:B is the tightest */
	CHECK_INT(a.limit_requests, 1);
	for (int i = 0; i < 5; i++)
		bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_STR(a.denied_key, "conn:B");
	CHECK(near(requests_of(bs, "asg:A", 0), 9)); /* nothing taken from A */
	CHECK(near(requests_of(bs, "conn:B", 0), 0));

	/* tokens: the small bucket denies, the big one keeps its tokens */
	struct lp_reserve t = two(spec("vkey:s", 0, 0, 0, 100), spec("asg:L", 0, 0, 0, 1000), 60);
	bucket_reserve(bs, &t, 0, &a);
	CHECK_INT(a.allowed, 1);
	CHECK_INT(a.remaining_tokens, 40);
	CHECK_INT(a.limit_tokens, 100);
	uint64_t id = a.reservation;
	bucket_reserve(bs, &t, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_STR(a.denied_key, "vkey:s");
	CHECK(near(tokens_of(bs, "asg:L", 0), 940));
	/* settle refunds both buckets of the reservation */
	CHECK_INT(bucket_settle(bs, id, 10, 0), 0);
	CHECK(near(tokens_of(bs, "vkey:s", 0), 90));
	CHECK(near(tokens_of(bs, "asg:L", 0), 990));

	/* three buckets, the one with the longest wait is reported */
	struct lp_reserve three = two(spec("k1", 1, 1, 0, 0), spec("k2", 0.1, 1, 0, 0), 0);
	three.specs[2] = spec("k3", 0.5, 1, 0, 0);
	three.nspecs = 3;
	CHECK_INT(burst_count(bs, &three, 4, 0), 1);
	bucket_reserve(bs, &three, 0, &a);
	CHECK_STR(a.denied_key, "k2");
	CHECK_INT(a.retry_after_ms, 10000);
	bucket_free(bs);
}

static void test_settle(void)
{
	T_BEGIN("bucket-6 settle refund/charge");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = one(spec("asg:s", 0, 0, 0, 1000), 500);
	bucket_reserve(bs, &r, 0, &a);
	CHECK(near(tokens_of(bs, "asg:s", 0), 500));
	CHECK_INT(bucket_settle(bs, a.reservation, 100, 0), 0);
	CHECK(near(tokens_of(bs, "asg:s", 0), 900));
	CHECK_INT(bucket_settle(bs, a.reservation, 100, 0), 1); /* only once */
	CHECK(near(tokens_of(bs, "asg:s", 0), 900));
	CHECK_INT(bucket_open_reservations(bs), 0);

	/* charge more than reserved: into debt */
	r.est_tokens = 100;
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(bucket_settle(bs, a.reservation, 1500, 0), 0);
	CHECK(near(tokens_of(bs, "asg:s", 0), -600));
	r.est_tokens = 10;
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.remaining_tokens, 0);
	CHECK_INT(a.retry_after_ms, 36600); /* 610 tokens at 1000/min */
	CHECK_INT(burst_count(bs, &r, 1, 36599), 0);
	CHECK_INT(burst_count(bs, &r, 1, 36600), 1);

	/* refunds never overfill */
	struct lp_reserve f = one(spec("asg:f", 0, 0, 0, 1000), 500);
	bucket_reserve(bs, &f, 0, &a);
	CHECK_INT(bucket_settle(bs, a.reservation, 0, 60000), 0);
	CHECK(near(tokens_of(bs, "asg:f", 60000), 1000));
	CHECK_INT(bucket_settle(bs, 0, 5, 0), 1);
	CHECK_INT(bucket_settle(bs, 987654321, 5, 0), 1);
	bucket_free(bs);
}

static void test_expiry(void)
{
	T_BEGIN("bucket-7 expiry");
	struct bucket_set *bs = bucket_new(0, 0, 1000, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = one(spec("asg:e", 0, 0, 0, 60000), 30000);
	bucket_reserve(bs, &r, 0, &a);
	uint64_t first = a.reservation;
	bucket_reserve(bs, &r, 500, &a);
	uint64_t second = a.reservation;
	CHECK_INT(bucket_open_reservations(bs), 2);
	CHECK_INT(bucket_expire(bs, 999), 0);
	CHECK_INT(bucket_expire(bs, 1000), 1);
	CHECK_INT(bucket_open_reservations(bs), 1);
	CHECK_INT(bucket_settle(bs, first, 0, 1000), 1);
	/* expired tokens stay consumed: 60000 - 60000 + 1000 ms of refill */
	CHECK(near(tokens_of(bs, "asg:e", 1000), 1000));
	/* settling after the TTL fails even before a sweep */
	CHECK_INT(bucket_settle(bs, second, 0, 1500), 1);
	CHECK_INT(bucket_open_reservations(bs), 0);
	bucket_free(bs);
}

static void test_oversized_estimate(void)
{
	T_BEGIN("bucket-8 estimate above capacity");
	struct bucket_set *bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve_ans a;
	struct lp_reserve r = one(spec("asg:o", 0, 0, 0, 100), 250);
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 1); /* a full bucket lets it through alone ... */
	CHECK(near(tokens_of(bs, "asg:o", 0), 0)); /* ... taking the bucket, never more */
	uint64_t id = a.reservation;
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_INT(a.retry_after_ms, 60000); /* until full again: 100 tokens at 100/min */
	CHECK_INT(bucket_settle(bs, id, 50, 0), 0);
	CHECK(near(tokens_of(bs, "asg:o", 0), 50));
	bucket_reserve(bs, &r, 0, &a);
	CHECK_INT(a.retry_after_ms, 30000);
	bucket_free(bs);
}

static void test_edges(void)
{
	T_BEGIN("bucket-9 edges");
	struct bucket_set *bs = bucket_new(0, 0, 0, 42);
	struct lp_reserve_ans a;
	struct lp_reserve none;
	memset(&none, 0, sizeof none);
	CHECK_INT(bucket_reserve(bs, &none, 0, &a), 0);
	CHECK_INT(a.allowed, 1);
	CHECK_INT(a.limit_requests, -1);
	CHECK_INT(a.limit_tokens, -1);
	CHECK_INT(a.reservation, 0);

	struct lp_reserve t = one(spec("asg:id", 0, 0, 0, 1000), 1);
	bucket_reserve(bs, &t, 0, &a);
	CHECK_INT(a.reservation, 42);
	bucket_reserve(bs, &t, 0, &a);
	CHECK_INT(a.reservation, 43);

	struct lp_reserve bad = two(spec("x", 1, 0, 0, 0), spec("x", 2, 0, 0, 0), 0);
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);
	CHECK_INT(a.allowed, 0);
	bad = one(spec("", 1, 0, 0, 0), 0);
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);
	bad = one(spec("x", NAN, 0, 0, 0), 0);
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);
	bad = one(spec("x", 1, 0, -5, 0), 0);
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);
	bad = one(spec("x", 1, 0, 0, 0), -1);
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);
	bad.nspecs = 4;
	CHECK_INT(bucket_reserve(bs, &bad, 0, &a), -1);

	/* a lowered limit clamps at once; a raised one does not grant tokens */
	struct lp_reserve big = one(spec("asg:chg", 0, 0, 0, 1000), 0);
	bucket_reserve(bs, &big, 0, &a);
	struct lp_reserve small = one(spec("asg:chg", 0, 0, 0, 100), 0);
	bucket_reserve(bs, &small, 0, &a);
	CHECK_INT(a.remaining_tokens, 100);
	bucket_reserve(bs, &big, 0, &a);
	CHECK_INT(a.remaining_tokens, 100);
	CHECK_INT(a.limit_tokens, 1000);
	/* a limit that goes away removes its bucket */
	struct lp_reserve gone = one(spec("asg:chg", 0, 0, 0, 0), 0);
	bucket_reserve(bs, &gone, 0, &a);
	CHECK_INT(a.limit_tokens, -1);
	CHECK_INT(a.reservation, 0);
	bucket_free(bs);
}

static void test_bounds(void)
{
	T_BEGIN("bucket-10 bounds and gc");
	struct bucket_set *bs = bucket_new(4, 2, 0, 1);
	struct lp_reserve_ans a;
	char key[16];
	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof key, "k%d", i);
		struct lp_reserve r = one(spec(key, 1, 0, 0, 0), 0);
		bucket_reserve(bs, &r, i, &a);
	}
	CHECK_INT(bucket_count(bs), 4);
	CHECK(requests_of(bs, "k0", 10) < -1e17); /* least recently used went */
	CHECK(requests_of(bs, "k1", 10) < -1e17);
	CHECK(near(requests_of(bs, "k5", 5), 0));

	/* reservation table full: the oldest is dropped */
	struct lp_reserve t = one(spec("tok", 0, 0, 0, 1000), 10);
	bucket_reserve(bs, &t, 0, &a);
	uint64_t r1 = a.reservation;
	bucket_reserve(bs, &t, 0, &a);
	bucket_reserve(bs, &t, 0, &a);
	CHECK_INT(bucket_open_reservations(bs), 2);
	CHECK_INT(bucket_resv_evicted(bs), 1);
	CHECK_INT(bucket_settle(bs, r1, 0, 0), 1);
	CHECK_INT(bucket_settle(bs, a.reservation, 0, 0), 0);
	bucket_free(bs);

	/* gc drops only idle keys whose buckets are full again */
	bs = bucket_new(0, 0, 0, 1);
	struct lp_reserve q = one(spec("idle", 10, 0, 0, 0), 0);
	bucket_reserve(bs, &q, 0, &a);
	struct lp_reserve d = one(spec("debt", 0, 0, 0, 60), 0);
	bucket_reserve(bs, &d, 0, &a);
	bucket_settle(bs, a.reservation, 6000, 0); /* 100 minutes of debt */
	CHECK_INT(bucket_gc(bs, BUCKET_IDLE_MS - 1), 0);
	CHECK_INT(bucket_gc(bs, BUCKET_IDLE_MS), 1);
	CHECK_INT(bucket_count(bs), 1);
	CHECK(tokens_of(bs, "debt", BUCKET_IDLE_MS) < 0);
	bucket_free(bs);
}

/* A full key table: looking up a reserve's second key must not evict the
 * first, or the first key's limit would go unchecked. */
static void test_eviction_keeps_reserve_keys(void)
{
	T_BEGIN("bucket-9 eviction during a multi-key reserve");
	struct bucket_set *bs = bucket_new(4, 0, 0, 1);
	struct lp_reserve_ans a;
	const char *keys[] = {"asg:A", "asg:B", "asg:C", "asg:D"};
	for (int i = 0; i < 4; i++) {
		struct lp_reserve r = one(spec(keys[i], 1, 1, 0, 0), 0);
		bucket_reserve(bs, &r, 0, &a);
		CHECK_INT(a.allowed, 1); /* each bucket now empty */
	}
	/* touch A: B becomes the least recently used key, the one a lookup of
	 * a fifth key evicts unless the reserve holding B refreshed it */
	struct lp_reserve ra = one(spec("asg:A", 1, 1, 0, 0), 0);
	bucket_reserve(bs, &ra, 0, &a);
	CHECK_INT(a.allowed, 0);
	struct lp_reserve r = two(spec("asg:B", 1, 1, 0, 0), spec("asg:E", 1, 1, 0, 0), 0);
	bucket_reserve(bs, &r, 1, &a);
	CHECK_INT(a.allowed, 0);
	CHECK_STR(a.denied_key, "asg:B");
	struct lp_reserve rb = one(spec("asg:B", 1, 1, 0, 0), 0);
	bucket_reserve(bs, &rb, 2, &a);
	CHECK_INT(a.allowed, 0);
	bucket_free(bs);
}

int main(void)
{
	test_eviction_keeps_reserve_keys();
	test_burst_and_refill();
	test_explicit_burst();
	test_rpm();
	test_tokens();
	test_all_or_nothing();
	test_settle();
	test_expiry();
	test_oversized_estimate();
	test_edges();
	test_bounds();
	return T_END();
}
