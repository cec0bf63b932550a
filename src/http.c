#include "http.h"

#include <string.h>
#include <strings.h>

#include "common.h"

static bool names_equal(const char *a, size_t alen, const char *lower)
{
	size_t n = strlen(lower);
	return alen == n && !strncasecmp(a, lower, n);
}

bool http_span_is(const struct http_msg *m, struct http_span s, const char *lower)
{
	return names_equal(http_str(m, s), s.len, lower);
}

const struct http_header *http_find_header(const struct http_msg *m, const char *name, size_t len)
{
	for (uint32_t i = 0; i < m->nh; i++)
		if (m->h[i].name.len == len && !strncasecmp(http_str(m, m->h[i].name), name, len))
			return &m->h[i];
	return NULL;
}

bool http_method_idempotent(enum http_method m)
{
	switch (m) {
	case HTTP_METHOD_GET:
	case HTTP_METHOD_HEAD:
	case HTTP_METHOD_OPTIONS:
	case HTTP_METHOD_TRACE:
	case HTTP_METHOD_PUT:
	case HTTP_METHOD_DELETE:
		return true;
	default:
		return false;
	}
}

const char *http_reason(unsigned status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 410: return "Gone";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status >= 400 ? "Error" : "";
	}
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

bool http_header_name_valid(const char *name, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_tchar((unsigned char)name[i]))
			return false;
	return true;
}

bool http_header_value_valid(const char *value, size_t len)
{
	/* RFC 9110 5.5: visible characters, obs-text, spaces and tabs; no other control character. */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

bool http_list_has_token(const char *value, size_t len, const char *token, size_t tlen)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		size_t start = i;
		while (i < len && value[i] != ',')
			i++;
		size_t end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start == tlen && !strncasecmp(value + start, token, tlen))
			return true;
	}
	return false;
}

/* The one list of the headers sluice owns (see http_header_owned). */
enum owned_kind { OWNED_HOP, OWNED_UPGRADE, OWNED_FRAMING };
static const struct {
	const char *name;
	enum owned_kind kind;
} owned[] = {
	{"connection", OWNED_HOP},	   {"keep-alive", OWNED_HOP},
	{"te", OWNED_HOP},		   {"trailer", OWNED_HOP},
	{"proxy-connection", OWNED_HOP},   {"upgrade", OWNED_UPGRADE},
	{"content-length", OWNED_FRAMING}, {"transfer-encoding", OWNED_FRAMING},
};

/* Proxy-Authorization, Proxy-Authenticate and the rest speak to a proxy, not past it. */
static bool is_proxy_header(const char *name, size_t len)
{
	return len > 6 && !strncasecmp(name, "proxy-", 6);
}

/* The kind of an owned header; returns false if sluice does not own it. */
static bool owned_kind(const char *name, size_t len, enum owned_kind *kind)
{
	for (size_t i = 0; i < ARRAY_LEN(owned); i++)
		if (names_equal(name, len, owned[i].name)) {
			*kind = owned[i].kind;
			return true;
		}
	if (is_proxy_header(name, len)) {
		*kind = OWNED_HOP;
		return true;
	}
	return false;
}

bool http_header_owned(const char *name, size_t len)
{
	enum owned_kind kind;
	return owned_kind(name, len, &kind);
}

static bool named_by_connection(const struct http_msg *m, struct http_span name)
{
	for (uint32_t i = 0; i < m->nh; i++)
		if (http_span_is(m, m->h[i].name, "connection") &&
		    http_list_has_token(http_str(m, m->h[i].value), m->h[i].value.len,
					http_str(m, name), name.len))
			return true;
	return false;
}

bool http_header_hop_by_hop(const struct http_msg *m, uint32_t i, bool keep_upgrade)
{
	struct http_span name = m->h[i].name;
	enum owned_kind kind;
	if (owned_kind(http_str(m, name), name.len, &kind)) {
		if (kind == OWNED_UPGRADE)
			return !keep_upgrade;
		return kind == OWNED_HOP;
	}
	if (http_span_is(m, name, "host"))
		return false;
	return named_by_connection(m, name);
}

bool http_header_forwarding(const char *name, size_t len)
{
	return names_equal(name, len, "x-forwarded-for") || names_equal(name, len, "x-real-ip") ||
	       names_equal(name, len, "x-forwarded-proto");
}

bool http_kv_names(const struct header_kv *kv, uint32_t n, const char *name, size_t len)
{
	for (uint32_t i = 0; i < n; i++)
		if (kv[i].name_len == len && !strncasecmp(kv[i].name, name, len))
			return true;
	return false;
}

bool http_edit_owns(const struct http_edit *e, const char *name, size_t len)
{
	for (size_t k = 0; k < ARRAY_LEN(e->rules); k++) {
		const struct header_rules *r = e->rules[k];
		if (r && (http_kv_names(r->remove, r->nremove, name, len) ||
			  http_kv_names(r->set, r->nset, name, len)))
			return true;
	}
	return false;
}

const char *http_cookie_value(const char *v, size_t len, const char *name, size_t nlen,
			      size_t *vlen)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ';'))
			i++;
		size_t start = i;
		while (i < len && v[i] != ';')
			i++;
		const char *eq = memchr(v + start, '=', i - start);
		if (eq && (size_t)(eq - (v + start)) == nlen && !memcmp(v + start, name, nlen)) {
			*vlen = (size_t)(v + i - eq - 1);
			return eq + 1;
		}
	}
	return NULL;
}
