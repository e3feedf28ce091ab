/* fuzz_http.c - libFuzzer harness for the HTTP/1.1 parser and the chunked
 * decoder.  Build:
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon -Iproxyd \
 *     tests/fuzz/fuzz_http.c proxyd/http.c common/util.c -o fuzz_http
 *
 * Besides "no crash", it checks invariants: a parsed head is consistent
 * (consumed within the input, no CL together with chunked, strings free of
 * CR/LF/NUL), and the incremental chunked decoder fed in pieces agrees with
 * the one-shot decoder byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "util.h"

static int has_ctl(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return 1;
	return 0;
}

static void check_head(const char *d, size_t n, const struct http_limits *lim)
{
	struct http_request r;
	size_t used = 0;
	int rc = http_parse_head(d, n, lim, &r, &used);
	if (rc == HTTP_OK && used) {
		if (used > n || used > lim->max_head_bytes)
			abort();
		if (!r.method || !r.target || !r.path || r.path[0] == 0)
			abort();
		if (r.chunked && r.content_length >= 0)
			abort();
		if (r.content_length > (int64_t)lim->max_body_bytes)
			abort();
		if (r.nheaders > lim->max_headers)
			abort();
		if (has_ctl(r.target))
			abort();
		for (size_t i = 0; i < r.nheaders; i++) {
			if (has_ctl(r.headers[i].name) || has_ctl(r.headers[i].value))
				abort();
			if (http_get_header(&r, r.headers[i].name) == NULL)
				abort();
		}
	} else if (rc != HTTP_OK) {
		if (rc < 400 || rc > 505 || used != 0 || r.method || r.headers)
			abort();
	}
	http_request_free(&r);
}

/* Feeds d[0..n) to the incremental decoder in pieces whose sizes come from
 * step, the way http_read_body does, and compares with the one-shot run. */
static void check_chunked(const char *d, size_t n, size_t max_body, unsigned step)
{
	struct buf one, inc, pending;
	struct http_chunked st;
	size_t used1 = 0, fed = 0, total = 0;
	int rc1, rc2 = HTTP_OK;

	buf_init(&one);
	buf_init(&inc);
	buf_init(&pending);
	rc1 = http_decode_chunked(d, n, max_body, &one, &used1);
	http_chunked_init(&st);
	while (fed < n) {
		size_t k = 1 + (step + fed) % 7;
		if (k > n - fed)
			k = n - fed;
		buf_append(&pending, d + fed, k);
		fed += k;
		size_t u = 0;
		rc2 = http_chunked_feed(&st, pending.data, pending.len, max_body, &inc, &u);
		if (u > pending.len)
			abort();
		buf_consume(&pending, u);
		total += u;
		if (rc2 || http_chunked_done(&st))
			break;
	}
	if (rc1 != rc2)
		abort();
	if (rc1 == HTTP_OK) {
		int done = http_chunked_done(&st);
		if (done != (used1 > 0))
			abort();
		if (done && (total != used1 || inc.len != one.len ||
			     memcmp(inc.data, one.data, one.len) != 0))
			abort();
		if (!done && one.len != 0)
			abort(); /* need-more leaves out as it was */
		if (inc.len > max_body)
			abort();
	}
	buf_free(&one);
	buf_free(&inc);
	buf_free(&pending);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	struct http_limits def, small;

	http_limits_default(&def);
	small = def;
	small.max_head_bytes = 256;
	small.max_headers = 4;
	small.max_body_bytes = 64;
	check_head(d, size, &def);
	check_head(d, size, &small);
	check_chunked(d, size, 64, size ? data[0] : 0);
	check_chunked(d, size, HTTP_MAX_BODY_BYTES, size > 1 ? data[1] : 3);
	/* a head followed by a chunked body, as http_read_head + read_body see it */
	{
		struct http_request r;
		size_t used = 0;
		if (http_parse_head(d, size, &def, &r, &used) == HTTP_OK && used && r.chunked)
			check_chunked(d + used, size - used, HTTP_MAX_BODY_BYTES, (unsigned)used);
		http_request_free(&r);
	}
	return 0;
}
