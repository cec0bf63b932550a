/*
 * The HTTP/1.1 front: the session of one client connection, its requests
 * parsed by the h1 codec one after another, each handed to a transaction
 * (txn.h) as its stream.
 *
 * Request bodies go to the backend as the bytes that came, framing
 * included, once the codec has checked them; response bodies come back
 * the same way, so that nothing is re-encoded and nothing is buffered
 * beyond one buffer per direction. The exceptions are framing an HTTP/1.0
 * client cannot read (chunked: only the data goes) and a body that ends at
 * the backend's close (chunked for an HTTP/1.1 client, so that its
 * connection can stay).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conn.h"
#include "core/log.h"
#include "http/h1.h"
#include "http/http.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "proxy/txn.h"

/* Rounds of work one session may do per event before letting others run. */
#define FAIR_ROUNDS 32
/* How long a closing connection keeps reading (and dropping) what the client still sends. */
#define LINGER_MS 2000

enum client_state {
	CS_IDLE,    /* between requests */
	CS_HEAD,    /* receiving a request head */
	CS_TXN,	    /* a transaction is under way */
	CS_LINGER,  /* response sent, FIN sent; dropping input until the client closes */
	CS_CLOSED,
};

static const struct front_ops h1_front;
static const struct stream_ops h1_stream;

/* The HTTP/1 side of the current request: cleared when it starts, gone with its transaction. */
struct h1_stream {
	struct h1_parser req_parser;
	struct http_msg *msg;	/* the request head being parsed, or NULL */
	struct buf rsp_head;	/* response heads (and answers) for the client */
	const char *static_body; /* a local answer's body: config memory or the txn's */
	uint32_t static_body_left;
	/* Re-chunking a body that ends at EOF for an HTTP/1.1 client: the framing between its pieces. */
	struct {
		char line[2 + H1_CHUNK_LINE_MAX]; /* CRLF ending a chunk, then a size line or the last chunk */
		uint8_t len, sent;
		uint32_t left; /* bytes of the current chunk still to send */
		bool open;     /* a chunk's data went out: a CRLF ends it */
		bool ended;    /* the last chunk is queued */
	} chunk;
	uint8_t client_minor;	/* the request's HTTP/1.<minor> */
	bool req_keepalive;	/* the client wants the connection kept */
	bool dechunk;		/* HTTP/1.0 client, chunked response: only the data goes */
	bool rechunk;		/* HTTP/1.1 client, body until EOF: it goes chunked */
	bool close_after;	/* close the connection after this response */
};

_Static_assert(sizeof(struct h1_stream) <= TXN_STREAM_ROOM, "the HTTP/1 stream outgrew its room");

struct client {
	struct session s; /* first: the proxy knows a client as its session */
	struct conn conn;
	struct timer timer; /* the connection's deadlines; a transaction has its own */
	struct loop_task resume;
	struct buf in;	    /* bytes from the client; request body is forwarded from here */
	uint32_t in_parsed; /* index in in.data: body bytes before it are checked, to forward */
	uint8_t state;
	bool served;	    /* a request was answered on this connection */
	bool eof;	    /* the client sent FIN */
	struct txn *txn; /* the current request's; its h1_stream is in the same block (stream_of()) */
	uint64_t state_since_ms;
};

static struct client *client_of(const struct txn *t) { return container_of(t->s, struct client, s); }
/* The HTTP/1 side of the current request: only while there is one. */
static struct h1_stream *stream_of(const struct client *c) { return txn_stream(c->txn); }
static struct buf_pool *pool_of(const struct client *c) { return &c->s.px->bufs; }
static uint64_t now_ms(const struct client *c) { return loop_now_ms(c->s.px->loop); }

/* Counts n bytes a head writer put at the end of b; false if they did not fit (n < 0). */
static bool head_written(struct buf *b, ssize_t n)
{
	if (n < 0)
		return false;
	b->tail += (uint32_t)n;
	return true;
}

static size_t room_of(const struct buf *b, const struct buf_pool *pool) { return pool->size - b->tail; }

/* --- session lifetime --- */

/* Moves c to state, keeping the count of idle connections. */
static void set_state(struct client *c, enum client_state state)
{
	if ((c->state == CS_IDLE) != (state == CS_IDLE)) {
		stat_t *idle = &c->s.px->sh->stats[c->s.px->index].clients_idle;
		if (state == CS_IDLE)
			stat_add(idle, 1);
		else
			stat_sub(idle, 1);
	}
	c->state = (uint8_t)state;
}

static void client_run(struct client *c);

/* The current request is over: its transaction and what the stream held for it go. */
static void stream_end(struct client *c)
{
	if (!c->txn)
		return;
	struct h1_stream *st = stream_of(c);
	if (st->msg) {
		buf_pool_put(&c->s.px->msgs, st->msg);
		st->msg = NULL;
	}
	buf_release(&st->rsp_head, pool_of(c));
	timer_move(c->s.px->loop, &c->txn->timer, &c->timer);
	txn_free(c->txn);
	c->txn = NULL;
}

static void client_close(struct client *c)
{
	if (c->state == CS_CLOSED)
		return;
	stream_end(c);
	set_state(c, CS_CLOSED);
	timer_cancel(c->s.px->loop, &c->timer);
	loop_unqueue(c->s.px->loop, &c->resume);
	conn_close(&c->conn);
	buf_release(&c->in, pool_of(c));
	loop_free_later(c->s.px->loop, c);
	proxy_session_close(&c->s);
}

/* Sends FIN, then drops input until the client closes, so that our last bytes are not lost to a RST. */
static void client_linger(struct client *c)
{
	stream_end(c);
	conn_shutdown_write(&c->conn);
	set_state(c, CS_LINGER);
	c->state_since_ms = now_ms(c);
}

/* --- timers --- */

static uint64_t client_deadline(const struct client *c)
{
	const struct cfg_timeouts *to = &c->s.px->gen->cfg->timeouts;
	switch (c->state) {
	case CS_IDLE:
		return c->state_since_ms + (c->served ? to->client_keepalive_ms : to->client_header_ms);
	case CS_HEAD:
		/* The head's deadline is the config's the request started on. */
		return c->state_since_ms + txn_timeouts(c->txn)->client_header_ms;
	case CS_LINGER:
		return c->state_since_ms + MIN(LINGER_MS, to->idle_ms);
	default:
		return UINT64_MAX; /* the transaction's timer runs */
	}
}

/*
 * Arms the timer for the state's deadline if it is earlier than the one
 * armed; a later one is re-armed when the timer fires. A transaction's
 * deadlines are its own: the timer is left as it is, and finds none.
 */
static void client_arm_timer(struct client *c)
{
	uint64_t d = client_deadline(c);
	if (d != UINT64_MAX && (!timer_armed(&c->timer) || d < c->timer.expire_ms))
		timer_arm_at(c->s.px->loop, &c->timer, d);
}

static void client_timer_fired(struct timer *tm)
{
	struct client *c = container_of(tm, struct client, timer);
	uint64_t d = client_deadline(c);
	if (d == UINT64_MAX)
		return;
	if (d > now_ms(c)) {
		timer_arm_at(c->s.px->loop, &c->timer, d);
		return;
	}
	if (c->state != CS_HEAD) {
		client_close(c);
		return;
	}
	set_state(c, CS_TXN);
	if (txn_fail(c->txn, 408, "client sent no complete request head in time") < 0)
		return;
	client_run(c);
}

/* --- the stream a transaction sees --- */

static enum h1_connection response_connection(const struct h1_stream *st, unsigned status)
{
	if (status == 101)
		return H1_CONN_UPGRADE;
	if (status < 200)
		return H1_CONN_NONE;
	if (st->close_after)
		return H1_CONN_CLOSE;
	return st->client_minor == 0 ? H1_CONN_KEEP_ALIVE : H1_CONN_NONE;
}

static bool write_response_head(struct client *c, const struct http_msg *m)
{
	struct h1_stream *st = stream_of(c);
	struct buf *out = &st->rsp_head;
	struct buf_pool *pool = pool_of(c);
	if (buf_reserve(out, pool) < 0)
		return false;
	struct http_edit edit = {
		.rules = {c->txn->route ? &c->txn->route->rsp : NULL},
		.keep_upgrade = m->status == 101,
	};
	struct h1_head_opts opts = {
		.edit = &edit,
		.connection = response_connection(st, m->status),
		.reframe = st->dechunk ? H1_REFRAME_DECHUNK : st->rechunk ? H1_REFRAME_CHUNK : H1_REFRAME_NONE,
	};
	return head_written(out, h1_write_response(buf_end(out), room_of(out, pool), m, &opts));
}

static bool h1_send_head(struct txn *t, const struct http_msg *m)
{
	struct client *c = client_of(t);
	struct h1_stream *st = stream_of(c);
	unsigned status = m->status;
	if (status < 200 && status != 101) {
		/* 1xx goes to HTTP/1.1 clients only (RFC 9110 15.2). */
		if (st->client_minor != 1)
			return true;
		if (!write_response_head(c, m))
			return false;
		t->interim_sent = true;
		return true;
	}
	bool until_eof = m->framing == HTTP_FRAMING_UNTIL_EOF;
	/* HTTP/1.0 has no chunked coding: send the data and let the close end it. */
	st->dechunk = st->client_minor == 0 && m->framing == HTTP_FRAMING_CHUNKED;
	/*
	 * A body that ends at the backend's close goes to an HTTP/1.1 client
	 * chunked, so that the client's connection can carry on. One with a
	 * transfer coding of its own is left as it came.
	 */
	st->rechunk = st->client_minor == 1 && until_eof && !http_find_header(m, "transfer-encoding", 17);
	st->close_after = st->close_after || !st->req_keepalive || (until_eof && !st->rechunk) ||
			  st->dechunk || !t->req_complete || c->s.px->draining || status == 101;
	return write_response_head(c, m);
}

static int h1_answer(struct txn *t, struct http_answer *a, const char *body, const char **why)
{
	struct client *c = client_of(t);
	struct h1_stream *st = stream_of(c);
	struct buf *out = &st->rsp_head;
	struct buf_pool *pool = pool_of(c);
	/* A body we will not read would be taken for the next request. */
	st->close_after = !st->req_keepalive || c->s.px->draining || t->req_has_body;
	enum h1_connection conn = response_connection(st, a->status);
	if (buf_reserve(out, pool) < 0 ||
	    !head_written(out, h1_write_answer(buf_end(out), room_of(out, pool), a, conn))) {
		buf_release(out, pool);
		*why = "fixed response head too large";
		return 500;
	}
	st->static_body = t->is_head ? NULL : body;
	st->static_body_left = t->is_head ? 0 : a->body_len;
	return 0;
}

/*
 * Answers with status if nothing of a final response has reached the
 * client yet; otherwise the only honest signal left is closing.
 */
static int h1_fail(struct txn *t, int status, uint32_t retry_after_s)
{
	struct client *c = client_of(t);
	struct h1_stream *st = stream_of(c);
	struct buf_pool *pool = pool_of(c);
	if (t->rsp_head_done || t->tunnel || st->rsp_head.head != 0) {
		client_close(c);
		return -1;
	}
	st->static_body_left = 0;
	buf_release(&st->rsp_head, pool);
	if (buf_reserve(&st->rsp_head, pool) < 0) {
		client_close(c);
		return -1;
	}
	char body[64];
	int body_len = snprintf(body, sizeof(body), "%d %s\n", status, http_reason((unsigned)status));
	static const struct header_kv text = {"Content-Type", "text/plain", 12, 10};
	struct http_answer a = {
		.status = (uint16_t)status,
		.headers = &text,
		.nheaders = 1,
		.retry_after_s = retry_after_s,
		.body_len = (uint32_t)body_len,
	};
	struct buf *out = &st->rsp_head;
	/* A buffer holds far more than this; the body goes with the head, but not to a HEAD. */
	bool ok = head_written(out, h1_write_answer(buf_end(out), room_of(out, pool), &a, H1_CONN_CLOSE)) &&
		  (t->is_head || !buf_append(out, pool, body, (size_t)body_len));
	BUG_ON(!ok);
	(void)ok;
	st->rechunk = false;
	st->close_after = true;
	set_state(c, CS_TXN);
	return 0;
}

/* Checks the request body bytes read since. Returns 1 on progress, 0 none, or as txn_fail(). */
static int request_body_parse(struct client *c, struct txn *t)
{
	struct h1_parser *p = &stream_of(c)->req_parser;
	/* Only after a good head; after a bad one, or a bad body, nothing more is read as HTTP. */
	if (t->req_complete || !p->head_done || p->error_status || !c->in.data ||
	    c->in_parsed == c->in.tail)
		return 0;
	ssize_t n = h1_parse_body(p, c->in.data + c->in_parsed, c->in.tail - c->in_parsed, NULL);
	if (n < 0) {
		/* The backend has part of a request whose rest is invalid: nothing on it can be trusted. */
		return txn_fail(t, 400, p->error) < 0 ? -1 : 2;
	}
	c->in_parsed += (uint32_t)n;
	t->req_complete = p->msg_done;
	return 1;
}

static int h1_read_body(struct txn *t, struct iovec *body)
{
	struct client *c = client_of(t);
	int progress = 0;
	if (t->tunnel) {
		/* Every byte belongs to the new protocol, those that came with the request head too. */
		if (!c->eof) {
			ssize_t n = conn_fill(&c->conn, &c->in, pool_of(c), &c->in_parsed, NULL);
			if (n != 0) {
				c->eof = n < 0;
				progress = 1;
			}
		}
		c->in_parsed = c->in.tail;
		if (c->in.data)
			*body = (struct iovec){buf_start(&c->in), buf_len(&c->in)};
		return progress;
	}
	/* The request body, or what the client pipelines behind it. */
	if (!c->eof && t->bc && !t->rsp_complete) {
		ssize_t n = conn_fill(&c->conn, &c->in, pool_of(c), &c->in_parsed, NULL);
		if (n > 0) {
			progress = 1;
			t->last_io_ms = now_ms(c);
		} else if (n == IO_EOF) {
			c->eof = true;
			progress = 1;
		} else if (n < 0) {
			client_close(c);
			return -1;
		}
	}
	int r = request_body_parse(c, t);
	if (r < 0 || r == 2)
		return r;
	progress |= r;
	if (c->eof && !t->req_complete && t->bc) {
		/* The client left in the middle of its request: the backend has a partial one. */
		log_debug("%s: client closed during the request", c->s.addr);
		client_close(c);
		return -1;
	}
	if (c->in.data)
		*body = (struct iovec){buf_start(&c->in), c->in_parsed - c->in.head};
	return progress;
}

static void h1_consume_body(struct txn *t, size_t n)
{
	struct client *c = client_of(t);
	buf_consume(&c->in, n);
	if (c->in.head == c->in.tail) {
		c->in_parsed = 0;
		buf_release(&c->in, pool_of(c));
	}
}

/* Re-chunking: the whole body is out of the backend, so the last chunk is owed. */
static bool last_chunk_due(const struct txn *t, const struct h1_stream *st)
{
	return st->rechunk && t->rsp_complete && !st->chunk.ended;
}

static bool h1_output_pending(const struct txn *t)
{
	const struct h1_stream *st = stream_of(client_of(t));
	return buf_len(&st->rsp_head) || st->static_body_left || st->chunk.sent < st->chunk.len ||
	       last_chunk_due(t, st);
}

/*
 * Re-chunking: the framing due before the next body bytes, once the chunk
 * before them is out; the last chunk once the whole body is.
 */
static void rechunk_frame(const struct txn *t, struct h1_stream *st, size_t body_ready)
{
	if (st->chunk.sent < st->chunk.len || st->chunk.left)
		return;
	if (!body_ready && !last_chunk_due(t, st))
		return;
	size_t n = 0;
	if (st->chunk.open) {
		memcpy(st->chunk.line, "\r\n", 2);
		n = 2;
		st->chunk.open = false;
	}
	if (body_ready) {
		uint32_t size = (uint32_t)MIN_SIZE(body_ready, UINT32_MAX);
		n += h1_chunk_line(st->chunk.line + n, size);
		st->chunk.left = size;
		st->chunk.open = true;
	} else {
		memcpy(st->chunk.line + n, "0\r\n\r\n", 5);
		n += 5;
		st->chunk.ended = true;
	}
	st->chunk.len = (uint8_t)n;
	st->chunk.sent = 0;
}

static int h1_send_body(struct txn *t, const char *data, size_t len, size_t *taken)
{
	struct client *c = client_of(t);
	struct h1_stream *st = stream_of(c);
	if (!(c->conn.flags & CONN_WRITABLE))
		return 0;
	size_t body_len = len;
	if (st->rechunk && t->rsp_head_done) {
		rechunk_frame(t, st, body_len);
		body_len = MIN_SIZE(body_len, st->chunk.left);
	}
	struct iovec iov[3];
	int n = 0;
	size_t head_len = buf_len(&st->rsp_head);
	if (head_len)
		iov[n++] = (struct iovec){buf_start(&st->rsp_head), head_len};
	size_t frame_len = (size_t)(st->chunk.len - st->chunk.sent);
	if (frame_len)
		iov[n++] = (struct iovec){st->chunk.line + st->chunk.sent, frame_len};
	if (body_len)
		iov[n++] = (struct iovec){(void *)data, body_len};
	else if (st->static_body_left)
		iov[n++] = (struct iovec){(void *)st->static_body, st->static_body_left};
	if (n == 0)
		return 0;
	ssize_t w = conn_sendv(&c->conn, iov, n);
	if (w < 0) {
		log_debug("%s: write failed: %s", c->s.addr, strerror((int)-w));
		client_close(c);
		return -1;
	}
	if (w == 0)
		return 0;
	t->bytes_to_client += (uint64_t)w;
	t->last_io_ms = now_ms(c);
	size_t left = (size_t)w;
	size_t from_head = MIN_SIZE(left, head_len);
	buf_consume(&st->rsp_head, from_head);
	buf_release_if_empty(&st->rsp_head, pool_of(c));
	left -= from_head;
	size_t from_frame = MIN_SIZE(left, frame_len);
	st->chunk.sent = (uint8_t)(st->chunk.sent + from_frame);
	left -= from_frame;
	if (left && !body_len) {
		st->static_body += left;
		st->static_body_left -= (uint32_t)left;
	} else if (left) {
		*taken = left;
		if (st->rechunk)
			st->chunk.left -= (uint32_t)left;
	}
	return 1;
}

static bool h1_ends_stream(const struct txn *t) { return stream_of(client_of(t))->close_after; }

static void h1_finish(struct txn *t)
{
	struct client *c = client_of(t);
	bool close = stream_of(c)->close_after;
	bool client_asked_close = !stream_of(c)->req_keepalive && t->req_complete;
	stream_end(c);
	c->served = true;
	buf_release_if_empty(&c->in, pool_of(c));
	if (close || c->eof) {
		/*
		 * Closing with unread input makes the kernel send RST, which can
		 * destroy the response still in flight. Only a client that asked
		 * for the close, and sent nothing more, is left at once.
		 */
		if (c->in.data || (!c->eof && !client_asked_close))
			client_linger(c);
		else
			client_close(c);
		return;
	}
	set_state(c, CS_IDLE);
	c->state_since_ms = now_ms(c);
}

static bool h1_client_done(const struct txn *t)
{
	const struct client *c = client_of(t);
	return c->eof && !buf_len(&c->in);
}

static void h1_shutdown(struct txn *t) { conn_shutdown_write(&client_of(t)->conn); }
static void h1_close(struct txn *t) { client_close(client_of(t)); }
static void h1_wake(struct txn *t) { client_run(client_of(t)); }

static const struct stream_ops h1_stream = {
	.read_body = h1_read_body,
	.consume_body = h1_consume_body,
	.send_head = h1_send_head,
	.answer = h1_answer,
	.send_body = h1_send_body,
	.output_pending = h1_output_pending,
	.fail = h1_fail,
	.ends_stream = h1_ends_stream,
	.finish = h1_finish,
	.client_done = h1_client_done,
	.shutdown = h1_shutdown,
	.close = h1_close,
	.wake = h1_wake,
};

/* --- request heads --- */

/* The request head is complete in c->in: hand it to its transaction. */
static void request_head_done(struct client *c, struct txn *t, const struct http_msg *m)
{
	struct h1_stream *st = stream_of(c);
	st->client_minor = m->version_minor;
	t->protocol = m->version_minor ? "HTTP/1.1" : "HTTP/1.0";
	st->req_keepalive = m->keep_alive;
	t->rsp_as_data = m->version_minor == 0;
	t->req_complete = st->req_parser.msg_done;
	const char *why = NULL;
	int status = txn_request(t, m, &why);
	buf_consume(&c->in, m->head_len);
	c->in_parsed = c->in.head;
	buf_pool_put(&c->s.px->msgs, st->msg);
	st->msg = NULL;
	set_state(c, CS_TXN);
	/* The connection has no deadline while a transaction runs: its timer's place goes to the transaction's. */
	timer_move(c->s.px->loop, &c->timer, &t->timer);
	txn_begin(t, status, why);
}

/* Idle or receiving a head: read, parse, and start a transaction when the head is whole. */
static int client_head_step(struct client *c)
{
	ssize_t n = 0;
	if (!c->eof) {
		n = conn_fill(&c->conn, &c->in, pool_of(c), &c->in_parsed, NULL);
		if (n == IO_EOF)
			c->eof = true;
		else if (n < 0) {
			client_close(c);
			return -1;
		}
	}
	if (!c->in.data ||
	    (c->state == CS_HEAD && stream_of(c)->req_parser.fed == buf_len(&c->in))) {
		if (c->eof) {
			/* An incomplete head from a client that left is no request. */
			client_close(c);
			return -1;
		}
		return n > 0;
	}
	if (c->state == CS_IDLE) {
		struct txn *t = txn_new(&c->s, &h1_stream);
		if (!t) {
			client_close(c);
			return -1;
		}
		c->txn = t;
		memset(stream_of(c), 0, sizeof(struct h1_stream));
		set_state(c, CS_HEAD);
		c->state_since_ms = now_ms(c);
		const struct cfg_limits *lim = txn_limits(t);
		h1_request_parser_init(&stream_of(c)->req_parser,
				       &(struct h1_limits){lim->max_request_line, lim->max_header_size});
	}
	struct txn *t = c->txn;
	struct h1_stream *st = stream_of(c);
	if (!st->msg && !(st->msg = buf_pool_get(&c->s.px->msgs))) {
		client_close(c);
		return -1;
	}
	enum h1_result r = h1_parse_head(&st->req_parser, st->msg, buf_start(&c->in), buf_len(&c->in));
	if (r == H1_DONE) {
		request_head_done(c, t, st->msg);
		return 1;
	}
	if (r == H1_ERROR) {
		set_state(c, CS_TXN);
		txn_fail(t, st->req_parser.error_status, st->req_parser.error);
		return 1;
	}
	if (c->eof) {
		client_close(c);
		return -1;
	}
	return 1;
}

/* --- the session's pump --- */

static int linger_step(struct client *c)
{
	char sink[4096];
	for (int i = 0; i < 16; i++) {
		if (!(c->conn.flags & CONN_READABLE))
			return 0;
		ssize_t n = conn_recv(&c->conn, sink, sizeof(sink));
		if (n == 0)
			return 0;
		if (n < 0) {
			client_close(c);
			return -1;
		}
	}
	return 1;
}

/* Returns true when it stopped with work left, to carry on next turn. */
static bool client_steps(struct client *c)
{
	for (int round = 0; round < FAIR_ROUNDS; round++) {
		int progress;
		switch (c->state) {
		case CS_IDLE:
		case CS_HEAD:
			if (c->s.px->draining && c->state == CS_IDLE && !buf_len(&c->in)) {
				client_close(c);
				return false;
			}
			progress = client_head_step(c);
			break;
		case CS_TXN:
			/* A transaction that ended (finished, or with the connection) moves the state on. */
			progress = txn_step(c->txn);
			if (progress < 0)
				progress = c->state == CS_CLOSED ? -1 : 1;
			break;
		case CS_LINGER:
			progress = linger_step(c);
			break;
		default:
			return false;
		}
		if (progress <= 0) {
			if (c->state != CS_CLOSED)
				client_arm_timer(c);
			return false;
		}
	}
	/* Still busy: let the other sessions have a turn, then carry on. */
	loop_queue(c->s.px->loop, &c->resume);
	client_arm_timer(c);
	return true;
}

static void client_run(struct client *c)
{
	bool yielded = client_steps(c);
	if (c->state != CS_CLOSED && c->txn)
		txn_ran(c->txn, yielded);
}

static void client_on_io(struct conn *cn) { client_run(container_of(cn, struct client, conn)); }

static void client_resume(struct loop_task *task)
{
	client_run(container_of(task, struct client, resume));
}

static int client_start(struct proxy *px, struct listener *l, const struct accepted *a)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c) {
		front_drop(a);
		return -ENOMEM;
	}
	c->timer.on_expire = client_timer_fired;
	c->resume.run = client_resume;
	c->state = CS_IDLE; /* counted as idle below, once it is a session */
	c->state_since_ms = a->since_ms;
	int err = front_take(&c->conn, px->loop, a, client_on_io);
	if (err < 0) {
		free(c);
		return err;
	}
	proxy_session_open(px, &c->s, l, &h1_front, &c->conn, a->peer);
	stat_add(&px->sh->stats[px->index].clients_idle, 1);
	/* Data may already be waiting (TCP_DEFER_ACCEPT or a fast client): read optimistically. */
	c->conn.flags |= CONN_READABLE | CONN_WRITABLE;
	client_run(c);
	return 0;
}

static void client_drain(struct session *s)
{
	struct client *c = container_of(s, struct client, s);
	if (c->state == CS_IDLE && !buf_len(&c->in))
		client_close(c);
}

static void client_close_now(struct session *s) { client_close(container_of(s, struct client, s)); }

static const struct front_ops h1_front = {
	.name = "http/1.1",
	.start = client_start,
	.drain = client_drain,
	.close = client_close_now,
};
FRONT_REGISTER(h1_front)
