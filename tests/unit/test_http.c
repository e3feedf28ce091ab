/* test_http.c - the HTTP/1.1 server side: the pure parser, the chunked
 * decoder, and struct http_conn over socketpairs and pipes (bodies,
 * pipelining, deadlines, exact response bytes, peer hang-up). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "t.h"
#include "util.h"

#define NEED_MORE (-1) /* ph(): HTTP_OK with nothing consumed */

/* Parses s with lim (NULL: defaults) and returns the status, or NEED_MORE. */
static int ph_lim(const char *s, size_t n, const struct http_limits *lim)
{
	struct http_request r;
	size_t used = 99;
	int rc = http_parse_head(s, n, lim, &r, &used);
	if (rc == HTTP_OK && used == 0)
		rc = NEED_MORE;
	if (rc != HTTP_OK && (used != 0 || r.method || r.headers))
		rc = -100; /* an error must leave nothing behind */
	http_request_free(&r);
	return rc;
}

static int ph(const char *s) { return ph_lim(s, strlen(s), NULL); }

static void put(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Everything readable from fd until it stays quiet for 100 ms (or EOF). */
static char *drain(int fd)
{
	struct buf b;
	char tmp[4096];
	buf_init(&b);
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			break;
		ssize_t r = read(fd, tmp, sizeof tmp);
		if (r <= 0)
			break;
		buf_append(&b, tmp, (size_t)r);
	}
	return b.data;
}

static void pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
}

static struct http_limits fast_limits(void)
{
	struct http_limits l;
	http_limits_default(&l);
	l.head_timeout_ms = 200;
	l.body_timeout_ms = 200;
	l.write_timeout_ms = 200;
	l.idle_timeout_ms = 200;
	return l;
}

/* Forks a writer that sends each piece of parts[] to fd after delay_ms,
 * then keeps the fd open for linger_ms.  Returns its pid. */
static pid_t slow_writer(int fd, const char *const *parts, int delay_ms, int linger_ms)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct timespec d = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
		for (size_t i = 0; parts[i]; i++) {
			nanosleep(&d, NULL);
			put(fd, parts[i]);
		}
		struct timespec l = {linger_ms / 1000, (long)(linger_ms % 1000) * 1000000L};
		nanosleep(&l, NULL);
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_parse_ok(void)
{
	struct http_request r;
	size_t used;
	const char *s;

	T_BEGIN("http-1.1");
	s = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(used, strlen(s));
	CHECK_STR(r.method, "GET");
	CHECK_STR(r.target, "/v1/models");
	CHECK_STR(r.path, "/v1/models");
	CHECK(r.query == NULL);
	CHECK_INT(r.minor, 1);
	CHECK_INT(r.keep_alive, 1);
	CHECK_INT(r.content_length, -1);
	CHECK_INT(r.chunked, 0);
	CHECK_INT(r.nheaders, 1);
	CHECK_STR(http_get_header(&r, "HOST"), "localhost");
	CHECK(http_get_header(&r, "Content-Length") == NULL);
	http_request_free(&r);
	CHECK(r.method == NULL && r.headers == NULL);

	T_BEGIN("http-1.2");
	s = "GET /v1/x?api-version=1&b=%41 HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_STR(r.path, "/v1/x");
	CHECK_STR(r.query, "api-version=1&b=%41");
	http_request_free(&r);
	s = "GET /x? HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_STR(r.query, "");
	http_request_free(&r);

	T_BEGIN("http-1.3");
	s = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\ncontent-type: \t application/json  \r\n"
	    "Content-Length: 5\r\nX-Empty:\r\nx-dup: first\r\nX-Dup: second\r\n\r\nhello";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(used, strlen(s) - 5);
	CHECK_STR(r.method, "POST");
	CHECK_INT(r.content_length, 5);
	CHECK_STR(http_get_header(&r, "Content-Type"), "application/json");
	CHECK_STR(http_get_header(&r, "x-empty"), "");
	CHECK_STR(http_get_header(&r, "X-DUP"), "first");
	CHECK_STR(r.headers[1].name, "content-type");
	http_request_free(&r);

	T_BEGIN("http-1.4");
	s = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.chunked, 1);
	CHECK_INT(r.content_length, -1);
	http_request_free(&r);

	T_BEGIN("http-1.5"); /* keep-alive per version and Connection */
	s = "GET / HTTP/1.0\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.minor, 0);
	CHECK_INT(r.keep_alive, 0);
	http_request_free(&r);
	s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.keep_alive, 1);
	http_request_free(&r);
	s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.keep_alive, 0);
	http_request_free(&r);
	s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, CLOSE\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.keep_alive, 0);
	http_request_free(&r);
	s = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.keep_alive, 0);
	http_request_free(&r);

	T_BEGIN("http-1.6"); /* two pipelined heads in one buffer */
	s = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_STR(r.path, "/a");
	CHECK_INT(used, strlen(s) / 2);
	http_request_free(&r);
	size_t used2 = 0;
	CHECK_INT(http_parse_head(s + used, strlen(s) - used, NULL, &r, &used2), HTTP_OK);
	CHECK_STR(r.path, "/b");
	CHECK_INT(used2, strlen(s) / 2);
	http_request_free(&r);

	T_BEGIN("http-1.7"); /* incomplete heads need more bytes */
	CHECK_INT(ph(""), NEED_MORE);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\n"), NEED_MORE);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\n\r"), NEED_MORE);
	CHECK_INT(ph("GET / HTTP/1.1\r"), NEED_MORE);

	T_BEGIN("http-1.8"); /* empty lines before the request line are skipped */
	s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(used, strlen(s));
	CHECK_STR(r.method, "GET");
	http_request_free(&r);

	T_BEGIN("http-1.9"); /* OPTIONS *, Expect */
	s = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_STR(r.path, "*");
	http_request_free(&r);
	s = "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.expect_continue, 1);
	http_request_free(&r);
	s = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.expect_continue, 0); /* RFC 9110 §10.1.1: ignored for 1.0 */
	http_request_free(&r);
	s = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.expect_continue, 0);
	http_request_free(&r);

	T_BEGIN("http-1.10"); /* identical Content-Length repeats are one value */
	s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.content_length, 7);
	http_request_free(&r);
	s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7\r\n\r\n";
	CHECK_INT(http_parse_head(s, strlen(s), NULL, &r, &used), HTTP_OK);
	CHECK_INT(r.content_length, 7);
	http_request_free(&r);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"), HTTP_OK);
	CHECK_INT(ph("GET / HTTP/1.0\r\n\r\n"), HTTP_OK); /* no Host needed in 1.0 */
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost:\r\n\r\n"), HTTP_OK); /* empty Host is legal */
}

static void test_parse_reject(void)
{
	struct http_limits l;

	T_BEGIN("http-2.1"); /* line endings */
	CHECK_INT(ph("GET / HTTP/1.1\nHost: h\n\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
	CHECK_INT(ph("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\n"), 400); /* rejected before the head is complete */

	T_BEGIN("http-2.2"); /* field lines */
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400); /* obs-fold */
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01" "b\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), 400);
	static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
	CHECK_INT(ph_lim(nul, sizeof nul - 1, NULL), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n"), HTTP_OK); /* obs-text ok */

	T_BEGIN("http-2.3"); /* request line */
	CHECK_INT(ph("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1x\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("G@T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("FOO / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
	CHECK_INT(ph("get / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
	CHECK_INT(ph("DELETE / HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP_OK); /* the router says 405 */

	T_BEGIN("http-2.4"); /* request target */
	CHECK_INT(ph("GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET evil:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
	CHECK_INT(ph("GET /%4 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);

	T_BEGIN("http-2.5"); /* version */
	CHECK_INT(ph("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
	CHECK_INT(ph("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), 505);

	T_BEGIN("http-2.6"); /* Content-Length and Transfer-Encoding: smuggling */
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n"),
		  400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		     "Content-Length: 5\r\n\r\n"),
		  400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
		  400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
		  400);

	T_BEGIN("http-2.7"); /* transfer codings */
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n"), 501);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
		  400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n"),
		  400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n"), 400);
	CHECK_INT(ph("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);

	T_BEGIN("http-2.8"); /* Host */
	CHECK_INT(ph("GET / HTTP/1.1\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
	CHECK_INT(ph("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"), 400);

	T_BEGIN("http-2.9"); /* bounds */
	http_limits_default(&l);
	l.max_head_bytes = 64;
	l.max_headers = 3;
	l.max_body_bytes = 100;
	{
		const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
		CHECK_INT(ph_lim(s, strlen(s), &l), 431);
		s = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaa";
		CHECK_INT(ph_lim(s, strlen(s), &l), NEED_MORE);
		s = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
		CHECK_INT(ph_lim(s, strlen(s), &l), HTTP_OK); /* exactly 3 */
		s = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
		CHECK_INT(ph_lim(s, strlen(s), &l), 431);
		s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n";
		CHECK_INT(ph_lim(s, strlen(s), &l), HTTP_OK);
		s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
		CHECK_INT(ph_lim(s, strlen(s), &l), 413);
	}
	CHECK_INT(ph("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 8388609\r\n\r\n"), 413);
	/* default max_headers = 100 */
	{
		struct buf b;
		buf_init(&b);
		buf_puts(&b, "GET / HTTP/1.1\r\nHost: h\r\n");
		for (int i = 0; i < 99; i++)
			buf_printf(&b, "X-%d: v\r\n", i);
		buf_puts(&b, "\r\n");
		CHECK_INT(ph(b.data), HTTP_OK);
		b.len -= 2;
		buf_puts(&b, "X-last: v\r\n\r\n");
		CHECK_INT(ph(b.data), 431);
		buf_free(&b);
	}
}

static void test_chunked(void)
{
	struct buf out;
	size_t used;
	const char *s;

	buf_init(&out);
	T_BEGIN("http-3.1");
	s = "5\r\nhello\r\n6;name=val;x\r\n world\r\n0\r\n\r\nNEXT";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), HTTP_OK);
	CHECK_INT(used, strlen(s) - 4);
	CHECK_STR(out.data, "hello world");
	buf_reset(&out);
	s = "A\r\n0123456789\r\n0\r\nX-Trailer: t\r\nY: u\r\n\r\n";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), HTTP_OK);
	CHECK_INT(used, strlen(s));
	CHECK_STR(out.data, "0123456789");
	buf_reset(&out);
	s = "0005\r\nhello\r\n0 ; last\r\n\r\n";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), HTTP_OK);
	CHECK_STR(out.data, "hello");

	T_BEGIN("http-3.2"); /* incomplete: nothing consumed, out untouched */
	buf_reset(&out);
	buf_puts(&out, "keep");
	s = "5\r\nhello\r\n0\r\n";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), HTTP_OK);
	CHECK_INT(used, 0);
	CHECK_STR(out.data, "keep");
	s = "5\r\nhel";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), HTTP_OK);
	CHECK_INT(used, 0);
	CHECK_STR(out.data, "keep");

	T_BEGIN("http-3.3"); /* byte by byte through the incremental decoder */
	{
		struct http_chunked st;
		struct buf acc;
		size_t fed = 0, got = 0;
		int rc = 0;
		s = "3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
		buf_reset(&out);
		buf_init(&acc);
		http_chunked_init(&st);
		for (fed = 0; fed < strlen(s) && !http_chunked_done(&st); fed++) {
			buf_append(&acc, s + fed, 1);
			size_t u = 0;
			rc = http_chunked_feed(&st, acc.data, acc.len, 100, &out, &u);
			if (rc)
				break;
			buf_consume(&acc, u);
			got += u;
		}
		CHECK_INT(rc, HTTP_OK);
		CHECK(http_chunked_done(&st));
		CHECK_INT(got, strlen(s));
		CHECK_STR(out.data, "abc0123456789abcdef");
		buf_free(&acc);
	}

	T_BEGIN("http-3.4"); /* bad framing */
	CHECK_INT(http_decode_chunked("5\r\nhelloX\r\n0\r\n\r\n", 17, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("5\r\nhello\n0\r\n\r\n", 15, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("g\r\n", 3, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("0x5\r\nhello\r\n0\r\n\r\n", 18, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked(" 5\r\nhello\r\n0\r\n\r\n", 17, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("5 x\r\nhello\r\n0\r\n\r\n", 18, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("\r\n", 2, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("5\nhello\r\n", 9, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("5;a\x01\r\nhello\r\n", 13, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("0\r\nT: v\r\n folded\r\n\r\n", 21, 100, &out, &used), 400);
	CHECK_INT(http_decode_chunked("0\r\nbad trailer\r\n\r\n", 19, 100, &out, &used), 400);
	{
		struct buf big;
		buf_init(&big);
		buf_puts(&big, "5;");
		for (int i = 0; i < HTTP_MAX_CHUNK_LINE; i++)
			buf_puts(&big, "a");
		CHECK_INT(http_decode_chunked(big.data, big.len, 100, &out, &used), 400);
		buf_reset(&big);
		buf_puts(&big, "0\r\n");
		for (int i = 0; i < HTTP_MAX_TRAILER_BYTES / 8 + 1; i++)
			buf_puts(&big, "X: 1234\r\n");
		CHECK_INT(http_decode_chunked(big.data, big.len, 100, &out, &used), 400);
		buf_free(&big);
	}

	T_BEGIN("http-3.5"); /* size limits and overflow */
	CHECK_INT(http_decode_chunked("65\r\n", 4, 100, &out, &used), 413); /* 101 */
	CHECK_INT(http_decode_chunked("64\r\n", 4, 100, &out, &used), HTTP_OK); /* 100: need more */
	CHECK_INT(used, 0);
	s = "32\r\n" "01234567890123456789012345678901234567890123456789\r\n"
	    "33\r\n";
	CHECK_INT(http_decode_chunked(s, strlen(s), 100, &out, &used), 413); /* 50 + 51 */
	CHECK_INT(http_decode_chunked("ffffffffffffffffffffffff\r\n", 26, SIZE_MAX, &out, &used), 413);
	CHECK_INT(http_decode_chunked("10000000000000000\r\n", 19, SIZE_MAX, &out, &used), 413);
	buf_free(&out);
}

/* a connection on sv[0]; the test plays the client on sv[1] */
static void test_conn_bodies(void)
{
	int sv[2];
	struct http_conn *c;
	struct http_request r;
	struct http_limits l = fast_limits();

	T_BEGIN("http-4.1"); /* Content-Length body, then a keep-alive request */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST /v1/embeddings HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello");
	put(sv[1], " worldGET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(http_read_body(c, &r), HTTP_OK);
	CHECK_INT(r.body_len, 11);
	CHECK_STR(r.body, "hello world");
	http_request_free(&r);
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_STR(r.path, "/healthz");
	CHECK_INT(http_read_body(c, &r), HTTP_OK);
	CHECK_INT(r.body_len, 0);
	CHECK_STR(r.body, "");
	http_request_free(&r);
	CHECK_INT(http_requests_served(c), 2);
	close(sv[1]);
	CHECK_INT(http_read_head(c, &r), HTTP_CLOSED);
	http_conn_free(c);
	close(sv[0]);

	T_BEGIN("http-4.2"); /* chunked body with trailers, pipelined request after */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		   "4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n"
		   "GET /v1/models HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(r.chunked, 1);
	CHECK_INT(http_read_body(c, &r), HTTP_OK);
	CHECK_STR(r.body, "{\"a\":1}");
	CHECK_INT(r.body_len, 7);
	http_request_free(&r);
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_STR(r.path, "/v1/models");
	CHECK_INT(r.keep_alive, 0);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-4.3"); /* body over the limit: Content-Length and chunked */
	l.max_body_bytes = 10;
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
	CHECK_INT(http_read_head(c, &r), 413);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		   "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(http_read_body(c, &r), 413);
	CHECK(r.body == NULL);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	l = fast_limits();

	T_BEGIN("http-4.4"); /* bad chunked framing over the connection */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(http_read_body(c, &r), 400);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-4.5"); /* EOF inside a head, inside a body; clean EOF */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "GET / HTTP/1.1\r\nHo");
	shutdown(sv[1], SHUT_WR);
	CHECK_INT(http_read_head(c, &r), 400);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
	shutdown(sv[1], SHUT_WR);
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(http_read_body(c, &r), 400);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	close(sv[1]);
	CHECK_INT(http_read_head(c, &r), HTTP_CLOSED);
	http_conn_free(c);
	close(sv[0]);

	T_BEGIN("http-4.6"); /* max_requests per connection */
	l.max_requests = 2;
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
		   "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(r.keep_alive, 1);
	http_request_free(&r);
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(r.keep_alive, 0); /* the last one allowed: the answer says close */
	http_request_free(&r);
	CHECK_INT(http_read_head(c, &r), HTTP_CLOSED);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	l = fast_limits();

	T_BEGIN("http-4.7"); /* a body arriving in pieces within the deadline */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	{
		static const char *const parts[] = {"POST / HTTP/1.1\r\nHost: h\r\n",
						    "Transfer-Encoding: chunked\r\n\r\n3\r",
						    "\nabc\r\n", "0\r\n", "\r\n", NULL};
		pid_t pid = slow_writer(sv[1], parts, 20, 500);
		CHECK_INT(http_read_head(c, &r), HTTP_OK);
		CHECK_INT(http_read_body(c, &r), HTTP_OK);
		CHECK_STR(r.body, "abc");
		http_request_free(&r);
		reap(pid);
	}
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-4.8"); /* pipes, as inetd-style fd 0 / fd 1 */
	{
		int in[2], out[2];
		if (pipe(in) < 0 || pipe(out) < 0)
			exit(2);
		c = http_conn_new(in[0], out[1], &l);
		put(in[1], "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
		CHECK_INT(http_read_head(c, &r), HTTP_OK);
		CHECK_STR(r.path, "/healthz");
		http_request_free(&r);
		CHECK_INT(http_respond(c, 200, NULL, NULL, "ok", 2, 1), 0);
		char *got = drain(out[0]);
		CHECK_STR(got, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
		free(got);
		http_conn_free(c);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
	}
}

static int64_t elapsed_since(int64_t t0) { return mono_ms() - t0; }

static void test_timeouts(void)
{
	int sv[2];
	struct http_conn *c;
	struct http_request r;
	struct http_limits l = fast_limits();
	int64_t t0, dt;

	T_BEGIN("http-5.1"); /* idle: nothing arrives -> closed quietly */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	t0 = mono_ms();
	CHECK_INT(http_read_head(c, &r), HTTP_CLOSED);
	dt = elapsed_since(t0);
	CHECK(dt >= 190 && dt < 1500);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-5.2"); /* half a head, then silence -> 408 */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "GET / HTTP/1.1\r\nHost: h\r\n");
	t0 = mono_ms();
	CHECK_INT(http_read_head(c, &r), 408);
	dt = elapsed_since(t0);
	CHECK(dt >= 190 && dt < 1500);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-5.3"); /* slowloris: a byte every 40 ms does not extend the deadline */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	{
		static const char *const parts[] = {"G", "E", "T", " ", "/", " ", "H", "T", "T",
						    "P", "/", "1", ".", "1", "\r", "\n", "H", "o",
						    "s", "t", ":", " ", "h", NULL};
		pid_t pid = slow_writer(sv[1], parts, 40, 2000);
		t0 = mono_ms();
		CHECK_INT(http_read_head(c, &r), 408);
		dt = elapsed_since(t0);
		CHECK(dt >= 200 && dt < 700); /* first byte at ~40 ms + 200 ms */
		reap(pid);
	}
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-5.4"); /* body stalls: Content-Length and chunked */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	t0 = mono_ms();
	CHECK_INT(http_read_body(c, &r), 408);
	dt = elapsed_since(t0);
	CHECK(dt >= 190 && dt < 1500);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	put(sv[1], "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab");
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_INT(http_read_body(c, &r), 408);
	http_request_free(&r);
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);

	T_BEGIN("http-5.5"); /* a client that never reads: the write gives up */
	pair(sv);
	c = http_conn_new(sv[0], sv[0], &l);
	{
		size_t n = 8 * 1024 * 1024;
		char *big = xcalloc(1, n);
		t0 = mono_ms();
		CHECK_INT(http_write(c, big, n), -1);
		dt = elapsed_since(t0);
		CHECK(dt >= 190 && dt < 1500);
		free(big);
	}
	http_conn_free(c);
	close(sv[0]);
	close(sv[1]);
}

static void test_output(void)
{
	int sv[2];
	struct http_conn *c;
	char *got;

	pair(sv);
	c = http_conn_new(sv[0], sv[0], NULL);

	T_BEGIN("http-6.1");
	CHECK_INT(http_respond(c, 200, "application/json", "X-Request-Id: 7\r\n", "{}", 2, 1), 0);
	got = drain(sv[1]);
	CHECK_STR(got, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
		       "Connection: keep-alive\r\nX-Request-Id: 7\r\n\r\n{}");
	free(got);

	T_BEGIN("http-6.2");
	CHECK_INT(http_respond(c, 404, NULL, "Retry-After: 1", NULL, 0, 0), 0);
	got = drain(sv[1]);
	CHECK_STR(got, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n"
		       "Retry-After: 1\r\n\r\n");
	free(got);

	T_BEGIN("http-6.3"); /* a body bigger than the copy bound goes out whole */
	{
		size_t n = 200000;
		char *body = xmalloc(n);
		memset(body, 'z', n);
		CHECK_INT(http_respond(c, 500, "text/plain", NULL, body, n, 0), 0);
		got = drain(sv[1]);
		const char *want = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
				   "Content-Length: 200000\r\nConnection: close\r\n\r\n";
		CHECK(strncmp(got, want, strlen(want)) == 0);
		CHECK_INT(strlen(got), strlen(want) + n);
		CHECK(got[strlen(got) - 1] == 'z');
		free(got);
		free(body);
	}

	T_BEGIN("http-6.4"); /* chunked stream */
	CHECK_INT(http_stream_begin(c, 200, "text/event-stream", NULL, 1), 0);
	CHECK_INT(http_stream_write(c, "data: {}\n\n", 10), 0);
	CHECK_INT(http_stream_write(c, "x", 0), 0);
	{
		char blob[300];
		memset(blob, 'b', sizeof blob);
		CHECK_INT(http_stream_write(c, blob, sizeof blob), 0);
	}
	CHECK_INT(http_stream_end(c), 0);
	got = drain(sv[1]);
	{
		struct buf want;
		buf_init(&want);
		buf_puts(&want, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
				"Connection: keep-alive\r\n\r\na\r\ndata: {}\n\n\r\n12c\r\n");
		for (int i = 0; i < 300; i++)
			buf_puts(&want, "b");
		buf_puts(&want, "\r\n0\r\n\r\n");
		CHECK_STR(got, want.data);
		buf_free(&want);
	}
	free(got);
	CHECK_INT(http_stream_begin(c, 429, NULL, "X-A: 1\r\nX-B: 2\r\n", 0), 0);
	got = drain(sv[1]);
	CHECK_STR(got, "HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n"
		       "Cache-Control: no-cache\r\nConnection: close\r\nX-A: 1\r\nX-B: 2\r\n\r\n");
	free(got);

	T_BEGIN("http-6.5");
	CHECK_INT(http_send_continue(c), 0);
	got = drain(sv[1]);
	CHECK_STR(got, "HTTP/1.1 100 Continue\r\n\r\n");
	free(got);

	T_BEGIN("http-6.6");
	{
		static const int st[] = {100, 200, 400, 401, 403, 404, 405, 408, 413,
					 415, 429, 431, 500, 501, 502, 503, 504, 505};
		int unknown = 0;
		for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
			unknown += strcmp(http_reason(st[i]), "Unknown") == 0;
		CHECK_INT(unknown, 0);
		CHECK_STR(http_reason(413), "Content Too Large");
		CHECK_STR(http_reason(431), "Request Header Fields Too Large");
		CHECK_STR(http_reason(299), "Unknown");
	}

	T_BEGIN("http-6.7"); /* peer gone: -1, and no SIGPIPE kills us */
	close(sv[1]);
	CHECK_INT(http_respond(c, 200, NULL, NULL, "x", 1, 1), -1);
	http_conn_free(c);
	close(sv[0]);
	{
		int p[2];
		if (pipe(p) < 0)
			exit(2);
		close(p[0]);
		c = http_conn_new(-1, p[1], NULL);
		CHECK_INT(http_write(c, "abc", 3), -1);
		sigset_t pend;
		sigpending(&pend);
		CHECK(!sigismember(&pend, SIGPIPE));
		http_conn_free(c);
		close(p[1]);
	}
}

static void test_peer_closed(void)
{
	int sv[2];
	struct http_conn *c;
	struct http_request r;

	T_BEGIN("http-7.1");
	pair(sv);
	c = http_conn_new(sv[0], sv[0], NULL);
	CHECK_INT(http_peer_closed(c), 0);
	put(sv[1], "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_INT(http_peer_closed(c), 0);
	CHECK_INT(http_peer_closed(c), 0); /* peeking consumed nothing */
	CHECK_INT(http_read_head(c, &r), HTTP_OK);
	CHECK_STR(r.path, "/next");
	http_request_free(&r);
	close(sv[1]);
	CHECK_INT(http_peer_closed(c), 1);
	http_conn_free(c);
	close(sv[0]);

	T_BEGIN("http-7.2"); /* over a pipe the pending bytes are buffered */
	{
		int p[2];
		if (pipe(p) < 0)
			exit(2);
		c = http_conn_new(p[0], -1, NULL);
		CHECK_INT(http_peer_closed(c), 0);
		put(p[1], "GET /piped HTTP/1.1\r\nHost: h\r\n\r\n");
		CHECK_INT(http_peer_closed(c), 0);
		CHECK_INT(http_read_head(c, &r), HTTP_OK);
		CHECK_STR(r.path, "/piped");
		http_request_free(&r);
		close(p[1]);
		CHECK_INT(http_peer_closed(c), 1);
		http_conn_free(c);
		close(p[0]);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_DFL); /* prove we never raise it */
	test_parse_ok();
	test_parse_reject();
	test_chunked();
	test_conn_bodies();
	test_timeouts();
	test_output();
	test_peer_closed();
	return T_END();
}
