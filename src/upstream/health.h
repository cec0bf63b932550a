/*
 * Active health checks: per server, every interval, a TCP connect or an
 * HTTP request whose status (and optionally body) must be as configured.
 * fall failures in a row take the server out, rise successes bring it back;
 * each change of state is logged. Servers start in (as HAProxy's do).
 *
 * One thread runs them for the whole process, on the current generation's
 * servers; their verdict (and the streaks that lead to one) is in each
 * server's shared state, which a reload keeps.
 */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/loop.h"
#include "http/h1.h"

struct server_rt;
struct upstream;

struct health_check {
	struct conn conn;
	struct timer timer;
	struct upstream *up;
	struct server_rt *srv;
	char *request; /* built once for this server */
	uint32_t request_len;
	char *buf; /* the response so far, while a check runs */
	uint32_t len;
	uint32_t sent;
	struct h1_parser parser;
	struct http_msg *msg; /* its head, while a check runs */
	uint32_t parsed;      /* index in buf: body bytes before it were checked */
	uint32_t body_end;    /* index: the body's data so far ends here */
	uint8_t phase;
};

/* Starts checks for every server of up's pools that configure them. Returns 0, or -ENOMEM with none started. */
int health_start(struct upstream *up);
/* Stops them (a reload's old generation, or exit), before upstream_destroy(); closes any check under way. */
void health_stop(struct upstream *up);

#endif
