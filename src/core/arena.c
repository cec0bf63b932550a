#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (256 * 1024)
#define ARENA_ALIGN 16

struct arena_block {
	struct arena_block *next;
	_Alignas(ARENA_ALIGN) char data[];
};

void *arena_alloc(struct arena *a, size_t size)
{
	size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (size > ARENA_BLOCK / 4) {
		/* A big one-off (a hash table): calloc, whose fresh pages are zero already. */
		struct arena_block *b = calloc(1, sizeof(*b) + size);
		if (!b)
			return NULL;
		b->next = a->blocks;
		a->blocks = b;
		return b->data;
	}
	if (!a->next || (size_t)(a->end - a->next) < size) {
		struct arena_block *b = malloc(sizeof(*b) + ARENA_BLOCK);
		if (!b)
			return NULL;
		b->next = a->blocks;
		a->blocks = b;
		a->next = b->data;
		a->end = b->data + ARENA_BLOCK;
	}
	void *p = a->next;
	a->next += size;
	memset(p, 0, size);
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *p = arena_alloc(a, len + 1);
	if (p)
		memcpy(p, s, len);
	return p;
}

void arena_free(struct arena *a)
{
	while (a->blocks) {
		struct arena_block *b = a->blocks;
		a->blocks = b->next;
		free(b);
	}
	a->next = a->end = NULL;
}
