#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "http.h"
#include "http1.h"
#include "tls.h"

/* How long to wait before accepting again after running out of file descriptors. */
#define ACCEPT_RETRY_MS 100
/* Idle buffers kept for reuse per worker. */
#define BUF_POOL_KEEP 1024

/* --- generations --- */

static struct generation *gen_create(struct worker *w, struct config *cfg)
{
	struct generation *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (upstream_init(&g->up, w->loop, cfg) < 0) {
		free(g);
		return NULL;
	}
	if (health_start(&g->up) < 0) {
		upstream_destroy(&g->up);
		free(g);
		return NULL;
	}
	g->cfg = config_ref(cfg);
	g->refs = 1;
	return g;
}

struct generation *worker_gen_get(struct worker *w)
{
	w->gen->refs++;
	return w->gen;
}

void worker_gen_put(struct generation *g)
{
	if (!g || --g->refs)
		return;
	upstream_destroy(&g->up);
	config_unref(g->cfg);
	free(g);
}

/* --- listeners --- */

static int open_listener(const struct cfg_listener *l, char *err, size_t errlen)
{
	int fd = socket(l->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listener %s: socket: %s", l->addr.text, strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One socket per worker thread on the same port, balanced by the kernel. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (l->addr.sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Accepted sockets inherit it: no setsockopt per connection. Responses go out whole. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr.sa, l->addr.len) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "listener %s: %s", l->addr.text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void accept_ready(struct listener *l)
{
	struct worker *w = l->w;
	while (!w->draining && l->fd >= 0) {
		/* The rest wait in the kernel's backlog until a session ends. A listener's
		 * references are the worker's and one per session. */
		if (w->nclients >= w->gen->cfg->limits.max_connections ||
		    (l->cfg->max_connections && l->refs - 1 >= l->cfg->max_connections)) {
			l->full = true;
			return;
		}
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				l->full = false;
				return;
			}
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_error("listener %s: accept: %s; pausing accepts", l->cfg->addr.text,
					  strerror(errno));
				l->full = true;
				timer_arm(w->loop, &w->accept_retry, ACCEPT_RETRY_MS);
				return;
			}
			log_error("listener %s: accept: %s", l->cfg->addr.text, strerror(errno));
			return;
		}
		int rc = http1_accept(w, fd, (struct sockaddr *)&peer, l);
		if (rc < 0)
			log_error("listener %s: cannot start a session: %s", l->cfg->addr.text,
				  strerror(-rc));
	}
}

static void listener_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	accept_ready(container_of(h, struct listener, io));
}

static struct listener *listener_open(struct worker *w, const struct cfg_listener *cl, char *err,
				      size_t errlen)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->w = w;
	l->cfg = cl;
	l->refs = 1;
	l->io.on_event = listener_on_event;
	l->fd = open_listener(cl, err, errlen);
	if (l->fd < 0) {
		free(l);
		return NULL;
	}
	int rc = loop_add_fd(w->loop, l->fd, EPOLLIN, &l->io);
	if (rc < 0) {
		snprintf(err, errlen, "listener %s: epoll: %s", cl->addr.text, strerror(-rc));
		close(l->fd);
		free(l);
		return NULL;
	}
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

void listener_put(struct listener *l)
{
	if (--l->refs)
		return;
	if (l->fd >= 0)
		close(l->fd);
	free(l);
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

/* Closes every listener of a list linked by next. */
static void close_list(struct listener *l)
{
	while (l) {
		struct listener *next = l->next;
		listener_close(l);
		l = next;
	}
}

static void close_listeners(struct worker *w)
{
	close_list(w->listeners);
	w->listeners = NULL;
}

static bool same_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static void resume_accepting(struct worker *w)
{
	for (struct listener *l = w->listeners; l; l = l->next)
		if (l->full)
			accept_ready(l);
}

static void accept_retry_fired(struct timer *t)
{
	resume_accepting(container_of(t, struct worker, accept_retry));
}

/* --- stopping --- */

static void stop_if_done(struct worker *w)
{
	if (w->draining && w->nclients == 0)
		loop_stop(w->loop);
}

void worker_client_closed(struct worker *w)
{
	if (w->draining) {
		stop_if_done(w);
		return;
	}
	/* Not from here: we may be deep inside another session's code. */
	if (!timer_armed(&w->accept_retry))
		for (struct listener *l = w->listeners; l; l = l->next)
			if (l->full)
				timer_arm(w->loop, &w->accept_retry, 0);
}

static void shutdown_deadline_fired(struct timer *t)
{
	struct worker *w = container_of(t, struct worker, shutdown_deadline);
	log_warn("shutdown deadline reached: closing %u connection(s) still busy", w->nclients);
	http1_close_all(w);
	loop_stop(w->loop);
}

void worker_shutdown(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	close_listeners(w);
	uint32_t deadline = w->gen->cfg->timeouts.shutdown_ms;
	log_info("stopping: no new connections; %u open, waiting up to %u ms for them", w->nclients,
		 deadline);
	http1_drain(w);
	timer_arm(w->loop, &w->shutdown_deadline, deadline);
	stop_if_done(w);
}

/* --- reload --- */

static void apply_logging(struct worker *w, const struct config *cfg)
{
	log_set_level((enum log_level)cfg->log_level);
	/* Reopened on every reload, so that a rotated log file is let go. */
	access_log_close(&w->access_log);
	int rc = access_log_open(&w->access_log, cfg->access_log);
	if (rc < 0)
		log_error("access_log %s: %s; access logging is off", cfg->access_log, strerror(-rc));
}

int worker_reload(struct worker *w, struct config *cfg, char *err, size_t errlen)
{
	if (cfg->limits.max_header_size > w->bufs.size) {
		snprintf(err, errlen,
			 "max_header_size %u exceeds the running buffer_size %zu (buffer_size "
			 "changes need a restart)",
			 cfg->limits.max_header_size, w->bufs.size);
		return -1;
	}
	if (cfg->limits.buffer_size != w->bufs.size)
		log_warn("reload: buffer_size changes need a restart; keeping %zu", w->bufs.size);

	/* Open what is new first: if one fails, nothing has changed yet. */
	struct listener *opened = NULL;
	struct listener **kept = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*kept));
	if (!kept) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		for (struct listener *l = w->listeners; l && !kept[i]; l = l->next)
			if (same_addr(&l->cfg->addr, &cfg->listeners[i].addr))
				kept[i] = l;
		if (kept[i])
			continue;
		struct listener *l = listener_open(w, &cfg->listeners[i], err, errlen);
		if (!l) {
			close_list(opened);
			free(kept);
			return -1;
		}
		l->next = opened;
		opened = l;
		kept[i] = l;
	}
	struct generation *g = gen_create(w, cfg);
	if (!g) {
		snprintf(err, errlen, "out of memory");
		close_list(opened);
		free(kept);
		return -1;
	}

	/* Listeners the new config does not name stop; the others now read it. */
	struct listener *old = w->listeners;
	w->listeners = NULL;
	while (old) {
		struct listener *l = old;
		old = l->next;
		bool keep = false;
		for (size_t i = 0; i < cfg->nlisteners; i++)
			keep |= kept[i] == l;
		if (!keep) {
			log_info("listener %s closed", l->cfg->addr.text);
			listener_close(l);
		}
	}
	for (size_t i = cfg->nlisteners; i-- > 0;) {
		struct listener *l = kept[i];
		bool is_new = l->cfg == &cfg->listeners[i];
		l->cfg = &cfg->listeners[i];
		l->next = w->listeners;
		w->listeners = l;
		if (is_new)
			listener_log(l, cfg);
	}
	free(kept);

	upstream_adopt_idle(&g->up, &w->gen->up);
	/* The old generation lives on for its transactions, but checks are the new one's job. */
	health_stop(&w->gen->up);
	struct generation *prev = w->gen;
	w->gen = g;
	worker_gen_put(prev);
	apply_logging(w, cfg);
	config_log_warnings(cfg);
	/* A new ticket key; tickets sealed with the last two still resume. */
	tls_rotate_ticket_keys();
	loop_set_busy_poll(w->loop, cfg->limits.busy_poll_us);
	log_info("configuration reloaded: %zu listener(s), %zu pool(s), %zu site(s)", cfg->nlisteners,
		 cfg->npools, cfg->router.nsites);
	resume_accepting(w);
	return 0;
}

static void reload_from_file(struct worker *w)
{
	char err[1024];
	struct config *cfg = config_load(w->config_path, err, sizeof(err));
	if (!cfg) {
		log_error("reload failed, the running configuration stays: %s", err);
		return;
	}
	if (worker_reload(w, cfg, err, sizeof(err)) < 0)
		log_error("reload failed, the running configuration stays: %s", err);
	config_unref(cfg);
}

static void signal_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	struct worker *w = container_of(h, struct worker, sig_io);
	struct signalfd_siginfo si;
	while (read(w->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("%s received", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			worker_shutdown(w);
			break;
		case SIGHUP:
			log_info("SIGHUP received: reloading %s",
				 w->config_path ? w->config_path : "the default config");
			if (!w->draining)
				reload_from_file(w);
			break;
		default:
			break;
		}
	}
}

static void flush_access_log(struct loop_hook *hook)
{
	struct worker *w = container_of(hook, struct worker, flush_hook);
	if (w->access_log.len)
		access_log_flush(&w->access_log);
}

int worker_init(struct worker *w, struct config *cfg, const char *config_path, int sigfd, char *err,
		size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->sigfd = sigfd;
	w->config_path = config_path;
	list_init(&w->clients);
	w->shutdown_deadline.on_expire = shutdown_deadline_fired;
	w->accept_retry.on_expire = accept_retry_fired;
	w->access_log.fd = -1;
	w->loop = loop_create();
	if (!w->loop) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	buf_pool_init(&w->bufs, cfg->limits.buffer_size, BUF_POOL_KEEP);
	buf_pool_init(&w->txns, http1_txn_size(), BUF_POOL_KEEP);
	buf_pool_init(&w->msgs, sizeof(struct http_msg), BUF_POOL_KEEP);
	w->gen = gen_create(w, cfg);
	if (!w->gen) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	loop_set_busy_poll(w->loop, cfg->limits.busy_poll_us);
	int rc = access_log_open(&w->access_log, cfg->access_log);
	if (rc < 0) {
		snprintf(err, errlen, "access_log %s: %s", cfg->access_log, strerror(-rc));
		return -1;
	}
	w->flush_hook.run = flush_access_log;
	loop_add_hook(w->loop, &w->flush_hook);
	for (size_t i = cfg->nlisteners; i-- > 0;) {
		struct listener *l = listener_open(w, &cfg->listeners[i], err, errlen);
		if (!l)
			return -1;
		l->next = w->listeners;
		w->listeners = l;
	}
	for (struct listener *l = w->listeners; l; l = l->next)
		listener_log(l, cfg);
	if (sigfd >= 0) {
		w->sig_io.on_event = signal_on_event;
		rc = loop_add_fd(w->loop, sigfd, EPOLLIN, &w->sig_io);
		if (rc < 0) {
			snprintf(err, errlen, "signalfd: epoll: %s", strerror(-rc));
			return -1;
		}
	}
	return 0;
}

int worker_run(struct worker *w) { return loop_run(w->loop); }

void worker_destroy(struct worker *w)
{
	if (w->loop) {
		http1_close_all(w);
		close_listeners(w);
		timer_cancel(w->loop, &w->shutdown_deadline);
		timer_cancel(w->loop, &w->accept_retry);
	}
	worker_gen_put(w->gen);
	access_log_close(&w->access_log);
	loop_destroy(w->loop); /* frees what the closes above left for later */
	buf_pool_destroy(&w->bufs);
	buf_pool_destroy(&w->txns);
	buf_pool_destroy(&w->msgs);
	memset(w, 0, sizeof(*w));
}
