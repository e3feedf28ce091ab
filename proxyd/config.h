/* config.h - proxyd's options, their defaults (named constants) and the
 * secrets it holds for the life of the process. */
#ifndef LLMPROXY_PROXYD_CONFIG_H
#define LLMPROXY_PROXYD_CONFIG_H

#include <sys/types.h>

#include "http.h"
#include "vault.h"

#define PROXYD_CONNECT_TIMEOUT_MS 10000
#define PROXYD_FIRST_BYTE_TIMEOUT_MS 120000   /* upstream answer head */
#define PROXYD_REQUEST_TIMEOUT_MS 600000      /* whole non-streamed answer */
#define PROXYD_STREAM_IDLE_TIMEOUT_MS 300000  /* silence inside a stream */
#define PROXYD_LIMITER_TIMEOUT_MS 200
#define PROXYD_MAX_ATTEMPTS 3                 /* upstreams tried per request */
#define PROXYD_MAX_UPSTREAM_BODY (64 * 1024 * 1024)
#define PROXYD_MAX_CONNS 512
#define PROXYD_LINGER_MS 500                  /* reading after we close ... */
#define PROXYD_LINGER_MAX_BYTES (1024 * 1024) /* ... at most this much */
#define PROXYD_DRAIN_MAX_BYTES 65536          /* body read before an early
						 * refusal, to keep the connection */
#define PROXYD_SPARES 4                       /* connection processes forked
						 * and prepared ahead of need */
#define PROXYD_GRACE_MS 10000                 /* in-flight grace on SIGTERM */
#define PROXYD_DEFAULT_LISTEN "127.0.0.1:8132"
#define PROXYD_MAX_COMPLETION_ESTIMATE 10000000 /* cap on a client's max_tokens */
#define PROXYD_DEFAULT_COMPLETION_ESTIMATE 512 /* tokens reserved when the
						 * request sets no max_tokens */

enum accept_mode { ACCEPT_FORK = 0, ACCEPT_EXEC = 1 };

struct proxyd_config {
	struct http_limits http;
	const char *db_path;
	const char *master_key_path;
	const char *limiter;         /* ZeroMQ endpoint or NULL */
	int limiter_timeout_ms;
	int fail_open;               /* pass requests when limiterd is down */
	int connect_timeout_ms;
	int first_byte_timeout_ms;
	int request_timeout_ms;
	int stream_idle_timeout_ms;
	int max_attempts;
	int64_t completion_estimate;
	const char *listen;          /* ADDR:PORT for the built-in listener */
	int max_conns;
	int spares;
	int grace_ms;
	enum accept_mode accept_mode;
	const char *user;            /* drop to this user when root */
	uid_t uid;
	gid_t gid;
	int seccomp;                 /* 1 = install the syscall filter */

	unsigned char master[MASTER_KEY_BYTES];
	unsigned char vkey_hkey[32];
};

#endif
