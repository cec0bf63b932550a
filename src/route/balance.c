#include "route/balance.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const balance_algo_names[BALANCE_ALGOS] = {
	[BALANCE_ROUND_ROBIN] = "round_robin", [BALANCE_WEIGHTED] = "weighted",
	[BALANCE_LEAST_CONN] = "least_conn",   [BALANCE_RANDOM2] = "random2",
	[BALANCE_HASH] = "hash",
};

#include "core/common.h"

/*
 * Ketama's 160 points per server keep each server's share of keys within a
 * few percent of its weight; the cap bounds a ring of huge weights to 8 MiB
 * and its build time, at the price of scaling every server's points.
 */
#define BALANCE_POINTS_PER_WEIGHT 160
#define BALANCE_RING_MAX_POINTS	  (1u << 20)

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME  UINT64_C(0x100000001b3)

static uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < len; i++) {
		h ^= c[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* FNV-1a alone barely mixes its last bytes ("name#1" vs "name#2"); murmur3's fmix64 does. */
static uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	k *= UINT64_C(0xc4ceb9fe1a85ec53);
	k ^= k >> 33;
	return k;
}

uint64_t balance_hash(const void *key, size_t len)
{
	return fmix64(fnv1a(FNV_OFFSET, key, len));
}

/* The ring position of a hash: its high bits, the best mixed. */
static uint32_t ring_pos(uint64_t h)
{
	return (uint32_t)(h >> 32);
}

/* Position of point i of a server: ring_pos(balance_hash("name#i")), built without a buffer. */
static uint32_t point_pos(const char *name, uint32_t i)
{
	char digits[10];
	size_t nd = 0;
	do {
		digits[sizeof(digits) - ++nd] = (char)('0' + i % 10);
		i /= 10;
	} while (i);
	uint64_t h = fnv1a(FNV_OFFSET, name, strlen(name));
	h = fnv1a(h, "#", 1);
	h = fnv1a(h, digits + sizeof(digits) - nd, nd);
	return ring_pos(fmix64(h));
}

/* The caller's contract is weight >= 1; reading 0 as 1 keeps a zeroed struct from starving. */
static uint32_t weight_of(const struct balance_server *s)
{
	return s->weight ? s->weight : 1;
}

static uint32_t ring_points(const struct balance_server *s, uint64_t total)
{
	uint64_t want = (uint64_t)BALANCE_POINTS_PER_WEIGHT * weight_of(s);
	if (total <= BALANCE_RING_MAX_POINTS)
		return (uint32_t)want;
	/* want < 2^40 and the cap is 2^20: the product fits. Every server keeps a point. */
	uint64_t scaled = want * BALANCE_RING_MAX_POINTS / total;
	return scaled ? (uint32_t)scaled : 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

int balance_ring_build(struct balance_ring *ring, const struct balance_server *servers, size_t n)
{
	memset(ring, 0, sizeof(*ring));
	if (n > UINT32_MAX)
		return -EINVAL;
	uint64_t want = 0;
	for (size_t i = 0; i < n; i++)
		want += (uint64_t)BALANCE_POINTS_PER_WEIGHT * weight_of(&servers[i]);
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += ring_points(&servers[i], want);
	if (total == 0)
		return 0;

	/* Sort (position, server) pairs as one key: equal positions then order by index. */
	uint64_t *pts = malloc(total * sizeof(*pts));
	if (!pts)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = servers[i].name ? servers[i].name : "";
		uint32_t np = ring_points(&servers[i], want);
		for (uint32_t p = 0; p < np; p++)
			pts[k++] = (uint64_t)point_pos(name, p) << 32 | i;
	}
	BUG_ON(k != total);
	qsort(pts, total, sizeof(*pts), cmp_u64);

	ring->hash = malloc(total * sizeof(*ring->hash));
	ring->server = malloc(total * sizeof(*ring->server));
	if (!ring->hash || !ring->server) {
		free(pts);
		balance_ring_free(ring);
		return -ENOMEM;
	}
	for (size_t i = 0; i < total; i++) {
		ring->hash[i] = (uint32_t)(pts[i] >> 32);
		ring->server[i] = (uint32_t)pts[i];
	}
	ring->n = total;
	free(pts);
	return 0;
}

void balance_ring_free(struct balance_ring *ring)
{
	free(ring->hash);
	free(ring->server);
	memset(ring, 0, sizeof(*ring));
}

static bool usable(const struct balance_server *s)
{
	return !s->down && !s->drain;
}

/* Members of the set a pick chooses from: usable primaries, or else usable backups. */
static bool in_set(const struct balance_server *s, bool backup)
{
	return usable(s) && s->backup == backup;
}

/* Decides which set picks come from (*backup) and returns how many servers it has. */
static size_t pick_set(const struct balance_server *servers, size_t n, bool *backup)
{
	size_t primaries = 0, backups = 0;
	for (size_t i = 0; i < n; i++) {
		if (!usable(&servers[i]))
			continue;
		if (servers[i].backup)
			backups++;
		else
			primaries++;
	}
	*backup = primaries == 0;
	return primaries ? primaries : backups;
}

/* a->active / a->weight < b->active / b->weight, exactly: u32 * u32 fits in u64. */
static bool less_loaded(const struct balance_server *a, const struct balance_server *b)
{
	return (uint64_t)a->active * weight_of(b) < (uint64_t)b->active * weight_of(a);
}

static ssize_t pick_round_robin(struct balancer *b, const struct balance_server *servers, size_t n,
				bool backup)
{
	size_t start = b->next % n;
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		if (in_set(&servers[i], backup)) {
			b->next = (i + 1) % n;
			return (ssize_t)i;
		}
	}
	return -1;
}

/*
 * nginx's smooth weighted round-robin (ngx_http_upstream_get_peer): every
 * member gains its weight, the highest wins and pays back the total, so a
 * heavy server's turns are spread out (a a b a c a a for 5,1,1) instead of
 * coming in a burst that hits it weight times in a row.
 */
static ssize_t pick_weighted(struct balance_server *servers, size_t n, bool backup)
{
	int64_t total = 0;
	ssize_t best = -1;
	for (size_t i = 0; i < n; i++) {
		struct balance_server *s = &servers[i];
		if (!in_set(s, backup))
			continue;
		s->current += weight_of(s);
		total += weight_of(s);
		if (best < 0 || s->current > servers[best].current)
			best = (ssize_t)i;
	}
	if (best >= 0)
		servers[best].current -= total;
	return best;
}

/* Scanning from the round-robin position makes the first of equal loads rotate. */
static ssize_t pick_least_conn(struct balancer *b, const struct balance_server *servers, size_t n,
			       bool backup)
{
	size_t start = b->next % n;
	ssize_t best = -1;
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		if (!in_set(&servers[i], backup))
			continue;
		if (best < 0 || less_loaded(&servers[i], &servers[best]))
			best = (ssize_t)i;
	}
	if (best >= 0)
		b->next = ((size_t)best + 1) % n;
	return best;
}

/* xorshift64*: fast, and its high bits are good enough to choose among servers. */
static uint32_t rng_next(struct balancer *b)
{
	uint64_t x = b->rng ? b->rng : UINT64_C(0x9e3779b97f4a7c15); /* 0 would stay 0 */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->rng = x;
	return (uint32_t)((x * UINT64_C(0x2545f4914f6cdd1d)) >> 32);
}

/* Uniform in [0, m) by multiply-shift (Lemire), without a division; m < 2^32. */
static size_t rng_below(struct balancer *b, size_t m)
{
	return (size_t)(((uint64_t)rng_next(b) * m) >> 32);
}

/*
 * Power of two choices (Mitzenmacher): two distinct random members, the less
 * loaded wins. Random spreads load without the herd that least-conn causes
 * when many workers see the same idle server; the second choice avoids the
 * hot spots of plain random. Members are counted, not stored: no allocation.
 */
static ssize_t pick_random2(struct balancer *b, const struct balance_server *servers, size_t n,
			    bool backup, size_t members)
{
	size_t r1 = rng_below(b, members), r2 = r1;
	if (members > 1) {
		r2 = rng_below(b, members - 1);
		if (r2 >= r1)
			r2++;
	}
	ssize_t first = -1, second = -1;
	size_t m = 0;
	for (size_t i = 0; i < n && (first < 0 || second < 0); i++) {
		if (!in_set(&servers[i], backup))
			continue;
		if (m == r1)
			first = (ssize_t)i;
		if (m == r2)
			second = (ssize_t)i;
		m++;
	}
	BUG_ON(first < 0 || second < 0);
	return less_loaded(&servers[second], &servers[first]) ? second : first;
}

static ssize_t pick_hash(const struct balance_ring *ring, const struct balance_server *servers,
			 size_t n, bool backup, const void *key, size_t keylen)
{
	uint32_t h = ring_pos(balance_hash(key ? key : "", key ? keylen : 0));
	size_t lo = 0, hi = ring->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ring->hash[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Every server owns a point, so one lap finds any member of the set. */
	for (size_t k = 0; k < ring->n; k++) {
		size_t p = (lo + k) % ring->n;
		uint32_t i = ring->server[p];
		BUG_ON(i >= n); /* a ring of another snapshot */
		if (i < n && in_set(&servers[i], backup))
			return (ssize_t)i;
	}
	return -1;
}

ssize_t balance_pick(struct balancer *b, struct balance_server *servers, size_t n, const void *key,
		     size_t keylen)
{
	bool backup;
	size_t members = pick_set(servers, n, &backup);
	if (members == 0)
		return -1;
	switch (b->algo) {
	case BALANCE_ROUND_ROBIN:
		return pick_round_robin(b, servers, n, backup);
	case BALANCE_WEIGHTED:
		return pick_weighted(servers, n, backup);
	case BALANCE_LEAST_CONN:
		return pick_least_conn(b, servers, n, backup);
	case BALANCE_RANDOM2:
		return pick_random2(b, servers, n, backup, members);
	case BALANCE_HASH:
		/* Without a ring (a caller bug) keep serving rather than fail every request. */
		BUG_ON(!b->ring || b->ring->n == 0);
		if (!b->ring || b->ring->n == 0)
			return pick_round_robin(b, servers, n, backup);
		return pick_hash(b->ring, servers, n, backup, key, keylen);
	case BALANCE_ALGOS:
		break;
	}
	BUG_ON(1); /* an algo the switch does not know */
	return pick_round_robin(b, servers, n, backup);
}
