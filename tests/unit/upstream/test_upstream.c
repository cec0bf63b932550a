#include "upstream/upstream.c"

#include <unistd.h>

#include "../loopback.h"
#include "../unit.h"

/* One pick for a new request with no key, whose slot (if counted) is given back at once. */
static struct server_rt *pick(struct upstream *up)
{
	struct upstream_request r;
	bool busy;
	upstream_request_init(&r, 0, 0, -1, NULL);
	struct server_rt *s = upstream_pick(up, &r, &busy);
	if (s)
		unclaim(up, s->prt, s);
	return s;
}

static struct config *load(const char *pool_fields)
{
	char src[1024], err[256];
	snprintf(src, sizeof(src),
		 "return { listeners = {{ address = '127.0.0.1:1', pool = 'p' }},\n"
		 "  pools = { p = { %s } } }\n",
		 pool_fields);
	struct config *cfg = config_load_string("t.lua", src, err, sizeof(err));
	if (!cfg)
		printf("config: %s\n", err);
	return cfg;
}

#define THREE_SERVERS \
	"servers = { '127.0.0.1:11', '127.0.0.1:12', '127.0.0.1:13' }, connect_backoff = 2"

/* The state of pool p of a config for worker 0 of 1, on a loop of its own. */
struct fixture {
	struct config *cfg;
	struct loop *loop;
	struct shared sh;
	struct shared_gen *sg;
	struct upstream up;
};

static bool setup(struct fixture *f, const char *pool_fields)
{
	char err[256];
	memset(f, 0, sizeof(*f));
	f->cfg = load(pool_fields);
	f->loop = f->cfg ? loop_create() : NULL;
	if (!f->loop || shared_init(&f->sh, 1) < 0)
		return false;
	if (!(f->sg = shared_gen_build(&f->sh, f->cfg, NULL, err, sizeof(err)))) {
		printf("shared_gen_build: %s\n", err);
		return false;
	}
	return upstream_init(&f->up, f->loop, f->sg, 0) == 0;
}

static void teardown(struct fixture *f)
{
	upstream_destroy(&f->up);
	shared_gen_unref(f->sg);
	shared_destroy(&f->sh);
	loop_destroy(f->loop);
	config_unref(f->cfg);
}

TEST(test_round_robin_visits_servers_in_turn)
{
	struct fixture f;
	CHECK(setup(&f, THREE_SERVERS));
	struct upstream *up = &f.up;
	int counts[3] = {0};
	struct server_rt *prev = NULL;
	for (int i = 0; i < 300; i++) {
		struct server_rt *s = pick(up);
		CHECK(s && s != prev);
		counts[s - up->pools[0].servers]++;
		prev = s;
	}
	CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);
	teardown(&f);
}

TEST(test_failed_server_is_skipped_until_backoff_ends)
{
	struct fixture f;
	CHECK(setup(&f, THREE_SERVERS));
	struct upstream *up = &f.up;
	struct server_rt *bad = &up->pools[0].servers[1];
	upstream_server_failed(up, bad, "test");
	for (int i = 0; i < 30; i++)
		CHECK(pick(up) != bad);
	CHECK(bad->st->down_until_ms == loop_now_ms(f.loop) + 2000); /* connect_backoff */
	bad->st->down_until_ms = loop_now_ms(f.loop); /* as if the back-off had run out */
	int seen = 0;
	for (int i = 0; i < 3; i++)
		seen += pick(up) == bad;
	CHECK(seen == 1);
	teardown(&f);
}

TEST(test_no_server_when_all_are_backing_off)
{
	struct fixture f;
	CHECK(setup(&f, THREE_SERVERS));
	struct upstream *up = &f.up;
	for (int i = 0; i < 3; i++)
		upstream_server_failed(up, &up->pools[0].servers[i], "test");
	CHECK(pick(up) == NULL);
	teardown(&f);
}

TEST(test_consecutive_failures_take_a_server_out_for_a_growing_cool_down)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { '127.0.0.1:11', '127.0.0.1:12' },"
				  " max_fails = 2, connect_backoff = 1, max_backoff = 3"));
	struct upstream *up = &f.up;
	struct server_rt *bad = &up->pools[0].servers[0];
	uint64_t now = loop_now_ms(f.loop);
	upstream_server_failed(up, bad, "test");
	CHECK(bad->st->down_until_ms <= now); /* one failure of two: still in */
	upstream_server_failed(up, bad, "test");
	CHECK(bad->st->down_until_ms == now + 1000);
	upstream_server_failed(up, bad, "test"); /* while out: not counted */
	CHECK(bad->st->down_until_ms == now + 1000 && bad->st->fails == 0);
	uint64_t expect[] = {2000, 3000, 3000}; /* doubles, capped at max_backoff */
	for (int i = 0; i < 3; i++) {
		bad->st->down_until_ms = now; /* as if the cool-down had run out */
		upstream_server_failed(up, bad, "test");
		upstream_server_failed(up, bad, "test");
		CHECK(bad->st->down_until_ms == now + expect[i]);
	}
	bad->st->down_until_ms = now;
	upstream_server_ok(up, bad);
	upstream_server_failed(up, bad, "test");
	upstream_server_failed(up, bad, "test");
	CHECK(bad->st->down_until_ms == now + 1000); /* a success starts it over */
	teardown(&f);
}

TEST(test_slow_start_ramps_a_returning_server_up)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { '127.0.0.1:11', '127.0.0.1:12' },"
				  " balance = 'weighted', slow_start = 10"));
	struct upstream *up = &f.up;
	struct server_rt *back = &up->pools[0].servers[1];
	uint64_t now = loop_now_ms(f.loop);
	int picks[3][2] = {{0}};
	uint64_t since[3] = {1000, 5000, 10000}; /* 10%, 50%, 100% of the ramp done */
	for (int phase = 0; phase < 3; phase++) {
		back->st->back_since_ms = now - since[phase];
		for (int i = 0; i < 1000; i++)
			picks[phase][pick(up) - up->pools[0].servers]++;
	}
	/* Weights 1 : 0.1, 1 : 0.5, 1 : 1 of 1000 picks */
	CHECK(picks[0][1] >= 85 && picks[0][1] <= 95);
	CHECK(picks[1][1] >= 328 && picks[1][1] <= 338);
	CHECK(picks[2][1] == 500);
	teardown(&f);
}

/* Counts a picked request as running, as upstream_acquire() does. */
static void lend(struct server_rt *s)
{
	s->bal->active++;
	s->prt->active++;
}

/* Takes a slot as a pick does, and lends it. */
static bool occupy(struct server_rt *s)
{
	if (!claim(s->prt, s))
		return false;
	lend(s);
	return true;
}

/* Frees it, as upstream_release() does. */
static void vacate(struct upstream *up, struct server_rt *s)
{
	s->bal->active--;
	s->prt->active--;
	unclaim(up, s->prt, s);
}

static int woken;
static void count_wake(struct upstream_request *r)
{
	(void)r;
	woken++;
}

TEST(test_server_at_max_connections_is_skipped_then_busy)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { { address = '127.0.0.1:11', max_connections = 1 },"
				  " { address = '127.0.0.1:12', max_connections = 1 } }"));
	struct upstream *up = &f.up;
	struct server_rt *a = &up->pools[0].servers[0], *b = &up->pools[0].servers[1];
	CHECK(occupy(a));
	for (int i = 0; i < 4; i++)
		CHECK(pick(up) == b);
	CHECK(occupy(b));
	struct upstream_request r;
	bool busy = false;
	upstream_request_init(&r, 0, 0, -1, count_wake);
	CHECK(upstream_pick(up, &r, &busy) == NULL && busy);
	teardown(&f);
}

TEST(test_queue_grants_freed_slots_oldest_first)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { { address = '127.0.0.1:11', max_connections = 1 } },"
				  " queue = { size = 2 }"));
	struct upstream *up = &f.up;
	struct server_rt *a = &up->pools[0].servers[0];
	CHECK(occupy(a));
	struct upstream_request r[3];
	bool busy;
	for (int i = 0; i < 3; i++) {
		upstream_request_init(&r[i], 0, 0, -1, count_wake);
		CHECK(upstream_pick(up, &r[i], &busy) == NULL && busy);
	}
	CHECK(upstream_enqueue(up, &r[0]) == 0 && upstream_enqueue(up, &r[1]) == 0);
	CHECK(upstream_enqueue(up, &r[2]) == -ENOBUFS); /* queue.size */
	woken = 0;
	vacate(up, a);
	CHECK(woken == 1 && r[0].granted == a && !upstream_queued(&r[0]) && upstream_queued(&r[1]));
	/* The granted slot is held: a newcomer cannot take it. */
	struct upstream_request late;
	upstream_request_init(&late, 0, 0, -1, count_wake);
	CHECK(upstream_pick(up, &late, &busy) == NULL && busy);
	/* Given up unused, it goes to the next in line. */
	upstream_dequeue(up, &r[0]);
	CHECK(woken == 2 && r[1].granted == a && !r[0].granted);
	CHECK(upstream_pick(up, &r[1], &busy) == a && !r[1].granted && a->st->claimed == 1);
	teardown(&f);
}

TEST(test_pool_max_connections_queues_while_servers_have_room)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { '127.0.0.1:11', '127.0.0.1:12' }, max_connections = 2"));
	struct upstream *up = &f.up;
	occupy(pick(up));
	occupy(pick(up));
	struct upstream_request r;
	bool busy;
	upstream_request_init(&r, 0, 0, -1, count_wake);
	CHECK(upstream_pick(up, &r, &busy) == NULL && busy);
	CHECK(upstream_enqueue(up, &r) == 0);
	woken = 0;
	vacate(up, &up->pools[0].servers[1]);
	CHECK(woken == 1 && r.granted);
	teardown(&f);
}

TEST(test_tried_servers_are_not_picked_again)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { '127.0.0.1:11', '127.0.0.1:12', '127.0.0.1:13' },"
				  " balance = 'hash'"));
	struct upstream *up = &f.up;
	struct upstream_request r;
	bool busy;
	upstream_request_init(&r, 0, 42, -1, count_wake);
	struct server_rt *seen[3];
	for (int i = 0; i < 3; i++) {
		CHECK(upstream_untried_left(up, &r));
		seen[i] = upstream_pick(up, &r, &busy);
		CHECK(seen[i]);
		for (int k = 0; k < i; k++)
			CHECK(seen[k] != seen[i]);
	}
	CHECK(!upstream_untried_left(up, &r));
	CHECK(upstream_pick(up, &r, &busy) == NULL && !busy);
	teardown(&f);
}

TEST(test_backups_stay_out_while_primaries_are_only_busy)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { { address = '127.0.0.1:11', max_connections = 1 },"
				  " { address = '127.0.0.1:12', backup = true } }"));
	struct upstream *up = &f.up;
	struct server_rt *primary = &up->pools[0].servers[0], *backup = &up->pools[0].servers[1];
	CHECK(occupy(primary));
	struct upstream_request r;
	bool busy;
	upstream_request_init(&r, 0, 0, -1, count_wake);
	CHECK(upstream_pick(up, &r, &busy) == NULL && busy);
	upstream_server_failed(up, primary, "test"); /* down, not busy: the backup stands in */
	CHECK(upstream_pick(up, &r, &busy) == backup);
	teardown(&f);
}

TEST(test_retry_budget_allows_its_share_of_requests)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { '127.0.0.1:11' }, retry = { budget = 20, budget_min = 0 }"));
	struct upstream *up = &f.up;
	CHECK(!upstream_may_retry(up, 0));
	for (int i = 0; i < 100; i++)
		upstream_count_request(up, 0);
	int allowed = 0;
	for (int i = 0; i < 50; i++)
		allowed += upstream_may_retry(up, 0);
	CHECK(allowed == 20);
	/* A window later the old requests and retries no longer count. */
	for (size_t i = 0; i < RETRY_WINDOW_S; i++)
		up->pools[0].st->budget[0].second[i] -= RETRY_WINDOW_S;
	CHECK(!upstream_may_retry(up, 0));
	teardown(&f);

	CHECK(setup(&f, "servers = { '127.0.0.1:11' }, retry = { budget = 0, budget_min = 3 }"));
	allowed = 0;
	for (int i = 0; i < 100; i++)
		allowed += upstream_may_retry(up, 0);
	CHECK(allowed == 3 * RETRY_WINDOW_S); /* budget_min per second, over the window */
	teardown(&f);
}

TEST(test_round_robin_pool_ramps_with_slow_start)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { { address = '127.0.0.1:11', weight = 5 },"
				  " '127.0.0.1:12' }, slow_start = 10"));
	struct upstream *up = &f.up;
	int picks[2] = {0};
	for (int i = 0; i < 1000; i++)
		picks[pick(up) - up->pools[0].servers]++;
	CHECK(picks[0] == 500 && picks[1] == 500); /* round robin: weights do not count */
	up->pools[0].servers[1].st->back_since_ms = loop_now_ms(f.loop) - 1000; /* 10% into the ramp */
	picks[0] = picks[1] = 0;
	for (int i = 0; i < 1000; i++)
		picks[pick(up) - up->pools[0].servers]++;
	CHECK(picks[1] >= 85 && picks[1] <= 95);
	teardown(&f);
}

TEST(test_a_waiter_that_cannot_use_a_free_server_does_not_hold_up_newcomers)
{
	struct fixture f;
	CHECK(setup(&f, "servers = { { address = '127.0.0.1:11', max_connections = 1 },"
				  " { address = '127.0.0.1:12', max_connections = 1 } }"));
	struct upstream *up = &f.up;
	struct server_rt *a = &up->pools[0].servers[0], *b = &up->pools[0].servers[1];
	CHECK(occupy(a));
	/* A retry that tried b already: only a will do, and a is busy. */
	struct upstream_request retry, later, newcomer;
	bool busy;
	upstream_request_init(&retry, 0, 0, -1, count_wake);
	retry.tried[retry.ntried++] = 1;
	retry.started = true;
	CHECK(upstream_pick(up, &retry, &busy) == NULL && busy);
	upstream_request_init(&later, 0, 0, -1, count_wake);
	CHECK(upstream_enqueue(up, &later) == 0); /* a newcomer queued earlier gets b at once */
	CHECK(later.granted == b);
	CHECK(upstream_enqueue(up, &retry) == 0 && upstream_queued(&retry));
	CHECK(up->pools[0].queue.next == &retry.queue_link); /* a retry waits first in line */
	upstream_dequeue(up, &later);
	upstream_request_init(&newcomer, 0, 0, -1, count_wake);
	CHECK(upstream_pick(up, &newcomer, &busy) == b);
	lend(b);
	woken = 0;
	vacate(up, a);
	CHECK(woken == 1 && retry.granted == a);
	/* A grant whose server went out before it was used is chosen again. */
	upstream_server_failed(up, a, "test");
	CHECK(upstream_pick(up, &retry, &busy) == NULL && !busy && !retry.granted && a->st->claimed == 0);
	teardown(&f);
}

static void ignore_io(struct bconn *bc) { (void)bc; }

/* n connections lent at once to s, then all given back for reuse. */
static bool lend_at_once(struct upstream *up, struct server_rt *s, uint32_t n)
{
	struct bconn *lent[16];
	int err;
	for (uint32_t i = 0; i < n; i++)
		if (!(lent[i] = upstream_acquire(up, s, up, ignore_io, &err)))
			return false;
	for (uint32_t i = 0; i < n; i++)
		upstream_release(lent[i], true);
	return true;
}

/* A pool of one server that accepts connects (a listening socket *lfd), with extra fields. */
static bool setup_reachable(struct fixture *f, int *lfd, const char *extra)
{
	int port;
	char fields[128];
	if ((*lfd = listen_loopback(&port)) < 0)
		return false;
	snprintf(fields, sizeof(fields), "servers = { '127.0.0.1:%d' }%s", port, extra);
	return setup(f, fields);
}

/* What the loop does when the purge timer of p expires. */
static void purge_now(struct upstream *up, struct pool_rt *p)
{
	timer_cancel(up->loop, &p->purge_timer);
	purge_idle(&p->purge_timer);
}

TEST(test_idle_connections_beyond_recent_need_are_halved_each_purge)
{
	int lfd;
	struct fixture f;
	CHECK(setup_reachable(&f, &lfd, ""));
	struct pool_rt *p = &f.up.pools[0];
	struct server_rt *s = &p->servers[0];
	CHECK(lend_at_once(&f.up, s, 10));
	CHECK(s->nidle == 10 && timer_armed(&p->purge_timer));
	/* All 10 were needed in this period: kept through it and the next. */
	purge_now(&f.up, p);
	CHECK(s->nidle == 10);
	purge_now(&f.up, p);
	CHECK(s->nidle == 10);
	/* Then half of the surplus goes each period, not all at once. */
	purge_now(&f.up, p);
	CHECK(s->nidle == 5);
	purge_now(&f.up, p);
	CHECK(s->nidle == 2);
	purge_now(&f.up, p);
	CHECK(s->nidle == 1);
	purge_now(&f.up, p);
	CHECK(s->nidle == 0 && !timer_armed(&p->purge_timer));
	/* A period needs the most lent at once in it: 4, then 1, keeps 4. */
	CHECK(lend_at_once(&f.up, s, 4));
	CHECK(lend_at_once(&f.up, s, 1));
	purge_now(&f.up, p);
	CHECK(s->nidle == 4);
	CHECK(lend_at_once(&f.up, s, 1));
	purge_now(&f.up, p); /* this period needed 1, the one before 4 */
	CHECK(s->nidle == 4);
	purge_now(&f.up, p); /* 1 needed: 2 of the 3 beyond it go */
	CHECK(s->nidle == 2);
	teardown(&f);
	close(lfd);
}

TEST(test_keepalive_caps_idle_connections_per_server)
{
	int lfd;
	struct fixture f;
	CHECK(setup_reachable(&f, &lfd, ", keepalive = 3"));
	struct server_rt *s = &f.up.pools[0].servers[0];
	CHECK(lend_at_once(&f.up, s, 8));
	CHECK(s->nidle == 3 && s->bal->active == 0);
	teardown(&f);
	close(lfd);
}

int main(void)
{
	RUN(test_round_robin_visits_servers_in_turn);
	RUN(test_failed_server_is_skipped_until_backoff_ends);
	RUN(test_no_server_when_all_are_backing_off);
	RUN(test_consecutive_failures_take_a_server_out_for_a_growing_cool_down);
	RUN(test_slow_start_ramps_a_returning_server_up);
	RUN(test_server_at_max_connections_is_skipped_then_busy);
	RUN(test_queue_grants_freed_slots_oldest_first);
	RUN(test_pool_max_connections_queues_while_servers_have_room);
	RUN(test_tried_servers_are_not_picked_again);
	RUN(test_backups_stay_out_while_primaries_are_only_busy);
	RUN(test_retry_budget_allows_its_share_of_requests);
	RUN(test_round_robin_pool_ramps_with_slow_start);
	RUN(test_a_waiter_that_cannot_use_a_free_server_does_not_hold_up_newcomers);
	RUN(test_idle_connections_beyond_recent_need_are_halved_each_purge);
	RUN(test_keepalive_caps_idle_connections_per_server);
	UNIT_EXIT();
}
