/* vault.h - secrets (DESIGN.md §3): the master key file, sealing provider
 * credentials with AES-256-GCM, and the keyed hash of virtual keys. */
#ifndef LLMPROXY_VAULT_H
#define LLMPROXY_VAULT_H

#include <stddef.h>

#define MASTER_KEY_BYTES 32

struct store;

/* Reads exactly 32 bytes from path (refusing group/other-readable files is
 * the caller's policy, see paths.h).  0 ok, <0 error with err filled. */
int vault_read_master_key(const char *path, unsigned char key[MASTER_KEY_BYTES],
			  char *err, size_t errlen);
/* Creates path with mode 0600 holding 32 random bytes; fails if it exists. */
int vault_create_master_key(const char *path, unsigned char key[MASTER_KEY_BYTES],
			    char *err, size_t errlen);

/* Seals plaintext with a key derived from master (HKDF-SHA256), a random
 * 96-bit nonce and aad as associated data.  Output is malloc'd:
 * version(1) || nonce(12) || ciphertext || tag(16). */
int vault_seal(const unsigned char master[MASTER_KEY_BYTES], const char *aad,
	       const void *plain, size_t plain_len, unsigned char **out, size_t *out_len);
/* Opens a sealed blob.  A wrong key or tampered data returns -1 (never
 * garbage).  Output is malloc'd and NUL-terminated; free it with
 * free_secret() or wipe+free. */
int vault_open(const unsigned char master[MASTER_KEY_BYTES], const char *aad,
	       const unsigned char *sealed, size_t sealed_len, char **out, size_t *out_len);

/* The virtual-key hash: HMAC-SHA-256 of the clear key under the store's
 * vkey hashing key.  That key is random, kept sealed in meta
 * ("vkey_hmac_key"), so rotating the master key does not invalidate the
 * hashes.  vault_vkey_hash_key loads (or, with create != 0, creates) it. */
int vault_vkey_hash_key(struct store *st, const unsigned char master[MASTER_KEY_BYTES],
			int create, unsigned char hkey[32], char *err, size_t errlen);
void vault_hash_vkey(const unsigned char hkey[32], const char *vkey, unsigned char out[32]);

/* Checks master against the check value in meta ("master_check"); with
 * create != 0 records it when absent.  0 ok, -1 wrong key, <0 other error. */
int vault_check_master(struct store *st, const unsigned char master[MASTER_KEY_BYTES], int create);

/* Re-seals every connection secret (aad = connection id) and the vkey
 * hashing key under new_master and records new_master's check value, all
 * in one transaction that this function opens and commits.  old_master
 * must pass vault_check_master.  On any failure nothing changes.  0 ok,
 * <0 with err filled. */
int vault_rotate(struct store *st, const unsigned char old_master[MASTER_KEY_BYTES],
		 const unsigned char new_master[MASTER_KEY_BYTES], char *err, size_t errlen);

#endif
