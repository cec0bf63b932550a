/*
 * The HTTP/1.1 backend session: a transaction's request head rewritten
 * for the backend, its body passed on as the client's stream gives it, and
 * the response read and checked by the h1 codec. The body goes to the
 * client as the bytes that came, framing included, unless the stream wants
 * only its data (then chunked framing is taken out in place).
 */

#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conn.h"
#include "http/h1.h"
#include "http/http.h"
#include "proxy/back.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "proxy/txn.h"
#include "tls/tls.h"

struct back {
	struct buf req_head;	/* the rewritten request head; kept whole for a replay */
	uint32_t req_head_sent;
	struct h1_parser parser; /* of the responses of the current attempt */
	struct http_msg *msg;	/* the response head being parsed, or NULL */
	struct buf rsp;		/* bytes from the backend; the body goes to the client from here */
	uint32_t parsed;	/* index in rsp.data: bytes before it were checked */
	uint32_t fwd;		/* index: bytes from head to here go to the client */
	bool parsing;		/* the parser is set up for this attempt */
	bool keepalive;		/* the response lets the connection carry another request */
	/*
	 * A body of unknown length from a stream that gives its data only
	 * (HTTP/2): it goes chunked, each piece the stream gives a chunk.
	 */
	struct {
		bool on;
		bool open;  /* a chunk's data went out: a CRLF ends it */
		bool ended; /* the last chunk is written out */
		char line[2 + H1_CHUNK_LINE_MAX + 5]; /* CRLF, a size line or the last chunk */
		uint8_t len, sent;
		size_t left; /* data bytes of the current chunk still to write */
	} chunk;
};

size_t back_size(void) { return sizeof(struct back); }

static struct buf_pool *bufs(const struct txn *t) { return &t->s->px->bufs; }

static void msg_release(struct txn *t)
{
	struct back *b = t->back;
	if (b->msg) {
		buf_pool_put(&t->s->px->msgs, b->msg);
		b->msg = NULL;
	}
}

bool back_prepare(struct txn *t, const struct http_msg *m)
{
	struct back *b = t->back;
	memset(b, 0, sizeof(*b));
	struct buf *out = &b->req_head;
	struct buf_pool *pool = bufs(t);
	if (buf_reserve(out, pool) < 0)
		return false;
	struct conn *cn = t->s->conn;
	const struct tls_info *tls = conn_is_tls(cn) ? tls_info(cn) : NULL;
	struct http_client_cert cert;
	if (tls)
		cert = (struct http_client_cert){tls->verify, tls->subject, tls->issuer, tls->serial,
						 tls->fingerprint};
	struct http_edit edit = {
		.rules = {t->route ? &t->route->req : NULL, t->hook_rules},
		.client_ip = t->s->ip,
		.proto = tls ? "https" : "http",
		.cert = tls ? &cert : NULL,
		.keep_upgrade = t->upgrade,
	};
	/* An HTTP/1.0 request goes as one, kept alive: the backend may not chunk what it cannot read. */
	b->chunk.on = t->req_as_data && m->framing == HTTP_FRAMING_CHUNKED;
	struct h1_head_opts opts = {
		.edit = &edit,
		.connection = t->upgrade ? H1_CONN_UPGRADE
			      : m->version_minor == 0 ? H1_CONN_KEEP_ALIVE
						      : H1_CONN_NONE,
		.reframe = b->chunk.on ? H1_REFRAME_CHUNK : H1_REFRAME_NONE,
		.version_minor = m->version_minor,
	};
	ssize_t n = h1_write_request(buf_end(out), pool->size - out->tail, m, &opts);
	if (n < 0)
		return false;
	out->tail += (uint32_t)n;
	return true;
}

void back_reset(struct txn *t)
{
	struct back *b = t->back;
	b->req_head_sent = 0;
	bool chunked = b->chunk.on;
	memset(&b->chunk, 0, sizeof(b->chunk));
	b->chunk.on = chunked;
	buf_release(&b->rsp, bufs(t));
	b->parsed = b->fwd = 0;
	msg_release(t);
	b->parsing = false;
	b->keepalive = false;
}

void back_release(struct txn *t)
{
	back_reset(t);
	buf_release(&t->back->req_head, bufs(t));
}

/* Chunking: the framing due before the next len bytes of data, or the last chunk once all are out. */
static void chunk_frame(struct txn *t, struct back *b, size_t len)
{
	if (b->chunk.sent < b->chunk.len || b->chunk.left || b->chunk.ended)
		return;
	bool last = !len && t->req_complete;
	if (!len && !last)
		return;
	size_t n = 0;
	if (b->chunk.open) {
		memcpy(b->chunk.line, "\r\n", 2);
		n = 2;
	}
	if (last) {
		memcpy(b->chunk.line + n, "0\r\n\r\n", 5);
		n += 5;
		b->chunk.ended = true;
	} else {
		n += h1_chunk_line(b->chunk.line + n, len);
		b->chunk.left = len;
	}
	b->chunk.open = !last;
	b->chunk.len = (uint8_t)n;
	b->chunk.sent = 0;
}

ssize_t back_write(struct txn *t, const struct iovec *body, bool *progress)
{
	struct back *b = t->back;
	struct bconn *bc = t->bc;
	if (!bc || t->connecting || !(bc->conn.flags & CONN_WRITABLE))
		return 0;
	struct iovec iov[3];
	int n = 0;
	size_t head_left = b->req_head.data ? b->req_head.tail - b->req_head_sent : 0;
	if (head_left)
		iov[n++] = (struct iovec){b->req_head.data + b->req_head_sent, head_left};
	/* A replay's bytes, then the body's: the data sent, framed as it was, or chunked here. */
	size_t replay_left = t->replay.len - t->replay.sent;
	struct iovec data = replay_left ? (struct iovec){t->replay.data + t->replay.sent, replay_left}
					: *body;
	size_t frame_left = 0;
	if (b->chunk.on) {
		chunk_frame(t, b, data.iov_len);
		frame_left = (size_t)(b->chunk.len - b->chunk.sent);
		if (frame_left)
			iov[n++] = (struct iovec){b->chunk.line + b->chunk.sent, frame_left};
		data.iov_len = MIN_SIZE(data.iov_len, b->chunk.left);
	}
	if (data.iov_len)
		iov[n++] = data;
	if (n == 0)
		return 0;
	ssize_t w = conn_sendv(&bc->conn, iov, n);
	if (w <= 0)
		return w;
	*progress = true;
	t->last_io_ms = txn_now_ms(t);
	size_t left = (size_t)w;
	size_t from_head = MIN_SIZE(left, head_left);
	b->req_head_sent += (uint32_t)from_head;
	left -= from_head;
	size_t from_frame = MIN_SIZE(left, frame_left);
	b->chunk.sent += (uint8_t)from_frame;
	left -= from_frame;
	if (b->chunk.on)
		b->chunk.left -= left;
	if (replay_left) {
		t->replay.sent += (uint32_t)left;
		return 0;
	}
	return (ssize_t)left;
}

bool back_request_out(const struct txn *t)
{
	const struct back *b = t->back;
	return b->req_head_sent == b->req_head.tail && t->replay.sent == t->replay.len &&
	       (!b->chunk.on || (b->chunk.ended && b->chunk.sent == b->chunk.len));
}

void back_request_drop(struct txn *t)
{
	struct back *b = t->back;
	if (b->req_head.data && b->req_head_sent == b->req_head.tail) {
		buf_release(&b->req_head, bufs(t));
		b->req_head_sent = 0;
	}
}

ssize_t back_read(struct txn *t)
{
	struct back *b = t->back;
	if (!b->parsing) {
		struct h1_limits lim = {0, (uint32_t)bufs(t)->size};
		h1_response_parser_init(&b->parser, &lim, t->is_head, t->rsp_as_data);
		b->parsing = true;
	}
	return conn_fill(&t->bc->conn, &b->rsp, bufs(t), &b->parsed, &b->fwd);
}

static enum back_event parse_body(struct txn *t, const char **why)
{
	struct back *b = t->back;
	char *data = b->rsp.data + b->parsed;
	char *out = b->rsp.data + b->fwd;
	ssize_t n = h1_parse_body(&b->parser, data, b->rsp.tail - b->parsed, &out);
	if (n < 0) {
		*why = b->parser.error;
		return BACK_ERROR;
	}
	b->parsed += (uint32_t)n;
	b->fwd = t->rsp_as_data ? (uint32_t)(out - b->rsp.data) : b->parsed;
	/*
	 * Taking the framing out, framing parsed while no data waits goes now:
	 * a buffer full of it (a long chunk extension) would otherwise leave
	 * nothing to write and no room to read.
	 */
	if (t->rsp_as_data && b->fwd == b->rsp.head) {
		buf_consume(&b->rsp, b->parsed - b->fwd);
		b->parsed = b->fwd = b->rsp.head;
	}
	t->rsp_complete = b->parser.msg_done;
	return BACK_BODY;
}

enum back_event back_parse(struct txn *t, const struct http_msg **head, const char **why)
{
	struct back *b = t->back;
	if (!b->parsing || t->rsp_complete || t->tunnel || !b->rsp.data || b->parsed >= b->rsp.tail)
		return BACK_NONE;
	if (t->rsp_head_done)
		return parse_body(t, why);
	if (!b->msg && !(b->msg = buf_pool_get(&t->s->px->msgs))) {
		*why = "out of memory";
		return BACK_ERROR;
	}
	enum h1_result r = h1_parse_head(&b->parser, b->msg, buf_start(&b->rsp), buf_len(&b->rsp));
	if (r == H1_AGAIN) {
		b->parsed = b->rsp.tail;
		return BACK_NONE;
	}
	if (r == H1_ERROR) {
		*why = b->parser.error;
		return BACK_ERROR;
	}
	*head = b->msg;
	return BACK_HEAD;
}

void back_head_done(struct txn *t, const struct http_msg *head)
{
	struct back *b = t->back;
	buf_consume(&b->rsp, head->head_len);
	b->parsed = b->fwd = b->rsp.head;
	if (!t->rsp_head_done)
		return; /* an interim head: the next one follows */
	b->keepalive = head->keep_alive && !t->tunnel;
	t->rsp_complete = b->parser.msg_done && !t->tunnel;
	msg_release(t);
}

bool back_eof_ends_body(struct txn *t) { return h1_parse_eof(&t->back->parser); }

size_t back_body(const struct txn *t, const char **data)
{
	const struct back *b = t->back;
	if (!t->rsp_head_done || !b->rsp.data)
		return 0;
	*data = buf_start(&b->rsp);
	return b->fwd - b->rsp.head;
}

void back_body_consume(struct txn *t, size_t n)
{
	struct back *b = t->back;
	if (!b->rsp.data)
		return;
	buf_consume(&b->rsp, n);
	/* Data only: framing lies between what was sent and what is unparsed. */
	if (b->rsp.head == b->fwd && b->fwd < b->parsed) {
		buf_consume(&b->rsp, b->parsed - b->fwd);
		b->fwd = b->parsed;
	}
	if (b->rsp.head == b->rsp.tail) {
		b->parsed = b->fwd = 0;
		buf_release(&b->rsp, bufs(t));
	}
}

void back_body_raw(struct txn *t)
{
	struct back *b = t->back;
	if (b->rsp.data)
		b->parsed = b->fwd = b->rsp.tail;
}

bool back_reusable(const struct txn *t)
{
	const struct back *b = t->back;
	return b->keepalive && t->req_sent && t->rsp_complete &&
	       (!b->rsp.data || b->parsed == b->rsp.tail) && !t->back_eof;
}
