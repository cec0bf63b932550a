/*
 * HTTP/1.1 proxying: the session of one client connection, its
 * transactions, and the backend connections they borrow.
 *
 * Both directions go through the h1 codec. Heads are rewritten (hop-by-hop
 * headers out, X-Forwarded-* in); bodies are forwarded as the bytes that
 * came, framing included, once the codec has checked them, so nothing is
 * re-encoded and nothing is buffered beyond one buffer per direction. The
 * exceptions are framing an HTTP/1.0 client cannot read (chunked: only the
 * data goes) and a body that ends at the backend's close (chunked for an
 * HTTP/1.1 client, so that its connection can stay).
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conn.h"
#include "core/log.h"
#include "http/h1.h"
#include "http/http.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "proxy/txn.h"
#include "route/hook.h"
#include "route/router.h"
#include "tls/tls.h"
#include "upstream/upstream.h"

/* Rounds of work one session may do per event before letting others run. */
#define FAIR_ROUNDS 32
/* How long a closing connection keeps reading (and dropping) what the client still sends. */
#define LINGER_MS 2000
/* "METHOD TARGET" of most requests fits in the transaction; a longer one is allocated. */
#define LOG_LINE_INLINE 192

enum client_state {
	CS_IDLE,    /* between requests */
	CS_HEAD,    /* receiving a request head */
	CS_TXN,	    /* a transaction is under way */
	CS_LINGER,  /* response sent, FIN sent; dropping input until the client closes */
	CS_CLOSED,
};

struct txn;

static const struct front_ops h1_front;

struct client {
	struct session s; /* first: the proxy knows a client as its session */
	struct conn conn;
	struct timer timer;
	struct loop_task resume;
	struct buf in;	    /* bytes from the client; request body is forwarded from here */
	uint32_t in_parsed; /* index in in.data: body bytes before it are checked, to forward */
	uint8_t state;
	bool served;	    /* a request was answered on this connection */
	bool tls_counted;   /* its handshake is in the counters */
	bool eof;	    /* the client sent FIN */
	struct txn *txn;
	uint64_t state_since_ms;
	char ip[INET6_ADDRSTRLEN];
	char addr[INET6_ADDRSTRLEN + 8]; /* ip:port, for logs */
};

/*
 * One request and its response. Taken from the worker's pool when a request
 * starts; its head is parsed into a struct http_msg from another pool, held
 * only while a head is being parsed.
 */
struct txn {
	struct client *c;
	struct generation *gen; /* the config it runs on, timeouts included; one reference held */
	struct bconn *bc;
	struct server_rt *srv;
	struct h1_parser req_parser, rsp_parser;
	struct http_msg *msg;	/* the head being parsed (the request's, then the response's), or NULL */

	struct buf req_head;	/* rewritten request head; kept whole for a replay */
	uint32_t req_head_sent;
	uint64_t body_consumed;	/* request body bytes taken from the client's buffer */
	/* The request body sent so far, kept (up to retry.buffer) to send it again. */
	struct {
		char *data;
		uint32_t len, cap, sent;
		bool keep; /* still keeping: the pool retries and it fitted so far */
	} replay;
	struct buf rsp_buf;	/* bytes from the backend; response body is forwarded from here */
	uint32_t rsp_parsed;	/* index in rsp_buf.data: bytes before it were checked */
	uint32_t rsp_fwd;	/* index: bytes from head to here go to the client */
	struct buf rsp_head;	/* rewritten response heads (and error responses) for the client */
	/* Re-chunking a body that ends at EOF for an HTTP/1.1 client: the framing between its pieces. */
	struct {
		char line[2 + H1_CHUNK_LINE_MAX]; /* CRLF ending a chunk, then a size line or the last chunk */
		uint8_t len, sent;
		uint32_t left; /* bytes of the current chunk still to send */
		bool open;     /* a chunk's data went out: a CRLF ends it */
		bool ended;    /* the last chunk is queued */
	} chunk;

	uint8_t client_minor;	/* the request's HTTP/1.<minor> */
	bool req_complete;	/* the request's last byte was parsed */
	bool req_sent;		/* ... and all of it reached the backend */
	bool req_keepalive;	/* the client wants the connection kept */
	bool req_has_body;
	bool is_head;
	bool idempotent;	/* RFC 9110 9.2.2: may be sent again if an answer was lost */
	bool upgrade;		/* the request asks for a protocol switch */
	bool tunnel;		/* switched: bytes flow raw both ways */
	bool rsp_parsing;	/* the response parser is set up for this attempt */
	bool rsp_head_done;	/* the final response head is queued for the client */
	bool rsp_complete;
	bool rsp_until_eof;	/* the response body ends when the backend closes */
	bool dechunk;		/* HTTP/1.0 client, chunked response: forward only the data */
	bool rechunk;		/* HTTP/1.1 client, body until EOF: forward it chunked */
	bool bk_keepalive;	/* the backend connection may be reused afterwards */
	bool close_after;	/* close the client connection after this response */
	bool connecting;
	bool rsp_started;	/* a response byte arrived: the request can no longer be replayed */
	bool backend_eof;
	bool pooled;		/* it went to pool (its counters count it) */
	bool own_held;		/* it yielded with work left: the time until it resumes is sluice's */
	size_t pool;		/* index into the config's pools */
	struct upstream_request ureq; /* servers tried, place in the pool's queue */
	const struct route *route; /* NULL for a listener with a pool of its own */
	const struct site *site;   /* the route's */
	const char *static_body; /* a fixed response body: config memory or owned_body */
	uint32_t static_body_left;
	char *owned_body;	/* a hook's answer, copied out of Lua */
	const struct header_rules *hook_rules; /* while the head is rewritten */
	int32_t forced_server;	/* a server the hook named, or -1 */
	uint16_t status;
	uint16_t last_status; /* what the last failed attempt would answer, and why */
	const char *last_why;
	/* Timings, in µs on the loop's clock (stats.h says what each histogram means). */
	uint64_t start_us;
	uint64_t own_us, own_mark_us; /* sluice's own time so far, and when it was last counted */
	uint64_t attempt_us;	      /* the current attempt got its connection */
	uint64_t backend_us;	      /* ... and its response head came this long after */
	uint64_t queued_us;	      /* it entered the pool's queue */
	uint64_t bytes_from_client;   /* its head; body_consumed is added at the end */
	uint64_t phase_since_ms; /* queued, connect start, or request fully sent */
	uint64_t last_io_ms;
	uint64_t bytes_to_client;
	char *log_line;		/* "METHOD TARGET" for the access log: log_inline or allocated */
	uint32_t log_method_len;
	/*
	 * Not zeroed when a transaction starts: written before it is read.
	 * The last field, so that txn_new() clears every other one, whatever
	 * is added: the assertion below keeps it last.
	 */
	char log_inline[LOG_LINE_INLINE];
};
_Static_assert(sizeof(struct txn) - (offsetof(struct txn, log_inline) + LOG_LINE_INLINE) <
		       _Alignof(struct txn),
	       "log_inline must end struct txn: txn_new() clears everything before it");

size_t txn_size(void) { return sizeof(struct txn); }

/*
 * A transaction runs on the config it started with, timeouts included, as
 * its routing does; a connection between requests follows the current one.
 */
static const struct cfg_timeouts *timeouts(const struct client *c)
{
	return &(c->txn ? c->txn->gen : c->s.px->gen)->cfg->timeouts;
}
static struct buf_pool *pool_of(const struct client *c) { return &c->s.px->bufs; }
/* The pool the transaction is routed to (once routed). */
static const struct cfg_pool *pool_cfg(const struct txn *t) { return &t->gen->cfg->pools[t->pool]; }
static uint64_t now_ms(const struct client *c) { return loop_now_ms(c->s.px->loop); }
static const char *log_line(const struct txn *t) { return t->log_line ? t->log_line : "-"; }

/* A message head to parse into, from the worker's pool; NULL when out of memory. */
static struct http_msg *txn_msg(struct txn *t)
{
	if (!t->msg)
		t->msg = buf_pool_get(&t->c->s.px->msgs);
	return t->msg;
}

static void txn_msg_release(struct txn *t)
{
	if (t->msg) {
		buf_pool_put(&t->c->s.px->msgs, t->msg);
		t->msg = NULL;
	}
}

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

/* Gives the backend connection back, if the transaction holds one. */
static void txn_release_backend(struct txn *t, bool reusable)
{
	if (t->bc) {
		upstream_release(t->bc, reusable);
		t->bc = NULL;
	}
}

/* Counts the time a request waited in its pool's queue, once it is out (granted, or given up). */
static void txn_left_queue(struct txn *t)
{
	if (!t->queued_us)
		return;
	struct pool_stats *ps = upstream_pool_stats(&t->gen->up, t->pool);
	if (ps)
		stats_hist_add(&ps->queue, loop_now_us(t->c->s.px->loop) - t->queued_us);
	t->queued_us = 0;
}

static struct txn *txn_new(struct client *c)
{
	struct txn *t = buf_pool_get(&c->s.px->txns);
	if (!t)
		return NULL;
	memset(t, 0, offsetof(struct txn, log_inline));
	t->c = c;
	t->gen = proxy_gen_get(c->s.px);
	t->start_us = loop_now_us(c->s.px->loop);
	t->forced_server = -1;
	list_init(&t->ureq.queue_link);
	return t;
}

static void txn_free(struct client *c)
{
	struct txn *t = c->txn;
	if (!t)
		return;
	txn_left_queue(t);
	upstream_dequeue(&t->gen->up, &t->ureq);
	txn_release_backend(t, false);
	txn_msg_release(t);
	free(t->replay.data);
	buf_release(&t->req_head, pool_of(c));
	buf_release(&t->rsp_buf, pool_of(c));
	buf_release(&t->rsp_head, pool_of(c));
	if (t->log_line != t->log_inline)
		free(t->log_line);
	free(t->owned_body);
	proxy_gen_put(t->gen);
	buf_pool_put(&c->s.px->txns, t);
	c->txn = NULL;
}

/*
 * Counts the time since the current loop turn began (or since it was last
 * counted) as sluice's own: the transaction was being worked on, or had
 * bytes ready that the loop had not got to yet. Between its events it is
 * waiting on the client or the backend, and that is not counted.
 */
static uint64_t txn_count_own(struct txn *t)
{
	uint64_t now = loop_clock_us(), turn = loop_now_us(t->c->s.px->loop);
	uint64_t from = t->own_held ? t->own_mark_us : MAX(turn, t->own_mark_us);
	if (now > from)
		t->own_us += now - from;
	t->own_mark_us = now;
	t->own_held = false;
	return now;
}

static void count_req(struct req_stats *r, const struct txn *t, enum stats_class k, uint64_t total)
{
	stat_add(&r->responses[k], 1);
	stat_add(&r->bytes_in, t->bytes_from_client + t->body_consumed);
	stat_add(&r->bytes_out, t->bytes_to_client);
	stats_hist_add(&r->total, total);
	stats_hist_add(&r->added, t->own_us);
	if (t->backend_us)
		stats_hist_add(&r->backend, t->backend_us);
}

static void txn_count(struct client *c, struct txn *t, uint64_t total)
{
	enum stats_class k = stats_class_of(t->status);
	struct proc_stats *ps = &c->s.px->sh->stats[c->s.px->index];
	stat_add(&ps->responses[k], 1);
	stat_add(&ps->bytes_in, t->bytes_from_client + t->body_consumed);
	stat_add(&ps->bytes_out, t->bytes_to_client);
	struct shared_gen *sg = t->gen->up.sg;
	uint32_t w = c->s.px->index;
	struct req_stats *tr;
	if (t->site && t->site->metrics &&
	    (tr = stats_block(sg->tracked[t->site->metrics - 1]->stats, w, sizeof(*tr))))
		count_req(tr, t, k, total);
	if (t->route && t->route->metrics &&
	    (tr = stats_block(sg->tracked[t->route->metrics - 1]->stats, w, sizeof(*tr))))
		count_req(tr, t, k, total);
	if (!t->pooled)
		return;
	struct pool_stats *pool = upstream_pool_stats(&t->gen->up, t->pool);
	if (pool)
		count_req(&pool->req, t, k, total);
	struct server_stats *srv = t->srv ? upstream_server_stats(&t->gen->up, t->srv) : NULL;
	if (srv)
		count_req(&srv->req, t, k, total);
}

static void access_log_txn(struct client *c, struct txn *t, uint64_t total)
{
	if (c->s.px->access_log.fd < 0)
		return;
	const char *mt = t->log_line;
	struct access_entry e = {
		.client = c->addr,
		.method = mt ? mt : "-",
		.method_len = mt ? t->log_method_len : 1,
		.target = mt ? mt + t->log_method_len + 1 : "-",
		.target_len = mt ? strlen(mt + t->log_method_len + 1) : 1,
		.status = t->status,
		.bytes_sent = t->bytes_to_client,
		.server = t->srv ? t->srv->cfg->addr.text : NULL,
		.duration_us = total,
	};
	if (c->s.px->access_log.json) {
		e.bytes_received = t->bytes_from_client + t->body_consumed;
		e.site = t->site ? t->site->name : NULL;
		e.route = t->route ? t->route->prefix : NULL;
		e.pool = t->pooled ? pool_cfg(t)->name : NULL;
		e.backend_us = t->backend_us;
		e.added_us = t->own_us;
	}
	const struct tls_info *tls = conn_is_tls(&c->conn) ? tls_info(&c->conn) : NULL;
	if (tls) {
		e.tls = tls->protocol;
		e.sni = tls->sni;
		e.cipher = tls->cipher;
		e.verify = tls->verify;
	}
	access_log_write(&c->s.px->access_log, &e);
}

/* The transaction is over, answered or not: its counters and its access-log line. */
static void txn_done(struct client *c, struct txn *t)
{
	uint64_t total = txn_count_own(t) - t->start_us;
	txn_count(c, t, total);
	access_log_txn(c, t, total);
}

/* A TLS client's handshake counts once: done, or failed (closed before it was done). */
static void count_tls(struct client *c)
{
	if (c->tls_counted || !conn_is_tls(&c->conn))
		return;
	bool done = !(c->conn.flags & CONN_HANDSHAKE);
	if (!done && c->state != CS_CLOSED)
		return;
	c->tls_counted = true;
	struct proc_stats *ps = &c->s.px->sh->stats[c->s.px->index];
	stat_add(done ? &ps->tls_handshakes : &ps->tls_failures, 1);
}

static void client_close(struct client *c)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->txn && c->txn->log_line)
		txn_done(c, c->txn);
	txn_free(c);
	set_state(c, CS_CLOSED);
	count_tls(c);
	stat_add(&c->s.px->sh->stats[c->s.px->index].clients_closed, 1);
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
	txn_free(c);
	conn_shutdown_write(&c->conn);
	set_state(c, CS_LINGER);
	c->state_since_ms = now_ms(c);
}

/*
 * Answers the transaction with status if nothing of a final response has
 * reached the client yet; otherwise the only honest signal left is closing.
 */
static void txn_fail(struct client *c, int status, const char *why)
{
	struct txn *t = c->txn;
	log_warn("%s %s: %d %s: %s%s%s", c->addr, log_line(t), status, http_reason((unsigned)status),
		 why, t->srv ? " server " : "", t->srv ? t->srv->cfg->addr.text : "");
	txn_left_queue(t);
	upstream_dequeue(&t->gen->up, &t->ureq);
	txn_release_backend(t, false);
	txn_msg_release(t);
	if (t->rsp_head_done || t->tunnel || t->rsp_head.head != 0) {
		if (!t->status)
			t->status = (uint16_t)status;
		client_close(c);
		return;
	}
	buf_release(&t->rsp_buf, pool_of(c));
	t->rsp_parsed = t->rsp_fwd = 0;
	t->static_body_left = 0;
	buf_release(&t->rsp_head, pool_of(c));
	struct buf_pool *pool = pool_of(c);
	if (buf_reserve(&t->rsp_head, pool) < 0) {
		client_close(c);
		return;
	}
	char body[64];
	int body_len = snprintf(body, sizeof(body), "%d %s\n", status, http_reason((unsigned)status));
	static const struct header_kv text = {"Content-Type", "text/plain", 12, 10};
	struct http_answer a = {
		.status = (uint16_t)status,
		.headers = &text,
		.nheaders = 1,
		/* The pool is full or down: tell clients when it is worth asking again (RFC 9110 10.2.3). */
		.retry_after_s = status == 503 && t->ureq.wake ? pool_cfg(t)->queue.retry_after_s : 0,
		.body_len = (uint32_t)body_len,
	};
	struct buf *out = &t->rsp_head;
	/* A buffer holds far more than this; the body goes with the head, but not to a HEAD. */
	bool ok = head_written(out, h1_write_answer(buf_end(out), room_of(out, pool), &a, H1_CONN_CLOSE)) &&
		  (t->is_head || !buf_append(out, pool, body, (size_t)body_len));
	BUG_ON(!ok);
	(void)ok;
	t->status = (uint16_t)status;
	t->rsp_head_done = true;
	t->rsp_complete = true;
	t->rsp_until_eof = false;
	t->rechunk = false;
	t->close_after = true;
	set_state(c, CS_TXN);
}

/* --- reading and writing --- */

/*
 * Reads what fits into b; parsed and fwd are indices into b that move with
 * its bytes (fwd may be NULL). Returns bytes read, 0 (would block or no
 * room), IO_EOF or -errno.
 */
static ssize_t fill(struct conn *cn, struct buf *b, uint32_t *parsed, uint32_t *fwd,
		    struct buf_pool *pool)
{
	if (!(cn->flags & CONN_READABLE))
		return 0;
	if (buf_reserve(b, pool) < 0)
		return -ENOMEM;
	if (b->head && pool->size - b->tail < pool->size / 4) {
		*parsed -= b->head;
		if (fwd)
			*fwd -= b->head;
		buf_make_room(b);
	}
	size_t room = pool->size - b->tail;
	if (!room)
		return 0;
	ssize_t n = conn_recv(cn, buf_end(b), room);
	if (n > 0)
		b->tail += (uint32_t)n;
	else if (b->head == b->tail) {
		*parsed = 0;
		if (fwd)
			*fwd = 0;
		buf_release(b, pool);
	}
	return n;
}

/* --- timers --- */

static uint64_t client_deadline(const struct client *c)
{
	const struct cfg_timeouts *to = timeouts(c);
	const struct txn *t = c->txn;
	switch (c->state) {
	case CS_IDLE:
		if (c->conn.flags & CONN_HANDSHAKE)
			return c->state_since_ms + MIN(to->tls_handshake_ms, to->client_header_ms);
		return c->state_since_ms + (c->served ? to->client_keepalive_ms : to->client_header_ms);
	case CS_HEAD:
		return c->state_since_ms + to->client_header_ms;
	case CS_LINGER:
		return c->state_since_ms + MIN(LINGER_MS, to->idle_ms);
	case CS_TXN:
		if (upstream_waiting(&t->ureq))
			return t->phase_since_ms + pool_cfg(t)->queue.timeout_ms;
		if (t->connecting)
			return t->phase_since_ms + to->backend_connect_ms;
		if (t->req_sent && !t->rsp_head_done)
			return t->phase_since_ms + to->backend_response_ms;
		return t->last_io_ms + to->idle_ms;
	default:
		return UINT64_MAX;
	}
}

static void client_arm_timer(struct client *c)
{
	uint64_t d = client_deadline(c);
	if (!timer_armed(&c->timer) || d < c->timer.expire_ms)
		timer_arm_at(c->s.px->loop, &c->timer, d);
}

/* Why an attempt on a backend failed, as retry.on names it. */
enum failure { FAIL_CONNECT, FAIL_ERROR, FAIL_TIMEOUT, FAIL_STATUS };

static void backend_failed(struct client *c, int status, const char *why, enum failure cause);

/* Whether request bytes we hold are waiting for the backend to take them. */
static bool request_bytes_waiting(const struct client *c, const struct txn *t)
{
	return t->req_head_sent < t->req_head.tail || t->replay.sent < t->replay.len ||
	       (c->in.data && c->in_parsed > c->in.head);
}

static void client_timed_out(struct client *c)
{
	struct txn *t = c->txn;
	switch (c->state) {
	case CS_IDLE:
	case CS_LINGER:
		client_close(c);
		return;
	case CS_HEAD:
		txn_fail(c, 408, "client sent no complete request head in time");
		break;
	case CS_TXN:
		if (upstream_waiting(&t->ureq)) {
			txn_fail(c, 503, "waited in the pool's queue for too long");
		} else if (t->connecting) {
			backend_failed(c, 504, "backend connect timed out", FAIL_CONNECT);
		} else if (t->req_sent && !t->rsp_head_done) {
			backend_failed(c, 504, "backend sent no response head in time", FAIL_TIMEOUT);
		} else if (!t->rsp_head_done && request_bytes_waiting(c, t)) {
			backend_failed(c, 504, "backend stopped reading the request", FAIL_TIMEOUT);
		} else if (!t->rsp_head_done) {
			txn_fail(c, 408, "client stopped sending the request body");
		} else {
			txn_fail(c, 504, "transfer idle for too long");
		}
		break;
	default:
		return;
	}
	client_run(c);
}

static void client_timer_fired(struct timer *tm)
{
	struct client *c = container_of(tm, struct client, timer);
	uint64_t d = client_deadline(c);
	if (d > now_ms(c)) {
		timer_arm_at(c->s.px->loop, &c->timer, d);
		return;
	}
	client_timed_out(c);
}
/* --- backend side --- */

static void backend_on_io(struct bconn *bc)
{
	struct txn *t = bc->owner;
	client_run(t->c);
}

/* A queued request got a slot: carry on from the loop, not from inside upstream. */
static void txn_wake(struct upstream_request *r)
{
	struct txn *t = container_of(r, struct txn, ureq);
	loop_queue(t->c->s.px->loop, &t->c->resume);
}

/*
 * Whether the request can be sent again exactly as before: its head and
 * every body byte sent are still held, and nothing of an answer (not even
 * a 100 Continue) has gone to the client.
 */
static bool replayable(const struct txn *t)
{
	return t->req_head.data && t->body_consumed == t->replay.len && !t->rsp_head_done &&
	       !buf_len(&t->rsp_head) && t->bytes_to_client == 0 && !t->tunnel;
}

/*
 * Whether a failed attempt may be followed by another, on a server not yet
 * tried: a failed connect always, a request that reached the backend only
 * if idempotent, replayable and named by retry.on. Within retry.tries and
 * the pool's retry budget, which a yes spends.
 */
static bool retry_allowed(struct client *c, struct txn *t, enum failure cause)
{
	const struct cfg_retry *rc = &pool_cfg(t)->retry;
	struct upstream *up = &t->gen->up;
	if (cause != FAIL_CONNECT && !(t->idempotent && replayable(t)))
		return false;
	if ((cause == FAIL_ERROR && !rc->on_error) || (cause == FAIL_TIMEOUT && !rc->on_timeout))
		return false;
	if (t->ureq.ntried >= rc->tries || !upstream_untried_left(up, &t->ureq))
		return false;
	if (!upstream_may_retry(up, t->pool)) {
		log_info("%s: pool \"%s\": retry budget spent; no retry", c->addr, pool_cfg(t)->name);
		return false;
	}
	return true;
}

/* Lends the transaction a backend connection, or queues it, or answers why it cannot. */
static void txn_connect(struct client *c)
{
	struct txn *t = c->txn;
	struct upstream *up = &t->gen->up;
	for (;;) {
		bool busy;
		struct server_rt *srv = upstream_pick(up, &t->ureq, &busy);
		if (!srv && busy) {
			if (upstream_enqueue(up, &t->ureq) < 0) {
				txn_fail(c, 503, "the pool's queue is full");
				return;
			}
			t->phase_since_ms = now_ms(c);
			t->queued_us = loop_now_us(c->s.px->loop);
			log_debug("%s %s: queued for pool \"%s\"", c->addr, log_line(t),
				  pool_cfg(t)->name);
			return;
		}
		if (!srv)
			break;
		t->srv = srv;
		int err;
		struct bconn *bc = upstream_acquire(up, srv, t, backend_on_io, &err);
		if (bc) {
			t->bc = bc;
			t->attempt_us = loop_now_us(c->s.px->loop);
			t->connecting = (bc->conn.flags & (CONN_CONNECTING | CONN_HANDSHAKE)) != 0;
			t->phase_since_ms = now_ms(c);
			t->last_io_ms = now_ms(c);
			return;
		}
		upstream_server_failed(up, srv, "connect failed");
		log_debug("connect to %s failed: %s", srv->cfg->addr.text, strerror(-err));
		t->last_status = 502;
		t->last_why = "backend connect failed";
		if (!retry_allowed(c, t, FAIL_CONNECT))
			break;
	}
	if (t->ureq.ntried == 0) {
		txn_fail(c, 503, "no usable server in the pool");
		return;
	}
	/* Every attempt made ended in a failure that said what to answer. */
	BUG_ON(!t->last_status || !t->last_why);
	txn_fail(c, t->last_status, t->last_why);
}

/* Forgets the failed attempt (keeping the request and its replay copy) and makes the next. */
static void retry_elsewhere(struct client *c, struct txn *t, int status, const char *why)
{
	log_info("%s %s: %s%s%s; trying again", c->addr, log_line(t), why,
		 t->srv ? " server " : "", t->srv ? t->srv->cfg->addr.text : "");
	txn_release_backend(t, false);
	t->connecting = false;
	t->req_head_sent = 0;
	t->replay.sent = 0;
	t->req_sent = false;
	buf_release(&t->rsp_buf, pool_of(c));
	t->rsp_parsed = t->rsp_fwd = 0;
	txn_msg_release(t);
	t->rsp_parsing = false;
	t->rsp_started = false;
	t->backend_eof = false;
	t->last_status = (uint16_t)status;
	t->last_why = why;
	txn_connect(c);
}

/*
 * An attempt failed before anything of an answer reached the client. An
 * idempotent request on a reused keep-alive connection that the backend
 * closed (the race every pooled proxy has) is sent again whatever retry
 * says, if it can be sent whole, and without counting it against the
 * server. Anything else counts as a failure of the server and is retried
 * only as retry_allowed() says; otherwise the client gets status.
 */
static void backend_failed(struct client *c, int status, const char *why, enum failure cause)
{
	struct txn *t = c->txn;
	BUG_ON(!t->bc);
	bool stale = cause == FAIL_ERROR && t->bc->reused && t->idempotent && !t->rsp_started &&
		     replayable(t);
	if (stale) {
		/* Not an attempt: each stale pooled connection is closed on the way, so this ends. */
		t->ureq.ntried--;
		retry_elsewhere(c, t, status, why);
		return;
	}
	upstream_server_failed(&t->gen->up, t->srv, why);
	if (retry_allowed(c, t, cause))
		retry_elsewhere(c, t, status, why);
	else
		txn_fail(c, status, why);
}

/* --- request head --- */

static enum h1_connection response_connection(const struct txn *t, unsigned status)
{
	if (status == 101)
		return H1_CONN_UPGRADE;
	if (status < 200)
		return H1_CONN_NONE;
	if (t->close_after)
		return H1_CONN_CLOSE;
	return t->client_minor == 0 ? H1_CONN_KEEP_ALIVE : H1_CONN_NONE;
}

/* Builds the backend's request head from the client's; false if it does not fit. */
static bool build_request_head(struct client *c, struct txn *t, const struct http_msg *m)
{
	struct buf *out = &t->req_head;
	struct buf_pool *pool = pool_of(c);
	if (buf_reserve(out, pool) < 0)
		return false;
	const struct tls_info *tls = conn_is_tls(&c->conn) ? tls_info(&c->conn) : NULL;
	struct http_client_cert cert;
	if (tls)
		cert = (struct http_client_cert){tls->verify, tls->subject, tls->issuer, tls->serial,
						 tls->fingerprint};
	struct http_edit edit = {
		.rules = {t->route ? &t->route->req : NULL, t->hook_rules},
		.client_ip = c->ip,
		.proto = conn_is_tls(&c->conn) ? "https" : "http",
		.cert = tls ? &cert : NULL,
		.keep_upgrade = t->upgrade,
	};
	/* An HTTP/1.0 request goes as one, kept alive: the backend may not chunk what it cannot read. */
	struct h1_head_opts opts = {
		.edit = &edit,
		.connection = t->upgrade ? H1_CONN_UPGRADE
			      : t->client_minor == 0 ? H1_CONN_KEEP_ALIVE
						     : H1_CONN_NONE,
		.version_minor = t->client_minor,
	};
	return head_written(out, h1_write_request(buf_end(out), room_of(out, pool), m, &opts));
}

/* The request's Host (or absolute-form authority) in lookup form, normalised once for all who use it. */
struct req_host {
	char name[256];
	int len; /* 0: none; < 0: not a host */
};

static void req_host_of(const struct http_msg *m, struct req_host *h)
{
	h->len = m->authority.len ? host_normalize(http_str(m, m->authority), m->authority.len,
							  h->name, sizeof(h->name))
				  : 0;
}

/* Decides where the request goes: the listener's pool, or its site's route. */
static int route_request(struct client *c, struct txn *t, const struct http_msg *m,
			 const struct req_host *host, const char **why)
{
	const struct cfg_listener *l = c->s.listener->cfg;
	if (!l) {
		*why = "the listener was removed by a reload";
		return 503;
	}
	if (!l->routed) {
		t->pool = l->pool;
		return 0;
	}
	if (host->len < 0) {
		*why = "invalid Host";
		return 400;
	}
	const struct site *site = router_find_site(&t->gen->cfg->router, host->name, (size_t)host->len);
	if (!site) {
		*why = "no site for this host";
		return 404;
	}
	t->site = site;
	const char *path = http_str(m, m->path);
	const char *query = memchr(path, '?', m->path.len);
	size_t path_len = query ? (size_t)(query - path) : m->path.len;
	t->route = router_find_route(site, path, path_len);
	if (!t->route) {
		*why = "no route for this path";
		return 404;
	}
	t->pool = t->route->pool;
	return 0;
}

/* The key of balance = "hash": the same client, host, header or cookie keeps its server. */
static uint64_t balance_key(const struct client *c, const struct txn *t, const struct http_msg *m,
			    const struct req_host *host)
{
	const struct cfg_pool *p = pool_cfg(t);
	if (p->balance != BALANCE_HASH)
		return 0;
	switch (p->hash_by) {
	case HASH_CLIENT:
		return balance_hash(c->ip, strlen(c->ip));
	case HASH_HOST:
		return balance_hash(host->name, host->len > 0 ? (size_t)host->len : 0);
	case HASH_HEADER: {
		const struct http_header *h = http_find_header(m, p->hash_name, p->hash_name_len);
		if (h)
			return balance_hash(http_str(m, h->value), h->value.len);
		break;
	}
	case HASH_COOKIE:
		for (uint32_t i = 0; i < m->nh; i++) {
			if (m->h[i].id != HDR_COOKIE)
				continue;
			size_t vlen;
			const char *v = http_cookie_value(http_str(m, m->h[i].value), m->h[i].value.len,
							  p->hash_name, p->hash_name_len, &vlen);
			if (v)
				return balance_hash(v, vlen);
		}
		break;
	}
	return balance_hash("", 0);
}

/* Queues an answer of our own (a route's fixed response or redirect, or a hook's) with its body. */
static int local_response(struct client *c, struct txn *t, struct http_answer *a,
			  const char *body, const char **why)
{
	struct buf *out = &t->rsp_head;
	struct buf_pool *pool = pool_of(c);
	/* A body we will not read would be taken for the next request. */
	t->close_after = !t->req_keepalive || c->s.px->draining || t->req_has_body;
	/* RFC 9110 8.6, 15.3.5: a 204 has no body and no Content-Length; a 304 no body. */
	if (a->status == 204 || a->status == 304)
		a->body_len = 0;
	enum h1_connection conn = response_connection(t, a->status);
	if (buf_reserve(out, pool) < 0 ||
	    !head_written(out, h1_write_answer(buf_end(out), room_of(out, pool), a, conn))) {
		buf_release(out, pool);
		*why = "fixed response head too large";
		return 500;
	}
	t->static_body = t->is_head ? NULL : body;
	t->static_body_left = t->is_head ? 0 : a->body_len;
	t->status = a->status;
	t->rsp_head_done = true;
	t->rsp_complete = true;
	return 0;
}

/*
 * Client certificates were asked for as the site of the TLS name (SNI)
 * wants: a request whose Host names a site with another policy gets 421, so
 * that no name leads past a site's policy. Over plain HTTP, a site that
 * requires certificates is refused, unless its route sends the client to HTTPS.
 */
static int check_client_cert_policy(struct client *c, struct txn *t, const struct req_host *host,
				    const char **why)
{
	const struct cfg_listener *l = c->s.listener->cfg;
	const struct config *cfg = t->gen->cfg;
	bool tls = conn_is_tls(&c->conn);
	if (!l || !l->routed || (!tls && !cfg->sites_require_certs))
		return 0;
	const struct site *site = t->site ? t->site
					  : router_find_site(&cfg->router, host->name,
							     host->len > 0 ? (size_t)host->len : 0);
	if (!site)
		return 0;
	if (tls) {
		enum tls_verify want = site->tls_verify ? (enum tls_verify)site->tls_verify
							: (enum tls_verify)l->tls_verify;
		if (want == tls_applied_verify(&c->conn))
			return 0;
		*why = "Host names a site whose client-certificate policy differs from the TLS name's";
		return 421;
	}
	if (site->tls_verify != TLS_VERIFY_REQUIRED || (t->route && t->route->https_port))
		return 0;
	*why = "the site requires a client certificate, which plain HTTP cannot carry";
	return 403;
}

/* force_https: a plain request goes to https://host[:port] with its target, method kept but for GET and HEAD. */
static int https_redirect(struct client *c, struct txn *t, const struct http_msg *m,
			  const struct req_host *host, const char **why)
{
	if (host->len <= 0) {
		*why = "no Host to redirect to HTTPS with";
		return 400;
	}
	char location[300];
	uint16_t port = t->route->https_port;
	int n = port == 443 ? snprintf(location, sizeof(location), "https://%.*s", host->len, host->name)
			    : snprintf(location, sizeof(location), "https://%.*s:%u", host->len, host->name,
				       port);
	bool safe = m->method == HTTP_METHOD_GET || m->method == HTTP_METHOD_HEAD;
	struct http_answer a = {
		.status = safe ? 301 : 308,
		.location = location,
		.location_len = (uint32_t)n,
		.location_tail = m->path.len ? http_str(m, m->path) : "/",
		.location_tail_len = m->path.len ? m->path.len : 1,
		.rules = &t->route->rsp,
	};
	return local_response(c, t, &a, NULL, why);
}

static int route_answer(struct client *c, struct txn *t, const struct http_msg *m, const char **why)
{
	const struct route *rt = t->route;
	bool redirect = rt->action == ROUTE_REDIRECT;
	struct http_answer a = {
		.status = rt->status,
		.headers = rt->respond_headers,
		.nheaders = rt->nrespond_headers,
		.location = redirect ? rt->location : NULL,
		.location_len = rt->location_len,
		.location_tail = redirect && rt->keep_path ? http_str(m, m->path) : NULL,
		.location_tail_len = redirect && rt->keep_path ? m->path.len : 0,
		.rules = &rt->rsp,
		.body_len = redirect ? 0 : rt->body_len,
	};
	return local_response(c, t, &a, redirect ? NULL : rt->body, why);
}

/* --- the Lua hook --- */

static const char *hook_header(void *ctx, const char *name, size_t len, size_t *vlen)
{
	const struct http_header *h = http_find_header(ctx, name, len);
	if (!h)
		return NULL;
	*vlen = h->value.len;
	return http_str(ctx, h->value);
}

static void hook_each_header(void *ctx,
			     void (*fn)(void *arg, const char *name, size_t nlen, const char *value,
					size_t vlen),
			     void *arg)
{
	const struct http_msg *m = ctx;
	for (uint32_t i = 0; i < m->nh; i++)
		fn(arg, http_str(m, m->h[i].name), m->h[i].name.len, http_str(m, m->h[i].value),
		   m->h[i].value.len);
}

/*
 * Runs the config's hook on the request. Returns a status to fail with, or
 * 0; *answered when the hook answered by itself, *routed when it named the
 * pool. The result's strings live until hook_release().
 */
static int run_hook(struct client *c, struct txn *t, const struct http_msg *m,
		    const struct req_host *host, struct hook_result *res, bool *answered, bool *routed,
		    const char **why)
{
	struct config *cfg = t->gen->cfg;
	struct hook_request req = {
		.method = http_str(m, m->method_name),
		.method_len = m->method_name.len,
		.target = http_str(m, m->path),
		.target_len = m->path.len,
		.host = host->len > 0 ? host->name : NULL,
		.host_len = host->len > 0 ? (size_t)host->len : 0,
		.client = c->ip,
		.tls = conn_is_tls(&c->conn) ? tls_info(&c->conn) : NULL,
		.ctx = (void *)m,
		.header = hook_header,
		.each_header = hook_each_header,
	};
	enum hook_outcome outcome = hook_run(t->gen->hook, &req, res);
	if (outcome == HOOK_FAIL) {
		log_error("%s %s: %s", c->addr, log_line(t), res->error);
		*why = "the Lua hook failed";
		return 500;
	}
	if (outcome == HOOK_RESPOND) {
		if (res->body_len && !(t->owned_body = malloc(res->body_len))) {
			*why = "out of memory";
			return 500;
		}
		if (res->body_len)
			memcpy(t->owned_body, res->body, res->body_len);
		struct http_answer a = {
			.status = res->status,
			.headers = res->headers,
			.nheaders = res->nheaders,
			.body_len = (uint32_t)res->body_len,
		};
		*answered = true;
		return local_response(c, t, &a, t->owned_body, why);
	}
	t->hook_rules = &res->rules;
	if (!res->pool)
		return 0;
	size_t k = 0;
	while (k < cfg->npools && (strlen(cfg->pools[k].name) != res->pool_len ||
				   memcmp(cfg->pools[k].name, res->pool, res->pool_len)))
		k++;
	if (k == cfg->npools) {
		log_error("%s: the hook named pool \"%.*s\", which the config does not have", c->addr,
			  (int)res->pool_len, res->pool);
		*why = "the Lua hook named an unknown pool";
		return 500;
	}
	t->pool = k;
	*routed = true;
	if (!res->server)
		return 0;
	const struct cfg_pool *p = &cfg->pools[k];
	for (size_t i = 0; i < p->nservers; i++)
		if (strlen(p->servers[i].addr.text) == res->server_len &&
		    !memcmp(p->servers[i].addr.text, res->server, res->server_len)) {
			t->forced_server = (int32_t)i;
			return 0;
		}
	log_error("%s: the hook named server \"%.*s\", which pool \"%s\" does not have", c->addr,
		  (int)res->server_len, res->server, p->name);
	*why = "the Lua hook named an unknown server";
	return 500;
}

/* Keeps "METHOD TARGET" for the access log and the error log: the head will be gone by then. */
static void keep_log_line(struct txn *t, const struct http_msg *m)
{
	size_t n = m->method_name.len + 1 + m->target.len + 1;
	t->log_line = n <= sizeof(t->log_inline) ? t->log_inline : malloc(n);
	if (!t->log_line)
		return;
	memcpy(t->log_line, http_str(m, m->method_name), m->method_name.len);
	t->log_line[m->method_name.len] = ' ';
	memcpy(t->log_line + m->method_name.len + 1, http_str(m, m->target), m->target.len);
	t->log_line[n - 1] = 0;
	t->log_method_len = m->method_name.len;
}

/* What the transaction keeps of the request head, which goes once it is rewritten. */
static void take_request(struct txn *t, const struct http_msg *m, bool req_done)
{
	t->client_minor = m->version_minor;
	t->is_head = m->method == HTTP_METHOD_HEAD;
	t->idempotent = http_method_idempotent(m->method);
	t->req_keepalive = m->keep_alive;
	t->req_has_body = m->framing != HTTP_FRAMING_NONE;
	t->upgrade = m->upgrade;
	t->req_complete = req_done;
}

/* The request head is complete in c->in: rewrite it and start the backend side. */
static void request_head_done(struct client *c, struct txn *t, const struct http_msg *m)
{
	const char *why = NULL;
	int status = 0;
	if (t->gen != c->s.px->gen) {
		/* A reload came while the head arrived: the listener speaks for the new config. */
		proxy_gen_put(t->gen);
		t->gen = proxy_gen_get(c->s.px);
	}
	take_request(t, m, t->req_parser.msg_done);
	keep_log_line(t, m);
	t->bytes_from_client = m->head_len;
	struct req_host host;
	req_host_of(m, &host);
	struct hook_result hook_res;
	bool hooked = t->gen->cfg->has_hook, local = false, routed = false;
	if (hooked)
		status = run_hook(c, t, m, &host, &hook_res, &local, &routed, &why);
	if (!status && !local && !routed)
		status = route_request(c, t, m, &host, &why);
	if (!status && !local)
		status = check_client_cert_policy(c, t, &host, &why);
	if (!status && !local && t->route && t->route->https_port && !conn_is_tls(&c->conn)) {
		local = true;
		status = https_redirect(c, t, m, &host, &why);
	}
	if (!status && !local && t->route && t->route->action != ROUTE_PROXY) {
		local = true;
		status = route_answer(c, t, m, &why);
	}
	if (!status && !local) {
		upstream_request_init(&t->ureq, t->pool, balance_key(c, t, m, &host), t->forced_server,
				      txn_wake);
		const struct cfg_retry *rc = &pool_cfg(t)->retry;
		t->replay.keep = t->idempotent && rc->buffer && cfg_retry_on_any(rc);
		if (!build_request_head(c, t, m)) {
			status = 431;
			why = "request head too large once rewritten";
		}
	}
	if (hooked) {
		t->hook_rules = NULL;
		hook_release(t->gen->hook);
	}
	buf_consume(&c->in, m->head_len);
	c->in_parsed = c->in.head;
	txn_msg_release(t);
	set_state(c, CS_TXN);
	if (status) {
		txn_fail(c, status, why);
		return;
	}
	t->last_io_ms = now_ms(c);
	if (!local) {
		t->pooled = true;
		upstream_count_request(&t->gen->up, t->pool);
		txn_connect(c);
	}
}

/* Idle or receiving a head: read, parse, and start a transaction when the head is whole. */
static int client_head_step(struct client *c)
{
	ssize_t n = 0;
	if (!c->eof) {
		n = fill(&c->conn, &c->in, &c->in_parsed, NULL, pool_of(c));
		if (n == IO_EOF)
			c->eof = true;
		else if (n < 0) {
			client_close(c);
			return -1;
		}
	}
	if (!c->in.data || (c->state == CS_HEAD && c->txn->req_parser.fed == buf_len(&c->in))) {
		if (c->eof) {
			/* An incomplete head from a client that left is no request. */
			client_close(c);
			return -1;
		}
		return n > 0;
	}
	if (c->state == CS_IDLE) {
		struct txn *t = txn_new(c);
		if (!t) {
			client_close(c);
			return -1;
		}
		c->txn = t;
		set_state(c, CS_HEAD);
		c->state_since_ms = now_ms(c);
		const struct cfg_limits *lim = &t->gen->cfg->limits;
		h1_request_parser_init(&t->req_parser,
				       &(struct h1_limits){lim->max_request_line, lim->max_header_size});
	}
	struct txn *t = c->txn;
	struct http_msg *m = txn_msg(t);
	if (!m) {
		client_close(c);
		return -1;
	}
	enum h1_result r = h1_parse_head(&t->req_parser, m, buf_start(&c->in), buf_len(&c->in));
	if (r == H1_DONE) {
		request_head_done(c, t, m);
		return 1;
	}
	if (r == H1_ERROR) {
		set_state(c, CS_TXN);
		txn_fail(c, t->req_parser.error_status, t->req_parser.error);
		return 1;
	}
	if (c->eof) {
		client_close(c);
		return -1;
	}
	return 1;
}

/* --- response head --- */

static int build_response_head(struct client *c, struct txn *t, const struct http_msg *m)
{
	struct buf *out = &t->rsp_head;
	struct buf_pool *pool = pool_of(c);
	if (buf_reserve(out, pool) < 0)
		return -1;
	struct http_edit edit = {
		.rules = {t->route ? &t->route->rsp : NULL},
		.keep_upgrade = m->status == 101,
	};
	struct h1_head_opts opts = {
		.edit = &edit,
		.connection = response_connection(t, m->status),
		.reframe = t->dechunk ? H1_REFRAME_DECHUNK : t->rechunk ? H1_REFRAME_CHUNK : H1_REFRAME_NONE,
	};
	return head_written(out, h1_write_response(buf_end(out), room_of(out, pool), m, &opts)) ? 0 : -1;
}

/* A response head is complete in t->rsp_buf: check it and queue its rewrite for the client. */
static int response_head_done(struct client *c, struct txn *t, const struct http_msg *m)
{
	unsigned status = m->status;
	if (status == 101 && !t->upgrade) {
		txn_fail(c, 502, "101 Switching Protocols to a request that asked for no upgrade");
		return -1;
	}
	bool interim = status >= 100 && status < 200 && status != 101;
	if (interim) {
		/* 1xx goes to HTTP/1.1 clients only (RFC 9110 15.2). */
		if (t->client_minor == 1 && build_response_head(c, t, m) < 0) {
			txn_fail(c, 502, "interim response head too large");
			return -1;
		}
	} else {
		if (cfg_retry_on_status(&pool_cfg(t)->retry, status)) {
			const char *named = "backend answered with a status that retry.on names";
			upstream_server_failed(&t->gen->up, t->srv, named);
			if (retry_allowed(c, t, FAIL_STATUS)) {
				/* Its answer is dropped unread: the connection goes with it. */
				retry_elsewhere(c, t, (int)status, named);
				return -1;
			}
		} else {
			upstream_server_ok(&t->gen->up, t->srv);
		}
		t->status = (uint16_t)status;
		t->rsp_until_eof = m->framing == HTTP_FRAMING_UNTIL_EOF;
		t->bk_keepalive = m->keep_alive;
		/* HTTP/1.0 has no chunked coding: send the data and let the close end it. */
		t->dechunk = t->client_minor == 0 && m->framing == HTTP_FRAMING_CHUNKED;
		/*
		 * A body that ends at the backend's close goes to an HTTP/1.1 client
		 * chunked, so that the client's connection can carry on. One with a
		 * transfer coding of its own is left as it came.
		 */
		t->rechunk = t->client_minor == 1 && t->rsp_until_eof &&
			     !http_find_header(m, "transfer-encoding", 17);
		t->close_after = t->close_after || !t->req_keepalive || (t->rsp_until_eof && !t->rechunk) ||
				 t->dechunk || !t->req_complete || c->s.px->draining;
		if (build_response_head(c, t, m) < 0) {
			txn_fail(c, 502, "response head too large");
			return -1;
		}
		t->rsp_head_done = true;
		t->backend_us = MAX(loop_now_us(c->s.px->loop) - t->attempt_us, 1);
		if (status == 101) {
			t->tunnel = true;
			t->bk_keepalive = false;
			t->close_after = true;
		}
	}
	buf_consume(&t->rsp_buf, m->head_len);
	t->rsp_parsed = t->rsp_fwd = t->rsp_buf.head;
	return 0;
}

/* Parses the response head, or heads: a 1xx is followed by another. Returns 1, 0 or -1 (failed). */
static int response_head_parse(struct client *c, struct txn *t)
{
	struct http_msg *m = txn_msg(t);
	if (!m) {
		txn_fail(c, 502, "out of memory");
		return -1;
	}
	enum h1_result r = h1_parse_head(&t->rsp_parser, m, buf_start(&t->rsp_buf),
					 buf_len(&t->rsp_buf));
	if (r == H1_AGAIN) {
		t->rsp_parsed = t->rsp_buf.tail;
		return 0;
	}
	if (r == H1_ERROR) {
		txn_fail(c, 502, t->rsp_parser.error);
		return -1;
	}
	int rc = response_head_done(c, t, m);
	if (rc == 0 && t->rsp_head_done) {
		txn_msg_release(t);
		t->rsp_complete = t->rsp_parser.msg_done && !t->tunnel;
	}
	return rc < 0 ? -1 : 1;
}

/* Checks response body bytes read since; with dechunking, only their data stays to forward. */
static int response_body_parse(struct client *c, struct txn *t)
{
	size_t len = t->rsp_buf.data ? t->rsp_buf.tail - t->rsp_parsed : 0;
	if (!len)
		return 0;
	char *data = t->rsp_buf.data + t->rsp_parsed;
	char *out = t->rsp_buf.data + t->rsp_fwd;
	ssize_t n = h1_parse_body(&t->rsp_parser, data, len, &out);
	if (n < 0) {
		txn_fail(c, 502, t->rsp_parser.error);
		return -1;
	}
	t->rsp_parsed += (uint32_t)n;
	t->rsp_fwd = t->dechunk ? (uint32_t)(out - t->rsp_buf.data) : t->rsp_parsed;
	/*
	 * De-chunking, framing parsed while no data waits goes now: a buffer
	 * full of it (a long chunk extension) would otherwise leave nothing to
	 * write and no room to read.
	 */
	if (t->dechunk && t->rsp_fwd == t->rsp_buf.head) {
		buf_consume(&t->rsp_buf, t->rsp_parsed - t->rsp_fwd);
		t->rsp_parsed = t->rsp_fwd = t->rsp_buf.head;
	}
	t->rsp_complete = t->rsp_parser.msg_done;
	return 1;
}

/* Feeds the codec the unparsed response bytes. Returns 1 on progress, 0 on none, -1 when failed. */
static int response_parse(struct client *c, struct txn *t)
{
	int progress = 0;
	while (t->rsp_parsing && !t->rsp_complete && !t->tunnel && t->rsp_buf.data &&
	       t->rsp_parsed < t->rsp_buf.tail) {
		int r = t->rsp_head_done ? response_body_parse(c, t) : response_head_parse(c, t);
		if (r <= 0)
			return r < 0 ? -1 : progress;
		progress = 1;
	}
	return progress;
}

/* --- the transaction pump --- */

/* Re-chunking: the whole body is out of the backend, so the last chunk is owed. */
static bool last_chunk_due(const struct txn *t)
{
	return t->rechunk && t->rsp_complete && !t->chunk.ended;
}

static bool client_output_pending(const struct txn *t)
{
	return buf_len(&t->rsp_head) || t->static_body_left ||
	       (t->rsp_head_done && t->rsp_fwd > t->rsp_buf.head) || t->chunk.sent < t->chunk.len ||
	       last_chunk_due(t);
}

/*
 * Re-chunking: the framing due before the next body bytes, once the chunk
 * before them is out; the last chunk once the whole body is.
 */
static void rechunk_frame(struct txn *t, size_t body_ready)
{
	if (t->chunk.sent < t->chunk.len || t->chunk.left)
		return;
	if (!body_ready && !last_chunk_due(t))
		return;
	size_t n = 0;
	if (t->chunk.open) {
		memcpy(t->chunk.line, "\r\n", 2);
		n = 2;
		t->chunk.open = false;
	}
	if (body_ready) {
		uint32_t size = (uint32_t)MIN_SIZE(body_ready, UINT32_MAX);
		n += h1_chunk_line(t->chunk.line + n, size);
		t->chunk.left = size;
		t->chunk.open = true;
	} else {
		memcpy(t->chunk.line + n, "0\r\n\r\n", 5);
		n += 5;
		t->chunk.ended = true;
	}
	t->chunk.len = (uint8_t)n;
	t->chunk.sent = 0;
}

/* Writes queued response bytes to the client. Returns 1 on progress, 0 none, -1 closed. */
static int client_write(struct client *c, struct txn *t)
{
	if (!(c->conn.flags & CONN_WRITABLE))
		return 0;
	size_t body_len = t->rsp_head_done ? t->rsp_fwd - t->rsp_buf.head : 0;
	if (t->rechunk && t->rsp_head_done) {
		rechunk_frame(t, body_len);
		body_len = MIN_SIZE(body_len, t->chunk.left);
	}
	struct iovec iov[3];
	int n = 0;
	size_t head_len = buf_len(&t->rsp_head);
	if (head_len)
		iov[n++] = (struct iovec){buf_start(&t->rsp_head), head_len};
	size_t frame_len = (size_t)(t->chunk.len - t->chunk.sent);
	if (frame_len)
		iov[n++] = (struct iovec){t->chunk.line + t->chunk.sent, frame_len};
	if (body_len)
		iov[n++] = (struct iovec){buf_start(&t->rsp_buf), body_len};
	else if (t->static_body_left)
		iov[n++] = (struct iovec){(void *)t->static_body, t->static_body_left};
	if (n == 0)
		return 0;
	ssize_t w = conn_sendv(&c->conn, iov, n);
	if (w < 0) {
		log_debug("%s: write failed: %s", c->addr, strerror((int)-w));
		client_close(c);
		return -1;
	}
	if (w == 0)
		return 0;
	t->bytes_to_client += (uint64_t)w;
	t->last_io_ms = now_ms(c);
	size_t left = (size_t)w;
	size_t from_head = MIN_SIZE(left, head_len);
	buf_consume(&t->rsp_head, from_head);
	buf_release_if_empty(&t->rsp_head, pool_of(c));
	left -= from_head;
	size_t from_frame = MIN_SIZE(left, frame_len);
	t->chunk.sent = (uint8_t)(t->chunk.sent + from_frame);
	left -= from_frame;
	if (left && t->static_body_left) {
		t->static_body += left;
		t->static_body_left -= (uint32_t)left;
	} else if (left) {
		buf_consume(&t->rsp_buf, left);
		if (t->rechunk)
			t->chunk.left -= (uint32_t)left;
		/* De-chunking leaves framing between what was sent and what is unparsed. */
		if (t->rsp_buf.head == t->rsp_fwd && t->rsp_fwd < t->rsp_parsed) {
			buf_consume(&t->rsp_buf, t->rsp_parsed - t->rsp_fwd);
			t->rsp_fwd = t->rsp_parsed;
		}
	}
	if (t->rsp_buf.data && t->rsp_buf.head == t->rsp_buf.tail) {
		t->rsp_parsed = t->rsp_fwd = 0;
		buf_release(&t->rsp_buf, pool_of(c));
	}
	return 1;
}

/* No replay from here on: the copy goes, and with it any chance to send the body again. */
static void replay_drop(struct txn *t)
{
	free(t->replay.data);
	t->replay.data = NULL;
	t->replay.len = t->replay.cap = t->replay.sent = 0;
	t->replay.keep = false;
}

/* Keeps body bytes sent for a replay, while they fit in retry.buffer; else gives up on replays. */
static void replay_keep(struct txn *t, const char *data, size_t len)
{
	uint32_t limit = pool_cfg(t)->retry.buffer;
	if (!t->replay.keep)
		return;
	if (len > limit - t->replay.len) {
		replay_drop(t);
		return;
	}
	uint32_t need = t->replay.len + (uint32_t)len;
	if (need > t->replay.cap) {
		uint32_t cap = MAX(need, MIN(limit, MAX(t->replay.cap * 2, 4096u)));
		char *p = realloc(t->replay.data, cap);
		if (!p) {
			replay_drop(t);
			return;
		}
		t->replay.data = p;
		t->replay.cap = cap;
	}
	memcpy(t->replay.data + t->replay.len, data, len);
	t->replay.len = need;
	t->replay.sent = need;
}

/*
 * Writes the request to the backend: the rest of the head, then the body
 * bytes a replay still owes, then the body bytes the client sent since.
 * Returns 1 on progress, 0 none, -1 failed.
 */
static int backend_write(struct client *c, struct txn *t)
{
	struct bconn *bc = t->bc;
	if (!bc || t->connecting || !(bc->conn.flags & CONN_WRITABLE))
		return 0;
	struct iovec iov[3];
	int n = 0;
	size_t head_left = t->req_head.data ? t->req_head.tail - t->req_head_sent : 0;
	if (head_left)
		iov[n++] = (struct iovec){t->req_head.data + t->req_head_sent, head_left};
	size_t replay_left = t->replay.len - t->replay.sent;
	if (replay_left)
		iov[n++] = (struct iovec){t->replay.data + t->replay.sent, replay_left};
	size_t body = 0;
	if (c->in.data && !replay_left)
		body = t->tunnel ? buf_len(&c->in) : c->in_parsed - c->in.head;
	if (body)
		iov[n++] = (struct iovec){buf_start(&c->in), body};
	if (n == 0)
		return 0;
	ssize_t w = conn_sendv(&bc->conn, iov, n);
	if (w < 0) {
		backend_failed(c, 502, "backend write failed", FAIL_ERROR);
		return -1;
	}
	if (w == 0)
		return 0;
	t->last_io_ms = now_ms(c);
	size_t from_head = MIN_SIZE((size_t)w, head_left);
	t->req_head_sent += (uint32_t)from_head;
	size_t from_replay = MIN_SIZE((size_t)w - from_head, replay_left);
	t->replay.sent += (uint32_t)from_replay;
	size_t from_body = (size_t)w - from_head - from_replay;
	if (from_body) {
		if (!t->tunnel) {
			t->body_consumed += from_body;
			replay_keep(t, buf_start(&c->in), from_body);
		}
		buf_consume(&c->in, from_body);
		if (c->in.head == c->in.tail) {
			c->in_parsed = 0;
			buf_release(&c->in, pool_of(c));
		}
	}
	return 1;
}

/* Checks the request body bytes read since. Returns 1 on progress, 0 none, -1 failed. */
static int request_body_parse(struct client *c, struct txn *t)
{
	const struct h1_parser *p = &t->req_parser;
	/* Only after a good head; after a bad one, or a bad body, nothing more is read as HTTP. */
	if (t->req_complete || t->tunnel || !p->head_done || p->error_status || !c->in.data ||
	    c->in_parsed == c->in.tail)
		return 0;
	ssize_t n = h1_parse_body(&t->req_parser, c->in.data + c->in_parsed,
				  c->in.tail - c->in_parsed, NULL);
	if (n < 0) {
		/* The backend has part of a request whose rest is invalid: nothing on it can be trusted. */
		txn_fail(c, 400, t->req_parser.error);
		return -1;
	}
	c->in_parsed += (uint32_t)n;
	t->req_complete = t->req_parser.msg_done;
	return 1;
}

/* Reads the backend. Returns 1 on progress, 0 none, -1 when the transaction ended. */
static int backend_read(struct client *c, struct txn *t)
{
	struct bconn *bc = t->bc;
	/* Past a complete response, a byte or a close only says the connection cannot be reused. */
	if (!bc || t->connecting || t->backend_eof || t->rsp_complete)
		return 0;
	if (!t->rsp_parsing) {
		struct h1_limits lim = {0, (uint32_t)pool_of(c)->size};
		h1_response_parser_init(&t->rsp_parser, &lim, t->is_head, t->client_minor == 0);
		t->rsp_parsing = true;
	}
	ssize_t n = fill(&bc->conn, &t->rsp_buf, &t->rsp_parsed, &t->rsp_fwd, pool_of(c));
	if (n > 0) {
		t->rsp_started = true;
		t->last_io_ms = now_ms(c);
		return 1;
	}
	if (n == 0)
		return 0;
	if (t->tunnel) {
		t->backend_eof = true;
		return 1;
	}
	if (!t->rsp_started) {
		backend_failed(c, 502, n == IO_EOF ? "backend closed the connection without answering"
						    : "backend reset the connection",
			       FAIL_ERROR);
		return -1;
	}
	if (!t->rsp_head_done) {
		backend_failed(c, 502, "backend closed the connection in the middle of the response head",
			       FAIL_ERROR);
		return -1;
	}
	t->backend_eof = true;
	/* The close is the end of the body (RFC 9112 6.3, item 8), once every byte before it is parsed. */
	if (n == IO_EOF && t->rsp_until_eof) {
		if (response_parse(c, t) < 0)
			return -1;
		if (h1_parse_eof(&t->rsp_parser)) {
			t->rsp_complete = true;
			return 1;
		}
	}
	/* A truncated body: closing is the only way to tell the client. */
	upstream_server_failed(&t->gen->up, t->srv,
			       n == IO_EOF ? "backend closed the connection in the middle of the response"
					   : "backend reset the connection in the middle of the response");
	client_close(c);
	return -1;
}
/* Tunnel: relays raw bytes both ways until both sides are done. */
static int tunnel_step(struct client *c, struct txn *t)
{
	int progress = 0;
	if (!c->eof) {
		ssize_t n = fill(&c->conn, &c->in, &c->in_parsed, NULL, pool_of(c));
		c->in_parsed = c->in.tail;
		if (n > 0)
			progress = 1;
		else if (n < 0) {
			c->eof = true;
			progress = 1;
		}
	}
	int r = backend_write(c, t);
	if (r < 0)
		return -1;
	progress |= r;
	r = backend_read(c, t);
	if (r < 0)
		return -1;
	progress |= r;
	if (t->rsp_buf.data)
		t->rsp_parsed = t->rsp_fwd = t->rsp_buf.tail;
	r = client_write(c, t);
	if (r < 0)
		return -1;
	progress |= r;
	if (progress)
		t->last_io_ms = now_ms(c);
	/* Pass each side's FIN on once its bytes are through. */
	if (c->eof && !buf_len(&c->in) && t->bc)
		conn_shutdown_write(&t->bc->conn);
	if (t->backend_eof && !client_output_pending(t))
		conn_shutdown_write(&c->conn);
	if (c->eof && t->backend_eof && !buf_len(&c->in) && !client_output_pending(t)) {
		t->status = 101;
		client_close(c);
		return -1;
	}
	return progress;
}

/* The response is out and the request is in: hand the backend back, get ready for the next request. */
static int txn_finish(struct client *c, struct txn *t)
{
	bool reusable = t->bk_keepalive && t->req_sent && t->rsp_complete &&
			(!t->rsp_buf.data || t->rsp_parsed == t->rsp_buf.tail) && !t->backend_eof;
	txn_release_backend(t, reusable);
	txn_done(c, t);
	bool close = t->close_after;
	bool client_asked_close = !t->req_keepalive && t->req_complete;
	txn_free(c);
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
		return c->state == CS_CLOSED ? -1 : 1;
	}
	set_state(c, CS_IDLE);
	c->state_since_ms = now_ms(c);
	return 1;
}

static int txn_step(struct client *c)
{
	struct txn *t = c->txn;
	int progress = 0, r;

	if (t->ureq.granted) {
		txn_left_queue(t);
		txn_connect(c);
		return 1;
	}
	if (t->bc && t->connecting) {
		int rc = conn_finish_connect(&t->bc->conn);
		if (rc < 0 && conn_is_tls(&t->bc->conn) && !(t->bc->conn.flags & CONN_CONNECTING)) {
			log_warn("server %s: TLS handshake failed: %s", t->srv->cfg->addr.text,
				 tls_failure(&t->bc->conn));
			backend_failed(c, 502, "backend TLS handshake failed", FAIL_CONNECT);
			return 1;
		}
		if (rc < 0) {
			log_debug("connect to %s: %s", t->srv->cfg->addr.text, strerror(-rc));
			backend_failed(c, 502, "backend connect failed", FAIL_CONNECT);
			return 1;
		}
		if (rc == 0) {
			t->connecting = false;
			t->last_io_ms = now_ms(c);
			progress = 1;
		}
	}
	if (t->tunnel) {
		/* Bytes that followed the request head belong to the new protocol. */
		c->in_parsed = c->in.tail;
		return tunnel_step(c, t) < 0 ? -1 : 1;
	}

	/* Client -> us: the request body, or what the client pipelines behind it. */
	if (!c->eof && t->bc && !t->rsp_complete) {
		ssize_t n = fill(&c->conn, &c->in, &c->in_parsed, NULL, pool_of(c));
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
	if ((r = request_body_parse(c, t)) < 0)
		return 1;
	progress |= r;
	if (c->eof && !t->req_complete && t->bc) {
		/* The client left in the middle of its request: the backend has a partial one. */
		log_debug("%s: client closed during the request", c->addr);
		client_close(c);
		return -1;
	}
	if ((r = backend_write(c, t)) < 0)
		return 1;
	progress |= r;
	if (t->req_complete && !t->req_sent && t->bc && !t->connecting &&
	    t->req_head_sent == t->req_head.tail && t->replay.sent == t->replay.len &&
	    c->in_parsed == c->in.head) {
		t->req_sent = true;
		t->phase_since_ms = now_ms(c);
		progress = 1;
	}

	/* Backend -> us -> client; fill() stops reading while the client has not taken what we have. */
	if ((r = backend_read(c, t)) < 0)
		return c->state == CS_CLOSED ? -1 : 1;
	progress |= r;
	if ((r = response_parse(c, t)) < 0)
		return c->state == CS_CLOSED ? -1 : 1;
	progress |= r;
	/*
	 * Head and body were kept for a replay; once the response is under way
	 * there will be none. What this attempt still owes of them goes first.
	 */
	if (t->rsp_head_done) {
		if (t->req_head.data && t->req_head_sent == t->req_head.tail) {
			buf_release(&t->req_head, pool_of(c));
			t->req_head_sent = 0;
		}
		t->replay.keep = false;
		if (t->replay.data && t->replay.sent == t->replay.len)
			replay_drop(t);
	}
	if ((r = client_write(c, t)) < 0)
		return -1;
	progress |= r;
	if (t->tunnel)
		return 1;

	if (t->rsp_complete && !client_output_pending(t) &&
	    (t->req_sent || t->close_after || !t->bc))
		return txn_finish(c, t);
	return progress;
}

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
			progress = txn_step(c);
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
	count_tls(c);
	if (c->state != CS_CLOSED && c->txn) {
		txn_count_own(c->txn);
		c->txn->own_held = yielded;
	}
}

static void client_on_io(struct conn *cn) { client_run(container_of(cn, struct client, conn)); }

static void client_resume(struct loop_task *task)
{
	client_run(container_of(task, struct client, resume));
}

/* During a handshake: the policy of the site the client's TLS name leads to, by the current config. */
static enum tls_verify sni_site_policy(struct conn *cn, const char *host, size_t len)
{
	const struct client *c = container_of(cn, struct client, conn);
	const struct config *cfg = c->s.px->gen->cfg;
	const struct site *site = cfg->has_sites ? router_find_site(&cfg->router, host, len) : NULL;
	return site ? (enum tls_verify)site->tls_verify : TLS_VERIFY_INHERIT;
}

static int client_start(struct proxy *px, struct listener *l, int fd, const struct sockaddr *peer)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->timer.on_expire = client_timer_fired;
	c->resume.run = client_resume;
	c->state = CS_IDLE; /* counted as idle below, once it is a session */
	c->state_since_ms = loop_now_ms(px->loop);
	uint16_t port = 0;
	if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
		inet_ntop(AF_INET6, &in6->sin6_addr, c->ip, sizeof(c->ip));
		port = ntohs(in6->sin6_port);
		snprintf(c->addr, sizeof(c->addr), "[%s]:%u", c->ip, port);
	} else {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)peer;
		inet_ntop(AF_INET, &in4->sin_addr, c->ip, sizeof(c->ip));
		port = ntohs(in4->sin_port);
		snprintf(c->addr, sizeof(c->addr), "%s:%u", c->ip, port);
	}
	int err = conn_attach(&c->conn, px->loop, fd, client_on_io);
	if (err < 0) {
		free(c);
		return err;
	}
	if (l->cfg->tls &&
	    (err = tls_accept(&c->conn, l->cfg->tls, l->cfg->routed ? sni_site_policy : NULL)) < 0) {
		conn_close(&c->conn);
		free(c);
		return err;
	}
	proxy_session_open(px, &c->s, l, &h1_front);
	stat_add(&px->sh->stats[px->index].clients_opened, 1);
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
