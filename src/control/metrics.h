/*
 * What the counters (stats.h) of a running process say, in the two forms
 * the admin listener serves: the Prometheus text format (/metrics) and the
 * JSON of the status page (/api/status). Read on the admin's thread, from
 * the current generation's pools and servers and every worker's blocks.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdint.h>

#include "core/sbuf.h"
#include "upstream/shared.h"

/* The process-wide facts the counters do not hold. */
struct metrics_src {
	struct shared *sh;
	struct shared_gen *gen; /* the current one */
	uint64_t generation;	/* 1 at start, + 1 per reload or API change applied */
	uint64_t reloads, reload_failures;
	double start_time; /* seconds since the Unix epoch */
	uint64_t now_ms;   /* on the loops' clock, for the servers' health */
};

void metrics_prometheus(struct sbuf *out, const struct metrics_src *src);
void metrics_status_json(struct sbuf *out, const struct metrics_src *src);

#endif
