/* upstream.c - see upstream.h. */
#include "upstream.h"

#include <stdio.h>
#include <string.h>

static CURLM *multi;
static CURL *easy;

struct xfer {
	const struct upstream_req *req;
	struct upstream_io *io;
	struct upstream_result *res;
	size_t max_body;
	int got_head;
	int64_t last_byte_ms;
	int aborted;
	int too_big;
};

void upstream_global_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatal("curl_global_init failed");
}

void upstream_cleanup(void)
{
	if (easy) {
		if (multi)
			curl_multi_remove_handle(multi, easy);
		curl_easy_cleanup(easy);
	}
	if (multi)
		curl_multi_cleanup(multi);
	easy = NULL;
	multi = NULL;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;
	long code = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	if (len <= 2 && code >= 200) {
		x->got_head = 1; /* end of the final header block */
		x->res->status = code;
	}
	if (len > 12 && ascii_ncasecmp(p, "retry-after:", 12) == 0) {
		const char *v = p + 12;
		while (*v == ' ' && v < p + len)
			v++;
		size_t k = 0;
		while (v + k < p + len && v[k] != '\r' && v[k] != '\n' &&
		       k < sizeof x->res->retry_after - 1)
			k++;
		memcpy(x->res->retry_after, v, k);
		x->res->retry_after[k] = 0;
	}
	x->last_byte_ms = mono_ms();
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;
	long code = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	x->got_head = 1;
	x->res->status = code;
	x->last_byte_ms = mono_ms();
	if (x->req->is_stream && code >= 200 && code < 300 && x->io->on_stream) {
		x->res->streamed = 1;
		if (x->io->on_stream(x->io->ctx, code, p, len)) {
			x->aborted = 1;
			return 0;
		}
		return len;
	}
	if (x->res->body.len + len > x->max_body) {
		x->too_big = 1;
		return 0;
	}
	buf_append(&x->res->body, p, len);
	return len;
}

static void set_failure(struct upstream_result *res, enum upstream_outcome o, const char *why)
{
	res->outcome = o;
	snprintf(res->detail, sizeof res->detail, "%s", why);
}

void upstream_perform(const struct upstream_req *req, const struct upstream_opts *o,
		      struct upstream_io *io, struct upstream_result *res)
{
	struct xfer x = {.req = req, .io = io, .res = res, .max_body = o->max_body};
	char errbuf[CURL_ERROR_SIZE] = "";
	memset(res, 0, sizeof *res);
	buf_init(&res->body);

	if (!multi && !(multi = curl_multi_init()))
		fatal("curl_multi_init failed");
	if (!easy && !(easy = curl_easy_init()))
		fatal("curl_easy_init failed");
	curl_easy_reset(easy); /* keeps the connection cache */

	curl_easy_setopt(easy, CURLOPT_URL, req->url.data);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
	struct curl_slist *h = req->headers;
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* no Expect: 100-continue round trip on large bodies */
	curl_easy_setopt(easy, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "llmproxy/1");

	int64_t start = mono_ms();
	x.last_byte_ms = start;
	curl_multi_add_handle(multi, easy);
	int running = 1;
	while (running) {
		CURLMcode mc = curl_multi_perform(multi, &running);
		if (mc != CURLM_OK) {
			set_failure(res, UP_UNREACHABLE, curl_multi_strerror(mc));
			goto out;
		}
		if (!running)
			break;
		int64_t now = mono_ms(), wait = 1000;
		if (!x.got_head) {
			int64_t left = start + o->first_byte_timeout_ms - now;
			if (left <= 0) {
				set_failure(res, UP_TIMEOUT, "no answer from the provider in time");
				goto out;
			}
			if (left < wait)
				wait = left;
		} else if (req->is_stream && o->stream_idle_timeout_ms > 0) {
			int64_t left = x.last_byte_ms + o->stream_idle_timeout_ms - now;
			if (left <= 0) {
				set_failure(res, UP_BROKEN, "the provider's stream went silent");
				goto out;
			}
			if (left < wait)
				wait = left;
		} else if (!req->is_stream && o->request_timeout_ms > 0) {
			int64_t left = start + o->request_timeout_ms - now;
			if (left <= 0) {
				set_failure(res, UP_TIMEOUT, "the provider's answer took too long");
				goto out;
			}
			if (left < wait)
				wait = left;
		}
		if (io->client_gone && io->client_gone(io->ctx)) {
			set_failure(res, UP_CLIENT_GONE, "client went away");
			goto out;
		}
		curl_multi_poll(multi, NULL, 0, (int)wait, NULL);
	}

	CURLcode cc = CURLE_OK;
	int left_msgs;
	CURLMsg *m;
	while ((m = curl_multi_info_read(multi, &left_msgs)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == easy)
			cc = m->data.result;
	if (x.aborted) {
		set_failure(res, UP_ABORTED, "stopped");
	} else if (x.too_big) {
		set_failure(res, UP_BROKEN, "the provider's answer is too large");
	} else if (cc == CURLE_OK) {
		res->outcome = UP_OK;
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res->status);
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		set_failure(res, x.got_head ? UP_BROKEN : UP_TIMEOUT, "timed out");
	} else if (x.got_head) {
		set_failure(res, UP_BROKEN, curl_easy_strerror(cc));
	} else {
		/* errbuf may name the host, never a credential (not in URLs) */
		set_failure(res, UP_UNREACHABLE, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
out:
	res->answered = x.got_head;
	curl_multi_remove_handle(multi, easy);
	/* the header list may hold the credential; curl copies nothing we keep */
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
}

void upstream_result_free(struct upstream_result *res) { buf_free(&res->body); }
