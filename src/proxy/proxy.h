/*
 * One worker's proxy: its listeners and the client sessions they accept,
 * the config generations those sessions run on, and the pools that
 * sessions and transactions take their memory from. The worker thread
 * (control/worker.h) owns one and drives it from its loop; nothing here
 * knows of threads or mailboxes.
 *
 * A listener hands each accepted socket to its front (front.h), which
 * makes a session of it; the proxy counts sessions, keeps the process-wide
 * and per-listener connection limits, and stops accepting while they are
 * reached.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

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

struct conn;
struct front_ops;
struct session;
struct sockaddr;

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
	struct list link; /* in proxy.gens */
};

struct listener {
	struct io_handler io;
	int fd;		/* -1 once closed */
	struct proxy *px;
	const struct front_ops *front; /* what its connections speak */
	struct listen_state *st; /* its clients counted for the process */
	const struct cfg_listener *cfg; /* in the current generation; NULL once removed */
	unsigned refs;	/* the proxy's (while configured) and one per session */
	bool full;	/* stopped accepting at max_connections, or out of fds */
	struct listener *next;
};

struct proxy {
	uint32_t index; /* the worker's */
	struct shared *sh;
	struct loop *loop;
	struct generation *gen; /* the current one */
	struct list gens;	/* every generation still in use, the current one included */
	struct buf_pool bufs;	/* I/O buffers, limits.buffer_size each */
	struct buf_pool txns;	/* transactions: txn.c sizes it on first use, knowing what one holds */
	struct buf_pool msgs;	/* message heads being parsed (struct http_msg) */
	struct access_log access_log;
	struct loop_hook flush_hook;
	struct listener *listeners; /* configured ones */
	struct list sessions;	    /* every client session (struct session) */
	uint32_t nsessions;
	uint64_t accepted;	    /* connections accepted since it started */
	bool draining; /* stopping: finish in-flight requests, take no new ones */
	struct timer accept_retry;
	/* Lines about clients' mistakes: a few a second, then a count (proxy_may_log_client_error()). */
	struct log_limit client_errors;
	struct timer client_errors_said;
	/* Called once draining and the last session ended: the owner stops the loop. */
	void (*on_drained)(struct proxy *px);
};

/*
 * Sets px up on loop for worker index of sh, on sg (a reference taken): its
 * listening sockets, generation and pools. Returns 0, or -1 with a message
 * in err. proxy_destroy() frees it either way.
 */
int proxy_init(struct proxy *px, struct shared *sh, uint32_t index, struct loop *loop,
	       struct shared_gen *sg, char *err, size_t errlen);
void proxy_destroy(struct proxy *px);

/* Adopts sg (a reference taken) for new requests: listeners open and close to match. */
int proxy_adopt(struct proxy *px, struct shared_gen *sg);
/* Graceful stop: listeners close, idle sessions close now, busy ones after their current request. */
void proxy_drain(struct proxy *px);
/* Closes every session at once (a graceful stop's deadline, or exit). */
void proxy_close_sessions(struct proxy *px);
/* Another thread freed a slot: accept again where full, grant queued requests. */
void proxy_kicked(struct proxy *px);

/*
 * For a front's start(): s becomes a session of px, holding the slot of the
 * connection limits and the reference to l that the accept took for it;
 * conn and peer are the client's. proxy_session_close() gives both back,
 * once, when the session ends.
 */
void proxy_session_open(struct proxy *px, struct session *s, struct listener *l,
			const struct front_ops *front, struct conn *conn, const struct sockaddr *peer);
void proxy_session_close(struct session *s);
/*
 * Ends session s (the TLS handshake's) by handing its connection, a, to a
 * session of front, which takes over its slot and listener reference.
 */
struct accepted;
void proxy_session_pass(struct session *s, const struct front_ops *front, const struct accepted *a);

/*
 * A client's mistake (a bad request, no site for its Host, too slow) is
 * counted by its kind (stats_client_error_of() of its status); returns
 * whether a line about it may go to the error log: a client that sends
 * them at will must not write the log at will.
 */
bool proxy_client_error(struct proxy *px, int kind);

/* For a transaction: a reference to the current generation. */
struct generation *proxy_gen_get(struct proxy *px);
void proxy_gen_put(struct generation *g);

#endif
