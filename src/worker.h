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

/*
 * A config snapshot with the backend state that belongs to it. A reload
 * makes a new generation; transactions keep the one they started on, and an
 * old generation is freed when its last transaction ends.
 */
struct generation {
	struct config *cfg;
	struct upstream up;
	unsigned refs;
};

struct listener {
	struct io_handler io;
	int fd;		/* -1 once closed */
	struct worker *w;
	const struct cfg_listener *cfg; /* in the current generation; NULL once removed */
	unsigned refs;	/* the worker's (while configured) and one per client */
	bool full;	/* stopped accepting at max_connections, or out of fds */
	struct listener *next;
};

struct worker {
	struct loop *loop;
	struct generation *gen; /* the current one */
	const char *config_path; /* re-read on reload; NULL: the embedded default */
	struct buf_pool bufs;	/* I/O buffers, limits.buffer_size each */
	struct buf_pool txns;	/* transactions (http1) */
	struct buf_pool msgs;	/* message heads being parsed (struct http_msg) */
	struct access_log access_log;
	struct loop_hook flush_hook;
	struct listener *listeners; /* configured ones */
	struct list clients;	    /* every client session (struct client) */
	uint32_t nclients;
	bool draining; /* stopping: finish in-flight requests, take no new ones */
	struct timer shutdown_deadline;
	struct timer accept_retry;
	int sigfd;
	struct io_handler sig_io;
};

/*
 * Opens cfg's listeners and sets the worker up; sigfd (a signalfd, or -1) is
 * watched for SIGTERM/SIGINT/SIGHUP; SIGHUP re-reads config_path. Returns 0,
 * or -1 with a message in err. The worker takes a reference to cfg.
 */
int worker_init(struct worker *w, struct config *cfg, const char *config_path, int sigfd, char *err,
		size_t errlen);
/* Runs until a graceful stop is over. Returns 0 or -errno. */
int worker_run(struct worker *w);
void worker_destroy(struct worker *w);

/* Starts a graceful stop: listeners close, idle clients go, in-flight requests finish. */
void worker_shutdown(struct worker *w);
/*
 * Switches to cfg (one reference taken): listeners are opened and closed to
 * match, new requests use it, in-flight ones finish on the old one. Returns 0,
 * or -1 with a message in err and nothing changed.
 */
int worker_reload(struct worker *w, struct config *cfg, char *err, size_t errlen);

/* For a transaction: a reference to the current generation. */
struct generation *worker_gen_get(struct worker *w);
void worker_gen_put(struct generation *g);
void listener_put(struct listener *l);

/* Called by http1 when a client session ended. */
void worker_client_closed(struct worker *w);

#endif
