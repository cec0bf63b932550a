/*
 * Load-balancing algorithms: which server of a pool gets the next request.
 *
 * Pure logic over an array the caller owns: no I/O, no clock, no allocation
 * on a pick. The caller (upstream) keeps one struct balancer and one
 * balance_server array per pool and worker, and marks servers down, drained
 * or busy; this module only reads those marks, except for the smooth
 * weighted round-robin state in balance_server.current, which is its own.
 */
#ifndef SLUICE_BALANCE_H
#define SLUICE_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum balance_algo {
	BALANCE_ROUND_ROBIN, /* each usable server in turn; weights ignored */
	BALANCE_WEIGHTED,    /* smooth weighted round-robin, as nginx does it */
	BALANCE_LEAST_CONN,  /* fewest active/weight; ties broken round-robin */
	BALANCE_RANDOM2,     /* two distinct random servers, the lower active/weight wins */
	BALANCE_HASH,	     /* consistent hashing of a key on a ring */
	BALANCE_ALGOS
};
/* As the config names them: "round_robin", ... */
extern const char *const balance_algo_names[BALANCE_ALGOS];

/* What the caller knows of one server right now (per worker). */
struct balance_server {
	const char *name; /* "host:port", stable identity for the ring */
	uint32_t weight;  /* >= 1 */
	bool backup;	  /* used only when no non-backup server is usable */
	bool drain;	  /* never picked */
	bool down;	  /* never picked (connect back-off, failed health) */
	uint32_t active;  /* in-flight requests, maintained by the caller */
	int64_t current;  /* smooth WRR state, owned by balance.c; start at 0 */
};

/*
 * Immutable ring of a config snapshot, shared read-only by every pick. Each
 * server owns 160 * weight points (scaled down in proportion when the total
 * would pass 1 << 20), at the positions of balance_hash("name#i") >> 32, so
 * the points of a server depend on its name alone: adding a server moves
 * only the keys that land on its points. Backup, drained and down servers
 * have their points too; a pick skips them while they are not usable.
 */
struct balance_ring {
	uint32_t *hash;	  /* sorted ascending */
	uint32_t *server; /* index of the server owning each point */
	size_t n;
};

/*
 * Builds the ring of servers[0, n). Returns 0, -ENOMEM (ring left empty), or
 * -EINVAL if n does not fit the uint32_t indices. The ring is the caller's,
 * freed with balance_ring_free(); the servers are not referenced after.
 */
int balance_ring_build(struct balance_ring *ring, const struct balance_server *servers, size_t n);
/* Frees the points and leaves an empty ring; freeing an empty ring is a no-op. */
void balance_ring_free(struct balance_ring *ring);

/* Per pool and worker; zero it, then set algo, ring (for BALANCE_HASH) and a seed. */
struct balancer {
	enum balance_algo algo;
	const struct balance_ring *ring; /* BALANCE_HASH only */
	size_t next;			 /* round-robin position */
	uint64_t rng;			 /* xorshift state, any non-zero seed */
};

/* 64-bit hash of bytes (FNV-1a, then the murmur3 finaliser); callers hash keys with it. */
uint64_t balance_hash(const void *key, size_t len);

/*
 * Picks a server: among usable (not down, not drain) non-backup servers if
 * any, else among usable backup servers. Returns its index, or -1 when none
 * is usable. key/keylen are used by BALANCE_HASH only (a NULL key hashes as
 * empty). For BALANCE_HASH, the first ring point at or after hash(key)
 * (wrapping) whose server is usable in the chosen set wins, so a server
 * going down only moves its own keys. servers must be the array the ring was
 * built from. O(n), plus O(log points) and a walk past unusable points for
 * BALANCE_HASH.
 */
ssize_t balance_pick(struct balancer *b, struct balance_server *servers, size_t n, const void *key,
		     size_t keylen);

#endif
