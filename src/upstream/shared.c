#include "upstream/shared.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"

int shared_init(struct shared *sh, uint32_t workers)
{
	memset(sh, 0, sizeof(*sh));
	sh->workers = workers;
	sh->kick = malloc(workers * sizeof(*sh->kick));
	sh->stats = aligned_alloc(alignof(struct proc_stats), workers * sizeof(*sh->stats));
	if (!sh->kick || !sh->stats) {
		free(sh->kick);
		free(sh->stats);
		return -ENOMEM;
	}
	memset(sh->stats, 0, workers * sizeof(*sh->stats));
	for (uint32_t i = 0; i < workers; i++)
		sh->kick[i] = -1;
	for (uint32_t i = 0; i < workers; i++) {
		sh->kick[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (sh->kick[i] < 0) {
			int err = -errno;
			shared_destroy(sh);
			return err;
		}
	}
	return 0;
}

void shared_destroy(struct shared *sh)
{
	for (uint32_t i = 0; sh->kick && i < sh->workers; i++)
		if (sh->kick[i] >= 0)
			close(sh->kick[i]);
	free(sh->kick);
	sh->kick = NULL;
	free(sh->stats);
	sh->stats = NULL;
}

void shared_kick(struct shared *sh, uint64_t mask, uint32_t self)
{
	if (self < 64) /* the health checker's index is the number of workers: no bit of its own */
		mask &= ~(UINT64_C(1) << self);
	while (mask) {
		uint32_t i = (uint32_t)__builtin_ctzll(mask);
		mask &= mask - 1;
		if (i >= sh->workers)
			break;
		uint64_t one = 1;
		ssize_t n = write(sh->kick[i], &one, sizeof(one));
		(void)n; /* EAGAIN: the counter is full, so a wake-up is pending anyway */
	}
}

/* --- states --- */

const char *const server_admin_name[3] = {"ready", "drain", "maint"};

static bool is_server(const struct server_state *s, const struct cfg_addr *a)
{
	return a->len <= sizeof(s->addr) && !memcmp(&s->addr, &a->sa, a->len);
}

static struct server_state *server_state_new(const struct cfg_addr *addr, uint32_t workers)
{
	struct server_state *s = calloc(1, sizeof(*s));
	if (!s || !(s->stats = calloc(workers, sizeof(*s->stats)))) {
		free(s);
		return NULL;
	}
	memcpy(&s->addr, &addr->sa, MIN_SIZE(addr->len, sizeof(s->addr)));
	atomic_init(&s->refs, 1);
	return s;
}

static void server_state_unref(struct server_state *s, uint32_t workers)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	stats_blocks_free(s->stats, workers);
	free(s);
}

static struct pool_state *pool_state_new(const char *name, uint32_t workers)
{
	struct pool_state *p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name)) || !(p->stats = calloc(workers, sizeof(*p->stats))) ||
	    !(p->budget = aligned_alloc(alignof(struct budget_slot),
					workers * sizeof(struct budget_slot)))) {
		if (p) {
			free(p->name);
			free(p->stats);
		}
		free(p);
		return NULL;
	}
	memset(p->budget, 0, workers * sizeof(struct budget_slot));
	pthread_mutex_init(&p->lock, NULL);
	atomic_init(&p->refs, 1);
	return p;
}

static void pool_state_unref(struct pool_state *p, uint32_t workers)
{
	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p->name);
	free(p->budget);
	stats_blocks_free(p->stats, workers);
	free(p);
}

static struct tracked_state *tracked_state_new(const struct cfg_tracked *t, uint32_t workers)
{
	struct tracked_state *s = calloc(1, sizeof(*s));
	if (!s || !(s->site = strdup(t->site)) || (t->route && !(s->route = strdup(t->route))) ||
	    !(s->stats = calloc(workers, sizeof(*s->stats)))) {
		if (s) {
			free(s->site);
			free(s->route);
		}
		free(s);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	return s;
}

static void tracked_state_unref(struct tracked_state *s, uint32_t workers)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	stats_blocks_free(s->stats, workers);
	free(s->site);
	free(s->route);
	free(s);
}

static bool is_tracked(const struct tracked_state *s, const struct cfg_tracked *t)
{
	return !strcmp(s->site, t->site) &&
	       (s->route && t->route ? !strcmp(s->route, t->route) : s->route == t->route);
}

/* The state of t in g, looked for first at index at (where an unchanged config has it), or NULL. */
static struct tracked_state *find_tracked(const struct shared_gen *g, size_t at,
					  const struct cfg_tracked *t)
{
	if (!g)
		return NULL;
	if (at < g->cfg->ntracked && is_tracked(g->tracked[at], t))
		return g->tracked[at];
	for (size_t i = 0; i < g->cfg->ntracked; i++)
		if (is_tracked(g->tracked[i], t))
			return g->tracked[i];
	return NULL;
}

static int open_socket(const struct cfg_addr *a, char *err, size_t errlen)
{
	int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listener %s: socket: %s", a->text, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One socket per worker on the same port; the kernel spreads new connections over them. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (a->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Accepted sockets inherit it: no setsockopt per connection. Responses go out whole. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0 || listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "listener %s: %s", a->text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void listen_state_unref(struct listen_state *l, uint32_t workers)
{
	if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	for (uint32_t i = 0; i < workers; i++)
		if (l->fds[i] >= 0)
			close(l->fds[i]);
	free(l->fds);
	free(l);
}

/* A listener has all its sockets, bound before any is used, or none. */
static struct listen_state *listen_state_new(const struct cfg_addr *addr, uint32_t workers,
					     char *err, size_t errlen)
{
	struct listen_state *l = calloc(1, sizeof(*l));
	if (!l || !(l->fds = malloc(workers * sizeof(*l->fds)))) {
		free(l);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->addr = *addr;
	atomic_init(&l->refs, 1);
	for (uint32_t i = 0; i < workers; i++)
		l->fds[i] = -1;
	for (uint32_t i = 0; i < workers; i++) {
		if ((l->fds[i] = open_socket(addr, err, errlen)) < 0) {
			listen_state_unref(l, workers);
			return NULL;
		}
	}
	return l;
}

/* The state of a server of pool in g, looked for first at index at (where an unchanged pool has it). */
static struct server_state *find_server(const struct shared_gen *g, const char *pool, size_t at,
					const struct cfg_addr *addr)
{
	for (size_t i = 0; g && i < g->cfg->npools; i++) {
		if (strcmp(g->pools[i]->name, pool))
			continue;
		size_t n = g->cfg->pools[i].nservers;
		if (at < n && is_server(g->servers[i][at], addr))
			return g->servers[i][at];
		for (size_t k = 0; k < n; k++)
			if (is_server(g->servers[i][k], addr))
				return g->servers[i][k];
	}
	return NULL;
}

static struct pool_state *find_pool(const struct shared_gen *g, const char *name)
{
	for (size_t i = 0; g && i < g->cfg->npools; i++)
		if (!strcmp(g->pools[i]->name, name))
			return g->pools[i];
	return NULL;
}

static struct listen_state *find_listener(const struct shared_gen *g, const struct cfg_addr *addr)
{
	for (size_t i = 0; g && i < g->cfg->nlisteners; i++)
		if (config_addr_equal(&g->listeners[i]->addr, addr))
			return g->listeners[i];
	return NULL;
}

static void gen_free(struct shared_gen *g)
{
	for (size_t i = 0; g->pools && i < g->cfg->npools; i++) {
		pool_state_unref(g->pools[i], g->sh->workers);
		for (size_t k = 0; g->servers && g->servers[i] && k < g->cfg->pools[i].nservers; k++)
			server_state_unref(g->servers[i][k], g->sh->workers);
		if (g->servers)
			free(g->servers[i]);
	}
	for (size_t i = 0; g->listeners && i < g->cfg->nlisteners; i++)
		listen_state_unref(g->listeners[i], g->sh->workers);
	for (size_t i = 0; g->tracked && i < g->cfg->ntracked; i++)
		tracked_state_unref(g->tracked[i], g->sh->workers);
	free(g->tracked);
	free(g->pools);
	free(g->servers);
	free(g->listeners);
	config_unref(g->cfg);
	free(g);
}

struct shared_gen *shared_gen_build(struct shared *sh, struct config *cfg,
				    const struct shared_gen *prev, char *err, size_t errlen)
{
	struct shared_gen *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->sh = sh;
	g->cfg = config_ref(cfg);
	size_t np = cfg->npools ? cfg->npools : 1, nl = cfg->nlisteners ? cfg->nlisteners : 1;
	if (!(g->pools = calloc(np, sizeof(*g->pools))) ||
	    !(g->servers = calloc(np, sizeof(*g->servers))) ||
	    !(g->listeners = calloc(nl, sizeof(*g->listeners))) ||
	    !(g->tracked = calloc(cfg->ntracked + 1, sizeof(*g->tracked))))
		goto oom;
	for (size_t i = 0; i < cfg->ntracked; i++) {
		struct tracked_state *t = find_tracked(prev, i, &cfg->tracked[i]);
		if (t)
			atomic_fetch_add(&t->refs, 1);
		else if (!(t = tracked_state_new(&cfg->tracked[i], sh->workers)))
			goto oom;
		g->tracked[i] = t;
	}
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *cp = &cfg->pools[i];
		struct pool_state *p = find_pool(prev, cp->name);
		if (p)
			atomic_fetch_add(&p->refs, 1);
		else if (!(p = pool_state_new(cp->name, sh->workers)))
			goto oom;
		g->pools[i] = p;
		if (!(g->servers[i] = calloc(cp->nservers ? cp->nservers : 1, sizeof(**g->servers))))
			goto oom;
		for (size_t k = 0; k < cp->nservers; k++) {
			struct server_state *s = find_server(prev, cp->name, k, &cp->servers[k].addr);
			bool found = s;
			if (s)
				atomic_fetch_add(&s->refs, 1);
			else if (!(s = server_state_new(&cp->servers[k].addr, sh->workers)))
				goto oom;
			/*
			 * A reload is what the file says: what the admin API changed is
			 * undone. A snapshot the API derived keeps it.
			 */
			if (!found || !cfg->base) {
				atomic_store(&s->admin, cp->servers[k].drain ? SERVER_DRAIN : SERVER_READY);
				atomic_store(&s->weight, 0);
			}
			g->servers[i][k] = s;
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listen_state *l = find_listener(prev, &cfg->listeners[i].addr);
		if (l)
			atomic_fetch_add(&l->refs, 1);
		else if (!(l = listen_state_new(&cfg->listeners[i].addr, sh->workers, err, errlen)))
			goto fail;
		g->listeners[i] = l;
	}
	return g;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	gen_free(g);
	return NULL;
}

struct shared_gen *shared_gen_ref(struct shared_gen *g)
{
	atomic_fetch_add(&g->refs, 1);
	return g;
}

void shared_gen_unref(struct shared_gen *g)
{
	if (g && atomic_fetch_sub(&g->refs, 1) == 1)
		gen_free(g);
}
