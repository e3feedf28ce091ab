/* test_store.c - schema, migrations, constraints and the shared queries. */
#include "store.h"
#include "t.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/llmproxy-test-store-XXXXXX";
static char path[256];

static int run(struct store *st, const char *sql)
{
	return sqlite3_exec(store_db(st), sql, NULL, NULL, NULL);
}

static long long scalar(struct store *st, const char *sql)
{
	sqlite3_stmt *s = NULL;
	long long v = -999;
	if (sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void seed(struct store *st)
{
	static const char sql[] =
		"INSERT INTO connections(id,name,provider,endpoint,options,secret,secret_hint,rpm,tpm,created_at) VALUES"
		" ('conn-a','A','openai','https://a.example','{}',x'0102','…',0,0,1),"
		" ('conn-b','B','azure','https://b.example','{\"x\":\"1\"}',x'0304','…',60,1000,2);"
		"UPDATE connections SET api_version='2024-05-01-preview' WHERE id='conn-b';"
		"INSERT INTO provider_models(id,conn_id,name,remote,deployment,kind,created_at) VALUES"
		" ('model-a','conn-a','gpt','gpt-4o',NULL,'chat',1),"
		" ('model-b','conn-b','gpt','gpt-4o','dep1','chat',1),"
		" ('model-e','conn-a','emb','text-embedding-3-small',NULL,'embedding',1);"
		"INSERT INTO virtual_keys(id,name,key_hash,key_prefix,created_at,expires_at,disabled,rpm,tpm) VALUES"
		" ('vkey-1','k1',x'00000000000000000000000000000000000000000000000000000000000000aa','vk-',10,0,0,5,50),"
		" ('vkey-2','k2',x'00000000000000000000000000000000000000000000000000000000000000bb','vk-',10,99,1,0,0);"
		"INSERT INTO assignments(id,vkey_id,model_id,alias,rps,rpm,tpm,burst,weight,created_at) VALUES"
		" ('asg-z','vkey-1','model-b','gpt-4',2.5,0,0,5,3,100),"
		" ('asg-a','vkey-1','model-a','gpt-4',0,10,0,0,1,50),"
		" ('asg-e','vkey-1','model-e','embed',0,0,0,0,1,70),"
		" ('asg-o','vkey-2','model-a','other',0,0,0,0,1,80);";
	CHECK_INT(run(st, sql), SQLITE_OK);
}

int main(void)
{
	char err[512] = "";
	struct store *st;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof path, "%s/t.db", dir);

	T_BEGIN("store-1 open and schema");
	st = store_open(path, STORE_RO, err, sizeof err);
	CHECK(st == NULL); /* RO never creates */
	CHECK(strstr(err, "t.db") != NULL);
	CHECK(access(path, F_OK) != 0);
	st = store_open(path, STORE_RW, err, sizeof err);
	CHECK(st != NULL);
	if (!st)
		return T_END();
	CHECK_INT(store_schema_version(st), STORE_SCHEMA_VERSION);
	CHECK_INT(scalar(st, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	CHECK_INT(scalar(st, "PRAGMA foreign_keys"), 1);
	CHECK_INT(scalar(st, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
			     "('meta','connections','provider_models','virtual_keys','assignments','usage')"), 6);
	CHECK_INT(scalar(st, "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='usage_ts'"), 1);
	{
		sqlite3_stmt *s = NULL;
		sqlite3_prepare_v2(store_db(st), "PRAGMA journal_mode", -1, &s, NULL);
		CHECK(sqlite3_step(s) == SQLITE_ROW);
		CHECK_STR((const char *)sqlite3_column_text(s, 0), "wal");
		sqlite3_finalize(s);
	}

	T_BEGIN("store-2 meta");
	{
		unsigned char *v = NULL;
		size_t n = 0;
		CHECK_INT(store_meta_get(st, "nope", &v, &n), 1);
		CHECK_INT(store_meta_set(st, "k", "\0\1\2", 3), 0);
		CHECK_INT(store_meta_get(st, "k", &v, &n), 0);
		CHECK_INT(n, 3);
		CHECK(v && v[0] == 0 && v[1] == 1 && v[2] == 2);
		free(v);
		CHECK_INT(store_meta_set(st, "k", "xy", 2), 0);
		CHECK_INT(store_meta_get(st, "k", &v, &n), 0);
		CHECK_INT(n, 2);
		CHECK(v && memcmp(v, "xy", 2) == 0);
		free(v);
	}

	T_BEGIN("store-3 constraints");
	seed(st);
	CHECK(run(st, "INSERT INTO connections(id,name,provider,endpoint,secret,created_at) "
		      "VALUES ('conn-x','A','openai','https://x',x'00',1)") != SQLITE_OK); /* dup name */
	CHECK(run(st, "INSERT INTO connections(id,name,provider,endpoint,secret,created_at) "
		      "VALUES ('conn-y','Y','bedrock','https://x',x'00',1)") != SQLITE_OK); /* provider */
	CHECK(run(st, "INSERT INTO provider_models(id,conn_id,name,remote,created_at) "
		      "VALUES ('model-x','conn-none','m','r',1)") != SQLITE_OK); /* FK */
	CHECK(run(st, "INSERT INTO provider_models(id,conn_id,name,remote,created_at) "
		      "VALUES ('model-x','conn-a','gpt','r',1)") != SQLITE_OK); /* UNIQUE(conn,name) */
	CHECK(run(st, "INSERT INTO provider_models(id,conn_id,name,remote,kind,created_at) "
		      "VALUES ('model-x','conn-a','m2','r','image',1)") != SQLITE_OK); /* kind */
	CHECK(run(st, "INSERT INTO virtual_keys(id,name,key_hash,key_prefix,created_at) VALUES "
		      "('vkey-3','k3',x'00000000000000000000000000000000000000000000000000000000000000aa','v',1)") != SQLITE_OK);
	CHECK(run(st, "INSERT INTO assignments(id,vkey_id,model_id,alias,created_at) "
		      "VALUES ('asg-d','vkey-1','model-a','gpt-4',1)") != SQLITE_OK); /* UNIQUE */
	CHECK(run(st, "INSERT INTO assignments(id,vkey_id,model_id,alias,weight,created_at) "
		      "VALUES ('asg-w','vkey-1','model-a','w',0,1)") != SQLITE_OK); /* weight >= 1 */
	CHECK(run(st, "INSERT INTO assignments(id,vkey_id,model_id,alias,created_at) "
		      "VALUES ('asg-f','vkey-nope','model-a','q',1)") != SQLITE_OK); /* FK */
	CHECK_INT(scalar(st, "SELECT count(*) FROM assignments"), 4);

	T_BEGIN("store-4 routes");
	{
		struct route *r = NULL;
		size_t n = 0;
		CHECK_INT(store_find_routes(st, "vkey-1", "gpt-4", &r, &n), 0);
		CHECK_INT(n, 2);
		if (n == 2) {
			CHECK_STR(r[0].asg_id, "asg-z"); /* insertion order */
			CHECK_STR(r[1].asg_id, "asg-a");
			CHECK_STR(r[0].provider, "azure");
			CHECK_STR(r[0].deployment, "dep1");
			CHECK_STR(r[0].api_version, "2024-05-01-preview");
			CHECK_STR(r[0].options, "{\"x\":\"1\"}");
			CHECK_INT(r[0].conn_rpm, 60);
			CHECK_INT(r[0].conn_tpm, 1000);
			CHECK_INT(r[0].weight, 3);
			CHECK_INT(r[0].burst, 5);
			CHECK(r[0].rps > 2.49 && r[0].rps < 2.51);
			CHECK_INT(r[0].secret_len, 2);
			CHECK(r[0].secret[0] == 3 && r[0].secret[1] == 4);
			CHECK(r[1].deployment == NULL);
			CHECK(r[1].api_version == NULL);
			CHECK_STR(r[1].remote, "gpt-4o");
			CHECK_STR(r[1].kind, "chat");
			CHECK_STR(r[1].conn_name, "A");
			CHECK_INT(r[1].rpm, 10);
		}
		store_free_routes(r, n);
		CHECK_INT(store_find_routes(st, "vkey-1", "nope", &r, &n), 0);
		CHECK_INT(n, 0);
		store_free_routes(r, n);
		CHECK_INT(store_find_routes(st, "vkey-2", "gpt-4", &r, &n), 0);
		CHECK_INT(n, 0); /* alias of another key */
		store_free_routes(r, n);
	}

	T_BEGIN("store-5 aliases");
	{
		struct alias_row *a = NULL;
		size_t n = 0;
		CHECK_INT(store_list_aliases(st, "vkey-1", &a, &n), 0);
		CHECK_INT(n, 2);
		if (n == 2) {
			CHECK_STR(a[0].alias, "embed");
			CHECK_STR(a[1].alias, "gpt-4");
			CHECK_INT(a[1].created_at, 50);
			CHECK_STR(a[1].owned_by, "azure");
			CHECK_STR(a[0].owned_by, "openai");
		}
		store_free_aliases(a, n);
		CHECK_INT(store_list_aliases(st, "vkey-none", &a, &n), 0);
		CHECK_INT(n, 0);
		store_free_aliases(a, n);
	}

	T_BEGIN("store-6 vkey lookup");
	{
		unsigned char h[32] = {0};
		struct vkey_row v;
		h[31] = 0xaa;
		CHECK_INT(store_find_vkey_by_hash(st, h, &v), 0);
		CHECK_STR(v.id, "vkey-1");
		CHECK_STR(v.name, "k1");
		CHECK_INT(v.disabled, 0);
		CHECK_INT(v.rpm, 5);
		CHECK_INT(v.tpm, 50);
		h[31] = 0xbb;
		CHECK_INT(store_find_vkey_by_hash(st, h, &v), 0);
		CHECK_INT(v.disabled, 1);
		CHECK_INT(v.expires_at, 99);
		h[31] = 0xcc;
		CHECK_INT(store_find_vkey_by_hash(st, h, &v), 1);
	}

	T_BEGIN("store-7 cascade");
	CHECK_INT(run(st, "DELETE FROM provider_models WHERE id='model-e'"), SQLITE_OK);
	CHECK_INT(scalar(st, "SELECT count(*) FROM assignments WHERE id='asg-e'"), 0);
	CHECK_INT(run(st, "DELETE FROM connections WHERE id='conn-b'"), SQLITE_OK);
	CHECK_INT(scalar(st, "SELECT count(*) FROM provider_models WHERE conn_id='conn-b'"), 0);
	CHECK_INT(scalar(st, "SELECT count(*) FROM assignments WHERE id='asg-z'"), 0);
	CHECK_INT(run(st, "DELETE FROM virtual_keys WHERE id='vkey-2'"), SQLITE_OK);
	CHECK_INT(scalar(st, "SELECT count(*) FROM assignments WHERE id='asg-o'"), 0);
	CHECK_INT(scalar(st, "SELECT count(*) FROM assignments"), 1);

	T_BEGIN("store-8 usage");
	{
		struct usage_row u[3];
		memset(u, 0, sizeof u);
		for (int i = 0; i < 3; i++) {
			u[i].ts_ms = 1700000000000LL + i;
			snprintf(u[i].vkey_id, sizeof u[i].vkey_id, "vkey-1");
			snprintf(u[i].asg_id, sizeof u[i].asg_id, "asg-a");
			snprintf(u[i].alias, sizeof u[i].alias, "gpt-4");
			snprintf(u[i].provider, sizeof u[i].provider, "openai");
			u[i].status = 200;
			u[i].prompt_tokens = 10 + i;
			u[i].completion_tokens = 5;
			u[i].latency_ms = 7;
		}
		CHECK_INT(store_append_usage(st, u, 3), 0);
		CHECK_INT(store_append_usage(st, u, 2), 0);
		CHECK_INT(store_append_usage(st, u, 0), 0);
		CHECK_INT(scalar(st, "SELECT count(*) FROM usage"), 5);
		CHECK_INT(scalar(st, "SELECT sum(prompt_tokens) FROM usage"), 10 + 11 + 12 + 10 + 11);
		CHECK_INT(scalar(st, "SELECT max(ts) FROM usage"), 1700000000002LL);
	}
	store_close(st);

	T_BEGIN("store-9 reopen idempotent");
	st = store_open(path, STORE_RW, err, sizeof err);
	CHECK(st != NULL);
	if (st) {
		CHECK_INT(store_schema_version(st), STORE_SCHEMA_VERSION);
		CHECK_INT(scalar(st, "SELECT count(*) FROM usage"), 5);
		CHECK_INT(scalar(st, "SELECT count(*) FROM connections"), 1);
		store_close(st);
	}

	T_BEGIN("store-10 read-only");
	st = store_open(path, STORE_RO, err, sizeof err);
	CHECK(st != NULL);
	if (st) {
		struct route *r = NULL;
		size_t n = 0;
		CHECK(run(st, "DELETE FROM usage") != SQLITE_OK);
		CHECK(store_meta_set(st, "k", "z", 1) < 0);
		CHECK_INT(store_find_routes(st, "vkey-1", "gpt-4", &r, &n), 0);
		CHECK_INT(n, 1);
		store_free_routes(r, n);
		store_close(st);
	}

	T_BEGIN("store-11 newer schema refused");
	{
		sqlite3 *db = NULL;
		sqlite3_open(path, &db);
		sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
		sqlite3_close(db);
		err[0] = 0;
		st = store_open(path, STORE_RW, err, sizeof err);
		CHECK(st == NULL);
		CHECK(strstr(err, "newer") != NULL);
		st = store_open(path, STORE_RO, err, sizeof err);
		CHECK(st == NULL);
		CHECK(strstr(err, "99") != NULL);
	}

	T_BEGIN("store-12 RO refuses an uninitialised file");
	{
		char p2[300];
		snprintf(p2, sizeof p2, "%s/empty.db", dir);
		sqlite3 *db = NULL;
		sqlite3_open(p2, &db);
		sqlite3_exec(db, "CREATE TABLE x(y)", NULL, NULL, NULL);
		sqlite3_close(db);
		st = store_open(p2, STORE_RO, err, sizeof err);
		CHECK(st == NULL);
		CHECK(strstr(err, "schema version 0") != NULL);
		st = store_open(p2, STORE_RW, err, sizeof err);
		CHECK(st != NULL); /* RW migrates an older file forward */
		if (st) {
			CHECK_INT(store_schema_version(st), STORE_SCHEMA_VERSION);
			store_close(st);
		}
		unlink(p2);
		snprintf(p2, sizeof p2, "%s/empty.db-wal", dir);
		unlink(p2);
		snprintf(p2, sizeof p2, "%s/empty.db-shm", dir);
		unlink(p2);
	}

	{
		char p2[300];
		unlink(path);
		snprintf(p2, sizeof p2, "%s-wal", path);
		unlink(p2);
		snprintf(p2, sizeof p2, "%s-shm", path);
		unlink(p2);
		rmdir(dir);
	}
	return T_END();
}
