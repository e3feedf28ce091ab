/* cmd_assign.c - `llmproxy-admin assign` and `assignment list|unassign`. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHT_MAX 1000000

static const char usage_assign[] =
	"usage: llmproxy-admin assign --vkey-id ID|NAME --model-id ID|NAME --alias A\n"
	"           [--tps N] [--rpm N] [--tpm N] [--burst N] [--weight W] [--json]\n"
	"\nLets a virtual key use a provider model under an alias (the \"model\" a\n"
	"client sends) and prints the assignment id (asg-...).  Several models under\n"
	"one alias are balanced by --weight and used as fallbacks.\n"
	"  --tps    requests per second (token bucket refill; may be fractional)\n"
	"  --burst  bucket capacity (default: same as --tps)\n"
	"  --rpm, --tpm  requests / tokens per minute for this assignment\n"
	"  --weight share of traffic among the alias's models (>= 1, default 1)\n";
static const char usage_group[] =
	"usage: llmproxy-admin assignment <subcommand> ...\n"
	"\n"
	"  list      [--vkey-id ID|NAME]\n"
	"  unassign  ID\n"
	"\nAssignments are created with 'llmproxy-admin assign'.\n";
static const char usage_list[] = "usage: llmproxy-admin assignment list [--vkey-id ID|NAME] [--json]\n";
static const char usage_unassign[] = "usage: llmproxy-admin assignment unassign ID\n";

int cmd_assign(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"vkey-id", OPT_VALUE}, {"model-id", OPT_VALUE}, {"alias", OPT_VALUE},
					     {"tps", OPT_VALUE},     {"rpm", OPT_VALUE},      {"tpm", OPT_VALUE},
					     {"burst", OPT_VALUE},   {"weight", OPT_VALUE},   {NULL, 0}};
	const char *cmd = "assign";
	struct opts o;
	char vkey[ADMIN_ID_MAX], model[ADMIN_ID_MAX], id[ADMIN_ID_MAX];
	double tps = 0;
	int64_t rpm = 0, tpm = 0, burst = 0, weight = 1;
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, cmd, usage_assign, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = opt_require(&o, cmd, "vkey-id")) || (rc = opt_require(&o, cmd, "model-id")) ||
	    (rc = opt_require(&o, cmd, "alias")) || (rc = check_alias(opt_get(&o, "alias"))))
		goto out;
	if ((opt_has(&o, "tps") && (rc = parse_rate("tps", opt_get(&o, "tps"), &tps))) ||
	    (opt_has(&o, "rpm") && (rc = parse_limit("rpm", opt_get(&o, "rpm"), 0, &rpm))) ||
	    (opt_has(&o, "tpm") && (rc = parse_limit("tpm", opt_get(&o, "tpm"), 0, &tpm))) ||
	    (opt_has(&o, "burst") && (rc = parse_limit("burst", opt_get(&o, "burst"), 0, &burst))) ||
	    (opt_has(&o, "weight") && (rc = parse_limit("weight", opt_get(&o, "weight"), 0, &weight))))
		goto out;
	if (weight > WEIGHT_MAX) {
		rc = admin_err(EXIT_USAGE, "--weight must be at most %d", WEIGHT_MAX);
		goto out;
	}
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) ||
	    (rc = admin_resolve(a, "virtual_keys", opt_get(&o, "vkey-id"), vkey)) ||
	    (rc = admin_resolve(a, "provider_models", opt_get(&o, "model-id"), model)))
		goto out;
	{
		sqlite3_stmt *q = NULL;
		sqlite3_prepare_v2(store_db(a->st),
				   "SELECT id FROM assignments WHERE vkey_id = ? AND model_id = ? AND alias = ?", -1, &q, NULL);
		sqlite3_bind_text(q, 1, vkey, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, model, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, opt_get(&o, "alias"), -1, SQLITE_STATIC);
		int dup = sqlite3_step(q) == SQLITE_ROW;
		if (dup)
			rc = admin_err(EXIT_RUNTIME, "virtual key %s already has model %s under alias '%s' (%s)", vkey,
				       model, opt_get(&o, "alias"), COL(q, 0));
		sqlite3_finalize(q);
		if (dup)
			goto out;
	}
	admin_new_id("asg-", id);
	sqlite3_prepare_v2(store_db(a->st),
			   "INSERT INTO assignments(id, vkey_id, model_id, alias, rps, rpm, tpm, burst, weight, created_at)"
			   " VALUES (?,?,?,?,?,?,?,?,?,?)",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, vkey, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, model, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, opt_get(&o, "alias"), -1, SQLITE_STATIC);
	sqlite3_bind_double(s, 5, tps);
	sqlite3_bind_int64(s, 6, rpm);
	sqlite3_bind_int64(s, 7, tpm);
	sqlite3_bind_int64(s, 8, burst);
	sqlite3_bind_int64(s, 9, weight);
	sqlite3_bind_int64(s, 10, wall_s());
	if (sqlite3_step(s) != SQLITE_DONE) {
		rc = admin_err(EXIT_RUNTIME, "cannot add the assignment: %s", sqlite3_errmsg(store_db(a->st)));
		goto out;
	}
	if ((rc = admin_commit(a)))
		goto out;
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", id);
		cJSON_AddStringToObject(j, "vkey_id", vkey);
		cJSON_AddStringToObject(j, "model_id", model);
		cJSON_AddStringToObject(j, "alias", opt_get(&o, "alias"));
		cJSON_AddNumberToObject(j, "tps", tps);
		cJSON_AddNumberToObject(j, "rpm", (double)rpm);
		cJSON_AddNumberToObject(j, "tpm", (double)tpm);
		cJSON_AddNumberToObject(j, "burst", (double)burst);
		cJSON_AddNumberToObject(j, "weight", (double)weight);
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

static int asg_list(struct admin *a, int argc, char **argv)
{
	static const struct optdef defs[] = {{"vkey-id", OPT_VALUE}, {NULL, 0}};
	struct opts o;
	char vkey[ADMIN_ID_MAX] = "";
	sqlite3_stmt *s = NULL;
	int rc = opts_parse(a, "assignment list", usage_list, defs, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		goto out;
	if (opt_has(&o, "vkey-id") && (rc = admin_resolve(a, "virtual_keys", opt_get(&o, "vkey-id"), vkey)))
		goto out;
	sqlite3_prepare_v2(store_db(a->st),
			   "SELECT a.id, a.vkey_id, v.name, a.alias, a.model_id, m.name, c.name, c.provider,"
			   " a.rps, a.rpm, a.tpm, a.burst, a.weight, a.created_at"
			   " FROM assignments a JOIN virtual_keys v ON v.id = a.vkey_id"
			   " JOIN provider_models m ON m.id = a.model_id JOIN connections c ON c.id = m.conn_id"
			   " WHERE ?1 = '' OR a.vkey_id = ?1 ORDER BY a.rowid",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, vkey, -1, SQLITE_STATIC);
	if (a->json) {
		cJSON *arr = cJSON_CreateArray();
		while (sqlite3_step(s) == SQLITE_ROW) {
			cJSON *j = cJSON_CreateObject();
			cJSON_AddStringToObject(j, "id", COL(s, 0));
			cJSON_AddStringToObject(j, "vkey_id", COL(s, 1));
			cJSON_AddStringToObject(j, "vkey", COL(s, 2));
			cJSON_AddStringToObject(j, "alias", COL(s, 3));
			cJSON_AddStringToObject(j, "model_id", COL(s, 4));
			cJSON_AddStringToObject(j, "model", COL(s, 5));
			cJSON_AddStringToObject(j, "connection", COL(s, 6));
			cJSON_AddStringToObject(j, "provider", COL(s, 7));
			cJSON_AddNumberToObject(j, "tps", sqlite3_column_double(s, 8));
			cJSON_AddNumberToObject(j, "rpm", (double)sqlite3_column_int64(s, 9));
			cJSON_AddNumberToObject(j, "tpm", (double)sqlite3_column_int64(s, 10));
			cJSON_AddNumberToObject(j, "burst", (double)sqlite3_column_int64(s, 11));
			cJSON_AddNumberToObject(j, "weight", (double)sqlite3_column_int64(s, 12));
			cJSON_AddNumberToObject(j, "created_at", (double)sqlite3_column_int64(s, 13));
			cJSON_AddItemToArray(arr, j);
		}
		json_print(arr);
	} else {
		struct table t;
		table_init(&t, 11, "ID", "VKEY", "ALIAS", "MODEL", "CONNECTION", "PROVIDER", "TPS", "RPM", "TPM", "BURST",
			   "WEIGHT");
		while (sqlite3_step(s) == SQLITE_ROW) {
			char tps[32];
			double r = sqlite3_column_double(s, 8);
			snprintf(tps, sizeof tps, "%g", r);
			const char *z[3];
			for (int i = 0; i < 3; i++)
				z[i] = strcmp(COL(s, 9 + i), "0") ? COL(s, 9 + i) : NULL;
			table_row(&t, COL(s, 0), COL(s, 2), COL(s, 3), COL(s, 5), COL(s, 6), COL(s, 7), r > 0 ? tps : NULL,
				  z[0], z[1], z[2], COL(s, 12));
		}
		table_print(&t);
	}
out:
	sqlite3_finalize(s);
	opts_free(&o);
	return rc;
}

static int asg_unassign(struct admin *a, int argc, char **argv)
{
	struct opts o;
	char id[ADMIN_ID_MAX];
	int rc = opts_parse(a, "assignment unassign", usage_unassign, NULL, 1, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if (o.npos != 1)
		return admin_err(EXIT_USAGE, "assignment unassign: missing ID; see '%s assignment unassign --help'",
				 ADMIN_PROG);
	if ((rc = admin_open(a)) || (rc = admin_begin(a)) || (rc = admin_resolve(a, "assignments", o.pos[0], id)))
		goto out;
	if (!(rc = admin_exec_id(a, "DELETE FROM assignments WHERE id = ?1", id, "assignment")))
		rc = admin_finish(a, id, "deleted");
out:
	admin_rollback(a);
	return rc;
}

int cmd_assignment(struct admin *a, int argc, char **argv)
{
	static const struct subcmd subs[] = {
		{"list", asg_list}, {"unassign", asg_unassign}, {"rm", asg_unassign}, {NULL, NULL}};
	return admin_dispatch(a, "assignment", usage_group, subs, argc, argv);
}
