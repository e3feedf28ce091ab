/* upstream.h - one HTTP exchange with a provider over libcurl's multi
 * interface, so the proxy can enforce a first-byte deadline, notice a
 * client that hung up, and relay a stream as it arrives.  One handle per
 * process keeps upstream connections alive across a client's requests. */
#ifndef LLMPROXY_UPSTREAM_H
#define LLMPROXY_UPSTREAM_H

#include "adapter.h"

enum upstream_outcome {
	UP_OK = 0,        /* an HTTP answer arrived (any status) */
	UP_UNREACHABLE,   /* DNS, connect, TLS failure: 502 */
	UP_TIMEOUT,       /* connect or first byte too slow: 504 */
	UP_BROKEN,        /* the answer stopped midway */
	UP_CLIENT_GONE,   /* our client hung up: abort */
	UP_ABORTED,       /* the stream callback asked to stop */
};

struct upstream_opts {
	int connect_timeout_ms;
	int first_byte_timeout_ms;
	int request_timeout_ms;      /* non-stream only */
	int stream_idle_timeout_ms;  /* stream only */
	size_t max_body;
};

struct upstream_io {
	/* Called with body bytes of a 2xx answer to a streaming request;
	 * non-zero stops the transfer (UP_ABORTED). */
	int (*on_stream)(void *ctx, long status, const char *p, size_t n);
	/* Polled while waiting; non-zero means the client is gone. */
	int (*client_gone)(void *ctx);
	void *ctx;
};

struct upstream_result {
	enum upstream_outcome outcome;
	long status;
	int streamed;           /* on_stream received the body */
	int answered;           /* an answer head arrived (the provider saw it) */
	struct buf body;        /* the body when not streamed (bounded) */
	char retry_after[32];   /* upstream Retry-After, if any */
	char detail[256];       /* curl's reason for failures, no secrets */
};

void upstream_global_init(void);
/* Performs req.  res->body is initialised here; free with upstream_result_free. */
void upstream_perform(const struct upstream_req *req, const struct upstream_opts *o,
		      struct upstream_io *io, struct upstream_result *res);
void upstream_result_free(struct upstream_result *res);
/* Frees the per-process handles (at exit). */
void upstream_cleanup(void);

#endif
