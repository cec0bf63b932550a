/*
 * One worker: a thread with its event loop, its listening sockets (one per
 * listener, SO_REUSEPORT), client sessions, backend pools and buffers.
 * Workers share nothing on the path of a request but the read-only config
 * snapshot; what must hold for the whole process is in shared.h.
 *
 * The control thread (process.h) talks to a worker through its mailbox:
 * a new generation to adopt, or a stop.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "route/hook.h"
#include "upstream/shared.h"
#include "upstream/upstream.h"

struct worker;

/*
 * A config snapshot with this worker's backend state for it. A reload
 * makes a new generation; transactions keep the one they started on, and an
 * old generation is freed when its last transaction ends.
 */
struct generation {
	struct config *cfg; /* that of up.sg, which holds it */
	struct upstream up;
	struct hook *hook;  /* this worker's, if cfg has one */
	unsigned refs;
	struct list link; /* in worker.gens */
};

struct listener {
	struct io_handler io;
	int fd;		/* -1 once closed */
	struct worker *w;
	struct listen_state *st; /* its clients counted for the process */
	const struct cfg_listener *cfg; /* in the current generation; NULL once removed */
	unsigned refs;	/* the worker's (while configured) and one per client */
	bool full;	/* stopped accepting at max_connections, or out of fds */
	struct listener *next;
};

struct worker {
	uint32_t index;
	struct shared *sh;
	struct loop *loop;
	struct generation *gen; /* the current one */
	struct list gens;	/* every generation still in use, the current one included */
	struct buf_pool bufs;	/* I/O buffers, limits.buffer_size each */
	struct buf_pool txns;	/* transactions (http1) */
	struct buf_pool msgs;	/* message heads being parsed (struct http_msg) */
	struct access_log access_log;
	struct loop_hook flush_hook;
	struct listener *listeners; /* configured ones */
	struct list clients;	    /* every client session (struct client) */
	uint32_t nclients;
	uint64_t accepted;	    /* connections accepted since it started */
	bool draining; /* stopping: finish in-flight requests, take no new ones */
	struct timer shutdown_deadline;
	struct timer accept_retry;
	struct io_handler kick_io; /* sh->kick[index]: another thread freed something */
	/* The mailbox: what the control thread posts, and an eventfd to say so. */
	int mail_fd;
	struct io_handler mail_io;
	pthread_mutex_t mail_lock;
	struct shared_gen *mail_gen; /* to adopt */
	bool mail_stop;
	pthread_t thread;
	int status; /* of the loop, once it returned: 0 or -errno */
};

/*
 * Sets worker index of sh up on sg (a reference taken): its listening
 * sockets, pools and buffers. Returns 0, or -1 with a message in err.
 * Runs on the control thread, before worker_start().
 */
int worker_init(struct worker *w, struct shared *sh, uint32_t index, struct shared_gen *sg,
		char *err, size_t errlen);
/* Starts its thread (pinned to cpu, unless cpu < 0). Returns 0 or -errno. */
int worker_start(struct worker *w, int cpu);
/* Waits for its thread to end (after worker_post_stop()). */
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);

/* From the control thread: adopt sg (a reference taken) in the worker's next loop turn. */
void worker_post_gen(struct worker *w, struct shared_gen *sg);
/* From the control thread: stop gracefully (listeners close, in-flight requests finish). */
void worker_post_stop(struct worker *w);

/* For a transaction: a reference to the current generation. */
struct generation *worker_gen_get(struct worker *w);
void worker_gen_put(struct generation *g);

/* Called by http1 when a client session accepted on l ended. */
void worker_client_closed(struct worker *w, struct listener *l);

#endif
