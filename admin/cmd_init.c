/* cmd_init.c - `llmproxy-admin init` and `rotate-master-key`. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_TRIES 100

static const char usage_init[] =
	"usage: llmproxy-admin init [--home DIR] [--db PATH] [--master-key-file PATH] [--json]\n"
	"\nCreates the home directory (0700), the master key file (0600, 32 random\n"
	"bytes) and the database, where missing, and prints where they are.\n"
	"Running it again changes nothing.\n";

static const char usage_rotate[] =
	"usage: llmproxy-admin rotate-master-key [--json]\n"
	"\nGenerates a new master key, re-encrypts every stored credential with it in\n"
	"one transaction, keeps the old key file as <key>.bak-<UTC time> and puts\n"
	"the new one in place.  On any failure nothing changes.\n";

int cmd_init(struct admin *a, int argc, char **argv)
{
	struct opts o;
	int rc = opts_parse(a, "init", usage_init, NULL, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		return rc;
	if (!a->created_key && !a->created_db)
		fprintf(stderr, ADMIN_PROG ": already initialised\n");
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "home", a->paths.home);
		cJSON_AddStringToObject(j, "db", a->paths.db);
		cJSON_AddStringToObject(j, "master_key_file", a->paths.master_key);
		cJSON_AddBoolToObject(j, "created_key", a->created_key);
		cJSON_AddBoolToObject(j, "created_db", a->created_db);
		cJSON_AddNumberToObject(j, "schema_version", store_schema_version(a->st));
		json_print(j);
	} else {
		printf("home:        %s\n", a->paths.home);
		printf("database:    %s\n", a->paths.db);
		printf("master key:  %s\n", a->paths.master_key);
	}
	return 0;
}

static void fsync_dir_of(const char *path)
{
	char tmp[PATHS_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int cmd_rotate(struct admin *a, int argc, char **argv)
{
	struct opts o;
	char newpath[PATHS_MAX + 8], bak[PATHS_MAX + 64], err[1024];
	unsigned char fresh[MASTER_KEY_BYTES];
	int rc = opts_parse(a, "rotate-master-key", usage_rotate, NULL, 0, argc, argv, &o);
	if (rc)
		return OPTS_RETURN(rc);
	if ((rc = admin_open(a)))
		return rc;
	const char *key = a->paths.master_key;
	snprintf(newpath, sizeof newpath, "%s.new", key);
	if (access(newpath, F_OK) == 0)
		return admin_err(EXIT_RUNTIME,
				 "%s exists (left by an interrupted rotation?); check which key the database uses, then remove it",
				 newpath);
	if (vault_create_master_key(newpath, fresh, err, sizeof err) < 0)
		return admin_err(EXIT_RUNTIME, "%s; nothing changed", err);
	if (vault_rotate(a->st, a->master, fresh, err, sizeof err) < 0) {
		unlink(newpath);
		wipe(fresh, sizeof fresh);
		return admin_err(EXIT_RUNTIME, "%s", err);
	}
	wipe(fresh, sizeof fresh);

	/* The database now needs the new key.  Keep the old file under a
	 * backup name (hard link, so master.key never disappears), then
	 * atomically replace master.key with the new one. */
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
	int linked = -1;
	for (int i = 0; i < BACKUP_TRIES; i++) {
		if (i == 0)
			snprintf(bak, sizeof bak, "%s.bak-%s", key, stamp);
		else
			snprintf(bak, sizeof bak, "%s.bak-%s-%d", key, stamp, i);
		linked = link(key, bak);
		if (linked == 0 || errno != EEXIST)
			break;
	}
	if (linked < 0 && rename(key, bak) < 0)
		return admin_err(EXIT_RUNTIME,
				 "credentials were re-encrypted, but keeping the old key as %s failed (%s); the new key is %s: move it to %s",
				 bak, strerror(errno), newpath, key);
	if (rename(newpath, key) < 0)
		return admin_err(EXIT_RUNTIME,
				 "credentials were re-encrypted, but installing the new key failed (%s); move %s to %s",
				 strerror(errno), newpath, key);
	fsync_dir_of(key);
	fprintf(stderr, ADMIN_PROG ": master key rotated; the old key is kept at %s\n", bak);
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "master_key_file", key);
		cJSON_AddStringToObject(j, "backup", bak);
		json_print(j);
	}
	return 0;
}
