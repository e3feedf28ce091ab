/* store.h - the SQLite store (DESIGN.md §2): schema, migrations and the
 * queries the binaries share.  Admin opens it read-write (creating and
 * migrating it); proxyd opens it read-only; limiterd writes usage rows. */
#ifndef LLMPROXY_STORE_H
#define LLMPROXY_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 1

enum store_mode { STORE_RO = 0, STORE_RW = 1 };

struct store;

/* Opens the database at path.  STORE_RW creates the file if missing, enables
 * WAL and foreign keys and runs pending migrations.  STORE_RO never writes
 * (proxyd) and fails if the file does not exist or its schema is newer
 * than this binary understands.  On failure returns NULL and puts one line
 * into err. */
struct store *store_open(const char *path, enum store_mode mode, char *err, size_t errlen);
void store_close(struct store *st);
/* Raw handle for callers with their own queries (admin commands). */
sqlite3 *store_db(struct store *st);
/* Schema version recorded in meta (0 if none). */
int store_schema_version(struct store *st);

/* meta table: blobs by key.  get returns 0 and a malloc'd value, 1 if the
 * key is absent, <0 on error. */
int store_meta_get(struct store *st, const char *key, unsigned char **val, size_t *len);
int store_meta_set(struct store *st, const char *key, const void *val, size_t len);

/* What proxyd needs about the virtual key presented by a client. */
struct vkey_row {
	char id[48];
	char name[128];
	int disabled;
	int64_t expires_at; /* unix seconds, 0 = never */
	int64_t rpm;        /* 0 = no per-key limit */
	int64_t tpm;
};

/* Looks a key up by its keyed hash (see vault_hash_vkey).  Returns 0 and
 * fills out when found, 1 when no key has that hash, <0 on error. */
int store_find_vkey_by_hash(struct store *st, const unsigned char hash[32], struct vkey_row *out);

/* One candidate upstream for (virtual key, alias): the assignment joined
 * with its provider model and connection.  All strings are owned by the
 * route and freed by store_free_routes.  secret is the sealed credential
 * (vault_open it with conn_id as associated data). */
struct route {
	/* assignment */
	char *asg_id;
	char *alias;
	double rps;      /* --tps; 0 = unlimited */
	int64_t rpm;     /* 0 = unlimited */
	int64_t tpm;     /* 0 = unlimited */
	int64_t burst;   /* 0 = same as rps */
	int64_t weight;  /* >= 1 */
	/* provider model */
	char *model_id;
	char *model_name;
	char *remote;
	char *deployment; /* NULL when not set */
	char *kind;       /* "chat" or "embedding" */
	/* connection */
	char *conn_id;
	char *conn_name;
	char *provider;   /* openai, azure, google, gemini, vertex */
	char *endpoint;
	char *api_version; /* NULL when not set */
	char *options;     /* JSON object text, "{}" when none */
	int64_t conn_rpm;  /* 0 = unlimited */
	int64_t conn_tpm;
	unsigned char *secret;
	size_t secret_len;
};

/* All routes of vkey_id for alias, in a stable order.  Returns 0 and sets
 * *out / *n (n may be 0), <0 on error. */
int store_find_routes(struct store *st, const char *vkey_id, const char *alias,
		      struct route **out, size_t *n);
void store_free_routes(struct route *r, size_t n);

/* Distinct aliases vkey_id may use, sorted, with the assignment's creation
 * time (unix seconds) for /v1/models.  Caller frees with store_free_aliases. */
struct alias_row {
	char *alias;
	int64_t created_at;
	char *owned_by; /* provider of the first route */
};
int store_list_aliases(struct store *st, const char *vkey_id, struct alias_row **out, size_t *n);
void store_free_aliases(struct alias_row *a, size_t n);

/* One row of the usage ledger (written by limiterd only). */
struct usage_row {
	int64_t ts_ms;
	char vkey_id[48];
	char asg_id[48];
	char alias[128];
	char provider[16];
	int status;
	int64_t prompt_tokens;
	int64_t completion_tokens;
	int64_t latency_ms;
};
/* Appends rows in one transaction. 0 ok, <0 error. */
int store_append_usage(struct store *st, const struct usage_row *rows, size_t n);

#endif
