/* google_auth.c - see google_auth.h. */
#include "google_auth.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vault.h"

#define TOKEN_ERR(err, ...) \
	proxy_error_set((err), 502, "upstream_error", "upstream_auth_failed", NULL, __VA_ARGS__)


int gauth_is_sa_json(const char *c)
{
	while (c && (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n'))
		c++;
	return c && *c == '{';
}

static char *dup_field(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) && *v->valuestring ? xstrdup(v->valuestring) : NULL;
}

void gauth_sa_free(struct gauth_sa *sa)
{
	if (!sa)
		return;
	free(sa->client_email);
	free_secret(sa->private_key);
	free(sa->private_key_id);
	free(sa->token_uri);
	free(sa->project_id);
	memset(sa, 0, sizeof *sa);
}

int gauth_sa_parse(const char *json, struct gauth_sa *sa, char *err, size_t errlen)
{
	memset(sa, 0, sizeof *sa);
	cJSON *j = cJSON_Parse(json);
	int rc = -1;
	if (!cJSON_IsObject(j)) {
		snprintf(err, errlen, "the service-account key is not valid JSON");
		goto out;
	}
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "service_account") != 0) {
		snprintf(err, errlen, "the JSON credential is not a service-account key (\"type\" is not \"service_account\")");
		goto out;
	}
	sa->client_email = dup_field(j, "client_email");
	sa->private_key = dup_field(j, "private_key");
	sa->private_key_id = dup_field(j, "private_key_id");
	sa->token_uri = dup_field(j, "token_uri");
	sa->project_id = dup_field(j, "project_id");
	if (!sa->client_email || !sa->private_key) {
		snprintf(err, errlen, "the service-account key lacks client_email or private_key");
		gauth_sa_free(sa);
		goto out;
	}
	if (!sa->token_uri)
		sa->token_uri = xstrdup(GAUTH_DEFAULT_TOKEN_URI);
	rc = 0;
out:
	if (j) {
		/* the parsed tree holds the private key: wipe it */
		cJSON *pk = cJSON_GetObjectItemCaseSensitive(j, "private_key");
		if (cJSON_IsString(pk))
			wipe(pk->valuestring, strlen(pk->valuestring));
	}
	cJSON_Delete(j);
	return rc;
}

static void b64url(struct buf *out, const unsigned char *p, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		char q[4] = {t[p[i] >> 2], t[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
			     t[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], t[p[i + 2] & 63]};
		buf_append(out, q, 4);
	}
	if (n - i == 1) {
		char q[2] = {t[p[i] >> 2], t[(p[i] & 3) << 4]};
		buf_append(out, q, 2);
	} else if (n - i == 2) {
		char q[3] = {t[p[i] >> 2], t[((p[i] & 3) << 4) | (p[i + 1] >> 4)], t[(p[i + 1] & 15) << 2]};
		buf_append(out, q, 3);
	}
}

static void b64url_json(struct buf *out, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	if (s)
		b64url(out, (const unsigned char *)s, strlen(s));
	cJSON_free(s);
}

int gauth_make_jwt(const struct gauth_sa *sa, int64_t now, char **jwt, char *err, size_t errlen)
{
	struct buf j;
	int rc = -1;
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	buf_init(&j);
	*jwt = NULL;

	cJSON *h = cJSON_CreateObject();
	cJSON_AddStringToObject(h, "alg", "RS256");
	cJSON_AddStringToObject(h, "typ", "JWT");
	if (sa->private_key_id)
		cJSON_AddStringToObject(h, "kid", sa->private_key_id);
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "iss", sa->client_email);
	cJSON_AddStringToObject(c, "scope", GAUTH_SCOPE);
	cJSON_AddStringToObject(c, "aud", sa->token_uri);
	cJSON_AddNumberToObject(c, "iat", (double)now);
	cJSON_AddNumberToObject(c, "exp", (double)(now + GAUTH_JWT_LIFETIME_S));
	b64url_json(&j, h);
	buf_puts(&j, ".");
	b64url_json(&j, c);
	cJSON_Delete(h);
	cJSON_Delete(c);

	BIO *bio = BIO_new_mem_buf(sa->private_key, -1);
	if (bio)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey || EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "the service-account private_key is not an RSA PEM key");
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)j.data, j.len) != 1) {
		snprintf(err, errlen, "signing the service-account JWT failed");
		goto out;
	}
	sig = xmalloc(siglen);
	if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)j.data, j.len) != 1) {
		snprintf(err, errlen, "signing the service-account JWT failed");
		goto out;
	}
	buf_puts(&j, ".");
	b64url(&j, sig, siglen);
	*jwt = xstrdup(j.data);
	rc = 0;
out:
	free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	buf_free(&j);
	return rc;
}

/* Only https, or plain http to a loopback test server: the assertion is a
 * bearer credential for an hour and must not cross a network in clear.
 * The URL is parsed, as curl will read it (no prefix tricks with userinfo). */
static int token_uri_ok(const char *u)
{
	CURLU *h = curl_url();
	char *scheme = NULL, *host = NULL;
	int ok = 0;
	if (h && curl_url_set(h, CURLUPART_URL, u, 0) == CURLUE_OK &&
	    curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (strcmp(scheme, "https") == 0)
			ok = 1;
		else if (strcmp(scheme, "http") == 0)
			ok = strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
			     strcmp(host, "[::1]") == 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(h);
	return ok;
}

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	size_t len = size * n;
	if (b->len + len > GAUTH_MAX_RESPONSE_BYTES)
		return 0; /* makes curl fail: bounded */
	buf_append(b, p, len);
	return len;
}

int gauth_exchange(const struct gauth_sa *sa, int64_t now, char **token, int64_t *expires_at,
		   struct proxy_error *err)
{
	char e[256];
	char *jwt = NULL;
	struct buf form, resp;
	CURL *c = NULL;
	struct curl_slist *hdr = NULL;
	cJSON *j = NULL;
	int rc = -1;
	buf_init(&form);
	buf_init(&resp);
	*token = NULL;

	if (!token_uri_ok(sa->token_uri)) {
		TOKEN_ERR(err, "service account token exchange failed: token_uri must be https");
		goto out;
	}
	if (gauth_make_jwt(sa, now, &jwt, e, sizeof e) < 0) {
		TOKEN_ERR(err, "service account token exchange failed: %s", e);
		goto out;
	}
	/* the grant type is pre-encoded; a JWT is base64url and dots, which
	 * need no form encoding */
	buf_puts(&form, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=");
	buf_puts(&form, jwt);

	c = curl_easy_init();
	if (!c) {
		TOKEN_ERR(err, "service account token exchange failed: no curl handle");
		goto out;
	}
	hdr = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	curl_easy_setopt(c, CURLOPT_URL, sa->token_uri);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, form.data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)form.len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)GAUTH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)GAUTH_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		TOKEN_ERR(err, "service account token exchange failed: token endpoint unreachable: %s",
			  curl_easy_strerror(cc));
		goto out;
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	j = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
	if (status < 200 || status > 299) {
		const cJSON *er = cJSON_GetObjectItemCaseSensitive(j, "error");
		const cJSON *ed = cJSON_GetObjectItemCaseSensitive(j, "error_description");
		char m[300];
		if (cJSON_IsString(er))
			snprintf(m, sizeof m, "%.100s%s%.190s", er->valuestring, cJSON_IsString(ed) ? ": " : "",
				 cJSON_IsString(ed) ? ed->valuestring : "");
		else
			snprintf(m, sizeof m, "HTTP %ld", status);
		scrub_secrets(m);
		TOKEN_ERR(err, "service account token exchange failed: %s", m);
		goto out;
	}
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
	const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
	if (!cJSON_IsString(at) || !*at->valuestring || strpbrk(at->valuestring, "\r\n")) {
		TOKEN_ERR(err, "service account token exchange failed: the answer has no access_token");
		goto out;
	}
	int64_t ttl = cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble < 1e7
			      ? (int64_t)ei->valuedouble
			      : GAUTH_JWT_LIFETIME_S;
	*token = xstrdup(at->valuestring);
	*expires_at = now + ttl;
	rc = 0;
out:
	if (j) {
		cJSON *at2 = cJSON_GetObjectItemCaseSensitive(j, "access_token");
		if (cJSON_IsString(at2))
			wipe(at2->valuestring, strlen(at2->valuestring));
	}
	cJSON_Delete(j);
	curl_slist_free_all(hdr);
	if (c)
		curl_easy_cleanup(c);
	free_secret(jwt);
	buf_free(&form);
	buf_free(&resp);
	return rc;
}

char *gauth_cache_dir(const char *opt)
{
	if (opt && *opt)
		return xstrdup(opt);
	const char *env = getenv("LLMPROXY_TOKEN_CACHE_DIR");
	if (env && *env)
		return xstrdup(env);
	return xasprintf("/tmp/llmproxy-tokens-%ld", (long)geteuid());
}

/* Creates the directory (0700) if missing; 0 when it is ours and neither
 * group nor others can read or write it, else -1.  lstat comes first so
 * an existing directory never costs a mkdir (proxyd's seccomp filter may
 * not allow one). */
static int cache_dir_ok(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT || mkdir(dir, 0700) < 0 || lstat(dir, &st) < 0)
			return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return -1;
	return 0;
}

/* File name stem for a connection: the id when it is plain, else its
 * SHA-256 in hex (never a path component from outside). */
static void cache_stem(const char *conn_id, char out[80])
{
	size_t n = strlen(conn_id);
	int plain = n > 0 && n < 64 && conn_id[0] != '.';
	for (size_t i = 0; plain && i < n; i++) {
		char ch = conn_id[i];
		plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			ch == '-' || ch == '_' || ch == '.';
	}
	if (plain) {
		snprintf(out, 80, "%s", conn_id);
		return;
	}
	unsigned char h[32];
	unsigned int hl = 0;
	EVP_Digest(conn_id, n, h, &hl, EVP_sha256(), NULL);
	hex_encode(h, 32, out);
}

/* Reads and opens the cache file; 0 with *token when it holds a token for
 * this key with more than the margin left, 1 when absent/stale/foreign. */
static int cache_read(const char *path, const char *aad, const unsigned char *master,
		      const struct gauth_sa *sa, int64_t now, char **token)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 1;
	unsigned char sealed[GAUTH_MAX_CACHE_BYTES];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof sealed && (r = read(fd, sealed + len, sizeof sealed - len)) > 0)
		len += (size_t)r;
	close(fd);
	char *plain = NULL;
	size_t plen = 0;
	if (len == 0 || len == sizeof sealed || vault_open(master, aad, sealed, len, &plain, &plen) < 0)
		return 1;
	/* "v1\n<expires_at>\n<client_email>\n<private_key_id>\n<token>" */
	int rc = 1;
	char *save = NULL;
	char *ver = strtok_r(plain, "\n", &save);
	char *exp = strtok_r(NULL, "\n", &save);
	char *email = strtok_r(NULL, "\n", &save);
	char *kid = strtok_r(NULL, "\n", &save);
	char *tok = strtok_r(NULL, "\n", &save);
	int64_t expires = 0;
	if (ver && exp && email && kid && tok && strcmp(ver, "v1") == 0 && parse_i64(exp, &expires) == 0 &&
	    strcmp(email, sa->client_email) == 0 &&
	    strcmp(kid, sa->private_key_id ? sa->private_key_id : "-") == 0 &&
	    expires - now > GAUTH_REFRESH_MARGIN_S) {
		*token = xstrdup(tok);
		rc = 0;
	}
	wipe(plain, plen);
	free(plain);
	return rc;
}

/* Seals and writes the token in place.  Called with the lock held, so
 * writers never race; a reader that sees a half-written file fails the
 * GCM tag check, treats it as stale and queues on the lock.  (No rename
 * or temp file: fewer system calls for proxyd's seccomp filter.) */
static void cache_write(const char *path, const char *aad, const unsigned char *master,
			const struct gauth_sa *sa, const char *token, int64_t expires)
{
	struct buf plain;
	unsigned char *sealed = NULL;
	size_t slen = 0;
	buf_init(&plain);
	buf_printf(&plain, "v1\n%lld\n%s\n%s\n%s\n", (long long)expires, sa->client_email,
		   sa->private_key_id ? sa->private_key_id : "-", token);
	int rc = vault_seal(master, aad, plain.data, plain.len, &sealed, &slen);
	buf_free(&plain);
	if (rc < 0)
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		size_t off = 0;
		ssize_t w = 0;
		if (ftruncate(fd, 0) == 0)
			while (off < slen && (w = write(fd, sealed + off, slen - off)) > 0)
				off += (size_t)w;
		if (off != slen && ftruncate(fd, 0) < 0)
			log_msg("token cache %s: cannot truncate a short write", path);
		close(fd);
	}
	free(sealed);
}

int gauth_token(const struct gauth_sa *sa, const char *conn_id, const unsigned char *master,
		const char *cache_dir, char **token, struct proxy_error *err)
{
	char stem[80];
	int64_t expires = 0;
	int lock = -1, rc = -1;
	char *path = NULL, *lpath = NULL, *aad = NULL;
	*token = NULL;

	if (!master || !cache_dir || !conn_id || cache_dir_ok(cache_dir) < 0) {
		if (master && cache_dir)
			log_msg("token cache %s is not a private directory of this user; not caching", cache_dir);
		return gauth_exchange(sa, wall_s(), token, &expires, err);
	}
	cache_stem(conn_id, stem);
	path = xasprintf("%s/%s.tok", cache_dir, stem);
	lpath = xasprintf("%s/%s.lock", cache_dir, stem);
	aad = xasprintf("token:%s", conn_id);

	if (cache_read(path, aad, master, sa, wall_s(), token) == 0) {
		rc = 0;
		goto out;
	}
	lock = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		log_msg("token cache lock %s: %s; not caching", lpath, strerror(errno));
		rc = gauth_exchange(sa, wall_s(), token, &expires, err);
		goto out;
	}
	/* someone else may have refreshed while we waited for the lock */
	if (cache_read(path, aad, master, sa, wall_s(), token) == 0) {
		rc = 0;
		goto out;
	}
	int64_t now = wall_s();
	rc = gauth_exchange(sa, now, token, &expires, err);
	if (rc == 0)
		cache_write(path, aad, master, sa, *token, expires);
out:
	if (lock >= 0)
		close(lock); /* releases the flock */
	free(path);
	free(lpath);
	free(aad);
	return rc;
}
