/* metrics.c - see metrics.h.  Each metric family is a small hash of series
 * keyed by their rendered (escaped) label text, which is also what gets
 * printed, so a lookup needs no separate key format. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAMILY_HEADS 1024
#define NIL (-1)

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
					0.5,   1,    2.5,   5,    10,  30};
#define N_BOUNDS (sizeof latency_bounds / sizeof latency_bounds[0])

struct series {
	char *labels;
	uint64_t hash;
	int32_t hnext;
	double *v; /* counters: v[0]; histogram: N_BOUNDS buckets, +Inf, sum */
};

struct family {
	const char *name, *help, *type;
	const char *overflow; /* label text of the catch-all series */
	size_t nvals;
	struct series *s;
	size_t n, cap;
	int32_t heads[FAMILY_HEADS];
};

enum { F_REQUESTS, F_TOKENS, F_RATE_LIMITED, F_LATENCY, N_FAMILIES };

struct metrics {
	struct family f[N_FAMILIES];
	int64_t active_connections;
};

static void family_init(struct family *f, const char *name, const char *type, const char *help,
			const char *overflow, size_t nvals)
{
	f->name = name;
	f->type = type;
	f->help = help;
	f->overflow = overflow;
	f->nvals = nvals;
	for (int i = 0; i < FAMILY_HEADS; i++)
		f->heads[i] = NIL;
}

struct metrics *metrics_new(void)
{
	struct metrics *m = xcalloc(1, sizeof *m);
	family_init(&m->f[F_REQUESTS], "llmproxy_requests_total", "counter",
		    "Requests settled with limiterd, by alias, provider and HTTP status.",
		    "alias=\"_overflow\",provider=\"_overflow\",status=\"0\"", 1);
	family_init(&m->f[F_TOKENS], "llmproxy_tokens_total", "counter",
		    "Tokens reported by the upstream, by alias, provider and kind.",
		    "alias=\"_overflow\",provider=\"_overflow\",kind=\"_overflow\"", 1);
	family_init(&m->f[F_RATE_LIMITED], "llmproxy_rate_limited_total", "counter",
		    "Requests denied by the proxy's own rate limits, by alias and type.",
		    "alias=\"_overflow\",type=\"_overflow\"", 1);
	family_init(&m->f[F_LATENCY], "llmproxy_upstream_latency_seconds", "histogram",
		    "Upstream latency of proxied requests, by provider.",
		    "provider=\"_overflow\"", N_BOUNDS + 2);
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (int i = 0; i < N_FAMILIES; i++) {
		for (size_t j = 0; j < m->f[i].n; j++) {
			free(m->f[i].s[j].labels);
			free(m->f[i].s[j].v);
		}
		free(m->f[i].s);
	}
	free(m);
}

void metrics_escape(const char *v, struct buf *out)
{
	for (; *v; v++) {
		if (*v == '\\')
			buf_puts(out, "\\\\");
		else if (*v == '"')
			buf_puts(out, "\\\"");
		else if (*v == '\n')
			buf_puts(out, "\\n");
		else
			buf_append(out, v, 1);
	}
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The values of the series with these labels, created (zeroed) if new. */
static double *series_get(struct family *f, const char *labels)
{
	uint64_t h = hash_str(labels);
	for (int32_t i = f->heads[h % FAMILY_HEADS]; i != NIL; i = f->s[i].hnext)
		if (f->s[i].hash == h && strcmp(f->s[i].labels, labels) == 0)
			return f->s[i].v;
	if (f->n >= METRICS_MAX_SERIES && strcmp(labels, f->overflow) != 0)
		return series_get(f, f->overflow);
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 16;
		f->s = xreallocarray(f->s, f->cap, sizeof *f->s);
	}
	struct series *s = &f->s[f->n];
	s->labels = xstrdup(labels);
	s->hash = h;
	s->v = xcalloc(f->nvals, sizeof *s->v);
	s->hnext = f->heads[h % FAMILY_HEADS];
	f->heads[h % FAMILY_HEADS] = (int32_t)f->n;
	f->n++;
	return s->v;
}

/* Builds `name="value",...` from NULL-terminated name/value pairs. */
static void labels(struct buf *b, ...)
{
	va_list ap;
	const char *k;
	int first = 1;
	buf_reset(b);
	va_start(ap, b);
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);
		buf_printf(b, "%s%s=\"", first ? "" : ",", k);
		metrics_escape(v, b);
		buf_puts(b, "\"");
		first = 0;
	}
	va_end(ap);
}

void metrics_settle(struct metrics *m, const struct lp_settle *s)
{
	struct buf b;
	char status[16];
	buf_init(&b);
	snprintf(status, sizeof status, "%d", (int)s->status);

	labels(&b, "alias", s->alias, "provider", s->provider, "status", status, (char *)NULL);
	series_get(&m->f[F_REQUESTS], b.data)[0] += 1;
	if (s->prompt_tokens) {
		labels(&b, "alias", s->alias, "provider", s->provider, "kind", "prompt", (char *)NULL);
		series_get(&m->f[F_TOKENS], b.data)[0] += (double)s->prompt_tokens;
	}
	if (s->completion_tokens) {
		labels(&b, "alias", s->alias, "provider", s->provider, "kind", "completion",
		       (char *)NULL);
		series_get(&m->f[F_TOKENS], b.data)[0] += (double)s->completion_tokens;
	}
	if (s->denied) {
		labels(&b, "alias", s->alias, "type", lp_denied_name(s->denied), (char *)NULL);
		series_get(&m->f[F_RATE_LIMITED], b.data)[0] += 1;
	} else if (s->provider[0]) {
		labels(&b, "provider", s->provider, (char *)NULL);
		double *v = series_get(&m->f[F_LATENCY], b.data);
		double sec = (double)s->latency_ms / 1000.0;
		for (size_t i = 0; i < N_BOUNDS; i++)
			if (sec <= latency_bounds[i])
				v[i] += 1; /* stored cumulative, as exposed */
		v[N_BOUNDS] += 1;
		v[N_BOUNDS + 1] += sec;
	}
	buf_free(&b);
}

void metrics_conn(struct metrics *m, int delta)
{
	m->active_connections += delta;
	if (m->active_connections < 0)
		m->active_connections = 0;
}

static void head(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_render(const struct metrics *m, size_t reservations_open, struct buf *out)
{
	for (int i = 0; i < N_FAMILIES; i++) {
		const struct family *f = &m->f[i];
		head(out, f->name, f->type, f->help);
		for (size_t j = 0; j < f->n; j++) {
			const struct series *s = &f->s[j];
			if (i != F_LATENCY) {
				buf_printf(out, "%s{%s} %.0f\n", f->name, s->labels, s->v[0]);
				continue;
			}
			for (size_t k = 0; k < N_BOUNDS; k++)
				buf_printf(out, "%s_bucket{%s,le=\"%g\"} %.0f\n", f->name, s->labels,
					   latency_bounds[k], s->v[k]);
			buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %.0f\n", f->name, s->labels,
				   s->v[N_BOUNDS]);
			buf_printf(out, "%s_sum{%s} %.3f\n", f->name, s->labels, s->v[N_BOUNDS + 1]);
			buf_printf(out, "%s_count{%s} %.0f\n", f->name, s->labels, s->v[N_BOUNDS]);
		}
	}
	head(out, "llmproxy_active_connections", "gauge", "Client connections open in proxyd processes.");
	buf_printf(out, "llmproxy_active_connections %lld\n", (long long)m->active_connections);
	head(out, "llmproxy_reservations_open", "gauge",
	     "Token reservations taken and not yet settled or expired.");
	buf_printf(out, "llmproxy_reservations_open %zu\n", reservations_open);
}
