/*
 * The transaction, whatever the client speaks: where a request goes, the
 * attempts to get it answered, the bytes between the client's stream and
 * the backend session, and what is counted and logged of it.
 */

#include "proxy/txn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/conn.h"
#include "core/log.h"
#include "proxy/back.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "route/hook.h"
#include "route/router.h"
#include "tls/tls.h"

_Static_assert(sizeof(struct txn) - (offsetof(struct txn, log_inline) + LOG_LINE_INLINE) <
		       _Alignof(struct txn),
	       "log_inline must end struct txn: txn_new() clears everything before it");

/* What the steps below return besides progress (1) and none (0). */
enum {
	STEP_GONE = -1, /* the stream closed, or the transaction finished: t is freed */
	STEP_AGAIN = 2, /* an attempt failed and was dealt with: start the step over */
};

/* The backend session lives in the same pool block, after the stream's room. */
#define BACK_OFFSET (TXN_STREAM_OFFSET + TXN_STREAM_ROOM)
/* Idle transactions kept for reuse per worker. */
#define TXN_POOL_KEEP 1024

uint64_t txn_now_ms(const struct txn *t) { return loop_now_ms(t->s->px->loop); }
static uint64_t now_us(const struct txn *t) { return loop_now_us(t->s->px->loop); }
/* The pool the transaction is routed to (once routed). */
static const struct cfg_pool *pool_cfg(const struct txn *t) { return &t->gen->cfg->pools[t->pool]; }
const char *txn_log_line(const struct txn *t) { return t->log_line ? t->log_line : "-"; }
const struct cfg_timeouts *txn_timeouts(const struct txn *t) { return &t->gen->cfg->timeouts; }
const struct cfg_limits *txn_limits(const struct txn *t) { return &t->gen->cfg->limits; }
static const char *client_addr(const struct txn *t) { return t->s->addr; }

static void txn_timer_fired(struct timer *tm);

static void wake_task(struct loop_task *task)
{
	struct txn *t = container_of(task, struct txn, wake);
	t->ops->wake(t);
}

static void backend_on_io(struct bconn *bc)
{
	struct txn *t = bc->owner;
	t->ops->wake(t);
}

/* A queued request got a slot: carry on from the loop, not from inside upstream. */
static void queue_granted(struct upstream_request *r)
{
	struct txn *t = container_of(r, struct txn, ureq);
	loop_queue(t->s->px->loop, &t->wake);
}

struct txn *txn_new(struct session *s, const struct stream_ops *ops)
{
	struct buf_pool *pool = &s->px->txns;
	if (!pool->size)
		buf_pool_init(pool, BACK_OFFSET + back_size(), TXN_POOL_KEEP);
	struct txn *t = buf_pool_get(pool);
	if (!t)
		return NULL;
	memset(t, 0, offsetof(struct txn, log_inline));
	t->s = s;
	t->ops = ops;
	t->gen = proxy_gen_get(s->px);
	t->timer.on_expire = txn_timer_fired;
	t->wake.run = wake_task;
	t->start_us = now_us(t);
	t->forced_server = -1;
	list_init(&t->ureq.queue_link);
	return t;
}

/* Gives the backend connection back, if the transaction holds one. */
static void release_backend(struct txn *t, bool reusable)
{
	if (t->bc) {
		upstream_release(t->bc, reusable);
		t->bc = NULL;
	}
}

/* Counts the time a request waited in its pool's queue, once it is out (granted, or given up). */
static void left_queue(struct txn *t)
{
	if (!t->queued_us)
		return;
	struct pool_stats *ps = upstream_pool_stats(&t->gen->up, t->pool);
	if (ps)
		stats_hist_add(&ps->queue, now_us(t) - t->queued_us);
	t->queued_us = 0;
}

/*
 * Counts the time since the current loop turn began (or since it was last
 * counted) as sluice's own: the transaction was being worked on, or had
 * bytes ready that the loop had not got to yet. Between its events it is
 * waiting on the client or the backend, and that is not counted.
 */
static uint64_t count_own(struct txn *t)
{
	uint64_t now = loop_clock_us(), turn = now_us(t);
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

static void count(struct txn *t, uint64_t total)
{
	struct proxy *px = t->s->px;
	enum stats_class k = stats_class_of(t->status);
	struct proc_stats *ps = &px->sh->stats[px->index];
	stat_add(&ps->responses[k], 1);
	stat_add(&ps->bytes_in, t->bytes_from_client + t->body_consumed);
	stat_add(&ps->bytes_out, t->bytes_to_client);
	struct shared_gen *sg = t->gen->up.sg;
	struct req_stats *tr;
	if (t->site && t->site->metrics &&
	    (tr = stats_block(sg->tracked[t->site->metrics - 1]->stats, px->index, sizeof(*tr))))
		count_req(tr, t, k, total);
	if (t->route && t->route->metrics &&
	    (tr = stats_block(sg->tracked[t->route->metrics - 1]->stats, px->index, sizeof(*tr))))
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

static void access_log(struct txn *t, uint64_t total)
{
	struct proxy *px = t->s->px;
	if (px->access_log.fd < 0)
		return;
	const char *mt = t->log_line;
	struct access_entry e = {
		.client = client_addr(t),
		.protocol = t->protocol,
		.method = mt ? mt : "-",
		.method_len = mt ? t->log_method_len : 1,
		.target = mt ? mt + t->log_method_len + 1 : "-",
		.target_len = mt ? strlen(mt + t->log_method_len + 1) : 1,
		.status = t->status,
		.bytes_sent = t->bytes_to_client,
		.server = t->srv ? t->srv->cfg->addr.text : NULL,
		.duration_us = total,
	};
	if (px->access_log.json) {
		e.bytes_received = t->bytes_from_client + t->body_consumed;
		e.site = t->site ? t->site->name : NULL;
		e.route = t->route ? t->route->prefix : NULL;
		e.pool = t->pooled ? pool_cfg(t)->name : NULL;
		e.backend_us = t->backend_us;
		e.added_us = t->own_us;
	}
	const struct tls_info *tls = conn_is_tls(t->s->conn) ? tls_info(t->s->conn) : NULL;
	if (tls) {
		e.tls = tls->protocol;
		e.sni = tls->sni;
		e.cipher = tls->cipher;
		e.verify = tls->verify;
	}
	access_log_write(&px->access_log, &e);
}

/* The transaction is over, answered or not: its counters and its access-log line, once. */
static void txn_done(struct txn *t)
{
	if (t->done)
		return;
	t->done = true;
	uint64_t total = count_own(t) - t->start_us;
	count(t, total);
	access_log(t, total);
}

void txn_free(struct txn *t)
{
	struct proxy *px = t->s->px;
	/* Cut short: counted if there was a request to count. */
	if (t->log_line)
		txn_done(t);
	timer_cancel(px->loop, &t->timer);
	loop_unqueue(px->loop, &t->wake);
	left_queue(t);
	upstream_dequeue(&t->gen->up, &t->ureq);
	release_backend(t, false);
	if (t->back)
		back_release(t);
	free(t->replay.data);
	if (t->log_line != t->log_inline)
		free(t->log_line);
	free(t->owned_body);
	proxy_gen_put(t->gen);
	buf_pool_put(&px->txns, t);
}

int txn_fail(struct txn *t, int status, const char *why)
{
	/* The client's own mistakes are counted, and logged only a few a second. */
	int kind = stats_client_error_of((unsigned)status);
	if (kind < 0 || proxy_client_error(t->s->px, kind))
		log_warn("%s %s: %d %s: %s%s%s", client_addr(t), txn_log_line(t), status,
			 http_reason((unsigned)status), why, t->srv ? " server " : "",
			 t->srv ? t->srv->cfg->addr.text : "");
	left_queue(t);
	upstream_dequeue(&t->gen->up, &t->ureq);
	release_backend(t, false);
	if (t->back)
		back_reset(t);
	if (!t->started) {
		t->started = true;
		t->last_io_ms = txn_now_ms(t);
	}
	if (!t->status)
		t->status = (uint16_t)status;
	/* The pool is full or down: tell clients when it is worth asking again (RFC 9110 10.2.3). */
	uint32_t retry_after = status == 503 && t->ureq.wake ? pool_cfg(t)->queue.retry_after_s : 0;
	if (t->ops->fail(t, status, retry_after) < 0)
		return STEP_GONE;
	t->status = (uint16_t)status;
	t->rsp_head_done = true;
	t->rsp_complete = true;
	return 0;
}

/* --- attempts --- */

/*
 * Whether the request can be sent again exactly as before: its head and
 * every body byte sent are still held, and nothing of an answer (not even
 * a 100 Continue) has gone to the client.
 */
static bool replayable(const struct txn *t)
{
	return t->back && t->body_consumed == t->replay.len && !t->rsp_head_done && !t->interim_sent &&
	       t->bytes_to_client == 0 && !t->tunnel;
}

/*
 * Whether a failed attempt may be followed by another, on a server not yet
 * tried: a failed connect always, a request that reached the backend only
 * if idempotent, replayable and named by retry.on. Within retry.tries and
 * the pool's retry budget, which a yes spends.
 */
static bool retry_allowed(struct txn *t, enum txn_failure cause)
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
		log_info("%s: pool \"%s\": retry budget spent; no retry", client_addr(t),
			 pool_cfg(t)->name);
		return false;
	}
	return true;
}

/* Lends the transaction a backend connection, or queues it, or answers why it cannot. */
static int txn_connect(struct txn *t)
{
	struct upstream *up = &t->gen->up;
	for (;;) {
		bool busy;
		struct server_rt *srv = upstream_pick(up, &t->ureq, &busy);
		if (!srv && busy) {
			if (upstream_enqueue(up, &t->ureq) < 0)
				return txn_fail(t, 503, "the pool's queue is full");
			t->phase_since_ms = txn_now_ms(t);
			t->queued_us = now_us(t);
			log_debug("%s %s: queued for pool \"%s\"", client_addr(t), txn_log_line(t),
				  pool_cfg(t)->name);
			return 0;
		}
		if (!srv)
			break;
		t->srv = srv;
		int err;
		struct bconn *bc = upstream_acquire(up, srv, t, backend_on_io, &err);
		if (bc) {
			t->bc = bc;
			t->attempt_us = now_us(t);
			t->connecting = (bc->conn.flags & (CONN_CONNECTING | CONN_HANDSHAKE)) != 0;
			t->phase_since_ms = txn_now_ms(t);
			t->last_io_ms = txn_now_ms(t);
			return 0;
		}
		upstream_server_failed(up, srv, "connect failed");
		log_debug("connect to %s failed: %s", srv->cfg->addr.text, strerror(-err));
		t->last_status = 502;
		t->last_why = "backend connect failed";
		if (!retry_allowed(t, FAIL_CONNECT))
			break;
	}
	if (t->ureq.ntried == 0)
		return txn_fail(t, 503, "no usable server in the pool");
	/* Every attempt made ended in a failure that said what to answer. */
	BUG_ON(!t->last_status || !t->last_why);
	return txn_fail(t, t->last_status, t->last_why);
}

/* Forgets the failed attempt (keeping the request and its replay copy) and makes the next. */
static int retry_elsewhere(struct txn *t, int status, const char *why)
{
	log_info("%s %s: %s%s%s; trying again", client_addr(t), txn_log_line(t), why,
		 t->srv ? " server " : "", t->srv ? t->srv->cfg->addr.text : "");
	release_backend(t, false);
	back_reset(t);
	t->connecting = false;
	t->replay.sent = 0;
	t->req_sent = false;
	t->rsp_started = false;
	t->back_eof = false;
	t->last_status = (uint16_t)status;
	t->last_why = why;
	return txn_connect(t);
}

/*
 * An attempt failed before anything of an answer reached the client. An
 * idempotent request on a reused keep-alive connection that the backend
 * closed (the race every pooled proxy has) is sent again whatever retry
 * says, if it can be sent whole, and without counting it against the
 * server. Anything else counts as a failure of the server and is retried
 * only as retry_allowed() says; otherwise the client gets status.
 */
int txn_backend_failed(struct txn *t, int status, const char *why, enum txn_failure cause)
{
	BUG_ON(!t->bc);
	bool stale = cause == FAIL_ERROR && t->bc->reused && t->idempotent && !t->rsp_started &&
		     replayable(t);
	if (stale) {
		/* Not an attempt: each stale pooled connection is closed on the way, so this ends. */
		t->ureq.ntried--;
		return retry_elsewhere(t, status, why);
	}
	upstream_server_failed(&t->gen->up, t->srv, why);
	if (retry_allowed(t, cause))
		return retry_elsewhere(t, status, why);
	return txn_fail(t, status, why);
}

/* A failure dealt with: the step starts over, unless the stream is gone. */
static int failed(int r) { return r < 0 ? STEP_GONE : STEP_AGAIN; }

/* --- the request --- */

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
static int route_request(struct txn *t, const struct http_msg *m, const struct req_host *host,
			 const char **why)
{
	const struct cfg_listener *l = t->s->listener->cfg;
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
static uint64_t balance_key(const struct txn *t, const struct http_msg *m, const struct req_host *host)
{
	const struct cfg_pool *p = pool_cfg(t);
	if (p->balance != BALANCE_HASH)
		return 0;
	switch (p->hash_by) {
	case HASH_CLIENT:
		return balance_hash(t->s->ip, strlen(t->s->ip));
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
static int local_response(struct txn *t, struct http_answer *a, const char *body, const char **why)
{
	/* RFC 9110 8.6, 15.3.5: a 204 has no body and no Content-Length; a 304 no body. */
	if (a->status == 204 || a->status == 304)
		a->body_len = 0;
	int status = t->ops->answer(t, a, body, why);
	if (status)
		return status;
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
static int check_client_cert_policy(struct txn *t, const struct req_host *host, const char **why)
{
	const struct cfg_listener *l = t->s->listener->cfg;
	const struct config *cfg = t->gen->cfg;
	bool tls = conn_is_tls(t->s->conn);
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
		if (want == tls_applied_verify(t->s->conn))
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
static int https_redirect(struct txn *t, const struct http_msg *m, const struct req_host *host,
			  const char **why)
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
	return local_response(t, &a, NULL, why);
}

static int route_answer(struct txn *t, const struct http_msg *m, const char **why)
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
	return local_response(t, &a, redirect ? NULL : rt->body, why);
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
static int run_hook(struct txn *t, const struct http_msg *m, const struct req_host *host,
		    struct hook_result *res, bool *answered, bool *routed, const char **why)
{
	struct config *cfg = t->gen->cfg;
	struct hook_request req = {
		.method = http_str(m, m->method_name),
		.method_len = m->method_name.len,
		.target = http_str(m, m->path),
		.target_len = m->path.len,
		.host = host->len > 0 ? host->name : NULL,
		.host_len = host->len > 0 ? (size_t)host->len : 0,
		.client = t->s->ip,
		.protocol = t->protocol,
		.tls = conn_is_tls(t->s->conn) ? tls_info(t->s->conn) : NULL,
		.ctx = (void *)m,
		.header = hook_header,
		.each_header = hook_each_header,
	};
	enum hook_outcome outcome = hook_run(t->gen->hook, &req, res);
	if (outcome == HOOK_FAIL) {
		log_error("%s %s: %s", client_addr(t), txn_log_line(t), res->error);
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
		return local_response(t, &a, t->owned_body, why);
	}
	t->hook_rules = &res->rules;
	if (!res->pool)
		return 0;
	size_t k = 0;
	while (k < cfg->npools && (strlen(cfg->pools[k].name) != res->pool_len ||
				   memcmp(cfg->pools[k].name, res->pool, res->pool_len)))
		k++;
	if (k == cfg->npools) {
		log_error("%s: the hook named pool \"%.*s\", which the config does not have",
			  client_addr(t), (int)res->pool_len, res->pool);
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
	log_error("%s: the hook named server \"%.*s\", which pool \"%s\" does not have", client_addr(t),
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

int txn_request(struct txn *t, const struct http_msg *m, const char **why)
{
	struct proxy *px = t->s->px;
	int status = 0;
	if (t->gen != px->gen) {
		/* A reload came while the head arrived: the listener speaks for the new config. */
		proxy_gen_put(t->gen);
		t->gen = proxy_gen_get(px);
	}
	t->is_head = m->method == HTTP_METHOD_HEAD;
	t->idempotent = http_method_idempotent(m->method);
	t->req_has_body = m->framing != HTTP_FRAMING_NONE;
	t->upgrade = m->upgrade;
	keep_log_line(t, m);
	t->bytes_from_client = m->head_len;
	struct req_host host;
	req_host_of(m, &host);
	struct hook_result hook_res;
	bool hooked = t->gen->cfg->has_hook, local = false, routed = false;
	if (hooked)
		status = run_hook(t, m, &host, &hook_res, &local, &routed, why);
	if (!status && !local && !routed)
		status = route_request(t, m, &host, why);
	if (!status && !local)
		status = check_client_cert_policy(t, &host, why);
	if (!status && !local && t->route && t->route->https_port && !conn_is_tls(t->s->conn)) {
		local = true;
		status = https_redirect(t, m, &host, why);
	}
	if (!status && !local && t->route && t->route->action != ROUTE_PROXY) {
		local = true;
		status = route_answer(t, m, why);
	}
	if (!status && !local) {
		upstream_request_init(&t->ureq, t->pool, balance_key(t, m, &host), t->forced_server,
				      queue_granted);
		const struct cfg_retry *rc = &pool_cfg(t)->retry;
		t->replay.keep = t->idempotent && rc->buffer && cfg_retry_on_any(rc);
		t->back = (struct back *)((char *)t + BACK_OFFSET);
		if (!back_prepare(t, m)) {
			status = 431;
			*why = "request head too large once rewritten";
		}
	}
	if (hooked) {
		t->hook_rules = NULL;
		hook_release(t->gen->hook);
	}
	return status;
}

int txn_begin(struct txn *t, int status, const char *why)
{
	if (status)
		return txn_fail(t, status, why);
	t->started = true;
	t->last_io_ms = txn_now_ms(t);
	if (t->rsp_head_done)
		return 0; /* answered by sluice itself */
	t->pooled = true;
	upstream_count_request(&t->gen->up, t->pool);
	return txn_connect(t);
}

/* --- the timer --- */

static uint64_t deadline(const struct txn *t)
{
	const struct cfg_timeouts *to = txn_timeouts(t);
	if (upstream_waiting(&t->ureq))
		return t->phase_since_ms + pool_cfg(t)->queue.timeout_ms;
	if (t->connecting)
		return t->phase_since_ms + to->backend_connect_ms;
	if (t->req_sent && !t->rsp_head_done)
		return t->phase_since_ms + to->backend_response_ms;
	return t->last_io_ms + to->idle_ms;
}

static int timed_out(struct txn *t)
{
	if (upstream_waiting(&t->ureq))
		return txn_fail(t, 503, "waited in the pool's queue for too long");
	if (t->connecting)
		return txn_backend_failed(t, 504, "backend connect timed out", FAIL_CONNECT);
	if (t->req_sent && !t->rsp_head_done)
		return txn_backend_failed(t, 504, "backend sent no response head in time", FAIL_TIMEOUT);
	if (!t->rsp_head_done && t->bc && (t->body_waiting || !back_request_out(t)))
		return txn_backend_failed(t, 504, "backend stopped reading the request", FAIL_TIMEOUT);
	if (!t->rsp_head_done)
		return txn_fail(t, 408, "client stopped sending the request body");
	return txn_fail(t, 504, "transfer idle for too long");
}

static void txn_timer_fired(struct timer *tm)
{
	struct txn *t = container_of(tm, struct txn, timer);
	uint64_t d = deadline(t);
	if (d > txn_now_ms(t)) {
		timer_arm_at(t->s->px->loop, &t->timer, d);
		return;
	}
	if (timed_out(t) >= 0)
		t->ops->wake(t);
}

void txn_ran(struct txn *t, bool yielded)
{
	count_own(t);
	t->own_held = yielded;
	if (!t->started)
		return;
	uint64_t d = deadline(t);
	if (!timer_armed(&t->timer) || d < t->timer.expire_ms)
		timer_arm_at(t->s->px->loop, &t->timer, d);
}

/* --- moving bytes --- */

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

/* Finishes connecting the attempt's connection (TCP, then TLS). */
static int finish_connect(struct txn *t)
{
	int rc = conn_finish_connect(&t->bc->conn);
	if (rc < 0 && conn_is_tls(&t->bc->conn) && !(t->bc->conn.flags & CONN_CONNECTING)) {
		log_warn("server %s: TLS handshake failed: %s", t->srv->cfg->addr.text,
			 tls_failure(&t->bc->conn));
		return failed(txn_backend_failed(t, 502, "backend TLS handshake failed", FAIL_CONNECT));
	}
	if (rc < 0) {
		log_debug("connect to %s: %s", t->srv->cfg->addr.text, strerror(-rc));
		return failed(txn_backend_failed(t, 502, "backend connect failed", FAIL_CONNECT));
	}
	if (rc > 0)
		return 0;
	t->connecting = false;
	t->last_io_ms = txn_now_ms(t);
	return 1;
}

/* Client -> backend: the request body the stream has, after the head (and a replay's bytes). */
static int send_request(struct txn *t)
{
	struct iovec body = {0};
	int progress = t->ops->read_body(t, &body);
	if (progress < 0 || progress == STEP_AGAIN)
		return progress;
	bool wrote = false;
	ssize_t taken = t->bc ? back_write(t, &body, &wrote) : 0;
	if (taken < 0)
		return failed(txn_backend_failed(t, 502, "backend write failed", FAIL_ERROR));
	if (taken > 0) {
		t->body_consumed += (uint64_t)taken;
		replay_keep(t, body.iov_base, (size_t)taken);
		t->ops->consume_body(t, (size_t)taken);
	}
	t->body_waiting = body.iov_len > (size_t)taken;
	if (t->req_complete && !t->req_sent && t->bc && !t->connecting && !t->body_waiting &&
	    back_request_out(t)) {
		t->req_sent = true;
		t->phase_since_ms = txn_now_ms(t);
		wrote = true;
	}
	return progress | wrote;
}

/* A response head from the backend: interim ones go on, a final one decides the response. */
static int response_head(struct txn *t, const struct http_msg *m)
{
	unsigned status = m->status;
	if (status == 101 && !t->upgrade)
		return failed(txn_fail(t, 502, "101 Switching Protocols to a request that asked for no upgrade"));
	if (status >= 100 && status < 200 && status != 101) {
		if (!t->ops->send_head(t, m))
			return failed(txn_fail(t, 502, "interim response head too large"));
		back_head_done(t, m);
		return 1;
	}
	if (cfg_retry_on_status(&pool_cfg(t)->retry, status)) {
		const char *named = "backend answered with a status that retry.on names";
		upstream_server_failed(&t->gen->up, t->srv, named);
		if (retry_allowed(t, FAIL_STATUS)) /* its answer is dropped unread: the connection goes with it */
			return failed(retry_elsewhere(t, (int)status, named));
	} else {
		upstream_server_ok(&t->gen->up, t->srv);
	}
	t->status = (uint16_t)status;
	if (!t->ops->send_head(t, m))
		return failed(txn_fail(t, 502, "response head too large"));
	t->rsp_head_done = true;
	t->tunnel = status == 101;
	t->backend_us = MAX(now_us(t) - t->attempt_us, 1);
	back_head_done(t, m);
	return 1;
}

/* Checks the response bytes read: heads go to response_head(), body bytes wait for the client. */
static int parse_response(struct txn *t)
{
	int progress = 0;
	for (;;) {
		const struct http_msg *head = NULL;
		const char *why = NULL;
		enum back_event e = t->back ? back_parse(t, &head, &why) : BACK_NONE;
		if (e == BACK_NONE)
			return progress;
		if (e == BACK_ERROR)
			return failed(txn_fail(t, 502, why));
		if (e == BACK_HEAD) {
			int r = response_head(t, head);
			if (r != 1)
				return r;
		}
		progress = 1;
	}
}

/* Reads the backend. */
static int read_response(struct txn *t)
{
	/* Past a complete response, a byte or a close only says the connection cannot be reused. */
	if (!t->bc || t->connecting || t->back_eof || t->rsp_complete)
		return 0;
	ssize_t n = back_read(t);
	if (n > 0) {
		t->rsp_started = true;
		t->last_io_ms = txn_now_ms(t);
		return 1;
	}
	if (n == 0)
		return 0;
	if (t->tunnel) {
		t->back_eof = true;
		return 1;
	}
	if (!t->rsp_started)
		return failed(txn_backend_failed(t, 502,
						 n == IO_EOF ? "backend closed the connection without answering"
							     : "backend reset the connection",
						 FAIL_ERROR));
	if (!t->rsp_head_done)
		return failed(txn_backend_failed(
			t, 502, "backend closed the connection in the middle of the response head", FAIL_ERROR));
	t->back_eof = true;
	/* The close is the end of a body until EOF (RFC 9112 6.3, item 8), once every byte before it is parsed. */
	if (n == IO_EOF) {
		int r = parse_response(t);
		if (r < 0 || r == STEP_AGAIN)
			return r;
		if (back_eof_ends_body(t)) {
			t->rsp_complete = true;
			return 1;
		}
	}
	/* A truncated body: closing is the only way to tell the client. */
	upstream_server_failed(&t->gen->up, t->srv,
			       n == IO_EOF ? "backend closed the connection in the middle of the response"
					   : "backend reset the connection in the middle of the response");
	t->ops->close(t);
	return STEP_GONE;
}

/* Backend -> client: what the back has checked, after what the stream has queued. */
static int send_response(struct txn *t)
{
	const char *data = NULL;
	size_t len = t->back ? back_body(t, &data) : 0, taken = 0;
	int r = t->ops->send_body(t, data, len, &taken);
	if (r > 0 && t->back)
		back_body_consume(t, taken);
	return r;
}

/* Whether response bytes wait for the client: in the stream, or in the back. */
static bool response_owed(const struct txn *t)
{
	const char *data;
	return t->ops->output_pending(t) || (t->back && back_body(t, &data));
}

/* The response is out and the request is in: the backend goes back, the stream carries on. */
static int finish(struct txn *t)
{
	release_backend(t, t->back && back_reusable(t));
	txn_done(t);
	t->ops->finish(t);
	return STEP_GONE;
}

int txn_step(struct txn *t)
{
	int progress = 0, r;
	if (t->ureq.granted) {
		left_queue(t);
		return txn_connect(t) < 0 ? STEP_GONE : 1;
	}
	if (t->bc && t->connecting) {
		if ((r = finish_connect(t)) != 0 && r != 1)
			return r == STEP_AGAIN ? 1 : r;
		progress = r;
	}
	if (t->tunnel)
		return tunnel_step(t);

	if ((r = send_request(t)) < 0 || r == STEP_AGAIN)
		return r < 0 ? r : 1;
	progress |= r;
	if ((r = read_response(t)) < 0 || r == STEP_AGAIN)
		return r < 0 ? r : 1;
	progress |= r;
	if ((r = parse_response(t)) < 0 || r == STEP_AGAIN)
		return r < 0 ? r : 1;
	progress |= r;
	/*
	 * Head and body were kept for a replay; once the response is under way
	 * there will be none. What this attempt still owes of them goes first.
	 */
	if (t->rsp_head_done && t->back) {
		back_request_drop(t);
		t->replay.keep = false;
		if (t->replay.data && t->replay.sent == t->replay.len)
			replay_drop(t);
	}
	if ((r = send_response(t)) < 0)
		return r;
	progress |= r;
	if (t->tunnel)
		return 1;
	if (t->rsp_complete && !response_owed(t) &&
	    (t->req_sent || !t->bc || t->ops->ends_stream(t)))
		return finish(t);
	return progress;
}

int txn_tunnel_read(struct txn *t) { return read_response(t); }

int txn_tunnel_send(struct txn *t)
{
	back_body_raw(t);
	return send_response(t);
}

bool txn_response_owed(const struct txn *t) { return response_owed(t); }
