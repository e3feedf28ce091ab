/* google_auth.h - Google service-account credentials: parse the JSON key,
 * sign an RS256 JWT (OpenSSL), exchange it for an OAuth access token at the
 * key's token_uri (libcurl, RFC 7523 jwt-bearer), and keep minted tokens in
 * a cache shared by every proxyd process: one file per connection, sealed
 * with the master key (vault_seal, aad "token:<conn_id>"), in a directory
 * only the proxy's user can read, refreshed under flock() so a burst of new
 * connections costs one exchange.  Wire facts: PROVIDERS.md §d.2. */
#ifndef LLMPROXY_GOOGLE_AUTH_H
#define LLMPROXY_GOOGLE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

#define GAUTH_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define GAUTH_GRANT_TYPE "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define GAUTH_JWT_LIFETIME_S 3600
#define GAUTH_REFRESH_MARGIN_S 300     /* refresh when less than this is left */
#define GAUTH_MAX_RESPONSE_BYTES 65536
#define GAUTH_TIMEOUT_MS 30000
#define GAUTH_CONNECT_TIMEOUT_MS 10000
#define GAUTH_MAX_CACHE_BYTES 65536
#define GAUTH_DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

/* The fields of a service-account JSON key the proxy uses.  All malloc'd;
 * gauth_sa_free wipes private_key. */
struct gauth_sa {
	char *client_email;
	char *private_key;    /* PEM (PKCS#8) */
	char *private_key_id; /* may be NULL */
	char *token_uri;
	char *project_id;     /* may be NULL */
};

/* 1 when the credential text looks like a JSON object (a key file). */
int gauth_is_sa_json(const char *credential);
/* Parses a key file ("type":"service_account").  0, or -1 with a
 * message in err that never contains key material. */
int gauth_sa_parse(const char *json, struct gauth_sa *sa, char *err, size_t errlen);
void gauth_sa_free(struct gauth_sa *sa);

/* Signed JWT assertion for the token exchange: header {alg RS256, typ JWT,
 * kid}, claims {iss, scope, aud = token_uri, iat = now, exp = now+3600}.
 * *jwt is malloc'd (free_secret it).  0, or -1 with err filled. */
int gauth_make_jwt(const struct gauth_sa *sa, int64_t now, char **jwt, char *err, size_t errlen);

/* POSTs the assertion to sa->token_uri.  0 with *token (malloc'd, free it
 * with free_secret) and *expires_at (unix s), or -1 with err filled: 502
 * "service account token exchange failed: <error>: <description>". */
int gauth_exchange(const struct gauth_sa *sa, int64_t now, char **token, int64_t *expires_at,
		   struct proxy_error *err);

/* The cache directory: opt (route option "token_cache") if set, else
 * $LLMPROXY_TOKEN_CACHE_DIR, else /tmp/llmproxy-tokens-<uid>.  malloc'd. */
char *gauth_cache_dir(const char *opt);

/* A valid access token for the connection: from the cache when it has
 * more than GAUTH_REFRESH_MARGIN_S left, else minted (under the cache
 * lock, re-checking after the lock is held) and stored sealed.  When the
 * cache directory is unusable (wrong owner or mode) tokens are minted
 * without caching.  0 with *token (free_secret it), or -1 with err. */
int gauth_token(const struct gauth_sa *sa, const char *conn_id, const unsigned char *master,
		const char *cache_dir, char **token, struct proxy_error *err);

#endif
