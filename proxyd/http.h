/* http.h - the strict HTTP/1.1 server side of proxyd (RFC 9112 framing).
 *
 * One struct http_conn wraps the client connection (a socket, or a pair of
 * pipes): it reads request heads and bodies under deadlines, into bounded
 * buffers, and writes responses (whole or chunked) under a write deadline,
 * never raising SIGPIPE.  Anything ambiguous in the framing (CL+TE, differing
 * Content-Lengths, obs-fold, bare CR/LF, unknown codings) is an error status:
 * the caller answers it and closes the connection. */
#ifndef LLMPROXY_HTTP_H
#define LLMPROXY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Defaults for struct http_limits. */
#define HTTP_MAX_HEAD_BYTES 16384 /* request line + headers + blank line */
#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_BODY_BYTES (8 * 1024 * 1024)
#define HTTP_HEAD_TIMEOUT_MS 10000 /* from the first byte of a request */
#define HTTP_BODY_TIMEOUT_MS 30000 /* from the start of http_read_body */
#define HTTP_WRITE_TIMEOUT_MS 30000 /* per http_write call */
#define HTTP_IDLE_TIMEOUT_MS 15000 /* waiting for the first byte of a request */
#define HTTP_MAX_REQUESTS 1000 /* per connection */

/* Fixed bounds inside the chunked decoder. */
#define HTTP_MAX_CHUNK_LINE 4096 /* chunk-size line, extensions included */
#define HTTP_MAX_TRAILER_BYTES 16384

/* Return codes; any other return is an HTTP error status >= 400. */
enum { HTTP_OK = 0, HTTP_CLOSED = 1 };

/* A timeout <= 0 means "no deadline" (only sensible in tests). */
struct http_limits {
	size_t max_head_bytes, max_headers, max_body_bytes;
	int head_timeout_ms, body_timeout_ms, write_timeout_ms, idle_timeout_ms, max_requests;
};
void http_limits_default(struct http_limits *l);

struct http_header {
	char *name; /* as sent (case preserved) */
	char *value; /* OWS trimmed */
};

/* All strings are owned by the request and freed by http_request_free. */
struct http_request {
	char *method;
	char *target;
	char *path; /* target up to '?' ("*" for OPTIONS *) */
	char *query; /* after '?', NULL if the target has no '?' */
	int minor; /* HTTP/1.minor */
	struct http_header *headers;
	size_t nheaders;
	int keep_alive; /* per version + Connection; 0 on the last allowed request */
	int expect_continue; /* Expect: 100-continue on HTTP/1.1 */
	int chunked;
	int64_t content_length; /* -1 when none */
	char *body; /* after http_read_body; NUL-terminated, never NULL then */
	size_t body_len;
};

struct http_conn;

/* A connection reading rfd and writing wfd (the same socket, or fd 0 / fd 1
 * under inetd, or pipes).  lim is copied; NULL means the defaults.  The
 * caller owns the result (http_conn_free) and keeps owning the fds. */
struct http_conn *http_conn_new(int rfd, int wfd, const struct http_limits *lim);
/* Frees c and wipes its buffers; does not close the fds. */
void http_conn_free(struct http_conn *c);

/* Reads and parses the next request head into *req (the caller frees it with
 * http_request_free, also after an error: it is then empty).  Returns:
 *   HTTP_OK      a head; any body is read next with http_read_body;
 *   HTTP_CLOSED  clean EOF, or the idle timeout, before a request's first
 *                byte; or max_requests already served;
 *   400 bad syntax / smuggling / EOF inside the head, 408 head deadline,
 *   431 head too large or too many headers, 501 unknown transfer coding or
 *   method, 505 HTTP major version other than 1, 413 Content-Length over
 *   max_body_bytes.  After an error status, answer it and close. */
int http_read_head(struct http_conn *c, struct http_request *req);
/* Reads the body announced by req (Content-Length or chunked; trailers are
 * read and discarded) into req->body, under the body deadline.  Bytes past
 * the body stay buffered for the next request.  Returns HTTP_OK, 400 (bad
 * chunked framing, EOF mid-body), 408 (deadline) or 413 (over the limit). */
int http_read_body(struct http_conn *c, struct http_request *req);

/* Case-insensitive, first match; the value belongs to req; NULL if absent. */
const char *http_get_header(const struct http_request *req, const char *name);
/* Frees (and wipes: headers carry keys, bodies carry prompts) every member,
 * then zeroes *req.  Safe on a zeroed request. */
void http_request_free(struct http_request *req);

/* Writes all n bytes before the write deadline.  0, or -1 (peer gone,
 * timeout).  Never raises SIGPIPE. */
int http_write(struct http_conn *c, const void *p, size_t n);
/* "HTTP/1.1 100 Continue\r\n\r\n".  0 / -1. */
int http_send_continue(struct http_conn *c);
/* A whole response:
 *   HTTP/1.1 <status> <reason>\r\n
 *   Content-Type: <content_type>\r\n      (only when content_type != NULL)
 *   Content-Length: <len>\r\n
 *   Connection: keep-alive|close\r\n
 *   <extra_headers>                       ("Name: v\r\n"...; a missing final
 *                                          CRLF is added; NULL for none)
 *   \r\n<body>
 * 0 / -1. */
int http_respond(struct http_conn *c, int status, const char *content_type,
		 const char *extra_headers, const void *body, size_t len, int keep_alive);
/* The head of a chunked response: status line, Content-Type (if not NULL),
 * Transfer-Encoding: chunked, Cache-Control: no-cache, Connection, extra
 * headers, blank line.  0 / -1. */
int http_stream_begin(struct http_conn *c, int status, const char *content_type,
		      const char *extra_headers, int keep_alive);
/* One chunk "<hex n>\r\n<data>\r\n"; n == 0 writes nothing.  0 / -1. */
int http_stream_write(struct http_conn *c, const void *p, size_t n);
/* The last chunk "0\r\n\r\n".  0 / -1. */
int http_stream_end(struct http_conn *c);

/* Non-blocking: 1 if the client hung up (HUP/RDHUP/error, or EOF), else 0.
 * Pipelined bytes are not lost (peeked on sockets, buffered on pipes). */
int http_peer_closed(struct http_conn *c);
/* Number of request heads parsed on this connection so far. */
int http_requests_served(struct http_conn *c);
/* Reason phrase for a status ("Bad Request"); "Unknown" for others. */
const char *http_reason(int status);

/* Pure parser, also the fuzz entry: parses one request head from
 * data[0..len) (empty lines before the request line are skipped).  Returns
 * HTTP_OK with *consumed = bytes through the blank line (> 0); HTTP_OK (0)
 * with *consumed = 0 when more bytes are needed; or an error status as for
 * http_read_head.  lim NULL means the defaults.  *out is the caller's to
 * free with http_request_free (it is empty unless the head parsed). */
int http_parse_head(const char *data, size_t len, const struct http_limits *lim,
		    struct http_request *out, size_t *consumed);

/* Incremental chunked-body decoder.  http_chunked_feed consumes whole lines
 * and any chunk data from data[0..len), appends the decoded data to out, and
 * sets *consumed; an incomplete line is left unconsumed, to be fed again
 * with more bytes after it.  Returns HTTP_OK (check http_chunked_done), 400
 * (bad framing) or 413 (decoded size over max_body). */
struct http_chunked {
	int state;
	uint64_t left; /* data bytes left in the current chunk */
	size_t body; /* decoded bytes so far */
	size_t trailer_bytes;
};
void http_chunked_init(struct http_chunked *st);
int http_chunked_feed(struct http_chunked *st, const char *data, size_t len, size_t max_body,
		      struct buf *out, size_t *consumed);
/* 1 once the last chunk and the trailer section have been consumed. */
int http_chunked_done(const struct http_chunked *st);
/* One-shot over a buffer: HTTP_OK with *consumed > 0 (bytes through the end
 * of the trailer section) when the whole body is there; HTTP_OK with
 * *consumed = 0 when more bytes are needed (out is left as it was); 400;
 * 413.  Decoded bytes are appended to out. */
int http_decode_chunked(const char *data, size_t len, size_t max_body, struct buf *out,
			size_t *consumed);

#endif
