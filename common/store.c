/* store.c - see store.h.  Schema v1 of DESIGN.md §2. */
#include "store.h"

#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_BUSY_TIMEOUT_MS 5000

/* Statements proxyd runs for every request: prepared once per process. */
enum { Q_VKEY, Q_ROUTES, Q_ALIASES, Q_COUNT };

struct store {
	sqlite3 *db;
	enum store_mode mode;
	sqlite3_stmt *usage_ins; /* cached for limiterd's batches */
	sqlite3_stmt *q[Q_COUNT];
};

/* The cached statement in slot, prepared on first use.  Parsing a query
 * costs far more than running it, and a connection process asks the same
 * few queries for each of its requests.  Callers finish with query_done,
 * which ends the read transaction so the next use sees fresh data. */
static sqlite3_stmt *query(struct store *st, int slot, const char *sql)
{
	if (!st->q[slot] &&
	    sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->q[slot], NULL) != SQLITE_OK)
		return NULL;
	return st->q[slot];
}

static void query_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Forward-only migrations: step i (1-based) brings the schema from version
 * i-1 to i.  Each runs inside one transaction together with the version
 * bump, so a crash leaves either the old or the new schema. */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE IF NOT EXISTS meta ("
	"  key TEXT PRIMARY KEY,"
	"  value BLOB);"
	"CREATE TABLE IF NOT EXISTS connections ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  provider TEXT NOT NULL CHECK (provider IN ('openai','azure','google','gemini','vertex')),"
	"  endpoint TEXT NOT NULL,"
	"  api_version TEXT,"
	"  options TEXT NOT NULL DEFAULT '{}',"
	"  secret BLOB NOT NULL,"
	"  secret_hint TEXT NOT NULL DEFAULT '…',"
	"  rpm INTEGER NOT NULL DEFAULT 0 CHECK (rpm >= 0),"
	"  tpm INTEGER NOT NULL DEFAULT 0 CHECK (tpm >= 0),"
	"  created_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS provider_models ("
	"  id TEXT PRIMARY KEY,"
	"  conn_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  remote TEXT NOT NULL,"
	"  deployment TEXT,"
	"  kind TEXT NOT NULL DEFAULT 'chat' CHECK (kind IN ('chat','embedding')),"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (conn_id, name));"
	"CREATE INDEX IF NOT EXISTS provider_models_conn ON provider_models(conn_id);"
	"CREATE TABLE IF NOT EXISTS virtual_keys ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  key_hash BLOB NOT NULL UNIQUE,"
	"  key_prefix TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  expires_at INTEGER NOT NULL DEFAULT 0,"
	"  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0,1)),"
	"  rpm INTEGER NOT NULL DEFAULT 0 CHECK (rpm >= 0),"
	"  tpm INTEGER NOT NULL DEFAULT 0 CHECK (tpm >= 0));"
	"CREATE TABLE IF NOT EXISTS assignments ("
	"  id TEXT PRIMARY KEY,"
	"  vkey_id TEXT NOT NULL REFERENCES virtual_keys(id) ON DELETE CASCADE,"
	"  model_id TEXT NOT NULL REFERENCES provider_models(id) ON DELETE CASCADE,"
	"  alias TEXT NOT NULL,"
	"  rps REAL NOT NULL DEFAULT 0 CHECK (rps >= 0),"
	"  rpm INTEGER NOT NULL DEFAULT 0 CHECK (rpm >= 0),"
	"  tpm INTEGER NOT NULL DEFAULT 0 CHECK (tpm >= 0),"
	"  burst INTEGER NOT NULL DEFAULT 0 CHECK (burst >= 0),"
	"  weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (vkey_id, model_id, alias));"
	"CREATE INDEX IF NOT EXISTS assignments_route ON assignments(vkey_id, alias);"
	"CREATE INDEX IF NOT EXISTS assignments_model ON assignments(model_id);"
	"CREATE TABLE IF NOT EXISTS usage ("
	"  id INTEGER PRIMARY KEY,"
	"  ts INTEGER NOT NULL,"
	"  vkey_id TEXT,"
	"  assignment_id TEXT,"
	"  alias TEXT,"
	"  provider TEXT,"
	"  status INTEGER NOT NULL DEFAULT 0,"
	"  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	"  completion_tokens INTEGER NOT NULL DEFAULT 0,"
	"  latency_ms INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS usage_ts ON usage(ts);",
};
#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "one migration step per schema version");

static void set_err(char *err, size_t errlen, const char *what, sqlite3 *db)
{
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *s = NULL;
	int rc = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW) {
		*v = sqlite3_column_int(s, 0);
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

static int exec(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1; }

static int newer_schema(int v, const char *path, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "database %s has schema version %d, newer than this llmproxy understands (%d); upgrade llmproxy",
		 path, v, STORE_SCHEMA_VERSION);
	return -1;
}

/* Runs the pending migration steps, each in its own transaction. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	int v = 0;
	if (exec(db, "BEGIN IMMEDIATE") < 0) {
		set_err(err, errlen, "cannot lock database", db);
		return -1;
	}
	if (user_version(db, &v) < 0) {
		set_err(err, errlen, "cannot read schema version", db);
		goto fail;
	}
	if (v > STORE_SCHEMA_VERSION) {
		exec(db, "ROLLBACK");
		return newer_schema(v, path, err, errlen);
	}
	for (int step = v + 1; step <= STORE_SCHEMA_VERSION; step++) {
		char sql[160];
		if (exec(db, migrations[step - 1]) < 0) {
			set_err(err, errlen, "migration failed", db);
			goto fail;
		}
		snprintf(sql, sizeof sql,
			 "INSERT INTO meta(key, value) VALUES ('schema_version', '%d') "
			 "ON CONFLICT(key) DO UPDATE SET value = excluded.value; PRAGMA user_version = %d;",
			 step, step);
		if (exec(db, sql) < 0) {
			set_err(err, errlen, "migration failed", db);
			goto fail;
		}
	}
	if (exec(db, "COMMIT") < 0) {
		set_err(err, errlen, "migration commit failed", db);
		goto fail;
	}
	return 0;
fail:
	exec(db, "ROLLBACK");
	return -1;
}

struct store *store_open(const char *path, enum store_mode mode, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	struct store *st = NULL;
	int flags = mode == STORE_RW ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
	struct stat sb;

	if (mode == STORE_RO && stat(path, &sb) < 0) {
		snprintf(err, errlen, "database %s: %s", path, strerror(errno));
		return NULL;
	}
	if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open database %s: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
	if (exec(db, "PRAGMA foreign_keys = ON") < 0) {
		set_err(err, errlen, "cannot enable foreign keys", db);
		goto fail;
	}
	if (mode == STORE_RW) {
		sqlite3_stmt *s = NULL;
		int wal = 0;
		if (sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &s, NULL) == SQLITE_OK &&
		    sqlite3_step(s) == SQLITE_ROW) {
			const unsigned char *m = sqlite3_column_text(s, 0);
			wal = m && strcmp((const char *)m, "wal") == 0;
		}
		sqlite3_finalize(s);
		if (!wal) {
			snprintf(err, errlen, "cannot switch database %s to WAL mode: %s", path, sqlite3_errmsg(db));
			goto fail;
		}
		if (exec(db, "PRAGMA synchronous = NORMAL") < 0) {
			set_err(err, errlen, "cannot set synchronous", db);
			goto fail;
		}
		if (migrate(db, path, err, errlen) < 0)
			goto fail;
	} else {
		int v = 0;
		if (user_version(db, &v) < 0) {
			snprintf(err, errlen, "cannot read database %s: %s", path, sqlite3_errmsg(db));
			goto fail;
		}
		if (v > STORE_SCHEMA_VERSION) {
			newer_schema(v, path, err, errlen);
			goto fail;
		}
		if (v < STORE_SCHEMA_VERSION) {
			snprintf(err, errlen,
				 "database %s has schema version %d, this llmproxy needs %d; run llmproxy-admin init",
				 path, v, STORE_SCHEMA_VERSION);
			goto fail;
		}
	}
	st = xcalloc(1, sizeof *st);
	st->db = db;
	st->mode = mode;
	return st;
fail:
	sqlite3_close(db);
	return NULL;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->usage_ins);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(st->q[i]);
	sqlite3_close(st->db);
	free(st);
}

sqlite3 *store_db(struct store *st) { return st->db; }

int store_meta_get(struct store *st, const char *key, unsigned char **val, size_t *len)
{
	sqlite3_stmt *s = NULL;
	int rc = -1;
	*val = NULL;
	*len = 0;
	if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_DONE) {
		rc = 1;
	} else if (r == SQLITE_ROW) {
		int n = sqlite3_column_bytes(s, 0);
		const void *p = sqlite3_column_blob(s, 0);
		*val = xmalloc((size_t)n + 1);
		if (n > 0 && p)
			memcpy(*val, p, (size_t)n);
		(*val)[n] = 0;
		*len = (size_t)n;
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

int store_meta_set(struct store *st, const char *key, const void *val, size_t len)
{
	sqlite3_stmt *s = NULL;
	int rc = -1;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT INTO meta(key, value) VALUES (?, ?) "
			       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, val, (int)len, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_DONE)
		rc = 0;
	sqlite3_finalize(s);
	return rc;
}

int store_schema_version(struct store *st)
{
	unsigned char *v = NULL;
	size_t n = 0;
	int64_t out = 0;
	if (store_meta_get(st, "schema_version", &v, &n) != 0)
		return 0;
	if (parse_i64((const char *)v, &out) < 0 || out > 1000000)
		out = 0;
	free(v);
	return (int)out;
}

static void copy_col(sqlite3_stmt *s, int col, char *dst, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int store_find_vkey_by_hash(struct store *st, const unsigned char hash[32], struct vkey_row *out)
{
	int rc = -1;
	sqlite3_stmt *s = query(st, Q_VKEY,
				"SELECT id, name, disabled, expires_at, rpm, tpm FROM virtual_keys WHERE key_hash = ?");
	if (!s)
		return -1;
	sqlite3_bind_blob(s, 1, hash, 32, SQLITE_STATIC);
	int r = sqlite3_step(s);
	if (r == SQLITE_DONE) {
		rc = 1;
	} else if (r == SQLITE_ROW) {
		memset(out, 0, sizeof *out);
		copy_col(s, 0, out->id, sizeof out->id);
		copy_col(s, 1, out->name, sizeof out->name);
		out->disabled = sqlite3_column_int(s, 2) != 0;
		out->expires_at = sqlite3_column_int64(s, 3);
		out->rpm = sqlite3_column_int64(s, 4);
		out->tpm = sqlite3_column_int64(s, 5);
		rc = 0;
	}
	query_done(s);
	return rc;
}

static char *dup_col(sqlite3_stmt *s, int col, int null_ok)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	if (!t)
		return null_ok ? NULL : xstrdup("");
	return xstrdup((const char *)t);
}

/* Routes are returned in assignment creation order (rowid), which is the
 * order an admin added the fallbacks in. */
int store_find_routes(struct store *st, const char *vkey_id, const char *alias, struct route **out,
		      size_t *n)
{
	static const char sql[] =
		"SELECT a.id, a.alias, a.rps, a.rpm, a.tpm, a.burst, a.weight,"
		"       m.id, m.name, m.remote, m.deployment, m.kind,"
		"       c.id, c.name, c.provider, c.endpoint, c.api_version, c.options, c.rpm, c.tpm, c.secret"
		"  FROM assignments a"
		"  JOIN provider_models m ON m.id = a.model_id"
		"  JOIN connections c ON c.id = m.conn_id"
		" WHERE a.vkey_id = ? AND a.alias = ?"
		" ORDER BY a.rowid";
	struct route *r = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *s = query(st, Q_ROUTES, sql);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, vkey_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, alias, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 4;
			r = xreallocarray(r, cap, sizeof *r);
		}
		struct route *x = &r[cnt++];
		memset(x, 0, sizeof *x);
		x->asg_id = dup_col(s, 0, 0);
		x->alias = dup_col(s, 1, 0);
		x->rps = sqlite3_column_double(s, 2);
		x->rpm = sqlite3_column_int64(s, 3);
		x->tpm = sqlite3_column_int64(s, 4);
		x->burst = sqlite3_column_int64(s, 5);
		x->weight = sqlite3_column_int64(s, 6);
		if (x->weight < 1)
			x->weight = 1;
		x->model_id = dup_col(s, 7, 0);
		x->model_name = dup_col(s, 8, 0);
		x->remote = dup_col(s, 9, 0);
		x->deployment = dup_col(s, 10, 1);
		x->kind = dup_col(s, 11, 0);
		x->conn_id = dup_col(s, 12, 0);
		x->conn_name = dup_col(s, 13, 0);
		x->provider = dup_col(s, 14, 0);
		x->endpoint = dup_col(s, 15, 0);
		x->api_version = dup_col(s, 16, 1);
		x->options = dup_col(s, 17, 1);
		if (!x->options)
			x->options = xstrdup("{}");
		x->conn_rpm = sqlite3_column_int64(s, 18);
		x->conn_tpm = sqlite3_column_int64(s, 19);
		int sl = sqlite3_column_bytes(s, 20);
		const void *sp = sqlite3_column_blob(s, 20);
		x->secret = xmalloc((size_t)sl + 1);
		if (sl > 0 && sp)
			memcpy(x->secret, sp, (size_t)sl);
		x->secret_len = (size_t)sl;
	}
	query_done(s);
	if (rc != SQLITE_DONE) {
		store_free_routes(r, cnt);
		return -1;
	}
	*out = r;
	*n = cnt;
	return 0;
}

void store_free_routes(struct route *r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++) {
		struct route *x = &r[i];
		free(x->asg_id);
		free(x->alias);
		free(x->model_id);
		free(x->model_name);
		free(x->remote);
		free(x->deployment);
		free(x->kind);
		free(x->conn_id);
		free(x->conn_name);
		free(x->provider);
		free(x->endpoint);
		free(x->api_version);
		free(x->options);
		if (x->secret) {
			wipe(x->secret, x->secret_len);
			free(x->secret);
		}
	}
	free(r);
}

int store_list_aliases(struct store *st, const char *vkey_id, struct alias_row **out, size_t *n)
{
	static const char sql[] =
		"SELECT a.alias, MIN(a.created_at),"
		"       (SELECT c.provider FROM assignments a2"
		"          JOIN provider_models m ON m.id = a2.model_id"
		"          JOIN connections c ON c.id = m.conn_id"
		"         WHERE a2.vkey_id = a.vkey_id AND a2.alias = a.alias"
		"         ORDER BY a2.rowid LIMIT 1)"
		"  FROM assignments a WHERE a.vkey_id = ?"
		" GROUP BY a.alias ORDER BY a.alias";
	struct alias_row *a = NULL;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	sqlite3_stmt *s = query(st, Q_ALIASES, sql);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, vkey_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 4;
			a = xreallocarray(a, cap, sizeof *a);
		}
		a[cnt].alias = dup_col(s, 0, 0);
		a[cnt].created_at = sqlite3_column_int64(s, 1);
		a[cnt].owned_by = dup_col(s, 2, 0);
		cnt++;
	}
	query_done(s);
	if (rc != SQLITE_DONE) {
		store_free_aliases(a, cnt);
		return -1;
	}
	*out = a;
	*n = cnt;
	return 0;
}

void store_free_aliases(struct alias_row *a, size_t n)
{
	if (!a)
		return;
	for (size_t i = 0; i < n; i++) {
		free(a[i].alias);
		free(a[i].owned_by);
	}
	free(a);
}

int store_append_usage(struct store *st, const struct usage_row *rows, size_t n)
{
	if (n == 0)
		return 0;
	if (!st->usage_ins &&
	    sqlite3_prepare_v2(st->db,
			       "INSERT INTO usage(ts, vkey_id, assignment_id, alias, provider, status,"
			       " prompt_tokens, completion_tokens, latency_ms) VALUES (?,?,?,?,?,?,?,?,?)",
			       -1, &st->usage_ins, NULL) != SQLITE_OK)
		return -1;
	if (exec(st->db, "BEGIN IMMEDIATE") < 0)
		return -1;
	sqlite3_stmt *s = st->usage_ins;
	for (size_t i = 0; i < n; i++) {
		const struct usage_row *u = &rows[i];
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		sqlite3_bind_int64(s, 1, u->ts_ms);
		sqlite3_bind_text(s, 2, u->vkey_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, u->asg_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, u->alias, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, u->provider, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 6, u->status);
		sqlite3_bind_int64(s, 7, u->prompt_tokens);
		sqlite3_bind_int64(s, 8, u->completion_tokens);
		sqlite3_bind_int64(s, 9, u->latency_ms);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sqlite3_reset(s);
			exec(st->db, "ROLLBACK");
			return -1;
		}
	}
	sqlite3_reset(s);
	if (exec(st->db, "COMMIT") < 0) {
		exec(st->db, "ROLLBACK");
		return -1;
	}
	return 0;
}
