/* t.h - a tiny unit-test harness. Each test binary prints one line per
 * failed check, and ends with "N passed, N failed" which tests/run sums. */
#ifndef LLMPROXY_T_H
#define LLMPROXY_T_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed;
static const char *t_name = "?";

#define T_BEGIN(name) (t_name = (name))
#define CHECK(cond)                                                          \
	do {                                                                 \
		if (cond) {                                                  \
			t_passed++;                                          \
		} else {                                                     \
			t_failed++;                                          \
			printf("FAIL %s: %s:%d: %s\n", t_name, __FILE__,     \
			       __LINE__, #cond);                             \
		}                                                            \
	} while (0)
#define CHECK_STR(a, b)                                                      \
	do {                                                                 \
		const char *t_a = (a), *t_b = (b);                           \
		if (t_a && t_b && strcmp(t_a, t_b) == 0) {                   \
			t_passed++;                                          \
		} else {                                                     \
			t_failed++;                                          \
			printf("FAIL %s: %s:%d: %s == %s\n  got:  %s\n  want: %s\n", \
			       t_name, __FILE__, __LINE__, #a, #b,            \
			       t_a ? t_a : "(null)", t_b ? t_b : "(null)");  \
		}                                                            \
	} while (0)
#define CHECK_INT(a, b)                                                      \
	do {                                                                 \
		long long t_a = (long long)(a), t_b = (long long)(b);        \
		if (t_a == t_b) {                                            \
			t_passed++;                                          \
		} else {                                                     \
			t_failed++;                                          \
			printf("FAIL %s: %s:%d: %s == %s (got %lld, want %lld)\n", \
			       t_name, __FILE__, __LINE__, #a, #b, t_a, t_b); \
		}                                                            \
	} while (0)
#define T_END()                                                              \
	(printf("%d passed, %d failed\n", t_passed, t_failed), t_failed ? 1 : 0)

#endif
