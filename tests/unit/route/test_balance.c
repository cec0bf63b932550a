#include "route/balance.c"

#include "../unit.h"

#define MAX_SERVERS 16

static const char *const names[MAX_SERVERS] = {
    "10.0.0.1:8080",  "10.0.0.2:8080",	"10.0.0.3:8080",  "10.0.0.4:8080",
    "10.0.0.5:8080",  "10.0.0.6:8080",	"10.0.0.7:8080",  "10.0.0.8:8080",
    "10.0.0.9:8080",  "10.0.0.10:8080", "10.0.0.11:8080", "10.0.0.12:8080",
    "10.0.0.13:8080", "10.0.0.14:8080", "10.0.0.15:8080", "10.0.0.16:8080",
};

/* n usable primaries of weight 1, named after their index. */
static void servers_init(struct balance_server *s, size_t n)
{
	memset(s, 0, n * sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		s[i].name = names[i];
		s[i].weight = 1;
	}
}

static struct balancer balancer_of(enum balance_algo algo, const struct balance_ring *ring)
{
	struct balancer b = {.algo = algo, .ring = ring, .rng = 0x2545f4914f6cdd1d};
	return b;
}

static const enum balance_algo all_algos[] = {BALANCE_ROUND_ROBIN, BALANCE_WEIGHTED,
					      BALANCE_LEAST_CONN, BALANCE_RANDOM2, BALANCE_HASH};

/* Picks once per key "k<i>" (keys matter to BALANCE_HASH only) and counts picks per server. */
static int count_picks(struct balancer *b, struct balance_server *s, size_t n, int picks,
		       int *counts)
{
	char key[16];
	for (int i = 0; i < picks; i++) {
		int len = snprintf(key, sizeof(key), "k%d", i);
		ssize_t p = balance_pick(b, s, n, key, (size_t)len);
		if (p < 0 || (size_t)p >= n)
			return -1;
		counts[p]++;
	}
	return 0;
}

#define NKEYS 100000

/* Server of each key "key-<i>" with this ring; -1 where none is usable. */
static void map_keys(const struct balance_ring *ring, struct balance_server *s, size_t n,
		     int16_t *out)
{
	struct balancer b = balancer_of(BALANCE_HASH, ring);
	char key[32];
	for (int i = 0; i < NKEYS; i++) {
		int len = snprintf(key, sizeof(key), "key-%d", i);
		out[i] = (int16_t)balance_pick(&b, s, n, key, (size_t)len);
	}
}

static int16_t keys_before[NKEYS], keys_after[NKEYS];

/* ---- round-robin ---- */

TEST(test_round_robin_is_even)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].weight = 5; /* ignored by round-robin */
	struct balancer b = balancer_of(BALANCE_ROUND_ROBIN, NULL);
	int counts[3] = {0};
	ssize_t prev = -1;
	for (int i = 0; i < 300; i++) {
		ssize_t p = balance_pick(&b, s, 3, NULL, 0);
		CHECK(p >= 0 && p < 3 && p != prev);
		counts[p]++;
		prev = p;
	}
	CHECK(counts[0] == 100 && counts[1] == 100 && counts[2] == 100);
}

TEST(test_round_robin_skips_down_and_drain_servers)
{
	struct balance_server s[4];
	servers_init(s, 4);
	s[1].down = true;
	s[2].drain = true;
	struct balancer b = balancer_of(BALANCE_ROUND_ROBIN, NULL);
	int counts[4] = {0};
	CHECK(count_picks(&b, s, 4, 100, counts) == 0);
	CHECK(counts[0] == 50 && counts[1] == 0 && counts[2] == 0 && counts[3] == 50);
}

TEST(test_round_robin_never_returns_a_backup_while_a_primary_is_usable)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].backup = true;
	s[2].backup = true;
	struct balancer b = balancer_of(BALANCE_ROUND_ROBIN, NULL);
	for (int i = 0; i < 10; i++)
		CHECK(balance_pick(&b, s, 3, NULL, 0) == 1);
}

TEST(test_round_robin_returns_backups_when_all_primaries_are_down)
{
	struct balance_server s[4];
	servers_init(s, 4);
	s[0].down = true;
	s[1].drain = true;
	s[2].backup = true;
	s[3].backup = true;
	struct balancer b = balancer_of(BALANCE_ROUND_ROBIN, NULL);
	int counts[4] = {0};
	CHECK(count_picks(&b, s, 4, 100, counts) == 0);
	CHECK(counts[2] == 50 && counts[3] == 50);
	s[0].down = false; /* a primary back: backups stop at once */
	for (int i = 0; i < 10; i++)
		CHECK(balance_pick(&b, s, 4, NULL, 0) == 0);
}

TEST(test_round_robin_returns_minus_one_when_nothing_is_usable)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].down = true;
	s[1].drain = true;
	s[2].backup = true;
	s[2].down = true;
	struct balancer b = balancer_of(BALANCE_ROUND_ROBIN, NULL);
	CHECK(balance_pick(&b, s, 3, NULL, 0) == -1);
	CHECK(balance_pick(&b, s, 0, NULL, 0) == -1);
}

/* ---- smooth weighted round-robin ---- */

TEST(test_weighted_gives_each_server_its_weight)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].weight = 5;
	struct balancer b = balancer_of(BALANCE_WEIGHTED, NULL);
	int counts[3] = {0};
	CHECK(count_picks(&b, s, 3, 7000, counts) == 0);
	CHECK(counts[0] == 5000 && counts[1] == 1000 && counts[2] == 1000);
}

TEST(test_weighted_sequence_is_smooth_as_nginx)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].weight = 5;
	struct balancer b = balancer_of(BALANCE_WEIGHTED, NULL);
	const ssize_t nginx[7] = {0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
	for (int i = 0; i < 7; i++)
		CHECK(balance_pick(&b, s, 3, NULL, 0) == nginx[i]);
	CHECK(s[0].current == 0 && s[1].current == 0 && s[2].current == 0); /* one full cycle */
}

/* Any total-weight window of picks holds exactly each weight: no burst, no starvation. */
TEST(test_weighted_every_window_holds_each_share)
{
	enum { N = 4, W = 2 + 3 + 5 + 1, PICKS = 50 * W };
	const uint32_t weights[N] = {2, 3, 5, 1};
	struct balance_server s[N];
	servers_init(s, N);
	for (int i = 0; i < N; i++)
		s[i].weight = weights[i];
	struct balancer b = balancer_of(BALANCE_WEIGHTED, NULL);
	ssize_t seq[PICKS];
	for (int i = 0; i < PICKS; i++) {
		seq[i] = balance_pick(&b, s, N, NULL, 0);
		CHECK(seq[i] >= 0 && seq[i] < N);
	}
	for (int start = 0; start + W <= PICKS; start++) {
		uint32_t counts[N] = {0};
		for (int i = start; i < start + W; i++)
			counts[seq[i]]++;
		for (int i = 0; i < N; i++)
			CHECK(counts[i] == weights[i]);
	}
}

TEST(test_weighted_skips_down_and_drain_servers)
{
	struct balance_server s[4];
	servers_init(s, 4);
	s[0].weight = 5;
	s[0].down = true;
	s[3].drain = true;
	s[3].weight = 9;
	struct balancer b = balancer_of(BALANCE_WEIGHTED, NULL);
	ssize_t prev = -1;
	for (int i = 0; i < 20; i++) {
		ssize_t p = balance_pick(&b, s, 4, NULL, 0);
		CHECK((p == 1 || p == 2) && p != prev);
		prev = p;
	}
}

/* ---- least connections ---- */

TEST(test_least_conn_picks_the_fewest_active)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].active = 3;
	s[1].active = 1;
	s[2].active = 2;
	struct balancer b = balancer_of(BALANCE_LEAST_CONN, NULL);
	for (int i = 0; i < 5; i++)
		CHECK(balance_pick(&b, s, 3, NULL, 0) == 1);
}

TEST(test_least_conn_compares_active_per_weight)
{
	struct balance_server s[2];
	servers_init(s, 2);
	s[0].weight = 4;
	s[0].active = 6; /* 1.5 per weight unit */
	s[1].active = 2; /* 2 */
	struct balancer b = balancer_of(BALANCE_LEAST_CONN, NULL);
	CHECK(balance_pick(&b, s, 2, NULL, 0) == 0);
	s[0].active = 9; /* 2.25 */
	CHECK(balance_pick(&b, s, 2, NULL, 0) == 1);

	/* Callers count in-flight requests: the load then follows the weights, 3:1. */
	s[0].weight = 3;
	s[0].active = s[1].active = 0;
	for (int i = 0; i < 400; i++) {
		ssize_t p = balance_pick(&b, s, 2, NULL, 0);
		CHECK(p == 0 || p == 1);
		s[p].active++;
	}
	CHECK(s[0].active == 300 && s[1].active == 100);
}

TEST(test_least_conn_ties_rotate)
{
	struct balance_server s[4];
	servers_init(s, 4);
	s[2].active = 1;
	struct balancer b = balancer_of(BALANCE_LEAST_CONN, NULL);
	int counts[4] = {0};
	ssize_t prev = -1;
	for (int i = 0; i < 30; i++) {
		ssize_t p = balance_pick(&b, s, 4, NULL, 0);
		CHECK(p >= 0 && p != 2 && p != prev);
		counts[p]++;
		prev = p;
	}
	CHECK(counts[0] == 10 && counts[1] == 10 && counts[3] == 10);
}

TEST(test_least_conn_skips_down_and_drain_servers)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].down = true;
	s[1].drain = true;
	s[2].active = 1000;
	struct balancer b = balancer_of(BALANCE_LEAST_CONN, NULL);
	for (int i = 0; i < 5; i++)
		CHECK(balance_pick(&b, s, 3, NULL, 0) == 2);
}

/* ---- power of two random choices ---- */

TEST(test_random2_picks_every_server_evenly_at_equal_load)
{
	enum { N = 5, PICKS = 50000 };
	struct balance_server s[N];
	servers_init(s, N);
	struct balancer b = balancer_of(BALANCE_RANDOM2, NULL);
	int counts[N] = {0};
	CHECK(count_picks(&b, s, N, PICKS, counts) == 0);
	int lo = PICKS, hi = 0;
	for (int i = 0; i < N; i++) {
		lo = MIN(lo, counts[i]);
		hi = MAX(hi, counts[i]);
	}
	printf("# random2: %d picks over %d servers at equal load: min %d max %d (mean %d)\n",
	       PICKS, N, lo, hi, PICKS / N);
	/* The mean is 10000 and sigma ~90: 5% is far outside chance, well inside a bias bug. */
	CHECK(lo >= PICKS / N * 95 / 100 && hi <= PICKS / N * 105 / 100);
}

TEST(test_random2_never_picks_a_down_or_drain_server)
{
	struct balance_server s[5];
	servers_init(s, 5);
	s[1].down = true;
	s[3].drain = true;
	struct balancer b = balancer_of(BALANCE_RANDOM2, NULL);
	int counts[5] = {0};
	CHECK(count_picks(&b, s, 5, 3000, counts) == 0);
	CHECK(counts[1] == 0 && counts[3] == 0);
	CHECK(counts[0] > 0 && counts[2] > 0 && counts[4] > 0);
}

TEST(test_random2_rarely_picks_a_heavily_loaded_server)
{
	struct balance_server s[4];
	servers_init(s, 4);
	s[0].active = 1000;
	s[1].active = s[2].active = s[3].active = 1;
	struct balancer b = balancer_of(BALANCE_RANDOM2, NULL);
	int counts[4] = {0};
	CHECK(count_picks(&b, s, 4, 10000, counts) == 0);
	printf("# random2: server with 1000 active vs 1: picked %d of 10000\n", counts[0]);
	/* The two choices are distinct, so the loaded one always meets a lighter rival. */
	CHECK(counts[0] == 0);
	/* Unless it is the only server left. */
	s[1].down = s[2].down = s[3].down = true;
	CHECK(balance_pick(&b, s, 4, NULL, 0) == 0);
}

TEST(test_random2_weighs_load_by_weight)
{
	struct balance_server s[2];
	servers_init(s, 2);
	s[0].weight = 10;
	s[0].active = 50; /* 5 per weight unit */
	s[1].active = 6;
	struct balancer b = balancer_of(BALANCE_RANDOM2, NULL);
	for (int i = 0; i < 20; i++)
		CHECK(balance_pick(&b, s, 2, NULL, 0) == 0);
}

/* ---- consistent hashing ---- */

TEST(test_hash_of_null_key_is_hash_of_empty_key)
{
	CHECK(balance_hash(NULL, 0) == balance_hash("", 0));
	CHECK(balance_hash("a", 1) != balance_hash("b", 1));
	/* Ring positions are the documented balance_hash("name#i") >> 32. */
	CHECK(point_pos("10.0.0.1:8080", 37) == ring_pos(balance_hash("10.0.0.1:8080#37", 16)));
	CHECK(point_pos("x", 0) == ring_pos(balance_hash("x#0", 3)));

	struct balance_server s[3];
	servers_init(s, 3);
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 3) == 0);
	struct balancer b = balancer_of(BALANCE_HASH, &ring);
	ssize_t p = balance_pick(&b, s, 3, NULL, 0);
	CHECK(p >= 0 && balance_pick(&b, s, 3, "", 0) == p);
	CHECK(balance_pick(&b, s, 3, NULL, 5) == p); /* NULL is empty whatever the length */
	balance_ring_free(&ring);
}

TEST(test_ring_has_160_points_per_weight_unit_sorted)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[1].weight = 3;
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 3) == 0);
	CHECK(ring.n == 160 * 5);
	size_t owned[3] = {0};
	for (size_t i = 0; i < ring.n; i++) {
		CHECK(ring.server[i] < 3);
		owned[ring.server[i]]++;
		CHECK(i == 0 || ring.hash[i - 1] <= ring.hash[i]);
	}
	CHECK(owned[0] == 160 && owned[1] == 480 && owned[2] == 160);
	/* Memory budget: 8 bytes per point, 1280 bytes per server of weight 1. */
	printf("# ring: %zu points, %zu bytes, for weights 1,3,1\n", ring.n,
	       ring.n * (sizeof(*ring.hash) + sizeof(*ring.server)));
	balance_ring_free(&ring);
	CHECK(ring.n == 0 && ring.hash == NULL && ring.server == NULL);
	balance_ring_free(&ring); /* twice is harmless */
}

TEST(test_ring_of_huge_weights_is_capped_in_proportion)
{
	struct balance_server s[3];
	servers_init(s, 3);
	s[0].weight = 10000; /* 1.6M points wanted */
	s[1].weight = 5000;
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 3) == 0);
	CHECK(ring.n <= BALANCE_RING_MAX_POINTS);
	size_t owned[3] = {0};
	for (size_t i = 0; i < ring.n; i++)
		owned[ring.server[i]]++;
	CHECK(owned[2] >= 1); /* the light server keeps a point */
	CHECK(owned[0] + 2 >= 2 * owned[1] && owned[0] <= 2 * owned[1] + 2); /* 2:1 kept */
	CHECK(owned[0] / owned[2] >= 9000 && owned[2] < 160);		     /* ~10000:1 kept */
	balance_ring_free(&ring);

	CHECK(balance_ring_build(&ring, s, 0) == 0 && ring.n == 0);
	balance_ring_free(&ring);
}

TEST(test_hash_maps_the_same_key_to_the_same_server)
{
	struct balance_server s[10];
	servers_init(s, 10);
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 10) == 0);
	struct balancer b = balancer_of(BALANCE_HASH, &ring);
	char key[32];
	for (int i = 0; i < 1000; i++) {
		int len = snprintf(key, sizeof(key), "client-%d", i);
		ssize_t p = balance_pick(&b, s, 10, key, (size_t)len);
		CHECK(p >= 0 && p < 10);
		/* Other traffic in between changes nothing: the pick has no state. */
		for (int k = 0; k < 3; k++)
			CHECK(balance_pick(&b, s, 10, "other", 5) >= 0);
		CHECK(balance_pick(&b, s, 10, key, (size_t)len) == p);
	}
	/* The same names in a rebuilt ring (a config reload) map keys the same way. */
	struct balance_ring again;
	CHECK(balance_ring_build(&again, s, 10) == 0);
	CHECK(again.n == ring.n && !memcmp(again.hash, ring.hash, ring.n * sizeof(*ring.hash)));
	CHECK(!memcmp(again.server, ring.server, ring.n * sizeof(*ring.server)));
	balance_ring_free(&again);
	balance_ring_free(&ring);
}

TEST(test_hash_spreads_keys_evenly_over_equal_servers)
{
	struct balance_server s[10];
	servers_init(s, 10);
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 10) == 0);
	map_keys(&ring, s, 10, keys_before);
	balance_ring_free(&ring);
	int counts[10] = {0};
	for (int i = 0; i < NKEYS; i++) {
		CHECK(keys_before[i] >= 0 && keys_before[i] < 10);
		counts[keys_before[i]]++;
	}
	int lo = NKEYS, hi = 0;
	for (int i = 0; i < 10; i++) {
		lo = MIN(lo, counts[i]);
		hi = MAX(hi, counts[i]);
	}
	const double mean = NKEYS / 10.0;
	printf("# hash: %d keys over 10 servers: min %d (%+.1f%%) max %d (%+.1f%%) of mean %.0f\n",
	       NKEYS, lo, 100 * (lo - mean) / mean, hi, 100 * (hi - mean) / mean, mean);
	CHECK(lo >= mean * 0.8 && hi <= mean * 1.2);
}

TEST(test_hash_adding_a_server_moves_only_its_share_of_keys)
{
	struct balance_server s[11];
	servers_init(s, 11);
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 10) == 0);
	map_keys(&ring, s, 10, keys_before);
	balance_ring_free(&ring);
	CHECK(balance_ring_build(&ring, s, 11) == 0);
	map_keys(&ring, s, 11, keys_after);
	balance_ring_free(&ring);
	int moved = 0;
	for (int i = 0; i < NKEYS; i++) {
		if (keys_after[i] == keys_before[i])
			continue;
		CHECK(keys_after[i] == 10); /* a key that moves, moves to the new server */
		moved++;
	}
	double frac = (double)moved / NKEYS;
	printf(
	    "# hash: adding an 11th server to 10 remaps %d of %d keys = %.4f (ideal 1/11 = %.4f)\n",
	    moved, NKEYS, frac, 1.0 / 11);
	CHECK(frac <= 1.0 / 11 + 0.03);
	CHECK(frac >= 1.0 / 11 - 0.03); /* and the new server gets its share */
}

TEST(test_hash_server_down_moves_only_its_own_keys)
{
	struct balance_server s[10];
	servers_init(s, 10);
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 10) == 0);
	map_keys(&ring, s, 10, keys_before);
	s[3].down = true;
	map_keys(&ring, s, 10, keys_after);
	int moved = 0, on_down = 0;
	for (int i = 0; i < NKEYS; i++) {
		CHECK(keys_after[i] >= 0 && keys_after[i] != 3);
		if (keys_before[i] == 3)
			on_down++;
		else
			CHECK(keys_after[i] == keys_before[i]);
		moved += keys_after[i] != keys_before[i];
	}
	printf("# hash: marking 1 of 10 servers down remaps %.4f of keys, exactly its own\n",
	       (double)moved / NKEYS);
	CHECK(moved == on_down && on_down > 0);
	/* Back up: every key returns home. */
	s[3].down = false;
	map_keys(&ring, s, 10, keys_after);
	CHECK(!memcmp(keys_before, keys_after, sizeof(keys_before)));
	balance_ring_free(&ring);
}

TEST(test_hash_double_weight_doubles_the_share)
{
	struct balance_server s[10];
	servers_init(s, 10);
	s[0].weight = 2;
	struct balance_ring ring;
	CHECK(balance_ring_build(&ring, s, 10) == 0);
	map_keys(&ring, s, 10, keys_before);
	balance_ring_free(&ring);
	int counts[10] = {0};
	for (int i = 0; i < NKEYS; i++)
		counts[keys_before[i]]++;
	double others = (NKEYS - counts[0]) / 9.0;
	double ratio = counts[0] / others;
	printf("# hash: weight 2 vs 1: %d keys vs %.0f mean of the others, ratio %.2f\n", counts[0],
	       others, ratio);
	CHECK(ratio >= 1.6 && ratio <= 2.4);
}

/* ---- backup and drain, every algorithm ---- */

TEST(test_every_algo_keeps_backups_for_when_no_primary_is_usable)
{
	enum { N = 5 };
	struct balance_server s[N];
	for (size_t a = 0; a < ARRAY_LEN(all_algos); a++) {
		servers_init(s, N);
		s[0].drain = true;
		s[1].down = true;
		s[3].backup = true;
		s[4].backup = true;
		s[4].drain = true;
		struct balance_ring ring;
		CHECK(balance_ring_build(&ring, s, N) == 0);
		struct balancer b = balancer_of(all_algos[a], &ring);
		int counts[N] = {0};
		/* Only primary 2 is usable: it takes everything, backups idle. */
		CHECK(count_picks(&b, s, N, 200, counts) == 0);
		CHECK(counts[2] == 200);
		/* No usable primary: the usable backup 3 takes over, never the drained one. */
		s[2].down = true;
		memset(counts, 0, sizeof(counts));
		CHECK(count_picks(&b, s, N, 200, counts) == 0);
		CHECK(counts[3] == 200);
		/* A drained primary does not count as usable; a backup that is down neither. */
		s[3].down = true;
		CHECK(balance_pick(&b, s, N, "k", 1) == -1);
		/* A primary back up wins over backups at once. */
		s[3].down = false;
		s[1].down = false;
		memset(counts, 0, sizeof(counts));
		CHECK(count_picks(&b, s, N, 200, counts) == 0);
		CHECK(counts[1] == 200);
		CHECK(balance_pick(&b, s, 0, "k", 1) == -1);
		balance_ring_free(&ring);
	}
}

TEST(test_every_algo_never_picks_drained_or_down_servers)
{
	enum { N = 8 };
	struct balance_server s[N];
	for (size_t a = 0; a < ARRAY_LEN(all_algos); a++) {
		servers_init(s, N);
		for (int i = 0; i < N; i++)
			s[i].weight = (uint32_t)(1 + i % 3);
		s[1].drain = true;
		s[4].down = true;
		s[6].drain = true;
		s[6].down = true;
		s[7].backup = true;
		struct balance_ring ring;
		CHECK(balance_ring_build(&ring, s, N) == 0);
		struct balancer b = balancer_of(all_algos[a], &ring);
		int counts[N] = {0};
		CHECK(count_picks(&b, s, N, 2000, counts) == 0);
		CHECK(counts[1] == 0 && counts[4] == 0 && counts[6] == 0 && counts[7] == 0);
		CHECK(counts[0] > 0 && counts[2] > 0 && counts[3] > 0 && counts[5] > 0);
		balance_ring_free(&ring);
	}
}

int main(void)
{
	RUN(test_round_robin_is_even);
	RUN(test_round_robin_skips_down_and_drain_servers);
	RUN(test_round_robin_never_returns_a_backup_while_a_primary_is_usable);
	RUN(test_round_robin_returns_backups_when_all_primaries_are_down);
	RUN(test_round_robin_returns_minus_one_when_nothing_is_usable);
	RUN(test_weighted_gives_each_server_its_weight);
	RUN(test_weighted_sequence_is_smooth_as_nginx);
	RUN(test_weighted_every_window_holds_each_share);
	RUN(test_weighted_skips_down_and_drain_servers);
	RUN(test_least_conn_picks_the_fewest_active);
	RUN(test_least_conn_compares_active_per_weight);
	RUN(test_least_conn_ties_rotate);
	RUN(test_least_conn_skips_down_and_drain_servers);
	RUN(test_random2_picks_every_server_evenly_at_equal_load);
	RUN(test_random2_never_picks_a_down_or_drain_server);
	RUN(test_random2_rarely_picks_a_heavily_loaded_server);
	RUN(test_random2_weighs_load_by_weight);
	RUN(test_hash_of_null_key_is_hash_of_empty_key);
	RUN(test_ring_has_160_points_per_weight_unit_sorted);
	RUN(test_ring_of_huge_weights_is_capped_in_proportion);
	RUN(test_hash_maps_the_same_key_to_the_same_server);
	RUN(test_hash_spreads_keys_evenly_over_equal_servers);
	RUN(test_hash_adding_a_server_moves_only_its_share_of_keys);
	RUN(test_hash_server_down_moves_only_its_own_keys);
	RUN(test_hash_double_weight_doubles_the_share);
	RUN(test_every_algo_keeps_backups_for_when_no_primary_is_usable);
	RUN(test_every_algo_never_picks_drained_or_down_servers);
	UNIT_EXIT();
}
