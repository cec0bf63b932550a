#include "http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "common.h"
#include "conn.h"
#include "hook.h"
#include "log.h"
#include "router.h"
#include "upstream.h"

#define MAX_HEADERS 128
/* Rounds of work one session may do per event before letting others run. */
#define FAIR_ROUNDS 32
/* How long a closing connection keeps reading (and dropping) what the client still sends. */
#define LINGER_MS 2000

/* A span of a message head, as offsets from the head's first byte. */
struct span {
	uint32_t off, len;
};

struct header {
	struct span name, value;
};

/* What llhttp told us of one message head. */
struct head {
	struct span method, url, reason;
	struct header h[MAX_HEADERS];
	uint32_t nh;
	bool in_name;	     /* the last name span is still open */
	bool too_many;	     /* more than MAX_HEADERS: 431 / 502 */
	bool url_too_long;   /* request line over max_request_line: 414 */
	bool headers_done;   /* llhttp reached the end of the head */
	bool head_processed; /* we rewrote it */
	bool msg_complete;   /* llhttp reached the end of the message */
};

enum client_state {
	CS_IDLE,    /* between requests */
	CS_HEAD,    /* receiving a request head */
	CS_TXN,	    /* a transaction is under way */
	CS_LINGER,  /* response sent, FIN sent; dropping input until the client closes */
	CS_CLOSED,
};

struct txn;

struct client {
	struct conn conn;
	struct worker *w;
	struct list link;
	struct timer timer;
	struct loop_task resume;
	struct buf in;	    /* bytes from the client; request body is forwarded from here */
	uint32_t in_parsed; /* index in in.data: bytes before it were fed to llhttp */
	uint8_t state;
	bool served;	    /* a request was answered on this connection */
	bool eof;	    /* the client sent FIN */
	struct listener *listener; /* one reference held */
	struct txn *txn;
	uint64_t state_since_ms;
	llhttp_t parser;
	char ip[INET6_ADDRSTRLEN];
	char addr[INET6_ADDRSTRLEN + 8]; /* ip:port, for logs */
};

struct txn {
	struct client *c;
	struct generation *gen; /* the config it runs on; one reference held */
	struct bconn *bc;
	struct server_rt *srv;
	const char *parse_base; /* start of the head being parsed, for llhttp callbacks */
	struct head req, rsp;
	llhttp_t rparser;

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
	uint32_t rsp_parsed;	/* index in rsp_buf.data: bytes before it were fed to llhttp */
	uint32_t rsp_fwd;	/* index: bytes from head to here go to the client */
	struct buf rsp_head;	/* rewritten response heads (and error responses) for the client */

	bool req_complete;	/* llhttp saw the end of the request */
	bool req_sent;		/* ... and all of it reached the backend */
	bool req_keepalive;	/* the client wants the connection kept */
	bool is_head;
	bool idempotent;	/* RFC 9110 9.2.2: may be sent again if an answer was lost */
	bool upgrade;		/* the request asks for a protocol switch */
	bool tunnel;		/* switched: bytes flow raw both ways */
	bool rsp_head_done;	/* the final response head is queued for the client */
	bool rsp_complete;
	bool rsp_until_eof;	/* the response body ends when the backend closes */
	bool dechunk;		/* HTTP/1.0 client, chunked response: forward only the data */
	bool bk_keepalive;	/* the backend connection may be reused afterwards */
	bool close_after;	/* close the client connection after this response */
	bool connecting;
	bool req_parse_pending; /* llhttp has not yet seen every request byte (or the head's end) */
	bool rsp_parse_pending; /* ... nor every response byte (or a message end after a pause) */
	bool rsp_started;	/* a response byte arrived: the request can no longer be replayed */
	bool backend_eof;
	bool absolute_form;	/* the target named its authority: it is the Host */
	size_t pool;		/* index into the config's pools */
	struct upstream_request ureq; /* servers tried, place in the pool's queue */
	const struct route *route; /* NULL for a listener with a pool of its own */
	struct span target;	/* origin-form part of the request target, in the head */
	struct span host;	/* Host, or the absolute-form authority, in the head */
	const char *static_body; /* a fixed response body: config memory or owned_body */
	uint32_t static_body_left;
	char *owned_body;	/* a hook's answer, copied out of Lua */
	const struct header_rules *hook_rules; /* while the head is rewritten */
	int32_t forced_server;	/* a server the hook named, or -1 */
	uint16_t status;
	uint16_t last_status; /* what the last failed attempt would answer, and why */
	const char *last_why;
	uint64_t start_us;
	uint64_t phase_since_ms; /* queued, connect start, or request fully sent */
	uint64_t last_io_ms;
	uint64_t bytes_to_client;
	char *log_method_target; /* "METHOD TARGET" for the access log */
	uint32_t log_method_len;
};

static llhttp_settings_t req_settings, rsp_settings;

static const struct cfg_timeouts *timeouts(const struct client *c)
{
	return &c->w->gen->cfg->timeouts;
}
static struct buf_pool *pool_of(const struct client *c) { return &c->w->bufs; }
/* The pool the transaction is routed to (once routed). */
static const struct cfg_pool *pool_cfg(const struct txn *t) { return &t->gen->cfg->pools[t->pool]; }
static uint64_t now_ms(const struct client *c) { return loop_now_ms(c->w->loop); }

/* --- llhttp callbacks: record spans of the head --- */

static struct head *head_of(llhttp_t *p)
{
	struct txn *t = p->data;
	return p == &t->rparser ? &t->rsp : &t->req;
}

static void span_extend(struct span *s, const struct txn *t, const char *at, size_t len)
{
	uint32_t off = (uint32_t)(at - t->parse_base);
	if (s->len == 0)
		s->off = off;
	s->len = off + (uint32_t)len - s->off;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
	span_extend(&head_of(p)->method, p->data, at, len);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	struct txn *t = p->data;
	span_extend(&t->req.url, t, at, len);
	if (t->req.url.len > t->gen->cfg->limits.max_request_line) {
		t->req.url_too_long = true;
		return HPE_USER;
	}
	return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
	span_extend(&head_of(p)->reason, p->data, at, len);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct head *h = head_of(p);
	if (!h->in_name) {
		if (h->nh == MAX_HEADERS) {
			h->too_many = true;
			return HPE_USER;
		}
		h->h[h->nh++] = (struct header){{0, 0}, {0, 0}};
		h->in_name = true;
	}
	span_extend(&h->h[h->nh - 1].name, p->data, at, len);
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	head_of(p)->in_name = false;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct head *h = head_of(p);
	span_extend(&h->h[h->nh - 1].value, p->data, at, len);
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct txn *t = p->data;
	head_of(p)->headers_done = true;
	/*
	 * A response to HEAD, a 1xx, a 204 and a 304 have no body whatever their
	 * Content-Length or Transfer-Encoding say (RFC 9110 6.4.1, RFC 9112 6.3):
	 * llhttp 8 leaves that to us, and would wait for a body that never comes.
	 */
	unsigned st = p->status_code;
	if (p == &t->rparser && st != 101 &&
	    (t->is_head || (st >= 100 && st < 200) || st == 204 || st == 304))
		return 1;
	return HPE_PAUSED;
}

/*
 * Only while de-chunking: move the data of each chunk down over the framing
 * that preceded it, so that [head, rsp_fwd) is plain body. The data only ever
 * moves towards the front of the buffer, into bytes already parsed.
 */
static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct txn *t = p->data;
	if (t->dechunk) {
		memmove(t->rsp_buf.data + t->rsp_fwd, at, len);
		t->rsp_fwd += (uint32_t)len;
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	head_of(p)->msg_complete = true;
	return HPE_PAUSED;
}

static void init_settings(void)
{
	static bool done;
	if (done)
		return;
	done = true;
	llhttp_settings_init(&req_settings);
	req_settings.on_method = on_method;
	req_settings.on_url = on_url;
	req_settings.on_header_field = on_header_field;
	req_settings.on_header_field_complete = on_header_field_complete;
	req_settings.on_header_value = on_header_value;
	req_settings.on_headers_complete = on_headers_complete;
	req_settings.on_message_complete = on_message_complete;
	rsp_settings = req_settings;
	rsp_settings.on_method = NULL;
	rsp_settings.on_url = NULL;
	rsp_settings.on_status = on_status;
	rsp_settings.on_body = on_body;
}

/* --- head checks and rewriting --- */

static bool span_eq(const char *base, struct span s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && !strncasecmp(base + s.off, lit, n);
}


/*
 * llhttp accepts some forms RFC 9112 tells a server to reject, and a proxy
 * that forwards them lets a lenient backend read the message differently:
 * a bare LF as line end (RFC 9112 2.2), obs-fold line folding (5.2) and
 * whitespace between a field name and its colon (5.1).
 */
static const char *head_violation(const char *base, uint32_t len, const struct head *h)
{
	for (const char *lf = base; (lf = memchr(lf, '\n', (size_t)(base + len - lf))); lf++) {
		if (lf == base || lf[-1] != '\r')
			return "bare LF line ending";
		if (lf + 1 < base + len && (lf[1] == ' ' || lf[1] == '\t'))
			return "obsolete line folding";
	}
	for (uint32_t i = 0; i < h->nh; i++)
		if (!header_name_valid(base + h->h[i].name.off, h->h[i].name.len))
			return "invalid header name";
	return NULL;
}

/* Does the comma-separated list in value contain token (case-insensitive)? */
static bool list_has_token(const char *value, uint32_t len, const char *token, size_t tlen)
{
	uint32_t i = 0;
	while (i < len) {
		while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		uint32_t start = i;
		while (i < len && value[i] != ',')
			i++;
		uint32_t end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		if (end - start == tlen && !strncasecmp(value + start, token, tlen))
			return true;
	}
	return false;
}

/* Is header i named by a Connection header of h? Framing and Host never are: see drop_header. */
static bool named_by_connection(const char *base, const struct head *h, struct span name)
{
	for (uint32_t i = 0; i < h->nh; i++)
		if (span_eq(base, h->h[i].name, "connection") &&
		    list_has_token(base + h->h[i].value.off, h->h[i].value.len, base + name.off,
				   name.len))
			return true;
	return false;
}

/*
 * Hop-by-hop headers (RFC 9110 7.6.1) are for one connection only. A
 * Connection header naming Content-Length, Transfer-Encoding or Host is
 * ignored for those: dropping framing headers on a client's word would let
 * it desynchronise us from the backend.
 */
static bool drop_header(const char *base, const struct head *h, struct span name, bool keep_upgrade)
{
	static const char *const hop[] = {"connection", "keep-alive", "te", "trailer",
					  "proxy-connection"};
	for (size_t i = 0; i < ARRAY_LEN(hop); i++)
		if (span_eq(base, name, hop[i]))
			return true;
	if (name.len > 6 && !strncasecmp(base + name.off, "proxy-", 6))
		return true;
	if (span_eq(base, name, "upgrade"))
		return !keep_upgrade;
	if (span_eq(base, name, "content-length") || span_eq(base, name, "transfer-encoding") ||
	    span_eq(base, name, "host"))
		return false;
	return named_by_connection(base, h, name);
}

/* A string literal, its length counted by the compiler. */
#define buf_append_lit(b, pool, lit) buf_append((b), (pool), (lit), sizeof(lit) - 1)

/* Appends printf output to b; returns false if it does not fit. */
static bool append_fmt(struct buf *b, const struct buf_pool *pool, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool append_fmt(struct buf *b, const struct buf_pool *pool, const char *fmt, ...)
{
	size_t room = pool->size - b->tail;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf_end(b), room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return false;
	b->tail += (uint32_t)n;
	return true;
}

static bool append_span(struct buf *b, const struct buf_pool *pool, const char *base, struct span s)
{
	return buf_append(b, pool, base + s.off, s.len) == 0;
}

/* Copies the end-to-end headers of h, with value whitespace as llhttp trimmed it. */
/* How a head is changed on its way through. */
struct head_edit {
	bool keep_upgrade;
	bool is_request;	/* X-Forwarded-* are ours to set */
	bool drop_te;		/* de-chunking */
	bool drop_host;		/* absolute-form target: its authority is the Host */
	const struct header_rules *rules[2]; /* a route's and the hook's set/add/remove, or NULL */
};

static bool kv_names(const struct header_kv *kv, uint32_t n, const char *name, uint32_t len)
{
	for (uint32_t i = 0; i < n; i++)
		if (kv[i].name_len == len && !strncasecmp(kv[i].name, name, len))
			return true;
	return false;
}

/* Is name set or removed by one of the edit's rules? Then the rules decide it. */
static bool rules_own(const struct head_edit *e, const char *name, uint32_t len)
{
	for (int k = 0; k < 2; k++) {
		const struct header_rules *r = e->rules[k];
		if (r && (kv_names(r->remove, r->nremove, name, len) || kv_names(r->set, r->nset, name, len)))
			return true;
	}
	return false;
}

static bool append_kv(struct buf *out, const struct buf_pool *pool, const struct header_kv *kv,
		      uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (buf_append(out, pool, kv[i].name, kv[i].name_len) || buf_append_lit(out, pool, ": ") ||
		    buf_append(out, pool, kv[i].value, kv[i].value_len) ||
		    buf_append_lit(out, pool, "\r\n"))
			return false;
	return true;
}

/* Copies the end-to-end headers of h (values as llhttp trimmed them), then the rules' own. */
static bool append_headers(struct buf *out, const struct buf_pool *pool, const char *base,
			   const struct head *h, const struct head_edit *e)
{
	for (uint32_t i = 0; i < h->nh; i++) {
		struct span name = h->h[i].name;
		if (drop_header(base, h, name, e->keep_upgrade))
			continue;
		if (e->drop_te && span_eq(base, name, "transfer-encoding"))
			continue;
		if (e->drop_host && span_eq(base, name, "host"))
			continue;
		/* We set these from what we saw of the connection (below). */
		if (e->is_request && (span_eq(base, name, "x-forwarded-for") ||
				      span_eq(base, name, "x-real-ip") ||
				      span_eq(base, name, "x-forwarded-proto")))
			continue;
		if (rules_own(e, base + name.off, name.len))
			continue;
		if (!append_span(out, pool, base, name) || buf_append_lit(out, pool, ": ") ||
		    !append_span(out, pool, base, h->h[i].value) || buf_append_lit(out, pool, "\r\n"))
			return false;
	}
	for (int k = 0; k < 2; k++) {
		const struct header_rules *r = e->rules[k];
		if (r && !(append_kv(out, pool, r->set, r->nset) && append_kv(out, pool, r->add, r->nadd)))
			return false;
	}
	return true;
}

static bool append_forwarded(struct buf *out, const struct buf_pool *pool, const char *base,
			     const struct head *h, const char *client_ip, const struct head_edit *e)
{
	/* X-Forwarded-For: earlier hops as the client sent them, then the client itself. */
	if (!rules_own(e, "x-forwarded-for", 15)) {
		if (buf_append_lit(out, pool, "X-Forwarded-For: "))
			return false;
		for (uint32_t i = 0; i < h->nh; i++) {
			if (!span_eq(base, h->h[i].name, "x-forwarded-for") || h->h[i].value.len == 0)
				continue;
			if (!append_span(out, pool, base, h->h[i].value) || buf_append_lit(out, pool, ", "))
				return false;
		}
		if (!append_fmt(out, pool, "%s\r\n", client_ip))
			return false;
	}
	if (!rules_own(e, "x-real-ip", 9) && !append_fmt(out, pool, "X-Real-IP: %s\r\n", client_ip))
		return false;
	return rules_own(e, "x-forwarded-proto", 17) ||
	       !buf_append_lit(out, pool, "X-Forwarded-Proto: http\r\n");
}

/* --- error responses --- */

static const char *reason_phrase(int status)
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
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status >= 400 ? "Error" : "";
	}
}

/* --- session lifetime --- */

static void client_run(struct client *c);

/* Gives the backend connection back, if the transaction holds one. */
static void txn_release_backend(struct txn *t, bool reusable)
{
	if (t->bc) {
		upstream_release(t->bc, reusable);
		t->bc = NULL;
	}
}

static void txn_free(struct client *c)
{
	struct txn *t = c->txn;
	if (!t)
		return;
	upstream_dequeue(&t->gen->up, &t->ureq);
	txn_release_backend(t, false);
	free(t->replay.data);
	buf_release(&t->req_head, pool_of(c));
	buf_release(&t->rsp_buf, pool_of(c));
	buf_release(&t->rsp_head, pool_of(c));
	free(t->log_method_target);
	free(t->owned_body);
	worker_gen_put(t->gen);
	free(t);
	c->txn = NULL;
}

static void access_log_txn(struct client *c, struct txn *t)
{
	if (c->w->access_log.fd < 0)
		return;
	const char *mt = t->log_method_target;
	struct access_entry e = {
		.client = c->addr,
		.method = mt ? mt : "-",
		.method_len = mt ? t->log_method_len : 1,
		.target = mt ? mt + t->log_method_len + 1 : "-",
		.target_len = mt ? strlen(mt + t->log_method_len + 1) : 1,
		.status = t->status,
		.bytes_sent = t->bytes_to_client,
		.server = t->srv ? t->srv->cfg->addr.text : NULL,
		.duration_us = loop_clock_us() - t->start_us,
	};
	access_log_write(&c->w->access_log, &e);
}

static void client_close(struct client *c)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->txn && c->txn->log_method_target)
		access_log_txn(c, c->txn);
	txn_free(c);
	c->state = CS_CLOSED;
	timer_cancel(c->w->loop, &c->timer);
	loop_unqueue(c->w->loop, &c->resume);
	conn_close(&c->conn);
	buf_release(&c->in, pool_of(c));
	list_remove(&c->link);
	listener_put(c->listener);
	c->w->nclients--;
	loop_free_later(c->w->loop, c);
	worker_client_closed(c->w);
}

/* Sends FIN, then drops input until the client closes, so that our last bytes are not lost to a RST. */
static void client_linger(struct client *c)
{
	txn_free(c);
	conn_shutdown_write(&c->conn);
	c->state = CS_LINGER;
	c->state_since_ms = now_ms(c);
}

/*
 * Answers the transaction with status if nothing of a final response has
 * reached the client yet; otherwise the only honest signal left is closing.
 */
static void txn_fail(struct client *c, int status, const char *why)
{
	struct txn *t = c->txn;
	const char *mt = t->log_method_target;
	log_warn("%s %s: %d %s: %s%s%s", c->addr, mt ? mt : "-", status, reason_phrase(status), why,
		 t->srv ? " server " : "", t->srv ? t->srv->cfg->addr.text : "");
	upstream_dequeue(&t->gen->up, &t->ureq);
	txn_release_backend(t, false);
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
	if (buf_reserve(&t->rsp_head, pool_of(c)) < 0) {
		client_close(c);
		return;
	}
	const char *reason = reason_phrase(status);
	append_fmt(&t->rsp_head, pool_of(c), "HTTP/1.1 %d %s\r\n", status, reason);
	/* The pool is full or down: tell clients when it is worth asking again (RFC 9110 10.2.3). */
	uint32_t retry_after = t->ureq.wake ? pool_cfg(t)->queue.retry_after_s : 0;
	if (status == 503 && retry_after)
		append_fmt(&t->rsp_head, pool_of(c), "Retry-After: %u\r\n", retry_after);
	append_fmt(&t->rsp_head, pool_of(c),
		   "Content-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n"
		   "%d %s\n",
		   strlen(reason) + 5, status, reason);
	t->status = (uint16_t)status;
	t->rsp_head_done = true;
	t->rsp_complete = true;
	t->rsp_until_eof = false;
	t->close_after = true;
	c->state = CS_TXN;
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
		timer_arm_at(c->w->loop, &c->timer, d);
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
		timer_arm_at(c->w->loop, &c->timer, d);
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
	loop_queue(t->c->w->loop, &t->c->resume);
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
			log_debug("%s %s: queued for pool \"%s\"", c->addr,
				  t->log_method_target ? t->log_method_target : "-", pool_cfg(t)->name);
			return;
		}
		if (!srv)
			break;
		t->srv = srv;
		int err;
		struct bconn *bc = upstream_acquire(up, srv, t, backend_on_io, &err);
		if (bc) {
			t->bc = bc;
			t->connecting = (bc->conn.flags & CONN_CONNECTING) != 0;
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
	log_info("%s %s: %s%s%s; trying again", c->addr,
		 t->log_method_target ? t->log_method_target : "-", why, t->srv ? " server " : "",
		 t->srv ? t->srv->cfg->addr.text : "");
	txn_release_backend(t, false);
	t->connecting = false;
	t->req_head_sent = 0;
	t->replay.sent = 0;
	t->req_sent = false;
	buf_release(&t->rsp_buf, pool_of(c));
	t->rsp_parsed = t->rsp_fwd = 0;
	memset(&t->rsp, 0, sizeof(t->rsp));
	t->rparser.data = NULL;
	t->rsp_started = false;
	t->rsp_parse_pending = false;
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

/* Builds the backend's request head from the client's; false if it does not fit. */
static bool build_request_head(struct client *c, struct txn *t, const char *base)
{
	struct buf *out = &t->req_head;
	struct buf_pool *pool = pool_of(c);
	const struct head *h = &t->req;
	if (buf_reserve(out, pool) < 0)
		return false;
	struct head_edit edit = {
		.keep_upgrade = t->upgrade,
		.is_request = true,
		.drop_host = t->absolute_form,
		.rules = {t->route ? &t->route->req : NULL, t->hook_rules},
	};
	/* "http://host" and "http://host?q" have an empty path: it is "/" (RFC 9112 3.2.1). */
	bool root = !t->target.len || base[t->target.off] == '?';
	bool ok = append_span(out, pool, base, h->method) && !buf_append(out, pool, " /", 1 + root) &&
		  append_span(out, pool, base, t->target) &&
		  append_fmt(out, pool, " HTTP/1.%d\r\n", c->parser.http_minor ? 1 : 0) &&
		  append_headers(out, pool, base, h, &edit) &&
		  append_forwarded(out, pool, base, h, c->ip, &edit);
	/* RFC 9112 3.2.2: the authority of an absolute-form target replaces Host (unless a rule sets it). */
	if (ok && t->absolute_form && !rules_own(&edit, "host", 4))
		ok = !buf_append_lit(out, pool, "Host: ") && append_span(out, pool, base, t->host) &&
		     !buf_append_lit(out, pool, "\r\n");
	if (ok && t->upgrade)
		ok = !buf_append_lit(out, pool, "Connection: upgrade\r\n");
	else if (ok && c->parser.http_minor == 0)
		ok = !buf_append_lit(out, pool, "Connection: keep-alive\r\n");
	return ok && !buf_append_lit(out, pool, "\r\n");
}

static int check_request(struct client *c, struct txn *t, const char *base, uint32_t head_len,
			 const char **why)
{
	const struct head *h = &t->req;
	if ((*why = head_violation(base, head_len, h)))
		return 400;
	unsigned hosts = 0;
	for (uint32_t i = 0; i < h->nh; i++)
		if (span_eq(base, h->h[i].name, "host")) {
			hosts++;
			t->host = h->h[i].value;
		}
	/* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one before. */
	if (hosts > 1 || (hosts == 0 && c->parser.http_minor == 1)) {
		*why = hosts ? "more than one Host header" : "no Host header";
		return 400;
	}
	if (c->parser.method == HTTP_CONNECT) {
		*why = "CONNECT is not proxied";
		return 405;
	}
	if (head_len > t->gen->cfg->limits.max_header_size) {
		*why = "request head too large";
		return 431;
	}
	return 0;
}

/*
 * Splits an absolute-form target (RFC 9112 3.2.2) into its authority, which
 * then stands for Host, and the origin-form rest that the backend gets.
 */
static int split_target(struct txn *t, const char *base, const char **why)
{
	t->target = t->req.url;
	const char *u = base + t->req.url.off;
	uint32_t len = t->req.url.len;
	uint32_t scheme = len >= 7 && !strncasecmp(u, "http://", 7)	 ? 7
			  : len >= 8 && !strncasecmp(u, "https://", 8) ? 8
								       : 0;
	if (!scheme)
		return 0;
	uint32_t end = scheme;
	while (end < len && u[end] != '/' && u[end] != '?')
		end++;
	if (memchr(u + scheme, '@', end - scheme)) {
		*why = "user information in the request target";
		return 400;
	}
	if (end == scheme) {
		*why = "empty authority in the request target";
		return 400;
	}
	t->absolute_form = true;
	t->host = (struct span){t->req.url.off + scheme, end - scheme};
	t->target = (struct span){t->req.url.off + end, len - end};
	return 0;
}

/* Decides where the request goes: the listener's pool, or its site's route. */
static int route_request(struct client *c, struct txn *t, const char *base, const char **why)
{
	const struct cfg_listener *l = c->listener->cfg;
	if (!l) {
		*why = "the listener was removed by a reload";
		return 503;
	}
	if (!l->routed) {
		t->pool = l->pool;
		return 0;
	}
	const struct router *r = &t->gen->cfg->router;
	char host[256];
	int hlen = 0;
	if (t->host.len) {
		hlen = router_normalize_host(base + t->host.off, t->host.len, host, sizeof(host));
		if (hlen < 0) {
			*why = "invalid Host";
			return 400;
		}
	}
	const struct site *site = router_find_site(r, host, (size_t)hlen);
	if (!site) {
		*why = "no site for this host";
		return 404;
	}
	const char *path = base + t->target.off;
	const char *query = memchr(path, '?', t->target.len);
	size_t path_len = query ? (size_t)(query - path) : t->target.len;
	t->route = router_find_route(site, path, path_len);
	if (!t->route) {
		*why = "no route for this path";
		return 404;
	}
	t->pool = t->route->pool;
	return 0;
}

/* The value of cookie name in a Cookie header value ("a=1; b=2"), or NULL. */
static const char *cookie_value(const char *v, uint32_t len, const char *name, uint32_t nlen,
				uint32_t *vlen)
{
	uint32_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == ';'))
			i++;
		uint32_t start = i;
		while (i < len && v[i] != ';')
			i++;
		const char *eq = memchr(v + start, '=', i - start);
		if (eq && (uint32_t)(eq - (v + start)) == nlen && !memcmp(v + start, name, nlen)) {
			*vlen = (uint32_t)(v + i - eq - 1);
			return eq + 1;
		}
	}
	return NULL;
}

/* The key of balance = "hash": the same client, host, header or cookie keeps its server. */
static uint64_t balance_key(const struct client *c, const struct txn *t, const char *base)
{
	const struct cfg_pool *p = pool_cfg(t);
	if (p->balance != BALANCE_HASH)
		return 0;
	const struct head *h = &t->req;
	switch (p->hash_by) {
	case HASH_CLIENT:
		return balance_hash(c->ip, strlen(c->ip));
	case HASH_HOST: {
		char host[256];
		int n = router_normalize_host(base + t->host.off, t->host.len, host, sizeof(host));
		return balance_hash(host, n > 0 ? (size_t)n : 0);
	}
	case HASH_HEADER:
		for (uint32_t i = 0; i < h->nh; i++)
			if (h->h[i].name.len == p->hash_name_len &&
			    !strncasecmp(base + h->h[i].name.off, p->hash_name, p->hash_name_len))
				return balance_hash(base + h->h[i].value.off, h->h[i].value.len);
		break;
	case HASH_COOKIE:
		for (uint32_t i = 0; i < h->nh; i++) {
			if (!span_eq(base, h->h[i].name, "cookie"))
				continue;
			uint32_t vlen;
			const char *v = cookie_value(base + h->h[i].value.off, h->h[i].value.len,
						     p->hash_name, p->hash_name_len, &vlen);
			if (v)
				return balance_hash(v, vlen);
		}
		break;
	}
	return balance_hash("", 0);
}

/* An answer of our own: a route's fixed response or redirect, or a hook's. */
struct local_answer {
	uint16_t status;
	const struct header_kv *headers;
	uint32_t nheaders;
	const char *location; /* Location, or NULL */
	uint32_t location_len;
	bool keep_path;	      /* Location gets the request's path and query appended */
	const char *body;
	uint32_t body_len;
	const struct header_rules *rules; /* the route's response rules, or NULL */
};

static int local_response(struct client *c, struct txn *t, const char *base,
			  const struct local_answer *a, const char **why)
{
	struct buf *out = &t->rsp_head;
	struct buf_pool *pool = pool_of(c);
	const struct header_rules *r = a->rules;
	/* A body we will not read would be taken for the next request. */
	t->close_after = !t->req_keepalive || c->w->draining || (c->parser.flags & F_CHUNKED) ||
			 c->parser.content_length > 0;
	bool ok = buf_reserve(out, pool) == 0 &&
		  append_fmt(out, pool, "HTTP/1.1 %03d %s\r\n", a->status, reason_phrase(a->status));
	/* The route's response rules edit its own fixed headers as they would a backend's. */
	for (uint32_t i = 0; ok && i < a->nheaders; i++) {
		const struct header_kv *kv = &a->headers[i];
		if (!r || (!kv_names(r->remove, r->nremove, kv->name, kv->name_len) &&
			   !kv_names(r->set, r->nset, kv->name, kv->name_len)))
			ok = append_kv(out, pool, kv, 1);
	}
	if (ok && a->location) {
		ok = !buf_append_lit(out, pool, "Location: ") &&
		     !buf_append(out, pool, a->location, a->location_len) &&
		     (!a->keep_path || append_span(out, pool, base, t->target)) &&
		     !buf_append_lit(out, pool, "\r\n");
	}
	/* RFC 9110 8.6, 15.3.5: a 204 has no body and no Content-Length; a 304 no body. */
	bool bodiless = a->status == 204 || a->status == 304;
	uint32_t body_len = bodiless ? 0 : a->body_len;
	ok = ok && (!r || (append_kv(out, pool, r->set, r->nset) && append_kv(out, pool, r->add, r->nadd))) &&
	     (a->status == 204 || append_fmt(out, pool, "Content-Length: %u\r\n", body_len)) &&
	     append_fmt(out, pool, "%s\r\n",
			t->close_after ? "Connection: close\r\n"
			: c->parser.http_minor == 0 ? "Connection: keep-alive\r\n"
						    : "");
	if (!ok) {
		buf_release(out, pool);
		*why = "fixed response head too large";
		return 500;
	}
	t->static_body = t->is_head ? NULL : a->body;
	t->static_body_left = t->is_head ? 0 : body_len;
	t->status = a->status;
	t->rsp_head_done = true;
	t->rsp_complete = true;
	return 0;
}

static int route_answer(struct client *c, struct txn *t, const char *base, const char **why)
{
	const struct route *rt = t->route;
	bool redirect = rt->action == ROUTE_REDIRECT;
	struct local_answer a = {
		.status = rt->status,
		.headers = rt->respond_headers,
		.nheaders = rt->nrespond_headers,
		.location = redirect ? rt->location : NULL,
		.location_len = rt->location_len,
		.keep_path = rt->keep_path,
		.body = redirect ? NULL : rt->body,
		.body_len = redirect ? 0 : rt->body_len,
		.rules = &rt->rsp,
	};
	return local_response(c, t, base, &a, why);
}

/* --- the Lua hook --- */

struct hook_ctx {
	const char *base;
	const struct head *h;
};

static const char *hook_header(void *ctx, const char *name, size_t len, size_t *vlen)
{
	const struct hook_ctx *x = ctx;
	for (uint32_t i = 0; i < x->h->nh; i++) {
		struct span n = x->h->h[i].name;
		if (n.len == len && !strncasecmp(x->base + n.off, name, len)) {
			*vlen = x->h->h[i].value.len;
			return x->base + x->h->h[i].value.off;
		}
	}
	return NULL;
}

static void hook_each_header(void *ctx,
			     void (*fn)(void *arg, const char *name, size_t nlen, const char *value,
					size_t vlen),
			     void *arg)
{
	const struct hook_ctx *x = ctx;
	for (uint32_t i = 0; i < x->h->nh; i++)
		fn(arg, x->base + x->h->h[i].name.off, x->h->h[i].name.len,
		   x->base + x->h->h[i].value.off, x->h->h[i].value.len);
}

/*
 * Runs the config's hook on the request. Returns a status to fail with, or
 * 0; *answered when the hook answered by itself, *routed when it named the
 * pool. The result's strings live until hook_release().
 */
static int run_hook(struct client *c, struct txn *t, const char *base, struct hook_result *res,
		    bool *answered, bool *routed, const char **why)
{
	struct config *cfg = t->gen->cfg;
	char host[256];
	int hlen = t->host.len ? router_normalize_host(base + t->host.off, t->host.len, host,
						       sizeof(host))
			       : 0;
	struct hook_ctx ctx = {base, &t->req};
	struct hook_request req = {
		.method = base + t->req.method.off,
		.method_len = t->req.method.len,
		.target = base + t->target.off,
		.target_len = t->target.len,
		.host = hlen > 0 ? host : NULL,
		.host_len = hlen > 0 ? (size_t)hlen : 0,
		.client = c->ip,
		.ctx = &ctx,
		.header = hook_header,
		.each_header = hook_each_header,
	};
	enum hook_outcome outcome = hook_run(&cfg->hook, &req, res);
	if (outcome == HOOK_FAIL) {
		log_error("%s %s: %s", c->addr, t->log_method_target ? t->log_method_target : "-",
			  res->error);
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
		struct local_answer a = {
			.status = res->status,
			.headers = res->headers,
			.nheaders = res->nheaders,
			.body = t->owned_body,
			.body_len = (uint32_t)res->body_len,
		};
		*answered = true;
		return local_response(c, t, base, &a, why);
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

/* The request head is complete in c->in: check it, rewrite it, start the backend side. */
static void request_head_done(struct client *c, struct txn *t, uint32_t head_len)
{
	const char *base = buf_start(&c->in);
	const char *why;
	if (t->gen != c->w->gen) {
		/* A reload came while the head arrived: the listener speaks for the new config. */
		worker_gen_put(t->gen);
		t->gen = worker_gen_get(c->w);
	}
	int status = check_request(c, t, base, head_len, &why);
	t->is_head = c->parser.method == HTTP_HEAD;
	switch (c->parser.method) {
	case HTTP_GET: case HTTP_HEAD: case HTTP_OPTIONS: case HTTP_TRACE: case HTTP_PUT:
	case HTTP_DELETE:
		t->idempotent = true;
		break;
	default:
		t->idempotent = false;
	}
	t->req_keepalive = llhttp_should_keep_alive(&c->parser);
	t->upgrade = c->parser.upgrade;
	t->forced_server = -1;
	t->log_method_len = t->req.method.len;
	t->log_method_target = malloc(t->req.method.len + t->req.url.len + 2);
	if (t->log_method_target) {
		memcpy(t->log_method_target, base + t->req.method.off, t->req.method.len);
		t->log_method_target[t->req.method.len] = ' ';
		memcpy(t->log_method_target + t->req.method.len + 1, base + t->req.url.off,
		       t->req.url.len);
		t->log_method_target[t->req.method.len + 1 + t->req.url.len] = 0;
	}
	if (!status)
		status = split_target(t, base, &why);
	struct hook_result hook_res;
	bool hooked = !status && t->gen->cfg->has_hook, local = false, routed = false;
	if (hooked)
		status = run_hook(c, t, base, &hook_res, &local, &routed, &why);
	if (!status && !local && !routed)
		status = route_request(c, t, base, &why);
	if (!status && !local && t->route && t->route->action != ROUTE_PROXY) {
		local = true;
		status = route_answer(c, t, base, &why);
	}
	if (!status && !local) {
		upstream_request_init(&t->ureq, t->pool, balance_key(c, t, base), t->forced_server,
				      txn_wake);
		const struct cfg_retry *rc = &pool_cfg(t)->retry;
		t->replay.keep = t->idempotent && rc->buffer && cfg_retry_on_any(rc);
		if (!build_request_head(c, t, base)) {
			status = 431;
			why = "request head too large once rewritten";
		}
	}
	if (hooked) {
		t->hook_rules = NULL;
		hook_release(&t->gen->cfg->hook);
	}
	buf_consume(&c->in, head_len);
	c->in_parsed = c->in.head;
	t->req.head_processed = true;
	c->state = CS_TXN;
	if (status) {
		txn_fail(c, status, why);
		return;
	}
	llhttp_resume(&c->parser);
	t->req_parse_pending = true;
	t->last_io_ms = now_ms(c);
	if (!local) {
		upstream_count_request(&t->gen->up, t->pool);
		txn_connect(c);
	}
}

static void fail_parse(struct client *c, struct txn *t, llhttp_errno_t err)
{
	c->state = CS_TXN;
	if (t->req.url_too_long)
		txn_fail(c, 414, "request line too long");
	else if (t->req.too_many)
		txn_fail(c, 431, "too many header fields");
	else
		txn_fail(c, 400, llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
								    : llhttp_errno_name(err));
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
	if (c->in_parsed == c->in.tail || !c->in.data) {
		if (c->eof) {
			/* An incomplete head from a client that left is no request. */
			client_close(c);
			return -1;
		}
		return n > 0;
	}
	if (c->state == CS_IDLE) {
		struct txn *t = calloc(1, sizeof(*t));
		if (!t) {
			client_close(c);
			return -1;
		}
		t->c = c;
		t->gen = worker_gen_get(c->w);
		t->start_us = loop_clock_us();
		list_init(&t->ureq.queue_link);
		c->txn = t;
		c->state = CS_HEAD;
		c->state_since_ms = now_ms(c);
		llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
		c->parser.data = t;
	}
	struct txn *t = c->txn;
	const char *start = c->in.data + c->in_parsed;
	size_t len = c->in.tail - c->in_parsed;
	t->parse_base = buf_start(&c->in);
	llhttp_errno_t err = llhttp_execute(&c->parser, start, len);
	if (err == HPE_PAUSED) {
		uint32_t head_len = (uint32_t)(llhttp_get_error_pos(&c->parser) - t->parse_base);
		request_head_done(c, t, head_len);
		return 1;
	}
	if (err != HPE_OK) {
		fail_parse(c, t, err);
		return 1;
	}
	c->in_parsed = c->in.tail;
	size_t have = buf_len(&c->in);
	bool full = have >= pool_of(c)->size || have > t->gen->cfg->limits.max_header_size;
	if (full) {
		c->state = CS_TXN;
		if (t->req.nh == 0)
			txn_fail(c, 414, "request line too long");
		else
			txn_fail(c, 431, "request head too large");
		return 1;
	}
	if (c->eof) {
		client_close(c);
		return -1;
	}
	return 1;
}

/* --- response head --- */

static int build_response_head(struct client *c, struct txn *t, const char *base, int status)
{
	struct buf *out = &t->rsp_head;
	struct buf_pool *pool = pool_of(c);
	const struct head *h = &t->rsp;
	bool switching = status == 101;
	if (buf_reserve(out, pool) < 0)
		return -1;
	bool ok = append_fmt(out, pool, "HTTP/1.1 %03d ", status) &&
		  append_span(out, pool, base, h->reason) && !buf_append_lit(out, pool, "\r\n") &&
		  append_headers(out, pool, base, h,
				 &(struct head_edit){.keep_upgrade = switching,
						     .drop_te = t->dechunk,
						     .rules = {t->route ? &t->route->rsp : NULL}});
	if (ok && switching)
		ok = !buf_append_lit(out, pool, "Connection: upgrade\r\n");
	else if (ok && status >= 200 && t->close_after)
		ok = !buf_append_lit(out, pool, "Connection: close\r\n");
	else if (ok && status >= 200 && c->parser.http_minor == 0)
		ok = !buf_append_lit(out, pool, "Connection: keep-alive\r\n");
	return ok && !buf_append_lit(out, pool, "\r\n") ? 0 : -1;
}

/* A response head is complete in t->rsp_buf: check it and queue its rewrite for the client. */
static int response_head_done(struct client *c, struct txn *t, uint32_t head_len)
{
	const char *base = buf_start(&t->rsp_buf);
	const char *why = head_violation(base, head_len, &t->rsp);
	int status = t->rparser.status_code;
	if (why) {
		txn_fail(c, 502, why);
		return -1;
	}
	if (status == 101 && !t->upgrade) {
		txn_fail(c, 502, "101 Switching Protocols to a request that asked for no upgrade");
		return -1;
	}
	bool interim = status >= 100 && status < 200 && status != 101;
	if (interim) {
		/* 1xx goes to HTTP/1.1 clients only (RFC 9110 15.2). */
		if (c->parser.http_minor == 1 && build_response_head(c, t, base, status) < 0) {
			txn_fail(c, 502, "interim response head too large");
			return -1;
		}
	} else {
		if (cfg_retry_on_status(&pool_cfg(t)->retry, (unsigned)status)) {
			const char *named = "backend answered with a status that retry.on names";
			upstream_server_failed(&t->gen->up, t->srv, named);
			if (retry_allowed(c, t, FAIL_STATUS)) {
				/* Its answer is dropped unread: the connection goes with it. */
				retry_elsewhere(c, t, status, named);
				return -1;
			}
		} else {
			upstream_server_ok(&t->gen->up, t->srv);
		}
		t->status = (uint16_t)status;
		t->rsp_until_eof = llhttp_message_needs_eof(&t->rparser) && !t->is_head;
		t->bk_keepalive = llhttp_should_keep_alive(&t->rparser);
		/* HTTP/1.0 has no chunked coding: send the data and let the close end it. */
		t->dechunk = c->parser.http_minor == 0 && (t->rparser.flags & F_CHUNKED) && !t->is_head;
		t->close_after = t->close_after || !t->req_keepalive || t->rsp_until_eof ||
				 t->dechunk || !t->req_complete || c->w->draining;
		if (build_response_head(c, t, base, status) < 0) {
			txn_fail(c, 502, "response head too large");
			return -1;
		}
		t->rsp_head_done = true;
		if (status == 101) {
			t->tunnel = true;
			t->bk_keepalive = false;
			t->close_after = true;
		}
	}
	buf_consume(&t->rsp_buf, head_len);
	t->rsp_parsed = t->rsp_fwd = t->rsp_buf.head;
	t->rsp.head_processed = true;
	return 0;
}

/* Feeds llhttp the unparsed response bytes. Returns 1 on progress, 0 on none, -1 when failed. */
static int response_parse(struct client *c, struct txn *t)
{
	int progress = 0;
	while (!t->rsp_complete && !t->tunnel && t->rparser.data) {
		size_t len = t->rsp_buf.data ? t->rsp_buf.tail - t->rsp_parsed : 0;
		if (len == 0 && !t->rsp_parse_pending)
			break;
		t->rsp_parse_pending = false;
		const char *start = t->rsp_buf.data ? t->rsp_buf.data + t->rsp_parsed : "";
		t->parse_base = t->rsp_buf.data ? buf_start(&t->rsp_buf) : "";
		llhttp_errno_t err = llhttp_execute(&t->rparser, start, len);
		if (err != HPE_OK && err != HPE_PAUSED) {
			const char *reason = llhttp_get_error_reason(&t->rparser);
			txn_fail(c, 502, reason ? reason : llhttp_errno_name(err));
			return -1;
		}
		if (t->rsp_buf.data)
			t->rsp_parsed = err == HPE_OK ? t->rsp_buf.tail
						      : (uint32_t)(llhttp_get_error_pos(&t->rparser) -
								   t->rsp_buf.data);
		if (!t->dechunk)
			t->rsp_fwd = t->rsp_parsed;
		progress = 1;
		if (t->rsp.headers_done && !t->rsp.head_processed) {
			uint32_t head_len = t->rsp_parsed - t->rsp_buf.head;
			if (response_head_done(c, t, head_len) < 0)
				return -1;
		}
		if (t->rsp.msg_complete) {
			if (t->rsp_head_done) {
				t->rsp_complete = true;
				break;
			}
			/* An interim response ended; the final one follows on the same parser. */
			memset(&t->rsp, 0, sizeof(t->rsp));
		}
		if (err == HPE_PAUSED) {
			/* A message may end right here, with no byte more to read. */
			llhttp_resume(&t->rparser);
			t->rsp_parse_pending = true;
		}
	}
	if (!t->rsp.headers_done && t->rsp_buf.data && buf_len(&t->rsp_buf) >= pool_of(c)->size) {
		txn_fail(c, 502, "response head too large");
		return -1;
	}
	return progress;
}

/* --- the transaction pump --- */

static bool client_output_pending(const struct txn *t)
{
	return buf_len(&t->rsp_head) || t->static_body_left ||
	       (t->rsp_head_done && t->rsp_fwd > t->rsp_buf.head);
}

/* Writes queued response bytes to the client. Returns 1 on progress, 0 none, -1 closed. */
static int client_write(struct client *c, struct txn *t)
{
	if (!(c->conn.flags & CONN_WRITABLE) || !client_output_pending(t))
		return 0;
	struct iovec iov[2];
	int n = 0;
	size_t head_len = buf_len(&t->rsp_head);
	if (head_len)
		iov[n++] = (struct iovec){buf_start(&t->rsp_head), head_len};
	size_t body_len = t->rsp_head_done ? t->rsp_fwd - t->rsp_buf.head : 0;
	if (body_len)
		iov[n++] = (struct iovec){buf_start(&t->rsp_buf), body_len};
	else if (t->static_body_left)
		iov[n++] = (struct iovec){(void *)t->static_body, t->static_body_left};
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
	size_t from_head = MIN_SIZE((size_t)w, head_len);
	buf_consume(&t->rsp_head, from_head);
	buf_release_if_empty(&t->rsp_head, pool_of(c));
	if ((size_t)w > from_head && t->static_body_left) {
		t->static_body += (size_t)w - from_head;
		t->static_body_left -= (uint32_t)((size_t)w - from_head);
	} else if ((size_t)w > from_head) {
		buf_consume(&t->rsp_buf, (size_t)w - from_head);
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

/* Advances the request body parse over the bytes read since. Returns 1 on progress, -1 failed. */
static int request_body_parse(struct client *c, struct txn *t)
{
	if (t->req_complete || t->tunnel || !t->req_parse_pending)
		return 0;
	t->req_parse_pending = false;
	const char *start = c->in.data ? c->in.data + c->in_parsed : "";
	size_t len = c->in.data ? c->in.tail - c->in_parsed : 0;
	llhttp_errno_t err = llhttp_execute(&c->parser, start, len);
	if (err == HPE_OK) {
		c->in_parsed += (uint32_t)len;
		return len > 0;
	}
	if (err == HPE_PAUSED && t->req.msg_complete) {
		c->in_parsed = (uint32_t)(llhttp_get_error_pos(&c->parser) - c->in.data);
		t->req_complete = true;
		return 1;
	}
	/* The backend has part of a request whose rest is invalid: nothing on it can be trusted. */
	const char *reason = llhttp_get_error_reason(&c->parser);
	txn_fail(c, 400, reason ? reason : llhttp_errno_name(err));
	return -1;
}

/* Reads the backend. Returns 1 on progress, 0 none, -1 when the transaction ended. */
static int backend_read(struct client *c, struct txn *t)
{
	struct bconn *bc = t->bc;
	if (!bc || t->connecting || t->backend_eof)
		return 0;
	if (!t->rparser.data) {
		llhttp_init(&t->rparser, HTTP_RESPONSE, &rsp_settings);
		t->rparser.data = t;
	}
	ssize_t n = fill(&bc->conn, &t->rsp_buf, &t->rsp_parsed, &t->rsp_fwd, pool_of(c));
	if (n > 0) {
		t->rsp_started = true;
		t->rsp_parse_pending = true;
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
	if (!t->rsp.headers_done) {
		backend_failed(c, 502, "backend closed the connection in the middle of the response head",
			       FAIL_ERROR);
		return -1;
	}
	t->backend_eof = true;
	if (n == IO_EOF && t->rsp_head_done && t->rsp_until_eof) {
		/* The close is the end of the body (RFC 9112 6.3, item 8). */
		if (llhttp_finish(&t->rparser) == HPE_OK || t->rsp.msg_complete) {
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
	access_log_txn(c, t);
	bool close = t->close_after;
	bool client_asked_close = !t->req_keepalive && t->req_complete;
	free(t->log_method_target);
	t->log_method_target = NULL;
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
	c->state = CS_IDLE;
	c->state_since_ms = now_ms(c);
	return 1;
}

static int txn_step(struct client *c)
{
	struct txn *t = c->txn;
	int progress = 0, r;

	if (t->ureq.granted) {
		txn_connect(c);
		return 1;
	}
	if (t->bc && t->connecting) {
		int rc = conn_finish_connect(&t->bc->conn);
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
			t->req_parse_pending = true;
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

static void client_run(struct client *c)
{
	for (int round = 0; round < FAIR_ROUNDS; round++) {
		int progress;
		switch (c->state) {
		case CS_IDLE:
		case CS_HEAD:
			if (c->w->draining && c->state == CS_IDLE && !buf_len(&c->in)) {
				client_close(c);
				return;
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
			return;
		}
		if (progress <= 0) {
			if (c->state != CS_CLOSED)
				client_arm_timer(c);
			return;
		}
	}
	/* Still busy: let the other sessions have a turn, then carry on. */
	loop_queue(c->w->loop, &c->resume);
	client_arm_timer(c);
}

static void client_on_io(struct conn *cn) { client_run(container_of(cn, struct client, conn)); }

static void client_resume(struct loop_task *task)
{
	client_run(container_of(task, struct client, resume));
}

int http1_accept(struct worker *w, int fd, const struct sockaddr *peer, struct listener *l)
{
	init_settings();
	struct client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->w = w;
	c->listener = l;
	c->timer.on_expire = client_timer_fired;
	c->resume.run = client_resume;
	c->state = CS_IDLE;
	c->state_since_ms = loop_now_ms(w->loop);
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
	int err = conn_attach(&c->conn, w->loop, fd, client_on_io);
	if (err < 0) {
		free(c);
		return err;
	}
	list_insert_tail(&w->clients, &c->link);
	l->refs++;
	w->nclients++;
	/* Data may already be waiting (TCP_DEFER_ACCEPT or a fast client): read optimistically. */
	c->conn.flags |= CONN_READABLE | CONN_WRITABLE;
	client_run(c);
	return 0;
}

void http1_drain(struct worker *w)
{
	struct list *it = w->clients.next;
	while (it != &w->clients) {
		struct client *c = container_of(it, struct client, link);
		it = it->next;
		if (c->state == CS_IDLE && !buf_len(&c->in))
			client_close(c);
	}
}

void http1_close_all(struct worker *w)
{
	while (!list_empty(&w->clients))
		client_close(container_of(w->clients.next, struct client, link));
}
