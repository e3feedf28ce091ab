/* test_sse.c - the upstream SSE splitter: framing variants, splits at
 * every byte, comments, multi-line data, limits. */
#include <stdlib.h>

#include "sse.h"
#include "t.h"

struct seen {
	struct buf all; /* events joined as "<event>|<data>;" */
	int n;
};

static int collect(void *ctx, const char *event, const char *data, size_t len)
{
	struct seen *s = ctx;
	buf_printf(&s->all, "%s|%.*s;", event, (int)len, data);
	s->n++;
	return 0;
}

/* Feeds text in pieces of size step (0 = whole) and returns the joined events. */
static char *run(const char *text, size_t step, int finish, int *count)
{
	struct sse_parser p;
	struct seen s = {.n = 0};
	buf_init(&s.all);
	sse_init(&p, 0);
	size_t n = strlen(text);
	if (!step)
		step = n ? n : 1;
	for (size_t i = 0; i < n; i += step)
		sse_feed(&p, text + i, i + step > n ? n - i : step, collect, &s);
	if (finish)
		sse_finish(&p, collect, &s);
	sse_free(&p);
	if (count)
		*count = s.n;
	return s.all.data;
}

static int stop_first(void *ctx, const char *event, const char *data, size_t len)
{
	(void)ctx;
	(void)event;
	(void)len;
	return data[0] == 'a' ? 7 : 0;
}

int main(void)
{
	char *r;
	int n;

	T_BEGIN("sse-1.1 LF framing");
	r = run("data: {\"a\":1}\n\ndata: [DONE]\n\n", 0, 0, &n);
	CHECK_STR(r, "|{\"a\":1};|[DONE];");
	CHECK_INT(n, 2);
	free(r);

	T_BEGIN("sse-1.2 CRLF framing (Gemini)");
	r = run("data: {\"x\":1}\r\n\r\ndata: {\"x\":2}\r\n\r\n", 0, 0, &n);
	CHECK_STR(r, "|{\"x\":1};|{\"x\":2};");
	free(r);

	T_BEGIN("sse-1.3 CR-only framing");
	r = run("data: a\r\rdata: b\r\r", 0, 0, &n);
	CHECK_STR(r, "|a;|b;");
	free(r);

	T_BEGIN("sse-1.4 split at every byte, CRLF");
	r = run("data: {\"x\":1}\r\n\r\ndata: {\"x\":2}\r\n\r\n", 1, 0, &n);
	CHECK_STR(r, "|{\"x\":1};|{\"x\":2};");
	CHECK_INT(n, 2);
	free(r);

	T_BEGIN("sse-1.5 every split size gives the same events");
	const char *mixed = ": comment\r\nevent: error\ndata: line1\ndata: line2\r\n\r\ndata:nospace\n\n";
	char *want = run(mixed, 0, 0, NULL);
	CHECK_STR(want, "error|line1\nline2;|nospace;");
	int same = 1;
	for (size_t step = 1; step < strlen(mixed); step++) {
		char *got = run(mixed, step, 0, NULL);
		if (strcmp(got, want) != 0)
			same = 0;
		free(got);
	}
	CHECK(same);
	free(want);

	T_BEGIN("sse-1.6 comments and unknown fields are ignored");
	r = run(": keep-alive\n\nid: 7\nretry: 100\ndata: x\n\n", 0, 0, &n);
	CHECK_STR(r, "|x;");
	CHECK_INT(n, 1);
	free(r);

	T_BEGIN("sse-1.7 blank lines without data dispatch nothing");
	r = run("\n\n\r\n\n", 0, 0, &n);
	CHECK_INT(n, 0);
	free(r);

	T_BEGIN("sse-1.8 last event without its blank line needs finish");
	r = run("data: tail", 0, 0, &n);
	CHECK_INT(n, 0);
	free(r);
	r = run("data: tail", 0, 1, &n);
	CHECK_STR(r, "|tail;");
	free(r);

	T_BEGIN("sse-1.9 empty data field is an event with empty data");
	r = run("data\n\n", 0, 0, &n);
	CHECK_STR(r, "|;");
	free(r);

	T_BEGIN("sse-2.1 oversized event is refused");
	{
		struct sse_parser p;
		struct seen s;
		buf_init(&s.all);
		s.n = 0;
		sse_init(&p, 16);
		int rc = sse_feed(&p, "data: 0123456789abcdefghij\n\n", 28, collect, &s);
		CHECK_INT(rc, -1);
		CHECK_INT(s.n, 0);
		sse_free(&p);
		buf_free(&s.all);
	}

	T_BEGIN("sse-2.2 callback can stop the feed");
	{
		struct sse_parser p;
		sse_init(&p, 0);
		int rc = sse_feed(&p, "data: a\n\ndata: b\n\n", 18, stop_first, NULL);
		CHECK_INT(rc, 7);
		sse_free(&p);
	}
	return T_END();
}
