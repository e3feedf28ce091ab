/* ledger.h - limiterd's batched writer of `usage` rows (it is the store's
 * only usage writer).  Rows queue in memory and go to SQLite in one
 * transaction per flush. */
#ifndef LLMPROXY_LEDGER_H
#define LLMPROXY_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "limitproto.h"

#define LEDGER_BATCH 256           /* flush when this many rows wait */
#define LEDGER_MAX_PENDING 100000  /* rows kept while the store fails; newer ones are dropped */
#define LEDGER_BUSY_MS 10          /* wait for another writer, per attempt */
#define LEDGER_EXIT_BUSY_MS 2000    /* at exit, a last longer wait */
#define LEDGER_RETRY_MIN_MS 100     /* a failing store is retried after ... */
#define LEDGER_RETRY_MAX_MS 5000    /* ... doubling up to this */

struct ledger;

/* Opens the store at db_path read-write.  NULL with a line in err on failure. */
struct ledger *ledger_open(const char *db_path, char *err, size_t errlen);
/* Flushes what is pending (logging a failure), then closes. */
void ledger_close(struct ledger *l);
/* Queues the row for a settled request at wall time ts_ms.  Returns the
 * number of rows now pending. */
size_t ledger_add(struct ledger *l, const struct lp_settle *s, int64_t ts_ms);
/* Writes every pending row in one transaction.  0 ok (queue empty), <0 on a
 * store error (rows stay queued for the next try). */
int ledger_flush(struct ledger *l);
size_t ledger_pending(const struct ledger *l);
/* Rows dropped because the queue was full. */
uint64_t ledger_dropped(const struct ledger *l);

#endif
