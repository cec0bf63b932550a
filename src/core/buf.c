#include "core/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

void buf_pool_init(struct buf_pool *pool, size_t size, size_t max_free)
{
	pool->size = size;
	pool->free = calloc(max_free ? max_free : 1, sizeof(void *));
	pool->nfree = 0;
	pool->max_free = pool->free ? max_free : 0;
	pool->in_use = 0;
}

void buf_pool_destroy(struct buf_pool *pool)
{
	for (size_t i = 0; i < pool->nfree; i++)
		free(pool->free[i]);
	free(pool->free);
	pool->free = NULL;
	pool->nfree = pool->max_free = 0;
}

void *buf_pool_get(struct buf_pool *pool)
{
	void *block = pool->nfree ? pool->free[--pool->nfree] : malloc(pool->size);
	if (block)
		pool->in_use++;
	return block;
}

void buf_pool_put(struct buf_pool *pool, void *block)
{
	BUG_ON(pool->in_use == 0);
	pool->in_use--;
	if (pool->nfree < pool->max_free)
		pool->free[pool->nfree++] = block;
	else
		free(block);
}

int buf_reserve(struct buf *b, struct buf_pool *pool)
{
	if (b->data)
		return 0;
	if (!(b->data = buf_pool_get(pool)))
		return -ENOMEM;
	b->head = b->tail = 0;
	return 0;
}

void buf_release(struct buf *b, struct buf_pool *pool)
{
	if (!b->data)
		return;
	buf_pool_put(pool, b->data);
	b->data = NULL;
	b->head = b->tail = 0;
}

void buf_release_if_empty(struct buf *b, struct buf_pool *pool)
{
	if (b->data && b->head == b->tail)
		buf_release(b, pool);
}

void buf_make_room(struct buf *b)
{
	if (!b->data || b->head == 0)
		return;
	size_t n = buf_len(b);
	memmove(b->data, b->data + b->head, n);
	b->head = 0;
	b->tail = (uint32_t)n;
}

int buf_append(struct buf *b, const struct buf_pool *pool, const void *src, size_t n)
{
	if (n > pool->size - b->tail)
		return -ENOBUFS;
	memcpy(b->data + b->tail, src, n);
	b->tail += (uint32_t)n;
	return 0;
}
