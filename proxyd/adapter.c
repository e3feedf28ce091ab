/* adapter.c - adapter lookup and the helpers adapters share. */
#include "adapter.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const struct adapter *adapter_for(const char *provider)
{
	if (!provider)
		return NULL;
	if (strcmp(provider, "openai") == 0)
		return &adapter_openai;
	if (strcmp(provider, "azure") == 0)
		return &adapter_azure;
	if (strcmp(provider, "google") == 0 || strcmp(provider, "gemini") == 0 ||
	    strcmp(provider, "vertex") == 0)
		return &adapter_google;
	return NULL;
}

void proxy_error_set(struct proxy_error *e, int status, const char *type, const char *code,
		     const char *param, const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->type = type;
	e->code = code;
	e->param = param;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
}

void sse_emit_json(struct buf *out, const cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);
	if (!s)
		return;
	buf_puts(out, "data: ");
	buf_puts(out, s);
	buf_puts(out, "\n\n");
	cJSON_free(s);
}

void sse_emit_done(struct buf *out) { buf_puts(out, "data: [DONE]\n\n"); }

void url_append_segment(struct buf *url, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			buf_append(url, &c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			buf_append(url, e, 3);
		}
	}
}

struct curl_slist *header_add(struct curl_slist *h, const char *name, const char *value)
{
	struct buf line;
	buf_init(&line);
	buf_printf(&line, "%s: %s", name, value);
	struct curl_slist *n = curl_slist_append(h, line.data);
	buf_free(&line); /* wipes: the value may be a credential */
	if (!n)
		fatal("out of memory");
	return n;
}

struct curl_slist *header_add_bearer(struct curl_slist *h, const char *token)
{
	struct buf v;
	buf_init(&v);
	buf_printf(&v, "Bearer %s", token);
	h = header_add(h, "Authorization", v.data);
	buf_free(&v);
	return h;
}

void url_append_base(struct buf *url, const char *endpoint)
{
	size_t n = strlen(endpoint);
	while (n && endpoint[n - 1] == '/')
		n--;
	buf_append(url, endpoint, n);
}

char *route_option(const struct route *r, const char *key)
{
	char *val = NULL;
	if (!r->options)
		return NULL;
	cJSON *o = cJSON_Parse(r->options);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (cJSON_IsString(v))
		val = xstrdup(v->valuestring);
	else if (cJSON_IsNumber(v))
		val = xasprintf("%g", v->valuedouble);
	else if (cJSON_IsBool(v))
		val = xstrdup(cJSON_IsTrue(v) ? "true" : "false");
	cJSON_Delete(o);
	return val;
}

static int64_t count_chars(const cJSON *v, int depth)
{
	int64_t n = 0;
	if (!v || depth > 64)
		return 0;
	if (cJSON_IsString(v))
		return (int64_t)strlen(v->valuestring);
	if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
		const cJSON *c;
		cJSON_ArrayForEach(c, v) n += count_chars(c, depth + 1) + 1;
	}
	return n;
}

int64_t estimate_tokens_json(const cJSON *v)
{
	/* ~4 characters per token for English text is the usual rule of
	 * thumb; it only sizes reservations, settlement uses real usage */
	return count_chars(v, 0) / 4 + 1;
}

static int key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '+' || c == '=' || c == '*';
}

void scrub_secrets(char *s)
{
	static const char *prefixes[] = {"sk-", "AIza", "AQ.", "ya29.", "vk-", "Bearer ", "ABSK", NULL};
	for (char *p = s; *p; p++) {
		if (p != s && (key_char(p[-1]) || p[-1] == '.' || p[-1] == '/'))
			continue; /* only at the start of a word */
		size_t plen = 0;
		for (int i = 0; prefixes[i]; i++)
			if (strncmp(p, prefixes[i], strlen(prefixes[i])) == 0)
				plen = strlen(prefixes[i]);
		char *q = p + plen;
		while (*q && (key_char(*q) || (plen && *q == '.')))
			q++;
		size_t run = (size_t)(q - p);
		if ((plen && run > plen + 3) || run >= 32) {
			for (char *m = p + plen; m < q; m++)
				*m = '*';
			p = q - 1;
		}
	}
}

void scrub_exact(char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	if (!s || n < 8)
		return;
	for (char *p = strstr(s, secret); p; p = strstr(p + n, secret))
		memset(p, '*', n);
}
