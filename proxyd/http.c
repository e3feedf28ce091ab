/* http.c - strict HTTP/1.1 server side; see http.h.
 *
 * The parser is a pure function over a byte buffer (http_parse_head) so the
 * fuzzer and the unit tests drive it without fds; the connection code only
 * adds deadlines (poll with the remaining time) and bounded buffering. */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define HTTP_READ_CHUNK 65536 /* most bytes asked of one read() */
#define HTTP_WRITE_PIPE_CHUNK PIPE_BUF /* pipes: no more than poll promised */

enum { CH_SIZE = 0, CH_DATA, CH_DATA_CRLF, CH_TRAILER, CH_DONE };

struct http_conn {
	int rfd, wfd;
	int rsock, wsock; /* 1 if the fd is a socket */
	int eof; /* read() returned 0 */
	int served;
	struct http_limits lim;
	struct buf in; /* bytes read and not yet consumed */
};

void http_limits_default(struct http_limits *l)
{
	l->max_head_bytes = HTTP_MAX_HEAD_BYTES;
	l->max_headers = HTTP_MAX_HEADERS;
	l->max_body_bytes = HTTP_MAX_BODY_BYTES;
	l->head_timeout_ms = HTTP_HEAD_TIMEOUT_MS;
	l->body_timeout_ms = HTTP_BODY_TIMEOUT_MS;
	l->write_timeout_ms = HTTP_WRITE_TIMEOUT_MS;
	l->idle_timeout_ms = HTTP_IDLE_TIMEOUT_MS;
	l->max_requests = HTTP_MAX_REQUESTS;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- character classes (RFC 9110 §5.6.2, RFC 3986 §2) ---- */

static int is_tchar(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return 1;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_hex(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static int hex_val(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return ch - 'A' + 10;
}

/* pchar / "/" / "?" without '%' (checked separately with its two hex digits) */
static int is_target_char(unsigned char ch)
{
	if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
		return 1;
	return ch && strchr("-._~!$&'()*+,;=:@/?", ch) != NULL;
}

/* field-value bytes: VCHAR, obs-text, SP, HTAB; no other CTL, no DEL */
static int is_value_char(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* Case-insensitive compare of a counted string with a NUL-terminated one. */
static int token_is(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && ascii_ncasecmp(p, lit, n) == 0;
}

/* Next element of a comma-separated list (RFC 9110 §5.6.1) starting at *p:
 * sets *tok / *toklen to the element with OWS trimmed (possibly empty) and
 * advances *p past the comma.  Returns 0 when the list is exhausted. */
static int list_next(const char **p, const char **tok, size_t *toklen)
{
	const char *s = *p;
	if (!s)
		return 0;
	const char *comma = strchr(s, ',');
	const char *e = comma ? comma : s + strlen(s);
	while (s < e && is_ows(*s))
		s++;
	const char *t = e;
	while (t > s && is_ows(t[-1]))
		t--;
	*tok = s;
	*toklen = (size_t)(t - s);
	*p = comma ? comma + 1 : NULL;
	return 1;
}

/* ---- request head ---- */

void http_request_free(struct http_request *req)
{
	if (!req)
		return;
	free(req->method);
	free_secret(req->target);
	free_secret(req->path);
	free_secret(req->query);
	for (size_t i = 0; i < req->nheaders; i++) {
		free(req->headers[i].name);
		free_secret(req->headers[i].value);
	}
	free(req->headers);
	if (req->body) {
		wipe(req->body, req->body_len + 1);
		free(req->body);
	}
	memset(req, 0, sizeof *req);
}

const char *http_get_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (ascii_casecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int method_known(const char *m, size_t n)
{
	static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
					    "CONNECT", "OPTIONS", "TRACE", "PATCH"};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strlen(known[i]) == n && memcmp(known[i], m, n) == 0) /* case-sensitive */
			return 1;
	return 0;
}

/* Validates origin-form characters, including %XX escapes. 0 ok, -1 bad. */
static int check_target(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)t[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -1;
			if (!is_hex((unsigned char)t[i + 1]) || !is_hex((unsigned char)t[i + 2]))
				return -1;
			i += 2;
		} else if (!is_target_char(ch)) {
			return -1;
		}
	}
	return 0;
}

/* Request line "METHOD SP target SP HTTP/1.x" (without its CRLF). */
static int parse_request_line(const char *l, size_t n, struct http_request *out)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)l[i]))
		i++;
	if (i == 0 || i >= n || l[i] != ' ')
		return 400;
	size_t mlen = i;
	size_t ts = i + 1, te = ts;
	while (te < n && l[te] != ' ')
		te++;
	if (te == ts || te >= n)
		return 400;
	const char *v = l + te + 1;
	size_t vlen = n - te - 1;
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9')
		return 400;
	const char *t = l + ts;
	size_t tlen = te - ts;
	if (check_target(t, tlen) < 0)
		return 400;
	if (v[5] != '1')
		return 505;
	if (!method_known(l, mlen))
		return 501;
	if (t[0] == '/') {
		/* origin-form */
	} else if (tlen == 1 && t[0] == '*') {
		if (!(mlen == 7 && memcmp(l, "OPTIONS", 7) == 0))
			return 400;
	} else {
		return 400; /* absolute-form / authority-form: we are not a forward proxy */
	}
	out->method = xstrndup(l, mlen);
	out->target = xstrndup(t, tlen);
	const char *q = memchr(t, '?', tlen);
	if (q) {
		out->path = xstrndup(t, (size_t)(q - t));
		out->query = xstrndup(q + 1, tlen - (size_t)(q - t) - 1);
	} else {
		out->path = xstrndup(t, tlen);
	}
	out->minor = v[7] - '0';
	return HTTP_OK;
}

/* One field line "name: value" (without CRLF).  Owned strings go to h. */
static int parse_field_line(const char *l, size_t n, struct http_header *h)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)l[i]))
		i++;
	/* also catches obs-fold (leading SP/HTAB) and whitespace before ':' */
	if (i == 0 || i >= n || l[i] != ':')
		return 400;
	size_t vs = i + 1, ve = n;
	for (size_t k = vs; k < n; k++)
		if (!is_value_char((unsigned char)l[k]))
			return 400;
	while (vs < ve && is_ows(l[vs]))
		vs++;
	while (ve > vs && is_ows(l[ve - 1]))
		ve--;
	if (h) {
		h->name = xstrndup(l, i);
		h->value = xstrndup(l + vs, ve - vs);
	}
	return HTTP_OK;
}

/* Content-Length (RFC 9112 §6.3): every element of every field must be the
 * same 1*DIGIT value. */
static int parse_content_length(const char *v, int64_t *cl)
{
	const char *tok;
	size_t n;
	const char *p = v;
	while (list_next(&p, &tok, &n)) {
		if (n == 0 || n > 18)
			return 400; /* empty, or more digits than int64 can surely hold */
		int64_t x = 0;
		for (size_t i = 0; i < n; i++) {
			if (tok[i] < '0' || tok[i] > '9')
				return 400;
			x = x * 10 + (tok[i] - '0');
		}
		if (*cl >= 0 && *cl != x)
			return 400;
		*cl = x;
	}
	return HTTP_OK;
}

/* Framing, Host, Connection and Expect semantics once all fields are in. */
static int check_semantics(struct http_request *r, const struct http_limits *lim)
{
	int hosts = 0, te_seen = 0, chunked = 0, other = 0, empty = 0, conn_close = 0, ka = 0;
	int64_t cl = -1;
	int cl_seen = 0;
	for (size_t i = 0; i < r->nheaders; i++) {
		const char *name = r->headers[i].name, *val = r->headers[i].value;
		const char *p = val, *tok;
		size_t n;
		if (ascii_casecmp(name, "host") == 0) {
			hosts++;
		} else if (ascii_casecmp(name, "content-length") == 0) {
			cl_seen = 1;
			int rc = parse_content_length(val, &cl);
			if (rc)
				return rc;
		} else if (ascii_casecmp(name, "transfer-encoding") == 0) {
			te_seen = 1;
			while (list_next(&p, &tok, &n)) {
				if (n == 0)
					empty++;
				else if (token_is(tok, n, "chunked"))
					chunked++;
				else
					other++;
			}
		} else if (ascii_casecmp(name, "connection") == 0) {
			while (list_next(&p, &tok, &n)) {
				if (token_is(tok, n, "close"))
					conn_close = 1;
				else if (token_is(tok, n, "keep-alive"))
					ka = 1;
			}
		} else if (ascii_casecmp(name, "expect") == 0) {
			if (r->minor >= 1 && ascii_casecmp(val, "100-continue") == 0)
				r->expect_continue = 1;
		}
	}
	if (te_seen) {
		if (cl_seen)
			return 400; /* request smuggling vector (RFC 9112 §6.1) */
		if (r->minor == 0)
			return 400;
		if (empty || chunked > 1)
			return 400;
		if (other)
			return 501;
		if (chunked != 1)
			return 400;
		r->chunked = 1;
	}
	if (hosts > 1 || (r->minor >= 1 && hosts != 1))
		return 400;
	if (cl > 0 && (uint64_t)cl > (uint64_t)lim->max_body_bytes)
		return 413;
	r->content_length = cl;
	r->keep_alive = r->minor >= 1 ? !conn_close : (ka && !conn_close);
	return HTTP_OK;
}

int http_parse_head(const char *data, size_t len, const struct http_limits *lim,
		    struct http_request *out, size_t *consumed)
{
	struct http_limits def;
	size_t scan, start = 0, end = 0, lines = 0;
	int rc = HTTP_OK;

	if (!lim) {
		http_limits_default(&def);
		lim = &def;
	}
	*consumed = 0;
	memset(out, 0, sizeof *out);
	out->content_length = -1;
	scan = len < lim->max_head_bytes ? len : lim->max_head_bytes;

	/* RFC 9112 §2.2: ignore empty lines before the request line */
	while (start + 1 < scan && data[start] == '\r' && data[start + 1] == '\n')
		start += 2;
	/* find the blank line, rejecting any CR or LF that is not part of CRLF */
	for (size_t i = start; i < scan; i++) {
		if (data[i] == '\r') {
			if (i + 1 < scan && data[i + 1] != '\n')
				return 400;
		} else if (data[i] == '\n') {
			if (i == start || data[i - 1] != '\r')
				return 400;
			lines++;
			if (i >= start + 3 && data[i - 2] == '\n') {
				end = i + 1;
				break;
			}
		}
	}
	if (!end)
		return len >= lim->max_head_bytes ? 431 : HTTP_OK;
	/* lines counts the request line and the blank line too */
	if (lines < 2 || lines - 2 > lim->max_headers)
		return lines < 2 ? 400 : 431;

	const char *p = data + start;
	const char *stop = data + end - 2; /* the blank line's CRLF */
	const char *eol = memchr(p, '\r', (size_t)(stop - p));
	rc = parse_request_line(p, (size_t)(eol - p), out);
	if (rc)
		goto out;
	p = eol + 2;
	out->headers = xcalloc(lines - 2 ? lines - 2 : 1, sizeof *out->headers);
	while (p < stop) {
		eol = memchr(p, '\r', (size_t)(stop - p));
		rc = parse_field_line(p, (size_t)(eol - p), &out->headers[out->nheaders]);
		if (rc)
			goto out;
		out->nheaders++;
		p = eol + 2;
	}
	rc = check_semantics(out, lim);
	if (rc)
		goto out;
	*consumed = end;
out:
	if (rc)
		http_request_free(out);
	return rc;
}

/* ---- chunked transfer coding (RFC 9112 §7.1) ---- */

void http_chunked_init(struct http_chunked *st) { memset(st, 0, sizeof *st); }

int http_chunked_done(const struct http_chunked *st) { return st->state == CH_DONE; }

/* Finds a CRLF-terminated line of at most max bytes in p[0..n): 1 with *e =
 * its length, 0 when more bytes are needed, -1 on a bare CR/LF or a line
 * that is too long. */
static int find_line(const char *p, size_t n, size_t max, size_t *e)
{
	size_t lim = n < max + 1 ? n : max + 1;
	for (size_t i = 0; i < lim; i++) {
		if (p[i] == '\n')
			return -1;
		if (p[i] == '\r') {
			if (i + 1 >= n)
				return 0;
			if (p[i + 1] != '\n')
				return -1;
			*e = i;
			return 1;
		}
	}
	return n > max ? -1 : 0;
}

/* chunk-size [ chunk-ext ]: 0 ok, 400 bad, 413 a size past 64 bits (no
 * limit could allow it). */
static int parse_chunk_size(const char *l, size_t n, uint64_t *size)
{
	uint64_t v = 0;
	size_t i = 0;
	while (i < n && is_hex((unsigned char)l[i])) {
		if (v > (UINT64_MAX >> 4))
			return 413;
		v = (v << 4) | (uint64_t)hex_val((unsigned char)l[i]);
		i++;
	}
	if (i == 0)
		return 400;
	if (i < n) {
		/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): ignored,
		 * but it must start with ';' and hold no control bytes */
		while (i < n && is_ows(l[i]))
			i++;
		if (i >= n || l[i] != ';')
			return 400;
		for (; i < n; i++)
			if (!is_value_char((unsigned char)l[i]))
				return 400;
	}
	*size = v;
	return HTTP_OK;
}

int http_chunked_feed(struct http_chunked *st, const char *data, size_t len, size_t max_body,
		      struct buf *out, size_t *consumed)
{
	size_t pos = 0, e = 0;
	int rc = HTTP_OK, r;
	uint64_t size;

	while (pos < len && st->state != CH_DONE) {
		const char *p = data + pos;
		size_t avail = len - pos;
		switch (st->state) {
		case CH_SIZE:
			r = find_line(p, avail, HTTP_MAX_CHUNK_LINE, &e);
			if (r < 0) {
				rc = 400;
				goto out;
			}
			if (r == 0)
				goto out;
			rc = parse_chunk_size(p, e, &size);
			if (rc)
				goto out;
			if (size > (uint64_t)(max_body - st->body)) {
				rc = 413;
				goto out;
			}
			pos += e + 2;
			st->left = size;
			st->state = size ? CH_DATA : CH_TRAILER;
			break;
		case CH_DATA: {
			size_t n = avail < st->left ? avail : (size_t)st->left;
			buf_append(out, p, n);
			pos += n;
			st->left -= n;
			st->body += n;
			if (!st->left)
				st->state = CH_DATA_CRLF;
			break;
		}
		case CH_DATA_CRLF:
			if (p[0] != '\r' || (avail >= 2 && p[1] != '\n')) {
				rc = 400;
				goto out;
			}
			if (avail < 2)
				goto out;
			pos += 2;
			st->state = CH_SIZE;
			break;
		case CH_TRAILER:
			r = find_line(p, avail,
				      st->trailer_bytes < HTTP_MAX_TRAILER_BYTES
					      ? HTTP_MAX_TRAILER_BYTES - st->trailer_bytes
					      : 0,
				      &e);
			if (r < 0) {
				rc = 400;
				goto out;
			}
			if (r == 0)
				goto out;
			if (e == 0) {
				st->state = CH_DONE;
			} else {
				rc = parse_field_line(p, e, NULL); /* validated, discarded */
				if (rc)
					goto out;
			}
			st->trailer_bytes += e + 2;
			pos += e + 2;
			break;
		}
	}
out:
	*consumed = pos;
	return rc;
}

int http_decode_chunked(const char *data, size_t len, size_t max_body, struct buf *out,
			size_t *consumed)
{
	struct http_chunked st;
	size_t used = 0, had;
	int rc;

	if (!out->data)
		buf_init(out);
	had = out->len;
	http_chunked_init(&st);
	*consumed = 0;
	rc = http_chunked_feed(&st, data, len, max_body, out, &used);
	if (rc == HTTP_OK && http_chunked_done(&st)) {
		*consumed = used;
		return HTTP_OK;
	}
	wipe(out->data + had, out->len - had);
	out->len = had;
	out->data[had] = 0;
	return rc;
}

/* ---- the connection ---- */

static int fd_is_socket(int fd)
{
	int type;
	socklen_t sl = sizeof type;
	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) == 0;
}

struct http_conn *http_conn_new(int rfd, int wfd, const struct http_limits *lim)
{
	struct http_conn *c = xcalloc(1, sizeof *c);
	c->rfd = rfd;
	c->wfd = wfd;
	c->rsock = fd_is_socket(rfd);
	c->wsock = fd_is_socket(wfd);
	if (lim)
		c->lim = *lim;
	else
		http_limits_default(&c->lim);
	buf_init(&c->in);
	return c;
}

void http_conn_free(struct http_conn *c)
{
	if (!c)
		return;
	buf_free(&c->in);
	free(c);
}

int http_requests_served(struct http_conn *c) { return c->served; }

/* Drops the first n buffered bytes and wipes the space they leave. */
static void conn_consume(struct http_conn *c, size_t n)
{
	size_t old = c->in.len;
	buf_consume(&c->in, n);
	if (old > c->in.len)
		wipe(c->in.data + c->in.len + 1, old - c->in.len);
}

static int64_t deadline_after(int ms) { return ms > 0 ? mono_ms() + ms : INT64_MAX; }

/* Waits for events on fd until deadline (INT64_MAX: none).  1 ready
 * (including HUP/ERR: the next call reports it), 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int tmo = -1;
		if (deadline != INT64_MAX) {
			int64_t left = deadline - mono_ms();
			if (left <= 0)
				return 0;
			tmo = left > INT_MAX ? INT_MAX : (int)left;
		}
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, tmo);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			continue; /* re-check the clock; returns 0 above */
		return 1;
	}
}

/* Reads up to max bytes into dst before deadline: >0 bytes, 0 EOF, -1 error,
 * -2 timeout. */
static ssize_t read_some(struct http_conn *c, void *dst, size_t max, int64_t deadline)
{
	for (;;) {
		int w = wait_fd(c->rfd, POLLIN, deadline);
		if (w == 0)
			return -2;
		if (w < 0)
			return -1;
		ssize_t r = read(c->rfd, dst, max);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r == 0)
			c->eof = 1;
		return r;
	}
}

/* Appends up to max bytes to c->in; as read_some. */
static ssize_t conn_fill(struct http_conn *c, size_t max, int64_t deadline)
{
	buf_reserve(&c->in, max);
	ssize_t r = read_some(c, c->in.data + c->in.len, max, deadline);
	if (r > 0) {
		c->in.len += (size_t)r;
		c->in.data[c->in.len] = 0;
	}
	return r;
}

int http_read_head(struct http_conn *c, struct http_request *req)
{
	int64_t deadline;
	int started = c->in.len > 0;

	memset(req, 0, sizeof *req);
	req->content_length = -1;
	if (c->served >= c->lim.max_requests)
		return HTTP_CLOSED;
	deadline = deadline_after(started ? c->lim.head_timeout_ms : c->lim.idle_timeout_ms);
	for (;;) {
		size_t used = 0;
		if (c->in.len) {
			int rc = http_parse_head(c->in.data, c->in.len, &c->lim, req, &used);
			if (rc)
				return rc;
			if (used) {
				conn_consume(c, used);
				if (++c->served >= c->lim.max_requests)
					req->keep_alive = 0;
				return HTTP_OK;
			}
		}
		if (c->eof)
			return started ? 400 : HTTP_CLOSED;
		if (c->in.len >= c->lim.max_head_bytes)
			return 431; /* parse_head says so first; kept as a guard */
		size_t room = c->lim.max_head_bytes - c->in.len;
		if (room > HTTP_READ_CHUNK)
			room = HTTP_READ_CHUNK;
		ssize_t r = conn_fill(c, room, deadline);
		if (r == -2)
			return started ? 408 : HTTP_CLOSED;
		if (r <= 0)
			return started ? 400 : HTTP_CLOSED;
		if (!started) {
			started = 1;
			deadline = deadline_after(c->lim.head_timeout_ms);
		}
	}
}

static int read_body_length(struct http_conn *c, struct http_request *req, int64_t deadline)
{
	size_t cl = (size_t)req->content_length, have;
	char *body;

	if ((uint64_t)req->content_length > (uint64_t)c->lim.max_body_bytes)
		return 413;
	body = xmalloc(cl + 1);
	have = c->in.len < cl ? c->in.len : cl;
	memcpy(body, c->in.data, have);
	conn_consume(c, have);
	while (have < cl) {
		/* straight into the body: nothing past it is read */
		ssize_t r = read_some(c, body + have, cl - have, deadline);
		if (r <= 0) {
			wipe(body, have);
			free(body);
			return r == -2 ? 408 : 400;
		}
		have += (size_t)r;
	}
	body[cl] = 0;
	req->body = body;
	req->body_len = cl;
	return HTTP_OK;
}

static int read_body_chunked(struct http_conn *c, struct http_request *req, int64_t deadline)
{
	struct http_chunked st;
	struct buf body;
	int rc = HTTP_OK;

	http_chunked_init(&st);
	buf_init(&body);
	for (;;) {
		if (c->in.len) {
			size_t used = 0;
			rc = http_chunked_feed(&st, c->in.data, c->in.len, c->lim.max_body_bytes,
					       &body, &used);
			conn_consume(c, used);
			if (rc)
				goto out;
			if (http_chunked_done(&st))
				break;
		}
		ssize_t r = conn_fill(c, HTTP_READ_CHUNK, deadline);
		if (r <= 0) {
			rc = r == -2 ? 408 : 400;
			goto out;
		}
	}
	req->body = body.data;
	req->body_len = body.len;
	body.data = NULL;
out:
	buf_free(&body);
	return rc;
}

int http_read_body(struct http_conn *c, struct http_request *req)
{
	int64_t deadline = deadline_after(c->lim.body_timeout_ms);

	if (req->body) {
		wipe(req->body, req->body_len + 1);
		free(req->body);
		req->body = NULL;
		req->body_len = 0;
	}
	if (req->chunked)
		return read_body_chunked(c, req, deadline);
	if (req->content_length > 0)
		return read_body_length(c, req, deadline);
	req->body = xstrdup("");
	return HTTP_OK;
}

/* write(2) to a non-socket with SIGPIPE blocked; a SIGPIPE this write
 * raised is collected before the old mask comes back. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t n)
{
	sigset_t pipe_set, old, pending;
	int was_pending, saved;
	ssize_t w;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	w = write(fd, p, n);
	saved = errno;
	if (w < 0 && saved == EPIPE && !was_pending) {
		struct timespec zero = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return w;
}

int http_write(struct http_conn *c, const void *p, size_t n)
{
	const char *s = p;
	int64_t deadline = deadline_after(c->lim.write_timeout_ms);

	while (n) {
		if (wait_fd(c->wfd, POLLOUT, deadline) <= 0)
			return -1;
		ssize_t w;
		if (c->wsock) {
			w = send(c->wfd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno == ENOTSOCK) {
				c->wsock = 0;
				continue;
			}
		} else {
			w = write_nosigpipe(c->wfd, s, n < HTTP_WRITE_PIPE_CHUNK ? n : HTTP_WRITE_PIPE_CHUNK);
		}
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int http_send_continue(struct http_conn *c)
{
	static const char m[] = "HTTP/1.1 100 Continue\r\n\r\n";
	return http_write(c, m, sizeof m - 1);
}

/* Appends extra header lines, making sure they end with CRLF. */
static void put_extra(struct buf *b, const char *extra)
{
	if (!extra || !*extra)
		return;
	size_t n = strlen(extra);
	buf_append(b, extra, n);
	if (n < 2 || extra[n - 2] != '\r' || extra[n - 1] != '\n')
		buf_puts(b, "\r\n");
}

#define HTTP_RESPOND_COPY_MAX 65536 /* bodies up to this go out in one write */

int http_respond(struct http_conn *c, int status, const char *content_type,
		 const char *extra_headers, const void *body, size_t len, int keep_alive)
{
	struct buf b;
	int rc;

	buf_init(&b);
	buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
	if (content_type)
		buf_printf(&b, "Content-Type: %s\r\n", content_type);
	buf_printf(&b, "Content-Length: %zu\r\nConnection: %s\r\n", len,
		   keep_alive ? "keep-alive" : "close");
	put_extra(&b, extra_headers);
	buf_puts(&b, "\r\n");
	if (len && len <= HTTP_RESPOND_COPY_MAX) {
		buf_append(&b, body, len);
		rc = http_write(c, b.data, b.len);
	} else {
		rc = http_write(c, b.data, b.len);
		if (rc == 0 && len)
			rc = http_write(c, body, len);
	}
	buf_free(&b);
	return rc;
}

int http_stream_begin(struct http_conn *c, int status, const char *content_type,
		      const char *extra_headers, int keep_alive)
{
	struct buf b;
	int rc;

	buf_init(&b);
	buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
	if (content_type)
		buf_printf(&b, "Content-Type: %s\r\n", content_type);
	buf_printf(&b, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nConnection: %s\r\n",
		   keep_alive ? "keep-alive" : "close");
	put_extra(&b, extra_headers);
	buf_puts(&b, "\r\n");
	rc = http_write(c, b.data, b.len);
	buf_free(&b);
	return rc;
}

int http_stream_write(struct http_conn *c, const void *p, size_t n)
{
	struct buf b;
	int rc;

	if (!n)
		return 0; /* a zero-size chunk would end the stream */
	buf_init(&b);
	buf_printf(&b, "%zx\r\n", n);
	buf_append(&b, p, n);
	buf_puts(&b, "\r\n");
	rc = http_write(c, b.data, b.len);
	buf_free(&b);
	return rc;
}

int http_stream_end(struct http_conn *c) { return http_write(c, "0\r\n\r\n", 5); }

int http_peer_closed(struct http_conn *c)
{
	struct pollfd pfd = {.fd = c->rfd, .events = POLLIN | POLLRDHUP};
	char ch;

	if (c->eof)
		return 1;
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	if (pfd.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
		return 1;
	if (!(pfd.revents & POLLIN))
		return 0;
	if (c->rsock) {
		ssize_t r = recv(c->rfd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
		if (r == 0)
			return 1;
		if (r < 0)
			return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
		return 0;
	}
	/* a pipe cannot be peeked: keep what we read for the next request, but
	 * only up to a bound */
	if (c->in.len >= c->lim.max_head_bytes + HTTP_READ_CHUNK)
		return 0;
	buf_reserve(&c->in, HTTP_READ_CHUNK);
	ssize_t r = read(c->rfd, c->in.data + c->in.len, HTTP_READ_CHUNK);
	if (r == 0) {
		c->eof = 1;
		return 1;
	}
	if (r > 0) {
		c->in.len += (size_t)r;
		c->in.data[c->in.len] = 0;
	}
	return 0;
}
