/* test_vault.c - sealing, tamper detection, keys, check value, rotation. */
#include "store.h"
#include "t.h"
#include "util.h"
#include "vault.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/llmproxy-test-vault-XXXXXX";

static int add_conn(struct store *st, const unsigned char m[32], const char *id, const char *secret)
{
	unsigned char *blob = NULL;
	size_t n = 0;
	sqlite3_stmt *s = NULL;
	int rc = -1;
	if (vault_seal(m, id, secret, strlen(secret), &blob, &n) < 0)
		return -1;
	sqlite3_prepare_v2(store_db(st),
			   "INSERT INTO connections(id,name,provider,endpoint,secret,created_at) VALUES (?,?, 'openai','https://x',?,1)",
			   -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, blob, (int)n, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_DONE)
		rc = 0;
	sqlite3_finalize(s);
	free(blob);
	return rc;
}

/* Opens the secret of connection id with m; returns the malloc'd text or NULL. */
static char *conn_secret(struct store *st, const unsigned char m[32], const char *id)
{
	sqlite3_stmt *s = NULL;
	char *out = NULL;
	size_t n = 0;
	sqlite3_prepare_v2(store_db(st), "SELECT secret FROM connections WHERE id=?", -1, &s, NULL);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		vault_open(m, id, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), &out, &n);
	sqlite3_finalize(s);
	return out;
}

int main(void)
{
	unsigned char m1[32], m2[32], got[32];
	char err[512] = "", path[300], kpath[300];
	unsigned char *b1 = NULL, *b2 = NULL;
	size_t l1 = 0, l2 = 0;
	char *plain = NULL;
	size_t plen = 0;
	const char *secret = "sk-proj-YourKey...";

	if (!mkdtemp(dir))
		return 1;
	random_bytes(m1, 32);
	random_bytes(m2, 32);

	T_BEGIN("vault-1 round trip");
	CHECK_INT(vault_seal(m1, "conn-1", secret, strlen(secret), &b1, &l1), 0);
	CHECK_INT(l1, 1 + 12 + strlen(secret) + 16);
	CHECK(b1 && b1[0] == 0x01);
	CHECK(b1 && memmem(b1, l1, "YourKey", 7) == NULL);
	CHECK_INT(vault_open(m1, "conn-1", b1, l1, &plain, &plen), 0);
	CHECK_STR(plain, secret);
	CHECK_INT(plen, strlen(secret));
	free_secret(plain);
	plain = NULL;
	/* empty plaintext works too */
	CHECK_INT(vault_seal(m1, "a", "", 0, &b2, &l2), 0);
	CHECK_INT(vault_open(m1, "a", b2, l2, &plain, &plen), 0);
	CHECK_INT(plen, 0);
	CHECK_STR(plain, "");
	free(plain);
	plain = NULL;
	free(b2);

	T_BEGIN("vault-2 nonce differs");
	CHECK_INT(vault_seal(m1, "conn-1", secret, strlen(secret), &b2, &l2), 0);
	CHECK_INT(l2, l1);
	CHECK(memcmp(b1 + 1, b2 + 1, 12) != 0);
	CHECK(memcmp(b1, b2, l1) != 0);
	free(b2);

	T_BEGIN("vault-3 tamper any byte");
	{
		int opened = 0;
		for (size_t i = 0; i < l1; i++) {
			for (int bit = 0; bit < 8; bit += 3) {
				b1[i] ^= (unsigned char)(1 << bit);
				if (vault_open(m1, "conn-1", b1, l1, &plain, &plen) == 0) {
					opened++;
					free(plain);
				}
				CHECK(plain == NULL || opened);
				plain = NULL;
				b1[i] ^= (unsigned char)(1 << bit);
			}
		}
		CHECK_INT(opened, 0);
		CHECK_INT(vault_open(m1, "conn-1", b1, l1 - 1, &plain, &plen), -1); /* truncated */
		CHECK(plain == NULL);
		CHECK_INT(vault_open(m1, "conn-1", b1, 10, &plain, &plen), -1);
		CHECK_INT(vault_open(m1, "conn-1", b1, l1, &plain, &plen), 0); /* restored */
		free_secret(plain);
		plain = NULL;
	}

	T_BEGIN("vault-4 wrong key, wrong aad");
	CHECK_INT(vault_open(m2, "conn-1", b1, l1, &plain, &plen), -1);
	CHECK(plain == NULL);
	CHECK_INT(vault_open(m1, "conn-2", b1, l1, &plain, &plen), -1);
	CHECK_INT(vault_open(m1, "", b1, l1, &plain, &plen), -1);
	CHECK(plain == NULL);
	free(b1);

	T_BEGIN("vault-5 vkey hash");
	{
		unsigned char k1[32], k2[32], h1[32], h2[32], h3[32];
		memset(k1, 1, 32);
		memset(k2, 2, 32);
		vault_hash_vkey(k1, "vk-front-1234", h1);
		vault_hash_vkey(k1, "vk-front-1234", h2);
		CHECK(memcmp(h1, h2, 32) == 0); /* stable */
		vault_hash_vkey(k2, "vk-front-1234", h3);
		CHECK(memcmp(h1, h3, 32) != 0); /* keyed */
		vault_hash_vkey(k1, "vk-front-1235", h3);
		CHECK(memcmp(h1, h3, 32) != 0);
		/* HMAC-SHA256 known answer (RFC 4231 test case 2): a key
		 * shorter than the block is zero-padded, so "Jefe" + 28 NULs
		 * is the same key as "Jefe". */
		unsigned char kk[32] = "Jefe";
		char hex[65];
		vault_hash_vkey(kk, "what do ya want for nothing?", h3);
		hex_encode(h3, 32, hex);
		CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	}

	T_BEGIN("vault-6 master key file");
	snprintf(kpath, sizeof kpath, "%s/master.key", dir);
	CHECK_INT(vault_create_master_key(kpath, got, err, sizeof err), 0);
	{
		struct stat sb;
		CHECK_INT(stat(kpath, &sb), 0);
		CHECK_INT(sb.st_mode & 0777, 0600);
		CHECK_INT(sb.st_size, 32);
		unsigned char again[32];
		CHECK_INT(vault_read_master_key(kpath, again, err, sizeof err), 0);
		CHECK(memcmp(again, got, 32) == 0);
		CHECK(vault_create_master_key(kpath, again, err, sizeof err) < 0); /* exists */
		char bad[300];
		snprintf(bad, sizeof bad, "%s/short.key", dir);
		int fd = open(bad, O_WRONLY | O_CREAT, 0600);
		CHECK(write(fd, "abc", 3) == 3);
		close(fd);
		CHECK(vault_read_master_key(bad, again, err, sizeof err) < 0);
		CHECK(strstr(err, "32 bytes") != NULL);
		unlink(bad);
		CHECK(vault_read_master_key("/nonexistent/k", again, err, sizeof err) < 0);
	}

	T_BEGIN("vault-7 master check and vkey hashing key");
	snprintf(path, sizeof path, "%s/v.db", dir);
	struct store *st = store_open(path, STORE_RW, err, sizeof err);
	CHECK(st != NULL);
	if (!st)
		return T_END();
	CHECK_INT(vault_check_master(st, m1, 0), 0); /* nothing recorded yet */
	CHECK_INT(vault_check_master(st, m1, 1), 0);
	CHECK_INT(vault_check_master(st, m1, 0), 0);
	CHECK_INT(vault_check_master(st, m2, 0), -1);
	CHECK_INT(vault_check_master(st, m2, 1), -1); /* create never overwrites */
	{
		unsigned char hk[32], hk2[32];
		CHECK(vault_vkey_hash_key(st, m1, 0, hk, err, sizeof err) < 0); /* absent */
		CHECK_INT(vault_vkey_hash_key(st, m1, 1, hk, err, sizeof err), 0);
		CHECK_INT(vault_vkey_hash_key(st, m1, 0, hk2, err, sizeof err), 0);
		CHECK(memcmp(hk, hk2, 32) == 0);
		CHECK(vault_vkey_hash_key(st, m2, 0, hk2, err, sizeof err) < 0);
		CHECK(strstr(err, "master key does not match") != NULL);
		unsigned char *raw = NULL;
		size_t rn = 0;
		CHECK_INT(store_meta_get(st, "vkey_hmac_key", &raw, &rn), 0);
		CHECK_INT(rn, 1 + 12 + 32 + 16);
		CHECK(raw && memmem(raw, rn, hk, 32) == NULL);
		free(raw);
	}

	T_BEGIN("vault-8 rotation");
	{
		unsigned char hk_before[32], hk_after[32];
		CHECK_INT(add_conn(st, m1, "conn-a", "key-aaaaaaaaaaaa"), 0);
		CHECK_INT(add_conn(st, m1, "conn-b", "{\"type\":\"service_account\"}"), 0);
		CHECK_INT(vault_vkey_hash_key(st, m1, 0, hk_before, err, sizeof err), 0);
		/* wrong old key: refused, nothing changes */
		CHECK(vault_rotate(st, m2, m1, err, sizeof err) < 0);
		CHECK(strstr(err, "does not match") != NULL);
		char *s = conn_secret(st, m1, "conn-a");
		CHECK_STR(s, "key-aaaaaaaaaaaa");
		free_secret(s);
		CHECK_INT(vault_check_master(st, m1, 0), 0);

		CHECK_INT(vault_rotate(st, m1, m2, err, sizeof err), 0);
		s = conn_secret(st, m2, "conn-a");
		CHECK_STR(s, "key-aaaaaaaaaaaa");
		free_secret(s);
		s = conn_secret(st, m2, "conn-b");
		CHECK_STR(s, "{\"type\":\"service_account\"}");
		free_secret(s);
		s = conn_secret(st, m1, "conn-a");
		CHECK(s == NULL);
		free_secret(s);
		CHECK_INT(vault_check_master(st, m2, 0), 0);
		CHECK_INT(vault_check_master(st, m1, 0), -1);
		CHECK_INT(vault_vkey_hash_key(st, m2, 0, hk_after, err, sizeof err), 0);
		CHECK(memcmp(hk_before, hk_after, 32) == 0); /* hashes stay valid */
		CHECK(vault_vkey_hash_key(st, m1, 0, hk_after, err, sizeof err) < 0);

		/* a corrupt row aborts the whole rotation */
		CHECK_INT(sqlite3_exec(store_db(st), "UPDATE connections SET secret = x'01020304' WHERE id='conn-b'",
				       NULL, NULL, NULL), SQLITE_OK);
		CHECK(vault_rotate(st, m2, m1, err, sizeof err) < 0);
		CHECK(strstr(err, "conn-b") != NULL);
		s = conn_secret(st, m2, "conn-a"); /* conn-a was not re-sealed */
		CHECK_STR(s, "key-aaaaaaaaaaaa");
		free_secret(s);
		CHECK_INT(vault_check_master(st, m2, 0), 0);
		CHECK_INT(vault_vkey_hash_key(st, m2, 0, hk_after, err, sizeof err), 0);
	}
	store_close(st);

	{
		char p2[320];
		unlink(path);
		snprintf(p2, sizeof p2, "%s-wal", path);
		unlink(p2);
		snprintf(p2, sizeof p2, "%s-shm", path);
		unlink(p2);
		unlink(kpath);
		rmdir(dir);
	}
	return T_END();
}
