/*
 * Counters and latency histograms, kept per worker and summed when read.
 *
 * Each block of counters is written by one worker thread only, with plain
 * relaxed loads and stores (no locked instruction, no cache line another
 * worker writes); the admin thread sums every worker's block with relaxed
 * loads. A block is made the first time its worker counts something in it,
 * so a server that never served a worker costs that worker one pointer.
 *
 * Histograms have fixed log-scale buckets from 50 µs to 60 s, the same for
 * every series, so that series can be summed and compared.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the buckets, in µs; one more bucket takes what is above the last. */
#define STATS_BOUNDS 19
extern const uint64_t stats_bound_us[STATS_BOUNDS];

/* Responses by status class: 1xx to 5xx, and none (the client left before one). */
enum stats_class { CLASS_1XX, CLASS_2XX, CLASS_3XX, CLASS_4XX, CLASS_5XX, CLASS_NONE, STATS_CLASSES };
extern const char *const stats_class_name[STATS_CLASSES];

typedef _Atomic uint64_t stat_t;

struct stats_hist {
	stat_t bucket[STATS_BOUNDS + 1]; /* not cumulative: each counts its own range */
	stat_t sum_us;
};

/* What one worker counted of the requests that went to one pool or one server. */
struct req_stats {
	stat_t responses[STATS_CLASSES];
	stat_t bytes_in;  /* request bytes from clients: heads and bodies */
	stat_t bytes_out; /* response bytes to clients */
	struct stats_hist total;   /* from the request's first byte to its response's last */
	struct stats_hist backend; /* from sending to the server to its response head */
	struct stats_hist added;   /* sluice's own: total less waiting on the backend and the client */
};

struct server_stats {
	alignas(64) struct req_stats req;
	stat_t failures;     /* connects failed, closed or timed out before answering */
	stat_t conns_opened; /* backend connections */
	stat_t conns_open;   /* gauges: */
	stat_t conns_idle;
};

struct pool_stats {
	alignas(64) struct req_stats req;
	stat_t retries;
	stat_t queued; /* gauge */
	struct stats_hist queue; /* time waiting for a slot, of those that waited */
};

/*
 * Requests refused for the client's own mistake, by the status it got:
 * these, then any other 4xx.
 */
#define STATS_CLIENT_ERRORS 11
extern const char *const stats_client_error_name[STATS_CLIENT_ERRORS];
/* The index of status among the client errors, or -1 when it is none (2xx, 3xx, the backend's 5xx). */
int stats_client_error_of(unsigned status);

/* One worker's counts of what belongs to no pool. */
struct proc_stats {
	alignas(64) stat_t responses[STATS_CLASSES]; /* every request, routed or not */
	stat_t clients_opened, clients_closed;
	stat_t clients_idle; /* gauge: connections between requests */
	stat_t bytes_in, bytes_out;
	stat_t tls_handshakes, tls_failures;
	stat_t client_errors[STATS_CLIENT_ERRORS];
};

static inline void stat_add(stat_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}
static inline void stat_sub(stat_t *c, uint64_t n) { stat_add(c, (uint64_t)0 - n); }
static inline uint64_t stat_get(stat_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

enum stats_class stats_class_of(unsigned status);
void stats_hist_add(struct stats_hist *h, uint64_t us);

/*
 * The block of worker in blocks[], made (zeroed, size bytes) the first
 * time; NULL if out of memory, and then nothing is counted. Only worker
 * itself calls this; readers use stats_block_peek().
 */
void *stats_block(_Atomic(void *) *blocks, uint32_t worker, size_t size);
static inline void *stats_block_peek(_Atomic(void *) *blocks, uint32_t worker)
{
	return atomic_load_explicit(&blocks[worker], memory_order_acquire);
}
/* Frees every worker's block and the array. */
void stats_blocks_free(_Atomic(void *) *blocks, uint32_t workers);

/* Sums, for reading. */
struct hist_sum {
	uint64_t bucket[STATS_BOUNDS + 1];
	uint64_t count, sum_us;
};
struct req_sum {
	uint64_t responses[STATS_CLASSES];
	uint64_t requests; /* all classes */
	uint64_t bytes_in, bytes_out;
	struct hist_sum total, backend, added;
};

void stats_hist_sum(struct hist_sum *to, struct stats_hist *h);
void stats_req_sum(struct req_sum *to, struct req_stats *r);
/*
 * The q-quantile (0 < q < 1) of a histogram, in µs, interpolated linearly
 * within its bucket as Prometheus' histogram_quantile() does; 0 when empty.
 */
double stats_quantile_us(const struct hist_sum *h, double q);

#endif
