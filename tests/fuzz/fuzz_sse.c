/* srcs: proxyd/sse.c */
/* fuzz_sse.c - libFuzzer harness for the upstream SSE splitter: arbitrary
 * bytes, fed whole and then split at a data-chosen point, must give the
 * same events and never crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

static int collect(void *ctx, const char *event, const char *data, size_t len)
{
	struct buf *b = ctx;
	buf_puts(b, event);
	buf_append(b, "|", 1);
	buf_append(b, data, len);
	buf_append(b, ";", 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct sse_parser p;
	struct buf a, b;
	buf_init(&a);
	buf_init(&b);
	sse_init(&p, 1 << 16);
	int ra = sse_feed(&p, (const char *)d, n, collect, &a);
	if (!ra)
		sse_finish(&p, collect, &a);
	sse_free(&p);

	size_t cut = n ? d[0] % (n + 1) : 0;
	sse_init(&p, 1 << 16);
	int rb = sse_feed(&p, (const char *)d, cut, collect, &b);
	if (!rb)
		rb = sse_feed(&p, (const char *)d + cut, n - cut, collect, &b);
	if (!rb)
		sse_finish(&p, collect, &b);
	sse_free(&p);
	if (!ra && !rb && (a.len != b.len || memcmp(a.data, b.data, a.len) != 0))
		abort(); /* a split must not change the events */
	buf_free(&a);
	buf_free(&b);
	return 0;
}
