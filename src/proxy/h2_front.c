/*
 * The HTTP/2 front (RFC 9113): the session of one client connection, each
 * of its streams a transaction. The codec (http/h2.h) does the framing,
 * HPACK, flow control and the protocol's checks of a request head; this
 * file makes the message a transaction routes out of a stream's fields,
 * and moves bodies between the stream and its transaction with
 * back-pressure:
 *
 * - a request body is held per stream up to the window the client was
 *   given, and given back (WINDOW_UPDATE) only as the backend takes it;
 * - a response body goes through one buffer per stream that the client's
 *   window drains: a stream whose window stays shut holds that buffer and
 *   its backend connection, no more.
 *
 * Transactions run from the session's pump (session_run), never from
 * inside the codec's callbacks, so that none is freed under itself.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conn.h"
#include "core/log.h"
#include "http/h2.h"
#include "http/http.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "proxy/txn.h"

/* Rounds of work one session may do per event before letting others run. */
#define FAIR_ROUNDS 32
/* How long an ending session has to get its last frames (a GOAWAY) to the client. */
#define ENDING_MS 5000

static const struct front_ops h2_front;
static const struct stream_ops h2_stream_ops;

struct h2_session {
	struct session s; /* first: the proxy knows it as a session */
	struct conn conn;
	struct h2 *h2;
	struct h2_settings settings; /* sent at its start, from the config of then */
	struct buf in;
	struct timer timer; /* no stream open for too long */
	struct loop_task resume;
	const char *out; /* what the codec gave that the socket has not taken yet */
	size_t out_len;
	struct list streams;  /* every stream (struct h2_stream) */
	struct list runnable; /* streams whose transaction has something to do */
	uint32_t active;      /* streams with a transaction */
	uint32_t begun;       /* streams the client has begun, up to h2_max_requests */
	uint64_t idle_since_ms;
	bool running, rerun, closed;
	bool ending; /* the codec is done: last frames out, then FIN, input dropped */
};

struct h2_stream {
	struct h2_session *c;
	struct txn *t; /* from its whole head until its transaction ends */
	int32_t id;
	struct list link, run_link;
	bool queued;
	struct h2_head head; /* the request head, field by field; its message until the transaction has it */
	/* The request body, held until the backend takes it. */
	char *body;
	uint32_t body_off, body_len, body_cap;
	/* The response: body bytes that wait for the client's window. */
	struct buf rsp;
	const char *static_body; /* a local answer's: it lives as long as the transaction */
	uint32_t static_left;
	char fail_body[64];
	bool rsp_head_sent, rsp_body, rsp_end;
	bool codec_closed; /* both sides ended it while its transaction still sends the body on */
	/* What txn_request() decided, for txn_begin() in the pump. */
	bool begin_due;
	int begin_status;
	const char *begin_why;
};

static struct h2_stream *stream_of(const struct txn *t) { return *(struct h2_stream **)txn_stream(t); }
static struct buf_pool *pool_of(const struct h2_session *c) { return &c->s.px->bufs; }
static uint64_t now_ms(const struct h2_session *c) { return loop_now_ms(c->s.px->loop); }
static const struct cfg_limits *limits_of(const struct h2_session *c) { return &c->s.px->gen->cfg->limits; }

static void session_run(struct h2_session *c);

/* Something is queued for the session's pump: this round runs it again, or the loop does. */
static void want_run(struct h2_session *c)
{
	c->rerun = true;
	if (!c->running && !c->closed)
		loop_queue(c->s.px->loop, &c->resume);
}

static void queue_stream(struct h2_stream *st)
{
	if (st->queued || !st->t)
		return;
	st->queued = true;
	list_insert_tail(&st->c->runnable, &st->run_link);
	want_run(st->c);
}

static void stream_free(struct h2_stream *st);

/*
 * The transaction is over (or cut): the stream lives on until the codec
 * closes it, or goes now if the codec already has.
 */
static void end_txn(struct h2_stream *st)
{
	struct txn *t = st->t;
	if (!t)
		return;
	st->t = NULL;
	if (st->queued) {
		list_remove(&st->run_link);
		st->queued = false;
	}
	if (--st->c->active == 0)
		st->c->idle_since_ms = now_ms(st->c);
	txn_free(t);
	if (st->codec_closed)
		stream_free(st);
}

static void stream_free(struct h2_stream *st)
{
	struct h2_session *c = st->c;
	st->codec_closed = false; /* it goes here, not again in end_txn() */
	end_txn(st);
	if (st->head.m) {
		http_msg_free(st->head.m);
		buf_pool_put(&c->s.px->msgs, st->head.m);
	}
	buf_release(&st->rsp, pool_of(c));
	free(st->body);
	list_remove(&st->link);
	free(st);
}

static void session_close(struct h2_session *c)
{
	if (c->closed)
		return;
	c->closed = true;
	while (!list_empty(&c->streams))
		stream_free(container_of(c->streams.next, struct h2_stream, link));
	timer_cancel(c->s.px->loop, &c->timer);
	loop_unqueue(c->s.px->loop, &c->resume);
	conn_close(&c->conn);
	buf_release(&c->in, pool_of(c));
	h2_free(c->h2);
	c->h2 = NULL;
	loop_free_later(c->s.px->loop, c);
	proxy_session_close(&c->s);
}

/* --- the request head, from the codec --- */

static void *on_stream_open(void *ud, int32_t id)
{
	struct h2_session *c = ud;
	struct h2_stream *st = calloc(1, sizeof(*st));
	struct http_msg *m = st ? buf_pool_get(&c->s.px->msgs) : NULL;
	if (!m) {
		free(st);
		return NULL;
	}
	h2_head_init(&st->head, m, limits_of(c)->h2_max_header_list);
	/* Enough on one connection: this one is served, and the client is told to go on elsewhere. */
	if (++c->begun == limits_of(c)->h2_max_requests)
		h2_goaway(c->h2, H2_NO_ERROR);
	st->c = c;
	st->id = id;
	list_insert_tail(&c->streams, &st->link);
	return st;
}

static int on_header(void *ud, void *sp, const char *name, size_t nlen, const char *value, size_t vlen)
{
	(void)ud;
	return h2_head_field(&((struct h2_stream *)sp)->head, name, nlen, value, vlen);
}

static int on_head_done(void *ud, void *sp, bool end_stream)
{
	struct h2_session *c = ud;
	struct h2_stream *st = sp;
	int code = h2_head_finish(&st->head, end_stream);
	if (code)
		return code;
	struct txn *t = txn_new(&c->s, &h2_stream_ops);
	if (!t)
		return H2_REFUSED_STREAM;
	*(struct h2_stream **)txn_stream(t) = st;
	st->t = t;
	c->active++;
	/* DATA frames carry a body's data, whatever its framing in HTTP/1.1. */
	t->rsp_as_data = true;
	t->req_as_data = true;
	t->req_complete = end_stream;
	struct http_msg *m = st->head.m;
	t->protocol = "HTTP/2.0";
	const char *why = st->head.why;
	int status = st->head.status ? st->head.status : txn_request(t, m, &why);
	http_msg_free(m);
	buf_pool_put(&c->s.px->msgs, m);
	st->head.m = NULL;
	st->begin_due = true;
	st->begin_status = status;
	st->begin_why = why;
	queue_stream(st);
	return 0;
}

/* --- the request body, from the codec --- */

static int on_data(void *ud, void *sp, const char *data, size_t len)
{
	struct h2_session *c = ud;
	struct h2_stream *st = sp;
	if (!st->t) {
		/* Its answer is out: what the client still sends is dropped, and its window given back. */
		h2_consumed(c->h2, st->id, len);
		return 0;
	}
	if (st->body_len + len > st->body_cap) {
		if (st->body_off) {
			memmove(st->body, st->body + st->body_off, st->body_len - st->body_off);
			st->body_len -= st->body_off;
			st->body_off = 0;
		}
		if (st->body_len + len > st->body_cap) {
			/* At most the window the client was given is ever held (the codec enforces it). */
			uint32_t cap = MAX(limits_of(c)->h2_initial_window, st->body_len + (uint32_t)len);
			char *p = realloc(st->body, cap);
			if (!p)
				return H2_INTERNAL_ERROR;
			st->body = p;
			st->body_cap = cap;
		}
	}
	memcpy(st->body + st->body_len, data, len);
	st->body_len += (uint32_t)len;
	st->t->last_io_ms = now_ms(c);
	queue_stream(st);
	return 0;
}

static int on_body_done(void *ud, void *sp)
{
	(void)ud;
	struct h2_stream *st = sp;
	if (st->t) {
		st->t->req_complete = true;
		queue_stream(st);
	}
	return 0;
}

/* --- the response body, to the codec --- */

static ssize_t on_body(void *ud, void *sp, char *buf, size_t len, bool *eof)
{
	(void)ud;
	struct h2_stream *st = sp;
	size_t n = 0;
	if (st->static_left) {
		n = MIN_SIZE(len, st->static_left);
		memcpy(buf, st->static_body, n);
		st->static_body += n;
		st->static_left -= (uint32_t)n;
	} else if (buf_len(&st->rsp)) {
		n = MIN_SIZE(len, buf_len(&st->rsp));
		memcpy(buf, buf_start(&st->rsp), n);
		buf_consume(&st->rsp, n);
		buf_release_if_empty(&st->rsp, pool_of(st->c));
	}
	if (st->t) {
		st->t->bytes_to_client += n;
		queue_stream(st); /* room again: the transaction may have more */
	}
	if (n)
		return (ssize_t)n;
	/* The response's last byte is out: its stream ends, though the request may still come in. */
	if (st->rsp_end || (st->t && st->t->rsp_complete && !txn_response_owed(st->t))) {
		*eof = true;
		return 0;
	}
	return -1;
}

static void on_stream_close(void *ud, void *sp, uint32_t error)
{
	(void)ud;
	struct h2_stream *st = sp;
	if (!error && st->t) {
		/* Both sides ended it; the request body it holds still goes to the backend. */
		st->codec_closed = true;
		return;
	}
	if (error && st->t)
		log_debug("client %s: stream %d reset (error %u)", st->c->s.addr, st->id, error);
	stream_free(st);
}

static const struct h2_events events = {
	.stream_open = on_stream_open,
	.header = on_header,
	.head_done = on_head_done,
	.data = on_data,
	.body_done = on_body_done,
	.body = on_body,
	.stream_close = on_stream_close,
};

/* --- the stream a transaction sees --- */

/* Fields for the codec: names in lower case (RFC 9113 8.2.1), copied with their values into scratch. */
struct fields {
	struct h2_field f[HTTP_MAX_HEADERS];
	size_t n;
	char *scratch;
	size_t used, cap;
	bool full;
};

static void add_field(void *ctx, enum http_hdr id, const char *name, size_t nlen,
		      const struct http_part *value, int nparts)
{
	struct fields *fs = ctx;
	/* The header policy has taken out the hop-by-hop fields; framing is the serializer's, and DATA frames it. */
	if (id == HDR_TRANSFER_ENCODING)
		return;
	size_t vlen = 0;
	for (int i = 0; i < nparts; i++)
		vlen += value[i].len;
	if (fs->n == HTTP_MAX_HEADERS || nlen + vlen > fs->cap - fs->used) {
		fs->full = true;
		return;
	}
	char *p = fs->scratch + fs->used;
	for (size_t i = 0; i < nlen; i++)
		p[i] = (char)tolower((unsigned char)name[i]);
	char *v = p + nlen;
	for (int i = 0, off = 0; i < nparts; off += (int)value[i].len, i++)
		if (value[i].len)
			memcpy(v + off, value[i].p, value[i].len);
	fs->f[fs->n++] = (struct h2_field){p, v, nlen, vlen};
	fs->used += nlen + vlen;
}

static void add_number(struct fields *fs, const char *name, uint64_t n)
{
	char num[24];
	int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)n);
	struct http_part part = {num, (size_t)len};
	add_field(fs, HDR_OTHER, name, strlen(name), &part, 1);
}

/* A head's fields on their way into the codec, which copies them. */
static _Thread_local char scratch[65536];

static bool h2_send_head(struct txn *t, const struct http_msg *m)
{
	struct h2_stream *st = stream_of(t);
	struct h2_session *c = st->c;
	struct fields fs = {.scratch = scratch, .cap = sizeof(scratch)};
	struct http_edit edit = {.rules = {t->route ? &t->route->rsp : NULL}};
	http_edit_fields(m, &edit, add_field, &fs);
	if (fs.full)
		return false;
	if (m->status < 200) {
		if (m->status == 101)
			return false; /* no protocol switch in HTTP/2: the request asked for none */
		t->interim_sent = true;
		return h2_interim(c->h2, st->id, m->status, fs.f, fs.n) == 0;
	}
	st->rsp_body = m->framing != HTTP_FRAMING_NONE && !t->is_head;
	st->rsp_head_sent = true;
	want_run(c);
	return h2_respond(c->h2, st->id, m->status, fs.f, fs.n, st->rsp_body) == 0;
}

static int respond(struct txn *t, const struct http_answer *a, const char *body)
{
	struct h2_stream *st = stream_of(t);
	struct fields fs = {.scratch = scratch, .cap = sizeof(scratch)};
	http_answer_fields(a, add_field, &fs);
	if (a->status != 204)
		add_number(&fs, "content-length", a->body_len);
	if (fs.full)
		return -1;
	st->static_body = t->is_head ? NULL : body;
	st->static_left = t->is_head ? 0 : a->body_len;
	st->rsp_body = st->static_left > 0;
	st->rsp_head_sent = true;
	want_run(st->c);
	return h2_respond(st->c->h2, st->id, a->status, fs.f, fs.n, st->rsp_body);
}

static int h2_answer(struct txn *t, struct http_answer *a, const char *body, const char **why)
{
	if (respond(t, a, body) < 0) {
		*why = "fixed response head too large";
		return 500;
	}
	return 0;
}

/* Cuts the stream: the transaction ends with it. */
static int cut(struct txn *t, enum h2_error error)
{
	struct h2_stream *st = stream_of(t);
	struct h2_session *c = st->c;
	if (!st->codec_closed)
		h2_reset(c->h2, st->id, error);
	end_txn(st);
	want_run(c);
	return -1;
}

static int h2_fail(struct txn *t, int status, uint32_t retry_after_s)
{
	struct h2_stream *st = stream_of(t);
	if (st->rsp_head_sent)
		return cut(t, H2_INTERNAL_ERROR);
	int len = snprintf(st->fail_body, sizeof(st->fail_body), "%d %s\n", status,
			   http_reason((unsigned)status));
	static const struct header_kv text = {"Content-Type", "text/plain", 12, 10};
	struct http_answer a = {
	    .status = (uint16_t)status,
	    .headers = &text,
	    .nheaders = 1,
	    .retry_after_s = retry_after_s,
	    .body_len = (uint32_t)len,
	};
	if (respond(t, &a, st->fail_body) < 0)
		return cut(t, H2_INTERNAL_ERROR);
	return 0;
}

static int h2_read_body(struct txn *t, struct iovec *body)
{
	struct h2_stream *st = stream_of(t);
	*body = (struct iovec){st->body + st->body_off, st->body_len - st->body_off};
	return 0; /* bytes arrive through the codec, which queues the stream */
}

static void h2_consume_body(struct txn *t, size_t n)
{
	struct h2_stream *st = stream_of(t);
	st->body_off += (uint32_t)n;
	if (st->body_off == st->body_len)
		st->body_off = st->body_len = 0;
	h2_consumed(st->c->h2, st->id, n);
}

static int h2_send_body(struct txn *t, const char *data, size_t len, size_t *taken)
{
	struct h2_stream *st = stream_of(t);
	struct h2_session *c = st->c;
	if (!len)
		return 0;
	struct buf_pool *pool = pool_of(c);
	if (buf_reserve(&st->rsp, pool) < 0)
		return cut(t, H2_INTERNAL_ERROR);
	if (st->rsp.head && pool->size - st->rsp.tail < pool->size / 4)
		buf_make_room(&st->rsp);
	size_t n = MIN_SIZE(len, pool->size - st->rsp.tail);
	if (!n)
		return 0;
	memcpy(buf_end(&st->rsp), data, n);
	st->rsp.tail += (uint32_t)n;
	*taken = n;
	h2_resume(c->h2, st->id);
	want_run(c);
	return 1;
}

static bool h2_output_pending(const struct txn *t)
{
	const struct h2_stream *st = stream_of(t);
	return buf_len(&st->rsp) || st->static_left;
}

/*
 * A response may end before its request does: its stream's END_STREAM goes
 * with its last byte, and the body the client still sends goes on to the
 * backend, so that the backend's connection ends its exchange whole.
 */
static bool h2_ends_stream(const struct txn *t)
{
	(void)t;
	return false;
}

static void h2_finish(struct txn *t)
{
	struct h2_stream *st = stream_of(t);
	st->rsp_end = true;
	if (st->rsp_body)
		h2_resume(st->c->h2, st->id); /* the last DATA frame, empty, ends the stream */
	want_run(st->c);
	end_txn(st);
}

/* No tunnel in HTTP/2 (no Upgrade; extended CONNECT is not offered). */
static bool h2_client_done(const struct txn *t)
{
	(void)t;
	return false;
}

static void h2_shutdown(struct txn *t) { cut(t, H2_CANCEL); }

static void h2_close(struct txn *t) { cut(t, H2_INTERNAL_ERROR); }

static void h2_wake(struct txn *t)
{
	struct h2_stream *st = stream_of(t);
	queue_stream(st);
	session_run(st->c);
}

static const struct stream_ops h2_stream_ops = {
	.read_body = h2_read_body,
	.consume_body = h2_consume_body,
	.send_head = h2_send_head,
	.answer = h2_answer,
	.send_body = h2_send_body,
	.output_pending = h2_output_pending,
	.fail = h2_fail,
	.ends_stream = h2_ends_stream,
	.finish = h2_finish,
	.client_done = h2_client_done,
	.shutdown = h2_shutdown,
	.close = h2_close,
	.wake = h2_wake,
};

/* --- the session's pump --- */

/* Reads what the client sent and hands it to the codec. Returns 1 after a connection error, -1 when the session is over. */
static int read_input(struct h2_session *c)
{
	for (int i = 0; i < FAIR_ROUNDS && (c->conn.flags & CONN_READABLE); i++) {
		uint32_t parsed = 0;
		ssize_t n = conn_fill(&c->conn, &c->in, pool_of(c), &parsed, NULL);
		if (n == 0)
			break;
		if (n < 0)
			return -1; /* EOF included: a client that leaves takes its streams with it */
		ssize_t used = h2_recv(c->h2, buf_start(&c->in), buf_len(&c->in));
		if (used < 0) {
			log_debug("client %s: HTTP/2 connection error", c->s.addr);
			return 1; /* the GOAWAY goes out, then the session ends */
		}
		buf_consume(&c->in, (size_t)used);
		buf_release_if_empty(&c->in, pool_of(c));
	}
	/* More waits: the next round reads it (the socket's edge is spent). */
	if (c->conn.flags & CONN_READABLE)
		c->rerun = true;
	return 0;
}

/* Runs each stream that has something to do, once. */
static void run_streams(struct h2_session *c)
{
	/* Those queued while these run wait for the next round. */
	struct list ready;
	list_init(&ready);
	if (!list_empty(&c->runnable)) {
		ready.next = c->runnable.next;
		ready.prev = c->runnable.prev;
		ready.next->prev = ready.prev->next = &ready;
		list_init(&c->runnable);
	}
	while (!list_empty(&ready)) {
		struct h2_stream *st = container_of(ready.next, struct h2_stream, run_link);
		list_remove(&st->run_link);
		st->queued = false;
		struct txn *t = st->t;
		if (st->begin_due) {
			st->begin_due = false;
			if (txn_begin(t, st->begin_status, st->begin_why) < 0)
				continue; /* t is gone, and st may be */
		}
		int r = 1;
		for (int i = 0; i < FAIR_ROUNDS && r > 0; i++)
			r = txn_step(t);
		if (r < 0)
			continue;
		if (r > 0)
			queue_stream(st); /* still busy: another turn */
		txn_ran(t, r > 0);
	}
}

/* Writes what the codec has for the client. Returns -1 when the connection failed. */
static int flush(struct h2_session *c)
{
	for (;;) {
		if (!c->out_len) {
			ssize_t n = h2_pending(c->h2, &c->out);
			if (n < 0)
				return -1;
			if (n == 0)
				return 0;
			c->out_len = (size_t)n;
		}
		if (!(c->conn.flags & CONN_WRITABLE))
			return 0;
		struct iovec iov = {(void *)c->out, c->out_len};
		ssize_t w = conn_sendv(&c->conn, &iov, 1);
		if (w < 0)
			return -1;
		if (w == 0)
			return 0;
		c->out += w;
		c->out_len -= (size_t)w;
	}
}

static void arm_timer(struct h2_session *c)
{
	if (c->active) {
		timer_cancel(c->s.px->loop, &c->timer);
		return;
	}
	const struct cfg_timeouts *to = &c->s.px->gen->cfg->timeouts;
	timer_arm_at(c->s.px->loop, &c->timer, c->idle_since_ms + to->client_keepalive_ms);
}

/*
 * The codec is done (a GOAWAY went or came, and no stream is left): what is
 * queued goes out, then a FIN; what the client still sends is read and
 * dropped until it closes, so that no RST destroys the GOAWAY on its way.
 * ENDING_MS at most.
 */
static void session_ending(struct h2_session *c)
{
	if (!c->ending) {
		c->ending = true;
		timer_arm(c->s.px->loop, &c->timer, ENDING_MS);
	}
	if (flush(c) < 0) {
		session_close(c);
		return;
	}
	if (c->out_len)
		return; /* the rest when the socket takes it */
	conn_shutdown_write(&c->conn);
	char sink[4096];
	for (int i = 0; i < FAIR_ROUNDS && (c->conn.flags & CONN_READABLE); i++) {
		ssize_t n = conn_recv(&c->conn, sink, sizeof(sink));
		if (n < 0) {
			session_close(c);
			return;
		}
	}
	if (c->conn.flags & CONN_READABLE)
		loop_queue(c->s.px->loop, &c->resume);
}

static void session_run(struct h2_session *c)
{
	if (c->closed)
		return;
	if (c->ending) {
		session_ending(c);
		return;
	}
	if (c->running) {
		c->rerun = true;
		return;
	}
	c->running = true;
	int round = 0;
	bool failed = false;
	do {
		c->rerun = false;
		int r = read_input(c);
		if (r < 0 || (run_streams(c), flush(c)) < 0) {
			c->running = false;
			session_close(c);
			return;
		}
		failed = r > 0;
	} while (!failed && c->rerun && ++round < FAIR_ROUNDS);
	c->running = false;
	if (c->rerun && !failed)
		loop_queue(c->s.px->loop, &c->resume);
	if (failed || !h2_alive(c->h2)) {
		session_ending(c);
		return;
	}
	arm_timer(c);
}

static void session_on_io(struct conn *cn) { session_run(container_of(cn, struct h2_session, conn)); }

static void session_resume(struct loop_task *task)
{
	session_run(container_of(task, struct h2_session, resume));
}

/*
 * Nothing open for client_keepalive: GOAWAY, and the session ends (at once
 * if the client reads nothing); or the end of ENDING_MS.
 */
static void session_idle(struct timer *tm)
{
	struct h2_session *c = container_of(tm, struct h2_session, timer);
	if (c->ending) {
		session_close(c); /* ENDING_MS is over */
		return;
	}
	if (c->active)
		return;
	h2_goaway(c->h2, H2_NO_ERROR);
	session_run(c);
	if (!c->closed && c->out_len)
		session_close(c); /* a client that reads nothing does not keep it */
}

static struct h2_settings settings_of(const struct cfg_limits *lim)
{
	return (struct h2_settings){lim->h2_max_concurrent_streams, lim->h2_initial_window,
				    lim->h2_max_header_list, lim->h2_max_glitches};
}

static int session_start(struct proxy *px, struct listener *l, const struct accepted *a)
{
	struct h2_session *c = calloc(1, sizeof(*c));
	if (!c) {
		front_drop(a);
		return -ENOMEM;
	}
	list_init(&c->streams);
	list_init(&c->runnable);
	c->timer.on_expire = session_idle;
	c->resume.run = session_resume;
	c->idle_since_ms = a->since_ms;
	int err = front_take(&c->conn, px->loop, a, session_on_io);
	if (err < 0) {
		free(c);
		return err;
	}
	c->settings = settings_of(&px->gen->cfg->limits);
	if (!(c->h2 = h2_server_new(&c->settings, &events, c))) {
		conn_close(&c->conn);
		free(c);
		return -ENOMEM;
	}
	proxy_session_open(px, &c->s, l, &h2_front, &c->conn, a->peer);
	c->conn.flags |= CONN_READABLE | CONN_WRITABLE;
	session_run(c);
	return 0;
}

/* A stop or reload: GOAWAY with the last stream begun, which still finish. */
static void session_drain(struct session *s)
{
	struct h2_session *c = container_of(s, struct h2_session, s);
	h2_goaway(c->h2, H2_NO_ERROR);
	session_run(c);
}

static void session_close_now(struct session *s) { session_close(container_of(s, struct h2_session, s)); }

/*
 * A new config whose HTTP/2 settings differ from those this connection
 * announced: GOAWAY, so that the client goes on on a connection that has
 * them (those begun finish). Other changes (sites, pools) apply to each
 * new request as they are: a platform that changes sites every second
 * does not churn its clients' connections.
 */
static void session_adopted(struct session *s)
{
	struct h2_session *c = container_of(s, struct h2_session, s);
	struct h2_settings now = settings_of(limits_of(c));
	if (!memcmp(&now, &c->settings, sizeof(now)))
		return;
	h2_goaway(c->h2, H2_NO_ERROR);
	want_run(c);
}

static const struct front_ops h2_front = {
	.name = "h2",
	.start = session_start,
	.drain = session_drain,
	.close = session_close_now,
	.adopted = session_adopted,
};
FRONT_REGISTER(h2_front)
