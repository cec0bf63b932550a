/*
 * Byte buffers and the per-worker pool they come from.
 *
 * A buffer owns no memory while it is empty: conn code takes storage from the
 * pool when bytes arrive and gives it back when they are drained, so an idle
 * connection costs no buffer (see DESIGN.md, "conn").
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf_pool {
	size_t size;	 /* bytes per buffer */
	void **free;	 /* stack of free storage blocks */
	size_t nfree;
	size_t max_free; /* beyond this, released blocks go back to malloc */
	size_t in_use;	 /* blocks handed out and not yet returned */
};

/* Bytes live in data[head, tail); data == NULL while the buffer holds none. */
struct buf {
	char *data;
	uint32_t head, tail;
};

void buf_pool_init(struct buf_pool *pool, size_t size, size_t max_free);
/*
 * A block of pool->size bytes, not zeroed, or NULL; it goes back with
 * buf_pool_put(). Pools of other fixed-size objects (transactions, message
 * heads) use these directly.
 */
void *buf_pool_get(struct buf_pool *pool);
void buf_pool_put(struct buf_pool *pool, void *block);
/* Frees every cached block; blocks still in use are the caller's bug. */
void buf_pool_destroy(struct buf_pool *pool);

/* Gives b storage from the pool if it has none; returns -ENOMEM on failure. */
int buf_reserve(struct buf *b, struct buf_pool *pool);
/* Returns b's storage to the pool; any bytes in it are discarded. */
void buf_release(struct buf *b, struct buf_pool *pool);
/* Releases b's storage if it holds no bytes. */
void buf_release_if_empty(struct buf *b, struct buf_pool *pool);

static inline size_t buf_len(const struct buf *b) { return b->tail - b->head; }
static inline char *buf_start(const struct buf *b) { return b->data + b->head; }
static inline char *buf_end(const struct buf *b) { return b->data + b->tail; }
static inline void buf_consume(struct buf *b, size_t n)
{
	b->head += (uint32_t)n;
	if (b->head == b->tail)
		b->head = b->tail = 0;
}
/* Moves the bytes to the start of storage so that the room after them is maximal. */
void buf_make_room(struct buf *b);
/* Appends n bytes; returns -ENOBUFS when they do not fit (nothing is written). */
int buf_append(struct buf *b, const struct buf_pool *pool, const void *src, size_t n);

#endif
