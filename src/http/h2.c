#include "http/h2.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/http.h"

struct h2 {
	nghttp2_session *ng;
	const struct h2_events *ev;
	void *ud;
	uint32_t glitches, max_glitches;
};

/* One more protocol mistake; past the limit, the connection ends (GOAWAY ENHANCE_YOUR_CALM). */
static void glitch(struct h2 *h)
{
	if (++h->glitches == h->max_glitches + 1)
		nghttp2_session_terminate_session(h->ng, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* A callback's answer for a reset code: the stream is reset with it, the session goes on. */
static int reset_with(struct h2 *h, int32_t id, int code)
{
	if (!code)
		return 0;
	nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, id, (uint32_t)code);
	return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

static bool is_request_head(const nghttp2_frame *f)
{
	return f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2 *h = ud;
	if (!is_request_head(f))
		return 0; /* trailers: their fields are not forwarded (yet) */
	void *stream = h->ev->stream_open(h->ud, f->hd.stream_id);
	if (!stream)
		return reset_with(h, f->hd.stream_id, H2_REFUSED_STREAM);
	nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, stream);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)flags;
	struct h2 *h = ud;
	void *stream = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (!stream || !is_request_head(f))
		return 0;
	return reset_with(h, f->hd.stream_id,
			  h->ev->header(h->ud, stream, (const char *)name, nlen, (const char *)value, vlen));
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2 *h = ud;
	if (f->hd.type == NGHTTP2_DATA && f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		glitch(h);
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	void *stream = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (!stream)
		return 0;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	int code = 0;
	if (is_request_head(f))
		code = h->ev->head_done(h->ud, stream, end);
	else if (end)
		code = h->ev->body_done(h->ud, stream);
	if (code)
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, (uint32_t)code);
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	(void)flags;
	struct h2 *h = ud;
	void *stream = nghttp2_session_get_stream_user_data(ng, id);
	if (!stream) {
		/* A stream that is being reset: its bytes still count against the connection's window. */
		nghttp2_session_consume_connection(ng, len);
		return 0;
	}
	int code = h->ev->data(h->ud, stream, (const char *)data, len);
	if (code)
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, (uint32_t)code);
	return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int error, void *ud)
{
	(void)ng;
	(void)f;
	(void)error;
	glitch(ud);
	return 0;
}

/* A stream the server resets is work the client made it do (MadeYouReset): it counts. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	(void)ng;
	if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code != NGHTTP2_NO_ERROR)
		glitch(ud);
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error, void *ud)
{
	struct h2 *h = ud;
	void *stream = nghttp2_session_get_stream_user_data(ng, id);
	if (stream)
		h->ev->stream_close(h->ud, stream, error);
	return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	(void)src;
	struct h2 *h = ud;
	void *stream = nghttp2_session_get_stream_user_data(ng, id);
	if (!stream)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	bool eof = false;
	ssize_t n = h->ev->body(h->ud, stream, (char *)buf, len, &eof);
	if (n < 0)
		return NGHTTP2_ERR_DEFERRED;
	if (eof)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return n;
}

struct h2 *h2_server_new(const struct h2_settings *s, const struct h2_events *ev, void *ud)
{
	struct h2 *h = calloc(1, sizeof(*h));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	if (!h || nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto fail;
	h->ev = ev;
	h->ud = ud;
	h->max_glitches = s->max_glitches;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	/* Request bodies are given back as the backend takes them, not as they arrive. */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_send_header_block_length(opt, 65536);
	int rc = nghttp2_session_server_new2(&h->ng, cb, h, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	cb = NULL;
	opt = NULL;
	if (rc)
		goto fail;
	nghttp2_settings_entry set[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->initial_window},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s->max_header_list},
	};
	if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, set, sizeof(set) / sizeof(set[0])))
		goto fail;
	return h;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	h2_free(h);
	return NULL;
}

void h2_free(struct h2 *h)
{
	if (!h)
		return;
	nghttp2_session_del(h->ng);
	free(h);
}

ssize_t h2_recv(struct h2 *h, const char *in, size_t len)
{
	ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)in, len);
	if (n >= 0)
		return n;
	/* Some errors the library leaves to us to tell the client (floods, endless CONTINUATION). */
	bool calm = n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
	nghttp2_session_terminate_session(h->ng, calm ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
	return -1;
}

ssize_t h2_pending(struct h2 *h, const char **out)
{
	const uint8_t *p;
	ssize_t n = nghttp2_session_mem_send(h->ng, &p);
	if (n < 0)
		return -1;
	*out = (const char *)p;
	return n;
}

bool h2_alive(const struct h2 *h)
{
	return nghttp2_session_want_read(h->ng) || nghttp2_session_want_write(h->ng);
}

/* Lower-case field names, as HTTP/2 requires; at most HTTP_MAX_HEADERS of them. */
static size_t to_nv(nghttp2_nv *nv, char status[4], unsigned code, const struct h2_field *f, size_t n)
{
	snprintf(status, 4, "%03u", code % 1000);
	nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
	size_t k = 1;
	for (size_t i = 0; i < n && k <= HTTP_MAX_HEADERS; i++)
		nv[k++] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value, f[i].name_len,
				       f[i].value_len, NGHTTP2_NV_FLAG_NONE};
	return k;
}

int h2_respond(struct h2 *h, int32_t id, unsigned status, const struct h2_field *f, size_t n, bool body)
{
	nghttp2_nv nv[HTTP_MAX_HEADERS + 1];
	char code[4];
	size_t k = to_nv(nv, code, status, f, n);
	nghttp2_data_provider prd = {.read_callback = read_body};
	return nghttp2_submit_response(h->ng, id, nv, k, body ? &prd : NULL) ? -1 : 0;
}

int h2_interim(struct h2 *h, int32_t id, unsigned status, const struct h2_field *f, size_t n)
{
	nghttp2_nv nv[HTTP_MAX_HEADERS + 1];
	char code[4];
	size_t k = to_nv(nv, code, status, f, n);
	return nghttp2_submit_headers(h->ng, NGHTTP2_FLAG_NONE, id, NULL, nv, k, NULL) < 0 ? -1 : 0;
}

void h2_resume(struct h2 *h, int32_t id) { nghttp2_session_resume_data(h->ng, id); }

/* On a stream closed meanwhile, the library gives back the connection's window only. */
void h2_consumed(struct h2 *h, int32_t id, size_t n) { nghttp2_session_consume(h->ng, id, n); }

void h2_reset(struct h2 *h, int32_t id, enum h2_error error)
{
	nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, id, error);
}

void h2_goaway(struct h2 *h, enum h2_error error)
{
	if (error == H2_NO_ERROR)
		nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(h->ng), error, NULL, 0);
	else
		nghttp2_session_terminate_session(h->ng, error);
}

/* --- request heads, as HTTP/1.1 would carry them --- */

void h2_head_init(struct h2_head *h, struct http_msg *m, uint32_t max)
{
	memset(m, 0, offsetof(struct http_msg, h));
	m->is_request = true;
	m->version_minor = 1; /* what an HTTP/1.1 backend is asked in */
	m->keep_alive = true;
	*h = (struct h2_head){.m = m, .max = max};
}

static int mistake(struct h2_head *h, int status, const char *why)
{
	if (!h->status) {
		h->status = (uint16_t)status;
		h->why = why;
	}
	return 0;
}

static bool has_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == ' ' || s[i] == '\t' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

static bool is(const char *name, size_t nlen, const char *lit)
{
	return nlen == strlen(lit) && !memcmp(name, lit, nlen);
}

int h2_head_field(struct h2_head *h, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct http_msg *m = h->m;
	/* An HPACK bomb decodes to much from little: what it decodes to is what counts. */
	h->bytes += (uint32_t)MIN_SIZE(nlen + vlen + 32, h->max + 1);
	if (h->bytes > h->max)
		return mistake(h, 431, "request head larger than h2_max_header_list");
	if (h->status)
		return 0;
	if (nlen && name[0] == ':') {
		struct http_span *span;
		if (is(name, nlen, ":method")) {
			if (has_space(value, vlen))
				return H2_PROTOCOL_ERROR;
			m->method = http_method_named(value, vlen);
			span = &m->method_name;
		} else if (is(name, nlen, ":path")) {
			if (!vlen || has_space(value, vlen))
				return H2_PROTOCOL_ERROR;
			span = &m->path;
		} else if (is(name, nlen, ":authority")) {
			span = &m->authority;
		} else {
			return 0; /* :scheme: the listener says which */
		}
		if (!http_msg_copy(m, value, vlen, h->max, span))
			return mistake(h, 431, "request head too large");
		m->target = m->path;
		return 0;
	}
	if (!http_msg_add_header(m, name, nlen, value, vlen, h->max))
		return mistake(h, 431, "request head too large");
	if (m->h[m->nh - 1].id == HDR_CONTENT_LENGTH) {
		h->has_content_length = true;
		uint64_t n = 0;
		for (size_t i = 0; i < vlen && n < UINT64_MAX / 10 - 9; i++)
			n = n * 10 + (uint64_t)(value[i] - '0'); /* the codec has checked it is digits */
		m->content_length = n;
	}
	return 0;
}

/* Puts len bytes of the message's own storage, at s, in it again: a copy first, as it may move. */
static bool copy_own(struct http_msg *m, const char *s, size_t len, uint32_t max, struct http_span *out)
{
	char *tmp = malloc(len ? len : 1);
	if (!tmp)
		return false;
	memcpy(tmp, s, len);
	bool ok = http_msg_copy(m, tmp, len, max, out);
	free(tmp);
	return ok;
}

/* RFC 9113 8.2.3: a client may send a cookie in pieces; HTTP/1.1 wants one field, "; " between. */
static bool join_cookies(struct http_msg *m, uint32_t max)
{
	uint32_t first = UINT32_MAX, n = 0;
	size_t len = 0;
	for (uint32_t i = 0; i < m->nh; i++)
		if (m->h[i].id == HDR_COOKIE) {
			first = MIN(first, i);
			len += m->h[i].value.len + (n++ ? 2 : 0);
		}
	if (n < 2)
		return true;
	char *joined = malloc(len);
	if (!joined)
		return false;
	size_t off = 0;
	uint32_t kept = 0;
	for (uint32_t i = 0; i < m->nh; i++) {
		struct http_header f = m->h[i];
		if (f.id == HDR_COOKIE) {
			if (off) {
				memcpy(joined + off, "; ", 2);
				off += 2;
			}
			memcpy(joined + off, http_str(m, f.value), f.value.len);
			off += f.value.len;
			if (i != first)
				continue; /* the first carries them all */
		}
		m->h[kept++] = f;
	}
	m->nh = kept;
	bool ok = http_msg_copy(m, joined, len, max, &m->h[first].value);
	free(joined);
	return ok;
}

int h2_head_finish(struct h2_head *h, bool end_stream)
{
	struct http_msg *m = h->m;
	const struct http_header *host = NULL;
	for (uint32_t i = 0; i < m->nh; i++)
		if (m->h[i].id == HDR_HOST) {
			if (host)
				return H2_PROTOCOL_ERROR;
			host = &m->h[i];
		}
	/* Two hosts that differ: which one routes is a guess an attacker makes. */
	if (host && m->authority.len &&
	    (host->value.len != m->authority.len ||
	     strncasecmp(http_str(m, host->value), http_str(m, m->authority), m->authority.len)))
		return H2_PROTOCOL_ERROR;
	if (h->status)
		return 0;
	if (!m->authority.len && host)
		m->authority = host->value;
	struct http_span value;
	if (!host && m->authority.len) {
		if (m->nh == HTTP_MAX_HEADERS ||
		    !copy_own(m, http_str(m, m->authority), m->authority.len, h->max, &value))
			return mistake(h, 431, "request head too large");
		struct http_header *added = &m->h[m->nh];
		if (!http_msg_copy(m, "Host", 4, h->max, &added->name))
			return mistake(h, 431, "request head too large");
		added->value = value;
		added->id = HDR_HOST;
		m->nh++;
	}
	if (!join_cookies(m, h->max))
		return mistake(h, 431, "request head too large");
	m->framing = end_stream		     ? HTTP_FRAMING_NONE
		     : h->has_content_length ? HTTP_FRAMING_LENGTH
					     : HTTP_FRAMING_CHUNKED; /* HTTP/1.1's body of unknown length */
	m->head_len = h->bytes;
	return 0;
}
