/*
 * Host names as sluice looks them up: the lookup form of a name (for a
 * Host header, an SNI or a configured host) and a hash table of such names
 * whose memory is in an arena, read-only once built. The router's sites and
 * the TLS listener's certificates are found through them.
 */
#ifndef SLUICE_HOST_H
#define SLUICE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

/* The longest host name, in lookup form (RFC 1035 2.3.4). */
#define HOST_MAX_LEN 255

/*
 * Writes the lookup form of a Host value or authority into out: lower case,
 * port and trailing dot removed. Returns its length, or -1 if it is not a
 * plausible host or does not fit.
 */
int host_normalize(const char *host, size_t len, char *out, size_t cap);

struct host_entry {
	const char *name; /* lower case, no port, no trailing dot */
	uint32_t len;
	uint32_t value;	  /* what the name maps to, + 1; 0: empty slot (zeroed memory is empty) */
	uint64_t hash;
};

struct host_table {
	struct host_entry *slots;
	size_t mask; /* capacity - 1; capacity a power of two */
	size_t used;
};

/* Sizes a table for n names; 0 or -ENOMEM. Its slots live in arena; the names it is given, the caller keeps. */
int host_table_init(struct host_table *t, struct arena *a, size_t n);
/* Adds name -> value: 0, -EEXIST if the name is there already, -ENOSPC beyond the n it was sized for. */
int host_table_put(struct host_table *t, const char *name, size_t len, uint32_t value);
/*
 * dst sized for n names (n >= src->used) holding src's: slot for slot when
 * that size is src's, else put one by one. 0 or -ENOMEM. The names stay src's.
 */
int host_table_copy(struct host_table *dst, struct arena *a, const struct host_table *src, size_t n);
/* The value of name, or -1. */
int64_t host_table_get(const struct host_table *t, const char *name, size_t len);

#endif
