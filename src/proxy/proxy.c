#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "http/http.h"
#include "proxy/front.h"
#include "tls/tls.h"

/* How long to wait before accepting again after running out of file descriptors. */
#define ACCEPT_RETRY_MS 100
/* Idle buffers kept for reuse per worker. */
#define BUF_POOL_KEEP 1024
/* Lines about clients' mistakes per second and worker; the rest are counted. */
#define CLIENT_ERROR_LINES 10

static uint64_t bit_of(const struct proxy *px) { return UINT64_C(1) << px->index; }

/* --- generations --- */

static struct generation *gen_create(struct proxy *px, struct shared_gen *sg)
{
	struct generation *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (upstream_init(&g->up, px->loop, sg, px->index) < 0) {
		free(g);
		return NULL;
	}
	g->cfg = sg->cfg;
	g->hook = g->cfg->has_hook ? config_hook(g->cfg, px->index) : NULL;
	g->refs = 1;
	list_insert_tail(&px->gens, &g->link);
	return g;
}

struct generation *proxy_gen_get(struct proxy *px)
{
	px->gen->refs++;
	return px->gen;
}

void proxy_gen_put(struct generation *g)
{
	if (!g || --g->refs)
		return;
	list_remove(&g->link);
	upstream_destroy(&g->up);
	free(g);
}

/* --- listeners --- */

/*
 * A slot of the process's and the listener's max_connections. Without one,
 * this worker says it waits: a session that ends in another worker wakes it.
 */
static bool claim_slot(struct proxy *px, struct listener *l)
{
	struct shared *sh = px->sh;
	uint32_t max = px->gen->cfg->limits.max_connections;
	uint32_t lmax = l->cfg->max_connections ? l->cfg->max_connections : UINT32_MAX;
	for (int again = 0; again < 2; again++) {
		if (slot_claim(&sh->clients, max)) {
			if (slot_claim(&l->st->clients, lmax))
				return true;
			atomic_fetch_sub(&sh->clients, 1);
		}
		/* Said, then looked again: a session ending meanwhile either sees the bit or left room. */
		atomic_fetch_or(&sh->accept_full, bit_of(px));
	}
	return false;
}

static void release_slot(struct proxy *px, struct listener *l)
{
	atomic_fetch_sub(&l->st->clients, 1);
	atomic_fetch_sub(&px->sh->clients, 1);
	uint64_t waiting = atomic_load(&px->sh->accept_full);
	if (waiting & ~bit_of(px))
		shared_kick(px->sh, waiting, px->index);
}

static void listener_put(struct listener *l)
{
	if (--l->refs)
		return;
	if (l->fd >= 0)
		close(l->fd);
	listen_state_unref(l->st, l->px->sh->workers);
	/*
	 * Later: an event of it may still wait in this turn's batch (a
	 * connection that came with the stop or reload that closed it).
	 */
	loop_free_later(l->px->loop, l);
}

/* A connection accepted on l is over (or never became a session): its slot and reference go. */
static void connection_ended(struct proxy *px, struct listener *l)
{
	stat_add(&px->sh->stats[px->index].clients_closed, 1);
	release_slot(px, l);
	listener_put(l);
	if (px->draining) {
		if (px->nsessions == 0)
			px->on_drained(px);
		return;
	}
	/* Not from here: we may be deep inside another session's code. */
	if (!timer_armed(&px->accept_retry))
		for (struct listener *k = px->listeners; k; k = k->next)
			if (k->full)
				timer_arm(px->loop, &px->accept_retry, 0);
}

/* A session of front on a, holding the slot and listener reference the accept took for it. */
static void start_session(struct proxy *px, struct listener *l, const struct front_ops *front,
			  const struct accepted *a)
{
	int rc = front->start(px, l, a);
	if (rc < 0) {
		log_error("listener %s: cannot start a session: %s", l->cfg ? l->cfg->addr.text : "(removed)",
			  strerror(-rc));
		connection_ended(px, l);
	}
}

static void accept_ready(struct listener *l)
{
	struct proxy *px = l->px;
	while (!px->draining && l->fd >= 0) {
		/* The rest wait in the kernel's backlog until a session ends. */
		if (!claim_slot(px, l)) {
			l->full = true;
			return;
		}
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			release_slot(px, l);
			if (e == EINTR || e == ECONNABORTED)
				continue;
			if (e == EAGAIN || e == EWOULDBLOCK) {
				l->full = false;
				return;
			}
			if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
				log_error("listener %s: accept: %s; pausing accepts", l->cfg->addr.text,
					  strerror(e));
				l->full = true;
				timer_arm(px->loop, &px->accept_retry, ACCEPT_RETRY_MS);
				return;
			}
			log_error("listener %s: accept: %s", l->cfg->addr.text, strerror(e));
			return;
		}
		px->accepted++;
		stat_add(&px->sh->stats[px->index].clients_opened, 1);
		l->refs++;
		struct accepted a = {fd, NULL, (struct sockaddr *)&peer, loop_now_ms(px->loop)};
		start_session(px, l, l->cfg->tls ? &tls_handshake_phase : l->front, &a);
	}
}

static void listener_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	accept_ready(container_of(h, struct listener, io));
}

/* Takes this worker's socket of st. */
static struct listener *listener_open(struct proxy *px, struct listen_state *st,
				      const struct cfg_listener *cl, char *err, size_t errlen)
{
	const struct front_ops *front = front_find(cl->protocol);
	if (!front) {
		snprintf(err, errlen, "listener %s: no front speaks %s", cl->addr.text, cl->protocol);
		return NULL;
	}
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->px = px;
	l->front = front;
	l->st = st;
	l->cfg = cl;
	l->refs = 1;
	l->io.on_event = listener_on_event;
	l->fd = st->fds[px->index];
	int rc = loop_add_fd(px->loop, l->fd, EPOLLIN, &l->io);
	if (rc < 0) {
		snprintf(err, errlen, "listener %s: epoll: %s", cl->addr.text, strerror(-rc));
		free(l);
		return NULL;
	}
	st->fds[px->index] = -1; /* ours now */
	atomic_fetch_add(&st->refs, 1);
	return l;
}

static void listener_log(const struct listener *l, const struct config *cfg)
{
	char tls[64] = "";
	if (l->cfg->tls)
		snprintf(tls, sizeof(tls), " (TLS, %zu certificate(s))", tls_server_ncerts(l->cfg->tls));
	if (l->cfg->routed)
		log_info("listening on %s%s -> sites", l->cfg->addr.text, tls);
	else
		log_info("listening on %s%s -> pool \"%s\"", l->cfg->addr.text, tls,
			 cfg->pools[l->cfg->pool].name);
}

/* Stops accepting on l; sessions it accepted keep it until they end. */
static void listener_close(struct listener *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	l->cfg = NULL;
	listener_put(l);
}

static void close_listeners(struct proxy *px)
{
	while (px->listeners) {
		struct listener *next = px->listeners->next;
		listener_close(px->listeners);
		px->listeners = next;
	}
}

static void resume_accepting(struct proxy *px)
{
	for (struct listener *l = px->listeners; l; l = l->next)
		if (l->full)
			accept_ready(l);
}

static void accept_retry_fired(struct timer *t)
{
	resume_accepting(container_of(t, struct proxy, accept_retry));
}

/*
 * Listeners sg no longer names close; those it keeps read its config; new
 * ones take this worker's socket. What cannot be set up (out of memory)
 * is logged, and the rest goes on.
 */
static void adopt_listeners(struct proxy *px, struct shared_gen *sg)
{
	const struct config *cfg = sg->cfg;
	struct listener *old = px->listeners;
	px->listeners = NULL;
	while (old) {
		struct listener *l = old;
		old = l->next;
		bool keep = false;
		for (size_t i = 0; i < cfg->nlisteners && !keep; i++)
			keep = sg->listeners[i] == l->st;
		if (keep) {
			l->next = px->listeners;
			px->listeners = l;
		} else {
			if (px->index == 0) /* once, not once per worker */
				log_info("listener %s closed", l->cfg->addr.text);
			listener_close(l);
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listener *l = px->listeners;
		while (l && l->st != sg->listeners[i])
			l = l->next;
		if (l) {
			l->cfg = &cfg->listeners[i];
			continue;
		}
		char err[256];
		if (!(l = listener_open(px, sg->listeners[i], &cfg->listeners[i], err, sizeof(err)))) {
			log_error("%s", err);
			continue;
		}
		l->next = px->listeners;
		px->listeners = l;
		if (px->index == 0)
			listener_log(l, cfg);
	}
}

/* --- sessions --- */

void proxy_session_open(struct proxy *px, struct session *s, struct listener *l,
			const struct front_ops *front, struct conn *conn, const struct sockaddr *peer)
{
	s->front = front;
	s->px = px;
	s->listener = l;
	s->conn = conn;
	if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
		inet_ntop(AF_INET6, &in6->sin6_addr, s->ip, sizeof(s->ip));
		snprintf(s->addr, sizeof(s->addr), "[%s]:%u", s->ip, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)peer;
		inet_ntop(AF_INET, &in4->sin_addr, s->ip, sizeof(s->ip));
		snprintf(s->addr, sizeof(s->addr), "%s:%u", s->ip, ntohs(in4->sin_port));
	}
	list_insert_tail(&px->sessions, &s->link);
	px->nsessions++;
}

/* s is no longer one of px's sessions; its slot and listener reference are not given back here. */
static void session_leave(struct session *s)
{
	list_remove(&s->link);
	s->px->nsessions--;
}

void proxy_session_pass(struct session *s, const struct front_ops *front, const struct accepted *a)
{
	session_leave(s);
	start_session(s->px, s->listener, front, a);
}

void proxy_session_close(struct session *s)
{
	session_leave(s);
	connection_ended(s->px, s->listener);
}

void proxy_drain(struct proxy *px)
{
	if (px->draining)
		return;
	px->draining = true;
	close_listeners(px);
	/* Otherwise the last session to close says so (connection_ended()). */
	if (px->nsessions == 0) {
		px->on_drained(px);
		return;
	}
	struct list *it = px->sessions.next;
	while (it != &px->sessions) {
		struct session *s = container_of(it, struct session, link);
		it = it->next;
		/* Draining may close s; the next one is already in hand. */
		s->front->drain(s);
	}
}

void proxy_close_sessions(struct proxy *px)
{
	while (!list_empty(&px->sessions)) {
		struct session *s = container_of(px->sessions.next, struct session, link);
		s->front->close(s);
	}
}

void proxy_kicked(struct proxy *px)
{
	resume_accepting(px);
	for (struct list *l = px->gens.next; l != &px->gens; l = l->next)
		upstream_dispatch_all(&container_of(l, struct generation, link)->up);
}

/* --- adopting a generation --- */

static void apply_logging(struct proxy *px, const struct config *cfg)
{
	/* Reopened on every reload, so that a rotated log file is let go. */
	access_log_close(&px->access_log);
	int rc = access_log_open(&px->access_log, cfg->access_log,
				 cfg->access_log_format == ACCESS_LOG_JSON);
	if (rc < 0)
		log_error("access_log %s: %s; access logging is off", cfg->access_log, strerror(-rc));
}

int proxy_adopt(struct proxy *px, struct shared_gen *sg)
{
	struct generation *g = gen_create(px, sg);
	if (!g)
		return -ENOMEM;
	adopt_listeners(px, sg);
	upstream_adopt_idle(&g->up, &px->gen->up);
	proxy_gen_put(px->gen);
	px->gen = g;
	apply_logging(px, sg->cfg);
	loop_set_busy_poll(px->loop, sg->cfg->limits.busy_poll_us);
	resume_accepting(px);
	for (struct list *it = px->sessions.next, *next; it != &px->sessions; it = next) {
		next = it->next; /* a session may end in its call */
		struct session *s = container_of(it, struct session, link);
		if (s->front->adopted)
			s->front->adopted(s);
	}
	return 0;
}

/* --- life --- */

static void flush_access_log(struct loop_hook *hook)
{
	struct proxy *px = container_of(hook, struct proxy, flush_hook);
	if (px->access_log.len)
		access_log_flush(&px->access_log);
}

bool proxy_client_error(struct proxy *px, int kind)
{
	stat_add(&px->sh->stats[px->index].client_errors[kind], 1);
	if (log_limit_allow(&px->client_errors, loop_now_ms(px->loop), CLIENT_ERROR_LINES,
			    "client errors"))
		return true;
	/* The count is said when this second is over, whether more come or not. */
	if (!timer_armed(&px->client_errors_said))
		timer_arm_at(px->loop, &px->client_errors_said, px->client_errors.window_ms + 1000);
	return false;
}

static void client_errors_said_fired(struct timer *t)
{
	struct proxy *px = container_of(t, struct proxy, client_errors_said);
	log_limit_flush(&px->client_errors, "client errors");
}

int proxy_init(struct proxy *px, struct shared *sh, uint32_t index, struct loop *loop,
	       struct shared_gen *sg, char *err, size_t errlen)
{
	const struct config *cfg = sg->cfg;
	px->index = index;
	px->sh = sh;
	px->loop = loop;
	list_init(&px->sessions);
	list_init(&px->gens);
	px->accept_retry.on_expire = accept_retry_fired;
	px->client_errors_said.on_expire = client_errors_said_fired;
	px->access_log.fd = -1;
	buf_pool_init(&px->bufs, cfg->limits.buffer_size, BUF_POOL_KEEP);
	buf_pool_init(&px->msgs, sizeof(struct http_msg), BUF_POOL_KEEP);
	px->flush_hook.run = flush_access_log;
	loop_add_hook(loop, &px->flush_hook);
	int rc = access_log_open(&px->access_log, cfg->access_log,
				 cfg->access_log_format == ACCESS_LOG_JSON);
	if (rc < 0) {
		snprintf(err, errlen, "access_log %s: %s", cfg->access_log, strerror(-rc));
		return -1;
	}
	if (!(px->gen = gen_create(px, sg))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = cfg->nlisteners; i-- > 0;) {
		struct listener *l = listener_open(px, sg->listeners[i], &cfg->listeners[i], err, errlen);
		if (!l)
			return -1;
		l->next = px->listeners;
		px->listeners = l;
	}
	if (index == 0)
		for (struct listener *l = px->listeners; l; l = l->next)
			listener_log(l, cfg);
	loop_set_busy_poll(loop, cfg->limits.busy_poll_us);
	return 0;
}

void proxy_destroy(struct proxy *px)
{
	if (!px->loop) /* proxy_init() never ran */
		return;
	proxy_close_sessions(px);
	close_listeners(px);
	timer_cancel(px->loop, &px->accept_retry);
	timer_cancel(px->loop, &px->client_errors_said);
	log_limit_flush(&px->client_errors, "client errors");
	proxy_gen_put(px->gen);
	px->gen = NULL;
	access_log_close(&px->access_log);
	buf_pool_destroy(&px->bufs);
	buf_pool_destroy(&px->txns);
	buf_pool_destroy(&px->msgs);
}
