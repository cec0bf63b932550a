/*
 * Backend pools of one worker: server choice, failure back-off and the idle
 * keep-alive connections kept for reuse across client connections.
 *
 * The configuration says what the pools are; this is the per-worker state
 * that goes with a config snapshot (nothing here is shared between threads).
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "balance.h"
#include "common.h"
#include "config.h"
#include "conn.h"
#include "health.h"
#include "loop.h"

struct pool_rt;

struct server_rt {
	const struct cfg_server *cfg;
	const struct cfg_pool *pool;
	struct pool_rt *prt;
	struct balance_server *bal; /* its entry in prt->bal */
	uint64_t down_until_ms; /* skipped until then (passive health) */
	uint32_t fails;		/* consecutive failures since the last success */
	uint32_t outages;	/* times taken out since the last success: the cool-down doubles */
	bool check_down;	/* failed its active health checks */
	uint64_t back_since_ms;	/* when it last came back in: slow start counts from here */
	struct health_check *check; /* NULL unless the pool configures checks */
	struct list idle;	/* struct bconn.idle_link, most recently used last */
	uint32_t nidle;
};

struct pool_rt {
	const struct cfg_pool *cfg;
	struct server_rt *servers;
	struct balance_server *bal; /* parallel to servers, as balance_pick() wants them */
	struct balancer balancer;
};

struct upstream {
	struct loop *loop;
	struct pool_rt *pools;
	size_t npools;
	uint64_t connections; /* open backend connections, idle or not */
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

/* Builds the per-worker state of cfg's pools. Returns 0 or -ENOMEM. */
int upstream_init(struct upstream *up, struct loop *loop, const struct config *cfg);
/* Closes every idle connection and frees the state; lent connections must be back. */
void upstream_destroy(struct upstream *up);

/*
 * Picks a server of pool by its balancing algorithm, skipping drained
 * servers and those in their failure back-off; backups only when no other
 * is usable. key_hash is what balance = "hash" maps (ignored otherwise).
 * Returns NULL when no server is usable.
 */
struct server_rt *upstream_pick(struct upstream *up, size_t pool, uint64_t key_hash);
/* Server index of pool if it is usable now (not backing off, not drained), else NULL. */
struct server_rt *upstream_server(struct upstream *up, size_t pool, size_t index);

/*
 * Lends a connection to srv: an idle one if any, else a new one whose connect
 * is under way (CONN_CONNECTING). Returns NULL with *err = -errno if a new
 * connect failed at once. The owner gives it back with upstream_release().
 */
struct bconn *upstream_acquire(struct upstream *up, struct server_rt *srv, void *owner,
			       void (*on_io)(struct bconn *bc), int *err);
/*
 * Takes the connection back: kept idle for reuse if reusable and there is
 * room, else closed. Either way its request no longer counts as active.
 */
void upstream_release(struct bconn *bc, bool reusable);

/*
 * After a reload: idle connections of old to a server that up's pools still
 * have (same pool name, same address) move to up, with the server's back-off
 * state; the rest are closed.
 */
void upstream_adopt_idle(struct upstream *up, struct upstream *old);

/*
 * Passive health. A failure (connect refused or timed out, reset or closed
 * before answering) counts against the server;
 * max_fails in a row take it out for connect_backoff, doubled for each
 * outage since its last success (up to max_backoff). A response resets it.
 * why names the failure for the log.
 */
void upstream_server_failed(struct upstream *up, struct server_rt *srv, const char *why);
void upstream_server_ok(struct upstream *up, struct server_rt *srv);

#endif
