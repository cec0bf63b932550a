#include "upstream/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tls/tls.h"

static void dispatch(struct upstream *up, struct pool_rt *p);

size_t upstream_session_slot(const struct upstream *up, const struct server_rt *srv)
{
	return up->thread * srv->pool->nservers + (size_t)(srv - srv->prt->servers);
}
static void purge_idle(struct timer *t);

int upstream_init(struct upstream *up, struct loop *loop, struct shared_gen *sg, uint32_t thread)
{
	const struct config *cfg = sg->cfg;
	memset(up, 0, sizeof(*up));
	up->loop = loop;
	up->sg = shared_gen_ref(sg);
	up->thread = thread;
	up->pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*up->pools));
	if (!up->pools)
		return -ENOMEM;
	up->npools = cfg->npools;
	for (size_t i = 0; i < cfg->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		p->cfg = &cfg->pools[i];
		p->servers = calloc(p->cfg->nservers, sizeof(*p->servers));
		p->bal = calloc(p->cfg->nservers, sizeof(*p->bal));
		if (!p->servers || !p->bal) {
			upstream_destroy(up);
			return -ENOMEM;
		}
		list_init(&p->queue);
		p->up = up;
		p->st = sg->pools[i];
		p->purge_timer.on_expire = purge_idle;
		/*
		 * Round robin cannot ramp a server up; smooth weighted round robin
		 * with equal weights visits servers in the same turn, and can.
		 */
		enum balance_algo algo = p->cfg->balance;
		if (algo == BALANCE_ROUND_ROBIN && p->cfg->slow_start_ms)
			algo = BALANCE_WEIGHTED;
		p->balancer = (struct balancer){
			.algo = algo,
			.ring = p->cfg->balance == BALANCE_HASH ? &p->cfg->ring : NULL,
			.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)p,
		};
		for (size_t k = 0; k < p->cfg->nservers; k++) {
			const struct cfg_server *cs = &p->cfg->servers[k];
			p->servers[k] = (struct server_rt){.cfg = cs, .pool = p->cfg, .prt = p,
							   .bal = &p->bal[k], .st = sg->servers[i][k]};
			list_init(&p->servers[k].idle);
			p->bal[k] = (struct balance_server){.name = cs->addr.text, .weight = cs->weight,
							    .backup = cs->backup, .drain = cs->drain};
		}
	}
	return 0;
}

struct server_stats *upstream_server_stats(struct upstream *up, const struct server_rt *srv)
{
	return up->thread < up->sg->sh->workers
		       ? stats_block(srv->st->stats, up->thread, sizeof(struct server_stats))
		       : NULL;
}

struct pool_stats *upstream_pool_stats(struct upstream *up, size_t pool)
{
	return up->thread < up->sg->sh->workers
		       ? stats_block(up->pools[pool].st->stats, up->thread, sizeof(struct pool_stats))
		       : NULL;
}

/* A connection goes in (+1) or out (-1) of its server's idle list. */
static void count_idle(struct bconn *bc, int delta)
{
	bc->srv->nidle += (uint32_t)delta;
	struct server_stats *ss = upstream_server_stats(bc->up, bc->srv);
	if (ss)
		stat_add(&ss->conns_idle, (uint64_t)(int64_t)delta);
}

static void bconn_destroy(struct bconn *bc)
{
	if (!list_empty(&bc->idle_link)) {
		list_remove(&bc->idle_link);
		count_idle(bc, -1);
	}
	struct server_stats *ss = upstream_server_stats(bc->up, bc->srv);
	if (ss)
		stat_sub(&ss->conns_open, 1);
	timer_cancel(bc->up->loop, &bc->idle_timer);
	conn_close(&bc->conn);
	loop_free_later(bc->up->loop, bc);
}

void upstream_destroy(struct upstream *up)
{
	for (size_t i = 0; i < up->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		BUG_ON(p->servers && !list_empty(&p->queue));
		for (size_t k = 0; p->servers && k < p->cfg->nservers; k++)
			while (!list_empty(&p->servers[k].idle))
				bconn_destroy(container_of(p->servers[k].idle.next, struct bconn,
							   idle_link));
		timer_cancel(up->loop, &p->purge_timer);
		free(p->servers);
		free(p->bal);
	}
	free(up->pools);
	up->pools = NULL;
	up->npools = 0;
	shared_gen_unref(up->sg);
	up->sg = NULL;
}

/*
 * Weights are kept in hundredths so that a server in slow start can get a
 * small share (the algorithms only compare weights with each other). A
 * round-robin pool has equal weights.
 */
#define WEIGHT_SCALE 100

static uint32_t effective_weight(const struct server_rt *s, uint64_t now)
{
	uint32_t set = atomic_load_explicit(&s->st->weight, memory_order_relaxed);
	uint32_t weight = set ? set : s->cfg->weight;
	uint32_t full = (s->pool->balance == BALANCE_ROUND_ROBIN ? 1 : weight) * WEIGHT_SCALE;
	uint32_t ramp = s->pool->slow_start_ms;
	uint64_t back = ramp ? atomic_load_explicit(&s->st->back_since_ms, memory_order_relaxed) : 0;
	if (!back || now >= back + ramp)
		return full;
	uint64_t w = now > back ? (uint64_t)full * (now - back) / ramp : 0;
	return w ? (uint32_t)w : 1;
}

void upstream_request_init(struct upstream_request *r, size_t pool, uint64_t key_hash, int32_t only,
			   void (*wake)(struct upstream_request *r))
{
	*r = (struct upstream_request){.pool = pool, .key_hash = key_hash, .only = only, .wake = wake};
	list_init(&r->queue_link);
}

/* At max_connections, counting every worker's requests and granted slots. */
static bool server_full(const struct server_rt *s)
{
	return slots_full(&s->st->claimed, s->cfg->max_connections);
}

static bool pool_full(const struct pool_rt *p)
{
	return slots_full(&p->st->claimed, p->cfg->max_connections);
}

/* A slot of the server and of its pool, for the whole process. */
static bool claim(struct pool_rt *p, struct server_rt *s)
{
	if (!slot_claim(&p->st->claimed, p->cfg->max_connections))
		return false;
	if (slot_claim(&s->st->claimed, s->cfg->max_connections))
		return true;
	slot_release(&p->st->claimed, p->cfg->max_connections);
	return false;
}

/* Gives a slot back; queued requests get it, this worker's first, then any other's. */
static void unclaim(struct upstream *up, struct pool_rt *p, struct server_rt *s)
{
	bool limited = p->cfg->max_connections || s->cfg->max_connections;
	slot_release(&s->st->claimed, s->cfg->max_connections);
	slot_release(&p->st->claimed, p->cfg->max_connections);
	dispatch(up, p);
	uint64_t waiting = limited ? atomic_load(&p->st->waiting) : 0;
	if (waiting)
		shared_kick(up->sg->sh, waiting, up->thread);
}

/* In, by passive and active health, and not drained or in maintenance (config or admin API). */
static bool usable(const struct server_rt *s, uint64_t now)
{
	return atomic_load_explicit(&s->st->down_until_ms, memory_order_relaxed) <= now &&
	       !atomic_load_explicit(&s->st->check_down, memory_order_relaxed) &&
	       atomic_load_explicit(&s->st->admin, memory_order_relaxed) == SERVER_READY;
}

/* Server index may serve r: not tried for it yet, and the one it must use if any. */
static bool open_to(const struct upstream_request *r, size_t index)
{
	for (uint32_t i = 0; i < r->ntried; i++)
		if (r->tried[i] == index)
			return false;
	return r->only < 0 || (size_t)r->only == index;
}

/*
 * Marks what r may not use and lets the balancer choose among the rest.
 * *busy: some server was left out only for being at max_connections; then
 * backups stay out too (they stand in for servers that are down, not busy).
 */
static ssize_t choose(struct upstream *up, struct pool_rt *p, const struct upstream_request *r,
		      bool *busy)
{
	size_t n = p->cfg->nservers;
	uint64_t now = loop_now_ms(up->loop);
	bool primary_busy = false;
	*busy = false;
	for (size_t i = 0; i < n; i++) {
		struct server_rt *s = &p->servers[i];
		bool out = !usable(s, now) || !open_to(r, i);
		bool full = !out && server_full(s);
		*busy |= full;
		primary_busy |= full && !s->cfg->backup;
		p->bal[i].down = out || full;
		p->bal[i].weight = effective_weight(s, now);
	}
	for (size_t i = 0; primary_busy && i < n; i++)
		p->bal[i].down |= p->servers[i].cfg->backup;
	uint64_t key = r->key_hash;
	return balance_pick(&p->balancer, p->bal, n, &key, sizeof(key));
}

static struct server_rt *take(struct pool_rt *p, struct upstream_request *r, size_t index)
{
	if (r->ntried < CFG_MAX_TRIES)
		r->tried[r->ntried++] = (uint32_t)index;
	r->started = true;
	return &p->servers[index];
}

/*
 * Whether a usable server has a free slot that choose() would offer (a
 * backup's only while no primary is just busy): else no queued request can
 * be served, and dispatch need not look through the queue.
 */
static bool any_room(struct upstream *up, const struct pool_rt *p)
{
	uint64_t now = loop_now_ms(up->loop);
	bool primary_busy = false, backup_room = false;
	if (pool_full(p))
		return false;
	for (size_t i = 0; i < p->cfg->nservers; i++) {
		const struct server_rt *s = &p->servers[i];
		if (!usable(s, now))
			continue;
		bool full = server_full(s);
		if (!s->cfg->backup && !full)
			return true;
		primary_busy |= !s->cfg->backup && full;
		backup_room |= s->cfg->backup && !full;
	}
	return backup_room && !primary_busy;
}

struct server_rt *upstream_pick(struct upstream *up, struct upstream_request *r, bool *busy)
{
	struct pool_rt *p = &up->pools[r->pool];
	*busy = false;
	if (r->granted) {
		struct server_rt *s = r->granted;
		r->granted = NULL;
		if (usable(s, loop_now_ms(up->loop)))
			return take(p, r, (size_t)(s - p->servers)); /* the slot granted is its now */
		/* It went out between the grant and now: choose again. */
		unclaim(up, p, s);
	}
	/*
	 * Those queued first are served first: free slots go to them before a
	 * newcomer looks. A retry (it held a slot already) goes ahead of them.
	 */
	if (!r->started)
		dispatch(up, p);
	/* Another worker may take the last slot between the choice and the claim: choose again. */
	for (size_t attempt = 0; attempt <= p->cfg->nservers; attempt++) {
		if (pool_full(p)) {
			*busy = true;
			return NULL;
		}
		ssize_t k = choose(up, p, r, busy);
		if (k < 0)
			return NULL;
		if (claim(p, &p->servers[k]))
			return take(p, r, (size_t)k);
	}
	*busy = true;
	return NULL;
}

bool upstream_untried_left(struct upstream *up, const struct upstream_request *r)
{
	const struct pool_rt *p = &up->pools[r->pool];
	uint64_t now = loop_now_ms(up->loop);
	for (size_t i = 0; i < p->cfg->nservers; i++) {
		if (usable(&p->servers[i], now) && open_to(r, i))
			return true;
	}
	return false;
}

int upstream_enqueue(struct upstream *up, struct upstream_request *r)
{
	struct pool_rt *p = &up->pools[r->pool];
	BUG_ON(upstream_queued(r) || r->granted);
	/* A retry held a slot before: it waits first in line, and is not turned away. */
	if (r->started) {
		list_insert_after(&p->queue, &r->queue_link);
	} else if (p->queued < p->cfg->queue.size) {
		list_insert_tail(&p->queue, &r->queue_link);
	} else {
		return -ENOBUFS;
	}
	struct pool_stats *ps = upstream_pool_stats(up, r->pool);
	if (ps)
		stat_add(&ps->queued, 1);
	/* Said before looking: a slot another worker frees from now on wakes this one. */
	if (p->queued++ == 0 && up->thread < 64)
		atomic_fetch_or(&p->st->waiting, UINT64_C(1) << up->thread);
	dispatch(up, p);
	return 0;
}

static void left_queue(struct upstream *up, struct pool_rt *p)
{
	struct pool_stats *ps = upstream_pool_stats(up, (size_t)(p - up->pools));
	if (ps)
		stat_sub(&ps->queued, 1);
	if (--p->queued == 0 && up->thread < 64)
		atomic_fetch_and(&p->st->waiting, ~(UINT64_C(1) << up->thread));
}

void upstream_dequeue(struct upstream *up, struct upstream_request *r)
{
	struct pool_rt *p = &up->pools[r->pool];
	if (upstream_queued(r)) {
		list_remove(&r->queue_link);
		left_queue(up, p);
	}
	if (r->granted) {
		struct server_rt *s = r->granted;
		r->granted = NULL;
		unclaim(up, p, s);
	}
}

void upstream_dispatch_all(struct upstream *up)
{
	for (size_t i = 0; i < up->npools; i++)
		if (up->pools[i].queued)
			dispatch(up, &up->pools[i]);
}

/*
 * Grants free slots to queued requests, oldest first; one that can use
 * none of them (its only server is full, or it tried the free ones) does
 * not hold up those behind it.
 */
static void dispatch(struct upstream *up, struct pool_rt *p)
{
	while (!list_empty(&p->queue) && any_room(up, p)) {
		struct upstream_request *r = NULL;
		ssize_t k = -1;
		for (struct list *l = p->queue.next; l != &p->queue && k < 0; l = l->next) {
			bool busy;
			r = container_of(l, struct upstream_request, queue_link);
			k = choose(up, p, r, &busy);
		}
		if (k < 0)
			return;
		if (!claim(p, &p->servers[k]))
			continue; /* another worker took it: look again */
		list_remove(&r->queue_link);
		left_queue(up, p);
		r->granted = &p->servers[k];
		r->wake(r);
	}
}

/* This worker's count for the current second, started afresh if it last counted an older one. */
static size_t budget_second(struct budget_slot *b, uint64_t second)
{
	size_t i = (size_t)(second % RETRY_WINDOW_S);
	if (atomic_load_explicit(&b->second[i], memory_order_relaxed) != second) {
		atomic_store_explicit(&b->requests[i], 0, memory_order_relaxed);
		atomic_store_explicit(&b->retries[i], 0, memory_order_relaxed);
		atomic_store_explicit(&b->second[i], second, memory_order_relaxed);
	}
	return i;
}

/* Only this worker writes its slot: a load and a store, no read-modify-write. */
static void bump(_Atomic uint32_t *n)
{
	atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1, memory_order_relaxed);
}

void upstream_count_request(struct upstream *up, size_t pool)
{
	struct budget_slot *b = &up->pools[pool].st->budget[up->thread];
	bump(&b->requests[budget_second(b, loop_now_ms(up->loop) / 1000)]);
}

bool upstream_may_retry(struct upstream *up, size_t pool)
{
	struct pool_rt *p = &up->pools[pool];
	uint64_t now = loop_now_ms(up->loop) / 1000;
	uint64_t requests = 0, retries = 0;
	for (uint32_t w = 0; w < up->sg->sh->workers; w++) {
		const struct budget_slot *b = &p->st->budget[w];
		for (size_t i = 0; i < RETRY_WINDOW_S; i++) {
			uint64_t second = atomic_load_explicit(&b->second[i], memory_order_relaxed);
			if (second + RETRY_WINDOW_S <= now || second > now)
				continue;
			requests += atomic_load_explicit(&b->requests[i], memory_order_relaxed);
			retries += atomic_load_explicit(&b->retries[i], memory_order_relaxed);
		}
	}
	uint64_t allowed = MAX(requests * p->cfg->retry.budget_percent / 100,
			       (uint64_t)p->cfg->retry.budget_min * RETRY_WINDOW_S);
	if (retries >= allowed)
		return false;
	struct budget_slot *own = &p->st->budget[up->thread];
	bump(&own->retries[budget_second(own, now)]);
	struct pool_stats *ps = upstream_pool_stats(up, pool);
	if (ps)
		stat_add(&ps->retries, 1);
	return true;
}

/* The server of up that like was in an older generation: the one with its shared state. */
static struct server_rt *to_of(struct upstream *up, const struct server_rt *like)
{
	for (size_t i = 0; i < up->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		if (strcmp(p->cfg->name, like->pool->name))
			continue;
		for (size_t k = 0; k < p->cfg->nservers; k++)
			if (p->servers[k].st == like->st)
				return &p->servers[k];
	}
	return NULL;
}

void upstream_adopt_idle(struct upstream *up, struct upstream *old)
{
	for (size_t i = 0; i < old->npools; i++) {
		struct pool_rt *p = &old->pools[i];
		for (size_t k = 0; k < p->cfg->nservers; k++) {
			struct server_rt *from = &p->servers[k];
			struct server_rt *to = to_of(up, from);
			/* What was in use before the reload is still what this server needs. */
			if (to) {
				to->peak_busy = MAX(to->peak_busy, from->peak_busy);
				to->prev_peak_busy = MAX(to->prev_peak_busy, from->prev_peak_busy);
			}
			while (!list_empty(&from->idle)) {
				struct bconn *bc = container_of(from->idle.next, struct bconn, idle_link);
				if (!to || to->nidle >= to->pool->keepalive) {
					bconn_destroy(bc);
					continue;
				}
				/* Its counts stay: to is the same server (to_of() matched its state). */
				list_remove(&bc->idle_link);
				from->nidle--;
				bc->srv = to;
				bc->up = up;
				list_insert_tail(&to->idle, &bc->idle_link);
				to->nidle++;
				if (!timer_armed(&to->prt->purge_timer))
					timer_arm(up->loop, &to->prt->purge_timer,
						  to->pool->keepalive_purge_ms);
			}
		}
	}
}

void upstream_server_failed(struct upstream *up, struct server_rt *srv, const char *why)
{
	struct server_state *st = srv->st;
	uint64_t now = loop_now_ms(up->loop);
	struct server_stats *ss = upstream_server_stats(up, srv);
	if (ss)
		stat_add(&ss->failures, 1);
	if (atomic_load(&st->down_until_ms) > now)
		return; /* out already: requests that were under way do not add to it */
	pthread_mutex_lock(&srv->prt->st->lock);
	if (atomic_load(&st->down_until_ms) > now) {
		pthread_mutex_unlock(&srv->prt->st->lock); /* another worker just took it out */
		return;
	}
	uint32_t fails = atomic_load(&st->fails) + 1;
	if (fails < srv->pool->max_fails) {
		atomic_store(&st->fails, fails);
		pthread_mutex_unlock(&srv->prt->st->lock);
		log_info("server %s: %s (%u of %u failures before it is taken out)", srv->cfg->addr.text,
			 why, fails, srv->pool->max_fails);
		return;
	}
	uint32_t outages = atomic_load(&st->outages);
	uint64_t cool = srv->pool->connect_backoff_ms;
	for (uint32_t i = 0; i < outages && cool < srv->pool->max_backoff_ms; i++)
		cool *= 2;
	cool = cool < srv->pool->max_backoff_ms ? cool : srv->pool->max_backoff_ms;
	atomic_store(&st->back_since_ms, now + cool);
	atomic_store(&st->down_until_ms, now + cool);
	atomic_store(&st->outages, ++outages);
	atomic_store(&st->fails, 0);
	pthread_mutex_unlock(&srv->prt->st->lock);
	log_warn("server %s: %s; taken out for %llu ms (outage %u)", srv->cfg->addr.text, why,
		 (unsigned long long)cool, outages);
}

void upstream_server_back(struct upstream *up, struct server_rt *srv)
{
	atomic_store(&srv->st->back_since_ms, loop_now_ms(up->loop));
	shared_kick(up->sg->sh, UINT64_MAX, up->thread);
}

void upstream_server_ok(struct upstream *up, struct server_rt *srv)
{
	(void)up;
	struct server_state *st = srv->st;
	/* The common case reads a line no one writes: nothing to reset. */
	if (!atomic_load_explicit(&st->fails, memory_order_relaxed) &&
	    !atomic_load_explicit(&st->outages, memory_order_relaxed))
		return;
	pthread_mutex_lock(&srv->prt->st->lock);
	bool was_out = atomic_exchange(&st->outages, 0) != 0;
	atomic_store(&st->fails, 0);
	pthread_mutex_unlock(&srv->prt->st->lock);
	if (was_out)
		log_info("server %s: answering again", srv->cfg->addr.text);
}

/* An idle connection must stay silent: any event means the backend closed it or misbehaves. */
static void bconn_on_io(struct conn *c)
{
	struct bconn *bc = container_of(c, struct bconn, conn);
	if (bc->owner) {
		bc->on_io(bc);
		return;
	}
	/*
	 * An idle backend has nothing to say but its close. Over TLS it may
	 * also send records that carry no data (a TLS 1.3 session ticket):
	 * reading them, with nothing to show, is no reason to close.
	 */
	char unexpected[64];
	if ((c->flags & CONN_READABLE) && conn_recv(c, unexpected, sizeof(unexpected)) != 0)
		bconn_destroy(bc);
}

static void bconn_idle_expired(struct timer *t)
{
	bconn_destroy(container_of(t, struct bconn, idle_timer));
}

struct bconn *upstream_acquire(struct upstream *up, struct server_rt *srv, void *owner,
			       void (*on_io)(struct bconn *bc), int *err)
{
	struct bconn *bc;
	if (!list_empty(&srv->idle)) {
		/* Most recently used first: the others are the ones left to expire. */
		bc = container_of(srv->idle.prev, struct bconn, idle_link);
		list_remove(&bc->idle_link);
		count_idle(bc, -1);
		timer_cancel(up->loop, &bc->idle_timer);
		bc->reused = true;
	} else {
		bc = calloc(1, sizeof(*bc));
		if (!bc) {
			*err = -ENOMEM;
			return NULL;
		}
		bc->up = up;
		bc->srv = srv;
		list_init(&bc->idle_link);
		bc->idle_timer.on_expire = bconn_idle_expired;
		const struct cfg_addr *a = &srv->cfg->addr;
		*err = conn_connect(&bc->conn, up->loop, (const struct sockaddr *)&a->sa, a->len,
				    bconn_on_io);
		if (*err == 0 && srv->pool->tls &&
		    (*err = tls_connect(&bc->conn, srv->pool->tls, upstream_session_slot(up, srv),
					a->text)) < 0)
			conn_close(&bc->conn);
		if (*err < 0) {
			free(bc);
			unclaim(up, srv->prt, srv); /* the slot picked for this is free again */
			return NULL;
		}
		struct server_stats *ss = upstream_server_stats(up, srv);
		if (ss) {
			stat_add(&ss->conns_opened, 1);
			stat_add(&ss->conns_open, 1);
		}
	}
	bc->owner = owner;
	bc->on_io = on_io;
	bc->requests++;
	srv->bal->active++;
	srv->prt->active++;
	srv->peak_busy = MAX(srv->peak_busy, srv->bal->active);
	return bc;
}

void upstream_release(struct bconn *bc, bool reusable)
{
	struct server_rt *srv = bc->srv;
	BUG_ON(srv->bal->active == 0 || srv->prt->active == 0);
	srv->bal->active--;
	srv->prt->active--;
	bc->owner = NULL;
	bc->on_io = NULL;
	bool worn = srv->pool->max_requests && bc->requests >= srv->pool->max_requests;
	struct upstream *up = bc->up;
	if (!reusable || worn || bc->conn.fd < 0 || srv->nidle >= srv->pool->keepalive) {
		bconn_destroy(bc);
	} else {
		list_insert_tail(&srv->idle, &bc->idle_link);
		count_idle(bc, 1);
		timer_arm(up->loop, &bc->idle_timer, srv->pool->keepalive_timeout_ms);
		if (!timer_armed(&srv->prt->purge_timer))
			timer_arm(up->loop, &srv->prt->purge_timer, srv->pool->keepalive_purge_ms);
	}
	unclaim(up, srv->prt, srv);
}

static void purge_idle(struct timer *t)
{
	struct pool_rt *p = container_of(t, struct pool_rt, purge_timer);
	bool idle_left = false;
	for (size_t k = 0; k < p->cfg->nservers; k++) {
		struct server_rt *s = &p->servers[k];
		uint32_t need = MAX(s->peak_busy, s->prev_peak_busy);
		uint32_t have = s->bal->active + s->nidle;
		if (have > need) {
			uint32_t surplus = MIN(have - need, s->nidle);
			for (uint32_t n = (surplus + 1) / 2; n; n--)
				bconn_destroy(container_of(s->idle.next, struct bconn, idle_link));
		}
		s->prev_peak_busy = s->peak_busy;
		s->peak_busy = s->bal->active;
		idle_left |= s->nidle > 0;
	}
	if (idle_left)
		timer_arm(p->up->loop, t, p->cfg->keepalive_purge_ms);
}
