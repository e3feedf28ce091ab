/* google.c - Google AI Studio (Gemini API) and Vertex AI: the client keeps
 * speaking OpenAI, the upstream speaks generateContent (translation in
 * gemini_xlate.c, service-account tokens in google_auth.c).
 *
 * Flavour, per connection:
 *   provider "gemini" -> AI Studio, "vertex" -> Vertex, "google" -> from the
 *   endpoint host (generativelanguage.googleapis.com -> AI Studio,
 *   *aiplatform.googleapis.com -> Vertex), else from the credential's form
 *   (AIza… AI Studio; AQ.…, ya29.…, a service-account JSON -> Vertex).
 *   --option flavour=aistudio|vertex forces it.
 * Auth: --option auth=api-key|bearer|service-account forces it; else a
 *   JSON object is a service-account key, ya29.… is an OAuth token, anything
 *   else an API key (x-goog-api-key).
 * URLs:
 *   AI Studio   {endpoint}/{v1beta}/models/{remote}:generateContent
 *               …:streamGenerateContent?alt=sse, …:batchEmbedContents
 *   Vertex key  {endpoint}/{v1}/publishers/google/models/{remote}:…
 *   Vertex auth {endpoint}/{v1}/projects/{project}/locations/{location}/
 *               publishers/google/models/{remote}:…   (embeddings: :predict)
 * Options: project (default: the key file's project_id), location (default
 *   global; a regional location on Google's own host uses
 *   https://{location}-aiplatform.googleapis.com, the multi-regions us and
 *   eu https://aiplatform.{location}.rep.googleapis.com), api_version (default
 *   v1beta / v1; the connection's api_version column also works),
 *   token_cache (directory of the shared token cache). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "gemini_xlate.h"
#include "google_auth.h"

#define CONF_ERR(err, ...) \
	proxy_error_set((err), 502, "upstream_error", "connection_misconfigured", NULL, __VA_ARGS__)

enum gauth_kind { AUTH_API_KEY, AUTH_BEARER, AUTH_SA };

struct gstate {
	enum gem_flavour fl;
	int b64;
	int64_t est;
	struct gem_stream *st;
};

/* Lower-cased host of an endpoint URL into out. */
static void endpoint_host(const char *ep, char *out, size_t n)
{
	const char *p = strstr(ep, "://");
	p = p ? p + 3 : ep;
	size_t i = 0;
	while (*p && *p != '/' && *p != ':' && *p != '?' && i + 1 < n)
		out[i++] = (char)tolower((unsigned char)*p++);
	out[i] = 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static int is_vertex_host(const char *h)
{
	return strcmp(h, "aiplatform.googleapis.com") == 0 || ends_with(h, "-aiplatform.googleapis.com") ||
	       (strncmp(h, "aiplatform.", 11) == 0 && ends_with(h, ".rep.googleapis.com"));
}

/* Only [a-z0-9-._:] (project ids, locations, versions): no URL tricks. */
static int plain_token(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != '_' && *s != ':')
			return 0;
	return 1;
}

static int decide_flavour(const struct route *r, const char *cred, enum gem_flavour *fl,
			  struct proxy_error *err)
{
	char *opt = route_option(r, "flavour");
	int rc = 0;
	char host[256];
	endpoint_host(r->endpoint ? r->endpoint : "", host, sizeof host);
	if (opt) {
		if (strcmp(opt, "aistudio") == 0 || strcmp(opt, "ai-studio") == 0 || strcmp(opt, "gemini") == 0)
			*fl = GEM_AISTUDIO;
		else if (strcmp(opt, "vertex") == 0)
			*fl = GEM_VERTEX;
		else {
			CONF_ERR(err, "connection %s: option flavour must be aistudio or vertex", r->conn_name);
			rc = -1;
		}
	} else if (strcmp(r->provider, "gemini") == 0) {
		*fl = GEM_AISTUDIO;
	} else if (strcmp(r->provider, "vertex") == 0) {
		*fl = GEM_VERTEX;
	} else if (strcmp(host, "generativelanguage.googleapis.com") == 0) {
		*fl = GEM_AISTUDIO;
	} else if (is_vertex_host(host)) {
		*fl = GEM_VERTEX;
	} else if (strncmp(cred, "AIza", 4) == 0) {
		*fl = GEM_AISTUDIO;
	} else if (strncmp(cred, "AQ.", 3) == 0 || strncmp(cred, "ya29.", 5) == 0 ||
		   gauth_is_sa_json(cred)) {
		*fl = GEM_VERTEX;
	} else {
		CONF_ERR(err,
			 "connection %s: cannot tell AI Studio from Vertex for this endpoint; set --option flavour=aistudio|vertex",
			 r->conn_name);
		rc = -1;
	}
	free(opt);
	return rc;
}

static int decide_auth(const struct route *r, const char *cred, enum gauth_kind *k,
		       struct proxy_error *err)
{
	char *opt = route_option(r, "auth");
	int rc = 0;
	if (opt) {
		if (strcmp(opt, "api-key") == 0 || strcmp(opt, "key") == 0)
			*k = AUTH_API_KEY;
		else if (strcmp(opt, "bearer") == 0 || strcmp(opt, "oauth") == 0)
			*k = AUTH_BEARER;
		else if (strcmp(opt, "service-account") == 0 || strcmp(opt, "sa") == 0)
			*k = AUTH_SA;
		else {
			CONF_ERR(err, "connection %s: option auth must be api-key, bearer or service-account",
				 r->conn_name);
			rc = -1;
		}
	} else if (gauth_is_sa_json(cred)) {
		*k = AUTH_SA;
	} else if (strncmp(cred, "ya29.", 5) == 0) {
		*k = AUTH_BEARER;
	} else {
		*k = AUTH_API_KEY;
	}
	free(opt);
	return rc;
}

/* A key or token goes into a header: no control characters. */
static int header_safe(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* The URL up to and including "models/{remote}". */
static int build_url(const struct route *r, enum gem_flavour fl, enum gauth_kind k,
		     const struct gauth_sa *sa, struct buf *url, struct proxy_error *err)
{
	char *ver = route_option(r, "api_version");
	char *project = route_option(r, "project");
	char *location = route_option(r, "location");
	int rc = -1;
	const char *v = ver ? ver : (r->api_version && *r->api_version ? r->api_version : NULL);
	if (!v)
		v = fl == GEM_AISTUDIO ? "v1beta" : "v1";
	if (!plain_token(v, 16)) {
		CONF_ERR(err, "connection %s: bad api_version", r->conn_name);
		goto out;
	}
	const char *ep = r->endpoint && *r->endpoint
				 ? r->endpoint
				 : (fl == GEM_AISTUDIO ? "https://generativelanguage.googleapis.com"
						       : "https://aiplatform.googleapis.com");
	const char *remote = r->remote ? r->remote : "";
	if (fl == GEM_AISTUDIO && strncmp(remote, "models/", 7) == 0)
		remote += 7;
	if (!*remote) {
		CONF_ERR(err, "connection %s: the model has no remote name", r->conn_name);
		goto out;
	}
	if (fl == GEM_VERTEX && k != AUTH_API_KEY) {
		const char *proj = project ? project : (sa ? sa->project_id : NULL);
		const char *loc = location ? location : "global";
		if (!proj) {
			CONF_ERR(err, "connection %s: Vertex with an OAuth token needs --option project=…",
				 r->conn_name);
			goto out;
		}
		if (!plain_token(loc, 64) || strchr(loc, ':') || strchr(loc, '.')) {
			CONF_ERR(err, "connection %s: bad location", r->conn_name);
			goto out;
		}
		char host[256];
		endpoint_host(ep, host, sizeof host);
		if (strcmp(loc, "global") != 0 && strcmp(host, "aiplatform.googleapis.com") == 0) {
			/* multi-region locations have hosts of their own
			 * (aiplatform.us.rep.googleapis.com), regions a prefix */
			if (strcmp(loc, "us") == 0 || strcmp(loc, "eu") == 0)
				buf_printf(url, "https://aiplatform.%s.rep.googleapis.com", loc);
			else
				buf_printf(url, "https://%s-aiplatform.googleapis.com", loc);
		} else {
			url_append_base(url, ep);
		}
		buf_printf(url, "/%s/projects/", v);
		url_append_segment(url, proj);
		buf_puts(url, "/locations/");
		url_append_segment(url, loc);
		buf_puts(url, "/publishers/google/models/");
	} else {
		url_append_base(url, ep);
		buf_printf(url, "/%s/%s", v, fl == GEM_VERTEX ? "publishers/google/models/" : "models/");
	}
	url_append_segment(url, remote);
	rc = 0;
out:
	free(ver);
	free(project);
	free(location);
	return rc;
}

static int google_build(struct xlate *x, cJSON *body, const char *credential,
			struct upstream_req *out, struct proxy_error *err)
{
	const struct route *r = x->route;
	enum gem_flavour fl;
	enum gauth_kind kind;
	struct gauth_sa sa = {0};
	int have_sa = 0, rc = -1;
	char *token = NULL, *cachedir = NULL, *cred = NULL;
	cJSON *req = NULL;
	char e[256];

	/* trim: keys pasted from files often end in a newline */
	const char *cs = credential ? credential : "";
	while (*cs == ' ' || *cs == '\t' || *cs == '\r' || *cs == '\n')
		cs++;
	size_t cl = strlen(cs);
	while (cl && (cs[cl - 1] == ' ' || cs[cl - 1] == '\t' || cs[cl - 1] == '\r' || cs[cl - 1] == '\n'))
		cl--;
	cred = xstrndup(cs, cl);

	if (decide_flavour(r, cred, &fl, err) < 0 || decide_auth(r, cred, &kind, err) < 0)
		goto out;

	struct gstate *gs = xcalloc(1, sizeof *gs);
	gs->fl = fl;
	x->state = gs;

	/* translate first: a bad request is a 400 without any token traffic */
	if (x->op == OP_CHAT) {
		if (gem_chat_request(body, fl, &req, err) < 0)
			goto out;
		if (x->stream)
			gs->st = gem_stream_new(x->alias, wall_s(), x->client_wants_usage);
	} else {
		const char *remote = r->remote ? r->remote : "";
		if (strncmp(remote, "models/", 7) == 0)
			remote += 7;
		if (gem_embed_request(body, fl, remote, &req, &gs->b64, &gs->est, err) < 0)
			goto out;
	}

	if (kind == AUTH_SA) {
		if (gauth_sa_parse(cred, &sa, e, sizeof e) < 0) {
			CONF_ERR(err, "connection %s: %s", r->conn_name, e);
			goto out;
		}
		have_sa = 1;
	} else if (!header_safe(cred)) {
		CONF_ERR(err, "connection %s: the credential is empty or malformed", r->conn_name);
		goto out;
	}

	if (build_url(r, fl, kind, have_sa ? &sa : NULL, &out->url, err) < 0)
		goto out;
	if (x->op == OP_EMBEDDINGS)
		buf_puts(&out->url, fl == GEM_AISTUDIO ? ":batchEmbedContents" : ":predict");
	else if (x->stream)
		buf_puts(&out->url, ":streamGenerateContent?alt=sse");
	else
		buf_puts(&out->url, ":generateContent");
	out->is_stream = x->op == OP_CHAT && x->stream;

	if (kind == AUTH_SA) {
		char *opt = route_option(r, "token_cache");
		cachedir = gauth_cache_dir(opt);
		free(opt);
		if (gauth_token(&sa, r->conn_id, x->master, cachedir, &token, err) < 0)
			goto out;
	}
	out->headers = header_add(out->headers, "Content-Type", "application/json");
	if (kind == AUTH_API_KEY) {
		out->headers = header_add(out->headers, "x-goog-api-key", cred);
	} else {
		out->headers = header_add_bearer(out->headers, kind == AUTH_SA ? token : cred);
	}
	char *s = cJSON_PrintUnformatted(req);
	if (!s)
		fatal("out of memory");
	buf_puts(&out->body, s);
	cJSON_free(s);
	rc = 0;
out:
	if (have_sa)
		gauth_sa_free(&sa);
	free_secret(token);
	free_secret(cred);
	free(cachedir);
	cJSON_Delete(req);
	return rc;
}

static int google_response(struct xlate *x, const char *body, size_t len, struct buf *out,
			   struct proxy_error *err)
{
	struct gstate *gs = x->state;
	cJSON *j = cJSON_ParseWithLength(body, len);
	cJSON *res = NULL;
	int rc;
	if (!j || !gs) {
		cJSON_Delete(j);
		proxy_error_set(err, 502, "upstream_error", "bad_upstream_response", NULL,
				"the upstream answer is not JSON");
		return -1;
	}
	struct usage u = {0};
	if (x->op == OP_CHAT)
		rc = gem_chat_response(j, x->alias, wall_s(), &res, &u, err);
	else
		rc = gem_embed_response(j, gs->fl, x->alias, gs->b64, gs->est, &res, &u, err);
	if (rc == 0) {
		char *s = cJSON_PrintUnformatted(res);
		buf_puts(out, s ? s : "{}");
		cJSON_free(s);
		if (u.have)
			x->usage = u;
	}
	cJSON_Delete(res);
	cJSON_Delete(j);
	return rc;
}

static int google_stream_event(struct xlate *x, const char *data, size_t len, struct buf *out,
			       struct proxy_error *err)
{
	struct gstate *gs = x->state;
	if (!gs || !gs->st) {
		proxy_error_set(err, 502, "upstream_error", "bad_upstream_response", NULL,
				"unexpected stream from the upstream");
		return -1;
	}
	struct usage u = x->usage;
	int rc = gem_stream_event(gs->st, data, len, out, &u, err);
	if (u.have)
		x->usage = u;
	if (rc < 0)
		return -1;
	if (rc == 1)
		x->done = 1;
	return 0;
}

static int google_stream_end(struct xlate *x, struct buf *out)
{
	struct gstate *gs = x->state;
	if (!gs || !gs->st)
		return -1;
	if (gem_stream_end(gs->st, out) < 0)
		return -1;
	x->done = 1;
	return 0;
}

static void google_error(struct xlate *x, long status, const char *body, size_t len,
			 struct proxy_error *out)
{
	const struct route *r = x->route;
	gem_error_map(status, body, len, r ? r->conn_name : NULL, r ? r->remote : NULL, out);
}

static void google_free_state(struct xlate *x)
{
	struct gstate *gs = x->state;
	if (!gs)
		return;
	gem_stream_free(gs->st);
	free(gs);
	x->state = NULL;
}

const struct adapter adapter_google = {
	.name = "google",
	.build = google_build,
	.response = google_response,
	.stream_event = google_stream_event,
	.stream_end = google_stream_end,
	.error = google_error,
	.free_state = google_free_state,
};
