#include "http/h1.h"

#include <string.h>
#include <strings.h>

#include "core/common.h"

/* --- llhttp callbacks: record the spans of the head --- */

static struct h1_parser *parser_of(llhttp_t *l) { return container_of(l, struct h1_parser, llh); }

static void span_extend(const struct h1_parser *p, struct http_span *s, const char *at, size_t len)
{
	uint32_t off = (uint32_t)(at - p->msg->base);
	if (s->len == 0)
		s->off = off;
	s->len = off + (uint32_t)len - s->off;
}

static int on_method(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	span_extend(p, &p->msg->method_name, at, len);
	return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	span_extend(p, &p->msg->target, at, len);
	if (p->msg->target.len > p->lim.max_line) {
		p->line_too_long = true;
		return HPE_USER;
	}
	return 0;
}

static int on_status(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	span_extend(p, &p->msg->reason, at, len);
	return 0;
}

/*
 * Trailers of a chunked body come through the header callbacks too, after
 * the head: they pass with the body's bytes, and the head they would be
 * added to may already be in another connection's hands.
 */
static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	struct http_msg *m = p->msg;
	if (p->head_done)
		return 0;
	if (!p->in_name) {
		if (m->nh == HTTP_MAX_HEADERS) {
			p->too_many = true;
			return HPE_USER;
		}
		m->h[m->nh++] = (struct http_header){{0, 0}, {0, 0}, HDR_OTHER};
		p->in_name = true;
	}
	span_extend(p, &m->h[m->nh - 1].name, at, len);
	return 0;
}

static int on_header_field_complete(llhttp_t *l)
{
	parser_of(l)->in_name = false;
	return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	if (!p->head_done)
		span_extend(p, &p->msg->h[p->msg->nh - 1].value, at, len);
	return 0;
}

static enum http_method method_of(uint8_t m)
{
	switch (m) {
	case HTTP_GET: return HTTP_METHOD_GET;
	case HTTP_HEAD: return HTTP_METHOD_HEAD;
	case HTTP_POST: return HTTP_METHOD_POST;
	case HTTP_PUT: return HTTP_METHOD_PUT;
	case HTTP_DELETE: return HTTP_METHOD_DELETE;
	case HTTP_OPTIONS: return HTTP_METHOD_OPTIONS;
	case HTTP_TRACE: return HTTP_METHOD_TRACE;
	case HTTP_CONNECT: return HTTP_METHOD_CONNECT;
	default: return HTTP_METHOD_OTHER;
	}
}

/* RFC 9112 6.3, in the order it gives; skip: a response that has no body whatever it says. */
static enum http_framing framing_of(const struct h1_parser *p, bool skip)
{
	const llhttp_t *l = &p->llh;
	if (skip)
		return HTTP_FRAMING_NONE;
	if (l->flags & F_CHUNKED)
		return HTTP_FRAMING_CHUNKED;
	/* A request's other codings are refused by llhttp; a response's run until the close. */
	if (!p->is_request && (l->flags & F_TRANSFER_ENCODING))
		return HTTP_FRAMING_UNTIL_EOF;
	if (l->flags & F_CONTENT_LENGTH)
		return l->content_length ? HTTP_FRAMING_LENGTH : HTTP_FRAMING_NONE;
	return p->is_request ? HTTP_FRAMING_NONE : HTTP_FRAMING_UNTIL_EOF;
}

/*
 * The message's framing and connection flags are read here: llhttp forgets
 * its flags once the message ends, which may be before the caller looks.
 */
static int on_headers_complete(llhttp_t *l)
{
	struct h1_parser *p = parser_of(l);
	struct http_msg *m = p->msg;
	unsigned st = l->status_code;
	/*
	 * A response to HEAD, a 1xx, a 204 and a 304 have no body whatever their
	 * Content-Length or Transfer-Encoding say (RFC 9110 6.4.1, RFC 9112 6.3):
	 * llhttp 8 leaves that to its caller, and would wait for a body that
	 * never comes. What follows a 101 is the protocol it switched to.
	 */
	bool skip = !p->is_request &&
		    (p->head_request || (st >= 100 && st < 200) || st == 204 || st == 304);
	p->head_done = true;
	m->version_minor = l->http_minor;
	m->framing = framing_of(p, skip);
	p->chunked = m->framing == HTTP_FRAMING_CHUNKED;
	m->content_length = m->framing == HTTP_FRAMING_LENGTH ? l->content_length : 0;
	bool allows = l->http_minor ? !(l->flags & F_CONNECTION_CLOSE)
				    : (l->flags & F_CONNECTION_KEEP_ALIVE) != 0;
	m->keep_alive = allows && m->framing != HTTP_FRAMING_UNTIL_EOF;
	if (p->is_request) {
		m->method = method_of(l->method);
		m->upgrade = l->upgrade;
	} else {
		m->status = (uint16_t)st;
		m->upgrade = st == 101;
	}
	return skip ? 1 : HPE_PAUSED;
}

/* While dechunking: the body's data moves down over the framing before it (a chunked body's). */
static int on_body(llhttp_t *l, const char *at, size_t len)
{
	struct h1_parser *p = parser_of(l);
	if (p->out) {
		memmove(p->out, at, len);
		p->out += len;
	}
	return 0;
}

static int on_message_complete(llhttp_t *l)
{
	parser_of(l)->msg_done = true;
	return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
	.on_method = on_method,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_message_complete = on_message_complete,
};

static const llhttp_settings_t response_settings = {
	.on_status = on_status,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void h1_request_parser_init(struct h1_parser *p, const struct h1_limits *lim)
{
	memset(p, 0, sizeof(*p));
	llhttp_init(&p->llh, HTTP_REQUEST, &request_settings);
	p->lim = *lim;
	p->is_request = true;
}

void h1_response_parser_init(struct h1_parser *p, const struct h1_limits *lim, bool head_request,
			     bool dechunk)
{
	memset(p, 0, sizeof(*p));
	llhttp_init(&p->llh, HTTP_RESPONSE, &response_settings);
	p->lim = *lim;
	p->head_request = head_request;
	p->dechunk = dechunk;
}

/* --- heads --- */

static enum h1_result fail(struct h1_parser *p, unsigned status, const char *why)
{
	p->error_status = (uint16_t)(p->is_request ? status : 502);
	p->error = why;
	return H1_ERROR;
}

static bool is_tchar(char ch)
{
	return http_header_name_valid(&ch, 1);
}

/* An unknown method is one we do not implement (RFC 9110 9.1); anything else is malformed. */
static bool starts_with_token_and_space(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len && is_tchar(s[i]))
		i++;
	return i > 0 && i < len && s[i] == ' ';
}

static enum h1_result llhttp_failed(struct h1_parser *p, llhttp_errno_t err, const char *base,
				    size_t len)
{
	if (p->line_too_long)
		return fail(p, 414, "request line too long");
	if (p->too_many)
		return fail(p, 431, "too many header fields");
	if (p->is_request && err == HPE_INVALID_METHOD && starts_with_token_and_space(base, len))
		return fail(p, 501, "method not implemented");
	const char *reason = llhttp_get_error_reason(&p->llh);
	return fail(p, 400, reason ? reason : llhttp_errno_name(err));
}

/*
 * llhttp accepts some forms RFC 9112 tells a server to reject, and a proxy
 * that forwards them lets a lenient peer read the message differently: a
 * bare LF as line end (RFC 9112 2.2), obs-fold line folding (5.2) and
 * whitespace between a field name and its colon (5.1).
 */
static const char *head_violation(const struct http_msg *m)
{
	const char *base = m->base, *end = base + m->head_len;
	for (const char *lf = base; (lf = memchr(lf, '\n', (size_t)(end - lf))); lf++) {
		if (lf == base || lf[-1] != '\r')
			return "bare LF line ending";
		if (lf + 1 < end && (lf[1] == ' ' || lf[1] == '\t'))
			return "obsolete line folding";
	}
	for (uint32_t i = 0; i < m->nh; i++)
		if (!http_header_name_valid(http_str(m, m->h[i].name), m->h[i].name.len))
			return "invalid header name";
	return NULL;
}

static bool prefix_is(const char *s, size_t len, const char *lower)
{
	size_t n = strlen(lower);
	return len >= n && !strncasecmp(s, lower, n);
}

/*
 * The request target's form (RFC 9112 3.2): origin-form, absolute-form
 * (whose authority then stands for Host, RFC 9112 3.2.2) or "*" for
 * OPTIONS. Authority-form is CONNECT's, which is refused before this.
 */
static enum h1_result split_target(struct h1_parser *p, struct http_msg *m)
{
	const char *u = http_str(m, m->target);
	uint32_t len = m->target.len;
	m->path = m->target;
	if (len && u[0] == '/')
		return H1_DONE;
	if (len == 1 && u[0] == '*')
		return m->method == HTTP_METHOD_OPTIONS ? H1_DONE
							: fail(p, 400, "\"*\" is the target of OPTIONS only");
	uint32_t scheme = prefix_is(u, len, "http://") ? 7 : prefix_is(u, len, "https://") ? 8 : 0;
	if (!scheme)
		return fail(p, 400, "invalid request target");
	uint32_t end = scheme;
	while (end < len && u[end] != '/' && u[end] != '?')
		end++;
	if (memchr(u + scheme, '@', end - scheme))
		return fail(p, 400, "user information in the request target");
	if (end == scheme)
		return fail(p, 400, "empty authority in the request target");
	m->absolute_form = true;
	m->authority = (struct http_span){m->target.off + scheme, end - scheme};
	m->path = (struct http_span){m->target.off + end, len - end};
	return H1_DONE;
}

static enum h1_result check_request(struct h1_parser *p, struct http_msg *m)
{
	if (m->method == HTTP_METHOD_CONNECT)
		return fail(p, 501, "CONNECT is not proxied");
	unsigned hosts = 0;
	for (uint32_t i = 0; i < m->nh; i++)
		if (m->h[i].id == HDR_HOST) {
			hosts++;
			m->authority = m->h[i].value;
		}
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one before. */
	if (hosts > 1)
		return fail(p, 400, "more than one Host header");
	if (hosts == 0 && m->version_minor == 1)
		return fail(p, 400, "no Host header");
	return split_target(p, m);
}

/* RFC 9112 5: a field value has no trailing whitespace either; llhttp leaves it. */
static void trim_values(struct http_msg *m)
{
	for (uint32_t i = 0; i < m->nh; i++) {
		struct http_span *v = &m->h[i].value;
		const char *s = http_str(m, *v);
		while (v->len && (s[v->len - 1] == ' ' || s[v->len - 1] == '\t'))
			v->len--;
	}
}

/* The head is whole: the checks llhttp does not make, on the message as a whole. */
static enum h1_result head_complete(struct h1_parser *p, struct http_msg *m)
{
	trim_values(m);
	http_classify(m);
	const char *why = head_violation(m);
	if (why)
		return fail(p, 400, why);
	/*
	 * RFC 9110 15.2.2: a 101 names the protocol switched to, with Upgrade
	 * and Connection: upgrade; without them llhttp reads on as HTTP.
	 */
	if (!p->is_request && m->status == 101 && !p->llh.upgrade)
		return fail(p, 502, "101 Switching Protocols without Upgrade");
	/* llhttp lets any byte but CR and LF into a reason phrase, NUL included. */
	if (!p->is_request && !http_header_value_valid(http_str(m, m->reason), m->reason.len))
		return fail(p, 502, "invalid character in the reason phrase");
	/* llhttp reads any digit as a version; an HTTP/1 parser speaks HTTP/1 (RFC 9110 15.6.6). */
	if (p->llh.http_major != 1)
		return fail(p, 505, "HTTP version not supported");
	if (m->head_len > p->lim.max_head)
		return fail(p, 431, p->is_request ? "request head too large" : "response head too large");
	/*
	 * RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing. A 1.0
	 * peer that ignores it would read the chunks as the next message.
	 */
	if (m->version_minor == 0 && http_find_header(m, "transfer-encoding", 17))
		return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
	/* RFC 9110 15: a status is from 100 to 599. */
	if (!p->is_request && (m->status < 100 || m->status > 599))
		return fail(p, 502, "status code out of range");
	return p->is_request ? check_request(p, m) : H1_DONE;
}

static void head_begin(struct h1_parser *p, struct http_msg *m)
{
	memset(m, 0, offsetof(struct http_msg, h));
	m->is_request = p->is_request;
	p->in_name = p->too_many = p->line_too_long = false;
	p->head_done = p->msg_done = p->chunked = false;
}

enum h1_result h1_parse_head(struct h1_parser *p, struct http_msg *m, const char *base, size_t len)
{
	if (p->fed == 0)
		head_begin(p, m);
	BUG_ON(p->fed > len);
	p->msg = m;
	m->base = base;
	llhttp_errno_t err = llhttp_execute(&p->llh, base + p->fed, len - p->fed);
	if (err == HPE_OK) {
		p->fed = (uint32_t)len;
		/* Whole, it would be larger still. */
		if (len >= p->lim.max_head)
			return m->nh == 0 && p->is_request ? fail(p, 414, "request line too long")
							   : fail(p, 431, p->is_request ? "request head too large"
										       : "response head too large");
		return H1_AGAIN;
	}
	if (err != HPE_PAUSED || !p->head_done)
		return llhttp_failed(p, err, base, len);
	m->head_len = (uint32_t)(llhttp_get_error_pos(&p->llh) - base);
	p->fed = 0;
	/* The caller may give msg back once it has the head: nothing here touches it after. */
	p->msg = NULL;
	llhttp_resume(&p->llh);
	if (!p->msg_done) {
		/* An empty body ends, and a bad Transfer-Encoding shows, only past the head. */
		err = llhttp_execute(&p->llh, base + m->head_len, 0);
		if (err == HPE_PAUSED && p->msg_done)
			llhttp_resume(&p->llh);
		else if (err != HPE_OK)
			return llhttp_failed(p, err, base, len);
	}
	return head_complete(p, m);
}

/* --- bodies --- */

ssize_t h1_parse_body(struct h1_parser *p, const char *data, size_t len, char **out)
{
	BUG_ON(!p->head_done || p->msg_done);
	p->out = p->dechunk && out ? *out : NULL;
	llhttp_errno_t err = llhttp_execute(&p->llh, len ? data : "", len);
	if (p->out)
		*out = p->out;
	p->out = NULL;
	if (err == HPE_OK)
		return (ssize_t)len;
	if (err == HPE_PAUSED && p->msg_done) {
		llhttp_resume(&p->llh);
		return llhttp_get_error_pos(&p->llh) - (len ? data : "");
	}
	const char *reason = llhttp_get_error_reason(&p->llh);
	fail(p, 400, reason ? reason : llhttp_errno_name(err));
	return -1;
}

bool h1_parse_eof(struct h1_parser *p)
{
	/* A body that runs until the close ends in llhttp_finish's message-complete callback. */
	if (p->head_done && !p->msg_done)
		llhttp_finish(&p->llh);
	return p->head_done && p->msg_done;
}

/* --- writing heads --- */

/* An output cursor: once something did not fit, nothing more is written. */
struct out {
	char *p;
	size_t len, cap;
	bool full;
};

static void put(struct out *o, const void *s, size_t n)
{
	if (!n)
		return;
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

#define put_lit(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_str(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void put_span(struct out *o, const struct http_msg *m, struct http_span s)
{
	put(o, http_str(m, s), s.len);
}

static void put_uint(struct out *o, uint64_t v)
{
	char digits[20];
	size_t n = sizeof(digits);
	do {
		digits[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, digits + n, sizeof(digits) - n);
}

static void put_status_line(struct out *o, unsigned status)
{
	status %= 1000;
	char line[] = "HTTP/1.1 000 ";
	line[9] = (char)('0' + status / 100);
	line[10] = (char)('0' + status / 10 % 10);
	line[11] = (char)('0' + status % 10);
	put(o, line, sizeof(line) - 1);
}

static void put_connection(struct out *o, enum h1_connection c)
{
	static const char *const line[] = {
		[H1_CONN_NONE] = "",
		[H1_CONN_CLOSE] = "Connection: close\r\n",
		[H1_CONN_KEEP_ALIVE] = "Connection: keep-alive\r\n",
		[H1_CONN_UPGRADE] = "Connection: upgrade\r\n",
	};
	put_str(o, line[c]);
}

static ssize_t out_end(struct out *o)
{
	put_lit(o, "\r\n");
	return o->full ? -1 : (ssize_t)o->len;
}

/* Where the fields of the header policy go: the head being written, and how its body is framed. */
struct field_writer {
	struct out o;
	enum h1_reframe reframe;
};

static void put_field(void *ctx, enum http_hdr id, const char *name, size_t nlen,
		      const struct http_part *value, int nparts)
{
	struct field_writer *fw = ctx;
	/* De-chunked, the body is no longer what Transfer-Encoding said: the close ends it. */
	if (fw->reframe == H1_REFRAME_DECHUNK && id == HDR_TRANSFER_ENCODING)
		return;
	/* Every field of every message passes here: one bound check, then the bytes. */
	struct out *o = &fw->o;
	size_t n = nlen + 4;
	for (int i = 0; i < nparts; i++)
		n += value[i].len;
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	char *p = o->p + o->len;
	memcpy(p, name, nlen);
	p += nlen;
	*p++ = ':';
	*p++ = ' ';
	for (int i = 0; i < nparts; i++) {
		if (value[i].len) /* an empty part may have no pointer (a redirect without a tail) */
			memcpy(p, value[i].p, value[i].len);
		p += value[i].len;
	}
	*p++ = '\r';
	*p = '\n';
	o->len += n;
}

ssize_t h1_write_request(char *buf, size_t cap, const struct http_msg *m,
			 const struct h1_head_opts *opts)
{
	struct field_writer fw = {{buf, 0, cap, false}, opts->reframe};
	struct out *o = &fw.o;
	put_span(o, m, m->method_name);
	put_lit(o, " ");
	/* "http://host" and "http://host?q" have an empty path: it is "/" (RFC 9112 3.2.1). */
	if (!m->path.len || http_str(m, m->path)[0] == '?')
		put_lit(o, "/");
	put_span(o, m, m->path);
	put_lit(o, " HTTP/1.");
	put_uint(o, opts->version_minor);
	put_lit(o, "\r\n");
	http_edit_fields(m, opts->edit, put_field, &fw);
	if (opts->reframe == H1_REFRAME_CHUNK)
		put_lit(o, "Transfer-Encoding: chunked\r\n");
	put_connection(o, opts->connection);
	return out_end(o);
}

ssize_t h1_write_response(char *buf, size_t cap, const struct http_msg *m,
			  const struct h1_head_opts *opts)
{
	struct field_writer fw = {{buf, 0, cap, false}, opts->reframe};
	struct out *o = &fw.o;
	put_status_line(o, m->status);
	put_span(o, m, m->reason);
	put_lit(o, "\r\n");
	http_edit_fields(m, opts->edit, put_field, &fw);
	if (opts->reframe == H1_REFRAME_CHUNK)
		put_lit(o, "Transfer-Encoding: chunked\r\n");
	put_connection(o, opts->connection);
	return out_end(o);
}

ssize_t h1_write_answer(char *buf, size_t cap, const struct http_answer *a,
			enum h1_connection connection)
{
	struct field_writer fw = {{buf, 0, cap, false}, H1_REFRAME_NONE};
	struct out *o = &fw.o;
	put_status_line(o, a->status);
	put_str(o, http_reason(a->status));
	put_lit(o, "\r\n");
	http_answer_fields(a, put_field, &fw);
	/* RFC 9110 8.6: a 204 has no Content-Length. */
	if (a->status != 204) {
		put_lit(o, "Content-Length: ");
		put_uint(o, a->body_len);
		put_lit(o, "\r\n");
	}
	put_connection(o, connection);
	return out_end(o);
}

size_t h1_chunk_line(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t digits = 1;
	while (digits < 16 && n >> (4 * digits))
		digits++;
	for (size_t i = 0; i < digits; i++)
		out[i] = hex[(n >> (4 * (digits - 1 - i))) & 15];
	out[digits] = '\r';
	out[digits + 1] = '\n';
	return digits + 2;
}
