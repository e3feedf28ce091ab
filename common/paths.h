/* paths.h - where the state lives (README "State location").
 *
 * One home directory holds llmproxy.db and master.key.  Each part is chosen
 * in this order (first hit wins):
 *   home: --home, $LLMPROXY_HOME, $XDG_DATA_HOME/llmproxy (absolute only),
 *         $HOME/.local/share/llmproxy (HOME unset: the passwd entry's dir).
 *         root gets the same HOME rule (/root/.local/share/llmproxy); system
 *         installs pass --home or LLMPROXY_HOME (the systemd units do).
 *   db:   --db, $LLMPROXY_DB, <home>/llmproxy.db
 *   key:  --master-key-file, $LLMPROXY_MASTER_KEY_FILE,
 *         $CREDENTIALS_DIRECTORY/master-key (only if that file exists),
 *         <home>/master.key
 */
#ifndef LLMPROXY_PATHS_H
#define LLMPROXY_PATHS_H

#include <stddef.h>

#define PATHS_MAX 4096

struct paths {
	char home[PATHS_MAX];
	char db[PATHS_MAX];
	char master_key[PATHS_MAX];
};

/* Fills p following the order above; opt_* may be NULL.  0 ok, <0 with
 * one line in err (a path too long, no home directory at all). */
int paths_resolve(struct paths *p, const char *opt_home, const char *opt_db, const char *opt_key,
		  char *err, size_t errlen);

/* Creates what is missing, where that is safe: the home directory (0700,
 * parents too) when the db or key lives in it, the master key file (0600,
 * 32 random bytes) and an empty, migrated database.  Says so on stderr
 * ("llmproxy-admin: created master key at ...").  Refuses to invent a new
 * key for a database that already exists.  created_* (may be NULL) are set
 * to 1 for what was created.  0 ok, <0 with err filled. */
int paths_ensure_home(const struct paths *p, int *created_key, int *created_db, char *err,
		      size_t errlen);

/* Refuses a master key file that is not a regular file or is readable or
 * writable by group or others.  0 ok, <0 with err filled. */
int paths_check_key_file(const char *path, char *err, size_t errlen);

/* mkdir -p with mode for every directory it creates.  0 ok, <0 errno set. */
int paths_mkdirs(const char *dir, unsigned mode);

#endif
