/* metrics.h - limiterd's counters, rendered in the Prometheus text format
 * (served by proxyd's GET /metrics through a METRICS message). */
#ifndef LLMPROXY_METRICS_H
#define LLMPROXY_METRICS_H

#include <stddef.h>

#include "limitproto.h"
#include "util.h"

#define METRICS_MAX_SERIES 2048 /* per family; further label sets share one "_overflow" series */

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* Counts one settled request: requests_total, tokens_total, the latency
 * histogram (unless our own limiter denied it) and rate_limited_total. */
void metrics_settle(struct metrics *m, const struct lp_settle *s);
/* Active client connections: +1 / -1 (never below 0). */
void metrics_conn(struct metrics *m, int delta);
/* Appends the exposition text to out; reservations_open is the gauge value. */
void metrics_render(const struct metrics *m, size_t reservations_open, struct buf *out);
/* Escapes a label value per the exposition format (\\, \", \n) into out. */
void metrics_escape(const char *v, struct buf *out);

#endif
