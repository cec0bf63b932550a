#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int upstream_init(struct upstream *up, struct loop *loop, const struct config *cfg)
{
	memset(up, 0, sizeof(*up));
	up->loop = loop;
	up->pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*up->pools));
	if (!up->pools)
		return -ENOMEM;
	up->npools = cfg->npools;
	for (size_t i = 0; i < cfg->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		p->cfg = &cfg->pools[i];
		p->servers = calloc(p->cfg->nservers, sizeof(*p->servers));
		if (!p->servers) {
			upstream_destroy(up);
			return -ENOMEM;
		}
		for (size_t k = 0; k < p->cfg->nservers; k++) {
			p->servers[k].cfg = &p->cfg->servers[k];
			p->servers[k].pool = p->cfg;
			list_init(&p->servers[k].idle);
		}
	}
	return 0;
}

static void bconn_destroy(struct bconn *bc)
{
	if (!list_empty(&bc->idle_link)) {
		list_remove(&bc->idle_link);
		bc->srv->nidle--;
	}
	timer_cancel(bc->up->loop, &bc->idle_timer);
	conn_close(&bc->conn);
	bc->up->connections--;
	loop_free_later(bc->up->loop, bc);
}

void upstream_destroy(struct upstream *up)
{
	for (size_t i = 0; i < up->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		for (size_t k = 0; p->servers && k < p->cfg->nservers; k++)
			while (!list_empty(&p->servers[k].idle))
				bconn_destroy(container_of(p->servers[k].idle.next, struct bconn,
							   idle_link));
		free(p->servers);
	}
	free(up->pools);
	up->pools = NULL;
	up->npools = 0;
}

struct server_rt *upstream_pick(struct upstream *up, size_t pool)
{
	struct pool_rt *p = &up->pools[pool];
	size_t n = p->cfg->nservers;
	uint64_t now = loop_now_ms(up->loop);
	for (size_t i = 0; i < n; i++) {
		struct server_rt *s = &p->servers[p->next];
		p->next = (p->next + 1) % n;
		if (s->down_until_ms <= now)
			return s;
	}
	return NULL;
}

void upstream_server_failed(struct upstream *up, struct server_rt *srv)
{
	if (srv->down_until_ms <= loop_now_ms(up->loop))
		log_warn("server %s: connect failed; skipped for %u ms", srv->cfg->addr.text,
			 srv->pool->connect_backoff_ms);
	srv->down_until_ms = loop_now_ms(up->loop) + srv->pool->connect_backoff_ms;
}

/* An idle connection must stay silent: any event means the backend closed it or misbehaves. */
static void bconn_on_io(struct conn *c)
{
	struct bconn *bc = container_of(c, struct bconn, conn);
	if (bc->owner) {
		bc->on_io(bc);
		return;
	}
	if (c->flags & CONN_READABLE)
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
		srv->nidle--;
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
		if (*err < 0) {
			free(bc);
			return NULL;
		}
		up->connections++;
	}
	bc->owner = owner;
	bc->on_io = on_io;
	return bc;
}

void upstream_release(struct bconn *bc, bool reusable)
{
	struct server_rt *srv = bc->srv;
	bc->owner = NULL;
	bc->on_io = NULL;
	if (!reusable || bc->conn.fd < 0 || srv->nidle >= srv->pool->keepalive) {
		bconn_destroy(bc);
		return;
	}
	list_insert_tail(&srv->idle, &bc->idle_link);
	srv->nidle++;
	timer_arm(bc->up->loop, &bc->idle_timer, srv->pool->keepalive_timeout_ms);
}
