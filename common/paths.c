/* paths.c - see paths.h. */
#include "paths.h"

#include "store.h"
#include "util.h"
#include "vault.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int set_path(char *dst, const char *err_what, char *err, size_t errlen, const char *fmt,
		    const char *a, const char *b)
{
	int n = snprintf(dst, PATHS_MAX, fmt, a, b ? b : "");
	if (n < 0 || n >= PATHS_MAX) {
		snprintf(err, errlen, "%s path is too long", err_what);
		return -1;
	}
	return 0;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return (v && *v) ? v : NULL;
}

int paths_resolve(struct paths *p, const char *opt_home, const char *opt_db, const char *opt_key,
		  char *err, size_t errlen)
{
	const char *v;
	memset(p, 0, sizeof *p);

	if (opt_home && *opt_home) {
		if (set_path(p->home, "home", err, errlen, "%s%s", opt_home, NULL) < 0)
			return -1;
	} else if ((v = env_nonempty("LLMPROXY_HOME"))) {
		if (set_path(p->home, "home", err, errlen, "%s%s", v, NULL) < 0)
			return -1;
	} else if ((v = env_nonempty("XDG_DATA_HOME")) && v[0] == '/') {
		if (set_path(p->home, "home", err, errlen, "%s%s", v, "/llmproxy") < 0)
			return -1;
	} else {
		const char *h = env_nonempty("HOME");
		if (!h) {
			struct passwd *pw = getpwuid(getuid());
			h = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
		}
		if (!h) {
			snprintf(err, errlen, "no home directory: pass --home DIR or set LLMPROXY_HOME");
			return -1;
		}
		if (set_path(p->home, "home", err, errlen, "%s%s", h, "/.local/share/llmproxy") < 0)
			return -1;
	}
	/* "dir/" and "dir" are the same home */
	size_t hl = strlen(p->home);
	while (hl > 1 && p->home[hl - 1] == '/')
		p->home[--hl] = 0;

	if (opt_db && *opt_db) {
		if (set_path(p->db, "database", err, errlen, "%s%s", opt_db, NULL) < 0)
			return -1;
	} else if ((v = env_nonempty("LLMPROXY_DB"))) {
		if (set_path(p->db, "database", err, errlen, "%s%s", v, NULL) < 0)
			return -1;
	} else if (set_path(p->db, "database", err, errlen, "%s%s", p->home, "/llmproxy.db") < 0) {
		return -1;
	}

	if (opt_key && *opt_key) {
		if (set_path(p->master_key, "master key", err, errlen, "%s%s", opt_key, NULL) < 0)
			return -1;
		return 0;
	}
	if ((v = env_nonempty("LLMPROXY_MASTER_KEY_FILE")))
		return set_path(p->master_key, "master key", err, errlen, "%s%s", v, NULL);
	if ((v = env_nonempty("CREDENTIALS_DIRECTORY"))) {
		char cand[PATHS_MAX];
		struct stat sb;
		if (set_path(cand, "master key", err, errlen, "%s%s", v, "/master-key") < 0)
			return -1;
		if (stat(cand, &sb) == 0) {
			memcpy(p->master_key, cand, sizeof cand);
			return 0;
		}
	}
	return set_path(p->master_key, "master key", err, errlen, "%s%s", p->home, "/master.key");
}

int paths_mkdirs(const char *dir, unsigned mode)
{
	char tmp[PATHS_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, dir, n + 1);
	for (char *s = tmp + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(tmp, (mode_t)mode) < 0 && errno != EEXIST)
		return -1;
	struct stat sb;
	if (stat(tmp, &sb) < 0)
		return -1;
	if (!S_ISDIR(sb.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* Is path directly inside dir? */
static int inside(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && path[n] == '/' && !strchr(path + n + 1, '/');
}

int paths_check_key_file(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		snprintf(err, errlen, "master key file %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "master key file %s is not a regular file", path);
		return -1;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
			 "master key file %s is accessible by group or others (mode %03o); run: chmod 600 %s",
			 path, (unsigned)(sb.st_mode & 0777), path);
		return -1;
	}
	return 0;
}

int paths_ensure_home(const struct paths *p, int *created_key, int *created_db, char *err,
		      size_t errlen)
{
	struct stat sb;
	int have_key, have_db;

	if (created_key)
		*created_key = 0;
	if (created_db)
		*created_db = 0;
	if ((inside(p->db, p->home) || inside(p->master_key, p->home)) &&
	    paths_mkdirs(p->home, 0700) < 0) {
		snprintf(err, errlen, "cannot create home directory %s: %s", p->home, strerror(errno));
		return -1;
	}
	have_key = stat(p->master_key, &sb) == 0;
	have_db = stat(p->db, &sb) == 0 && sb.st_size > 0;
	if (!have_key && have_db) {
		snprintf(err, errlen,
			 "master key file %s not found, but database %s exists; restore the key file or pass --master-key-file",
			 p->master_key, p->db);
		return -1;
	}
	if (!have_key) {
		unsigned char key[MASTER_KEY_BYTES];
		if (vault_create_master_key(p->master_key, key, err, errlen) < 0)
			return -1;
		wipe(key, sizeof key);
		fprintf(stderr, "llmproxy-admin: created master key at %s\n", p->master_key);
		if (created_key)
			*created_key = 1;
	}
	if (!have_db) {
		struct store *st = store_open(p->db, STORE_RW, err, errlen);
		if (!st)
			return -1;
		store_close(st);
		fprintf(stderr, "llmproxy-admin: created database at %s\n", p->db);
		if (created_db)
			*created_db = 1;
	}
	return 0;
}
