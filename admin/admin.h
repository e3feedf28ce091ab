/* admin.h - what the llmproxy-admin command modules share: the context,
 * option parsing, one-line errors, opening the store, validation and
 * output helpers. */
#ifndef LLMPROXY_ADMIN_H
#define LLMPROXY_ADMIN_H

#include "paths.h"
#include "store.h"
#include "vault.h"

#include <stddef.h>
#include <stdint.h>

#define ADMIN_PROG "llmproxy-admin"
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

#define ADMIN_ID_RANDOM 16      /* conn-XXXXXXXXXXXXXXXX */
#define ADMIN_ID_MAX 64
#define ADMIN_NAME_MAX 128
#define ADMIN_REMOTE_MAX 256
#define ADMIN_SECRET_MAX 65536   /* a service-account JSON is ~2.4 KiB */
#define ADMIN_VKEY_RANDOM 40     /* generated keys: "vk-" + 40 alnum */
#define ADMIN_VKEY_MIN 8
#define ADMIN_VKEY_MAX 256
#define ADMIN_LIMIT_MAX 1000000000000LL
#define ADMIN_OPTION_KEY_MAX 64
#define ADMIN_OPTION_VAL_MAX 4096

struct admin {
	const char *opt_home, *opt_db, *opt_key;
	int json;
	struct paths paths;
	struct store *st;
	unsigned char master[MASTER_KEY_BYTES];
	unsigned char hkey[32]; /* virtual-key hashing key */
	int created_key, created_db;
};

/* Prints "llmproxy-admin: <message>" on stderr (one line) and returns code. */
int admin_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resolves the paths, creates home / key / db where safe, checks the key
 * file's mode, opens the store read-write, checks the master key and loads
 * the virtual-key hashing key.  0 ok, else an exit status (message printed). */
int admin_open(struct admin *a);
void admin_close(struct admin *a);

/* Transactions: one per command.  begin/commit return 0 or an exit status. */
int admin_begin(struct admin *a);
int admin_commit(struct admin *a);
void admin_rollback(struct admin *a);

/* Option parsing.  arg: OPT_FLAG, OPT_VALUE, OPT_LIST (repeatable value). */
enum { OPT_FLAG = 0, OPT_VALUE = 1, OPT_LIST = 2 };
struct optdef {
	const char *name; /* without "--" */
	int arg;
};
#define OPTS_MAX 24
#define OPTS_POS_MAX 4
struct opts {
	const struct optdef *defs;
	size_t ndefs;
	const char *val[OPTS_MAX];
	int seen[OPTS_MAX];
	const char **list[OPTS_MAX];
	size_t nlist[OPTS_MAX];
	char *pos[OPTS_POS_MAX];
	int npos;
};
#define OPTS_OK 0
#define OPTS_HELP (-1)
/* Parses argv[1..] (argv[0] is the command word) into o; also accepts the
 * global options (--json, --home, --db, --master-key-file) anywhere.
 * --help prints usage on stdout.  Returns OPTS_OK, OPTS_HELP or EXIT_USAGE
 * (message printed).  Free with opts_free. */
int opts_parse(struct admin *a, const char *cmd, const char *usage, const struct optdef *defs,
	       int maxpos, int argc, char **argv, struct opts *o);
void opts_free(struct opts *o);
/* The value of --name (last one for lists), or NULL when not given. */
const char *opt_get(const struct opts *o, const char *name);
int opt_has(const struct opts *o, const char *name);
/* All values of a repeatable option. */
const char **opt_list(const struct opts *o, const char *name, size_t *n);
/* EXIT_USAGE with "missing --name for 'cmd'" unless present; 0 otherwise. */
int opt_require(const struct opts *o, const char *cmd, const char *name);
/* Returns the exit status for a parse result r: 0 for help, r otherwise. */
#define OPTS_RETURN(r) ((r) == OPTS_HELP ? 0 : (r))

/* Validation: each returns 0 or EXIT_USAGE with the message printed. */
int check_name(const char *what, const char *s, size_t max);
int check_alias(const char *s);
/* Positive integer; with allow_none, "none" gives 0 (clears a limit). */
int parse_limit(const char *flag, const char *s, int allow_none, int64_t *out);
int parse_rate(const char *flag, const char *s, double *out);
/* RFC 3339 (2026-12-31T23:59:59Z, offsets, fractions) or a duration (30s,
 * 15m, 24h, 7d) from now; a past time is refused.  With allow_never,
 * "never" gives 0.  Output in unix seconds. */
int parse_expires(const char *s, int allow_never, int64_t now, int64_t *out);
/* RFC 3339 date-time (fraction and offset allowed) to unix seconds;
 * 0 ok, -1 malformed or impossible (2026-02-30). */
int parse_rfc3339(const char *s, int64_t *out);
/* http(s)://host[:port][/path]; stores a malloc'd copy without trailing
 * slashes in *out. */
int check_endpoint(const char *s, char **out);
int check_provider(const char *s, char out[16]);

/* Reads a credential: literal value, "-" (stdin) or a file; strips one
 * trailing newline.  *out is malloc'd (free_secret).  0 or exit status. */
int read_secret(const char *literal, const char *file, const char *what, char **out, size_t *len);
/* Masked display form: first 3 + "…" + last 4 when >= 12 chars, else "…". */
void secret_hint(const char *secret, size_t len, char *out, size_t cap);

/* prefix + ADMIN_ID_RANDOM random alnum chars. */
void admin_new_id(const char *prefix, char out[ADMIN_ID_MAX]);
/* Finds the id of a row by id or unique name.  table: connections,
 * virtual_keys, provider_models (name may be ambiguous there), assignments
 * (id only).  0 ok, else exit status with message. */
int admin_resolve(struct admin *a, const char *table, const char *arg, char out[ADMIN_ID_MAX]);
/* SELECT count(*) with one text parameter. */
int64_t admin_count(struct admin *a, const char *sql, const char *param);
/* Runs sql (one statement, ?1 = id) inside the open transaction; what names
 * the row in the error.  0 or EXIT_RUNTIME after reporting. */
int admin_exec_id(struct admin *a, const char *sql, const char *id, const char *what);
/* Commits and, with --json, prints {"id": id, verb: true}.  0 or an exit code. */
int admin_finish(struct admin *a, const char *id, const char *verb);

/* "2026-12-31T23:59:59Z" */
void fmt_time(int64_t unix_s, char out[32]);

/* Aligned text tables. */
struct table {
	size_t ncol, nrows, cap;
	char **cells; /* nrows * ncol, malloc'd */
};
void table_init(struct table *t, size_t ncol, ...);           /* header cells */
void table_row(struct table *t, ...);                         /* ncol const char * (NULL = "-") */
void table_print(struct table *t);                            /* prints and frees */
#define COL(s, i) ((const char *)sqlite3_column_text((s), (i)))

/* Prints a cJSON item (unformatted) and a newline on stdout, deletes it. */
struct cJSON;
void json_print(struct cJSON *j);

/* Commands: argv[0] is the command word.  Return the exit status. */
int cmd_init(struct admin *a, int argc, char **argv);
int cmd_rotate(struct admin *a, int argc, char **argv);
int cmd_connection(struct admin *a, int argc, char **argv);
int cmd_model(struct admin *a, int argc, char **argv);
int cmd_vkey(struct admin *a, int argc, char **argv);
int cmd_assign(struct admin *a, int argc, char **argv);
int cmd_assignment(struct admin *a, int argc, char **argv);
int cmd_serve(struct admin *a, int argc, char **argv);

/* Dispatches argv[1] to one of subs; usage is the group's help. */
struct subcmd {
	const char *name;
	int (*fn)(struct admin *a, int argc, char **argv);
};
int admin_dispatch(struct admin *a, const char *group, const char *usage, const struct subcmd *subs,
		   int argc, char **argv);

#endif
