/*
 * A bump allocator for a config snapshot: 100,000 sites make millions of
 * small strings and structs that live and die together, so they are carved
 * from large blocks (no per-allocation header, one free for all).
 */
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stddef.h>

struct arena {
	struct arena_block *blocks;
	char *next, *end;
};

/* Zeroed memory aligned for any type, or NULL. Freed only by arena_free(). */
void *arena_alloc(struct arena *a, size_t size);
/* A NUL-terminated copy of s[0, len), or NULL. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
void arena_free(struct arena *a);

#endif
