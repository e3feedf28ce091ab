/* ledger.c - see ledger.h. */
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"
#include "util.h"

struct ledger {
	struct store *st;
	struct usage_row *rows;
	size_t n, cap;
	uint64_t dropped;
	int failing; /* log a failing store once, not on every flush */
	int64_t retry_at_ms; /* while failing: no new attempt before this */
	int64_t backoff_ms;
};

struct ledger *ledger_open(const char *db_path, char *err, size_t errlen)
{
	struct stat sb;
	/* never create the store: a database without its master key would make
	 * `llmproxy-admin init` refuse to run later */
	if (stat(db_path, &sb) < 0) {
		snprintf(err, errlen, "no database at %s (create it with llmproxy-admin init)", db_path);
		return NULL;
	}
	struct store *st = store_open(db_path, STORE_RW, err, errlen);
	if (!st)
		return NULL;
	/* limiterd answers every proxyd from one thread: a writer elsewhere
	 * (an admin command, a backup) must not stall it for seconds; the
	 * batch waits for the next attempt instead */
	sqlite3_busy_timeout(store_db(st), LEDGER_BUSY_MS);
	struct ledger *l = xcalloc(1, sizeof *l);
	l->st = st;
	return l;
}

void ledger_close(struct ledger *l)
{
	if (!l)
		return;
	l->retry_at_ms = 0; /* last chance: try now */
	sqlite3_busy_timeout(store_db(l->st), LEDGER_EXIT_BUSY_MS);
	if (ledger_flush(l) < 0)
		log_msg("usage: %zu rows could not be written at exit", l->n);
	store_close(l->st);
	free(l->rows);
	free(l);
}

size_t ledger_add(struct ledger *l, const struct lp_settle *s, int64_t ts_ms)
{
	if (l->n >= LEDGER_MAX_PENDING) {
		l->dropped++;
		return l->n;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : LEDGER_BATCH;
		l->rows = xreallocarray(l->rows, l->cap, sizeof *l->rows);
	}
	struct usage_row *u = &l->rows[l->n++];
	memset(u, 0, sizeof *u);
	u->ts_ms = ts_ms;
	snprintf(u->vkey_id, sizeof u->vkey_id, "%s", s->vkey_id);
	snprintf(u->asg_id, sizeof u->asg_id, "%s", s->asg_id);
	snprintf(u->alias, sizeof u->alias, "%s", s->alias);
	snprintf(u->provider, sizeof u->provider, "%s", s->provider);
	u->status = s->status;
	u->prompt_tokens = s->prompt_tokens;
	u->completion_tokens = s->completion_tokens;
	u->latency_ms = s->latency_ms;
	return l->n;
}

int ledger_flush(struct ledger *l)
{
	if (l->n == 0)
		return 0;
	if (l->failing && mono_ms() < l->retry_at_ms)
		return -1;
	if (store_append_usage(l->st, l->rows, l->n) < 0) {
		if (!l->failing)
			log_msg("usage: store write failed, %zu rows kept for retry: %s", l->n,
				sqlite3_errmsg(store_db(l->st)));
		l->failing = 1;
		l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : LEDGER_RETRY_MIN_MS;
		if (l->backoff_ms > LEDGER_RETRY_MAX_MS)
			l->backoff_ms = LEDGER_RETRY_MAX_MS;
		l->retry_at_ms = mono_ms() + l->backoff_ms;
		return -1;
	}
	l->backoff_ms = 0;
	if (l->failing)
		log_msg("usage: store writable again");
	l->failing = 0;
	l->n = 0;
	if (l->cap > 4 * LEDGER_BATCH) { /* give back a backlog's memory */
		free(l->rows);
		l->rows = NULL;
		l->cap = 0;
	}
	return 0;
}

size_t ledger_pending(const struct ledger *l) { return l->n; }
uint64_t ledger_dropped(const struct ledger *l) { return l->dropped; }
