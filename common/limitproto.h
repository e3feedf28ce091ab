/* limitproto.h - the proxyd <-> limiterd wire protocol (DESIGN.md §6).
 *
 * One ZeroMQ message (a single frame) per request and per answer.  Every
 * message starts with two bytes: the protocol version (LP_VERSION) and the
 * message type.  The body is a fixed sequence of fields for that type:
 *   u8, i32, i64, u64 little-endian; f64 as its IEEE-754 bits in a u64;
 *   str = u8 length + that many bytes (no NUL inside, bounded per field).
 * The decoder is strict: a wrong version, an unknown type, a truncated body,
 * trailing bytes, an over-long string, an out-of-range number, a NUL inside a
 * string or a message larger than the bounds below are all rejected.
 *
 *   PING          (no body)                     -> PONG (no body)
 *   RESERVE       u8 nspecs (0..LP_MAX_SPECS),
 *                 nspecs x { str key (1..63), f64 rps, i64 burst,
 *                            i64 rpm, i64 tpm },
 *                 i64 est_tokens                -> RESERVE_ANS
 *   RESERVE_ANS   u8 allowed, u8 denied_type (0 none, 1 requests, 2 tokens),
 *                 str denied_key, i64 retry_after_ms, u64 reservation,
 *                 i64 limit_requests, remaining_requests, reset_requests_ms,
 *                 i64 limit_tokens, remaining_tokens, reset_tokens_ms
 *   SETTLE        u64 reservation, i64 prompt_tokens, i64 completion_tokens,
 *                 i32 status, i64 latency_ms, u8 denied (0 no, 1 requests,
 *                 2 tokens), str vkey_id, str asg_id, str alias, str provider
 *                                               -> SETTLE_ANS (no body)
 *   CONN_EVENT    i32 delta (-1 or +1)          -> CONN_ANS (no body)
 *   METRICS       (no body)                     -> METRICS_ANS: the rest of
 *                 the message is Prometheus text (0..LP_MAX_METRICS bytes)
 *   ERROR         u8 code (LP_E_*, negated), str message: limiterd's answer to
 *                 a message it could not decode.
 */
#ifndef LLMPROXY_LIMITPROTO_H
#define LLMPROXY_LIMITPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define LP_VERSION 1
#define LP_MAX_SPECS 3
#define LP_KEY_MAX 64        /* key buffer, so at most 63 bytes on the wire */
#define LP_ID_MAX 48         /* vkey_id, asg_id */
#define LP_ALIAS_MAX 128
#define LP_PROVIDER_MAX 16
#define LP_ERRMSG_MAX 128
#define LP_MAX_MSG 1024                 /* every message but METRICS_ANS */
#define LP_MAX_METRICS (1024 * 1024)    /* METRICS_ANS text */
#define LP_MAX_RATE 1e9                 /* largest rps accepted */
#define LP_MAX_COUNT ((int64_t)1 << 53) /* largest limit / token count */

enum lp_type {
	LP_PING = 1,
	LP_RESERVE = 2,
	LP_SETTLE = 3,
	LP_CONN_EVENT = 4,
	LP_METRICS = 5,
	LP_PONG = 0x81,
	LP_RESERVE_ANS = 0x82,
	LP_SETTLE_ANS = 0x83,
	LP_CONN_ANS = 0x84,
	LP_METRICS_ANS = 0x85,
	LP_ERROR = 0xff,
};

enum lp_denied { LP_DENIED_NONE = 0, LP_DENIED_REQUESTS = 1, LP_DENIED_TOKENS = 2 };

/* Decoder errors (negative returns of lp_decode). */
#define LP_E_SHORT -1    /* truncated */
#define LP_E_VERSION -2  /* unknown protocol version */
#define LP_E_TYPE -3     /* unknown message type */
#define LP_E_SIZE -4     /* message or field larger than allowed */
#define LP_E_VALUE -5    /* field out of range / malformed */
#define LP_E_TRAILING -6 /* bytes after the last field */

struct lp_spec {
	char key[LP_KEY_MAX];
	double rps;    /* 0 = no per-second bucket */
	int64_t burst; /* 0 = ceil(rps) */
	int64_t rpm;   /* 0 = none */
	int64_t tpm;   /* 0 = none */
};

struct lp_reserve {
	struct lp_spec specs[LP_MAX_SPECS];
	int nspecs;
	int64_t est_tokens;
};

struct lp_reserve_ans {
	int allowed;
	int denied_type; /* enum lp_denied */
	char denied_key[LP_KEY_MAX];
	int64_t retry_after_ms;
	uint64_t reservation;
	int64_t limit_requests, remaining_requests, reset_requests_ms;
	int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
};

struct lp_settle {
	uint64_t reservation;
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int32_t status;
	int64_t latency_ms;
	int denied; /* enum lp_denied */
	char vkey_id[LP_ID_MAX];
	char asg_id[LP_ID_MAX];
	char alias[LP_ALIAS_MAX];
	char provider[LP_PROVIDER_MAX];
};

struct lp_msg {
	int type; /* enum lp_type */
	union {
		struct lp_reserve reserve;
		struct lp_reserve_ans reserve_ans;
		struct lp_settle settle;
		int32_t conn_delta;
		struct {
			const char *text; /* decode: points into the decoded bytes */
			size_t len;
		} metrics;
		struct {
			int code; /* an LP_E_* value */
			char message[LP_ERRMSG_MAX];
		} error;
	} u;
};

/* Appends the encoding of m to out.  Returns 0, or LP_E_VALUE / LP_E_SIZE /
 * LP_E_TYPE when m holds something the decoder would reject (out is then
 * left as it was). */
int lp_encode(const struct lp_msg *m, struct buf *out);
/* Decodes one message.  Returns 0 with m filled (metrics.text then points
 * into data, which the caller keeps alive), or an LP_E_* code. */
int lp_decode(const void *data, size_t len, struct lp_msg *m);
/* A short static description of an LP_E_* code. */
const char *lp_strerror(int code);
/* "requests" / "tokens" / "" for an enum lp_denied value, and back
 * (lp_denied_parse returns LP_DENIED_NONE for anything else). */
const char *lp_denied_name(int d);
int lp_denied_parse(const char *s);

#endif
