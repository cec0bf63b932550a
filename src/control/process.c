#include "control/process.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "control/admin.h"
#include "control/runtime.h"
#include "control/worker.h"
#include "core/log.h"
#include "core/loop.h"
#include "tls/tls.h"
#include "upstream/health.h"
#include "upstream/shared.h"
#include "upstream/upstream.h"

struct process {
	struct shared sh;
	struct worker *workers;
	uint32_t nworkers, ready, started; /* workers set up, and of those, running */
	uint32_t buffer_size; /* the workers' buffers are this size until a restart */
	struct loop *loop;
	struct shared_gen *gen; /* the current one */
	struct upstream *checks; /* the current generation's health checks */
	const char *config_path;
	int sigfd;
	struct io_handler sig_io;
	struct admin *admin;	 /* NULL unless configured */
	struct runtime rt;	 /* the file's config and what the admin API changed of it */
	struct metrics_src stats; /* what the admin reports besides the counters */
};

static void stop_checks(struct process *p)
{
	if (p->checks) {
		health_stop(p->checks); /* the servers' verdicts stay */
		upstream_destroy(p->checks);
	}
	free(p->checks);
	p->checks = NULL;
}

/* Health checks of g's servers, in place of those of the generation before. */
static int start_checks(struct process *p, struct shared_gen *g)
{
	bool any = false;
	for (size_t i = 0; i < g->cfg->npools; i++)
		any |= g->cfg->pools[i].health.enabled;
	/* Without checks, no copy of the pools here (10,000 servers: 1.5 MB). */
	if (!any) {
		stop_checks(p);
		return 0;
	}
	struct upstream *next = malloc(sizeof(*next));
	if (!next || upstream_init(next, p->loop, g, p->nworkers) < 0) {
		free(next);
		return -ENOMEM;
	}
	if (health_start(next) < 0) {
		upstream_destroy(next);
		free(next);
		return -ENOMEM;
	}
	stop_checks(p);
	p->checks = next;
	return 0;
}

/* The admin listener as cfg says: started, moved, given a new token, or stopped. */
static int update_admin(struct process *p, const struct cfg_admin *cfg, char *err, size_t errlen)
{
	if (!cfg->enabled) {
		admin_stop(p->admin);
		p->admin = NULL;
		return 0;
	}
	if (p->admin)
		return admin_update(p->admin, cfg, err, errlen);
	p->admin = admin_start(p->loop, cfg, &p->stats, &p->rt, err, errlen);
	return p->admin ? 0 : -1;
}

/* Makes g what runs: health checks for its servers, and every worker takes it in its next turn. */
static int publish(struct process *p, struct shared_gen *g, char *err, size_t errlen)
{
	if (start_checks(p, g) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < p->nworkers; i++)
		worker_post_gen(&p->workers[i], g);
	shared_gen_unref(p->gen);
	p->gen = g;
	p->stats.gen = g;
	p->stats.generation++;
	return 0;
}

/* The runtime's publish: a snapshot the admin API derived, run like a reload's. */
static int publish_change(void *ud, struct config *cfg, char *err, size_t errlen)
{
	struct process *p = ud;
	struct shared_gen *g = shared_gen_build(&p->sh, cfg, p->gen, err, errlen);
	if (!g || publish(p, g, err, errlen) < 0) {
		shared_gen_unref(g);
		return -1;
	}
	return 0;
}

static void reload(struct process *p)
{
	char err[CONFIG_ERR_MAX];
	struct config *cfg = config_load(p->config_path, err, sizeof(err));
	if (!cfg) {
		p->stats.reload_failures++;
		/* A line per mistake: an error-log line holds one. */
		for (char *save, *line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			log_error("reload failed, the running configuration stays: %s", line);
		return;
	}
	struct shared_gen *g = NULL;
	if (cfg->limits.max_header_size > p->buffer_size) {
		snprintf(err, sizeof(err),
			 "max_header_size %u exceeds the running buffer_size %u (buffer_size changes "
			 "need a restart)",
			 cfg->limits.max_header_size, p->buffer_size);
		goto fail;
	}
	if (cfg->limits.buffer_size != p->buffer_size)
		log_warn("reload: buffer_size changes need a restart; keeping %u", p->buffer_size);
	if (cfg->workers != p->nworkers)
		log_warn("reload: workers changes need a restart; keeping %u", p->nworkers);
	cfg->workers = p->nworkers;
	if (config_add_worker_hooks(cfg, err, sizeof(err)) < 0 ||
	    !(g = shared_gen_build(&p->sh, cfg, p->gen, err, sizeof(err))) ||
	    update_admin(p, &cfg->admin, err, sizeof(err)) < 0 || publish(p, g, err, sizeof(err)) < 0)
		goto fail;
	log_set_level((enum log_level)cfg->log_level);
	config_log_warnings(cfg);
	/* A new ticket key; tickets sealed with the last two still resume. */
	tls_rotate_ticket_keys();
	runtime_reset(&p->rt, cfg);
	p->stats.reloads++;
	log_info("configuration reloaded: %zu listener(s), %zu pool(s), %zu site(s)", cfg->nlisteners,
		 cfg->npools, cfg->router.nsites);
	config_unref(cfg);
	return;
fail:
	p->stats.reload_failures++;
	log_error("reload failed, the running configuration stays: %s", err);
	shared_gen_unref(g);
	config_unref(cfg);
}

static void stop(struct process *p)
{
	for (uint32_t i = 0; i < p->started; i++)
		worker_post_stop(&p->workers[i]);
	loop_stop(p->loop);
}

static void signal_on_event(struct io_handler *h, uint32_t events)
{
	(void)events;
	struct process *p = container_of(h, struct process, sig_io);
	struct signalfd_siginfo si;
	while (read(p->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("%s received", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			stop(p);
			return;
		case SIGHUP:
			log_info("SIGHUP received: reloading %s",
				 p->config_path ? p->config_path : "the default config");
			reload(p);
			break;
		default:
			break;
		}
	}
}

/* The i-th CPU this process may run on, or -1. */
static int nth_cpu(uint32_t i)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) == 0)
		return -1;
	uint32_t n = i % (uint32_t)CPU_COUNT(&set);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set) && n-- == 0)
			return cpu;
	return -1;
}

static int start(struct process *p, struct config *cfg, char *err, size_t errlen)
{
	p->nworkers = cfg->workers;
	p->buffer_size = cfg->limits.buffer_size;
	int rc = shared_init(&p->sh, p->nworkers);
	if (rc < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		return -1;
	}
	if (!(p->loop = loop_create())) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		return -1;
	}
	if (config_add_worker_hooks(cfg, err, errlen) < 0 ||
	    !(p->gen = shared_gen_build(&p->sh, cfg, NULL, err, errlen)))
		return -1;
	p->rt.publish = publish_change;
	p->rt.ud = p;
	runtime_reset(&p->rt, cfg);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	p->stats = (struct metrics_src){.sh = &p->sh, .gen = p->gen, .generation = 1,
					.start_time = (double)now.tv_sec + now.tv_nsec / 1e9};
	if (start_checks(p, p->gen) < 0 || !(p->workers = calloc(p->nworkers, sizeof(*p->workers)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Before any worker serves: a test (or a probe) that got an answer finds the admin too. */
	if (update_admin(p, &cfg->admin, err, errlen) < 0)
		return -1;
	/* Every worker set up before any runs: a served request means all are there. */
	for (uint32_t i = 0; i < p->nworkers; i++, p->ready++)
		if (worker_init(&p->workers[i], &p->sh, i, p->gen, err, errlen) < 0) {
			worker_destroy(&p->workers[i]);
			return -1;
		}
	for (uint32_t i = 0; i < p->nworkers; i++, p->started++)
		if ((rc = worker_start(&p->workers[i], cfg->cpu_affinity ? nth_cpu(i) : -1)) < 0) {
			snprintf(err, errlen, "worker %u: cannot start its thread: %s", i, strerror(-rc));
			return -1;
		}
	p->sig_io.on_event = signal_on_event;
	if ((rc = loop_add_fd(p->loop, p->sigfd, EPOLLIN, &p->sig_io)) < 0) {
		snprintf(err, errlen, "signalfd: epoll: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

int process_run(struct config *cfg, const char *config_path, int sigfd, void (*started)(void))
{
	struct process p = {.config_path = config_path, .sigfd = sigfd};
	char err[1024];
	int status = 0;
	if (start(&p, cfg, err, sizeof(err)) < 0) {
		log_error("%s", err);
		status = 1;
		stop(&p);
	} else {
		log_info("%u worker(s)%s", p.nworkers, cfg->cpu_affinity ? ", each on its own CPU" : "");
		started();
		int rc = loop_run(p.loop);
		if (rc < 0) {
			log_error("event loop: %s", strerror(-rc));
			stop(&p);
		}
	}
	admin_stop(p.admin);
	stop_checks(&p);
	for (uint32_t i = 0; i < p.started; i++)
		worker_join(&p.workers[i]);
	for (uint32_t i = 0; i < p.ready; i++)
		worker_destroy(&p.workers[i]);
	free(p.workers);
	shared_gen_unref(p.gen);
	runtime_free(&p.rt);
	loop_destroy(p.loop);
	shared_destroy(&p.sh);
	return status;
}
