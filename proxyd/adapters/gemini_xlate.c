/* gemini_xlate.c - see gemini_xlate.h.  OpenAI <-> Gemini JSON, no I/O. */
#include "gemini_xlate.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define BAD(err, field, ...) \
	proxy_error_set((err), 400, "invalid_request_error", "invalid_request", (field), __VA_ARGS__)
#define UPSTREAM_BAD(err, ...) \
	proxy_error_set((err), 502, "upstream_error", "bad_upstream_response", NULL, __VA_ARGS__)

#define TOOL_ID_RANDOM_CHARS 24

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static const cJSON *get(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNull(v) ? NULL : v;
}

static const char *get_str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t get_i64(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0 ||
	    v->valuedouble > 9e15)
		return 0;
	return (int64_t)v->valuedouble;
}

static cJSON *add_obj(cJSON *parent, const char *k)
{
	cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, k);
	if (!o) {
		o = cJSON_CreateObject();
		cJSON_AddItemToObject(parent, k, o);
	}
	return o;
}

static void add_dup(cJSON *parent, const char *k, const cJSON *v)
{
	cJSON_AddItemToObject(parent, k, cJSON_Duplicate(v, 1));
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 (with padding) of n bytes appended to out. */
static void b64_encode(struct buf *out, const unsigned char *p, size_t n)
{
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		char q[4] = {b64chars[p[i] >> 2], b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
			     b64chars[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], b64chars[p[i + 2] & 63]};
		buf_append(out, q, 4);
	}
	if (n - i == 1) {
		char q[4] = {b64chars[p[i] >> 2], b64chars[(p[i] & 3) << 4], '=', '='};
		buf_append(out, q, 4);
	} else if (n - i == 2) {
		char q[4] = {b64chars[p[i] >> 2], b64chars[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
			     b64chars[(p[i + 1] & 15) << 2], '='};
		buf_append(out, q, 4);
	}
}

static int is_b64_text(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=' && *s != '-' &&
		    *s != '_')
			return 0;
	return 1;
}

/* ------------------------------------------------------------------ */
/* JSON Schema -> Gemini Schema                                        */

struct sctx {
	const cJSON *root;
	int nodes;
	int ordering;
	const char *where;
	struct proxy_error *err;
	int failed;
};

/* Resolves a local JSON pointer ("#", "#/$defs/X", "#/definitions/X", ...)
 * against the root schema; NULL when it does not resolve. */
static const cJSON *resolve_ref(const cJSON *root, const char *ref)
{
	if (ref[0] != '#')
		return NULL;
	const cJSON *cur = root;
	const char *p = ref + 1;
	char tok[256];
	while (*p) {
		if (*p != '/')
			return NULL;
		p++;
		size_t n = 0;
		while (*p && *p != '/') {
			char c = *p++;
			if (c == '~' && *p == '0') {
				c = '~';
				p++;
			} else if (c == '~' && *p == '1') {
				c = '/';
				p++;
			}
			if (n + 1 >= sizeof tok)
				return NULL;
			tok[n++] = c;
		}
		tok[n] = 0;
		if (!cJSON_IsObject(cur))
			return NULL;
		cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
		if (!cur)
			return NULL;
	}
	return cur;
}

static cJSON *clean(struct sctx *c, const cJSON *s, int depth, int refdepth);

static void fail(struct sctx *c, const char *fmt, const char *arg)
{
	if (c->failed)
		return;
	c->failed = 1;
	BAD(c->err, NULL, fmt, c->where, arg);
}

/* Merges the keys of src into dst where dst lacks them; properties and
 * required are unioned (allOf, single-branch anyOf). */
static void merge_schema(cJSON *dst, const cJSON *src)
{
	const cJSON *kv;
	cJSON_ArrayForEach(kv, src)
	{
		cJSON *have = cJSON_GetObjectItemCaseSensitive(dst, kv->string);
		if (!have) {
			add_dup(dst, kv->string, kv);
		} else if (strcmp(kv->string, "properties") == 0 && cJSON_IsObject(have)) {
			const cJSON *p;
			cJSON_ArrayForEach(p, kv) if (!cJSON_GetObjectItemCaseSensitive(have, p->string))
				add_dup(have, p->string, p);
		} else if (strcmp(kv->string, "required") == 0 && cJSON_IsArray(have)) {
			const cJSON *r;
			cJSON_ArrayForEach(r, kv) cJSON_AddItemToArray(have, cJSON_Duplicate(r, 1));
		}
	}
}

static int is_null_schema(const cJSON *s)
{
	const char *t = get_str(s, "type");
	return t && strcmp(t, "null") == 0 && cJSON_GetArraySize(s) == 1;
}

/* Cleans a list of schemas (anyOf/oneOf); null branches set *nullable. */
static cJSON *clean_branches(struct sctx *c, const cJSON *arr, int depth, int refdepth,
			     int *nullable)
{
	cJSON *out = cJSON_CreateArray();
	const cJSON *b;
	cJSON_ArrayForEach(b, arr)
	{
		cJSON *cb = clean(c, b, depth + 1, refdepth);
		if (!cb)
			break;
		if (is_null_schema(cb)) {
			*nullable = 1;
			cJSON_Delete(cb);
			continue;
		}
		const cJSON *nb = cJSON_GetObjectItemCaseSensitive(cb, "nullable");
		if (cJSON_IsTrue(nb))
			*nullable = 1;
		cJSON_AddItemToArray(out, cb);
	}
	return out;
}

static const char *const copy_keys[] = {
	"title", "description", "nullable", "minItems", "maxItems", "minProperties", "maxProperties",
	"minLength", "maxLength", "minimum", "maximum", "pattern", "example", "default", NULL};

/* One schema node.  Returns a new object, or NULL after fail(). */
/* Whether a tool-call id is one Gemini issued.  The ids this proxy mints
 * (call_..., when Gemini gave none) and ids from other providers' history
 * are not sent back: models before Gemini 3 reject an id they never gave. */
static int gemini_id(const char *id)
{
	return id && id[0] && strncmp(id, "call_", 5) != 0;
}

static cJSON *clean(struct sctx *c, const cJSON *s, int depth, int refdepth)
{
	if (c->failed)
		return NULL;
	if (depth > GEM_SCHEMA_MAX_DEPTH) {
		fail(c, "%s: the JSON schema is nested too deeply%s", "");
		return NULL;
	}
	if (++c->nodes > GEM_SCHEMA_MAX_NODES) {
		fail(c, "%s: the JSON schema is too large (after $ref inlining)%s", "");
		return NULL;
	}
	if (!cJSON_IsObject(s))
		return cJSON_CreateObject(); /* true / {} / junk: any value */

	const char *ref = get_str(s, "$ref");
	if (ref) {
		const cJSON *target = resolve_ref(c->root, ref);
		if (!target) {
			fail(c, "%s: unsupported or unresolvable $ref \"%.100s\"", ref);
			return NULL;
		}
		cJSON *r;
		if (refdepth >= GEM_REF_MAX_DEPTH) {
			/* a recursive schema: Gemini cannot express it, cut it
			 * off with "any object" at a fixed depth */
			r = cJSON_CreateObject();
			cJSON_AddStringToObject(r, "type", "object");
		} else {
			r = clean(c, target, depth + 1, refdepth + 1);
			if (!r)
				return NULL;
		}
		const char *d = get_str(s, "description");
		if (d && !cJSON_GetObjectItemCaseSensitive(r, "description"))
			cJSON_AddStringToObject(r, "description", d);
		return r;
	}

	cJSON *out = cJSON_CreateObject();
	cJSON *branches = NULL; /* pending anyOf */
	int nullable = 0;
	const cJSON *kv;
	cJSON_ArrayForEach(kv, s)
	{
		const char *k = kv->string;
		if (c->failed)
			break;
		if (strcmp(k, "type") == 0) {
			if (cJSON_IsString(kv)) {
				add_dup(out, "type", kv);
			} else if (cJSON_IsArray(kv)) {
				cJSON *types = cJSON_CreateArray();
				const cJSON *t;
				cJSON_ArrayForEach(t, kv)
				{
					if (!cJSON_IsString(t))
						continue;
					if (strcmp(t->valuestring, "null") == 0)
						nullable = 1;
					else
						cJSON_AddItemToArray(types, cJSON_CreateString(t->valuestring));
				}
				int nt = cJSON_GetArraySize(types);
				if (nt == 1) {
					cJSON_AddStringToObject(out, "type", cJSON_GetArrayItem(types, 0)->valuestring);
				} else if (nt > 1 && !branches) {
					branches = cJSON_CreateArray();
					cJSON_ArrayForEach(t, types)
					{
						cJSON *b = cJSON_CreateObject();
						cJSON_AddStringToObject(b, "type", t->valuestring);
						cJSON_AddItemToArray(branches, b);
					}
				}
				cJSON_Delete(types);
			}
		} else if (strcmp(k, "const") == 0) {
			/* Gemini enums are strings only: a non-string const
			 * cannot be expressed and is dropped */
			if (cJSON_IsString(kv) && !cJSON_GetObjectItemCaseSensitive(s, "enum")) {
				cJSON *e = cJSON_AddArrayToObject(out, "enum");
				cJSON_AddItemToArray(e, cJSON_CreateString(kv->valuestring));
			}
		} else if (strcmp(k, "enum") == 0 && cJSON_IsArray(kv)) {
			cJSON *e = cJSON_CreateArray();
			int ok = 1;
			const cJSON *v;
			cJSON_ArrayForEach(v, kv)
			{
				if (cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]))
					nullable = 1; /* Gemini refuses "" in an enum */
				else if (cJSON_IsString(v))
					cJSON_AddItemToArray(e, cJSON_CreateString(v->valuestring));
				else
					ok = 0;
			}
			if (ok && cJSON_GetArraySize(e) > 0)
				cJSON_AddItemToObject(out, "enum", e);
			else
				cJSON_Delete(e); /* non-string enum: not expressible */
		} else if ((strcmp(k, "anyOf") == 0 || strcmp(k, "oneOf") == 0) && cJSON_IsArray(kv)) {
			cJSON *b = clean_branches(c, kv, depth, refdepth, &nullable);
			cJSON_Delete(branches);
			branches = b;
		} else if (strcmp(k, "allOf") == 0 && cJSON_IsArray(kv)) {
			const cJSON *b;
			cJSON_ArrayForEach(b, kv)
			{
				cJSON *cb = clean(c, b, depth + 1, refdepth);
				if (!cb)
					break;
				merge_schema(out, cb);
				cJSON_Delete(cb);
			}
		} else if (strcmp(k, "properties") == 0 && cJSON_IsObject(kv)) {
			cJSON *props = cJSON_CreateObject();
			cJSON *order = cJSON_CreateArray();
			const cJSON *p;
			cJSON_ArrayForEach(p, kv)
			{
				cJSON *cp = clean(c, p, depth + 1, refdepth);
				if (!cp)
					break;
				cJSON_AddItemToObject(props, p->string, cp);
				cJSON_AddItemToArray(order, cJSON_CreateString(p->string));
			}
			cJSON_AddItemToObject(out, "properties", props);
			if (c->ordering && cJSON_GetArraySize(order) > 1 &&
			    !cJSON_GetObjectItemCaseSensitive(s, "propertyOrdering"))
				cJSON_AddItemToObject(out, "propertyOrdering", order);
			else
				cJSON_Delete(order);
		} else if (strcmp(k, "required") == 0 && cJSON_IsArray(kv)) {
			cJSON *r = cJSON_CreateArray();
			const cJSON *v;
			const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
			cJSON_ArrayForEach(v, kv)
			{
				if (!cJSON_IsString(v))
					continue;
				if (cJSON_IsObject(props) &&
				    !cJSON_GetObjectItemCaseSensitive(props, v->valuestring))
					continue; /* Gemini rejects required names it cannot see */
				cJSON_AddItemToArray(r, cJSON_CreateString(v->valuestring));
			}
			cJSON_AddItemToObject(out, "required", r);
		} else if (strcmp(k, "items") == 0) {
			const cJSON *it = cJSON_IsArray(kv) ? cJSON_GetArrayItem(kv, 0) : kv;
			cJSON *ci = clean(c, it, depth + 1, refdepth);
			if (ci && cJSON_GetArraySize(ci) == 0)
				cJSON_AddStringToObject(ci, "type", "object");
			if (ci)
				cJSON_AddItemToObject(out, "items", ci);
		} else if (strcmp(k, "format") == 0 && cJSON_IsString(kv)) {
			if (strcmp(kv->valuestring, "enum") == 0 || strcmp(kv->valuestring, "date-time") == 0)
				add_dup(out, "format", kv);
		} else if ((strcmp(k, "exclusiveMinimum") == 0 || strcmp(k, "exclusiveMaximum") == 0) &&
			   cJSON_IsNumber(kv)) {
			const char *to = k[9] == 'M' && k[10] == 'i' ? "minimum" : "maximum";
			if (!cJSON_GetObjectItemCaseSensitive(s, to))
				add_dup(out, to, kv);
		} else if (strcmp(k, "examples") == 0 && cJSON_IsArray(kv)) {
			if (!cJSON_GetObjectItemCaseSensitive(s, "example") && cJSON_GetArraySize(kv) > 0)
				add_dup(out, "example", cJSON_GetArrayItem(kv, 0));
		} else if (strcmp(k, "propertyOrdering") == 0 && cJSON_IsArray(kv)) {
			add_dup(out, k, kv);
		} else {
			for (int i = 0; copy_keys[i]; i++)
				if (strcmp(k, copy_keys[i]) == 0 && !cJSON_GetObjectItemCaseSensitive(out, k))
					add_dup(out, k, kv);
			/* everything else ($schema, additionalProperties,
			 * strict, $defs, $id, $comment, not, if/then/else,
			 * patternProperties, ...) has no Gemini equivalent */
		}
	}
	if (c->failed) {
		cJSON_Delete(branches);
		cJSON_Delete(out);
		return NULL;
	}
	if (branches) {
		int nb = cJSON_GetArraySize(branches);
		if (nb == 1) {
			merge_schema(out, cJSON_GetArrayItem(branches, 0));
			cJSON_Delete(branches);
		} else if (nb > 1) {
			cJSON_AddItemToObject(out, "anyOf", branches);
		} else {
			cJSON_Delete(branches);
		}
	}
	if (nullable && !cJSON_GetObjectItemCaseSensitive(out, "nullable"))
		cJSON_AddBoolToObject(out, "nullable", 1);
	if (cJSON_GetObjectItemCaseSensitive(out, "properties") &&
	    !cJSON_GetObjectItemCaseSensitive(out, "type"))
		cJSON_AddStringToObject(out, "type", "object");
	/* Gemini wants a type on every described node and items on every
	 * array ("...items: missing field"): strings are the usual intent */
	const char *type = get_str(out, "type");
	if (!type && cJSON_GetArraySize(out) > 0 && !cJSON_GetObjectItemCaseSensitive(out, "anyOf"))
		cJSON_AddStringToObject(out, "type", "string");
	else if (type && strcmp(type, "array") == 0 && !cJSON_GetObjectItemCaseSensitive(out, "items"))
		cJSON_AddItemToObject(out, "items", cJSON_Parse("{\"type\":\"string\"}"));
	return out;
}

cJSON *gem_clean_schema(const cJSON *schema, int property_ordering, const char *where,
			struct proxy_error *err)
{
	struct sctx c = {.root = schema, .ordering = property_ordering, .where = where, .err = err};
	cJSON *r = clean(&c, schema, 0, 0);
	if (c.failed) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* chat request                                                        */

struct callmap {
	const char **id;
	const char **name;
	size_t n, cap;
};

static void callmap_add(struct callmap *m, const char *id, const char *name)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 8;
		m->id = xreallocarray(m->id, m->cap, sizeof *m->id);
		m->name = xreallocarray(m->name, m->cap, sizeof *m->name);
	}
	m->id[m->n] = id;
	m->name[m->n] = name;
	m->n++;
}

static const char *callmap_find(const struct callmap *m, const char *id)
{
	for (size_t i = m->n; i-- > 0;)
		if (strcmp(m->id[i], id) == 0)
			return m->name[i];
	return NULL;
}

/* Splits "<id>__thought__<sig>" (sig may be absent): base id into out,
 * returns the signature or NULL. */
static const char *split_tool_id(const char *id, struct buf *base)
{
	const char *sep = strstr(id, GEM_THOUGHT_SEP);
	buf_reset(base);
	if (!sep) {
		buf_puts(base, id);
		return NULL;
	}
	buf_append(base, id, (size_t)(sep - id));
	const char *sig = sep + strlen(GEM_THOUGHT_SEP);
	return *sig ? sig : NULL;
}

static const char *mime_from_ext(const char *url)
{
	static const struct {
		const char *ext, *mime;
	} t[] = {{".png", "image/png"},   {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
		 {".webp", "image/webp"}, {".gif", "image/gif"},  {".heic", "image/heic"},
		 {".heif", "image/heif"}, {".pdf", "application/pdf"}};
	size_t n = strcspn(url, "?#");
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		size_t el = strlen(t[i].ext);
		if (n >= el && ascii_ncasecmp(url + n - el, t[i].ext, el) == 0)
			return t[i].mime;
	}
	return "image/jpeg";
}

/* "data:<mime>;base64,<data>" -> inlineData part.  NULL when malformed. */
static cJSON *data_url_part(const char *url)
{
	if (strncmp(url, "data:", 5) != 0)
		return NULL;
	const char *semi = strstr(url, ";base64,");
	if (!semi || semi == url + 5)
		return NULL;
	const char *data = semi + 8;
	if (!is_b64_text(data))
		return NULL;
	char *mime = xstrndup(url + 5, (size_t)(semi - (url + 5)));
	cJSON *part = cJSON_CreateObject();
	cJSON *blob = cJSON_AddObjectToObject(part, "inlineData");
	cJSON_AddStringToObject(blob, "mimeType", mime);
	cJSON_AddStringToObject(blob, "data", data);
	free(mime);
	return part;
}

static cJSON *text_part(const char *s)
{
	cJSON *p = cJSON_CreateObject();
	cJSON_AddStringToObject(p, "text", s);
	return p;
}

/* Content of a system/developer/assistant/tool message as one string
 * (string, or an array of text parts joined).  -1 on other part types. */
static int content_text(const cJSON *content, struct buf *out, int mi, struct proxy_error *err)
{
	if (!content)
		return 0;
	if (cJSON_IsString(content)) {
		buf_puts(out, content->valuestring);
		return 0;
	}
	if (!cJSON_IsArray(content)) {
		BAD(err, "messages", "messages[%d].content must be a string or an array", mi);
		return -1;
	}
	const cJSON *p;
	int j = 0;
	cJSON_ArrayForEach(p, content)
	{
		const char *type = get_str(p, "type");
		const char *t = get_str(p, "text");
		if (!t && type && strcmp(type, "refusal") == 0)
			t = get_str(p, "refusal");
		if (!type || (strcmp(type, "text") != 0 && strcmp(type, "refusal") != 0) || !t) {
			BAD(err, "messages", "messages[%d].content[%d]: only text parts are allowed here", mi, j);
			return -1;
		}
		buf_puts(out, t);
		j++;
	}
	return 0;
}

/* User content -> array of Gemini parts. */
static int user_parts(const cJSON *content, cJSON *parts, int mi, struct proxy_error *err)
{
	if (cJSON_IsString(content)) {
		if (*content->valuestring)
			cJSON_AddItemToArray(parts, text_part(content->valuestring));
		return 0;
	}
	if (!cJSON_IsArray(content)) {
		BAD(err, "messages", "messages[%d].content must be a string or an array", mi);
		return -1;
	}
	const cJSON *p;
	int j = -1;
	cJSON_ArrayForEach(p, content)
	{
		j++;
		const char *type = get_str(p, "type");
		if (!type) {
			BAD(err, "messages", "messages[%d].content[%d].type is missing", mi, j);
			return -1;
		}
		if (strcmp(type, "text") == 0) {
			const char *t = get_str(p, "text");
			if (!t) {
				BAD(err, "messages", "messages[%d].content[%d].text must be a string", mi, j);
				return -1;
			}
			if (*t)
				cJSON_AddItemToArray(parts, text_part(t));
		} else if (strcmp(type, "image_url") == 0) {
			const cJSON *iu = get(p, "image_url");
			const char *url = cJSON_IsString(iu) ? iu->valuestring : get_str(iu, "url");
			if (!url) {
				BAD(err, "messages", "messages[%d].content[%d].image_url.url is missing", mi, j);
				return -1;
			}
			if (strncmp(url, "data:", 5) == 0) {
				cJSON *part = data_url_part(url);
				if (!part) {
					BAD(err, "messages",
					    "messages[%d].content[%d].image_url: only base64 data URLs are supported", mi, j);
					return -1;
				}
				cJSON_AddItemToArray(parts, part);
			} else if (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0 ||
				   strncmp(url, "gs://", 5) == 0) {
				cJSON *part = cJSON_CreateObject();
				cJSON *fd = cJSON_AddObjectToObject(part, "fileData");
				cJSON_AddStringToObject(fd, "mimeType", mime_from_ext(url));
				cJSON_AddStringToObject(fd, "fileUri", url);
				cJSON_AddItemToArray(parts, part);
			} else {
				BAD(err, "messages",
				    "messages[%d].content[%d].image_url.url must be an http(s), gs:// or data: URL", mi, j);
				return -1;
			}
		} else if (strcmp(type, "input_audio") == 0) {
			const cJSON *ia = get(p, "input_audio");
			const char *data = get_str(ia, "data"), *fmt = get_str(ia, "format");
			if (!data || !fmt || !is_b64_text(data)) {
				BAD(err, "messages", "messages[%d].content[%d].input_audio needs data and format", mi, j);
				return -1;
			}
			cJSON *part = cJSON_CreateObject();
			cJSON *blob = cJSON_AddObjectToObject(part, "inlineData");
			char mime[64];
			snprintf(mime, sizeof mime, "audio/%.40s", fmt);
			cJSON_AddStringToObject(blob, "mimeType", mime);
			cJSON_AddStringToObject(blob, "data", data);
			cJSON_AddItemToArray(parts, part);
		} else if (strcmp(type, "file") == 0) {
			const cJSON *f = get(p, "file");
			const char *fdata = get_str(f, "file_data");
			cJSON *part = fdata ? data_url_part(fdata) : NULL;
			if (!part) {
				BAD(err, "messages",
				    "messages[%d].content[%d].file: only file_data as a base64 data URL is supported", mi, j);
				return -1;
			}
			cJSON_AddItemToArray(parts, part);
		} else {
			BAD(err, "messages", "messages[%d].content[%d]: part type \"%.40s\" is not supported", mi, j,
			    type);
			return -1;
		}
	}
	return 0;
}

/* Appends parts (consumed) to contents under role, merging with the last
 * content when it has the same role (Gemini wants alternating turns). */
static void push_turn(cJSON *contents, const char *role, cJSON *parts)
{
	if (cJSON_GetArraySize(parts) == 0) {
		cJSON_Delete(parts);
		return;
	}
	int n = cJSON_GetArraySize(contents);
	cJSON *last = n ? cJSON_GetArrayItem(contents, n - 1) : NULL;
	const char *lr = get_str(last, "role");
	if (lr && strcmp(lr, role) == 0) {
		cJSON *lp = cJSON_GetObjectItemCaseSensitive(last, "parts");
		cJSON *p;
		while ((p = cJSON_DetachItemFromArray(parts, 0)))
			cJSON_AddItemToArray(lp, p);
		cJSON_Delete(parts);
		return;
	}
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "role", role);
	cJSON_AddItemToObject(c, "parts", parts);
	cJSON_AddItemToArray(contents, c);
}

static int assistant_parts(const cJSON *m, int mi, enum gem_flavour fl, cJSON *parts,
			   struct callmap *calls, struct proxy_error *err)
{
	struct buf text, base;
	int rc = -1;
	buf_init(&text);
	buf_init(&base);
	if (content_text(get(m, "content"), &text, mi, err) < 0)
		goto out;
	if (text.len)
		cJSON_AddItemToArray(parts, text_part(text.data));
	const cJSON *tcs = get(m, "tool_calls");
	if (tcs && !cJSON_IsArray(tcs)) {
		BAD(err, "messages", "messages[%d].tool_calls must be an array", mi);
		goto out;
	}
	const cJSON *tc;
	int j = -1;
	cJSON_ArrayForEach(tc, tcs)
	{
		j++;
		const char *id = get_str(tc, "id");
		const cJSON *fn = get(tc, "function");
		const char *name = get_str(fn, "name");
		const char *args = get_str(fn, "arguments");
		const char *type = get_str(tc, "type");
		if (!id || !name || (type && strcmp(type, "function") != 0)) {
			BAD(err, "messages", "messages[%d].tool_calls[%d] needs id, type \"function\" and function.name",
			    mi, j);
			goto out;
		}
		cJSON *a = NULL;
		if (args && *args) {
			a = cJSON_ParseWithOpts(args, NULL, 1); /* all of it, nothing after */
			if (!cJSON_IsObject(a)) {
				cJSON_Delete(a);
				BAD(err, "messages", "messages[%d].tool_calls[%d].function.arguments is not a JSON object",
				    mi, j);
				goto out;
			}
		} else {
			a = cJSON_CreateObject();
		}
		const char *sig = split_tool_id(id, &base);
		cJSON *part = cJSON_CreateObject();
		cJSON *call = cJSON_AddObjectToObject(part, "functionCall");
		if (fl == GEM_AISTUDIO && gemini_id(base.data))
			cJSON_AddStringToObject(call, "id", base.data);
		cJSON_AddStringToObject(call, "name", name);
		cJSON_AddItemToObject(call, "args", a);
		if (sig)
			cJSON_AddStringToObject(part, "thoughtSignature", sig);
		cJSON_AddItemToArray(parts, part);
		callmap_add(calls, id, name);
	}
	rc = 0;
out:
	buf_free(&text);
	buf_free(&base);
	return rc;
}

static int tool_part(const cJSON *m, int mi, enum gem_flavour fl, cJSON *parts,
		     const struct callmap *calls, struct proxy_error *err)
{
	const char *role = get_str(m, "role");
	const char *id = get_str(m, "tool_call_id");
	const char *name = NULL;
	int rc = -1;
	struct buf text, base;
	buf_init(&text);
	buf_init(&base);
	if (strcmp(role, "function") == 0) {
		name = get_str(m, "name");
	} else if (id) {
		name = callmap_find(calls, id);
		if (!name)
			name = get_str(m, "name");
	}
	if (!name) {
		if (id)
			BAD(err, "messages",
			    "messages[%d].tool_call_id \"%.80s\" does not match any earlier assistant tool call", mi, id);
		else
			BAD(err, "messages", "messages[%d] (role %s) needs tool_call_id", mi, role);
		goto out;
	}
	if (content_text(get(m, "content"), &text, mi, err) < 0)
		goto out;
	cJSON *resp = cJSON_ParseWithOpts(text.data, NULL, 1); /* JSON and only JSON */
	if (!cJSON_IsObject(resp)) {
		/* Struct must be an object: wrap plain text / non-object JSON */
		cJSON_Delete(resp);
		resp = cJSON_CreateObject();
		cJSON_AddStringToObject(resp, "content", text.data);
	}
	cJSON *part = cJSON_CreateObject();
	cJSON *fr = cJSON_AddObjectToObject(part, "functionResponse");
	if (fl == GEM_AISTUDIO && id) {
		split_tool_id(id, &base);
		if (gemini_id(base.data))
			cJSON_AddStringToObject(fr, "id", base.data);
	}
	cJSON_AddStringToObject(fr, "name", name);
	cJSON_AddItemToObject(fr, "response", resp);
	cJSON_AddItemToArray(parts, part);
	rc = 0;
out:
	buf_free(&text);
	buf_free(&base);
	return rc;
}

static int convert_messages(const cJSON *msgs, enum gem_flavour fl, cJSON *req,
			    struct proxy_error *err)
{
	struct callmap calls = {0};
	cJSON *contents = cJSON_CreateArray();
	cJSON *sys = cJSON_CreateArray();
	int rc = -1;
	if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
		BAD(err, "messages", "messages must be a non-empty array");
		goto out;
	}
	if (cJSON_GetArraySize(msgs) > GEM_MAX_MESSAGES) {
		BAD(err, "messages", "too many messages (at most %d)", GEM_MAX_MESSAGES);
		goto out;
	}
	const cJSON *m;
	int mi = -1;
	cJSON_ArrayForEach(m, msgs)
	{
		mi++;
		const char *role = get_str(m, "role");
		if (!cJSON_IsObject(m) || !role) {
			BAD(err, "messages", "messages[%d].role is missing", mi);
			goto out;
		}
		cJSON *parts = cJSON_CreateArray();
		int r;
		const char *grole = "user";
		if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
			struct buf t;
			buf_init(&t);
			r = content_text(get(m, "content"), &t, mi, err);
			if (r == 0 && t.len)
				cJSON_AddItemToArray(sys, text_part(t.data));
			buf_free(&t);
			cJSON_Delete(parts);
			if (r < 0)
				goto out;
			continue;
		} else if (strcmp(role, "user") == 0) {
			r = user_parts(get(m, "content"), parts, mi, err);
		} else if (strcmp(role, "assistant") == 0) {
			grole = "model";
			r = assistant_parts(m, mi, fl, parts, &calls, err);
		} else if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0) {
			r = tool_part(m, mi, fl, parts, &calls, err);
		} else {
			BAD(err, "messages", "messages[%d].role \"%.40s\" is not supported", mi, role);
			r = -1;
		}
		if (r < 0) {
			cJSON_Delete(parts);
			goto out;
		}
		push_turn(contents, grole, parts);
	}
	if (cJSON_GetArraySize(contents) == 0) {
		BAD(err, "messages", "messages must contain at least one user or assistant message with content");
		goto out;
	}
	cJSON_AddItemToObject(req, "contents", contents);
	contents = NULL;
	if (cJSON_GetArraySize(sys) > 0) {
		cJSON *si = cJSON_AddObjectToObject(req, "systemInstruction");
		cJSON_AddItemToObject(si, "parts", sys);
		sys = NULL;
	}
	rc = 0;
out:
	cJSON_Delete(contents);
	cJSON_Delete(sys);
	free(calls.id);
	free(calls.name);
	return rc;
}

static int convert_tools(const cJSON *tools, const cJSON *choice, cJSON *req,
			 struct proxy_error *err)
{
	char where[64];
	int ntools = 0;
	if (tools) {
		if (!cJSON_IsArray(tools)) {
			BAD(err, "tools", "tools must be an array");
			return -1;
		}
		cJSON *decls = cJSON_CreateArray();
		const cJSON *t;
		int i = -1;
		cJSON_ArrayForEach(t, tools)
		{
			i++;
			const char *type = get_str(t, "type");
			const cJSON *fn = get(t, "function");
			const char *name = get_str(fn, "name");
			if (!type || strcmp(type, "function") != 0 || !name) {
				cJSON_Delete(decls);
				BAD(err, "tools", "tools[%d]: only type \"function\" with function.name is supported", i);
				return -1;
			}
			cJSON *d = cJSON_CreateObject();
			cJSON_AddStringToObject(d, "name", name);
			const char *desc = get_str(fn, "description");
			if (desc)
				cJSON_AddStringToObject(d, "description", desc);
			const cJSON *params = get(fn, "parameters");
			if (params) {
				snprintf(where, sizeof where, "tools[%d].function.parameters", i);
				if (!cJSON_IsObject(params)) {
					cJSON_Delete(d);
					cJSON_Delete(decls);
					BAD(err, "tools", "%s must be an object", where);
					return -1;
				}
				cJSON *cs = gem_clean_schema(params, 0, where, err);
				if (!cs) {
					cJSON_Delete(d);
					cJSON_Delete(decls);
					err->param = "tools";
					return -1;
				}
				/* Gemini rejects an OBJECT with no properties: a
				 * function without arguments has no parameters */
				const cJSON *props = cJSON_GetObjectItemCaseSensitive(cs, "properties");
				const char *ty = get_str(cs, "type");
				if (ty && ascii_casecmp(ty, "object") == 0 &&
				    (!props || cJSON_GetArraySize(props) == 0))
					cJSON_Delete(cs);
				else
					cJSON_AddItemToObject(d, "parameters", cs);
			}
			cJSON_AddItemToArray(decls, d);
		}
		ntools = cJSON_GetArraySize(decls);
		if (ntools) {
			cJSON *ta = cJSON_AddArrayToObject(req, "tools");
			cJSON *to = cJSON_CreateObject();
			cJSON_AddItemToObject(to, "functionDeclarations", decls);
			cJSON_AddItemToArray(ta, to);
		} else {
			cJSON_Delete(decls);
		}
	}
	if (!choice)
		return 0;
	const char *mode = NULL, *fname = NULL;
	if (cJSON_IsString(choice)) {
		if (strcmp(choice->valuestring, "none") == 0)
			mode = "NONE";
		else if (strcmp(choice->valuestring, "auto") == 0)
			mode = "AUTO";
		else if (strcmp(choice->valuestring, "required") == 0)
			mode = "ANY";
	} else if (cJSON_IsObject(choice)) {
		const char *type = get_str(choice, "type");
		fname = get_str(get(choice, "function"), "name");
		if (type && strcmp(type, "function") == 0 && fname)
			mode = "ANY";
	}
	if (!mode) {
		BAD(err, "tool_choice", "tool_choice: only \"none\", \"auto\", \"required\" or a function are supported");
		return -1;
	}
	if (!ntools) {
		if (fname || strcmp(mode, "ANY") == 0) {
			BAD(err, "tool_choice", "tool_choice requires tools");
			return -1;
		}
		return 0; /* none / auto without tools: nothing to say */
	}
	cJSON *fcc = add_obj(add_obj(req, "toolConfig"), "functionCallingConfig");
	cJSON_AddStringToObject(fcc, "mode", mode);
	if (fname) {
		cJSON *a = cJSON_AddArrayToObject(fcc, "allowedFunctionNames");
		cJSON_AddItemToArray(a, cJSON_CreateString(fname));
	}
	return 0;
}

static int need_number(const cJSON *v, const char *name, struct proxy_error *err)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
		BAD(err, name, "%s must be a number", name);
		return -1;
	}
	return 0;
}

static int need_int(const cJSON *v, const char *name, double lo, double hi,
		    struct proxy_error *err)
{
	if (need_number(v, name, err) < 0)
		return -1;
	if (v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
		BAD(err, name, "%s must be an integer between %.0f and %.0f", name, lo, hi);
		return -1;
	}
	return 0;
}

/* Fields dropped without a word: they do not change what the model
 * produces (or are handled by the request path). */
static const char *const ignored_fields[] = {"model",    "stream",         "stream_options",
					     "user",     "store",          "metadata",
					     "parallel_tool_calls", "service_tier", "safety_identifier",
					     "prompt_cache_key", NULL};

static int known_field(const char *k)
{
	static const char *const handled[] = {
		"messages", "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens",
		"stop", "n", "seed", "presence_penalty", "frequency_penalty", "response_format", "tools",
		"tool_choice", "logit_bias", "logprobs", "top_logprobs", "modalities", "audio",
		"reasoning_effort", "prediction", "web_search_options", "functions", "function_call",
		"safety_settings", NULL};
	for (int i = 0; ignored_fields[i]; i++)
		if (strcmp(k, ignored_fields[i]) == 0)
			return 1;
	for (int i = 0; handled[i]; i++)
		if (strcmp(k, handled[i]) == 0)
			return 1;
	return 0;
}

static int convert_generation(const cJSON *oai, cJSON *req, struct proxy_error *err)
{
	cJSON *gc = cJSON_CreateObject();
	const cJSON *v;
	int rc = -1;

	if ((v = get(oai, "temperature"))) {
		if (need_number(v, "temperature", err) < 0)
			goto out;
		add_dup(gc, "temperature", v);
	}
	if ((v = get(oai, "top_p"))) {
		if (need_number(v, "top_p", err) < 0)
			goto out;
		add_dup(gc, "topP", v);
	}
	if ((v = get(oai, "top_k"))) {
		if (need_int(v, "top_k", 1, 1e9, err) < 0)
			goto out;
		add_dup(gc, "topK", v);
	}
	const cJSON *mt = get(oai, "max_completion_tokens");
	const char *mtname = "max_completion_tokens";
	if (!mt) {
		mt = get(oai, "max_tokens");
		mtname = "max_tokens";
	}
	if (mt) {
		if (need_int(mt, mtname, 1, 2147483647.0, err) < 0)
			goto out;
		add_dup(gc, "maxOutputTokens", mt);
	}
	if ((v = get(oai, "stop"))) {
		cJSON *ss = cJSON_CreateArray();
		if (cJSON_IsString(v)) {
			cJSON_AddItemToArray(ss, cJSON_CreateString(v->valuestring));
		} else if (cJSON_IsArray(v)) {
			const cJSON *s;
			cJSON_ArrayForEach(s, v)
			{
				if (!cJSON_IsString(s)) {
					cJSON_Delete(ss);
					BAD(err, "stop", "stop must be a string or an array of strings");
					goto out;
				}
				cJSON_AddItemToArray(ss, cJSON_CreateString(s->valuestring));
			}
		} else {
			cJSON_Delete(ss);
			BAD(err, "stop", "stop must be a string or an array of strings");
			goto out;
		}
		if (cJSON_GetArraySize(ss))
			cJSON_AddItemToObject(gc, "stopSequences", ss);
		else
			cJSON_Delete(ss);
	}
	if ((v = get(oai, "n"))) {
		if (need_int(v, "n", 1, GEM_MAX_CHOICES, err) < 0)
			goto out;
		if (v->valuedouble > 1)
			add_dup(gc, "candidateCount", v);
	}
	if ((v = get(oai, "seed"))) {
		if (need_int(v, "seed", -2147483648.0, 2147483647.0, err) < 0)
			goto out;
		add_dup(gc, "seed", v);
	}
	if ((v = get(oai, "presence_penalty"))) {
		if (need_number(v, "presence_penalty", err) < 0)
			goto out;
		add_dup(gc, "presencePenalty", v);
	}
	if ((v = get(oai, "frequency_penalty"))) {
		if (need_number(v, "frequency_penalty", err) < 0)
			goto out;
		add_dup(gc, "frequencyPenalty", v);
	}
	if ((v = get(oai, "response_format"))) {
		const char *type = get_str(v, "type");
		if (!type) {
			BAD(err, "response_format", "response_format.type is missing");
			goto out;
		}
		if (strcmp(type, "json_object") == 0) {
			cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
		} else if (strcmp(type, "json_schema") == 0) {
			cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
			const cJSON *js = get(v, "json_schema");
			const cJSON *schema = get(js, "schema");
			if (schema) {
				if (!cJSON_IsObject(schema)) {
					BAD(err, "response_format", "response_format.json_schema.schema must be an object");
					goto out;
				}
				cJSON *cs = gem_clean_schema(schema, 1, "response_format.json_schema.schema", err);
				if (!cs) {
					err->param = "response_format";
					goto out;
				}
				cJSON_AddItemToObject(gc, "responseSchema", cs);
			}
		} else if (strcmp(type, "text") != 0) {
			BAD(err, "response_format", "response_format.type \"%.40s\" is not supported", type);
			goto out;
		}
	}
	if ((v = get(oai, "reasoning_effort"))) {
		static const struct {
			const char *name;
			int budget;
		} efforts[] = {{"none", 0}, {"minimal", 0}, {"low", 1024}, {"medium", 8192}, {"high", 24576}};
		int budget = -1;
		for (size_t i = 0; cJSON_IsString(v) && i < sizeof efforts / sizeof efforts[0]; i++)
			if (strcmp(v->valuestring, efforts[i].name) == 0)
				budget = efforts[i].budget;
		if (budget < 0) {
			BAD(err, "reasoning_effort", "reasoning_effort must be none, minimal, low, medium or high");
			goto out;
		}
		cJSON *tc = cJSON_AddObjectToObject(gc, "thinkingConfig");
		cJSON_AddNumberToObject(tc, "thinkingBudget", budget);
	}
	if (cJSON_GetArraySize(gc) > 0) {
		cJSON_AddItemToObject(req, "generationConfig", gc);
		gc = NULL;
	}
	rc = 0;
out:
	cJSON_Delete(gc);
	return rc;
}

/* Fields that would change the answer and have no Gemini translation. */
static int reject_untranslatable(const cJSON *oai, struct proxy_error *err)
{
	const cJSON *v;
	const cJSON *kv;
	cJSON_ArrayForEach(kv, oai)
	{
		if (!known_field(kv->string)) {
			BAD(err, NULL, "unsupported parameter for a Google upstream: %.80s", kv->string);
			return -1;
		}
	}
	if ((v = get(oai, "logit_bias")) && !(cJSON_IsObject(v) && cJSON_GetArraySize(v) == 0)) {
		BAD(err, "logit_bias", "logit_bias is not supported by Google upstreams");
		return -1;
	}
	if ((v = get(oai, "logprobs")) && !cJSON_IsFalse(v)) {
		BAD(err, "logprobs", "logprobs is not supported by this proxy for Google upstreams");
		return -1;
	}
	if ((v = get(oai, "audio"))) {
		BAD(err, "audio", "audio output is not supported for Google upstreams");
		return -1;
	}
	if ((v = get(oai, "modalities"))) {
		const cJSON *m;
		int bad = !cJSON_IsArray(v);
		cJSON_ArrayForEach(m, v) if (!cJSON_IsString(m) || strcmp(m->valuestring, "text") != 0) bad = 1;
		if (bad) {
			BAD(err, "modalities", "modalities other than [\"text\"] are not supported for Google upstreams");
			return -1;
		}
	}
	static const char *const unsupported[] = {"prediction", "web_search_options", "functions",
						  "function_call", NULL};
	for (int i = 0; unsupported[i]; i++)
		if (get(oai, unsupported[i])) {
			BAD(err, unsupported[i], "%s is not supported for Google upstreams", unsupported[i]);
			return -1;
		}
	return 0;
}

int gem_chat_request(const cJSON *oai, enum gem_flavour fl, cJSON **out, struct proxy_error *err)
{
	*out = NULL;
	if (!cJSON_IsObject(oai)) {
		BAD(err, NULL, "the request body must be a JSON object");
		return -1;
	}
	if (reject_untranslatable(oai, err) < 0)
		return -1;
	cJSON *req = cJSON_CreateObject();
	if (convert_messages(get(oai, "messages"), fl, req, err) < 0)
		goto fail;
	if (convert_tools(get(oai, "tools"), get(oai, "tool_choice"), req, err) < 0)
		goto fail;
	const cJSON *ss = get(oai, "safety_settings");
	if (ss) {
		if (!cJSON_IsArray(ss)) {
			BAD(err, "safety_settings", "safety_settings must be an array");
			goto fail;
		}
		add_dup(req, "safetySettings", ss);
	}
	if (convert_generation(oai, req, err) < 0)
		goto fail;
	*out = req;
	return 0;
fail:
	cJSON_Delete(req);
	return -1;
}

/* ------------------------------------------------------------------ */
/* embeddings                                                          */

int gem_embed_request(const cJSON *oai, enum gem_flavour fl, const char *remote, cJSON **out,
		      int *b64, int64_t *est, struct proxy_error *err)
{
	*out = NULL;
	*b64 = 0;
	*est = 0;
	if (!cJSON_IsObject(oai)) {
		BAD(err, NULL, "the request body must be a JSON object");
		return -1;
	}
	const cJSON *kv;
	cJSON_ArrayForEach(kv, oai)
	{
		const char *k = kv->string;
		if (strcmp(k, "model") && strcmp(k, "input") && strcmp(k, "dimensions") &&
		    strcmp(k, "encoding_format") && strcmp(k, "user")) {
			BAD(err, NULL, "unsupported parameter for a Google upstream: %.80s", k);
			return -1;
		}
	}
	const cJSON *input = get(oai, "input");
	cJSON *texts = cJSON_CreateArray();
	if (cJSON_IsString(input)) {
		cJSON_AddItemToArray(texts, cJSON_CreateString(input->valuestring));
	} else if (cJSON_IsArray(input)) {
		const cJSON *s;
		cJSON_ArrayForEach(s, input)
		{
			if (!cJSON_IsString(s)) {
				cJSON_Delete(texts);
				BAD(err, "input", "input must be a string or an array of strings (token arrays are not supported)");
				return -1;
			}
			cJSON_AddItemToArray(texts, cJSON_CreateString(s->valuestring));
		}
	}
	int n = cJSON_GetArraySize(texts);
	/* one upstream call per request: Google's own per-call caps apply
	 * (AI Studio refuses "at most 100 requests can be in one batch") */
	int max = fl == GEM_AISTUDIO ? GEM_MAX_EMBED_AISTUDIO : GEM_MAX_EMBED_VERTEX;
	if (n == 0 || n > max) {
		cJSON_Delete(texts);
		BAD(err, "input", "input must hold 1 to %d strings for this model (send larger batches in parts)",
		    max);
		return -1;
	}
	const cJSON *dims = get(oai, "dimensions");
	if (dims && need_int(dims, "dimensions", 1, 65536, err) < 0) {
		cJSON_Delete(texts);
		return -1;
	}
	const char *enc = get_str(oai, "encoding_format");
	if (enc && strcmp(enc, "base64") == 0) {
		*b64 = 1;
	} else if (enc && strcmp(enc, "float") != 0) {
		cJSON_Delete(texts);
		BAD(err, "encoding_format", "encoding_format must be float or base64");
		return -1;
	}
	*est = estimate_tokens_json(texts);
	cJSON *req = cJSON_CreateObject();
	const cJSON *t;
	if (fl == GEM_AISTUDIO) {
		char *model = xasprintf("models/%s", remote);
		cJSON *reqs = cJSON_AddArrayToObject(req, "requests");
		cJSON_ArrayForEach(t, texts)
		{
			cJSON *r = cJSON_CreateObject();
			cJSON_AddStringToObject(r, "model", model);
			cJSON *content = cJSON_AddObjectToObject(r, "content");
			cJSON *parts = cJSON_AddArrayToObject(content, "parts");
			cJSON_AddItemToArray(parts, text_part(t->valuestring));
			if (dims)
				add_dup(r, "outputDimensionality", dims);
			cJSON_AddItemToArray(reqs, r);
		}
		free(model);
	} else {
		cJSON *inst = cJSON_AddArrayToObject(req, "instances");
		cJSON_ArrayForEach(t, texts)
		{
			cJSON *i = cJSON_CreateObject();
			cJSON_AddStringToObject(i, "content", t->valuestring);
			cJSON_AddItemToArray(inst, i);
		}
		if (dims) {
			cJSON *p = cJSON_AddObjectToObject(req, "parameters");
			add_dup(p, "outputDimensionality", dims);
		}
	}
	cJSON_Delete(texts);
	*out = req;
	return 0;
}

static cJSON *embedding_value(const cJSON *values, int b64)
{
	if (!b64)
		return cJSON_Duplicate(values, 1);
	struct buf raw, enc;
	buf_init(&raw);
	buf_init(&enc);
	const cJSON *v;
	cJSON_ArrayForEach(v, values)
	{
		float f = (float)v->valuedouble;
		unsigned char le[4];
		uint32_t u;
		memcpy(&u, &f, 4);
		for (int i = 0; i < 4; i++)
			le[i] = (unsigned char)(u >> (8 * i));
		buf_append(&raw, le, 4);
	}
	b64_encode(&enc, (const unsigned char *)raw.data, raw.len);
	cJSON *s = cJSON_CreateString(enc.data ? enc.data : "");
	buf_free(&raw);
	buf_free(&enc);
	return s;
}

static int numbers_only(const cJSON *a)
{
	const cJSON *v;
	if (!cJSON_IsArray(a))
		return 0;
	cJSON_ArrayForEach(v, a) if (!cJSON_IsNumber(v)) return 0;
	return 1;
}

int gem_embed_response(const cJSON *gem, enum gem_flavour fl, const char *alias, int b64,
		       int64_t est, cJSON **out, struct usage *u, struct proxy_error *err)
{
	*out = NULL;
	const cJSON *list = get(gem, fl == GEM_AISTUDIO ? "embeddings" : "predictions");
	if (!cJSON_IsArray(list)) {
		UPSTREAM_BAD(err, "the upstream embeddings answer has no %s",
			     fl == GEM_AISTUDIO ? "embeddings" : "predictions");
		return -1;
	}
	cJSON *res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "object", "list");
	cJSON *data = cJSON_AddArrayToObject(res, "data");
	int64_t tokens = 0;
	int have_tokens = 0;
	const cJSON *e;
	int i = 0;
	cJSON_ArrayForEach(e, list)
	{
		const cJSON *emb = fl == GEM_AISTUDIO ? e : get(e, "embeddings");
		const cJSON *values = get(emb, "values");
		if (!numbers_only(values)) {
			cJSON_Delete(res);
			UPSTREAM_BAD(err, "the upstream embeddings answer is malformed at item %d", i);
			return -1;
		}
		if (fl == GEM_VERTEX) {
			const cJSON *st = get(emb, "statistics");
			const cJSON *tc = get(st, "token_count");
			if (!tc)
				tc = get(st, "tokenCount");
			if (cJSON_IsNumber(tc) && tc->valuedouble >= 0 && tc->valuedouble < 1e12) {
				tokens += (int64_t)tc->valuedouble;
				have_tokens = 1;
			}
		}
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "object", "embedding");
		cJSON_AddNumberToObject(d, "index", i);
		cJSON_AddItemToObject(d, "embedding", embedding_value(values, b64));
		cJSON_AddItemToArray(data, d);
		i++;
	}
	cJSON_AddStringToObject(res, "model", alias);
	int64_t p = have_tokens ? tokens : est;
	cJSON *us = cJSON_AddObjectToObject(res, "usage");
	cJSON_AddNumberToObject(us, "prompt_tokens", (double)p);
	cJSON_AddNumberToObject(us, "total_tokens", (double)p);
	u->prompt_tokens = p;
	u->completion_tokens = 0;
	u->have = have_tokens;
	*out = res;
	return 0;
}

/* ------------------------------------------------------------------ */
/* chat response                                                       */

const char *gem_finish_reason(const char *g, int has_tool_calls)
{
	static const char *const filtered[] = {"SAFETY",
					       "RECITATION",
					       "LANGUAGE",
					       "OTHER",
					       "BLOCKLIST",
					       "PROHIBITED_CONTENT",
					       "SPII",
					       "IMAGE_SAFETY",
					       "IMAGE_PROHIBITED_CONTENT",
					       "IMAGE_RECITATION",
					       "MODEL_ARMOR",
					       NULL};
	if (!g || strcmp(g, "STOP") == 0 || strcmp(g, "FINISH_REASON_UNSPECIFIED") == 0)
		return has_tool_calls ? "tool_calls" : "stop";
	if (strcmp(g, "MAX_TOKENS") == 0)
		return "length";
	for (int i = 0; filtered[i]; i++)
		if (strcmp(g, filtered[i]) == 0)
			return "content_filter";
	/* MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS,
	 * NO_IMAGE, IMAGE_OTHER, anything new: OpenAI has no better word */
	return has_tool_calls ? "tool_calls" : "stop";
}

/* usageMetadata -> OpenAI usage object (new), and *u. */
static cJSON *convert_usage(const cJSON *um, struct usage *u)
{
	int64_t prompt = get_i64(um, "promptTokenCount") + get_i64(um, "toolUsePromptTokenCount");
	int64_t thoughts = get_i64(um, "thoughtsTokenCount");
	int64_t completion = get_i64(um, "candidatesTokenCount") + thoughts;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "prompt_tokens", (double)prompt);
	cJSON_AddNumberToObject(o, "completion_tokens", (double)completion);
	cJSON_AddNumberToObject(o, "total_tokens", (double)(prompt + completion));
	if (get(um, "cachedContentTokenCount")) {
		cJSON *d = cJSON_AddObjectToObject(o, "prompt_tokens_details");
		cJSON_AddNumberToObject(d, "cached_tokens", (double)get_i64(um, "cachedContentTokenCount"));
	}
	if (get(um, "thoughtsTokenCount")) {
		cJSON *d = cJSON_AddObjectToObject(o, "completion_tokens_details");
		cJSON_AddNumberToObject(d, "reasoning_tokens", (double)thoughts);
	}
	u->prompt_tokens = prompt;
	u->completion_tokens = completion;
	u->have = 1;
	return o;
}

/* The OpenAI tool call for one functionCall part (new object). */
static cJSON *tool_call_from_part(const cJSON *part, const cJSON *fc)
{
	struct buf id;
	buf_init(&id);
	const char *gid = get_str(fc, "id");
	if (gid && *gid) {
		buf_puts(&id, gid);
	} else {
		char rnd[TOOL_ID_RANDOM_CHARS + 1];
		random_alnum(rnd, TOOL_ID_RANDOM_CHARS);
		buf_printf(&id, "call_%s", rnd);
	}
	const char *sig = get_str(part, "thoughtSignature");
	if (sig && *sig)
		buf_printf(&id, "%s%s", GEM_THOUGHT_SEP, sig);
	cJSON *tc = cJSON_CreateObject();
	cJSON_AddStringToObject(tc, "id", id.data);
	cJSON_AddStringToObject(tc, "type", "function");
	cJSON *f = cJSON_AddObjectToObject(tc, "function");
	const char *name = get_str(fc, "name");
	cJSON_AddStringToObject(f, "name", name ? name : "");
	const cJSON *args = get(fc, "args");
	char *a = args ? cJSON_PrintUnformatted(args) : NULL;
	cJSON_AddStringToObject(f, "arguments", a ? a : "{}");
	cJSON_free(a);
	buf_free(&id);
	return tc;
}

/* Text (non-thought) and tool calls of one candidate's content. */
static void candidate_parts(const cJSON *cand, struct buf *text, int *have_text, cJSON *tool_calls)
{
	const cJSON *parts = get(get(cand, "content"), "parts");
	const cJSON *p;
	cJSON_ArrayForEach(p, parts)
	{
		if (cJSON_IsTrue(get(p, "thought")))
			continue;
		const char *t = get_str(p, "text");
		const cJSON *fc = get(p, "functionCall");
		if (t) {
			buf_puts(text, t);
			*have_text = 1;
		} else if (cJSON_IsObject(fc)) {
			cJSON_AddItemToArray(tool_calls, tool_call_from_part(p, fc));
		}
	}
}

static void make_id(const cJSON *gem, char *out, size_t n)
{
	const char *rid = get_str(gem, "responseId");
	if (rid && *rid && strlen(rid) < 120) {
		snprintf(out, n, "chatcmpl-%s", rid);
	} else {
		char rnd[TOOL_ID_RANDOM_CHARS + 1];
		random_alnum(rnd, TOOL_ID_RANDOM_CHARS);
		snprintf(out, n, "chatcmpl-%s", rnd);
	}
}

static const char *block_reason(const cJSON *gem)
{
	return get_str(get(gem, "promptFeedback"), "blockReason");
}

int gem_chat_response(const cJSON *gem, const char *alias, int64_t created, cJSON **out,
		      struct usage *u, struct proxy_error *err)
{
	*out = NULL;
	if (!cJSON_IsObject(gem)) {
		UPSTREAM_BAD(err, "the upstream answer is not a generateContent response");
		return -1;
	}
	const cJSON *cands = get(gem, "candidates");
	const char *blocked = block_reason(gem);
	if (cands && !cJSON_IsArray(cands)) {
		UPSTREAM_BAD(err, "the upstream answer has malformed candidates");
		return -1;
	}
	if (cJSON_GetArraySize(cands) == 0 && !blocked) {
		UPSTREAM_BAD(err, "the upstream answer has no candidates");
		return -1;
	}
	if (cJSON_GetArraySize(cands) > GEM_MAX_CHOICES) {
		UPSTREAM_BAD(err, "the upstream answer has too many candidates");
		return -1;
	}
	char id[160];
	make_id(gem, id, sizeof id);
	cJSON *res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "id", id);
	cJSON_AddStringToObject(res, "object", "chat.completion");
	cJSON_AddNumberToObject(res, "created", (double)created);
	cJSON_AddStringToObject(res, "model", alias);
	cJSON *choices = cJSON_AddArrayToObject(res, "choices");
	if (cJSON_GetArraySize(cands) == 0) {
		/* blocked prompt: an answer, not an error, so clients that
		 * check finish_reason see what happened */
		cJSON *c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "index", 0);
		cJSON *m = cJSON_AddObjectToObject(c, "message");
		cJSON_AddStringToObject(m, "role", "assistant");
		cJSON_AddNullToObject(m, "content");
		char why[160];
		snprintf(why, sizeof why, "The prompt was blocked by the provider (%.60s).", blocked);
		cJSON_AddStringToObject(m, "refusal", why);
		cJSON_AddNullToObject(c, "logprobs");
		cJSON_AddStringToObject(c, "finish_reason", "content_filter");
		cJSON_AddItemToArray(choices, c);
	}
	const cJSON *cand;
	int pos = 0;
	cJSON_ArrayForEach(cand, cands)
	{
		struct buf text;
		int have_text = 0;
		buf_init(&text);
		cJSON *tcs = cJSON_CreateArray();
		candidate_parts(cand, &text, &have_text, tcs);
		int ntc = cJSON_GetArraySize(tcs);
		const cJSON *ix = get(cand, "index");
		int index = cJSON_IsNumber(ix) && ix->valuedouble >= 0 && ix->valuedouble < GEM_MAX_CHOICES
				    ? (int)ix->valuedouble
				    : pos;
		cJSON *c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "index", index);
		cJSON *m = cJSON_AddObjectToObject(c, "message");
		cJSON_AddStringToObject(m, "role", "assistant");
		if (have_text)
			cJSON_AddStringToObject(m, "content", text.data);
		else
			cJSON_AddNullToObject(m, "content");
		if (ntc)
			cJSON_AddItemToObject(m, "tool_calls", tcs);
		else
			cJSON_Delete(tcs);
		cJSON_AddNullToObject(c, "logprobs");
		cJSON_AddStringToObject(c, "finish_reason",
					gem_finish_reason(get_str(cand, "finishReason"), ntc > 0));
		cJSON_AddItemToArray(choices, c);
		buf_free(&text);
		pos++;
	}
	const cJSON *um = get(gem, "usageMetadata");
	if (cJSON_IsObject(um))
		cJSON_AddItemToObject(res, "usage", convert_usage(um, u));
	*out = res;
	return 0;
}

/* ------------------------------------------------------------------ */
/* streaming                                                           */

struct gem_choice {
	int seen;
	int ntools;
	const char *finish;
};

struct gem_stream {
	char *alias;
	char id[160];
	int have_id;
	int64_t created;
	int want_usage;
	struct gem_choice ch[GEM_MAX_CHOICES];
	cJSON *usage; /* last OpenAI usage object */
};

struct gem_stream *gem_stream_new(const char *alias, int64_t created, int want_usage)
{
	struct gem_stream *st = xcalloc(1, sizeof *st);
	st->alias = xstrdup(alias ? alias : "");
	st->created = created;
	st->want_usage = want_usage;
	return st;
}

void gem_stream_free(struct gem_stream *st)
{
	if (!st)
		return;
	free(st->alias);
	cJSON_Delete(st->usage);
	free(st);
}

static cJSON *chunk_new(struct gem_stream *st)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "id", st->id);
	cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(c, "created", (double)st->created);
	cJSON_AddStringToObject(c, "model", st->alias);
	return c;
}

static void emit_choice(struct gem_stream *st, struct buf *out, int index, cJSON *delta,
			const char *finish)
{
	cJSON *c = chunk_new(st);
	cJSON *choices = cJSON_AddArrayToObject(c, "choices");
	cJSON *ch = cJSON_CreateObject();
	cJSON_AddNumberToObject(ch, "index", index);
	cJSON_AddItemToObject(ch, "delta", delta);
	cJSON_AddNullToObject(ch, "logprobs");
	if (finish)
		cJSON_AddStringToObject(ch, "finish_reason", finish);
	else
		cJSON_AddNullToObject(ch, "finish_reason");
	cJSON_AddItemToArray(choices, ch);
	sse_emit_json(out, c);
	cJSON_Delete(c);
}

static int stream_finished(const struct gem_stream *st)
{
	int any = 0;
	for (int i = 0; i < GEM_MAX_CHOICES; i++) {
		if (st->ch[i].seen && !st->ch[i].finish)
			return 0;
		any |= st->ch[i].seen;
	}
	return any;
}

/* One GenerateContentResponse object of a stream. */
static int stream_object(struct gem_stream *st, const cJSON *gem, struct buf *out,
			 struct usage *u, struct proxy_error *err)
{
	const cJSON *e = get(gem, "error");
	if (e) {
		char *s = cJSON_PrintUnformatted(gem);
		long code = (long)get_i64(e, "code");
		gem_error_map(code >= 400 && code < 600 ? code : 500, s, s ? strlen(s) : 0, NULL, NULL, err);
		cJSON_free(s);
		return -1;
	}
	if (!cJSON_IsObject(gem)) {
		UPSTREAM_BAD(err, "the upstream stream sent an event that is not a response");
		return -1;
	}
	if (!st->have_id) {
		make_id(gem, st->id, sizeof st->id);
		st->have_id = 1;
	}
	const cJSON *cands = get(gem, "candidates");
	const char *blocked = block_reason(gem);
	if (cJSON_GetArraySize(cands) == 0 && blocked && !st->ch[0].seen) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "role", "assistant");
		cJSON_AddNullToObject(d, "content");
		char why[160];
		snprintf(why, sizeof why, "The prompt was blocked by the provider (%.60s).", blocked);
		cJSON_AddStringToObject(d, "refusal", why);
		emit_choice(st, out, 0, d, NULL);
		st->ch[0].seen = 1;
		st->ch[0].finish = "content_filter";
	}
	const cJSON *cand;
	int pos = 0;
	cJSON_ArrayForEach(cand, cands)
	{
		const cJSON *ix = get(cand, "index");
		int index = cJSON_IsNumber(ix) ? (ix->valuedouble >= 0 && ix->valuedouble < GEM_MAX_CHOICES
							   ? (int)ix->valuedouble
							   : -1)
					       : pos;
		pos++;
		if (index < 0 || index >= GEM_MAX_CHOICES) {
			UPSTREAM_BAD(err, "the upstream stream sent too many candidates");
			return -1;
		}
		struct gem_choice *gc = &st->ch[index];
		struct buf text;
		int have_text = 0;
		buf_init(&text);
		cJSON *tcs = cJSON_CreateArray();
		candidate_parts(cand, &text, &have_text, tcs);
		int ntc = cJSON_GetArraySize(tcs);
		cJSON *delta = cJSON_CreateObject();
		if (!gc->seen)
			cJSON_AddStringToObject(delta, "role", "assistant");
		if (have_text || !gc->seen)
			cJSON_AddStringToObject(delta, "content", text.data ? text.data : "");
		if (ntc) {
			cJSON *tc;
			cJSON_ArrayForEach(tc, tcs)
			{
				cJSON_AddNumberToObject(tc, "index", gc->ntools);
				gc->ntools++;
			}
			cJSON_AddItemToObject(delta, "tool_calls", tcs);
		} else {
			cJSON_Delete(tcs);
		}
		gc->seen = 1;
		if (cJSON_GetArraySize(delta) > 0)
			emit_choice(st, out, index, delta, NULL);
		else
			cJSON_Delete(delta);
		const char *fr = get_str(cand, "finishReason");
		if (fr)
			gc->finish = gem_finish_reason(fr, gc->ntools > 0);
		buf_free(&text);
	}
	const cJSON *um = get(gem, "usageMetadata");
	if (cJSON_IsObject(um)) {
		cJSON_Delete(st->usage);
		st->usage = convert_usage(um, u);
	}
	return stream_finished(st);
}

int gem_stream_event(struct gem_stream *st, const char *data, size_t len, struct buf *out,
		     struct usage *u, struct proxy_error *err)
{
	/* skip blank events and the [ , ] framing of the non-SSE array form */
	size_t a = 0, b = len;
	while (a < b && (isspace((unsigned char)data[a]) || data[a] == ','))
		a++;
	while (b > a && (isspace((unsigned char)data[b - 1]) || data[b - 1] == ','))
		b--;
	if (a == b)
		return stream_finished(st);
	cJSON *j = cJSON_ParseWithLength(data + a, b - a);
	if (!j) {
		UPSTREAM_BAD(err, "the upstream stream sent invalid JSON");
		return -1;
	}
	int rc = 0;
	if (cJSON_IsArray(j)) {
		const cJSON *o;
		cJSON_ArrayForEach(o, j)
		{
			rc = stream_object(st, o, out, u, err);
			if (rc < 0)
				break;
		}
		if (cJSON_GetArraySize(j) == 0)
			rc = stream_finished(st);
	} else {
		rc = stream_object(st, j, out, u, err);
	}
	cJSON_Delete(j);
	return rc;
}

int gem_stream_end(struct gem_stream *st, struct buf *out)
{
	if (!stream_finished(st))
		return -1;
	for (int i = 0; i < GEM_MAX_CHOICES; i++)
		if (st->ch[i].seen)
			emit_choice(st, out, i, cJSON_CreateObject(), st->ch[i].finish);
	if (st->want_usage && st->usage) {
		cJSON *c = chunk_new(st);
		cJSON_AddArrayToObject(c, "choices");
		cJSON_AddItemToObject(c, "usage", cJSON_Duplicate(st->usage, 1));
		sse_emit_json(out, c);
		cJSON_Delete(c);
	}
	sse_emit_done(out);
	return 0;
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

void gem_error_map(long status, const char *body, size_t len, const char *conn_name,
		   const char *remote, struct proxy_error *out)
{
	char msg[400] = "";
	const char *reason = NULL, *gstatus = NULL;
	cJSON *j = body && len ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *top = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, 0) : j;
	const cJSON *e = get(top, "error");
	if (cJSON_IsObject(e)) {
		const char *m = get_str(e, "message");
		if (m)
			snprintf(msg, sizeof msg, "%s", m);
		gstatus = get_str(e, "status");
		const cJSON *d;
		cJSON_ArrayForEach(d, get(e, "details"))
		{
			const char *r = get_str(d, "reason");
			if (r && !reason)
				reason = r;
		}
	} else if (cJSON_IsString(e)) {
		snprintf(msg, sizeof msg, "%s", e->valuestring);
	}
	if (!msg[0])
		snprintf(msg, sizeof msg, "HTTP %ld", status);
	scrub_secrets(msg);
	const char *conn = conn_name ? conn_name : "?";
	int auth = status == 401 || status == 403 ||
		   (reason && (strcmp(reason, "API_KEY_INVALID") == 0 ||
			       strcmp(reason, "API_KEY_SERVICE_BLOCKED") == 0 ||
			       strcmp(reason, "ACCESS_TOKEN_EXPIRED") == 0)) ||
		   (gstatus && (strcmp(gstatus, "UNAUTHENTICATED") == 0 ||
				strcmp(gstatus, "PERMISSION_DENIED") == 0));
	if (auth) {
		proxy_error_set(out, 502, "upstream_error", "upstream_auth_failed", NULL,
				"the provider rejected the proxy's credential for connection %.100s: %s", conn,
				msg);
	} else if (status == 429) {
		proxy_error_set(out, 429, "requests", "rate_limit_exceeded", NULL,
				"the provider is rate limiting this proxy: %s", msg);
	} else if (status == 404) {
		proxy_error_set(out, 404, "invalid_request_error", "model_not_found", "model",
				"upstream model not found (%.100s): %s", remote ? remote : "?", msg);
	} else if (status >= 400 && status < 500) {
		proxy_error_set(out, (int)status, "invalid_request_error", NULL, NULL,
				"the provider rejected the request: %s", msg);
	} else {
		proxy_error_set(out, 502, "upstream_error", "upstream_error", NULL,
				"the provider failed (HTTP %ld): %s", status, msg);
	}
	cJSON_Delete(j);
}
