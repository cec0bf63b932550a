#include "http/http.h"

#include <stdio.h>
#include <stdlib.h>
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

enum http_method http_method_named(const char *name, size_t len)
{
	static const struct {
		const char *name;
		enum http_method m;
	} known[] = {
	    {"GET", HTTP_METHOD_GET},	  {"HEAD", HTTP_METHOD_HEAD},	    {"POST", HTTP_METHOD_POST},
	    {"PUT", HTTP_METHOD_PUT},	  {"DELETE", HTTP_METHOD_DELETE}, {"OPTIONS", HTTP_METHOD_OPTIONS},
	    {"TRACE", HTTP_METHOD_TRACE}, {"CONNECT", HTTP_METHOD_CONNECT},
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strlen(known[i].name) == len && !memcmp(known[i].name, name, len))
			return known[i].m;
	return HTTP_METHOD_OTHER;
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

bool http_msg_copy(struct http_msg *m, const char *s, size_t len, uint32_t max_bytes,
		   struct http_span *out)
{
	if (len > max_bytes - m->store_len)
		return false;
	uint32_t need = m->store_len + (uint32_t)len;
	if (need > m->store_cap) {
		uint32_t cap = m->store_cap ? m->store_cap : 512;
		while (cap < need)
			cap *= 2;
		char *p = realloc(m->store, cap);
		if (!p)
			return false;
		m->store = p;
		m->store_cap = cap;
	}
	if (len)
		memcpy(m->store + m->store_len, s, len);
	*out = (struct http_span){m->store_len, (uint32_t)len};
	m->store_len = need;
	m->base = m->store;
	return true;
}

bool http_msg_add_header(struct http_msg *m, const char *name, size_t nlen, const char *value,
			 size_t vlen, uint32_t max_bytes)
{
	if (m->nh == HTTP_MAX_HEADERS)
		return false;
	struct http_header *h = &m->h[m->nh];
	if (!http_msg_copy(m, name, nlen, max_bytes, &h->name) ||
	    !http_msg_copy(m, value, vlen, max_bytes, &h->value))
		return false;
	h->id = (uint8_t)http_header_id(name, nlen);
	if (h->id == HDR_CONNECTION && lists_others(value, vlen))
		m->connection_names = true;
	m->nh++;
	return true;
}

void http_msg_free(struct http_msg *m)
{
	free(m->store);
	m->store = NULL;
	m->store_len = m->store_cap = 0;
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

/* --- the header policy --- */

static void emit(http_field_fn *fn, void *ctx, enum http_hdr id, const char *name, size_t nlen,
		 const char *value, size_t vlen)
{
	const struct http_part part = {value, vlen};
	fn(ctx, id, name, nlen, &part, 1);
}

#define EMIT_LIT(fn, ctx, name, value, vlen) emit(fn, ctx, HDR_OTHER, name, sizeof(name) - 1, value, vlen)

static void emit_kv(http_field_fn *fn, void *ctx, const struct header_kv *kv, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		emit(fn, ctx, HDR_OTHER, kv[i].name, kv[i].name_len, kv[i].value, kv[i].value_len);
}

static void emit_rules(http_field_fn *fn, void *ctx, const struct header_rules *const *rules,
		       size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (rules[k]) {
			emit_kv(fn, ctx, rules[k]->set, rules[k]->nset);
			emit_kv(fn, ctx, rules[k]->add, rules[k]->nadd);
		}
}

/* Who the client's certificate says it is; the client's own X-Client-* never pass. */
static void emit_cert_field(http_field_fn *fn, void *ctx, const struct http_edit *e,
			    const char *name, const char *value)
{
	if (value && !http_edit_owns(e, name, strlen(name)))
		emit(fn, ctx, HDR_OTHER, name, strlen(name), value, strlen(value));
}

/* X-Forwarded-For: earlier hops as the client sent them, then the client itself. */
static void emit_forwarded_for(const struct http_msg *m, const struct http_edit *e,
			       http_field_fn *fn, void *ctx)
{
	struct http_part parts[2 * HTTP_MAX_HEADERS + 1];
	int n = 0;
	for (uint32_t i = 0; i < m->nh; i++) {
		if (m->h[i].id != HDR_X_FORWARDED_FOR || m->h[i].value.len == 0)
			continue;
		parts[n++] = (struct http_part){http_str(m, m->h[i].value), m->h[i].value.len};
		parts[n++] = (struct http_part){", ", 2};
	}
	parts[n++] = (struct http_part){e->client_ip, strlen(e->client_ip)};
	fn(ctx, HDR_OTHER, "X-Forwarded-For", 15, parts, n);
}

static void emit_forwarding(const struct http_msg *m, const struct http_edit *e, http_field_fn *fn,
			    void *ctx)
{
	if (!http_edit_owns(e, "x-forwarded-for", 15))
		emit_forwarded_for(m, e, fn, ctx);
	if (!http_edit_owns(e, "x-real-ip", 9))
		EMIT_LIT(fn, ctx, "X-Real-IP", e->client_ip, strlen(e->client_ip));
	if (!http_edit_owns(e, "x-forwarded-proto", 17))
		EMIT_LIT(fn, ctx, "X-Forwarded-Proto", e->proto, strlen(e->proto));
	if (e->cert) {
		emit_cert_field(fn, ctx, e, "X-Client-Verify", e->cert->verify);
		emit_cert_field(fn, ctx, e, "X-Client-Subject", e->cert->subject);
		emit_cert_field(fn, ctx, e, "X-Client-Issuer", e->cert->issuer);
		emit_cert_field(fn, ctx, e, "X-Client-Serial", e->cert->serial);
		emit_cert_field(fn, ctx, e, "X-Client-Fingerprint", e->cert->fingerprint);
	}
}

void http_edit_fields(const struct http_msg *m, const struct http_edit *e, http_field_fn *fn,
		      void *ctx)
{
	bool any_rules = e->rules[0] || e->rules[1];
	for (uint32_t i = 0; i < m->nh; i++) {
		struct http_span name = m->h[i].name;
		enum http_hdr id = m->h[i].id;
		if (http_header_hop_by_hop(m, i, e->keep_upgrade))
			continue;
		/* RFC 9112 3.2.2: an absolute-form target's authority replaces Host. */
		if (m->absolute_form && id == HDR_HOST)
			continue;
		if (m->is_request && http_header_forwarding(id))
			continue;
		if (any_rules && http_edit_owns(e, http_str(m, name), name.len))
			continue;
		emit(fn, ctx, id, http_str(m, name), name.len, http_str(m, m->h[i].value),
		     m->h[i].value.len);
	}
	emit_rules(fn, ctx, e->rules, ARRAY_LEN(e->rules));
	if (!m->is_request)
		return;
	emit_forwarding(m, e, fn, ctx);
	if (m->absolute_form && !http_edit_owns(e, "host", 4))
		emit(fn, ctx, HDR_HOST, "Host", 4, http_str(m, m->authority), m->authority.len);
}

void http_answer_fields(const struct http_answer *a, http_field_fn *fn, void *ctx)
{
	const struct http_edit e = {.rules = {a->rules}};
	/* The route's response rules edit its own fixed headers as they would a backend's. */
	for (uint32_t i = 0; i < a->nheaders; i++)
		if (!http_edit_owns(&e, a->headers[i].name, a->headers[i].name_len))
			emit_kv(fn, ctx, &a->headers[i], 1);
	if (a->location) {
		const struct http_part loc[2] = {{a->location, a->location_len},
						 {a->location_tail, a->location_tail_len}};
		fn(ctx, HDR_OTHER, "Location", 8, loc, 2);
	}
	emit_rules(fn, ctx, e.rules, 1);
	if (a->retry_after_s) {
		char digits[12];
		int n = snprintf(digits, sizeof(digits), "%u", a->retry_after_s);
		EMIT_LIT(fn, ctx, "Retry-After", digits, (size_t)n);
	}
}
