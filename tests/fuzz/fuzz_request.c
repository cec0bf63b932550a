/*
 * Request heads from a client: bytes -> message or error status.
 *
 * The first byte sets how the rest arrives (in pieces of 1 to 32 bytes, or
 * whole) and how the head is forwarded; the rest is what the client sent.
 * Properties:
 *  - parsed in pieces, the head parses as it does whole;
 *  - an error is 400, 414, 431, 501 or 505;
 *  - the head sluice would forward has no CR, LF or NUL inside a line, and
 *    llhttp (strict) reads it back as the same method, target and body
 *    framing;
 *  - the body that follows is taken in order, never past its end.
 */
#include <llhttp.h>

#include "fuzz.h"
#include "http/h1.h"

static const struct h1_limits limits = {.max_line = 2048, .max_head = 8192};

/* What llhttp alone reads of a head sluice wrote. */
struct reread {
	char method[64], url[16384];
	size_t method_len, url_len;
	bool done;
	uint16_t flags;
	uint64_t content_length;
};

static struct reread *rr_of(llhttp_t *p) { return p->data; }

static int rr_method(llhttp_t *p, const char *at, size_t len)
{
	struct reread *r = rr_of(p);
	FUZZ_CHECK(r->method_len + len <= sizeof(r->method), "method longer than read");
	memcpy(r->method + r->method_len, at, len);
	r->method_len += len;
	return 0;
}

static int rr_url(llhttp_t *p, const char *at, size_t len)
{
	struct reread *r = rr_of(p);
	FUZZ_CHECK(r->url_len + len <= sizeof(r->url), "target longer than written");
	memcpy(r->url + r->url_len, at, len);
	r->url_len += len;
	return 0;
}

static int rr_headers_complete(llhttp_t *p)
{
	struct reread *r = rr_of(p);
	r->done = true;
	r->flags = p->flags;
	r->content_length = p->content_length;
	return HPE_PAUSED;
}

static void reread_request(const char *head, size_t len, struct reread *r)
{
	static llhttp_settings_t settings;
	llhttp_settings_init(&settings);
	settings.on_method = rr_method;
	settings.on_url = rr_url;
	settings.on_headers_complete = rr_headers_complete;
	llhttp_t p;
	llhttp_init(&p, HTTP_REQUEST, &settings);
	p.data = r;
	memset(r, 0, sizeof(*r));
	llhttp_errno_t err = llhttp_execute(&p, head, len);
	FUZZ_CHECK(err == HPE_PAUSED && r->done, "llhttp refuses the forwarded head: %s (%s)",
		   llhttp_errno_name(err), llhttp_get_error_reason(&p));
}

static bool same_span(struct http_span a, struct http_span b) { return a.off == b.off && a.len == b.len; }

static bool same_msg(const struct http_msg *a, const struct http_msg *b)
{
	if (a->head_len != b->head_len || a->nh != b->nh || a->method != b->method ||
	    a->framing != b->framing || a->content_length != b->content_length ||
	    !same_span(a->target, b->target) || a->authority.len != b->authority.len ||
	    a->keep_alive != b->keep_alive || a->upgrade != b->upgrade ||
	    a->connection_names != b->connection_names)
		return false;
	for (uint32_t i = 0; i < a->nh; i++)
		if (!same_span(a->h[i].name, b->h[i].name) || !same_span(a->h[i].value, b->h[i].value) ||
		    a->h[i].id != b->h[i].id)
			return false;
	return true;
}

static void check_forwarded(const struct http_msg *m, uint8_t mode)
{
	static char out[32768];
	struct http_edit e = {.client_ip = "192.0.2.1", .proto = "http", .keep_upgrade = m->upgrade};
	struct h1_head_opts o = {
		.edit = &e,
		.connection = m->upgrade ? H1_CONN_UPGRADE : mode & 64 ? H1_CONN_KEEP_ALIVE : H1_CONN_NONE,
		.version_minor = m->version_minor,
	};
	ssize_t n = h1_write_request(out, (mode & 128) ? m->head_len : sizeof(out), m, &o);
	if (n < 0)
		return; /* does not fit: sluice answers 431 */
	fuzz_check_head(out, (size_t)n);
	struct reread r;
	reread_request(out, (size_t)n, &r);
	FUZZ_CHECK(r.method_len == m->method_name.len &&
			   !memcmp(r.method, http_str(m, m->method_name), r.method_len),
		   "method changed");
	const char *path = http_str(m, m->path);
	bool root = !m->path.len || path[0] == '?';
	FUZZ_CHECK(r.url_len == m->path.len + root && (!root || r.url[0] == '/') &&
			   !memcmp(r.url + root, path, m->path.len),
		   "target changed: %.*s -> %.*s", (int)m->path.len, path, (int)r.url_len, r.url);
	bool chunked = (r.flags & F_CHUNKED) != 0;
	FUZZ_CHECK(chunked == (m->framing == HTTP_FRAMING_CHUNKED), "chunked framing changed");
	if (m->framing == HTTP_FRAMING_LENGTH)
		FUZZ_CHECK((r.flags & F_CONTENT_LENGTH) && r.content_length == m->content_length,
			   "Content-Length changed");
	if (m->framing == HTTP_FRAMING_NONE)
		FUZZ_CHECK(!chunked && r.content_length == 0, "a body appeared");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	char *buf = fuzz_copy(data + 1, size - 1);
	size_t len = size - 1;

	struct h1_parser whole, pieces;
	/* On the heap, and freed before the body is parsed, as sluice gives it back to its pool. */
	struct http_msg *mw = malloc(sizeof(*mw)), mp;
	h1_request_parser_init(&whole, &limits);
	enum h1_result rw = h1_parse_head(&whole, mw, buf, len);
	h1_request_parser_init(&pieces, &limits);
	size_t step = 1 + (mode & 31), fed = 0;
	enum h1_result rp = H1_AGAIN;
	while (rp == H1_AGAIN && fed < len) {
		fed = fed + step < len ? fed + step : len;
		rp = h1_parse_head(&pieces, &mp, buf, fed);
	}
	if (len == 0)
		rp = H1_AGAIN;
	FUZZ_CHECK(rw == rp, "whole: %d, in pieces of %zu: %d", rw, step, rp);

	if (rw == H1_ERROR) {
		unsigned st = whole.error_status;
		FUZZ_CHECK(st == 400 || st == 414 || st == 431 || st == 501 || st == 505, "status %u (%s)",
			   st, whole.error);
		FUZZ_CHECK(whole.error && *whole.error, "no reason");
	}
	if (rw == H1_DONE) {
		FUZZ_CHECK(same_msg(mw, &mp), "the head parsed in pieces differs");
		FUZZ_CHECK(mw->head_len <= len && mw->head_len <= limits.max_head, "head_len %u", mw->head_len);
		FUZZ_CHECK(mw->method != HTTP_METHOD_CONNECT, "CONNECT accepted");
		check_forwarded(mw, mode);
		/* The body: taken in order, never beyond what was given or past its end. */
		size_t at = mw->head_len;
		free(mw);
		mw = NULL;
		while (!whole.msg_done && at < len) {
			size_t k = (mode & 32) ? 1 : len - at;
			ssize_t took = h1_parse_body(&whole, buf + at, k, NULL);
			if (took < 0) {
				FUZZ_CHECK(whole.error_status == 400, "body error status %u", whole.error_status);
				break;
			}
			FUZZ_CHECK((size_t)took <= k, "took %zd of %zu", took, k);
			FUZZ_CHECK((size_t)took == k || whole.msg_done, "stopped early without an end");
			at += (size_t)took;
		}
	}
	free(mw);
	free(buf);
	return 0;
}
