#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"

#define MAX_EVENTS 256

struct loop {
	int epfd;
	bool stopping;
	uint64_t now_ms, now_us;
	/* 1-based binary min-heap of armed timers, ordered by expire_ms. */
	struct timer **heap;
	uint32_t heap_len, heap_cap;
	struct loop_hook *hooks;
	struct loop_task *tasks;
	void **garbage;
	size_t ngarbage, garbage_cap;
	uint32_t busy_us;
	uint64_t last_event_us; /* while busy polling: when an event last came */
};

uint64_t loop_clock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void update_now(struct loop *loop)
{
	loop->now_us = loop_clock_us();
	loop->now_ms = loop->now_us / 1000u;
}

uint64_t loop_now_ms(const struct loop *loop) { return loop->now_ms; }
uint64_t loop_now_us(const struct loop *loop) { return loop->now_us; }

struct loop *loop_create(void)
{
	struct loop *loop = calloc(1, sizeof(*loop));
	if (!loop)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		int err = errno;
		free(loop);
		errno = err;
		return NULL;
	}
	update_now(loop);
	return loop;
}

void loop_destroy(struct loop *loop)
{
	if (!loop)
		return;
	close(loop->epfd);
	free(loop->heap);
	for (size_t i = 0; i < loop->ngarbage; i++)
		free(loop->garbage[i]);
	free(loop->garbage);
	free(loop);
}

static int register_fd(struct loop *loop, int op, int fd, uint32_t events, struct io_handler *h)
{
	struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = h};
	if (epoll_ctl(loop->epfd, op, fd, &ev) < 0)
		return -errno;
	return 0;
}

int loop_add_fd(struct loop *loop, int fd, uint32_t events, struct io_handler *h)
{
	return register_fd(loop, EPOLL_CTL_ADD, fd, events, h);
}

int loop_mod_fd(struct loop *loop, int fd, uint32_t events, struct io_handler *h)
{
	return register_fd(loop, EPOLL_CTL_MOD, fd, events, h);
}

void loop_add_hook(struct loop *loop, struct loop_hook *hook)
{
	hook->next = loop->hooks;
	loop->hooks = hook;
}

void loop_stop(struct loop *loop) { loop->stopping = true; }

void loop_free_later(struct loop *loop, void *p)
{
	if (loop->ngarbage == loop->garbage_cap) {
		size_t cap = loop->garbage_cap ? loop->garbage_cap * 2 : 64;
		void **g = realloc(loop->garbage, cap * sizeof(*g));
		if (!g)
			abort(); /* cannot keep the memory safe otherwise */
		loop->garbage = g;
		loop->garbage_cap = cap;
	}
	loop->garbage[loop->ngarbage++] = p;
}

void loop_queue(struct loop *loop, struct loop_task *task)
{
	if (task->queued)
		return;
	task->queued = true;
	task->next = loop->tasks;
	loop->tasks = task;
}

void loop_unqueue(struct loop *loop, struct loop_task *task)
{
	if (!task->queued)
		return;
	for (struct loop_task **p = &loop->tasks; *p; p = &(*p)->next)
		if (*p == task) {
			*p = task->next;
			break;
		}
	task->queued = false;
}

static void run_tasks(struct loop *loop)
{
	/* Tasks queued while these run wait for the next turn, after fresh events. */
	struct loop_task *list = loop->tasks;
	loop->tasks = NULL;
	while (list) {
		struct loop_task *task = list;
		list = task->next;
		task->queued = false;
		task->run(task);
	}
}

static void collect_garbage(struct loop *loop)
{
	for (size_t i = 0; i < loop->ngarbage; i++)
		free(loop->garbage[i]);
	loop->ngarbage = 0;
}

/* --- timer heap --- */

static void heap_set(struct loop *loop, uint32_t i, struct timer *t)
{
	loop->heap[i] = t;
	t->heap_index = i;
}

static void heap_up(struct loop *loop, uint32_t i)
{
	struct timer *t = loop->heap[i];
	while (i > 1 && loop->heap[i / 2]->expire_ms > t->expire_ms) {
		heap_set(loop, i, loop->heap[i / 2]);
		i /= 2;
	}
	heap_set(loop, i, t);
}

static void heap_down(struct loop *loop, uint32_t i)
{
	struct timer *t = loop->heap[i];
	for (;;) {
		uint32_t child = 2 * i;
		if (child > loop->heap_len)
			break;
		if (child < loop->heap_len &&
		    loop->heap[child + 1]->expire_ms < loop->heap[child]->expire_ms)
			child++;
		if (loop->heap[child]->expire_ms >= t->expire_ms)
			break;
		heap_set(loop, i, loop->heap[child]);
		i = child;
	}
	heap_set(loop, i, t);
}

static int heap_grow(struct loop *loop)
{
	uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
	struct timer **heap = realloc(loop->heap, (cap + 1) * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	loop->heap = heap;
	loop->heap_cap = cap;
	return 0;
}

void timer_arm_at(struct loop *loop, struct timer *t, uint64_t expire_ms)
{
	if (t->heap_index) {
		uint64_t old = t->expire_ms;
		t->expire_ms = expire_ms;
		if (expire_ms < old)
			heap_up(loop, t->heap_index);
		else if (expire_ms > old)
			heap_down(loop, t->heap_index);
		return;
	}
	if (loop->heap_len == loop->heap_cap && heap_grow(loop) < 0)
		abort(); /* a few bytes per connection; out of memory here is fatal */
	t->expire_ms = expire_ms;
	loop->heap_len++;
	heap_set(loop, loop->heap_len, t);
	heap_up(loop, loop->heap_len);
}

void timer_arm(struct loop *loop, struct timer *t, uint64_t delay_ms)
{
	timer_arm_at(loop, t, loop->now_ms + delay_ms);
}

void timer_cancel(struct loop *loop, struct timer *t)
{
	uint32_t i = t->heap_index;
	if (!i)
		return;
	struct timer *last = loop->heap[loop->heap_len--];
	t->heap_index = 0;
	if (last == t)
		return;
	heap_set(loop, i, last);
	if (i > 1 && loop->heap[i / 2]->expire_ms > last->expire_ms)
		heap_up(loop, i);
	else
		heap_down(loop, i);
}

void timer_move(struct loop *loop, struct timer *from, struct timer *to)
{
	if (!from->heap_index)
		return;
	if (to->heap_index) {
		timer_cancel(loop, from);
		return;
	}
	to->expire_ms = from->expire_ms;
	heap_set(loop, from->heap_index, to);
	from->heap_index = 0;
}

static void run_timers(struct loop *loop)
{
	while (loop->heap_len && loop->heap[1]->expire_ms <= loop->now_ms) {
		struct timer *t = loop->heap[1];
		timer_cancel(loop, t);
		t->on_expire(t);
	}
}

static int next_timeout(const struct loop *loop)
{
	if (!loop->heap_len)
		return -1;
	uint64_t first = loop->heap[1]->expire_ms;
	if (first <= loop->now_ms)
		return 0;
	uint64_t wait = first - loop->now_ms;
	return wait > 60000 ? 60000 : (int)wait;
}

void loop_set_busy_poll(struct loop *loop, uint32_t busy_us) { loop->busy_us = busy_us; }

static int wait_timeout(const struct loop *loop)
{
	if (loop->tasks)
		return 0;
	if (loop->busy_us && loop_clock_us() - loop->last_event_us < loop->busy_us)
		return 0;
	return next_timeout(loop);
}

int loop_run(struct loop *loop)
{
	struct epoll_event events[MAX_EVENTS];
	while (!loop->stopping) {
		for (struct loop_hook *h = loop->hooks; h; h = h->next)
			h->run(h);
		int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_timeout(loop));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n > 0 && loop->busy_us)
			loop->last_event_us = loop_clock_us();
		update_now(loop);
		for (int i = 0; i < n; i++) {
			struct io_handler *h = events[i].data.ptr;
			h->on_event(h, events[i].events);
		}
		run_timers(loop);
		run_tasks(loop);
		collect_garbage(loop);
	}
	for (struct loop_hook *h = loop->hooks; h; h = h->next)
		h->run(h);
	return 0;
}
