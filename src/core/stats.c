#include "core/stats.h"

#include <stdlib.h>
#include <string.h>

/* 1-2.5-5 per decade from 50 µs, then 30 s and 60 s (the longest timeouts people set). */
const uint64_t stats_bound_us[STATS_BOUNDS] = {
	50,	100,	 250,	  500,	   1000,     2500,     5000,	 10000,	   25000,   50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

const char *const stats_class_name[STATS_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx", "none"};

enum stats_class stats_class_of(unsigned status)
{
	if (status < 100 || status > 599)
		return CLASS_NONE;
	return (enum stats_class)(status / 100 - 1);
}

const char *const stats_client_error_name[STATS_CLIENT_ERRORS] = {
	"400", "403", "404", "408", "413", "414", "421", "431", "501", "505", "4xx",
};

static const uint16_t client_error_status[STATS_CLIENT_ERRORS - 1] = {
	400, 403, 404, 408, 413, 414, 421, 431, 501, 505,
};

int stats_client_error_of(unsigned status)
{
	for (int i = 0; i < STATS_CLIENT_ERRORS - 1; i++)
		if (client_error_status[i] == status)
			return i;
	return status >= 400 && status < 500 ? STATS_CLIENT_ERRORS - 1 : -1;
}

static unsigned bucket_of(uint64_t us)
{
	unsigned lo = 0, hi = STATS_BOUNDS; /* the first bound >= us is in [lo, hi] */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (stats_bound_us[mid] >= us)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
	stat_add(&h->bucket[bucket_of(us)], 1);
	stat_add(&h->sum_us, us);
}

void *stats_block(_Atomic(void *) *blocks, uint32_t worker, size_t size)
{
	void *b = atomic_load_explicit(&blocks[worker], memory_order_relaxed);
	if (b)
		return b;
	/* The blocks are multiples of a cache line, aligned: no two workers write one line. */
	size_t rounded = (size + 63) / 64 * 64;
	if (!(b = aligned_alloc(64, rounded)))
		return NULL;
	memset(b, 0, rounded);
	atomic_store_explicit(&blocks[worker], b, memory_order_release);
	return b;
}

void stats_blocks_free(_Atomic(void *) *blocks, uint32_t workers)
{
	if (!blocks)
		return;
	for (uint32_t i = 0; i < workers; i++)
		free(atomic_load_explicit(&blocks[i], memory_order_acquire));
	free(blocks);
}

void stats_hist_sum(struct hist_sum *to, struct stats_hist *h)
{
	for (unsigned i = 0; i <= STATS_BOUNDS; i++) {
		uint64_t n = stat_get(&h->bucket[i]);
		to->bucket[i] += n;
		to->count += n;
	}
	to->sum_us += stat_get(&h->sum_us);
}

void stats_req_sum(struct req_sum *to, struct req_stats *r)
{
	for (unsigned i = 0; i < STATS_CLASSES; i++) {
		uint64_t n = stat_get(&r->responses[i]);
		to->responses[i] += n;
		to->requests += n;
	}
	to->bytes_in += stat_get(&r->bytes_in);
	to->bytes_out += stat_get(&r->bytes_out);
	stats_hist_sum(&to->total, &r->total);
	stats_hist_sum(&to->backend, &r->backend);
	stats_hist_sum(&to->added, &r->added);
}

double stats_quantile_us(const struct hist_sum *h, double q)
{
	if (!h->count)
		return 0;
	double rank = q * (double)h->count, below = 0;
	for (unsigned i = 0; i < STATS_BOUNDS; i++) {
		double n = (double)h->bucket[i];
		if (below + n >= rank && n > 0) {
			double lo = i ? (double)stats_bound_us[i - 1] : 0, hi = (double)stats_bound_us[i];
			return lo + (hi - lo) * (rank - below) / n;
		}
		below += n;
	}
	/* In the open bucket above the last bound: that bound is all that can be said. */
	return (double)stats_bound_us[STATS_BOUNDS - 1];
}
