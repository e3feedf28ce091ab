/* cmd_connection.c - `llmproxy-admin connection add|list|show|update|rm`. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_group[] =
	"usage: llmproxy-admin connection <subcommand> ...\n"
	"\n"
	"  add     --name N --provider openai|azure|google|gemini|vertex --endpoint URL\n"
	"          (--api-key K | --api-key - | --api-key-file PATH) [--api-version V]\n"
	"          [--option key=value]... [--rpm N] [--tpm N]\n"
	"  list\n"
	"  show    ID|NAME\n"
	"  update  ID|NAME [--name N] [--endpoint URL] [--api-key K|-|--api-key-file PATH]\n"
	"          [--api-version V] [--option key=value]... [--rpm N|none] [--tpm N|none]\n"
	"  rm      ID|NAME [--force]\n"
	"\n"
	"Run 'llmproxy-admin connection <subcommand> --help' for details.\n";

static const char usage_add[] =
	"usage: llmproxy-admin connection add --name N --provider P --endpoint URL\n"
	"           (--api-key K | --api-key - | --api-key-file PATH)\n"
	"           [--api-version V] [--option key=value]... [--rpm N] [--tpm N] [--json]\n"
	"\n"
	"Adds a provider connection and prints its id (conn-...).\n"
	"  --provider       openai, azure, google, gemini or vertex\n"
	"  --endpoint       http:// or https:// base URL (trailing slashes are dropped)\n"
	"  --api-key K      the credential; '-' reads it from standard input\n"
	"  --api-key-file   read the credential from a file (a Google service-account\n"
	"                   JSON is stored whole); one trailing newline is stripped\n"
	"  --api-version    e.g. 2024-05-01-preview for Azure\n"
	"  --option k=v     provider option, repeatable\n"
	"  --rpm, --tpm     requests / tokens per minute for the whole connection\n"
	"The credential is stored encrypted and never printed again.\n";

static const char usage_list[] =
	"usage: llmproxy-admin connection list [--json]\n"
	"\nLists connections (credentials appear only as a masked hint).\n";
static const char usage_show[] =
	"usage: llmproxy-admin connection show ID|NAME [--json]\n"
	"\nShows one connection and its models (never the credential).\n";
static const char usage_update[] =
	"usage: llmproxy-admin connection update ID|NAME [--name N] [--endpoint URL]\n"
	"           [--api-key K | --api-key - | --api-key-file PATH] [--api-version V]\n"
	"           [--option key=value]... [--rpm N|none] [--tpm N|none] [--json]\n"
	"\nChanges a connection.  --option k=v sets, --option k= removes a key;\n"
	"--api-version '' clears it; 'none' clears a limit.\n";
static const char usage_rm[] =
	"usage: llmproxy-admin connection rm ID|NAME [--force]\n"
	"\nDeletes a connection.  Refused while it has models unless --force, which\n"
	"also deletes its models and their assignments.\n";

#define CONN_OPTS                                                                            \
	{"name", OPT_VALUE}, {"provider", OPT_VALUE}, {"endpoint", OPT_VALUE},                \
		{"api-key", OPT_VALUE}, {"api-key-file", OPT_VALUE}, {"api-version", OPT_VALUE}, \
		{"option", OPT_LIST}, {"rpm", OPT_VALUE}, {"tpm", OPT_VALUE}

/* Applies --option k=v items onto obj (created when NULL).  allow_remove:
 * "k=" deletes k.  0 or EXIT_USAGE. */
static int apply_options(cJSON *obj, const char **items, size_t n, int allow_remove)
{
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(items[i], '=');
		size_t kl = eq ? (size_t)(eq - items[i]) : 0;
		if (!eq || kl == 0 || kl > ADMIN_OPTION_KEY_MAX)
			return admin_err(EXIT_USAGE, "--option must look like key=value (got '%.60s')", items[i]);
		for (size_t j = 0; j < kl; j++) {
			char c = items[i][j];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			      c == '_' || c == '-' || c == '.'))
				return admin_err(EXIT_USAGE, "--option key '%.*s' may only use letters, digits, '_', '-', '.'",
						 (int)kl, items[i]);
		}
		char key[ADMIN_OPTION_KEY_MAX + 1];
		memcpy(key, items[i], kl);
		key[kl] = 0;
		const char *val = eq + 1;
		if (!*val) {
			if (!allow_remove)
				return admin_err(EXIT_USAGE, "--option %s= has an empty value (removing a key needs 'connection update')", key);
			cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
			continue;
		}
		if (strlen(val) > ADMIN_OPTION_VAL_MAX || check_name("--option value", val, ADMIN_OPTION_VAL_MAX))
			return EXIT_USAGE;
		cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
		cJSON_AddStringToObject(obj, key, val);
	}
	return 0;
}

static int secret_source(const struct opts *o, const char **lit, const char **file)
{
	*lit = opt_get(o, "api-key");
	*file = opt_get(o, "api-key-file");
	if (*lit && *file)
		return admin_err(EXIT_USAGE, "use only one of --api-key and --api-key-file");
	return 0;
}

static int name_taken(struct admin *a, const char *name, const char *except_id)
{
	sqlite3_stmt *s = NULL;
	int taken = 0;
	sqlite3_prepare_v2(store_db(a->st), "SELECT 1 FROM connections WHERE name = ? AND id != ?", -1, &s, NULL);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, except_id ? except_id : "", -1, SQLITE_STATIC);
	taken = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return taken;
}

/* One connection as JSON (never the secret). */
static cJSON *conn_json(sqlite3_stmt *s)
{
	cJSON *j = cJSON_CreateObject();
	const char *api = (const char *)sqlite3_column_text(s, 4);
	cJSON_AddStringToObject(j, "id", (const char *)sqlite3_column_text(s, 0));
	cJSON_AddStringToObject(j, "name", (const char *)sqlite3_column_text(s, 1));
	cJSON_AddStringToObject(j, "provider", (const char *)sqlite3_column_text(s, 2));
	cJSON_AddStringToObject(j, "endpoint", (const char *)sqlite3_column_text(s, 3));
	if (api)
		cJSON_AddStringToObject(j, "api_version", api);
	else
		cJSON_AddNullToObject(j, "api_version");
	cJSON *opts = cJSON_Parse((const char *)sqlite3_column_text(s, 5));
	cJSON_AddItemToObject(j, "options", opts ? opts : cJSON_CreateObject());
	cJSON_AddStringToObject(j, "secret_hint", (const char *)sqlite3_column_text(s, 6));
	cJSON_AddNumberToObject(j, "rpm", (double)sqlite3_column_int64(s, 7));
	cJSON_AddNumberToObject(j, "tpm", (double)sqlite3_column_int64(s, 8));
	cJSON_AddNumberToObject(j, "created_at", (double)sqlite3_column_int64(s, 9));
	cJSON_AddNumberToObject(j, "models", (double)sqlite3_column_int64(s, 10));
	return j;
}

#define CONN_COLS                                                                              \
	"SELECT c.id, c.name, c.provider, c.endpoint, c.api_version, c.options, c.secret_hint,"  \
	" c.rpm, c.tpm, c.created_at, (SELECT count(*) FROM provider_models m WHERE m.conn_id = c.id)" \
	" FROM connections c"

static int conn_add(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {CONN_OPTS, {NULL, 0}};
	const char *cmd = "connection add";
	struct opts o;
	char provider[16], id[ADMIN_ID_MAX], hint[64];
	char *endpoint = NULL, *secret = NULL, *opts_text = NULL;
	unsigned char *sealed = NULL;
	size_t secret_len = 0, sealed_len = 0, nopt = 0;
	const char *lit, *file;
	int64_t rpm = 0, tpm = 0;
	cJSON *options = NULL;
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, cmd, usage_add, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);

	/* validate everything before touching the database */
	if ((rc = opt_require(&o, cmd, "name")) || (rc = opt_require(&o, cmd, "provider")) ||
	    (rc = opt_require(&o, cmd, "endpoint")))
		goto out;
	if ((rc = secret_source(&o, &lit, &file)))
		goto out;
	if (!lit && !file) {
		rc = admin_err(EXIT_USAGE, "%s: missing --api-key or --api-key-file; see '%s %s --help'", cmd,
			       ADMIN_PROG, cmd);
		goto out;
	}
	if ((rc = check_name("--name", opt_get(&o, "name"), ADMIN_NAME_MAX)) ||
	    (rc = check_provider(opt_get(&o, "provider"), provider)) ||
	    (rc = check_endpoint(opt_get(&o, "endpoint"), &endpoint)))
		goto out;
	if (opt_has(&o, "api-version") &&
	    (rc = check_name("--api-version", opt_get(&o, "api-version"), ADMIN_NAME_MAX)))
		goto out;
	if ((opt_has(&o, "rpm") && (rc = parse_limit("rpm", opt_get(&o, "rpm"), 0, &rpm))) ||
	    (opt_has(&o, "tpm") && (rc = parse_limit("tpm", opt_get(&o, "tpm"), 0, &tpm))))
		goto out;
	options = cJSON_CreateObject();
	const char **items = opt_list(&o, "option", &nopt);
	if ((rc = apply_options(options, items, nopt, 0)))
		goto out;
	if ((rc = read_secret(lit, file, "the API key", &secret, &secret_len)))
		goto out;
	secret_hint(secret, secret_len, hint, sizeof hint);

	if ((rc = admin_open(a)) || (rc = admin_begin(a)))
		goto out;
	if (name_taken(a, opt_get(&o, "name"), NULL)) {
		rc = admin_err(EXIT_RUNTIME, "a connection named '%s' already exists", opt_get(&o, "name"));
		goto out;
	}
	admin_new_id("conn-", id);
	if (vault_seal(a->master, id, secret, secret_len, &sealed, &sealed_len) < 0) {
		rc = admin_err(EXIT_RUNTIME, "cannot encrypt the credential");
		goto out;
	}
	free_secret(secret);
	secret = NULL;
	opts_text = cJSON_PrintUnformatted(options);
	sqlite3_prepare_v2(store_db(a->st),
			   "INSERT INTO connections(id, name, provider, endpoint, api_version, options, secret,"
			   " secret_hint, rpm, tpm, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, opt_get(&o, "name"), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, endpoint, -1, SQLITE_STATIC);
	if (opt_has(&o, "api-version"))
		sqlite3_bind_text(s, 5, opt_get(&o, "api-version"), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, opts_text, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 7, sealed, (int)sealed_len, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, hint, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, rpm);
	sqlite3_bind_int64(s, 10, tpm);
	sqlite3_bind_int64(s, 11, wall_s());
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = admin_err(EXIT_RUNTIME, "cannot add the connection: %s", sqlite3_errmsg(store_db(a->st)));
		goto out;
	}
	if ((rc = admin_commit(a)))
		goto out;
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", id);
		cJSON_AddStringToObject(j, "name", opt_get(&o, "name"));
		cJSON_AddStringToObject(j, "provider", provider);
		cJSON_AddStringToObject(j, "endpoint", endpoint);
		if (opt_has(&o, "api-version"))
			cJSON_AddStringToObject(j, "api_version", opt_get(&o, "api-version"));
		else
			cJSON_AddNullToObject(j, "api_version");
		cJSON_AddItemToObject(j, "options", options);
		options = NULL;
		cJSON_AddStringToObject(j, "secret_hint", hint);
		cJSON_AddNumberToObject(j, "rpm", (double)rpm);
		cJSON_AddNumberToObject(j, "tpm", (double)tpm);
		json_print(j);
	} else {
		printf("%s\n", id);
	}
out:
	admin_rollback(a);
	sqlite3_finalize(s);
	free_secret(secret);
	free(sealed);
	free(endpoint);
	free(opts_text);
	cJSON_Delete(options);
	opts_free(&o);
	return rc;
}

static int conn_list(struct admin *a, int argc, char **argv)
{
	struct opts o;
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, "connection list", usage_list, NULL, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		return rc;
	sqlite3_prepare_v2(store_db(a->st), CONN_COLS " ORDER BY c.rowid", -1, &s, NULL);
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		while (sqlite3_step(s) == SQLITE_ROW)
			cJSON_AddItemToArray(arr, conn_json(s));
		json_print(arr);
	} else {
		struct table t;
		table_init(&t, 9, "ID", "NAME", "PROVIDER", "ENDPOINT", "API_VERSION", "SECRET", "RPM", "TPM", "MODELS");
		while (sqlite3_step(s) == SQLITE_ROW) {
			char rpm[24], tpm[24], models[24];
			snprintf(rpm, sizeof rpm, "%lld", (long long)sqlite3_column_int64(s, 7));
			snprintf(tpm, sizeof tpm, "%lld", (long long)sqlite3_column_int64(s, 8));
			snprintf(models, sizeof models, "%lld", (long long)sqlite3_column_int64(s, 10));
			table_row(&t, COL(s, 0), COL(s, 1), COL(s, 2), COL(s, 3), COL(s, 4), COL(s, 6),
				  strcmp(rpm, "0") ? rpm : NULL, strcmp(tpm, "0") ? tpm : NULL, models);
		}
		table_print(&t);
	}
	sqlite3_finalize(s);
	return 0;
}

static int conn_show(struct admin *a, int argc, char **argv)
{
	struct opts o;
	char id[ADMIN_ID_MAX];
	sqlite3_stmt *s = NULL, *m = NULL;
	int rc = opts_parse(a, "connection show", usage_show, NULL, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1)
		return admin_err(EXIT_USAGE, "connection show: missing ID|NAME; see '%s connection show --help'", ADMIN_PROG);
	if ((rc = admin_open(a)) || (rc = admin_resolve(a, "connections", o.pos[0], id)))
		return rc;
	sqlite3_prepare_v2(store_db(a->st), CONN_COLS " WHERE c.id = ?", -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_prepare_v2(store_db(a->st),
			   "SELECT id, name, remote, deployment, kind FROM provider_models WHERE conn_id = ? ORDER BY rowid",
			   -1, &m, NULL);
	sqlite3_bind_text(m, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_ROW) {
		rc = admin_err(EXIT_RUNTIME, "connection %s vanished", id);
		goto out;
	}
	if (a->json) {
		cJSON *j = conn_json(s);
		cJSON *arr = cJSON_AddArrayToObject(j, "model_list");
		while (sqlite3_step(m) == SQLITE_ROW) {
			cJSON *x = cJSON_CreateObject();
			cJSON_AddStringToObject(x, "id", (const char *)sqlite3_column_text(m, 0));
			cJSON_AddStringToObject(x, "name", (const char *)sqlite3_column_text(m, 1));
			cJSON_AddStringToObject(x, "remote", (const char *)sqlite3_column_text(m, 2));
			if (sqlite3_column_text(m, 3))
				cJSON_AddStringToObject(x, "deployment", (const char *)sqlite3_column_text(m, 3));
			else
				cJSON_AddNullToObject(x, "deployment");
			cJSON_AddStringToObject(x, "kind", (const char *)sqlite3_column_text(m, 4));
			cJSON_AddItemToArray(arr, x);
		}
		json_print(j);
	} else {
		char created[32];
		const char *api = (const char *)sqlite3_column_text(s, 4);
		fmt_time(sqlite3_column_int64(s, 9), created);
		printf("id:           %s\n", sqlite3_column_text(s, 0));
		printf("name:         %s\n", sqlite3_column_text(s, 1));
		printf("provider:     %s\n", sqlite3_column_text(s, 2));
		printf("endpoint:     %s\n", sqlite3_column_text(s, 3));
		printf("api_version:  %s\n", api ? api : "-");
		printf("options:      %s\n", sqlite3_column_text(s, 5));
		printf("secret:       %s\n", sqlite3_column_text(s, 6));
		printf("rpm:          %lld\n", (long long)sqlite3_column_int64(s, 7));
		printf("tpm:          %lld\n", (long long)sqlite3_column_int64(s, 8));
		printf("created_at:   %s\n", created);
		printf("models:       %lld\n", (long long)sqlite3_column_int64(s, 10));
		while (sqlite3_step(m) == SQLITE_ROW) {
			const char *dep = (const char *)sqlite3_column_text(m, 3);
			printf("  %s  %s -> %s%s%s (%s)\n", sqlite3_column_text(m, 0), sqlite3_column_text(m, 1),
			       sqlite3_column_text(m, 2), dep ? " deployment " : "", dep ? dep : "",
			       sqlite3_column_text(m, 4));
		}
	}
out:
	sqlite3_finalize(s);
	sqlite3_finalize(m);
	opts_free(&o);
	return rc;
}

static int conn_update(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {CONN_OPTS, {NULL, 0}};
	const char *cmd = "connection update";
	struct opts o;
	char id[ADMIN_ID_MAX], hint[64];
	char *endpoint = NULL, *secret = NULL, *opts_text = NULL;
	unsigned char *sealed = NULL;
	size_t secret_len = 0, sealed_len = 0, nopt = 0;
	const char *lit, *file, *apiv;
	int64_t rpm = 0, tpm = 0;
	cJSON *options = NULL;
	sqlite3 *db;
	int rc = opts_parse(a, cmd, usage_update, defs, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1) {
		rc = admin_err(EXIT_USAGE, "%s: missing ID|NAME; see '%s %s --help'", cmd, ADMIN_PROG, cmd);
		goto out;
	}
	if (opt_has(&o, "provider")) {
		rc = admin_err(EXIT_USAGE, "%s: the provider cannot be changed; add a new connection", cmd);
		goto out;
	}
	int any = 0;
	for (size_t i = 0; i < o.ndefs; i++)
		any |= o.seen[i];
	if (!any) {
		rc = admin_err(EXIT_USAGE, "%s: nothing to update; see '%s %s --help'", cmd, ADMIN_PROG, cmd);
		goto out;
	}
	if ((rc = secret_source(&o, &lit, &file)))
		goto out;
	if (opt_has(&o, "name") && (rc = check_name("--name", opt_get(&o, "name"), ADMIN_NAME_MAX)))
		goto out;
	if (opt_has(&o, "endpoint") && (rc = check_endpoint(opt_get(&o, "endpoint"), &endpoint)))
		goto out;
	apiv = opt_get(&o, "api-version");
	if (apiv && *apiv && (rc = check_name("--api-version", apiv, ADMIN_NAME_MAX)))
		goto out;
	if ((opt_has(&o, "rpm") && (rc = parse_limit("rpm", opt_get(&o, "rpm"), 1, &rpm))) ||
	    (opt_has(&o, "tpm") && (rc = parse_limit("tpm", opt_get(&o, "tpm"), 1, &tpm))))
		goto out;
	const char **items = opt_list(&o, "option", &nopt);
	{
		/* syntax check now, the merge below needs the stored object */
		cJSON *probe = cJSON_CreateObject();
		rc = apply_options(probe, items, nopt, 1);
		cJSON_Delete(probe);
		if (rc)
			goto out;
	}
	if ((lit || file) && (rc = read_secret(lit, file, "the API key", &secret, &secret_len)))
		goto out;

	if ((rc = admin_open(a)) || (rc = admin_begin(a)) ||
	    (rc = admin_resolve(a, "connections", o.pos[0], id)))
		goto out;
	db = store_db(a->st);
	if (opt_has(&o, "name") && name_taken(a, opt_get(&o, "name"), id)) {
		rc = admin_err(EXIT_RUNTIME, "a connection named '%s' already exists", opt_get(&o, "name"));
		goto out;
	}
	{
		sqlite3_stmt *s = NULL;
		sqlite3_prepare_v2(db, "SELECT options FROM connections WHERE id = ?", -1, &s, NULL);
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			options = cJSON_Parse((const char *)sqlite3_column_text(s, 0));
		sqlite3_finalize(s);
		if (!options || !cJSON_IsObject(options)) {
			cJSON_Delete(options);
			options = cJSON_CreateObject();
		}
		apply_options(options, items, nopt, 1);
		opts_text = cJSON_PrintUnformatted(options);
	}
	if (secret) {
		secret_hint(secret, secret_len, hint, sizeof hint);
		if (vault_seal(a->master, id, secret, secret_len, &sealed, &sealed_len) < 0) {
			rc = admin_err(EXIT_RUNTIME, "cannot encrypt the credential");
			goto out;
		}
		free_secret(secret);
		secret = NULL;
	}
	{
		sqlite3_stmt *s = NULL;
		sqlite3_prepare_v2(db,
				   "UPDATE connections SET"
				   " name = coalesce(?2, name), endpoint = coalesce(?3, endpoint),"
				   " api_version = CASE WHEN ?4 IS NULL THEN api_version WHEN ?4 = '' THEN NULL ELSE ?4 END,"
				   " options = ?5, secret = coalesce(?6, secret), secret_hint = coalesce(?7, secret_hint),"
				   " rpm = coalesce(?8, rpm), tpm = coalesce(?9, tpm) WHERE id = ?1",
				   -1, &s, NULL);
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		if (opt_has(&o, "name"))
			sqlite3_bind_text(s, 2, opt_get(&o, "name"), -1, SQLITE_STATIC);
		if (endpoint)
			sqlite3_bind_text(s, 3, endpoint, -1, SQLITE_STATIC);
		if (apiv)
			sqlite3_bind_text(s, 4, apiv, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, opts_text, -1, SQLITE_STATIC);
		if (sealed) {
			sqlite3_bind_blob(s, 6, sealed, (int)sealed_len, SQLITE_STATIC);
			sqlite3_bind_text(s, 7, hint, -1, SQLITE_STATIC);
		}
		if (opt_has(&o, "rpm"))
			sqlite3_bind_int64(s, 8, rpm);
		if (opt_has(&o, "tpm"))
			sqlite3_bind_int64(s, 9, tpm);
		int r = sqlite3_step(s);
		sqlite3_finalize(s);
		if (r != SQLITE_DONE) {
			rc = admin_err(EXIT_RUNTIME, "cannot update the connection: %s", sqlite3_errmsg(db));
			goto out;
		}
	}
	rc = admin_finish(a, id, "updated");
out:
	admin_rollback(a);
	free_secret(secret);
	free(sealed);
	free(endpoint);
	free(opts_text);
	cJSON_Delete(options);
	opts_free(&o);
	return rc;
}

static int conn_rm(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"force", OPT_FLAG}, {NULL, 0}};
	struct opts o;
	char id[ADMIN_ID_MAX];
	int rc = opts_parse(a, "connection rm", usage_rm, defs, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1) {
		rc = admin_err(EXIT_USAGE, "connection rm: missing ID|NAME; see '%s connection rm --help'", ADMIN_PROG);
		goto out;
	}
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) ||
	    (rc = admin_resolve(a, "connections", o.pos[0], id)))
		goto out;
	int64_t models = admin_count(a, "SELECT count(*) FROM provider_models WHERE conn_id = ?", id);
	if (models > 0 && !opt_has(&o, "force")) {
		rc = admin_err(EXIT_RUNTIME, "connection %s still has %lld model(s); remove them first or use --force",
			       id, (long long)models);
		goto out;
	}
	if (!(rc = admin_exec_id(a, "DELETE FROM connections WHERE id = ?1", id, "connection")))
		rc = admin_finish(a, id, "deleted");
out:
	admin_rollback(a);
	opts_free(&o);
	return rc;
}

int cmd_connection(struct admin *a, int argc, char **argv)
{
	static const struct subcmd subs[] = {
		{"add", conn_add},       {"list", conn_list}, {"show", conn_show},
		{"update", conn_update}, {"rm", conn_rm},     {NULL, NULL},
	};
	return admin_dispatch(a, "connection", usage_group, subs, argc, argv);
}
