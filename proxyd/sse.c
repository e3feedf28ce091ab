/* sse.c - see sse.h. */
#include "sse.h"

#include <string.h>

void sse_init(struct sse_parser *p, size_t max_event)
{
	memset(p, 0, sizeof *p);
	buf_init(&p->line);
	buf_init(&p->data);
	p->max_event = max_event ? max_event : SSE_MAX_EVENT_BYTES;
}

void sse_free(struct sse_parser *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
}

static int dispatch(struct sse_parser *p, sse_event_fn fn, void *ctx)
{
	int rc = 0;
	if (p->have_data)
		rc = fn(ctx, p->event, p->data.data, p->data.len);
	buf_reset(&p->data);
	p->have_data = 0;
	p->event[0] = 0;
	return rc;
}

/* One complete line (without its terminator). */
static int take_line(struct sse_parser *p, sse_event_fn fn, void *ctx)
{
	const char *l = p->line.data;
	size_t n = p->line.len;
	int rc = 0;

	if (n == 0) {
		rc = dispatch(p, fn, ctx);
		goto out;
	}
	if (l[0] == ':')
		goto out;
	const char *colon = memchr(l, ':', n);
	size_t name_len = colon ? (size_t)(colon - l) : n;
	const char *val = colon ? colon + 1 : l + n;
	size_t val_len = n - (size_t)(val - l);
	if (val_len && *val == ' ') {
		val++;
		val_len--;
	}
	if (name_len == 4 && memcmp(l, "data", 4) == 0) {
		if (p->have_data)
			buf_append(&p->data, "\n", 1);
		buf_append(&p->data, val, val_len);
		p->have_data = 1;
		if (p->data.len > p->max_event)
			rc = -1;
	} else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
		size_t k = val_len < sizeof p->event - 1 ? val_len : sizeof p->event - 1;
		memcpy(p->event, val, k);
		p->event[k] = 0;
	}
	/* id:, retry: and unknown fields are ignored, as the SSE spec says */
out:
	buf_reset(&p->line);
	return rc;
}

int sse_feed(struct sse_parser *p, const char *data, size_t n, sse_event_fn fn, void *ctx)
{
	size_t i = 0;
	while (i < n) {
		char c = data[i];
		if (p->pending_cr) {
			p->pending_cr = 0;
			if (c == '\n') {
				i++;
				continue;
			}
		}
		if (c == '\r' || c == '\n') {
			p->pending_cr = (c == '\r');
			i++;
			int rc = take_line(p, fn, ctx);
			if (rc)
				return rc;
			continue;
		}
		/* copy the run up to the next line end in one go */
		size_t j = i;
		while (j < n && data[j] != '\r' && data[j] != '\n')
			j++;
		buf_append(&p->line, data + i, j - i);
		if (p->line.len > p->max_event)
			return -1;
		i = j;
	}
	return 0;
}

int sse_finish(struct sse_parser *p, sse_event_fn fn, void *ctx)
{
	int rc = 0;
	if (p->line.len)
		rc = take_line(p, fn, ctx);
	if (!rc)
		rc = dispatch(p, fn, ctx);
	return rc;
}
