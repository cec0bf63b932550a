#include "control/worker.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "http/http.h"
#include "proxy/http1.h"
#include "tls/tls.h"

/* How long to wait before accepting again after running out of file descriptors. */
#define ACCEPT_RETRY_MS 100
/* Idle buffers kept for reuse per worker. */
#define BUF_POOL_KEEP 1024

static uint64_t bit_of(const struct worker *w) { return UINT64_C(1) << w->index; }

/* --- generations --- */

static struct generation *gen_create(struct worker *w, struct shared_gen *sg)
{
	struct generation *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	if (upstream_init(&g->up, w->loop, sg, w->index) < 0) {
		free(g);
		return NULL;
	}
	g->cfg = sg->cfg;
	g->hook = g->cfg->has_hook ? config_hook(g->cfg, w->index) : NULL;
	g->refs = 1;
	list_insert_tail(&w->gens, &g->link);
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
	list_remove(&g->link);
	upstream_destroy(&g->up);
	free(g);
}

/* --- listeners --- */


/*
 * A slot of the process's and the listener's max_connections. Without one,
 * this worker says it waits: a session that ends in another worker wakes it.
 */
static bool claim_client(struct worker *w, struct listener *l)
{
	struct shared *sh = w->sh;
	uint32_t max = w->gen->cfg->limits.max_connections;
	uint32_t lmax = l->cfg->max_connections ? l->cfg->max_connections : UINT32_MAX;
	for (int again = 0; again < 2; again++) {
		if (slot_claim(&sh->clients, max)) {
			if (slot_claim(&l->st->clients, lmax))
				return true;
			atomic_fetch_sub(&sh->clients, 1);
		}
		/* Said, then looked again: a session ending meanwhile either sees the bit or left room. */
		atomic_fetch_or(&sh->accept_full, bit_of(w));
	}
	return false;
}

static void release_client(struct worker *w, struct listener *l)
{
	atomic_fetch_sub(&l->st->clients, 1);
	atomic_fetch_sub(&w->sh->clients, 1);
	uint64_t waiting = atomic_load(&w->sh->accept_full);
	if (waiting & ~bit_of(w))
		shared_kick(w->sh, waiting, w->index);
}

static void accept_ready(struct listener *l)
{
	struct worker *w = l->w;
	while (!w->draining && l->fd >= 0) {
		/* The rest wait in the kernel's backlog until a session ends. */
		if (!claim_client(w, l)) {
			l->full = true;
			return;
		}
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int e = errno;
			release_client(w, l);
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
				timer_arm(w->loop, &w->accept_retry, ACCEPT_RETRY_MS);
				return;
			}
			log_error("listener %s: accept: %s", l->cfg->addr.text, strerror(e));
			return;
		}
		w->accepted++;
		l->refs++;
		int rc = http1_accept(w, fd, (struct sockaddr *)&peer, l);
		if (rc < 0) {
			log_error("listener %s: cannot start a session: %s", l->cfg->addr.text,
				  strerror(-rc));
			worker_client_closed(w, l);
		}
	}
}

static void listener_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	accept_ready(container_of(h, struct listener, io));
}

/* Takes this worker's socket of st. */
static struct listener *listener_open(struct worker *w, struct listen_state *st,
				      const struct cfg_listener *cl, char *err, size_t errlen)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->w = w;
	l->st = st;
	l->cfg = cl;
	l->refs = 1;
	l->io.on_event = listener_on_event;
	l->fd = st->fds[w->index];
	int rc = loop_add_fd(w->loop, l->fd, EPOLLIN, &l->io);
	if (rc < 0) {
		snprintf(err, errlen, "listener %s: epoll: %s", cl->addr.text, strerror(-rc));
		free(l);
		return NULL;
	}
	st->fds[w->index] = -1; /* ours now */
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

static void listener_put(struct listener *l)
{
	if (--l->refs)
		return;
	if (l->fd >= 0)
		close(l->fd);
	listen_state_unref(l->st, l->w->sh->workers);
	/*
	 * Later: an event of it may still wait in this turn's batch (a
	 * connection that came with the stop or reload that closed it).
	 */
	loop_free_later(l->w->loop, l);
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

static void close_listeners(struct worker *w)
{
	while (w->listeners) {
		struct listener *next = w->listeners->next;
		listener_close(w->listeners);
		w->listeners = next;
	}
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

void worker_client_closed(struct worker *w, struct listener *l)
{
	release_client(w, l);
	listener_put(l);
	if (w->draining) {
		stop_if_done(w);
		return;
	}
	/* Not from here: we may be deep inside another session's code. */
	if (!timer_armed(&w->accept_retry))
		for (struct listener *k = w->listeners; k; k = k->next)
			if (k->full)
				timer_arm(w->loop, &w->accept_retry, 0);
}

static void shutdown_deadline_fired(struct timer *t)
{
	struct worker *w = container_of(t, struct worker, shutdown_deadline);
	log_warn("shutdown deadline reached: closing %u connection(s) still busy", w->nclients);
	http1_close_all(w);
	loop_stop(w->loop);
}

static void worker_shutdown(struct worker *w)
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

/* --- adopting a generation --- */

static void apply_logging(struct worker *w, const struct config *cfg)
{
	/* Reopened on every reload, so that a rotated log file is let go. */
	access_log_close(&w->access_log);
	int rc = access_log_open(&w->access_log, cfg->access_log,
			     cfg->access_log_format == ACCESS_LOG_JSON);
	if (rc < 0)
		log_error("access_log %s: %s; access logging is off", cfg->access_log, strerror(-rc));
}

/*
 * Listeners sg no longer names close; those it keeps read its config; new
 * ones take this worker's socket. What cannot be set up (out of memory)
 * is logged, and the rest goes on.
 */
static void adopt_listeners(struct worker *w, struct shared_gen *sg)
{
	const struct config *cfg = sg->cfg;
	struct listener *old = w->listeners;
	w->listeners = NULL;
	while (old) {
		struct listener *l = old;
		old = l->next;
		bool keep = false;
		for (size_t i = 0; i < cfg->nlisteners && !keep; i++)
			keep = sg->listeners[i] == l->st;
		if (keep) {
			l->next = w->listeners;
			w->listeners = l;
		} else {
			if (w->index == 0) /* once, not once per worker */
				log_info("listener %s closed", l->cfg->addr.text);
			listener_close(l);
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listener *l = w->listeners;
		while (l && l->st != sg->listeners[i])
			l = l->next;
		if (l) {
			l->cfg = &cfg->listeners[i];
			continue;
		}
		char err[256];
		if (!(l = listener_open(w, sg->listeners[i], &cfg->listeners[i], err, sizeof(err)))) {
			log_error("%s", err);
			continue;
		}
		l->next = w->listeners;
		w->listeners = l;
		if (w->index == 0)
			listener_log(l, cfg);
	}
}

static int adopt(struct worker *w, struct shared_gen *sg)
{
	struct generation *g = gen_create(w, sg);
	if (!g)
		return -ENOMEM;
	adopt_listeners(w, sg);
	if (w->gen) {
		upstream_adopt_idle(&g->up, &w->gen->up);
		worker_gen_put(w->gen);
	}
	w->gen = g;
	apply_logging(w, sg->cfg);
	loop_set_busy_poll(w->loop, sg->cfg->limits.busy_poll_us);
	resume_accepting(w);
	return 0;
}

/* --- the mailbox and kicks --- */

static void mail_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	struct worker *w = container_of(h, struct worker, mail_io);
	uint64_t n;
	ssize_t r = read(w->mail_fd, &n, sizeof(n));
	(void)r;
	pthread_mutex_lock(&w->mail_lock);
	struct shared_gen *sg = w->mail_gen;
	bool stop = w->mail_stop;
	w->mail_gen = NULL;
	pthread_mutex_unlock(&w->mail_lock);
	if (sg) {
		if (!w->draining && adopt(w, sg) < 0)
			log_error("reload: out of memory; this worker keeps the previous configuration");
		shared_gen_unref(sg);
	}
	if (stop)
		worker_shutdown(w);
}

static void kick_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	struct worker *w = container_of(h, struct worker, kick_io);
	uint64_t n;
	ssize_t r = read(w->sh->kick[w->index], &n, sizeof(n));
	(void)r;
	atomic_fetch_and(&w->sh->accept_full, ~bit_of(w));
	resume_accepting(w);
	for (struct list *l = w->gens.next; l != &w->gens; l = l->next)
		upstream_dispatch_all(&container_of(l, struct generation, link)->up);
}

static void post(struct worker *w)
{
	uint64_t one = 1;
	ssize_t n = write(w->mail_fd, &one, sizeof(one));
	(void)n;
}

void worker_post_gen(struct worker *w, struct shared_gen *sg)
{
	pthread_mutex_lock(&w->mail_lock);
	shared_gen_unref(w->mail_gen); /* one not adopted yet is overtaken by this one */
	w->mail_gen = shared_gen_ref(sg);
	pthread_mutex_unlock(&w->mail_lock);
	post(w);
}

void worker_post_stop(struct worker *w)
{
	pthread_mutex_lock(&w->mail_lock);
	w->mail_stop = true;
	pthread_mutex_unlock(&w->mail_lock);
	post(w);
}

/* --- life --- */

static void flush_access_log(struct loop_hook *hook)
{
	struct worker *w = container_of(hook, struct worker, flush_hook);
	if (w->access_log.len)
		access_log_flush(&w->access_log);
}

int worker_init(struct worker *w, struct shared *sh, uint32_t index, struct shared_gen *sg,
		char *err, size_t errlen)
{
	const struct config *cfg = sg->cfg;
	memset(w, 0, sizeof(*w));
	w->index = index;
	w->sh = sh;
	w->mail_fd = -1;
	pthread_mutex_init(&w->mail_lock, NULL);
	list_init(&w->clients);
	list_init(&w->gens);
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
	w->mail_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int rc = w->mail_fd < 0 ? -errno : 0;
	w->mail_io.on_event = mail_on_event;
	w->kick_io.on_event = kick_on_event;
	if (rc == 0)
		rc = loop_add_fd(w->loop, w->mail_fd, EPOLLIN, &w->mail_io);
	if (rc == 0)
		rc = loop_add_fd(w->loop, sh->kick[index], EPOLLIN, &w->kick_io);
	if (rc < 0) {
		snprintf(err, errlen, "worker %u: eventfd: %s", index, strerror(-rc));
		return -1;
	}
	w->flush_hook.run = flush_access_log;
	loop_add_hook(w->loop, &w->flush_hook);
	rc = access_log_open(&w->access_log, cfg->access_log,
			     cfg->access_log_format == ACCESS_LOG_JSON);
	if (rc < 0) {
		snprintf(err, errlen, "access_log %s: %s", cfg->access_log, strerror(-rc));
		return -1;
	}
	if (!(w->gen = gen_create(w, sg))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = cfg->nlisteners; i-- > 0;) {
		struct listener *l = listener_open(w, sg->listeners[i], &cfg->listeners[i], err, errlen);
		if (!l)
			return -1;
		l->next = w->listeners;
		w->listeners = l;
	}
	if (index == 0)
		for (struct listener *l = w->listeners; l; l = l->next)
			listener_log(l, cfg);
	loop_set_busy_poll(w->loop, cfg->limits.busy_poll_us);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "w%u", w->index);
	log_set_thread_name(name);
	w->status = loop_run(w->loop);
	if (w->status < 0)
		log_error("event loop: %s", strerror(-w->status));
	log_info("stopped; it accepted %llu connection(s)", (unsigned long long)w->accepted);
	return NULL;
}

int worker_start(struct worker *w, int cpu)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	int rc = pthread_create(&w->thread, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (rc == 0) {
		/* For top -H and /proc/PID/task/TID/comm; named here, so before sluice says it started. */
		char name[16];
		snprintf(name, sizeof(name), "sluice-w%u", w->index);
		pthread_setname_np(w->thread, name);
	}
	return -rc;
}

void worker_join(struct worker *w) { pthread_join(w->thread, NULL); }

void worker_destroy(struct worker *w)
{
	if (w->loop) {
		http1_close_all(w);
		close_listeners(w);
		timer_cancel(w->loop, &w->shutdown_deadline);
		timer_cancel(w->loop, &w->accept_retry);
	}
	worker_gen_put(w->gen);
	shared_gen_unref(w->mail_gen);
	access_log_close(&w->access_log);
	loop_destroy(w->loop); /* frees what the closes above left for later */
	buf_pool_destroy(&w->bufs);
	buf_pool_destroy(&w->txns);
	buf_pool_destroy(&w->msgs);
	if (w->mail_fd >= 0)
		close(w->mail_fd);
	pthread_mutex_destroy(&w->mail_lock);
	memset(w, 0, sizeof(*w));
}
