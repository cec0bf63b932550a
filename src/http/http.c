#include "http/http.h"

#include <string.h>
#include <strings.h>

#include "core/common.h"

/* name[0, n) equals lower, a lower-case literal, ignoring the case of letters. */
static bool lower_eq(const char *name, const char *lower, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lower[i])
			return false;
	}
	return true;
}

#define NAME_IS(name, len, lit) ((len) == sizeof(lit) - 1 && lower_eq((name), (lit), sizeof(lit) - 1))

enum http_hdr http_header_id(const char *name, size_t len)
{
	/* Proxy-Authorization, Proxy-Authenticate and the rest speak to a proxy, not past it. */
	if (len > 6 && lower_eq(name, "proxy-", 6))
		return HDR_PROXY;
	switch (len) {
	case 2: return NAME_IS(name, len, "te") ? HDR_TE : HDR_OTHER;
	case 4: return NAME_IS(name, len, "host") ? HDR_HOST : HDR_OTHER;
	case 6: return NAME_IS(name, len, "cookie") ? HDR_COOKIE : HDR_OTHER;
	case 7:
		return NAME_IS(name, len, "upgrade")	 ? HDR_UPGRADE
		       : NAME_IS(name, len, "trailer") ? HDR_TRAILER
						       : HDR_OTHER;
	case 9: return NAME_IS(name, len, "x-real-ip") ? HDR_X_REAL_IP : HDR_OTHER;
	case 10:
		return NAME_IS(name, len, "connection")	    ? HDR_CONNECTION
		       : NAME_IS(name, len, "keep-alive") ? HDR_KEEP_ALIVE
							  : HDR_OTHER;
	case 14: return NAME_IS(name, len, "content-length") ? HDR_CONTENT_LENGTH : HDR_OTHER;
	case 15:
		return NAME_IS(name, len, "x-forwarded-for")	 ? HDR_X_FORWARDED_FOR
		       : NAME_IS(name, len, "x-client-verify") || NAME_IS(name, len, "x-client-issuer") ||
				 NAME_IS(name, len, "x-client-serial")
			   ? HDR_X_CLIENT_CERT
			   : HDR_OTHER;
	case 16: return NAME_IS(name, len, "x-client-subject") ? HDR_X_CLIENT_CERT : HDR_OTHER;
	case 17:
		return NAME_IS(name, len, "transfer-encoding")	   ? HDR_TRANSFER_ENCODING
		       : NAME_IS(name, len, "x-forwarded-proto") ? HDR_X_FORWARDED_PROTO
								 : HDR_OTHER;
	case 20: return NAME_IS(name, len, "x-client-fingerprint") ? HDR_X_CLIENT_CERT : HDR_OTHER;
	default: return HDR_OTHER;
	}
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

/* RFC 9110 5.6.2; every header name is checked, so no strchr() per character. */
static bool is_tchar(unsigned char ch)
{
	unsigned char lower = ch | 0x20; /* only 'A'-'Z' and 'a'-'z' land in 'a'-'z' */
	if ((lower >= 'a' && lower <= 'z') || (ch >= '0' && ch <= '9'))
		return true;
	switch (ch) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
	case '-': case '.': case '^': case '_': case '`': case '|': case '~': return true;
	default: return false;
	}
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

/*
 * The next element of a comma-separated list value from *i, whitespace
 * trimmed, as [*start, *end); false past the last. Empty elements are
 * skipped ("a, ,b" has two).
 */
static bool next_list_token(const char *v, size_t len, size_t *i, size_t *start, size_t *end)
{
	while (*i < len) {
		while (*i < len && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ','))
			(*i)++;
		*start = *i;
		while (*i < len && v[*i] != ',')
			(*i)++;
		*end = *i;
		while (*end > *start && (v[*end - 1] == ' ' || v[*end - 1] == '\t'))
			(*end)--;
		if (*end > *start)
			return true;
	}
	return false;
}

bool http_list_has_token(const char *value, size_t len, const char *token, size_t tlen)
{
	size_t i = 0, start, end;
	while (next_list_token(value, len, &i, &start, &end))
		if (end - start == tlen && !strncasecmp(value + start, token, tlen))
			return true;
	return false;
}

/* The headers sluice owns (see http_header_owned), by what it does with them. */
enum owned_kind { NOT_OWNED, OWNED_HOP, OWNED_UPGRADE, OWNED_FRAMING };

static enum owned_kind owned_kind(enum http_hdr id)
{
	switch (id) {
	case HDR_CONNECTION:
	case HDR_KEEP_ALIVE:
	case HDR_TE:
	case HDR_TRAILER:
	case HDR_PROXY: return OWNED_HOP;
	case HDR_UPGRADE: return OWNED_UPGRADE;
	case HDR_CONTENT_LENGTH:
	case HDR_TRANSFER_ENCODING: return OWNED_FRAMING;
	default: return NOT_OWNED;
	}
}

bool http_header_owned(const char *name, size_t len)
{
	return owned_kind(http_header_id(name, len)) != NOT_OWNED;
}

/* Whether a Connection header value names a header that only its listing makes hop-by-hop. */
static bool lists_others(const char *v, size_t len)
{
	size_t i = 0, start, end;
	while (next_list_token(v, len, &i, &start, &end))
		if (!NAME_IS(v + start, end - start, "close") &&
		    owned_kind(http_header_id(v + start, end - start)) == NOT_OWNED)
			return true;
	return false;
}

void http_classify(struct http_msg *m)
{
	m->connection_names = false;
	for (uint32_t i = 0; i < m->nh; i++) {
		struct http_header *h = &m->h[i];
		h->id = (uint8_t)http_header_id(http_str(m, h->name), h->name.len);
		if (h->id == HDR_CONNECTION && lists_others(http_str(m, h->value), h->value.len))
			m->connection_names = true;
	}
}

static bool named_by_connection(const struct http_msg *m, struct http_span name)
{
	for (uint32_t i = 0; i < m->nh; i++)
		if (m->h[i].id == HDR_CONNECTION &&
		    http_list_has_token(http_str(m, m->h[i].value), m->h[i].value.len,
					http_str(m, name), name.len))
			return true;
	return false;
}

bool http_header_hop_by_hop(const struct http_msg *m, uint32_t i, bool keep_upgrade)
{
	switch (owned_kind(m->h[i].id)) {
	case OWNED_HOP: return true;
	case OWNED_UPGRADE: return !keep_upgrade;
	case OWNED_FRAMING: return false;
	case NOT_OWNED: break;
	}
	if (m->h[i].id == HDR_HOST)
		return false;
	return m->connection_names && named_by_connection(m, m->h[i].name);
}

bool http_header_forwarding(enum http_hdr id)
{
	return id == HDR_X_FORWARDED_FOR || id == HDR_X_REAL_IP || id == HDR_X_FORWARDED_PROTO ||
	       id == HDR_X_CLIENT_CERT;
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
