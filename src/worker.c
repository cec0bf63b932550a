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

#include "http1.h"

/* How long to wait before accepting again after running out of file descriptors. */
#define ACCEPT_RETRY_MS 100

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
	while (!w->draining) {
		if (w->nclients >= w->cfg->limits.max_connections) {
			/* The rest wait in the kernel's backlog until a session ends. */
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
		if (http1_accept(w, fd, (struct sockaddr *)&peer, l->cfg) < 0)
			log_error("listener %s: cannot start a session: out of memory",
				  l->cfg->addr.text);
	}
}

static void listener_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	accept_ready(container_of(h, struct listener, io));
}

static void resume_accepting(struct worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].full && w->listeners[i].fd >= 0)
			accept_ready(&w->listeners[i]);
}

static void accept_retry_fired(struct timer *t)
{
	resume_accepting(container_of(t, struct worker, accept_retry));
}

static void close_listeners(struct worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].fd >= 0) {
			close(w->listeners[i].fd);
			w->listeners[i].fd = -1;
		}
}

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
		for (size_t i = 0; i < w->nlisteners; i++)
			if (w->listeners[i].full)
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
	log_info("stopping: no new connections; %u open, waiting up to %u ms for them",
		 w->nclients, w->cfg->timeouts.shutdown_ms);
	http1_drain(w);
	timer_arm(w->loop, &w->shutdown_deadline, w->cfg->timeouts.shutdown_ms);
	stop_if_done(w);
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
			log_warn("SIGHUP received: configuration reload is not supported yet; ignored");
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

int worker_init(struct worker *w, struct config *cfg, int sigfd, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->sigfd = sigfd;
	list_init(&w->clients);
	w->shutdown_deadline.on_expire = shutdown_deadline_fired;
	w->accept_retry.on_expire = accept_retry_fired;
	w->access_log.fd = -1;
	w->cfg = config_ref(cfg);
	w->loop = loop_create();
	if (!w->loop) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	buf_pool_init(&w->bufs, cfg->limits.buffer_size, 1024);
	if (upstream_init(&w->up, w->loop, cfg) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = access_log_open(&w->access_log, cfg->access_log);
	if (rc < 0) {
		snprintf(err, errlen, "access_log %s: %s", cfg->access_log, strerror(-rc));
		return -1;
	}
	w->flush_hook.run = flush_access_log;
	loop_add_hook(w->loop, &w->flush_hook);
	w->listeners = calloc(cfg->nlisteners, sizeof(*w->listeners));
	if (!w->listeners) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++)
		w->listeners[i].fd = -1;
	w->nlisteners = cfg->nlisteners;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listener *l = &w->listeners[i];
		l->w = w;
		l->cfg = &cfg->listeners[i];
		l->io.on_event = listener_on_event;
		l->fd = open_listener(l->cfg, err, errlen);
		if (l->fd < 0)
			return -1;
		rc = loop_add_fd(w->loop, l->fd, EPOLLIN, &l->io);
		if (rc < 0) {
			snprintf(err, errlen, "listener %s: epoll: %s", l->cfg->addr.text, strerror(-rc));
			return -1;
		}
		if (l->cfg->routed)
			log_info("listening on %s -> sites", l->cfg->addr.text);
		else
			log_info("listening on %s -> pool \"%s\"", l->cfg->addr.text,
				 cfg->pools[l->cfg->pool].name);
	}
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
		upstream_destroy(&w->up);
		timer_cancel(w->loop, &w->shutdown_deadline);
		timer_cancel(w->loop, &w->accept_retry);
	}
	access_log_close(&w->access_log);
	loop_destroy(w->loop); /* frees what the closes above left for later */
	buf_pool_destroy(&w->bufs);
	free(w->listeners);
	config_unref(w->cfg);
	memset(w, 0, sizeof(*w));
}
