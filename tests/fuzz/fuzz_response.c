/*
 * Response heads (and what follows them) from a backend.
 *
 * The first byte: bit 0 the request was HEAD, bit 1 the client is HTTP/1.0
 * (chunked bodies are reduced to their data), bit 2 a body until EOF is
 * re-chunked, bit 3 bodies arrive one byte at a time; the rest is what the
 * backend sent: interim heads, a final head, a body, maybe more.
 * Properties:
 *  - an error is 502;
 *  - a head sluice would forward has no CR, LF or NUL inside a line, and
 *    llhttp (strict) reads it back with the same status and the framing
 *    sluice chose for it;
 *  - a response without a body (HEAD, 1xx, 204, 304) ends with its head;
 *  - a body is taken in order, never past its end (Content-Length: exactly
 *    that many bytes); de-chunked data never overtakes the parse;
 *  - a close ends a body that runs until EOF, and no other.
 */
#include <llhttp.h>

#include "fuzz.h"
#include "http/h1.h"

static const struct h1_limits limits = {.max_line = 0, .max_head = 8192};

struct reread {
	bool done;
	uint16_t flags;
	uint64_t content_length;
};

static int rr_headers_complete(llhttp_t *p)
{
	struct reread *r = p->data;
	r->done = true;
	r->flags = p->flags;
	r->content_length = p->content_length;
	return HPE_PAUSED;
}

static void check_forwarded(const struct http_msg *m, uint8_t mode)
{
	static char out[32768];
	bool dechunk = (mode & 2) && m->framing == HTTP_FRAMING_CHUNKED;
	bool rechunk = (mode & 4) && m->framing == HTTP_FRAMING_UNTIL_EOF &&
		       !http_find_header(m, "transfer-encoding", 17);
	struct http_edit e = {.keep_upgrade = m->status == 101};
	struct h1_head_opts o = {
		.edit = &e,
		.connection = m->status == 101 ? H1_CONN_UPGRADE : (mode & 2) ? H1_CONN_CLOSE : H1_CONN_NONE,
		.reframe = dechunk ? H1_REFRAME_DECHUNK : rechunk ? H1_REFRAME_CHUNK : H1_REFRAME_NONE,
	};
	ssize_t n = h1_write_response(out, sizeof(out), m, &o);
	if (n < 0)
		return;
	fuzz_check_head(out, (size_t)n);
	static llhttp_settings_t settings;
	llhttp_settings_init(&settings);
	settings.on_headers_complete = rr_headers_complete;
	llhttp_t p;
	llhttp_init(&p, HTTP_RESPONSE, &settings);
	struct reread r = {0};
	p.data = &r;
	llhttp_errno_t err = llhttp_execute(&p, out, (size_t)n);
	FUZZ_CHECK(err == HPE_PAUSED && r.done, "llhttp refuses the forwarded head: %s (%s)",
		   llhttp_errno_name(err), llhttp_get_error_reason(&p));
	FUZZ_CHECK(p.status_code == m->status, "status %u became %u", m->status, p.status_code);
	bool chunked = (r.flags & F_CHUNKED) != 0;
	if (dechunk)
		FUZZ_CHECK(!chunked, "de-chunked but still chunked");
	else if (rechunk || m->framing == HTTP_FRAMING_CHUNKED)
		FUZZ_CHECK(chunked, "chunked framing lost");
	else if (m->framing == HTTP_FRAMING_LENGTH)
		FUZZ_CHECK(!chunked && (r.flags & F_CONTENT_LENGTH) && r.content_length == m->content_length,
			   "Content-Length changed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	char *buf = fuzz_copy(data + 1, size - 1);
	size_t len = size - 1, at = 0;
	struct h1_parser p;
	/* On the heap, and freed before the body is parsed, as sluice gives it back to its pool. */
	struct http_msg *m = malloc(sizeof(*m));
	unsigned status = 0;
	enum http_framing framing = HTTP_FRAMING_NONE;
	uint64_t content_length = 0;
	h1_response_parser_init(&p, &limits, mode & 1, mode & 2);
	/* Interim heads, then the final one. */
	for (int heads = 0; heads < 8; heads++) {
		enum h1_result r = h1_parse_head(&p, m, buf + at, len - at);
		if (r == H1_AGAIN)
			goto out;
		if (r == H1_ERROR) {
			FUZZ_CHECK(p.error_status == 502, "status %u (%s)", p.error_status, p.error);
			goto out;
		}
		FUZZ_CHECK(m->head_len <= len - at, "head_len %u beyond the input", m->head_len);
		bool bodiless = (mode & 1) || (m->status >= 100 && m->status < 200) || m->status == 204 ||
				m->status == 304;
		if (bodiless)
			FUZZ_CHECK(p.msg_done && m->framing == HTTP_FRAMING_NONE, "status %u has a body", m->status);
		check_forwarded(m, mode);
		at += m->head_len;
		status = m->status;
		framing = m->framing;
		content_length = m->content_length;
		if (status >= 200 || status == 101)
			break;
	}
	free(m);
	m = NULL;
	if (status < 200)
		goto out;
	bool dechunking = mode & 2;
	/* Framing parsed away makes room: the data goes where the body began. */
	char *out = buf + at, *start = out;
	size_t taken = 0;
	while (!p.msg_done && at < len) {
		size_t k = (mode & 8) ? 1 : len - at;
		char *before = out;
		ssize_t n = h1_parse_body(&p, buf + at, k, &out);
		if (n < 0) {
			FUZZ_CHECK(p.error_status == 502, "body error status %u", p.error_status);
			goto out;
		}
		FUZZ_CHECK((size_t)n <= k, "took %zd of %zu", n, k);
		FUZZ_CHECK(out <= buf + at + n, "de-chunked data overtook the parse");
		if (!dechunking)
			FUZZ_CHECK(out == before, "data moved without de-chunking");
		else if (framing != HTTP_FRAMING_CHUNKED)
			FUZZ_CHECK(out == before + n, "a body without framing is not all data");
		at += (size_t)n;
		taken += (size_t)n;
	}
	if (framing == HTTP_FRAMING_LENGTH && p.msg_done)
		FUZZ_CHECK(taken == content_length, "took %zu of Content-Length %llu", taken,
			   (unsigned long long)content_length);
	if (!p.msg_done && framing != HTTP_FRAMING_NONE)
		FUZZ_CHECK(h1_parse_eof(&p) == (framing == HTTP_FRAMING_UNTIL_EOF),
			   "the close ends a %d body wrongly", framing);
	FUZZ_CHECK((size_t)(out - start) <= taken, "more data than bytes");
out:
	free(m);
	free(buf);
	return 0;
}
