/* limit_client.h - proxyd's side of the limiter (DESIGN.md §6).  One ZeroMQ
 * REQ socket per connection (opened once, reused by its requests), every
 * call bounded by a timeout, ZMQ_LINGER=0 so a dead limiterd never hangs. */
#ifndef LLMPROXY_LIMIT_CLIENT_H
#define LLMPROXY_LIMIT_CLIENT_H

#include <stdint.h>

#include "util.h"

#define LIMIT_MAX_SPECS 3

/* One set of buckets to check: key names the bucket owner
 * ("asg:<id>", "vkey:<id>", "conn:<id>"); a zero limit means unlimited. */
struct limit_spec {
	char key[64];
	double rps;     /* requests refilled per second (--tps) */
	int64_t burst;  /* request bucket capacity; 0 = ceil(rps) */
	int64_t rpm;    /* requests per minute */
	int64_t tpm;    /* tokens per minute */
};

struct limit_reserve_req {
	struct limit_spec specs[LIMIT_MAX_SPECS];
	int nspecs;
	int64_t est_tokens; /* reserved against every tpm bucket */
};

struct limit_answer {
	int allowed;
	char denied_type[16];   /* "requests" or "tokens" when denied */
	char denied_key[64];    /* which bucket said no */
	int64_t retry_after_ms; /* when denied: time until it would pass */
	uint64_t reservation;   /* settle with this; 0 if nothing reserved */
	/* For x-ratelimit-* headers: the tightest bucket of each kind;
	 * limit < 0 means no limit of that kind applies. */
	int64_t limit_requests, remaining_requests, reset_requests_ms;
	int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
};

/* What proxyd reports after each request (also the usage ledger row). */
struct limit_settle_req {
	uint64_t reservation; /* 0 when the request never reserved */
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int status;
	int64_t latency_ms;
	int denied;           /* 1 when this was a 429 from our own limiter */
	char vkey_id[48];
	char asg_id[48];
	char alias[128];
	char provider[16];
};

struct limiter;

/* Connects (lazily) to endpoint, e.g. "ipc:///run/llmproxy/limiterd.sock".
 * Never fails for a down limiterd: calls time out instead. */
struct limiter *limiter_open(const char *endpoint, int timeout_ms);
void limiter_close(struct limiter *l);
/* Creates the ZeroMQ context, socket and connection now rather than at the
 * first call (a pre-forked connection process does it before it waits for
 * its client).  0 ok, -1 failed (calls retry). */
int limiter_connect(struct limiter *l);
/* 0 with ans filled, -1 when limiterd did not answer in time (the socket
 * is then reset so the next call reconnects). */
int limiter_reserve(struct limiter *l, const struct limit_reserve_req *req, struct limit_answer *ans);
/* Sends the settlement without waiting: its answer is collected by the
 * next call or by limiter_close.  0 sent, -1 could not be sent in time. */
int limiter_settle(struct limiter *l, const struct limit_settle_req *req);
/* Tells limiterd a client connection opened (+1) or closed (-1); does not
 * wait, like limiter_settle. */
int limiter_conn_event(struct limiter *l, int delta);
/* Prometheus text exposition of limiterd's counters appended to out. */
int limiter_metrics(struct limiter *l, struct buf *out);

#endif
