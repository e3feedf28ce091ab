/* test_limitproto.c - the limiter wire protocol: every message round-trips,
 * corrupted input is rejected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "limitproto.h"
#include "t.h"

static int roundtrip(const struct lp_msg *in, struct lp_msg *out, struct buf *b)
{
	buf_reset(b);
	if (lp_encode(in, b) != 0)
		return -100;
	return lp_decode(b->data, b->len, out);
}

/* Every strict prefix of a valid encoding must be rejected. */
static int all_prefixes_rejected(const struct buf *b)
{
	struct lp_msg m;
	for (size_t n = 0; n < b->len; n++)
		if (lp_decode(b->data, n, &m) == 0)
			return 0;
	return 1;
}

static struct lp_msg sample_reserve(void)
{
	struct lp_msg m;
	memset(&m, 0, sizeof m);
	m.type = LP_RESERVE;
	struct lp_reserve *r = &m.u.reserve;
	r->nspecs = 3;
	snprintf(r->specs[0].key, LP_KEY_MAX, "asg:asg-0123456789");
	r->specs[0].rps = 2.5;
	r->specs[0].burst = 7;
	r->specs[0].rpm = 100;
	r->specs[0].tpm = 40000;
	snprintf(r->specs[1].key, LP_KEY_MAX, "vkey:vkey-abc");
	r->specs[1].rpm = 60;
	snprintf(r->specs[2].key, LP_KEY_MAX, "conn:conn-xyz");
	r->specs[2].tpm = (int64_t)1 << 40;
	r->est_tokens = 1234;
	return m;
}

static struct lp_msg sample_settle(void)
{
	struct lp_msg m;
	memset(&m, 0, sizeof m);
	m.type = LP_SETTLE;
	struct lp_settle *s = &m.u.settle;
	s->reservation = 0xfedcba9876543210ULL;
	s->prompt_tokens = 11;
	s->completion_tokens = 22;
	s->status = 200;
	s->latency_ms = 345;
	s->denied = LP_DENIED_NONE;
	snprintf(s->vkey_id, sizeof s->vkey_id, "vkey-1");
	snprintf(s->asg_id, sizeof s->asg_id, "asg-2");
	snprintf(s->alias, sizeof s->alias, "gpt-4 \xc3\xa9t\xc3\xa9");
	snprintf(s->provider, sizeof s->provider, "azure");
	return m;
}

static void test_reserve(void)
{
	T_BEGIN("limitproto-1 reserve");
	struct buf b;
	buf_init(&b);
	struct lp_msg in = sample_reserve(), out;
	CHECK_INT(roundtrip(&in, &out, &b), 0);
	CHECK_INT(out.type, LP_RESERVE);
	CHECK_INT((unsigned char)b.data[0], LP_VERSION);
	CHECK_INT((unsigned char)b.data[1], LP_RESERVE);
	CHECK(b.len <= LP_MAX_MSG);
	CHECK_INT(out.u.reserve.nspecs, 3);
	CHECK_STR(out.u.reserve.specs[0].key, "asg:asg-0123456789");
	CHECK(out.u.reserve.specs[0].rps == 2.5);
	CHECK_INT(out.u.reserve.specs[0].burst, 7);
	CHECK_INT(out.u.reserve.specs[0].rpm, 100);
	CHECK_INT(out.u.reserve.specs[0].tpm, 40000);
	CHECK_STR(out.u.reserve.specs[1].key, "vkey:vkey-abc");
	CHECK_INT(out.u.reserve.specs[1].rpm, 60);
	CHECK_INT(out.u.reserve.specs[2].tpm, (int64_t)1 << 40);
	CHECK_INT(out.u.reserve.est_tokens, 1234);
	CHECK(all_prefixes_rejected(&b));

	/* trailing byte */
	buf_append(&b, "x", 1);
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_TRAILING);
	b.len--;
	/* wrong version, unknown type */
	b.data[0] = 2;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VERSION);
	b.data[0] = 0;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VERSION);
	b.data[0] = LP_VERSION;
	b.data[1] = 0x42;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_TYPE);
	b.data[1] = LP_RESERVE;
	/* too many specs */
	b.data[2] = 4;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);
	b.data[2] = 3;
	/* key length byte claiming more than fits in a key */
	b.data[3] = 64;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_SIZE);
	b.data[3] = 18;
	/* NUL and space inside the key */
	b.data[6] = '\0';
	CHECK(lp_decode(b.data, b.len, &out) != 0);
	b.data[6] = ' ';
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);
	b.data[6] = '-';
	CHECK_INT(lp_decode(b.data, b.len, &out), 0);
	/* an oversized message is rejected before parsing */
	char big[LP_MAX_MSG + 1];
	memset(big, 0, sizeof big);
	memcpy(big, b.data, b.len);
	CHECK_INT(lp_decode(big, sizeof big, &out), LP_E_SIZE);
	buf_free(&b);
}

static void test_reserve_values(void)
{
	T_BEGIN("limitproto-2 reserve values");
	struct buf b;
	buf_init(&b);
	struct lp_msg m = sample_reserve(), out;
	m.u.reserve.specs[0].rps = NAN;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	CHECK_INT(b.len, 0); /* nothing appended on failure */
	m.u.reserve.specs[0].rps = INFINITY;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m.u.reserve.specs[0].rps = -1;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_reserve();
	m.u.reserve.est_tokens = -1;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_reserve();
	snprintf(m.u.reserve.specs[1].key, LP_KEY_MAX, "%s", m.u.reserve.specs[0].key);
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE); /* duplicate key */
	m = sample_reserve();
	m.u.reserve.specs[2].key[0] = '\0';
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_reserve();
	m.u.reserve.specs[0].tpm = LP_MAX_COUNT + 1;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_reserve();
	m.u.reserve.nspecs = 0;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.reserve.nspecs, 0);

	/* a hand-made NaN rps on the wire is rejected by the decoder too */
	m = sample_reserve();
	m.u.reserve.nspecs = 1;
	buf_reset(&b);
	CHECK_INT(lp_encode(&m, &b), 0);
	size_t rps_at = 2 + 1 + 1 + strlen(m.u.reserve.specs[0].key);
	memset(b.data + rps_at, 0xff, 8);
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);
	/* negative est on the wire */
	buf_reset(&b);
	lp_encode(&m, &b);
	b.data[b.len - 1] = (char)0x80;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);
	buf_free(&b);
}

static void test_answer(void)
{
	T_BEGIN("limitproto-3 reserve answer");
	struct buf b;
	buf_init(&b);
	struct lp_msg m, out;
	memset(&m, 0, sizeof m);
	m.type = LP_RESERVE_ANS;
	struct lp_reserve_ans *a = &m.u.reserve_ans;
	a->allowed = 0;
	a->denied_type = LP_DENIED_TOKENS;
	snprintf(a->denied_key, sizeof a->denied_key, "asg:x");
	a->retry_after_ms = 1500;
	a->limit_requests = -1;
	a->remaining_requests = -1;
	a->reset_requests_ms = -1;
	a->limit_tokens = 1000;
	a->remaining_tokens = 0;
	a->reset_tokens_ms = 59999;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.reserve_ans.allowed, 0);
	CHECK_INT(out.u.reserve_ans.denied_type, LP_DENIED_TOKENS);
	CHECK_STR(out.u.reserve_ans.denied_key, "asg:x");
	CHECK_INT(out.u.reserve_ans.retry_after_ms, 1500);
	CHECK_INT(out.u.reserve_ans.limit_requests, -1);
	CHECK_INT(out.u.reserve_ans.limit_tokens, 1000);
	CHECK_INT(out.u.reserve_ans.reset_tokens_ms, 59999);
	CHECK(all_prefixes_rejected(&b));

	a->allowed = 1; /* allowed with a denial type is contradictory */
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	a->denied_type = LP_DENIED_NONE;
	a->denied_key[0] = '\0';
	a->reservation = UINT64_MAX;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK(out.u.reserve_ans.reservation == UINT64_MAX);
	a->allowed = 0; /* denied without a type */
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	a->allowed = 1;
	a->remaining_tokens = -2;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	a->remaining_tokens = 3;
	/* allowed byte 2 on the wire */
	buf_reset(&b);
	CHECK_INT(lp_encode(&m, &b), 0);
	b.data[2] = 2;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);
	buf_free(&b);
}

static void test_settle(void)
{
	T_BEGIN("limitproto-4 settle");
	struct buf b;
	buf_init(&b);
	struct lp_msg m = sample_settle(), out;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK(out.u.settle.reservation == 0xfedcba9876543210ULL);
	CHECK_INT(out.u.settle.prompt_tokens, 11);
	CHECK_INT(out.u.settle.completion_tokens, 22);
	CHECK_INT(out.u.settle.status, 200);
	CHECK_INT(out.u.settle.latency_ms, 345);
	CHECK_STR(out.u.settle.vkey_id, "vkey-1");
	CHECK_STR(out.u.settle.asg_id, "asg-2");
	CHECK_STR(out.u.settle.alias, "gpt-4 \xc3\xa9t\xc3\xa9");
	CHECK_STR(out.u.settle.provider, "azure");
	CHECK(all_prefixes_rejected(&b));

	/* longest strings fit; one more byte does not */
	memset(m.u.settle.alias, 'a', LP_ALIAS_MAX - 1);
	m.u.settle.alias[LP_ALIAS_MAX - 1] = '\0';
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(strlen(out.u.settle.alias), LP_ALIAS_MAX - 1);
	m.u.settle.alias[LP_ALIAS_MAX - 1] = 'a'; /* unterminated */
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_settle();
	snprintf(m.u.settle.alias, sizeof m.u.settle.alias, "bad\nalias");
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_settle();
	m.u.settle.status = 1000;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_settle();
	m.u.settle.denied = 3;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_settle();
	m.u.settle.prompt_tokens = -1;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m = sample_settle();
	m.u.settle.denied = LP_DENIED_REQUESTS;
	m.u.settle.status = 429;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.settle.denied, LP_DENIED_REQUESTS);

	/* provider string length byte too large for its field */
	m = sample_settle();
	buf_reset(&b);
	lp_encode(&m, &b);
	size_t prov_len_at = b.len - 1 - strlen("azure");
	CHECK_INT((unsigned char)b.data[prov_len_at], 5);
	b.data[prov_len_at] = 16;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_SIZE);
	b.data[prov_len_at] = 6;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_SHORT);
	b.data[prov_len_at] = 4;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_TRAILING);
	buf_free(&b);
}

static void test_small_messages(void)
{
	T_BEGIN("limitproto-5 ping/conn/metrics/error");
	struct buf b;
	buf_init(&b);
	struct lp_msg m, out;
	int empty[] = {LP_PING, LP_PONG, LP_METRICS, LP_SETTLE_ANS, LP_CONN_ANS};
	for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
		memset(&m, 0, sizeof m);
		m.type = empty[i];
		CHECK_INT(roundtrip(&m, &out, &b), 0);
		CHECK_INT(out.type, empty[i]);
		CHECK_INT(b.len, 2);
		buf_append(&b, "", 1);
		CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_TRAILING);
	}
	memset(&m, 0, sizeof m);
	m.type = LP_CONN_EVENT;
	m.u.conn_delta = -1;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.conn_delta, -1);
	m.u.conn_delta = 1;
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.conn_delta, 1);
	m.u.conn_delta = 5;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	buf_reset(&b);
	m.u.conn_delta = 1;
	lp_encode(&m, &b);
	b.data[2] = 0;
	CHECK_INT(lp_decode(b.data, b.len, &out), LP_E_VALUE);

	memset(&m, 0, sizeof m);
	m.type = LP_METRICS_ANS;
	m.u.metrics.text = "# TYPE x counter\nx 1\n";
	m.u.metrics.len = strlen(m.u.metrics.text);
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.metrics.len, m.u.metrics.len);
	CHECK(memcmp(out.u.metrics.text, m.u.metrics.text, m.u.metrics.len) == 0);
	m.u.metrics.len = LP_MAX_METRICS + 1;
	CHECK_INT(lp_encode(&m, &b), LP_E_SIZE);
	char *huge = calloc(1, LP_MAX_METRICS + 3);
	huge[0] = LP_VERSION;
	huge[1] = (char)LP_METRICS_ANS;
	CHECK_INT(lp_decode(huge, LP_MAX_METRICS + 2, &out), 0);
	CHECK_INT(lp_decode(huge, LP_MAX_METRICS + 3, &out), LP_E_SIZE);
	free(huge);

	memset(&m, 0, sizeof m);
	m.type = LP_ERROR;
	m.u.error.code = LP_E_VERSION;
	snprintf(m.u.error.message, sizeof m.u.error.message, "%s", lp_strerror(LP_E_VERSION));
	CHECK_INT(roundtrip(&m, &out, &b), 0);
	CHECK_INT(out.u.error.code, LP_E_VERSION);
	CHECK_STR(out.u.error.message, "unknown protocol version");
	m.u.error.code = 0;
	CHECK_INT(lp_encode(&m, &b), LP_E_VALUE);
	m.type = 77;
	CHECK_INT(lp_encode(&m, &b), LP_E_TYPE);

	CHECK_INT(lp_decode("", 0, &out), LP_E_SHORT);
	CHECK_INT(lp_decode("\x01", 1, &out), LP_E_SHORT);
	CHECK_INT(lp_decode("\x01\x02", 2, &out), LP_E_SHORT); /* RESERVE with no body */
	CHECK_INT(lp_denied_parse("tokens"), LP_DENIED_TOKENS);
	CHECK_INT(lp_denied_parse("requests"), LP_DENIED_REQUESTS);
	CHECK_INT(lp_denied_parse("other"), LP_DENIED_NONE);
	CHECK_STR(lp_denied_name(LP_DENIED_TOKENS), "tokens");
	buf_free(&b);
}

/* Flipping any single byte of a valid message either is rejected or still
 * decodes to something that re-encodes to exactly those bytes. */
static void test_bitflips(void)
{
	T_BEGIN("limitproto-6 corruption");
	struct buf b, re;
	buf_init(&b);
	buf_init(&re);
	struct lp_msg msgs[2] = {sample_reserve(), sample_settle()};
	int canonical = 1;
	for (int k = 0; k < 2; k++) {
		buf_reset(&b);
		lp_encode(&msgs[k], &b);
		for (size_t i = 0; i < b.len; i++) {
			for (int bit = 0; bit < 8; bit++) {
				struct lp_msg out;
				b.data[i] ^= (char)(1 << bit);
				if (lp_decode(b.data, b.len, &out) == 0) {
					buf_reset(&re);
					if (lp_encode(&out, &re) != 0 || re.len != b.len ||
					    memcmp(re.data, b.data, b.len) != 0)
						canonical = 0;
				}
				b.data[i] ^= (char)(1 << bit);
			}
		}
	}
	CHECK(canonical);
	buf_free(&b);
	buf_free(&re);
}

int main(void)
{
	test_reserve();
	test_reserve_values();
	test_answer();
	test_settle();
	test_small_messages();
	test_bitflips();
	return T_END();
}
