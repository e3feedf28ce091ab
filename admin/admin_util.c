/* admin_util.c - see admin.h. */
#include "admin.h"

#include "util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int admin_err(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* one line, always */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fflush(stdout);
	fprintf(stderr, ADMIN_PROG ": %s\n", msg);
	return code;
}

int admin_open(struct admin *a)
{
	char err[1024] = "";
	int rc;

	if (a->st)
		return 0;
	if (paths_resolve(&a->paths, a->opt_home, a->opt_db, a->opt_key, err, sizeof err) < 0)
		return admin_err(EXIT_RUNTIME, "%s", err);
	if (paths_ensure_home(&a->paths, &a->created_key, &a->created_db, err, sizeof err) < 0)
		return admin_err(EXIT_RUNTIME, "%s", err);
	if (paths_check_key_file(a->paths.master_key, err, sizeof err) < 0)
		return admin_err(EXIT_RUNTIME, "%s", err);
	if (vault_read_master_key(a->paths.master_key, a->master, err, sizeof err) < 0)
		return admin_err(EXIT_RUNTIME, "%s", err);
	a->st = store_open(a->paths.db, STORE_RW, err, sizeof err);
	if (!a->st)
		return admin_err(EXIT_RUNTIME, "%s", err);
	rc = vault_check_master(a->st, a->master, 1);
	if (rc == -1) {
		rc = admin_err(EXIT_RUNTIME, "master key does not match this database (key %s, database %s)",
			       a->paths.master_key, a->paths.db);
		goto fail;
	}
	if (rc < 0) {
		rc = admin_err(EXIT_RUNTIME, "cannot check the master key: %s", sqlite3_errmsg(store_db(a->st)));
		goto fail;
	}
	if (vault_vkey_hash_key(a->st, a->master, 1, a->hkey, err, sizeof err) < 0) {
		rc = admin_err(EXIT_RUNTIME, "%s", err);
		goto fail;
	}
	return 0;
fail:
	admin_close(a);
	return rc;
}

void admin_close(struct admin *a)
{
	store_close(a->st);
	a->st = NULL;
	wipe(a->master, sizeof a->master);
	wipe(a->hkey, sizeof a->hkey);
}

int admin_begin(struct admin *a)
{
	if (sqlite3_exec(store_db(a->st), "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return admin_err(EXIT_RUNTIME, "cannot lock the database: %s", sqlite3_errmsg(store_db(a->st)));
	return 0;
}

int admin_commit(struct admin *a)
{
	if (sqlite3_exec(store_db(a->st), "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = admin_err(EXIT_RUNTIME, "cannot commit: %s", sqlite3_errmsg(store_db(a->st)));
		admin_rollback(a);
		return rc;
	}
	return 0;
}

void admin_rollback(struct admin *a)
{
	if (a->st && !sqlite3_get_autocommit(store_db(a->st)))
		sqlite3_exec(store_db(a->st), "ROLLBACK", NULL, NULL, NULL);
}

/* ---- options ---- */

static int find_def(const struct opts *o, const char *name, size_t len)
{
	for (size_t i = 0; i < o->ndefs; i++)
		if (strlen(o->defs[i].name) == len && strncmp(o->defs[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

int opts_parse(struct admin *a, const char *cmd, const char *usage, const struct optdef *defs,
	       int maxpos, int argc, char **argv, struct opts *o)
{
	int only_pos = 0;
	memset(o, 0, sizeof *o);
	o->defs = defs;
	while (defs && defs[o->ndefs].name)
		o->ndefs++;
	if (o->ndefs > OPTS_MAX)
		fatal("too many options for %s", cmd);
	for (int i = 1; i < argc; i++) {
		char *arg = argv[i];
		if (!only_pos && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
			fputs(usage, stdout);
			opts_free(o);
			return OPTS_HELP;
		}
		if (!only_pos && strcmp(arg, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (only_pos || arg[0] != '-' || arg[1] == 0) {
			if (o->npos >= maxpos || o->npos >= OPTS_POS_MAX) {
				opts_free(o);
				return admin_err(EXIT_USAGE, "%s: unexpected argument '%.60s'; see '%s %s --help'",
						 cmd, arg, ADMIN_PROG, cmd);
			}
			o->pos[o->npos++] = arg;
			continue;
		}
		if (arg[1] != '-') {
			opts_free(o);
			return admin_err(EXIT_USAGE, "%s: unknown option '%.60s'; see '%s %s --help'", cmd, arg,
					 ADMIN_PROG, cmd);
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const char *val = eq ? eq + 1 : NULL;

		/* global options, accepted after the command too */
		if (nlen == 4 && strncmp(name, "json", 4) == 0 && !eq) {
			a->json = 1;
			continue;
		}
		const char **gslot = NULL;
		if (nlen == 4 && strncmp(name, "home", 4) == 0)
			gslot = &a->opt_home;
		else if (nlen == 2 && strncmp(name, "db", 2) == 0)
			gslot = &a->opt_db;
		else if (nlen == 15 && strncmp(name, "master-key-file", 15) == 0)
			gslot = &a->opt_key;
		int d = gslot ? -1 : find_def(o, name, nlen);
		if (!gslot && d < 0) {
			opts_free(o);
			return admin_err(EXIT_USAGE, "%s: unknown option '--%.*s'; see '%s %s --help'", cmd,
					 (int)(nlen > 60 ? 60 : nlen), name, ADMIN_PROG, cmd);
		}
		if (!gslot && defs[d].arg == OPT_FLAG) {
			if (eq) {
				opts_free(o);
				return admin_err(EXIT_USAGE, "%s: option --%s takes no value", cmd, defs[d].name);
			}
			o->seen[d] = 1;
			o->val[d] = "1";
			continue;
		}
		if (!val) {
			if (i + 1 >= argc) {
				opts_free(o);
				return admin_err(EXIT_USAGE, "%s: option --%.*s needs a value", cmd, (int)nlen, name);
			}
			val = argv[++i];
		}
		if (gslot) {
			*gslot = val;
			continue;
		}
		if (defs[d].arg == OPT_VALUE && o->seen[d]) {
			opts_free(o);
			return admin_err(EXIT_USAGE, "%s: option --%s given more than once", cmd, defs[d].name);
		}
		o->seen[d] = 1;
		o->val[d] = val;
		if (defs[d].arg == OPT_LIST) {
			o->list[d] = xreallocarray(o->list[d], o->nlist[d] + 1, sizeof *o->list[d]);
			o->list[d][o->nlist[d]++] = val;
		}
	}
	return OPTS_OK;
}

void opts_free(struct opts *o)
{
	for (size_t i = 0; i < OPTS_MAX; i++) {
		free(o->list[i]);
		o->list[i] = NULL;
		o->nlist[i] = 0;
	}
}

const char *opt_get(const struct opts *o, const char *name)
{
	int d = find_def(o, name, strlen(name));
	return d >= 0 && o->seen[d] ? o->val[d] : NULL;
}

int opt_has(const struct opts *o, const char *name) { return opt_get(o, name) != NULL; }

const char **opt_list(const struct opts *o, const char *name, size_t *n)
{
	int d = find_def(o, name, strlen(name));
	*n = d >= 0 ? o->nlist[d] : 0;
	return d >= 0 ? o->list[d] : NULL;
}

int opt_require(const struct opts *o, const char *cmd, const char *name)
{
	const char *v = opt_get(o, name);
	if (!v)
		return admin_err(EXIT_USAGE, "%s: missing --%s; see '%s %s --help'", cmd, name, ADMIN_PROG, cmd);
	return 0;
}

int admin_dispatch(struct admin *a, const char *group, const char *usage, const struct subcmd *subs,
		   int argc, char **argv)
{
	if (argc < 2)
		return admin_err(EXIT_USAGE, "%s: missing subcommand; see '%s %s --help'", group, ADMIN_PROG, group);
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	for (const struct subcmd *s = subs; s->name; s++)
		if (strcmp(s->name, sub) == 0)
			return s->fn(a, argc - 1, argv + 1);
	return admin_err(EXIT_USAGE, "%s: unknown subcommand '%.60s'; see '%s %s --help'", group, sub,
			 ADMIN_PROG, group);
}

/* ---- validation ---- */

int check_name(const char *what, const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0)
		return admin_err(EXIT_USAGE, "%s must not be empty", what);
	if (n > max)
		return admin_err(EXIT_USAGE, "%s is too long (at most %zu bytes)", what, max);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return admin_err(EXIT_USAGE, "%s must not contain control characters", what);
	if (isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1]))
		return admin_err(EXIT_USAGE, "%s must not start or end with a space", what);
	return 0;
}

int check_alias(const char *s)
{
	int rc = check_name("--alias", s, ADMIN_NAME_MAX);
	if (rc)
		return rc;
	for (const char *p = s; *p; p++)
		if (*p == ' ')
			return admin_err(EXIT_USAGE, "--alias must not contain spaces");
	return 0;
}

int parse_limit(const char *flag, const char *s, int allow_none, int64_t *out)
{
	int64_t v;
	if (allow_none && strcmp(s, "none") == 0) {
		*out = 0;
		return 0;
	}
	if (parse_i64(s, &v) < 0 || v <= 0 || v > ADMIN_LIMIT_MAX)
		return admin_err(EXIT_USAGE, "--%s must be a positive integer%s (got '%.40s')", flag,
				 allow_none ? " or 'none'" : "", s);
	*out = v;
	return 0;
}

int parse_rate(const char *flag, const char *s, double *out)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || errno || !end || *end || !isfinite(v) || v <= 0 || v > 1e9 || isspace((unsigned char)*s))
		return admin_err(EXIT_USAGE, "--%s must be a positive number (got '%.40s')", flag, s);
	*out = v;
	return 0;
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int parse_rfc3339(const char *s, int64_t *out)
{
	int Y, M, D, h, m, sec, oh = 0, om = 0;
	struct tm tm;
	const char *p = s;
	if (strlen(s) < 20)
		return -1;
	if (digits(p, 4, &Y) || p[4] != '-' || digits(p + 5, 2, &M) || p[7] != '-' || digits(p + 8, 2, &D) ||
	    (p[10] != 'T' && p[10] != 't') || digits(p + 11, 2, &h) || p[13] != ':' ||
	    digits(p + 14, 2, &m) || p[16] != ':' || digits(p + 17, 2, &sec))
		return -1;
	p += 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	int sign = 0;
	if ((*p == 'Z' || *p == 'z') && p[1] == 0) {
		sign = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && !digits(p + 1, 2, &oh) && p[3] == ':' &&
		   !digits(p + 4, 2, &om) && oh < 24 && om < 60) {
		sign = *p == '+' ? 1 : -1;
	} else {
		return -1;
	}
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec == 60 ? 59 : sec;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != D || tm.tm_mon != M - 1)
		return -1; /* 2026-02-30 normalised to March */
	*out = (int64_t)t - sign * (oh * 3600 + om * 60);
	return 0;
}

int parse_expires(const char *s, int allow_never, int64_t now, int64_t *out)
{
	size_t n = strlen(s);
	int64_t v, t;
	if (allow_never && strcmp(s, "never") == 0) {
		*out = 0;
		return 0;
	}
	if (n >= 2 && n <= 12 && strchr("smhd", s[n - 1])) {
		char num[16];
		memcpy(num, s, n - 1);
		num[n - 1] = 0;
		int64_t unit = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 : s[n - 1] == 'h' ? 3600 : 86400;
		if (parse_i64(num, &v) < 0 || v <= 0 || v > (int64_t)100 * 366 * 86400 / unit)
			return admin_err(EXIT_USAGE, "--expires: bad duration '%.40s' (use e.g. 30s, 15m, 24h, 7d)", s);
		*out = now + v * unit;
		return 0;
	}
	if (parse_rfc3339(s, &t) < 0)
		return admin_err(EXIT_USAGE,
				 "--expires: '%.40s' is neither an RFC 3339 time (2026-12-31T23:59:59Z) nor a duration (30s, 15m, 24h, 7d)%s",
				 s, allow_never ? " nor 'never'" : "");
	if (t <= now)
		return admin_err(EXIT_USAGE, "--expires: %.40s is in the past", s);
	*out = t;
	return 0;
}

int check_endpoint(const char *s, char **out)
{
	size_t n = strlen(s);
	const char *p;
	*out = NULL;
	if (n == 0 || n > 2048)
		return admin_err(EXIT_USAGE, "--endpoint must be an http:// or https:// URL");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f)
			return admin_err(EXIT_USAGE, "--endpoint must not contain spaces, control or non-ASCII characters");
	if (ascii_ncasecmp(s, "https://", 8) == 0)
		p = s + 8;
	else if (ascii_ncasecmp(s, "http://", 7) == 0)
		p = s + 7;
	else
		return admin_err(EXIT_USAGE, "--endpoint must start with http:// or https://");
	if (strchr(s, '?') || strchr(s, '#'))
		return admin_err(EXIT_USAGE, "--endpoint must not contain a query or fragment");
	size_t alen = strcspn(p, "/");
	if (alen == 0)
		return admin_err(EXIT_USAGE, "--endpoint has no host");
	if (memchr(p, '@', alen))
		return admin_err(EXIT_USAGE, "--endpoint must not contain user info (credentials go in --api-key)");
	const char *host_end = p + alen, *port = NULL;
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', alen);
		if (!rb || rb == p + 1)
			return admin_err(EXIT_USAGE, "--endpoint has a malformed IPv6 host");
		for (const char *c = p + 1; c < rb; c++)
			if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.')
				return admin_err(EXIT_USAGE, "--endpoint has a malformed IPv6 host");
		if (rb + 1 < host_end) {
			if (rb[1] != ':')
				return admin_err(EXIT_USAGE, "--endpoint has a malformed host");
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(p, ':', alen);
		const char *hend = colon ? colon : host_end;
		if (hend == p)
			return admin_err(EXIT_USAGE, "--endpoint has no host");
		for (const char *c = p; c < hend; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_')
				return admin_err(EXIT_USAGE, "--endpoint has an invalid host name");
		if (colon)
			port = colon + 1;
	}
	if (port) {
		int64_t pv = 0;
		char pb[8];
		size_t pl = (size_t)(host_end - port);
		if (pl == 0 || pl > 5)
			return admin_err(EXIT_USAGE, "--endpoint has an invalid port");
		memcpy(pb, port, pl);
		pb[pl] = 0;
		if (parse_i64(pb, &pv) < 0 || pv < 1 || pv > 65535)
			return admin_err(EXIT_USAGE, "--endpoint has an invalid port");
	}
	char *copy = xstrdup(s);
	/* lower-case the scheme, drop trailing slashes: adapters append paths */
	for (char *c = copy; *c != ':'; c++)
		*c = (char)tolower((unsigned char)*c);
	size_t cl = strlen(copy);
	size_t min = (size_t)(host_end - s);
	while (cl > min && copy[cl - 1] == '/')
		copy[--cl] = 0;
	*out = copy;
	return 0;
}

int check_provider(const char *s, char out[16])
{
	static const char *const known[] = {"openai", "azure", "google", "gemini", "vertex"};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (ascii_casecmp(s, known[i]) == 0) {
			snprintf(out, 16, "%s", known[i]);
			return 0;
		}
	return admin_err(EXIT_USAGE, "unknown provider '%.40s' (expected openai, azure, google, gemini or vertex)", s);
}

/* Reads all of fd (at most ADMIN_SECRET_MAX bytes) into a wiped buffer. */
static int read_all(int fd, struct buf *b)
{
	char tmp[4096];
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof tmp);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			wipe(tmp, sizeof tmp);
			return -1;
		}
		if (r == 0)
			break;
		if (b->len + (size_t)r > ADMIN_SECRET_MAX) {
			wipe(tmp, sizeof tmp);
			errno = EFBIG;
			return -1;
		}
		buf_append(b, tmp, (size_t)r);
	}
	wipe(tmp, sizeof tmp);
	return 0;
}

int read_secret(const char *literal, const char *file, const char *what, char **out, size_t *len)
{
	struct buf b;
	*out = NULL;
	*len = 0;
	buf_init(&b);
	if (literal && strcmp(literal, "-") != 0) {
		buf_puts(&b, literal);
	} else {
		int fd = 0;
		const char *src = "standard input";
		if (!literal && strcmp(file, "-") != 0) {
			fd = open(file, O_RDONLY | O_CLOEXEC);
			src = file;
			if (fd < 0) {
				buf_free(&b);
				return admin_err(EXIT_RUNTIME, "cannot open %s: %s", file, strerror(errno));
			}
		}
		int r = read_all(fd, &b);
		int e = errno;
		if (fd != 0)
			close(fd);
		if (r < 0) {
			buf_free(&b);
			return e == EFBIG ? admin_err(EXIT_USAGE, "%s from %s is larger than %d bytes", what, src,
						     ADMIN_SECRET_MAX)
					  : admin_err(EXIT_RUNTIME, "cannot read %s: %s", src, strerror(e));
		}
		if (b.len && b.data[b.len - 1] == '\n') {
			b.data[--b.len] = 0;
			if (b.len && b.data[b.len - 1] == '\r')
				b.data[--b.len] = 0;
		}
	}
	if (b.len == 0) {
		buf_free(&b);
		return admin_err(EXIT_USAGE, "%s is empty", what);
	}
	if (memchr(b.data, 0, b.len)) {
		buf_free(&b);
		return admin_err(EXIT_USAGE, "%s contains a NUL byte", what);
	}
	if (b.data[0] == '{') {
		cJSON *j = cJSON_ParseWithLength(b.data, b.len);
		int ok = j && cJSON_IsObject(j);
		cJSON_Delete(j);
		if (!ok) {
			buf_free(&b);
			return admin_err(EXIT_USAGE, "%s starts with '{' but is not a valid JSON object", what);
		}
	}
	*out = b.data; /* ownership moves to the caller */
	*len = b.len;
	return 0;
}

void secret_hint(const char *secret, size_t len, char *out, size_t cap)
{
	if (len && secret[0] == '{') {
		snprintf(out, cap, "{…}");
	} else if (len >= 12) {
		snprintf(out, cap, "%.3s…%.4s", secret, secret + len - 4);
		for (char *c = out; *c; c++)
			if ((unsigned char)*c < 0x20)
				*c = '?';
	} else {
		snprintf(out, cap, "…");
	}
}

void admin_new_id(const char *prefix, char out[ADMIN_ID_MAX])
{
	char r[ADMIN_ID_RANDOM + 1];
	random_alnum(r, ADMIN_ID_RANDOM);
	snprintf(out, ADMIN_ID_MAX, "%s%s", prefix, r);
}

int64_t admin_count(struct admin *a, const char *sql, const char *param)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(store_db(a->st), sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (param)
		sqlite3_bind_text(s, 1, param, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static const char *table_what(const char *table)
{
	if (strcmp(table, "connections") == 0)
		return "connection";
	if (strcmp(table, "virtual_keys") == 0)
		return "virtual key";
	if (strcmp(table, "provider_models") == 0)
		return "model";
	return "assignment";
}

int admin_resolve(struct admin *a, const char *table, const char *arg, char out[ADMIN_ID_MAX])
{
	char sql[160];
	sqlite3_stmt *s = NULL;
	int found = 0, rc;
	const char *what = table_what(table);

	snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE id = ?", table);
	for (int pass = 0; pass < 2 && !found; pass++) {
		if (pass == 1) {
			if (strcmp(table, "assignments") == 0)
				break;
			snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE name = ? ORDER BY rowid", table);
		}
		if (sqlite3_prepare_v2(store_db(a->st), sql, -1, &s, NULL) != SQLITE_OK)
			return admin_err(EXIT_RUNTIME, "query failed: %s", sqlite3_errmsg(store_db(a->st)));
		sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (found++ == 0)
				snprintf(out, ADMIN_ID_MAX, "%s", (const char *)sqlite3_column_text(s, 0));
		}
		sqlite3_finalize(s);
	}
	if (found == 0)
		return admin_err(EXIT_RUNTIME, "no %s with id or name '%.80s'", what, arg);
	if (found > 1)
		return admin_err(EXIT_RUNTIME, "%s name '%.80s' is ambiguous (%d matches); use the id", what, arg,
				 found);
	return 0;
}

void fmt_time(int64_t unix_s, char out[32])
{
	struct tm tm;
	time_t t = (time_t)unix_s;
	if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "%lld", (long long)unix_s);
}

/* ---- tables ---- */

void table_init(struct table *t, size_t ncol, ...)
{
	va_list ap;
	memset(t, 0, sizeof *t);
	t->ncol = ncol;
	t->cap = 8;
	t->cells = xcalloc(t->cap * ncol, sizeof *t->cells);
	va_start(ap, ncol);
	for (size_t i = 0; i < ncol; i++)
		t->cells[i] = xstrdup(va_arg(ap, const char *));
	va_end(ap);
	t->nrows = 1;
}

void table_row(struct table *t, ...)
{
	va_list ap;
	if (t->nrows == t->cap) {
		t->cap *= 2;
		t->cells = xreallocarray(t->cells, t->cap * t->ncol, sizeof *t->cells);
	}
	va_start(ap, t);
	for (size_t i = 0; i < t->ncol; i++) {
		const char *c = va_arg(ap, const char *);
		t->cells[t->nrows * t->ncol + i] = xstrdup(c && *c ? c : "-");
	}
	va_end(ap);
	t->nrows++;
}

/* Display width of UTF-8 text: counts code points, not bytes. */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void table_print(struct table *t)
{
	size_t *w = xcalloc(t->ncol, sizeof *w);
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncol; c++) {
			size_t x = width(t->cells[r * t->ncol + c]);
			if (x > w[c])
				w[c] = x;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncol; c++) {
			const char *cell = t->cells[r * t->ncol + c];
			if (c + 1 == t->ncol)
				printf("%s\n", cell);
			else
				printf("%s%*s", cell, (int)(w[c] - width(cell) + 2), "");
		}
	}
	for (size_t i = 0; i < t->nrows * t->ncol; i++)
		free(t->cells[i]);
	free(t->cells);
	free(w);
	memset(t, 0, sizeof *t);
}

void json_print(cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (s) {
		puts(s);
		free(s);
	}
	cJSON_Delete(j);
}

int admin_exec_id(struct admin *a, const char *sql, const char *id, const char *what)
{
	sqlite3_stmt *s = NULL;
	int r = sqlite3_prepare_v2(store_db(a->st), sql, -1, &s, NULL);
	if (r == SQLITE_OK) {
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		r = sqlite3_step(s);
	}
	sqlite3_finalize(s);
	if (r != SQLITE_DONE)
		return admin_err(EXIT_RUNTIME, "cannot change the %s: %s", what, sqlite3_errmsg(store_db(a->st)));
	return 0;
}

int admin_finish(struct admin *a, const char *id, const char *verb)
{
	int rc = admin_commit(a);
	if (rc)
		return rc;
	if (a->json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "id", id);
		cJSON_AddBoolToObject(j, verb, 1);
		json_print(j);
	}
	return 0;
}
