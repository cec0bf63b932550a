/*
 * One worker: a thread with its event loop and its proxy (proxy/proxy.h):
 * listening sockets (one per listener, SO_REUSEPORT), client sessions,
 * backend pools and buffers. Workers share nothing on the path of a
 * request but the read-only config snapshot; what must hold for the whole
 * process is in shared.h.
 *
 * The control thread (process.h) talks to a worker through its mailbox:
 * a new generation to adopt, or a stop.
 */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "proxy/proxy.h"
#include "upstream/shared.h"

struct worker {
	uint32_t index;
	struct shared *sh;
	struct loop *loop;
	struct proxy px;
	struct timer shutdown_deadline;
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
 * Sets worker index of sh up on sg (a reference taken): its loop, mailbox
 * and proxy. Returns 0, or -1 with a message in err. Runs on the control
 * thread, before worker_start().
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

#endif
