/* sse.h - splits an upstream text/event-stream into events.  Lines may end
 * in CRLF, LF or CR (Gemini frames events with \r\n\r\n), events end at a
 * blank line, several data: lines join with "\n", ':' lines are comments.
 * Bytes may arrive split anywhere. */
#ifndef LLMPROXY_SSE_H
#define LLMPROXY_SSE_H

#include <stddef.h>

#include "util.h"

#define SSE_MAX_EVENT_BYTES (4 * 1024 * 1024)

/* Called once per complete event with its joined data (NUL-terminated) and
 * the event: field (or "" when none).  A non-zero return stops sse_feed. */
typedef int (*sse_event_fn)(void *ctx, const char *event, const char *data, size_t len);

struct sse_parser {
	struct buf line;
	struct buf data;
	char event[32];
	int have_data;
	int pending_cr; /* the last byte fed was CR: a following LF belongs to it */
	size_t max_event;
};

void sse_init(struct sse_parser *p, size_t max_event);
void sse_free(struct sse_parser *p);
/* Feeds n bytes.  Returns 0, the callback's non-zero value, or -1 when an
 * event exceeds max_event bytes. */
int sse_feed(struct sse_parser *p, const char *data, size_t n, sse_event_fn fn, void *ctx);
/* End of input: dispatches a last event that lacked its blank line. */
int sse_finish(struct sse_parser *p, sse_event_fn fn, void *ctx);

#endif
