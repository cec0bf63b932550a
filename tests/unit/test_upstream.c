#include "../../src/upstream.c"

#include "unit.h"

static struct config *three_servers(void)
{
	char err[256];
	struct config *cfg = config_load_string(
		"t.lua",
		"return { listeners = {{ address = '127.0.0.1:1', pool = 'p' }},\n"
		"  pools = { p = { servers = { '127.0.0.1:11', '127.0.0.1:12', '127.0.0.1:13' },\n"
		"                  connect_backoff = 2 } } }\n",
		err, sizeof(err));
	if (!cfg)
		printf("config: %s\n", err);
	return cfg;
}

TEST(test_round_robin_visits_servers_in_turn)
{
	struct config *cfg = three_servers();
	CHECK(cfg);
	struct loop *loop = loop_create();
	struct upstream up;
	CHECK(upstream_init(&up, loop, cfg) == 0);
	int counts[3] = {0};
	struct server_rt *prev = NULL;
	for (int i = 0; i < 300; i++) {
		struct server_rt *s = upstream_pick(&up, 0, 0);
		CHECK(s && s != prev);
		counts[s - up.pools[0].servers]++;
		prev = s;
	}
	CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);
	upstream_destroy(&up);
	loop_destroy(loop);
	config_unref(cfg);
}

TEST(test_failed_server_is_skipped_until_backoff_ends)
{
	struct config *cfg = three_servers();
	CHECK(cfg);
	struct loop *loop = loop_create();
	struct upstream up;
	CHECK(upstream_init(&up, loop, cfg) == 0);
	struct server_rt *bad = &up.pools[0].servers[1];
	upstream_server_failed(&up, bad, "test");
	for (int i = 0; i < 30; i++)
		CHECK(upstream_pick(&up, 0, 0) != bad);
	CHECK(bad->down_until_ms == loop_now_ms(loop) + 2000); /* connect_backoff */
	bad->down_until_ms = loop_now_ms(loop); /* as if the back-off had run out */
	int seen = 0;
	for (int i = 0; i < 3; i++)
		seen += upstream_pick(&up, 0, 0) == bad;
	CHECK(seen == 1);
	upstream_destroy(&up);
	loop_destroy(loop);
	config_unref(cfg);
}

TEST(test_no_server_when_all_are_backing_off)
{
	struct config *cfg = three_servers();
	CHECK(cfg);
	struct loop *loop = loop_create();
	struct upstream up;
	CHECK(upstream_init(&up, loop, cfg) == 0);
	for (int i = 0; i < 3; i++)
		upstream_server_failed(&up, &up.pools[0].servers[i], "test");
	CHECK(upstream_pick(&up, 0, 0) == NULL);
	upstream_destroy(&up);
	loop_destroy(loop);
	config_unref(cfg);
}

TEST(test_consecutive_failures_take_a_server_out_for_a_growing_cool_down)
{
	char err[256];
	struct config *cfg = config_load_string(
		"t.lua",
		"return { listeners = {{ address = '127.0.0.1:1', pool = 'p' }},\n"
		"  pools = { p = { servers = { '127.0.0.1:11', '127.0.0.1:12' },\n"
		"                  max_fails = 2, connect_backoff = 1, max_backoff = 3 } } }\n",
		err, sizeof(err));
	CHECK(cfg);
	struct loop *loop = loop_create();
	struct upstream up;
	CHECK(upstream_init(&up, loop, cfg) == 0);
	struct server_rt *bad = &up.pools[0].servers[0];
	uint64_t now = loop_now_ms(loop);
	upstream_server_failed(&up, bad, "test");
	CHECK(bad->down_until_ms <= now); /* one failure of two: still in */
	upstream_server_failed(&up, bad, "test");
	CHECK(bad->down_until_ms == now + 1000);
	upstream_server_failed(&up, bad, "test"); /* while out: not counted */
	CHECK(bad->down_until_ms == now + 1000 && bad->fails == 0);
	uint64_t expect[] = {2000, 3000, 3000}; /* doubles, capped at max_backoff */
	for (int i = 0; i < 3; i++) {
		bad->down_until_ms = now; /* as if the cool-down had run out */
		upstream_server_failed(&up, bad, "test");
		upstream_server_failed(&up, bad, "test");
		CHECK(bad->down_until_ms == now + expect[i]);
	}
	bad->down_until_ms = now;
	upstream_server_ok(&up, bad);
	upstream_server_failed(&up, bad, "test");
	upstream_server_failed(&up, bad, "test");
	CHECK(bad->down_until_ms == now + 1000); /* a success starts it over */
	upstream_destroy(&up);
	loop_destroy(loop);
	config_unref(cfg);
}

TEST(test_slow_start_ramps_a_returning_server_up)
{
	char err[256];
	struct config *cfg = config_load_string(
		"t.lua",
		"return { listeners = {{ address = '127.0.0.1:1', pool = 'p' }},\n"
		"  pools = { p = { servers = { '127.0.0.1:11', '127.0.0.1:12' },\n"
		"                  balance = 'weighted', slow_start = 10 } } }\n",
		err, sizeof(err));
	CHECK(cfg);
	struct loop *loop = loop_create();
	struct upstream up;
	CHECK(upstream_init(&up, loop, cfg) == 0);
	struct server_rt *back = &up.pools[0].servers[1];
	uint64_t now = loop_now_ms(loop);
	int picks[3][2] = {{0}};
	uint64_t since[3] = {1000, 5000, 10000}; /* 10%, 50%, 100% of the ramp done */
	for (int phase = 0; phase < 3; phase++) {
		back->back_since_ms = now - since[phase];
		for (int i = 0; i < 1000; i++)
			picks[phase][upstream_pick(&up, 0, 0) - up.pools[0].servers]++;
	}
	/* Weights 1 : 0.1, 1 : 0.5, 1 : 1 of 1000 picks */
	CHECK(picks[0][1] >= 85 && picks[0][1] <= 95);
	CHECK(picks[1][1] >= 328 && picks[1][1] <= 338);
	CHECK(picks[2][1] == 500);
	upstream_destroy(&up);
	loop_destroy(loop);
	config_unref(cfg);
}

int main(void)
{
	RUN(test_round_robin_visits_servers_in_turn);
	RUN(test_failed_server_is_skipped_until_backoff_ends);
	RUN(test_no_server_when_all_are_backing_off);
	RUN(test_consecutive_failures_take_a_server_out_for_a_growing_cool_down);
	RUN(test_slow_start_ramps_a_returning_server_up);
	UNIT_EXIT();
}
