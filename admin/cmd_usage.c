/* cmd_usage.c - `llmproxy-admin usage`: requests, errors and tokens per
 * (virtual key, alias) over a period, read from the usage ledger that
 * limiterd writes. */
#include "cmd_usage.h"

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "store.h"
#include "util.h"

#define USAGE_DEFAULT_SINCE "24h"
#define USAGE_MAX_DURATION_S ((int64_t)100 * 366 * 86400)

static const char usage_help[] =
	"usage: llmproxy-admin usage [--vkey ID|NAME] [--alias A] [--since T] [--json]\n"
	"Requests, errors (status >= 400 or no answer) and tokens per virtual key\n"
	"and alias, from the usage ledger written by limiterd.\n"
	"  --vkey ID|NAME  only this virtual key\n"
	"  --alias A       only this alias\n"
	"  --since T       start of the period: an RFC 3339 time\n"
	"                  (2026-01-31T00:00:00Z, offsets and fractions allowed)\n"
	"                  or a duration back from now: 90s, 30m, 24h, 7d, 2w\n"
	"                  (default " USAGE_DEFAULT_SINCE ")\n"
	"  --json          a JSON array of {vkey_id, vkey, alias, requests, errors,\n"
	"                  prompt_tokens, completion_tokens}\n";

/* --since: RFC 3339, or a duration back from now_ms.  0 ok, -1 bad. */
static int parse_since(const char *s, int64_t now_ms, int64_t *out)
{
	size_t n = strlen(s);
	if (n >= 2 && n <= 12 && strchr("smhdw", s[n - 1])) {
		char num[16];
		int64_t v;
		memcpy(num, s, n - 1);
		num[n - 1] = '\0';
		int64_t unit = s[n - 1] == 's'   ? 1
			       : s[n - 1] == 'm' ? 60
			       : s[n - 1] == 'h' ? 3600
			       : s[n - 1] == 'd' ? 86400
						 : 7 * 86400;
		if (parse_i64(num, &v) < 0 || v <= 0 || v > USAGE_MAX_DURATION_S / unit)
			return -1;
		*out = now_ms - v * unit * 1000;
		return 0;
	}
	int64_t t;
	if (parse_rfc3339(s, &t) < 0)
		return -1;
	*out = t * 1000;
	return 0;
}

/* Finds the virtual key named or numbered arg; a key removed since still
 * matches its id in the ledger.  0 with id, 1 not found, -1 db error. */
static int resolve_vkey(sqlite3 *db, const char *arg, char *id, size_t cap)
{
	static const char *const sql[] = {
		"SELECT id FROM virtual_keys WHERE id = ?1 UNION ALL "
		"SELECT id FROM virtual_keys WHERE name = ?1 LIMIT 1",
		"SELECT vkey_id FROM usage WHERE vkey_id = ?1 LIMIT 1",
	};
	for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
		sqlite3_stmt *s = NULL;
		if (sqlite3_prepare_v2(db, sql[i], -1, &s, NULL) != SQLITE_OK)
			return -1;
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			snprintf(id, cap, "%s", (const char *)sqlite3_column_text(s, 0));
			sqlite3_finalize(s);
			return 0;
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			return -1;
	}
	return 1;
}

/* Frees a table without printing it (a query failed half way). */
static void table_discard(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncol; i++)
		free(t->cells[i]);
	free(t->cells);
}

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int cmd_usage(struct store *st, int argc, char **argv)
{
	const char *vkey = NULL, *alias = NULL, *since = USAGE_DEFAULT_SINCE;
	int json = 0, rc = EXIT_RUNTIME;
	sqlite3_stmt *q = NULL;
	cJSON *arr = NULL;
	struct table t;
	int table_open = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_help, stdout);
			return 0;
		}
		if (strcmp(a, "--json") == 0)
			json = 1;
		else if ((v = opt_value(argc, argv, &i, "--vkey")))
			vkey = v;
		else if ((v = opt_value(argc, argv, &i, "--alias")))
			alias = v;
		else if ((v = opt_value(argc, argv, &i, "--since")))
			since = v;
		else if (strcmp(a, "--vkey") == 0 || strcmp(a, "--alias") == 0 || strcmp(a, "--since") == 0)
			return admin_err(EXIT_USAGE, "usage: %s needs a value", a);
		else
			return admin_err(EXIT_USAGE, "usage: unexpected argument '%.60s' (see usage --help)", a);
	}
	int64_t since_ms;
	if (parse_since(since, wall_ms(), &since_ms) < 0)
		return admin_err(EXIT_USAGE,
				 "usage: --since '%.40s' is neither an RFC 3339 time (2026-01-31T00:00:00Z)"
				 " nor a duration (90s, 30m, 24h, 7d, 2w)",
				 since);
	if (!st)
		return admin_err(EXIT_RUNTIME, "usage: no store");
	sqlite3 *db = store_db(st);

	char vkey_id[ADMIN_ID_MAX] = "";
	if (vkey) {
		int r = resolve_vkey(db, vkey, vkey_id, sizeof vkey_id);
		if (r < 0)
			return admin_err(EXIT_RUNTIME, "usage: %s", sqlite3_errmsg(db));
		if (r > 0)
			return admin_err(EXIT_RUNTIME, "usage: no virtual key '%.60s'", vkey);
	}
	if (sqlite3_prepare_v2(db,
			       "SELECT u.vkey_id, k.name, u.alias, count(*),"
			       " sum(CASE WHEN u.status BETWEEN 100 AND 399 THEN 0 ELSE 1 END),"
			       " coalesce(sum(u.prompt_tokens), 0), coalesce(sum(u.completion_tokens), 0)"
			       " FROM usage u LEFT JOIN virtual_keys k ON k.id = u.vkey_id"
			       " WHERE u.ts >= ?1 AND (?2 IS NULL OR u.vkey_id = ?2)"
			       " AND (?3 IS NULL OR u.alias = ?3)"
			       " GROUP BY u.vkey_id, u.alias"
			       " ORDER BY coalesce(k.name, u.vkey_id), u.alias",
			       -1, &q, NULL) != SQLITE_OK) {
		admin_err(EXIT_RUNTIME, "usage: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_int64(q, 1, since_ms);
	if (vkey)
		sqlite3_bind_text(q, 2, vkey_id, -1, SQLITE_STATIC);
	if (alias)
		sqlite3_bind_text(q, 3, alias, -1, SQLITE_STATIC);

	if (json)
		arr = cJSON_CreateArray();
	else {
		table_init(&t, 6, "VKEY", "ALIAS", "REQUESTS", "ERRORS", "PROMPT_TOKENS",
			   "COMPLETION_TOKENS");
		table_open = 1;
	}
	int step, nrows = 0;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(q, 0);
		const char *name = (const char *)sqlite3_column_text(q, 1);
		const char *al = (const char *)sqlite3_column_text(q, 2);
		long long n[4];
		for (int i = 0; i < 4; i++)
			n[i] = (long long)sqlite3_column_int64(q, 3 + i);
		nrows++;
		if (json) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddItemToObject(o, "vkey_id", id ? cJSON_CreateString(id) : cJSON_CreateNull());
			cJSON_AddItemToObject(o, "vkey", name ? cJSON_CreateString(name) : cJSON_CreateNull());
			cJSON_AddItemToObject(o, "alias", al ? cJSON_CreateString(al) : cJSON_CreateNull());
			cJSON_AddNumberToObject(o, "requests", (double)n[0]);
			cJSON_AddNumberToObject(o, "errors", (double)n[1]);
			cJSON_AddNumberToObject(o, "prompt_tokens", (double)n[2]);
			cJSON_AddNumberToObject(o, "completion_tokens", (double)n[3]);
			cJSON_AddItemToArray(arr, o);
		} else {
			char c[4][24];
			for (int i = 0; i < 4; i++)
				snprintf(c[i], sizeof c[i], "%lld", n[i]);
			table_row(&t, name && *name ? name : id, al, c[0], c[1], c[2], c[3]);
		}
	}
	if (step != SQLITE_DONE) {
		admin_err(EXIT_RUNTIME, "usage: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (json) {
		json_print(arr);
		arr = NULL;
	} else {
		table_print(&t);
		table_open = 0;
		if (nrows == 0)
			fprintf(stderr, "%s: no usage recorded since %s\n", ADMIN_PROG, since);
	}
	rc = 0;
out:
	if (table_open)
		table_discard(&t);
	cJSON_Delete(arr);
	sqlite3_finalize(q);
	return rc;
}
