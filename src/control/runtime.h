/*
 * Changes the admin API makes to the running config without a reload: a
 * server added to or removed from a pool, a site added, replaced or
 * removed. (A server's state and weight are not here: they are atomics of
 * its shared state, read at each pick.)
 *
 * The changes are kept as an overlay on the file's config. Each one makes a
 * new snapshot from the file's and the overlay with the change (a derived
 * snapshot, see config.base), which the process runs as it runs a
 * reload's: every worker takes it in its next loop turn, requests under
 * way finish on the one they started with. If the snapshot cannot be made
 * (a bad site, a host that is taken), nothing changes. A reload drops the
 * overlay: what the file says runs again.
 *
 * Runs on the control thread only.
 */
#ifndef SLUICE_RUNTIME_H
#define SLUICE_RUNTIME_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "config/config.h"

/* A pool's servers as the API left them. */
struct runtime_pool {
	struct cfg_server *servers; /* NULL: the file's */
	size_t nservers;
};

/* A site the API gave, kept as it was sent: each new snapshot loads it again. */
struct runtime_site {
	char *name; /* its first host */
	char *json;
};

struct overlay {
	struct runtime_pool *pools; /* [file->npools] */
	char **removed;		    /* names of the file's sites taken out, or replaced */
	size_t nremoved;
	struct runtime_site *sites; /* in the order given */
	size_t nsites;
};

struct runtime {
	struct config *file; /* the file's config, as last loaded (a reference) */
	struct overlay ov;
	/* Runs cfg in place of what runs: 0, or -1 with a message in err. */
	int (*publish)(void *ud, struct config *cfg, char *err, size_t errlen);
	void *ud;
};

/* What runs is file, as loaded (at start, and after each reload): the overlay is dropped. */
void runtime_reset(struct runtime *rt, struct config *file);
void runtime_free(struct runtime *rt);

/*
 * The changes. Each returns 0 once what runs has it, or -1 with a message
 * in err that starts with the field of the request at fault ("pool: ...",
 * "add: ...", "remove: ...", "replace: ...", "site: ...") and nothing
 * changed. server and site are as in the config file: "host:port" or
 * { address = ..., weight = ... }; { hosts = {...}, pool = ... | routes = {...} }.
 */
int runtime_add_server(struct runtime *rt, const char *pool, const cJSON *server, char *err,
		       size_t errlen);
int runtime_remove_server(struct runtime *rt, const char *pool, const char *address, char *err,
			  size_t errlen);
int runtime_add_site(struct runtime *rt, const cJSON *site, char *err, size_t errlen);
int runtime_replace_site(struct runtime *rt, const char *name, const cJSON *site, char *err,
			 size_t errlen);
int runtime_remove_site(struct runtime *rt, const char *name, char *err, size_t errlen);

/* The name a site object goes by: its first host ("" for a default site without hosts). */
const char *runtime_site_name(const cJSON *site);

/*
 * The snapshot of file with ov applied; NULL with a message in err. A
 * failure in a site the overlay holds is told with what (the request's
 * field) in front.
 */
struct config *runtime_derive(struct config *file, const struct overlay *ov, const char *what,
			      char *err, size_t errlen);

#endif
