/* Small definitions every module shares. */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define SLUICE_VERSION "0.1.0"

/* Invariants the code relies on; checked in debug and sanitizer builds. */
#define BUG_ON(cond) assert(!(cond))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
static inline size_t MIN_SIZE(size_t a, size_t b) { return a < b ? a : b; }
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/*
 * The I/O convention of every read/write function in sluice (nginx's
 * NGX_AGAIN, HAProxy's tri-state returns):
 *   > 0  progress: that many bytes moved
 *   = 0  would block: try again on the next readiness event
 *   < 0  the transfer is over: IO_EOF for an orderly close by the peer,
 *        otherwise a negative errno
 */
#define IO_EOF (-1000000)

/* Intrusive doubly linked list, as in the Linux kernel and HAProxy. */
struct list {
	struct list *next, *prev;
};

static inline void list_init(struct list *l) { l->next = l->prev = l; }
static inline int list_empty(const struct list *l) { return l->next == l; }
static inline void list_insert_tail(struct list *head, struct list *item)
{
	item->prev = head->prev;
	item->next = head;
	head->prev->next = item;
	head->prev = item;
}
static inline void list_insert_after(struct list *head, struct list *item)
{
	list_insert_tail(head->next, item);
}
static inline void list_remove(struct list *item)
{
	item->prev->next = item->next;
	item->next->prev = item->prev;
	item->next = item->prev = item;
}

#endif
