/* cmd_model.c - `llmproxy-admin model add|list|rm`. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_group[] =
	"usage: llmproxy-admin model <subcommand> ...\n"
	"\n"
	"  add   --conn-id ID|NAME --name N --remote R [--deployment D] [--kind chat|embedding]\n"
	"  list  [--conn-id ID|NAME]\n"
	"  rm    ID [--force]\n"
	"\n"
	"Run 'llmproxy-admin model <subcommand> --help' for details.\n";
static const char usage_add[] =
	"usage: llmproxy-admin model add --conn-id ID|NAME --name N --remote R\n"
	"           [--deployment D] [--kind chat|embedding] [--json]\n"
	"\nAdds a provider model to a connection and prints its id (model-...).\n"
	"  --name        the name used inside llmproxy (unique per connection)\n"
	"  --remote      the provider's model name (e.g. gpt-4-turbo-preview)\n"
	"  --deployment  the Azure deployment name\n"
	"  --kind        chat (default) or embedding\n";
static const char usage_list[] =
	"usage: llmproxy-admin model list [--conn-id ID|NAME] [--json]\n";
static const char usage_rm[] =
	"usage: llmproxy-admin model rm ID|NAME [--force]\n"
	"\nDeletes a model.  Refused while it has assignments unless --force, which\n"
	"also deletes them.\n";

static int model_add(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"conn-id", OPT_VALUE}, {"name", OPT_VALUE},
					     {"remote", OPT_VALUE},  {"deployment", OPT_VALUE},
					     {"kind", OPT_VALUE},    {NULL, 0}};
	const char *cmd = "model add";
	struct opts o;
	char conn[ADMIN_ID_MAX], id[ADMIN_ID_MAX];
	const char *kind = "chat";
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, cmd, usage_add, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = opt_require(&o, cmd, "conn-id")) || (rc = opt_require(&o, cmd, "name")) ||
	    (rc = opt_require(&o, cmd, "remote")))
		goto out;
	if ((rc = check_name("--name", opt_get(&o, "name"), ADMIN_NAME_MAX)) ||
	    (rc = check_name("--remote", opt_get(&o, "remote"), ADMIN_REMOTE_MAX)))
		goto out;
	if (opt_has(&o, "deployment") &&
	    (rc = check_name("--deployment", opt_get(&o, "deployment"), ADMIN_REMOTE_MAX)))
		goto out;
	if (opt_has(&o, "kind")) {
		kind = opt_get(&o, "kind");
		if (strcmp(kind, "chat") && strcmp(kind, "embedding")) {
			rc = admin_err(EXIT_USAGE, "--kind must be chat or embedding (got '%.40s')", kind);
			goto out;
		}
	}
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) ||
	    (rc = admin_resolve(a, "connections", opt_get(&o, "conn-id"), conn)))
		goto out;
	{
		sqlite3_stmt *q = NULL;
		sqlite3_prepare_v2(store_db(a->st), "SELECT 1 FROM provider_models WHERE conn_id = ? AND name = ?", -1,
				   &q, NULL);
		sqlite3_bind_text(q, 1, conn, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, opt_get(&o, "name"), -1, SQLITE_STATIC);
		int dup = sqlite3_step(q) == SQLITE_ROW;
		sqlite3_finalize(q);
		if (dup) {
			rc = admin_err(EXIT_RUNTIME, "connection %s already has a model named '%s'", conn,
				       opt_get(&o, "name"));
			goto out;
		}
	}
	admin_new_id("model-", id);
	sqlite3_prepare_v2(store_db(a->st),
			   "INSERT INTO provider_models(id, conn_id, name, remote, deployment, kind, created_at)"
			   " VALUES (?,?,?,?,?,?,?)",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, conn, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, opt_get(&o, "name"), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, opt_get(&o, "remote"), -1, SQLITE_STATIC);
	if (opt_has(&o, "deployment"))
		sqlite3_bind_text(s, 5, opt_get(&o, "deployment"), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, wall_s());
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = admin_err(EXIT_RUNTIME, "cannot add the model: %s", sqlite3_errmsg(store_db(a->st)));
		goto out;
	}
	if ((rc = admin_commit(a)))
		goto out;
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", id);
		cJSON_AddStringToObject(j, "conn_id", conn);
		cJSON_AddStringToObject(j, "name", opt_get(&o, "name"));
		cJSON_AddStringToObject(j, "remote", opt_get(&o, "remote"));
		if (opt_has(&o, "deployment"))
			cJSON_AddStringToObject(j, "deployment", opt_get(&o, "deployment"));
		else
			cJSON_AddNullToObject(j, "deployment");
		cJSON_AddStringToObject(j, "kind", kind);
		json_print(j);
	} else {
		printf("%s\n", id);
	}
out:
	admin_rollback(a);
	sqlite3_finalize(s);
	opts_free(&o);
	return rc;
}

static int model_list(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"conn-id", OPT_VALUE}, {NULL, 0}};
	struct opts o;
	char conn[ADMIN_ID_MAX] = "";
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, "model list", usage_list, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		goto out;
	if (opt_has(&o, "conn-id") && (rc = admin_resolve(a, "connections", opt_get(&o, "conn-id"), conn)))
		goto out;
	sqlite3_prepare_v2(store_db(a->st),
			   "SELECT m.id, m.conn_id, c.name, m.name, m.remote, m.deployment, m.kind, m.created_at,"
			   " (SELECT count(*) FROM assignments a WHERE a.model_id = m.id)"
			   " FROM provider_models m JOIN connections c ON c.id = m.conn_id"
			   " WHERE ?1 = '' OR m.conn_id = ?1 ORDER BY m.rowid",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, conn, -1, SQLITE_STATIC);
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		while (sqlite3_step(s) == SQLITE_ROW) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddStringToObject(j, "id", COL(s, 0));
			cJSON_AddStringToObject(j, "conn_id", COL(s, 1));
			cJSON_AddStringToObject(j, "connection", COL(s, 2));
			cJSON_AddStringToObject(j, "name", COL(s, 3));
			cJSON_AddStringToObject(j, "remote", COL(s, 4));
			if (COL(s, 5))
				cJSON_AddStringToObject(j, "deployment", COL(s, 5));
			else
				cJSON_AddNullToObject(j, "deployment");
			cJSON_AddStringToObject(j, "kind", COL(s, 6));
			cJSON_AddNumberToObject(j, "created_at", (double)sqlite3_column_int64(s, 7));
			cJSON_AddNumberToObject(j, "assignments", (double)sqlite3_column_int64(s, 8));
			cJSON_AddItemToArray(arr, j);
		}
		json_print(arr);
	} else {
		struct table t;
		table_init(&t, 7, "ID", "CONNECTION", "NAME", "REMOTE", "DEPLOYMENT", "KIND", "ASSIGNMENTS");
		while (sqlite3_step(s) == SQLITE_ROW)
			table_row(&t, COL(s, 0), COL(s, 2), COL(s, 3), COL(s, 4), COL(s, 5), COL(s, 6), COL(s, 8));
		table_print(&t);
	}
out:
	sqlite3_finalize(s);
	opts_free(&o);
	return rc;
}

static int model_rm(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"force", OPT_FLAG}, {NULL, 0}};
	struct opts o;
	char id[ADMIN_ID_MAX];
	int rc = opts_parse(a, "model rm", usage_rm, defs, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1) {
		rc = admin_err(EXIT_USAGE, "model rm: missing ID; see '%s model rm --help'", ADMIN_PROG);
		goto out;
	}
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) ||
	    (rc = admin_resolve(a, "provider_models", o.pos[0], id)))
		goto out;
	int64_t n = admin_count(a, "SELECT count(*) FROM assignments WHERE model_id = ?", id);
	if (n > 0 && !opt_has(&o, "force")) {
		rc = admin_err(EXIT_RUNTIME, "model %s still has %lld assignment(s); unassign them first or use --force",
			       id, (long long)n);
		goto out;
	}
	if (!(rc = admin_exec_id(a, "DELETE FROM provider_models WHERE id = ?1", id, "model")))
		rc = admin_finish(a, id, "deleted");
out:
	admin_rollback(a);
	opts_free(&o);
	return rc;
}

int cmd_model(struct admin *a, int argc, char **argv)
{
	static const struct subcmd subs[] = {
		{"add", model_add}, {"list", model_list}, {"rm", model_rm}, {NULL, NULL}};
	return admin_dispatch(a, "model", usage_group, subs, argc, argv);
}
