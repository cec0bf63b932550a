#include "core/loop.c"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"

#include "../unit.h"

static int fired_order[64];
static int nfired;

struct numbered_timer {
	struct timer t;
	int id;
};

static void record(struct timer *t)
{
	fired_order[nfired++] = container_of(t, struct numbered_timer, t)->id;
}

TEST(test_timers_fire_in_deadline_order)
{
	struct loop *loop = loop_create();
	struct numbered_timer ts[10];
	int delays[10] = {50, 10, 30, 90, 20, 70, 0, 60, 40, 80};
	nfired = 0;
	for (int i = 0; i < 10; i++) {
		ts[i] = (struct numbered_timer){.t = {.on_expire = record}, .id = delays[i]};
		timer_arm(loop, &ts[i].t, (uint64_t)delays[i]);
	}
	loop->now_ms += 1000;
	run_timers(loop);
	CHECK(nfired == 10);
	for (int i = 1; i < 10; i++)
		CHECK(fired_order[i - 1] <= fired_order[i]);
	loop_destroy(loop);
}

TEST(test_timer_not_due_does_not_fire)
{
	struct loop *loop = loop_create();
	struct numbered_timer a = {.t = {.on_expire = record}, .id = 1};
	nfired = 0;
	timer_arm(loop, &a.t, 100);
	loop->now_ms += 99;
	run_timers(loop);
	CHECK(nfired == 0 && timer_armed(&a.t));
	loop->now_ms += 1;
	run_timers(loop);
	CHECK(nfired == 1 && !timer_armed(&a.t));
	loop_destroy(loop);
}

TEST(test_cancel_and_rearm_keep_heap_consistent)
{
	struct loop *loop = loop_create();
	enum { N = 500 };
	struct numbered_timer *ts = calloc(N, sizeof(*ts));
	srand(7);
	for (int i = 0; i < N; i++) {
		ts[i] = (struct numbered_timer){.t = {.on_expire = record}, .id = i};
		timer_arm(loop, &ts[i].t, (uint64_t)(rand() % 1000));
	}
	/* Cancel a third, move a third later and a third earlier. */
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0)
			timer_cancel(loop, &ts[i].t);
		else if (i % 3 == 1)
			timer_arm(loop, &ts[i].t, (uint64_t)(1000 + rand() % 1000));
		else
			timer_arm(loop, &ts[i].t, (uint64_t)(rand() % 10));
	}
	uint64_t last = 0;
	int count = 0;
	while (loop->heap_len) {
		struct timer *t = loop->heap[1];
		CHECK(t->expire_ms >= last);
		last = t->expire_ms;
		timer_cancel(loop, t);
		count++;
	}
	CHECK(count == N - (N + 2) / 3);
	free(ts);
	loop_destroy(loop);
}

TEST(test_a_moved_timer_fires_in_its_place_and_the_lender_is_free)
{
	struct loop *loop = loop_create();
	struct numbered_timer lender = {.t = {.on_expire = record}, .id = 1};
	struct numbered_timer borrower = {.t = {.on_expire = record}, .id = 2};
	struct numbered_timer other = {.t = {.on_expire = record}, .id = 3};
	nfired = 0;
	timer_arm(loop, &lender.t, 50);
	timer_arm(loop, &other.t, 20);
	timer_move(loop, &lender.t, &borrower.t);
	CHECK(!timer_armed(&lender.t) && timer_armed(&borrower.t));
	CHECK(borrower.t.expire_ms == loop->now_ms + 50 && loop->heap_len == 2);
	/* Back and forth again: still one place, at the same time. */
	timer_move(loop, &borrower.t, &lender.t);
	timer_move(loop, &lender.t, &borrower.t);
	timer_move(loop, &lender.t, &borrower.t); /* nothing to move */
	CHECK(loop->heap_len == 2);
	loop->now_ms += 100;
	run_timers(loop);
	CHECK(nfired == 2 && fired_order[0] == 3 && fired_order[1] == 2);
	/* To an armed timer, a move only cancels. */
	nfired = 0;
	timer_arm(loop, &lender.t, 10);
	timer_arm(loop, &borrower.t, 30);
	timer_move(loop, &lender.t, &borrower.t);
	CHECK(!timer_armed(&lender.t) && borrower.t.expire_ms == loop->now_ms + 30);
	CHECK(loop->heap_len == 1);
	loop_destroy(loop);
}

static int task_runs;
static void count_task(struct loop_task *task)
{
	(void)task;
	task_runs++;
}

TEST(test_queued_task_runs_once_per_queueing)
{
	struct loop *loop = loop_create();
	struct loop_task task = {.run = count_task};
	task_runs = 0;
	loop_queue(loop, &task);
	loop_queue(loop, &task);
	run_tasks(loop);
	CHECK(task_runs == 1);
	loop_queue(loop, &task);
	loop_unqueue(loop, &task);
	run_tasks(loop);
	CHECK(task_runs == 1);
	loop_destroy(loop);
}

/* --- conns on the loop --- */

struct owner {
	struct conn conn;
	struct loop *loop;
	int events;
};

static struct owner *woken;

static void owner_on_io(struct conn *c)
{
	struct owner *o = container_of(c, struct owner, conn);
	o->events++;
	woken = o;
	loop_stop(o->loop);
}

TEST(test_a_moved_conn_reports_to_its_new_owner_only)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	struct loop *loop = loop_create();
	struct owner *from = calloc(1, sizeof(*from)), *to = calloc(1, sizeof(*to));
	from->loop = to->loop = loop;
	CHECK(conn_attach(&from->conn, loop, sv[0], owner_on_io) == 0);
	/* The first event (writable) goes to the first owner. */
	CHECK(loop_run(loop) == 0 && woken == from);
	from->conn.flags |= CONN_READABLE; /* state travels with the conn */
	loop->stopping = false;
	CHECK(conn_move(&to->conn, &from->conn, loop, owner_on_io) == 0);
	CHECK(from->conn.fd == -1 && to->conn.fd == sv[0] && (to->conn.flags & CONN_READABLE));
	/* Its old place may be freed: nothing reaches it any more. */
	memset(&from->conn, 0xa5, sizeof(from->conn));
	free(from);
	CHECK(write(sv[1], "x", 1) == 1);
	woken = NULL;
	CHECK(loop_run(loop) == 0 && woken == to && to->events == 1);
	char c;
	CHECK(conn_recv(&to->conn, &c, 1) == 1 && c == 'x');
	conn_close(&to->conn);
	free(to);
	close(sv[1]);
	loop_destroy(loop);
}

int main(void)
{
	RUN(test_timers_fire_in_deadline_order);
	RUN(test_timer_not_due_does_not_fire);
	RUN(test_cancel_and_rearm_keep_heap_consistent);
	RUN(test_a_moved_timer_fires_in_its_place_and_the_lender_is_free);
	RUN(test_queued_task_runs_once_per_queueing);
	RUN(test_a_moved_conn_reports_to_its_new_owner_only);
	UNIT_EXIT();
}
