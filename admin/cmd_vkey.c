/* cmd_vkey.c - `llmproxy-admin vkey add|list|update|revoke|enable|rm`. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VKEY_PREFIX_MAX 7 /* shown chars of a key: at most a third of it */

static const char usage_group[] =
	"usage: llmproxy-admin vkey <subcommand> ...\n"
	"\n"
	"  add     --name N [--key K|-] [--expires RFC3339|DURATION] [--rpm N] [--tpm N]\n"
	"  list\n"
	"  update  ID|NAME [--rpm N|none] [--tpm N|none] [--expires RFC3339|DURATION|never]\n"
	"  revoke  ID|NAME\n"
	"  enable  ID|NAME\n"
	"  rm      ID|NAME\n"
	"\n"
	"Run 'llmproxy-admin vkey <subcommand> --help' for details.\n";
static const char usage_add[] =
	"usage: llmproxy-admin vkey add --name N [--key K | --key -]\n"
	"           [--expires RFC3339|DURATION] [--rpm N] [--tpm N] [--json]\n"
	"\nCreates a virtual key and prints its id (vkey-...).  Without --key a strong\n"
	"key (vk- + 40 random characters) is generated and printed once on the next\n"
	"line; it cannot be shown again.  '--key -' reads the key from standard input.\n"
	"  --expires  2026-12-31T23:59:59Z, or a duration from now: 30s, 15m, 24h, 7d\n"
	"  --rpm, --tpm  requests / tokens per minute across all of the key's aliases\n";
static const char usage_list[] = "usage: llmproxy-admin vkey list [--json]\n";
static const char usage_update[] =
	"usage: llmproxy-admin vkey update ID|NAME [--rpm N|none] [--tpm N|none]\n"
	"           [--expires RFC3339|DURATION|never] [--json]\n";
static const char usage_revoke[] =
	"usage: llmproxy-admin vkey revoke ID|NAME\n\nDisables a key (requests get 401); 'vkey enable' undoes it.\n";
static const char usage_enable[] = "usage: llmproxy-admin vkey enable ID|NAME\n";
static const char usage_rm[] =
	"usage: llmproxy-admin vkey rm ID|NAME\n\nDeletes a key and its assignments.\n";

static int check_vkey(const char *k, size_t n)
{
	if (n < ADMIN_VKEY_MIN || n > ADMIN_VKEY_MAX)
		return admin_err(EXIT_USAGE, "--key must be %d to %d characters long", ADMIN_VKEY_MIN, ADMIN_VKEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
			return admin_err(EXIT_USAGE, "--key may only contain printable ASCII without spaces");
	return 0;
}

static int vkey_add(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"name", OPT_VALUE}, {"key", OPT_VALUE}, {"expires", OPT_VALUE},
					     {"rpm", OPT_VALUE},  {"tpm", OPT_VALUE}, {NULL, 0}};
	const char *cmd = "vkey add";
	struct opts o;
	char id[ADMIN_ID_MAX], prefix[VKEY_PREFIX_MAX + 1];
	char *key = NULL;
	size_t key_len = 0;
	int generated = 0;
	int64_t expires = 0, rpm = 0, tpm = 0, now = wall_s();
	unsigned char hash[32];
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, cmd, usage_add, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = opt_require(&o, cmd, "name")) ||
	    (rc = check_name("--name", opt_get(&o, "name"), ADMIN_NAME_MAX)))
		goto out;
	if (opt_has(&o, "expires") && (rc = parse_expires(opt_get(&o, "expires"), 0, now, &expires)))
		goto out;
	if ((opt_has(&o, "rpm") && (rc = parse_limit("rpm", opt_get(&o, "rpm"), 0, &rpm))) ||
	    (opt_has(&o, "tpm") && (rc = parse_limit("tpm", opt_get(&o, "tpm"), 0, &tpm))))
		goto out;
	if (opt_has(&o, "key")) {
		if ((rc = read_secret(opt_get(&o, "key"), NULL, "the key", &key, &key_len)) ||
		    (rc = check_vkey(key, key_len)))
			goto out;
	} else {
		key = xmalloc(3 + ADMIN_VKEY_RANDOM + 1);
		memcpy(key, "vk-", 3);
		random_alnum(key + 3, ADMIN_VKEY_RANDOM);
		key_len = strlen(key);
		generated = 1;
	}
	{
		size_t pl = key_len / 3;
		if (pl > VKEY_PREFIX_MAX)
			pl = VKEY_PREFIX_MAX;
		memcpy(prefix, key, pl);
		prefix[pl] = 0;
	}
	if ((rc = admin_open(a)) || (rc = admin_begin(a)))
		goto out;
	if (admin_count(a, "SELECT count(*) FROM virtual_keys WHERE name = ?", opt_get(&o, "name")) > 0) {
		rc = admin_err(EXIT_RUNTIME, "a virtual key named '%s' already exists", opt_get(&o, "name"));
		goto out;
	}
	vault_hash_vkey(a->hkey, key, hash);
	{
		sqlite3_stmt *q = NULL;
		sqlite3_prepare_v2(store_db(a->st), "SELECT 1 FROM virtual_keys WHERE key_hash = ?", -1, &q, NULL);
		sqlite3_bind_blob(q, 1, hash, 32, SQLITE_STATIC);
		int dup = sqlite3_step(q) == SQLITE_ROW;
		sqlite3_finalize(q);
		if (dup) {
			rc = admin_err(EXIT_RUNTIME, "another virtual key already has that key value");
			goto out;
		}
	}
	admin_new_id("vkey-", id);
	sqlite3_prepare_v2(store_db(a->st),
			   "INSERT INTO virtual_keys(id, name, key_hash, key_prefix, created_at, expires_at, disabled, rpm, tpm)"
			   " VALUES (?,?,?,?,?,?,0,?,?)",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, opt_get(&o, "name"), -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, hash, 32, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, prefix, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, now);
	sqlite3_bind_int64(s, 6, expires);
	sqlite3_bind_int64(s, 7, rpm);
	sqlite3_bind_int64(s, 8, tpm);
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = admin_err(EXIT_RUNTIME, "cannot add the virtual key: %s", sqlite3_errmsg(store_db(a->st)));
		goto out;
	}
	if ((rc = admin_commit(a)))
		goto out;
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", id);
		cJSON_AddStringToObject(j, "name", opt_get(&o, "name"));
		cJSON_AddStringToObject(j, "key_prefix", prefix);
		if (generated)
			cJSON_AddStringToObject(j, "key", key);
		cJSON_AddNumberToObject(j, "expires_at", (double)expires);
		cJSON_AddNumberToObject(j, "rpm", (double)rpm);
		cJSON_AddNumberToObject(j, "tpm", (double)tpm);
		char *txt = cJSON_PrintUnformatted(j);
		if (txt) {
			puts(txt);
			free_secret(txt);
		}
		cJSON_Delete(j);
	} else {
		printf("%s\n", id);
		if (generated)
			printf("%s\n", key);
	}
	fflush(stdout);
out:
	admin_rollback(a);
	sqlite3_finalize(s);
	free_secret(key);
	wipe(hash, sizeof hash);
	opts_free(&o);
	return rc;
}

static const char *vkey_status(int disabled, int64_t expires, int64_t now)
{
	if (disabled)
		return "disabled";
	if (expires && expires <= now)
		return "expired";
	return "active";
}

static int vkey_list(struct admin *a, int argc, char **argv)
{
	struct opts o;
	sqlite3_stmt *s = NULL;
	int64_t now = wall_s();
	int rc = opts_parse(a, "vkey list", usage_list, NULL, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		return rc;
	sqlite3_prepare_v2(store_db(a->st),
			   "SELECT v.id, v.name, v.key_prefix, v.created_at, v.expires_at, v.disabled, v.rpm, v.tpm,"
			   " (SELECT count(*) FROM assignments x WHERE x.vkey_id = v.id)"
			   " FROM virtual_keys v ORDER BY v.rowid",
			   -1, &s, NULL);
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		while (sqlite3_step(s) == SQLITE_ROW) {
			cJSON *j = cJSON_CreateObject();
			int64_t exp = sqlite3_column_int64(s, 4);
			cJSON_AddStringToObject(j, "id", COL(s, 0));
			cJSON_AddStringToObject(j, "name", COL(s, 1));
			cJSON_AddStringToObject(j, "key_prefix", COL(s, 2));
			cJSON_AddNumberToObject(j, "created_at", (double)sqlite3_column_int64(s, 3));
			cJSON_AddNumberToObject(j, "expires_at", (double)exp);
			cJSON_AddBoolToObject(j, "disabled", sqlite3_column_int(s, 5));
			cJSON_AddStringToObject(j, "status", vkey_status(sqlite3_column_int(s, 5), exp, now));
			cJSON_AddNumberToObject(j, "rpm", (double)sqlite3_column_int64(s, 6));
			cJSON_AddNumberToObject(j, "tpm", (double)sqlite3_column_int64(s, 7));
			cJSON_AddNumberToObject(j, "assignments", (double)sqlite3_column_int64(s, 8));
			cJSON_AddItemToArray(arr, j);
		}
		json_print(arr);
	} else {
		struct table t;
		table_init(&t, 9, "ID", "NAME", "PREFIX", "STATUS", "EXPIRES", "RPM", "TPM", "ASSIGNMENTS", "CREATED");
		while (sqlite3_step(s) == SQLITE_ROW) {
			char pre[32], exp[32], created[32], rpm[24], tpm[24];
			int64_t e = sqlite3_column_int64(s, 4);
			snprintf(pre, sizeof pre, "%s…", COL(s, 2));
			if (e)
				fmt_time(e, exp);
			else
				snprintf(exp, sizeof exp, "never");
			fmt_time(sqlite3_column_int64(s, 3), created);
			snprintf(rpm, sizeof rpm, "%lld", (long long)sqlite3_column_int64(s, 6));
			snprintf(tpm, sizeof tpm, "%lld", (long long)sqlite3_column_int64(s, 7));
			table_row(&t, COL(s, 0), COL(s, 1), pre, vkey_status(sqlite3_column_int(s, 5), e, now), exp,
				  strcmp(rpm, "0") ? rpm : NULL, strcmp(tpm, "0") ? tpm : NULL, COL(s, 8), created);
		}
		table_print(&t);
	}
	sqlite3_finalize(s);
	return 0;
}

/* Runs one UPDATE/DELETE on the key named by argv's single positional. */
static int vkey_simple(struct admin *a, int argc, char **argv, const char *cmd, const char *usage,
		       const char *sql, const char *verb)
{
	struct opts o;
	char id[ADMIN_ID_MAX];
	int rc = opts_parse(a, cmd, usage, NULL, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1)
		return admin_err(EXIT_USAGE, "%s: missing ID|NAME; see '%s %s --help'", cmd, ADMIN_PROG, cmd);
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) || (rc = admin_resolve(a, "virtual_keys", o.pos[0], id)))
		goto out;
	if (!(rc = admin_exec_id(a, sql, id, "virtual key")))
		rc = admin_finish(a, id, verb);
out:
	admin_rollback(a);
	return rc;
}

static int vkey_revoke(struct admin *a, int argc, char **argv)
{
	return vkey_simple(a, argc, argv, "vkey revoke", usage_revoke,
			   "UPDATE virtual_keys SET disabled = 1 WHERE id = ?", "disabled");
}

static int vkey_enable(struct admin *a, int argc, char **argv)
{
	return vkey_simple(a, argc, argv, "vkey enable", usage_enable,
			   "UPDATE virtual_keys SET disabled = 0 WHERE id = ?", "enabled");
}

static int vkey_rm(struct admin *a, int argc, char **argv)
{
	return vkey_simple(a, argc, argv, "vkey rm", usage_rm, "DELETE FROM virtual_keys WHERE id = ?", "deleted");
}

static int vkey_update(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"rpm", OPT_VALUE}, {"tpm", OPT_VALUE}, {"expires", OPT_VALUE}, {NULL, 0}};
	const char *cmd = "vkey update";
	struct opts o;
	char id[ADMIN_ID_MAX];
	int64_t rpm = 0, tpm = 0, exp = 0;
	int rc = opts_parse(a, cmd, usage_update, defs, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1)
		return admin_err(EXIT_USAGE, "%s: missing ID|NAME; see '%s %s --help'", cmd, ADMIN_PROG, cmd);
	if (!opt_has(&o, "rpm") && !opt_has(&o, "tpm") && !opt_has(&o, "expires"))
		return admin_err(EXIT_USAGE, "%s: nothing to update; see '%s %s --help'", cmd, ADMIN_PROG, cmd);
	if ((opt_has(&o, "rpm") && (rc = parse_limit("rpm", opt_get(&o, "rpm"), 1, &rpm))) ||
	    (opt_has(&o, "tpm") && (rc = parse_limit("tpm", opt_get(&o, "tpm"), 1, &tpm))) ||
	    (opt_has(&o, "expires") && (rc = parse_expires(opt_get(&o, "expires"), 1, wall_s(), &exp))))
		return rc;
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) || (rc = admin_resolve(a, "virtual_keys", o.pos[0], id)))
		goto out;
	sqlite3_stmt *s = NULL;
	sqlite3_prepare_v2(store_db(a->st),
			   "UPDATE virtual_keys SET rpm = coalesce(?2, rpm), tpm = coalesce(?3, tpm),"
			   " expires_at = coalesce(?4, expires_at) WHERE id = ?1",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (opt_has(&o, "rpm"))
		sqlite3_bind_int64(s, 2, rpm);
	if (opt_has(&o, "tpm"))
		sqlite3_bind_int64(s, 3, tpm);
	if (opt_has(&o, "expires"))
		sqlite3_bind_int64(s, 4, exp);
	int r = sqlite3_step(s);
	sqlite3_finalize(s);
	if (r != SQLITE_DONE) {
		rc = admin_err(EXIT_RUNTIME, "cannot update the virtual key: %s", sqlite3_errmsg(store_db(a->st)));
		goto out;
	}
	rc = admin_finish(a, id, "updated");
out:
	admin_rollback(a);
	return rc;
}

int cmd_vkey(struct admin *a, int argc, char **argv)
{
	static const struct subcmd subs[] = {
		{"add", vkey_add},       {"list", vkey_list},     {"update", vkey_update}, {"revoke", vkey_revoke},
		{"enable", vkey_enable}, {"rm", vkey_rm},         {NULL, NULL},
	};
	return admin_dispatch(a, "vkey", usage_group, subs, argc, argv);
}
