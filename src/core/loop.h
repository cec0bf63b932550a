/*
 * The event loop of one worker: edge-triggered epoll plus its timers.
 *
 * The loop knows nothing of HTTP. A file descriptor is registered once, with
 * every event it will ever want (edge-triggered), so that no epoll_ctl is
 * needed per request; the handler remembers readiness until it sees EAGAIN.
 * Timers live in one binary heap per loop: O(log n) per change, no syscall.
 */
#ifndef SLUICE_LOOP_H
#define SLUICE_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* Embedded in whatever owns a file descriptor; epoll hands it back. */
struct io_handler {
	void (*on_event)(struct io_handler *h, uint32_t events);
};

struct timer {
	uint64_t expire_ms; /* on the loop's monotonic clock */
	uint32_t heap_index; /* 0 while not armed */
	void (*on_expire)(struct timer *t);
};

/* Runs once per loop turn before the loop sleeps (log flushing and the like). */
struct loop_hook {
	void (*run)(struct loop_hook *hook);
	struct loop_hook *next;
};

/*
 * Work to run on the next loop turn, without waiting for an event: a
 * connection that stopped early to let others run (fairness) resumes here.
 */
struct loop_task {
	void (*run)(struct loop_task *task);
	struct loop_task *next;
	bool queued;
};

/* Returns NULL with errno set on failure. Freed by loop_destroy(). */
struct loop *loop_create(void);
void loop_destroy(struct loop *loop);

/* Registers fd for edge-triggered events; returns 0 or -errno. */
int loop_add_fd(struct loop *loop, int fd, uint32_t events, struct io_handler *h);
/* Its events go to h from here (and events that are due are reported again). 0 or -errno. */
int loop_mod_fd(struct loop *loop, int fd, uint32_t events, struct io_handler *h);

void loop_add_hook(struct loop *loop, struct loop_hook *hook);

/* Queues task to run once on the next turn (no-op if already queued). */
void loop_queue(struct loop *loop, struct loop_task *task);
/* Takes task off the queue, for an owner about to be freed. */
void loop_unqueue(struct loop *loop, struct loop_task *task);

/*
 * Frees p with free() at the end of the current loop turn. Events for a
 * closed object may still be queued in this turn's batch; its memory must
 * stay valid until they are seen (and ignored).
 */
void loop_free_later(struct loop *loop, void *p);

/*
 * For busy_us after each event, the loop polls instead of sleeping: where
 * waking a sleeping CPU is slow (a virtual machine), the next event is
 * handled sooner, at the cost of a CPU kept busy while events come more
 * often than that. 0 (the default) always sleeps.
 */
void loop_set_busy_poll(struct loop *loop, uint32_t busy_us);

/* Runs until loop_stop(); returns 0, or -errno if epoll_wait failed. */
int loop_run(struct loop *loop);
void loop_stop(struct loop *loop);

/* Milliseconds on CLOCK_MONOTONIC, cached once per loop turn. */
uint64_t loop_now_ms(const struct loop *loop);
/* The same instant in microseconds: when the current turn's events came. */
uint64_t loop_now_us(const struct loop *loop);
/* Reads the clock now (for durations finer than a loop turn). */
uint64_t loop_clock_us(void);

/* Arms t to fire at loop_now_ms() + delay_ms; re-arming moves it. */
void timer_arm(struct loop *loop, struct timer *t, uint64_t delay_ms);
void timer_arm_at(struct loop *loop, struct timer *t, uint64_t expire_ms);
void timer_cancel(struct loop *loop, struct timer *t);
/*
 * Hands from's place among the armed timers to to, at from's expiry, and
 * disarms from; if to is armed already, from is only cancelled. For an
 * owner that lends its deadline to another for a while and takes it back:
 * no re-arming each way. Whoever fires early re-arms for its own deadline.
 */
void timer_move(struct loop *loop, struct timer *from, struct timer *to);
static inline bool timer_armed(const struct timer *t) { return t->heap_index != 0; }

#endif
