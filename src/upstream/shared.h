/*
 * What the worker threads of one process share: one opinion per server
 * (its active and passive health), the limits that hold for the process as
 * a whole (connections to a server or pool, clients of a listener or of
 * the process, a pool's retry budget), and the listening sockets, one per
 * worker and address.
 *
 * Everything here is written rarely (a failure, a health check, a request
 * of a server with max_connections) and read with plain atomic loads: a
 * request touches no shared cache line it writes unless a limit asks it to.
 *
 * States outlive config generations: a reload finds the state of a server
 * by pool name and address, of a listener by address, and keeps it.
 */
#ifndef SLUICE_SHARED_H
#define SLUICE_SHARED_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/stats.h"

/* What the admin API (or the config's drain = true) says of a server, until the next reload. */
enum server_admin {
	SERVER_READY, /* takes requests */
	SERVER_DRAIN, /* no new requests; those under way finish */
	SERVER_MAINT, /* out for maintenance: no new requests, and no health checks */
};
extern const char *const server_admin_name[3];

struct server_state {
	_Atomic uint8_t admin;	       /* enum server_admin */
	_Atomic uint32_t weight;       /* set by the admin API; 0: the config's */
	_Atomic uint64_t down_until_ms; /* out by passive health until then */
	_Atomic uint64_t back_since_ms; /* when it last came back in: slow start counts from here */
	atomic_bool check_down;		/* failed its active health checks */
	_Atomic uint32_t fails;		/* consecutive failures since the last success */
	_Atomic uint32_t outages;	/* times taken out since the last success */
	_Atomic uint32_t claimed;	/* requests on it or granted a slot, if it has max_connections */
	/* The health checker's own (one thread, never read elsewhere): */
	uint32_t ok_streak, fail_streak;
	atomic_uint refs;
	_Atomic(void *) *stats; /* [workers]: struct server_stats, each written by its worker */
	/* Its address, to be found again by a reload (within its pool, by name). */
	union {
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} addr;
};

/* Requests and retries of one worker for one pool, per second of the last RETRY_WINDOW_S. */
#define RETRY_WINDOW_S 10
struct budget_slot {
	alignas(64) _Atomic uint64_t second[RETRY_WINDOW_S];
	_Atomic uint32_t requests[RETRY_WINDOW_S], retries[RETRY_WINDOW_S];
};

struct pool_state {
	_Atomic uint32_t claimed; /* requests on its servers or granted a slot, with max_connections */
	_Atomic uint64_t waiting; /* a bit per worker with requests in the pool's queue */
	atomic_uint refs;
	pthread_mutex_t lock; /* a failure of one of its servers: its count and verdict, together */
	char *name;
	struct budget_slot *budget; /* [workers]: each written by its worker only */
	_Atomic(void *) *stats;	    /* [workers]: struct pool_stats, likewise */
};

/* The counters of a site or route with metrics = true, found again by a reload by its names. */
struct tracked_state {
	atomic_uint refs;
	char *site, *route;	/* route NULL: the whole site */
	_Atomic(void *) *stats; /* [workers]: struct req_stats, each written by its worker */
};

struct listen_state {
	struct cfg_addr addr;
	int *fds; /* [workers]: listening sockets, each taken (-1) by its worker */
	_Atomic uint32_t clients;
	atomic_uint refs;
};

struct shared {
	uint32_t workers;
	int *kick;		  /* [workers]: eventfds that make a worker look again */
	_Atomic uint32_t clients; /* client connections of the whole process */
	_Atomic uint64_t accept_full; /* a bit per worker that stopped accepting at a limit */
	struct proc_stats *stats; /* [workers]: each written by its worker only */
};

/* The shared states of one config generation, parallel to its pools, servers and listeners. */
struct shared_gen {
	atomic_uint refs;
	struct shared *sh;
	struct config *cfg;
	struct pool_state **pools;	  /* [npools] */
	struct server_state ***servers;	  /* [npools][nservers] */
	struct listen_state **listeners;  /* [nlisteners] */
	struct tracked_state **tracked;	  /* [cfg->ntracked] */
};

int shared_init(struct shared *sh, uint32_t workers);
void shared_destroy(struct shared *sh);

/*
 * The states for cfg: those prev has for the same pool and server, or the
 * same listener address, are kept; listeners new to it get a listening
 * socket per worker, opened now. Returns NULL with a message in err (a
 * socket that cannot be bound) and nothing opened.
 */
struct shared_gen *shared_gen_build(struct shared *sh, struct config *cfg,
				    const struct shared_gen *prev, char *err, size_t errlen);
struct shared_gen *shared_gen_ref(struct shared_gen *g);
void shared_gen_unref(struct shared_gen *g);

/* Drops a reference; the last closes the sockets no worker took. */
void listen_state_unref(struct listen_state *l, uint32_t workers);

/* Makes each worker whose bit is in mask (not self) look again at its queues and listeners. */
void shared_kick(struct shared *sh, uint64_t mask, uint32_t self);

/* Takes one of max slots of counter (0: no limit, nothing counted). False when all are taken. */
static inline bool slot_claim(_Atomic uint32_t *counter, uint32_t max)
{
	if (!max)
		return true;
	uint32_t n = atomic_load_explicit(counter, memory_order_relaxed);
	do {
		if (n >= max)
			return false;
	} while (!atomic_compare_exchange_weak(counter, &n, n + 1));
	return true;
}

static inline void slot_release(_Atomic uint32_t *counter, uint32_t max)
{
	if (max)
		atomic_fetch_sub(counter, 1);
}

static inline bool slots_full(_Atomic uint32_t *counter, uint32_t max)
{
	return max && atomic_load_explicit(counter, memory_order_relaxed) >= max;
}

#endif
