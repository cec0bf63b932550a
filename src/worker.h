/*
 * One worker: an event loop with its listeners, client sessions, backend
 * pools and buffers. Workers share nothing but the read-only config
 * snapshot, so that several can later run on their own threads, each with
 * its own SO_REUSEPORT listener sockets.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "upstream.h"

struct worker;

struct listener {
	struct io_handler io;
	int fd;
	struct worker *w;
	const struct cfg_listener *cfg;
	bool full; /* stopped accepting at max_connections, or out of fds */
};

struct worker {
	struct loop *loop;
	struct config *cfg;
	struct buf_pool bufs;
	struct upstream up;
	struct access_log access_log;
	struct loop_hook flush_hook;
	struct listener *listeners;
	size_t nlisteners;
	struct list clients; /* every client session (struct client) */
	uint32_t nclients;
	bool draining;	     /* stopping: finish in-flight requests, take no new ones */
	struct timer shutdown_deadline;
	struct timer accept_retry;
	int sigfd;
	struct io_handler sig_io;
};

/*
 * Opens cfg's listeners and sets the worker up; sigfd (a signalfd, or -1) is
 * watched for SIGTERM/SIGINT/SIGHUP. Returns 0, or -1 with a message in err.
 * The worker takes a reference to cfg.
 */
int worker_init(struct worker *w, struct config *cfg, int sigfd, char *err, size_t errlen);
/* Runs until a graceful stop is over. Returns 0 or -errno. */
int worker_run(struct worker *w);
void worker_destroy(struct worker *w);

/* Starts a graceful stop: listeners close, idle clients go, in-flight requests finish. */
void worker_shutdown(struct worker *w);
/* Called by http1 when a client session ended. */
void worker_client_closed(struct worker *w);

#endif
