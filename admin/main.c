/* main.c - llmproxy-admin (also installed as llm-proxy): global options
 * and dispatch to the command modules. */
#include <sys/stat.h>

#include "admin.h"
#include "cmd_usage.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_main[] =
	"usage: llmproxy-admin [--home DIR] [--db PATH] [--master-key-file PATH] [--json]\n"
	"                      <command> [args]\n"
	"\n"
	"Commands:\n"
	"  init                          create the home directory, master key and database\n"
	"  connection add|list|show|update|rm   provider connections and credentials\n"
	"  model add|list|rm             provider models of a connection\n"
	"  vkey add|list|update|revoke|enable|rm   virtual keys handed to clients\n"
	"  assign                        let a virtual key use a model under an alias\n"
	"  assignment list|unassign      list or remove assignments\n"
	"  rotate-master-key             re-encrypt every credential under a new master key\n"
	"  usage                         requests and tokens per key and alias\n"
	"  serve                         run limiterd and the proxy without systemd\n"
	"\n"
	"State: --home, else $LLMPROXY_HOME, else $XDG_DATA_HOME/llmproxy, else\n"
	"~/.local/share/llmproxy; it holds llmproxy.db and master.key.  --db\n"
	"($LLMPROXY_DB) and --master-key-file ($LLMPROXY_MASTER_KEY_FILE,\n"
	"$CREDENTIALS_DIRECTORY/master-key) override the parts.  Global options may\n"
	"also follow the command.  Every command has --help.\n";

/* `usage` belongs to another module with its own parser: take the global
 * options out of its argv (re-adding --json), open the store, hand over. */
static int run_usage(struct admin *a, int argc, char **argv)
{
	char **v = xcalloc((size_t)argc + 2, sizeof *v);
	int n = 0, rc, help = 0;
	v[n++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		const char **slot = NULL;
		if (strcmp(s, "--json") == 0) {
			a->json = 1;
			continue;
		}
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)
			help = 1;
		if (strcmp(s, "--home") == 0)
			slot = &a->opt_home;
		else if (strcmp(s, "--db") == 0)
			slot = &a->opt_db;
		else if (strcmp(s, "--master-key-file") == 0)
			slot = &a->opt_key;
		if (slot && i + 1 < argc) {
			*slot = argv[++i];
			continue;
		}
		v[n++] = argv[i];
	}
	if (a->json)
		v[n++] = "--json";
	v[n] = NULL;
	if (!help && (rc = admin_open(a))) {
		free(v);
		return rc;
	}
	rc = cmd_usage(a->st, n, v);
	free(v);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct subcmd cmds[] = {
		{"init", cmd_init},
		{"connection", cmd_connection},
		{"model", cmd_model},
		{"vkey", cmd_vkey},
		{"assign", cmd_assign},
		{"assignment", cmd_assignment},
		{"rotate-master-key", cmd_rotate},
		{"serve", cmd_serve},
		{NULL, NULL},
	};
	struct admin a;
	int i, rc;
	/* the store and everything beside it is private to its owner */
	umask(077);

	log_set_prog(ADMIN_PROG);
	memset(&a, 0, sizeof a);
	for (i = 1; i < argc; i++) {
		const char *s = argv[i];
		const char **slot = NULL;
		const char *val = NULL;
		if (s[0] != '-')
			break;
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			fputs(usage_main, stdout);
			return 0;
		}
		if (strcmp(s, "--json") == 0) {
			a.json = 1;
			continue;
		}
		const char *eq = strchr(s, '=');
		size_t nl = eq ? (size_t)(eq - s) : strlen(s);
		if (nl == 6 && strncmp(s, "--home", 6) == 0)
			slot = &a.opt_home;
		else if (nl == 4 && strncmp(s, "--db", 4) == 0)
			slot = &a.opt_db;
		else if (nl == 17 && strncmp(s, "--master-key-file", 17) == 0)
			slot = &a.opt_key;
		if (!slot)
			return admin_err(EXIT_USAGE, "unknown option '%.60s'; see '%s --help'", s, ADMIN_PROG);
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				return admin_err(EXIT_USAGE, "option %s needs a value", s);
			val = argv[++i];
		}
		*slot = val;
	}
	if (i >= argc)
		return admin_err(EXIT_USAGE, "missing command; see '%s --help'", ADMIN_PROG);
	if (strcmp(argv[i], "help") == 0) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (strcmp(argv[i], "usage") == 0) {
		rc = run_usage(&a, argc - i, argv + i);
		admin_close(&a);
		return rc;
	}
	rc = -1;
	for (const struct subcmd *c = cmds; c->name; c++)
		if (strcmp(c->name, argv[i]) == 0) {
			rc = c->fn(&a, argc - i, argv + i);
			break;
		}
	if (rc == -1)
		rc = admin_err(EXIT_USAGE, "unknown command '%.60s'; see '%s --help'", argv[i], ADMIN_PROG);
	admin_close(&a);
	return rc;
}
