/* vault.c - see vault.h.
 *
 * Keys: every key is derived from the master key with HKDF-SHA256 and a
 * distinct info string, so the master key itself never keys a cipher:
 *   "llmproxy credential v1"   -> AES-256-GCM key for sealed blobs
 *   "llmproxy master check v1" -> HMAC key for the check value in meta
 * Sealed blob: 0x01 || nonce(12) || ciphertext || tag(16). */
#include "vault.h"

#include "store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_VERSION 0x01
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define SEAL_OVERHEAD (1 + NONCE_BYTES + TAG_BYTES)
#define SEAL_MAX_PLAIN (1u << 24) /* 16 MiB: far above any credential */

#define INFO_CRED "llmproxy credential v1"
#define INFO_CHECK "llmproxy master check v1"
#define CHECK_CONSTANT "llmproxy master key check"
#define META_CHECK "master_check"
#define META_VKEY "vkey_hmac_key"
#define AAD_VKEY "meta:vkey_hmac_key"

int vault_read_master_key(const char *path, unsigned char key[MASTER_KEY_BYTES], char *err,
			  size_t errlen)
{
	struct stat sb;
	/* symlinks are fine (Kubernetes secret volumes are made of them); the
	 * checks apply to the file actually opened */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open master key file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "master key file %s is not a regular file", path);
		goto fail;
	}
	if (sb.st_mode & 077) {
		snprintf(err, errlen,
			 "master key file %s is accessible by group or others (mode %03o); run: chmod 600 %s",
			 path, (unsigned)(sb.st_mode & 0777), path);
		goto fail;
	}
	if (sb.st_size != MASTER_KEY_BYTES) {
		snprintf(err, errlen, "master key file %s must hold exactly %d bytes (it has %lld)", path,
			 MASTER_KEY_BYTES, (long long)sb.st_size);
		goto fail;
	}
	size_t got = 0;
	while (got < MASTER_KEY_BYTES) {
		ssize_t r = read(fd, key + got, MASTER_KEY_BYTES - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "cannot read master key file %s", path);
			wipe(key, MASTER_KEY_BYTES);
			goto fail;
		}
		got += (size_t)r;
	}
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

int vault_create_master_key(const char *path, unsigned char key[MASTER_KEY_BYTES], char *err,
			    size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create master key file %s: %s", path, strerror(errno));
		return -1;
	}
	random_bytes(key, MASTER_KEY_BYTES);
	size_t put = 0;
	if (fchmod(fd, 0600) < 0)
		goto fail;
	while (put < MASTER_KEY_BYTES) {
		ssize_t w = write(fd, key + put, MASTER_KEY_BYTES - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto fail;
		put += (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot write master key file %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(path);
	wipe(key, MASTER_KEY_BYTES);
	return -1;
}

/* HKDF-SHA256(master, salt = none, info) -> 32 bytes. */
static int derive(const unsigned char master[MASTER_KEY_BYTES], const char *info,
		  unsigned char out[32])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = NULL;
	int rc = -1;
	OSSL_PARAM params[4];

	if (!kdf)
		return -1;
	ctx = EVP_KDF_CTX_new(kdf);
	if (!ctx)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master,
						      MASTER_KEY_BYTES);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, 32, params) == 1)
		rc = 0;
out:
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

int vault_seal(const unsigned char master[MASTER_KEY_BYTES], const char *aad, const void *plain,
	       size_t plain_len, unsigned char **out, size_t *out_len)
{
	unsigned char key[32];
	unsigned char *blob = NULL;
	EVP_CIPHER_CTX *c = NULL;
	int len, rc = -1;

	*out = NULL;
	*out_len = 0;
	if (plain_len > SEAL_MAX_PLAIN || !aad)
		return -1;
	if (derive(master, INFO_CRED, key) < 0)
		return -1;
	blob = xmalloc(SEAL_OVERHEAD + plain_len);
	blob[0] = SEAL_VERSION;
	random_bytes(blob + 1, NONCE_BYTES);
	c = EVP_CIPHER_CTX_new();
	if (!c)
		goto out;
	if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, key, blob + 1) != 1)
		goto out;
	if (EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (plain_len && EVP_EncryptUpdate(c, blob + 1 + NONCE_BYTES, &len, plain, (int)plain_len) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(c, blob + 1 + NONCE_BYTES + plain_len, &len) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, blob + 1 + NONCE_BYTES + plain_len) != 1)
		goto out;
	*out = blob;
	*out_len = SEAL_OVERHEAD + plain_len;
	blob = NULL;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	wipe(key, sizeof key);
	free(blob);
	return rc;
}

int vault_open(const unsigned char master[MASTER_KEY_BYTES], const char *aad,
	       const unsigned char *sealed, size_t sealed_len, char **out, size_t *out_len)
{
	unsigned char key[32];
	unsigned char tag[TAG_BYTES];
	char *plain = NULL;
	EVP_CIPHER_CTX *c = NULL;
	int len, rc = -1;
	size_t ct_len;

	*out = NULL;
	*out_len = 0;
	if (!sealed || !aad || sealed_len < SEAL_OVERHEAD || sealed[0] != SEAL_VERSION ||
	    sealed_len - SEAL_OVERHEAD > SEAL_MAX_PLAIN)
		return -1;
	ct_len = sealed_len - SEAL_OVERHEAD;
	if (derive(master, INFO_CRED, key) < 0)
		return -1;
	memcpy(tag, sealed + 1 + NONCE_BYTES + ct_len, TAG_BYTES);
	plain = xmalloc(ct_len + 1);
	c = EVP_CIPHER_CTX_new();
	if (!c)
		goto out;
	if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1 ||
	    EVP_DecryptInit_ex(c, NULL, NULL, key, sealed + 1) != 1)
		goto out;
	if (EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) != 1)
		goto out;
	if (ct_len && EVP_DecryptUpdate(c, (unsigned char *)plain, &len, sealed + 1 + NONCE_BYTES,
					(int)ct_len) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) != 1)
		goto out;
	if (EVP_DecryptFinal_ex(c, (unsigned char *)plain + ct_len, &len) != 1)
		goto out; /* authentication failed: wrong key, aad or tampered */
	plain[ct_len] = 0;
	*out = plain;
	*out_len = ct_len;
	plain = NULL;
	rc = 0;
out:
	EVP_CIPHER_CTX_free(c);
	wipe(key, sizeof key);
	if (plain) {
		wipe(plain, ct_len + 1);
		free(plain);
	}
	return rc;
}

void vault_hash_vkey(const unsigned char hkey[32], const char *vkey, unsigned char out[32])
{
	unsigned int n = 32;
	if (!HMAC(EVP_sha256(), hkey, 32, (const unsigned char *)vkey, strlen(vkey), out, &n))
		memset(out, 0, 32); /* cannot happen with a built-in digest */
}

/* The check value: HMAC-SHA256 of a constant under an HKDF-derived key. */
static int check_value(const unsigned char master[MASTER_KEY_BYTES], unsigned char out[32])
{
	unsigned char k[32];
	unsigned int n = 32;
	int rc = 0;
	if (derive(master, INFO_CHECK, k) < 0)
		return -1;
	if (!HMAC(EVP_sha256(), k, 32, (const unsigned char *)CHECK_CONSTANT, strlen(CHECK_CONSTANT),
		  out, &n))
		rc = -1;
	wipe(k, sizeof k);
	return rc;
}

/* A database without a check value (never opened by llmproxy-admin) passes:
 * there is nothing to compare with, and vault_open still refuses a wrong
 * key when a secret is read. */
int vault_check_master(struct store *st, const unsigned char master[MASTER_KEY_BYTES], int create)
{
	unsigned char want[32];
	unsigned char *have = NULL;
	size_t have_len = 0;
	int rc;

	if (check_value(master, want) < 0)
		return -2;
	rc = store_meta_get(st, META_CHECK, &have, &have_len);
	if (rc < 0)
		return -2;
	if (rc == 1)
		return create ? (store_meta_set(st, META_CHECK, want, sizeof want) < 0 ? -2 : 0) : 0;
	rc = (have_len == sizeof want && CRYPTO_memcmp(have, want, sizeof want) == 0) ? 0 : -1;
	free(have);
	return rc;
}

int vault_vkey_hash_key(struct store *st, const unsigned char master[MASTER_KEY_BYTES], int create,
			unsigned char hkey[32], char *err, size_t errlen)
{
	unsigned char *sealed = NULL;
	size_t sealed_len = 0;
	char *plain = NULL;
	size_t plain_len = 0;
	int rc = store_meta_get(st, META_VKEY, &sealed, &sealed_len);

	if (rc < 0) {
		snprintf(err, errlen, "cannot read the virtual-key hashing key: %s", sqlite3_errmsg(store_db(st)));
		return -1;
	}
	if (rc == 1) {
		if (!create) {
			snprintf(err, errlen, "the database has no virtual-key hashing key yet; run llmproxy-admin init");
			return -1;
		}
		/* two first commands at once: the first insert wins and both
		 * use what is stored, never a key of their own */
		random_bytes(hkey, 32);
		sqlite3_stmt *ins = NULL;
		int ok = vault_seal(master, AAD_VKEY, hkey, 32, &sealed, &sealed_len) == 0 &&
			 sqlite3_prepare_v2(store_db(st),
					    "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
					    -1, &ins, NULL) == SQLITE_OK;
		if (ok) {
			sqlite3_bind_text(ins, 1, META_VKEY, -1, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 2, sealed, (int)sealed_len, SQLITE_STATIC);
			ok = sqlite3_step(ins) == SQLITE_DONE;
		}
		sqlite3_finalize(ins);
		free(sealed);
		sealed = NULL;
		wipe(hkey, 32);
		if (!ok || store_meta_get(st, META_VKEY, &sealed, &sealed_len) != 0) {
			snprintf(err, errlen, "cannot store the virtual-key hashing key");
			free(sealed);
			return -1;
		}
	}
	rc = vault_open(master, AAD_VKEY, sealed, sealed_len, &plain, &plain_len);
	free(sealed);
	if (rc < 0 || plain_len != 32) {
		snprintf(err, errlen, "master key does not match this database (cannot open the virtual-key hashing key)");
		if (plain) {
			wipe(plain, plain_len);
			free(plain);
		}
		return -1;
	}
	memcpy(hkey, plain, 32);
	wipe(plain, plain_len);
	free(plain);
	return 0;
}

/* Re-seals one blob from old to new under the same aad. */
static int reseal(const unsigned char old_master[MASTER_KEY_BYTES],
		  const unsigned char new_master[MASTER_KEY_BYTES], const char *aad,
		  const unsigned char *blob, size_t len, unsigned char **out, size_t *out_len)
{
	char *plain = NULL;
	size_t plain_len = 0;
	if (vault_open(old_master, aad, blob, len, &plain, &plain_len) < 0)
		return -1;
	int rc = vault_seal(new_master, aad, plain, plain_len, out, out_len);
	wipe(plain, plain_len);
	free(plain);
	return rc;
}

int vault_rotate(struct store *st, const unsigned char old_master[MASTER_KEY_BYTES],
		 const unsigned char new_master[MASTER_KEY_BYTES], char *err, size_t errlen)
{
	sqlite3 *db = store_db(st);
	sqlite3_stmt *sel = NULL, *upd = NULL;
	unsigned char *blob = NULL, *fresh = NULL;
	size_t blob_len = 0, fresh_len = 0;
	unsigned char check[32];
	int r, rc = -1;

	/* the new key file replaces the old one right after this commit: the
	 * commit must be on disk first (NORMAL would leave it in the WAL's
	 * page cache, and a power cut would pair the new key with the old
	 * ciphertexts) */
	sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot lock database: %s", sqlite3_errmsg(db));
		return -1;
	}
	if (vault_check_master(st, old_master, 0) != 0) {
		snprintf(err, errlen, "master key does not match this database");
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT id, secret FROM connections ORDER BY rowid", -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE connections SET secret = ? WHERE id = ?", -1, &upd, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "rotation failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	while ((r = sqlite3_step(sel)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(sel, 0);
		const unsigned char *sec = sqlite3_column_blob(sel, 1);
		size_t sec_len = (size_t)sqlite3_column_bytes(sel, 1);
		if (reseal(old_master, new_master, id, sec, sec_len, &fresh, &fresh_len) < 0) {
			snprintf(err, errlen, "cannot decrypt the credential of connection %s; nothing changed", id);
			goto out;
		}
		sqlite3_reset(upd);
		sqlite3_bind_blob(upd, 1, fresh, (int)fresh_len, SQLITE_TRANSIENT);
		sqlite3_bind_text(upd, 2, id, -1, SQLITE_TRANSIENT);
		free(fresh);
		fresh = NULL;
		if (sqlite3_step(upd) != SQLITE_DONE) {
			snprintf(err, errlen, "rotation failed: %s", sqlite3_errmsg(db));
			goto out;
		}
	}
	if (r != SQLITE_DONE) {
		snprintf(err, errlen, "rotation failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	r = store_meta_get(st, META_VKEY, &blob, &blob_len);
	if (r < 0) {
		snprintf(err, errlen, "rotation failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	if (r == 0) {
		if (reseal(old_master, new_master, AAD_VKEY, blob, blob_len, &fresh, &fresh_len) < 0) {
			snprintf(err, errlen, "cannot decrypt the virtual-key hashing key; nothing changed");
			goto out;
		}
		if (store_meta_set(st, META_VKEY, fresh, fresh_len) < 0) {
			snprintf(err, errlen, "rotation failed: %s", sqlite3_errmsg(db));
			goto out;
		}
	}
	if (check_value(new_master, check) < 0 || store_meta_set(st, META_CHECK, check, sizeof check) < 0) {
		snprintf(err, errlen, "rotation failed: cannot record the new check value");
		goto out;
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "rotation commit failed: %s", sqlite3_errmsg(db));
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	free(blob);
	free(fresh);
	if (rc < 0)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}
