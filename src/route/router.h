/*
 * Request routing: which site a Host names, which route of that site a path
 * takes, and what the route does. Built once per config snapshot, read-only
 * afterwards. Host lookup is O(1) in the number of sites (a hash table of
 * exact names, another of wildcard suffixes probed once per label).
 */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/host.h"
#include "http/http.h"

enum route_action { ROUTE_PROXY, ROUTE_RESPOND, ROUTE_REDIRECT };

struct route {
	const char *prefix;
	uint32_t prefix_len;
	uint16_t status; /* RESPOND and REDIRECT */
	enum route_action action;
	size_t pool;			/* PROXY: index into config.pools */
	const char *body;		/* RESPOND */
	uint32_t body_len;
	const struct header_kv *respond_headers; /* RESPOND */
	uint32_t nrespond_headers;
	const char *location;		/* REDIRECT */
	uint32_t location_len;
	bool keep_path;			/* REDIRECT: append the request's path and query */
	uint16_t https_port;		/* plain HTTP is redirected to https://host:port; 0: not */
	uint32_t metrics;		/* its own series (config.tracked[metrics - 1]); 0: none */
	struct header_rules req, rsp;
};

struct site {
	const char *name;     /* its first host, for logs */
	uint8_t tls_verify;   /* client certificates (enum tls_verify); 0: the listener's policy */
	bool added;	      /* by the admin API (runtime.h), not by the file */
	struct route *routes; /* longest prefix first */
	uint32_t nroutes;
	uint32_t metrics;     /* its own series (config.tracked[metrics - 1]); 0: none */
};

struct router {
	struct site *sites;
	size_t nsites;
	struct host_table exact;
	struct host_table wildcard; /* "*.example.com" stored as "example.com" */
	int64_t default_site;	    /* -1: none */
};

/* Sizes the tables for nexact names and nwildcard patterns; returns 0 or -ENOMEM. Entries live in arena. */
int router_init(struct router *r, struct arena *a, size_t nsites, size_t nexact, size_t nwildcard);
/*
 * Adds a host ("example.com", "*.example.com") of site. Returns 0, -EEXIST if
 * the name is taken already, -EINVAL if it is not a valid host pattern, or
 * -ENOSPC if there are more hosts than router_init() was sized for.
 */
int router_add_host(struct router *r, const char *host, size_t len, uint32_t site);
/*
 * Calls fn for every host of r, in no order: name in lookup form, without
 * the "*." of a wildcard (wildcard says so), and the site it maps to.
 */
void router_each_host(const struct router *r,
		      void (*fn)(void *ud, const char *name, size_t len, bool wildcard, uint32_t site),
		      void *ud);
/* The index of the site named name (its first host), or SIZE_MAX. */
size_t router_site_index(const struct router *r, const char *name);
/* Sorts a site's routes so that the longest prefix is tried first. */
void router_sort_routes(struct site *s);

/* The site for a normalized host: exact name, then the longest wildcard suffix, then the default. */
const struct site *router_find_site(const struct router *r, const char *host, size_t len);
/*
 * The form of a request path (the target without its query) that routes
 * match: %-escapes of unreserved characters decoded, "." and ".." segments
 * and repeated slashes resolved (never above the root), a trailing slash
 * kept; a '%' that starts no escape written as "%25"; "*" and anything not
 * starting with "/" is "/". Writes at most 3 * len + 1 bytes to out;
 * returns the length.
 */
size_t router_normalize_path(const char *path, size_t len, char *out);
/*
 * The route for a request path: the longest prefix of its normal form, so
 * that /%61dmin or /x/../admin cannot slip past a route for /admin. NULL
 * when no prefix matches, or when the path is longer than 16 KiB.
 */
const struct route *router_find_route(const struct site *s, const char *path, size_t len);

#endif
