/*
 * The configuration: a Lua script run by LuaJIT, turned into an immutable,
 * reference-counted snapshot that workers read without locks.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/arena.h"
#include "route/balance.h"
#include "route/hook.h"
#include "route/router.h"

struct cfg_addr {
	struct sockaddr_storage sa;
	socklen_t len;
	char text[64]; /* as written in the config, e.g. "[::1]:8080" */
};

struct cfg_server {
	struct cfg_addr addr;
	uint32_t weight;
	bool backup; /* only when no other server is usable */
	bool drain;  /* no new requests */
	uint32_t max_connections; /* requests in flight at once; 0: no limit */
};

/* Active health checks of a pool's servers. */
struct cfg_health {
	bool enabled;
	bool http; /* else a TCP connect */
	uint32_t interval_ms, timeout_ms;
	uint32_t rise, fall;
	char *method, *path;
	char *host; /* NULL: the server's address */
	uint32_t status_min, status_max;
	char *body; /* a substring the response body must contain, or NULL */
};

/* Requests beyond a pool's or its servers' max_connections wait here, in order. */
struct cfg_queue {
	uint32_t size;		 /* waiting requests at most; the next gets 503 at once */
	uint32_t timeout_ms;	 /* a request waiting longer gets 503 */
	uint32_t retry_after_s;	 /* the Retry-After of those 503s */
};

/* Most attempts one request makes (the first included); bounds the tried-server list. */
#define CFG_MAX_TRIES 8

/*
 * Retries. A failed connect (or a pooled connection found closed) is retried
 * whatever the method; these settings say when a request that reached a
 * backend may be sent again: idempotent, nothing answered to the client yet,
 * its body still held whole.
 */
struct cfg_retry {
	uint32_t tries;		 /* attempts per request, the first included */
	bool on_error;		 /* the backend closed or reset before a response head */
	bool on_timeout;	 /* no response head within backend_response */
	uint64_t on_status[4];	 /* bit (status - 400): retry on that answer */
	uint32_t buffer;	 /* request body bytes kept for a replay */
	uint32_t budget_percent; /* retries at most this share of the pool's requests ... */
	uint32_t budget_min;	 /* ... or this many per second, whichever is more */
};

static inline bool cfg_retry_on_status(const struct cfg_retry *r, unsigned status)
{
	if (status < 400 || status >= 600)
		return false;
	unsigned bit = status - 400;
	return r->on_status[bit / 64] >> (bit % 64) & 1;
}

/* Whether requests that reached a backend may be retried at all (retry.on names something). */
static inline bool cfg_retry_on_any(const struct cfg_retry *r)
{
	return r->on_error || r->on_timeout || r->on_status[0] || r->on_status[1] || r->on_status[2] ||
	       r->on_status[3];
}

/* What balance = "hash" hashes. */
enum hash_by { HASH_CLIENT, HASH_HOST, HASH_HEADER, HASH_COOKIE };

/* keepalive unset: as many idle connections as recent concurrency needed. */
#define CFG_NO_CAP UINT32_MAX

struct cfg_pool {
	char *name;
	struct cfg_server *servers;
	size_t nservers;
	uint32_t keepalive;	    /* idle connections kept per server at most; CFG_NO_CAP unless set */
	uint32_t keepalive_timeout_ms;
	uint32_t keepalive_purge_ms; /* how often idle connections beyond recent need are halved */
	uint32_t connect_backoff_ms; /* first cool-down of a failing server */
	uint32_t max_backoff_ms;     /* the cool-down doubles per outage up to this */
	uint32_t max_fails;	     /* consecutive failures that take a server out */
	uint32_t max_requests;	     /* per backend connection; 0: no limit */
	uint32_t slow_start_ms;	     /* a server back in ramps its weight up over this; 0: off */
	uint32_t max_connections;    /* requests in flight to the whole pool; 0: no limit */
	struct cfg_queue queue;
	struct cfg_retry retry;
	enum balance_algo balance;
	enum hash_by hash_by;
	char *hash_name; /* header or cookie name */
	uint32_t hash_name_len;
	struct balance_ring ring; /* balance = "hash" */
	struct tls_client *tls;	  /* NULL: plain HTTP to the servers */
	struct cfg_health health;
};

struct tls_server;
struct tls_client;

struct cfg_listener {
	struct cfg_addr addr;
	struct tls_server *tls; /* NULL: plain HTTP */
	uint8_t tls_verify;	/* its client-certificate policy (enum tls_verify) */
	size_t pool; /* index into config.pools, unless routed */
	bool client_ca; /* tls.client_ca is set: client certificates can be checked */
	uint32_t max_connections; /* of this listener; 0: only the global limit */
	bool routed; /* no pool of its own: requests go by config.router */
	const char *protocol; /* what its connections speak: the name of a front ("http/1.1") */
	bool http2;	      /* TLS: ALPN offers h2 as well */
};

struct cfg_timeouts {
	uint32_t client_header_ms;
	uint32_t client_keepalive_ms;
	uint32_t backend_connect_ms;
	uint32_t backend_response_ms;
	uint32_t idle_ms;
	uint32_t shutdown_ms;
	uint32_t tls_handshake_ms;
};

struct cfg_limits {
	uint32_t max_request_line;
	uint32_t max_header_size;
	uint32_t buffer_size;
	uint32_t max_connections;
	uint32_t hook_instructions; /* Lua instructions one hook call may run */
	uint32_t busy_poll_us;	    /* the loop polls without sleeping this long after an event; 0: off */
	/* HTTP/2 clients: streams at once, each one's request-body window, and a request head's size. */
	uint32_t h2_max_concurrent_streams;
	uint32_t h2_initial_window;
	uint32_t h2_max_header_list;
	uint32_t h2_max_glitches; /* protocol mistakes a connection may make (http/h2.h) */
	uint32_t h2_max_requests; /* streams one connection may begin, then GOAWAY */
};

/* The admin listener (admin.h): metrics, the status page, the runtime API. */
struct cfg_admin {
	bool enabled;
	struct cfg_addr addr;
	char *unix_path;  /* a unix socket in place of addr, if set */
	char *token;	  /* what token_file holds; NULL: the API is refused */
	char *token_file;
};

enum access_log_format { ACCESS_LOG_TEXT, ACCESS_LOG_JSON };

/* A site or a route with metrics = true: series of its own, labelled by these names. */
struct cfg_tracked {
	const char *site;  /* its name (first host) */
	const char *route; /* the route's prefix; NULL: the whole site */
};

/* The memory of a config's Lua state, counted by its allocator, and what a script may take. */
struct lua_mem {
	size_t used, limit;
	uint64_t deadline_ms; /* while the script runs */
};

/* A hook in a Lua state of its own, for one more worker thread. */
struct worker_hook {
	struct hook hook;
	struct lua_mem mem;
};

/* Worker threads at most: what a uint64_t bit mask of them holds. */
#define CFG_MAX_WORKERS 64
/*
 * Threads that connect to backends: the workers and the health checker.
 * A reload may not change the number of workers, so what is sized per
 * thread in a config (a pool's TLS sessions) is sized for the most.
 */
#define CFG_THREADS (CFG_MAX_WORKERS + 1)

struct config {
	unsigned refs;
	uint32_t workers;  /* event loop threads; default: the CPUs the process may run on */
	bool cpu_affinity; /* worker i runs on the i-th of those CPUs only */
	struct cfg_listener *listeners;
	size_t nlisteners;
	struct cfg_pool *pools;
	size_t npools;
	struct cfg_timeouts timeouts;
	struct cfg_limits limits;
	char *access_log; /* path, "stderr", or NULL for off */
	enum access_log_format access_log_format;
	struct cfg_admin admin;
	struct cfg_tracked *tracked; /* [ntracked] */
	size_t ntracked;
	char *pid_file;	  /* written at start, for `sluice -s`; NULL for none */
	int log_level;
	bool has_sites;
	bool sites_require_certs; /* a site has tls.verify_client = "required" */
	char *warnings; /* "file:line: warning: ..." lines, or NULL */
	struct router router; /* its memory is in arena */
	struct arena arena;
	bool has_hook;
	struct hook hook; /* worker 0's; its Lua state is the one that ran the config */
	struct lua_mem lua_mem;
	/*
	 * With a hook, the script is kept: config_add_worker_hooks() runs it
	 * again for each other worker, whose hook has its own state.
	 */
	char *name, *source;
	struct worker_hook *worker_hooks; /* [workers - 1], or NULL */
	/*
	 * A snapshot derived from the file's by runtime changes (runtime.h)
	 * holds the file's here and borrows from it all that no change
	 * touches: listeners, TLS, hooks, strings, the file's sites. Its own
	 * are the pools array with each pool's servers and hash ring, tracked,
	 * and, once sites changed, the router's tables and site array (in its
	 * arena). NULL: a file's.
	 */
	struct config *base;
};

/* The config used when no file is given (also printed by --default-config). */
extern const char config_default_source[];

/* Room for the report of a failed load: 50 mistakes at most, then a line counting the rest. */
#define CONFIG_ERR_MAX 16384

/*
 * Runs the Lua config in path (NULL: the embedded default) and validates it.
 * On success returns a snapshot with one reference; on failure returns NULL
 * and writes into err every mistake it found (up to 50), a "file:line:
 * message" line each.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
/* Same, from a string; name is used in messages. */
struct config *config_load_string(const char *name, const char *source, char *err, size_t errlen);

/*
 * Gives every worker but the first a hook of its own: the script runs again
 * in a new Lua state per worker (nothing checked again), and its hook is
 * taken. No-op without a hook. Returns 0, or -1 with a message in err.
 */
int config_add_worker_hooks(struct config *cfg, char *err, size_t errlen);
/* Whether a and b are the same socket address. */
bool config_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b);
/* The index of the pool named name in cfg->pools, or SIZE_MAX. */
size_t config_find_pool(const struct config *cfg, const char *name);

/* Builds pool->ring from its servers (balance = "hash"; else nothing to do): 0 or -ENOMEM. */
int config_pool_ring(struct cfg_pool *pool);

struct lua_State;
/*
 * For runtime changes (runtime.c): the site, or the server, in the Lua table
 * on the top of L's stack, checked as one in the file would be. A site goes
 * into cfg->router.sites[index] (sized by the caller), its hosts into the
 * router, its strings into cfg->arena. Return 0, or -1 with a message that
 * starts with what (the field of the request that held the table) in err.
 */
int config_lua_site(struct config *cfg, struct lua_State *L, size_t index, const char *what,
		    char *err, size_t errlen);
int config_lua_server(const struct cfg_pool *pool, struct lua_State *L, struct cfg_server *srv,
		      const char *what, char *err, size_t errlen);

/* The hook worker index runs. */
struct hook *config_hook(struct config *cfg, uint32_t index);

/* Logs each of cfg->warnings (warn level). */
void config_log_warnings(const struct config *cfg);

struct config *config_ref(struct config *cfg);
/* Drops one reference; frees the snapshot with the last. */
void config_unref(struct config *cfg);

/*
 * Parses "1.2.3.4:80", "[::1]:80" or "name:80" (resolved now). Returns 0, or
 * -1 with a message ("port out of range", ...) in err.
 */
int config_parse_addr(const char *text, struct cfg_addr *out, char *err, size_t errlen);

#endif
