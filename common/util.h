/* util.h - small helpers every binary uses: logging, checked allocation,
 * a growable byte buffer, clocks, random bytes and secret wiping. */
#ifndef LLMPROXY_UTIL_H
#define LLMPROXY_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Name printed in front of every log line ("proxyd", "limiterd", ...). */
void log_set_prog(const char *name);
/* One line on stderr: "prog[pid]: message". Never pass a secret. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: fatal: message" on stderr, then exit(1). */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
/* realloc of n * size with overflow check (OpenBSD reallocarray). */
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* malloc'd printf. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer; data is always NUL-terminated (not counted in len). */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_init(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Wipes the contents (explicit_bzero) before freeing. */
void buf_free(struct buf *b);

/* Milliseconds: monotonic clock (for deadlines) and wall clock (for records). */
int64_t mono_ms(void);
int64_t wall_ms(void);
int64_t wall_s(void);

/* Fills p with n cryptographically random bytes (getrandom); fatal on failure. */
void random_bytes(void *p, size_t n);
/* Writes n random characters from [a-zA-Z0-9] plus NUL into out (size n+1). */
void random_alnum(char *out, size_t n);

/* explicit_bzero wrapper; safe on NULL. */
void wipe(void *p, size_t n);
/* Wipes a NUL-terminated string in place and frees it. */
void free_secret(char *s);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const unsigned char *in, size_t n, char *out);

/* Parses a non-negative decimal integer that fits in int64; 0 ok, -1 bad. */
int parse_i64(const char *s, int64_t *out);

/* Case-insensitive ASCII comparison helpers. */
int ascii_casecmp(const char *a, const char *b);
int ascii_ncasecmp(const char *a, const char *b, size_t n);

#endif
