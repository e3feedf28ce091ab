/* bucket.h - limiterd's request and token buckets (DESIGN.md §6).  Pure
 * logic: no I/O, no clock of its own; every call takes now_ms (a monotonic
 * millisecond clock) so tests can drive time.
 *
 * Every key ("asg:…", "vkey:…", "conn:…") owns up to three token buckets:
 *   requests  capacity burst (0 = ceil(rps)), refilled rps per second;
 *   rpm       capacity rpm, refilled rpm/60 per second (when rpm > 0);
 *   tokens    capacity tpm, refilled tpm/60 per second (when tpm > 0).
 * Buckets start full.  The limits arrive with every RESERVE; a changed limit
 * takes effect at once (the level is clamped to a smaller capacity, a bucket
 * that appears starts full, one whose limit becomes 0 is dropped).
 *
 * RESERVE checks every bucket of every spec and takes only if all allow: one
 * request from each request/rpm bucket, est_tokens from each tokens bucket.
 * A denial names the bucket with the longest wait, and retry_after_ms is that
 * wait.  An estimate larger than a tokens bucket's capacity could never pass
 * a "level >= estimate" test, so such a request waits for a *full* bucket
 * and is then allowed; it takes its whole estimate (the level goes negative,
 * i.e. into debt) and settling refunds what was not used.
 *
 * SETTLE refunds (reserved - actual) to each tokens bucket or charges the
 * extra (the level may go negative: the next requests wait for the debt to
 * be refilled).  Refunds never raise a bucket above its capacity.  A
 * reservation that is not settled within the TTL expires and its tokens
 * stay consumed (its proxyd was probably killed mid-request, after the
 * upstream had done the work). */
#ifndef LLMPROXY_BUCKET_H
#define LLMPROXY_BUCKET_H

#include <stddef.h>
#include <stdint.h>

#include "limitproto.h"

/* Unsettled reservations expire after this: longer than any request (streams
 * have no overall timeout; the systemd unit caps a connection at 1 h). */
#define BUCKET_DEFAULT_TTL_MS (60 * 60 * 1000)
#define BUCKET_MAX_KEYS 65536          /* keys held; least recently used go first */
#define BUCKET_MAX_RESERVATIONS 65536 /* open reservations; oldest go first */
#define BUCKET_IDLE_MS (60 * 1000)     /* gc drops keys idle this long and refilled */
#define BUCKET_GC_BATCH 1024           /* keys examined per bucket_gc call */

struct bucket_set;

/* A new, empty set holding at most max_keys keys and max_resv open
 * reservations (0 = the defaults above), reservations living ttl_ms (0 =
 * BUCKET_DEFAULT_TTL_MS), ids counting up from first_id (0 is skipped; pick a
 * random one so ids from before a restart do not match new ones).  Caller
 * frees with bucket_free. */
struct bucket_set *bucket_new(size_t max_keys, size_t max_resv, int64_t ttl_ms, uint64_t first_id);
void bucket_free(struct bucket_set *bs);

/* Checks and takes as described above; fills ans (allowed or the denial,
 * and the tightest bucket of each kind for x-ratelimit-* headers; remaining
 * is what is left after this request).  ans->reservation is non-zero only
 * when tokens were taken.  Returns 0, or -1 for a request lp_decode would
 * reject (ans then says denied). */
int bucket_reserve(struct bucket_set *bs, const struct lp_reserve *req, int64_t now_ms,
		   struct lp_reserve_ans *ans);
/* Settles reservation id with the actual token count.  Returns 0 when it
 * was open, 1 when unknown (already settled, expired, or from before a
 * restart): nothing changes then. */
int bucket_settle(struct bucket_set *bs, uint64_t id, int64_t actual_tokens, int64_t now_ms);
/* Drops reservations whose TTL has passed; returns how many. */
size_t bucket_expire(struct bucket_set *bs, int64_t now_ms);
/* Forgets up to BUCKET_GC_BATCH keys unused for BUCKET_IDLE_MS whose buckets
 * have refilled completely (forgetting those changes no answer).  Returns
 * how many were dropped. */
size_t bucket_gc(struct bucket_set *bs, int64_t now_ms);

size_t bucket_count(const struct bucket_set *bs);
size_t bucket_open_reservations(const struct bucket_set *bs);
/* Reservations dropped because the table was full, since creation. */
uint64_t bucket_resv_evicted(const struct bucket_set *bs);

/* Levels of key's buckets at now_ms (refilled, not stored) for tests and
 * debugging: 0 and the levels (NAN for a bucket that does not exist), or -1
 * if the key is unknown. */
int bucket_peek(struct bucket_set *bs, const char *key, int64_t now_ms, double *requests,
		double *rpm, double *tokens);

#endif
