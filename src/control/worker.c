#include "control/worker.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* --- stopping --- */

static void drained(struct proxy *px)
{
	loop_stop(px->loop);
}

static void shutdown_deadline_fired(struct timer *t)
{
	struct worker *w = container_of(t, struct worker, shutdown_deadline);
	log_warn("shutdown deadline reached: closing %u connection(s) still busy", w->px.nsessions);
	proxy_close_sessions(&w->px);
	loop_stop(w->loop);
}

static void worker_shutdown(struct worker *w)
{
	if (w->px.draining)
		return;
	uint32_t deadline = w->px.gen->cfg->timeouts.shutdown_ms;
	log_info("stopping: no new connections; %u open, waiting up to %u ms for them",
		 w->px.nsessions, deadline);
	timer_arm(w->loop, &w->shutdown_deadline, deadline);
	proxy_drain(&w->px);
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
		if (!w->px.draining && proxy_adopt(&w->px, sg) < 0)
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
	atomic_fetch_and(&w->sh->accept_full, ~(UINT64_C(1) << w->index));
	proxy_kicked(&w->px);
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

int worker_init(struct worker *w, struct shared *sh, uint32_t index, struct shared_gen *sg,
		char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->index = index;
	w->sh = sh;
	w->mail_fd = -1;
	pthread_mutex_init(&w->mail_lock, NULL);
	w->shutdown_deadline.on_expire = shutdown_deadline_fired;
	w->px.on_drained = drained;
	w->loop = loop_create();
	if (!w->loop) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
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
	return proxy_init(&w->px, sh, index, w->loop, sg, err, errlen);
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
	log_info("stopped; it accepted %llu connection(s)", (unsigned long long)w->px.accepted);
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
	if (w->loop)
		timer_cancel(w->loop, &w->shutdown_deadline);
	proxy_destroy(&w->px);
	shared_gen_unref(w->mail_gen);
	loop_destroy(w->loop); /* frees what the closes above left for later */
	if (w->mail_fd >= 0)
		close(w->mail_fd);
	pthread_mutex_destroy(&w->mail_lock);
	memset(w, 0, sizeof(*w));
}
