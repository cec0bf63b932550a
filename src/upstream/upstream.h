/*
 * Backend pools of one worker: server choice, failure back-off and the idle
 * keep-alive connections kept for reuse across client connections.
 *
 * The configuration says what the pools are; this is the per-worker state
 * that goes with a config snapshot. What must hold for the whole process
 * (health, max_connections, the retry budget) is in the shared states
 * (shared.h) the servers and pools point to.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/common.h"
#include "core/conn.h"
#include "core/loop.h"
#include "core/stats.h"
#include "route/balance.h"
#include "upstream/shared.h"

struct pool_rt;
struct health_check;

struct server_rt {
	const struct cfg_server *cfg;
	const struct cfg_pool *pool;
	struct pool_rt *prt;
	struct balance_server *bal; /* its entry in prt->bal */
	struct server_state *st;    /* its health and slots, as every worker sees them */
	struct health_check *check; /* NULL unless the pool configures checks and this runs them */
	struct list idle;	/* struct bconn.idle_link, most recently used last */
	uint32_t nidle;
	/* The most connections lent at once in this purge period and the one before. */
	uint32_t peak_busy, prev_peak_busy;
};

struct pool_rt {
	const struct cfg_pool *cfg;
	struct upstream *up;
	struct server_rt *servers;
	struct balance_server *bal; /* parallel to servers, as balance_pick() wants them */
	struct balancer balancer;
	struct pool_state *st;	    /* its slots and retry budget, as every worker sees them */
	uint32_t active;	    /* requests in flight on its servers from this worker */
	struct list queue;	    /* struct upstream_request.queue_link, oldest first */
	uint32_t queued;
	struct timer purge_timer; /* armed while any server has idle connections */
};

/*
 * What one request wants of a pool, owned by the request for its whole life:
 * where it may go, where it has been, and its place in the pool's queue.
 */
struct upstream_request {
	size_t pool;
	uint64_t key_hash;		/* what balance = "hash" maps */
	int32_t only;			/* the one server index it may use (a hook named it), or -1 */
	uint32_t tried[CFG_MAX_TRIES];	/* servers picked for it so far, by index */
	uint32_t ntried;
	bool started;			/* it had a server once: it is retrying now */
	struct list queue_link;		/* in pool_rt.queue while waiting */
	struct server_rt *granted;	/* a slot held for it: its next pick returns this server */
	/* Called when a slot is granted; from within upstream calls, so it must only schedule. */
	void (*wake)(struct upstream_request *r);
};

struct upstream {
	struct loop *loop;
	struct shared_gen *sg;
	uint32_t thread; /* the worker's index; the health checker's is the number of workers */
	struct pool_rt *pools;
	size_t npools;
};

/* A connection to a backend server, idle in its server's list or lent to one owner. */
struct bconn {
	struct conn conn;
	struct upstream *up;
	struct server_rt *srv;
	struct list idle_link;
	struct timer idle_timer;
	bool reused; /* served a request before this one */
	uint32_t requests; /* lent this many times */
	/* While lent: the owner's handler for readiness changes. */
	void (*on_io)(struct bconn *bc);
	void *owner;
};

/*
 * This worker's counters of srv and of a pool (stats.h), made on first use;
 * NULL for the health checker, or when out of memory.
 */
struct server_stats *upstream_server_stats(struct upstream *up, const struct server_rt *srv);
struct pool_stats *upstream_pool_stats(struct upstream *up, size_t pool);

/* Builds thread's state of sg's pools (one reference to sg taken). Returns 0 or -ENOMEM. */
int upstream_init(struct upstream *up, struct loop *loop, struct shared_gen *sg, uint32_t thread);
/* Closes every idle connection and frees the state; lent connections must be back, checks stopped. */
void upstream_destroy(struct upstream *up);

void upstream_request_init(struct upstream_request *r, size_t pool, uint64_t key_hash, int32_t only,
			   void (*wake)(struct upstream_request *r));

/*
 * Picks a server for r by the pool's balancing algorithm (or r->only),
 * skipping drained servers, those out by passive or active health, those
 * already tried for r, and those at their max_connections; backups only
 * when no other is usable. The server is added to r->tried; a caller that
 * must not count the attempt (a replay after a stale pooled connection)
 * takes it off again by decrementing r->ntried.
 *
 * Free slots go to queued requests first, unless r is a retry (r->started:
 * it held a slot already). Returns NULL when none can take it: *busy
 * then says whether that is only for now (servers or pool at
 * max_connections: upstream_enqueue() it) or not (no usable server left).
 * With max_connections, the server returned holds a slot of it (and of
 * its pool) for the whole process until upstream_release(), or until
 * upstream_acquire() fails.
 */
struct server_rt *upstream_pick(struct upstream *up, struct upstream_request *r, bool *busy);

/* Whether some server of the pool, not yet tried for r, is usable now (busy or not). */
bool upstream_untried_left(struct upstream *up, const struct upstream_request *r);

/*
 * Queues r (after a pick said busy), at the end, or first in line if it is
 * a retry. Returns 0, or -ENOBUFS when the pool's queue is full. A slot
 * freed later is granted to the oldest request of this worker's queue that
 * can use it: r->granted is set, r leaves the queue and r->wake(r) runs.
 * A slot freed by another worker wakes this one (upstream_dispatch_all()).
 */
int upstream_enqueue(struct upstream *up, struct upstream_request *r);
/* Takes r out of the queue, and gives back a slot granted to it but not used; no-op otherwise. */
void upstream_dequeue(struct upstream *up, struct upstream_request *r);
/* Grants what is free to the queued requests of every pool: another worker freed a slot. */
void upstream_dispatch_all(struct upstream *up);
static inline bool upstream_queued(const struct upstream_request *r)
{
	return !list_empty(&r->queue_link);
}
/* Queued, or granted a slot it has not taken yet: either way still waiting for the pool. */
static inline bool upstream_waiting(const struct upstream_request *r)
{
	return upstream_queued(r) || r->granted;
}

/*
 * The retry budget of a pool: each request counts once; a retry is allowed
 * (and counted) while retries over the last RETRY_WINDOW_S seconds stay
 * within budget_percent of the requests, or budget_min per second. Counts
 * are per worker; a retry sums every worker's.
 */
void upstream_count_request(struct upstream *up, size_t pool);
bool upstream_may_retry(struct upstream *up, size_t pool);

/*
 * Lends a connection to srv: an idle one if any, else a new one whose connect
 * is under way (CONN_CONNECTING). Returns NULL with *err = -errno if a new
 * connect failed at once. The owner gives it back with upstream_release().
 */
struct bconn *upstream_acquire(struct upstream *up, struct server_rt *srv, void *owner,
			       void (*on_io)(struct bconn *bc), int *err);
/*
 * Takes the connection back: kept idle for reuse if reusable and under the
 * pool's keepalive cap, else closed. Either way its request no longer counts
 * as active, and its slot goes to the oldest queued request that can use it.
 *
 * Without a cap, a server keeps as many connections as were lent at once in
 * the last two purge periods; every keepalive_purge, half of the idle ones
 * beyond that are closed, oldest first, so a burst's connections go
 * gradually rather than being reopened by the next burst.
 */
void upstream_release(struct bconn *bc, bool reusable);

/*
 * After a reload: idle connections of old to a server that up's pools still
 * have (same pool name, same address) move to up; the rest are closed.
 * (Health and back-off are in the server's shared state, which it keeps.)
 */
void upstream_adopt_idle(struct upstream *up, struct upstream *old);

/*
 * Passive health, for every worker at once. A failure (connect refused or
 * timed out, reset or closed before answering) counts against the server;
 * max_fails in a row take it out for connect_backoff, doubled for each
 * outage since its last success (up to max_backoff). A response resets it.
 * why names the failure for the log.
 */
void upstream_server_failed(struct upstream *up, struct server_rt *srv, const char *why);
void upstream_server_ok(struct upstream *up, struct server_rt *srv);
/* Which of the pool's TLS sessions (tls_connect()) srv's connections from this thread keep. */
size_t upstream_session_slot(const struct upstream *up, const struct server_rt *srv);

/* Active health brought srv back in: slow start begins, every worker's queue may use it. */
void upstream_server_back(struct upstream *up, struct server_rt *srv);

#endif
