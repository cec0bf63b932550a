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
	struct h1_head_opts opts = {
		.edit = &edit,
		.connection = t->upgrade ? H1_CONN_UPGRADE
			      : m->version_minor == 0 ? H1_CONN_KEEP_ALIVE
						      : H1_CONN_NONE,
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
	size_t replay_left = t->replay.len - t->replay.sent;
	if (replay_left)
		iov[n++] = (struct iovec){t->replay.data + t->replay.sent, replay_left};
	else if (body->iov_len)
		iov[n++] = *body;
	if (n == 0)
		return 0;
	ssize_t w = conn_sendv(&bc->conn, iov, n);
	if (w <= 0)
		return w;
	*progress = true;
	t->last_io_ms = txn_now_ms(t);
	size_t from_head = MIN_SIZE((size_t)w, head_left);
	b->req_head_sent += (uint32_t)from_head;
	size_t from_replay = MIN_SIZE((size_t)w - from_head, replay_left);
	t->replay.sent += (uint32_t)from_replay;
	return (ssize_t)((size_t)w - from_head - from_replay);
}

bool back_request_out(const struct txn *t)
{
	const struct back *b = t->back;
	return b->req_head_sent == b->req_head.tail && t->replay.sent == t->replay.len;
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
