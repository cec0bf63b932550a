/*
 * The per-request Lua hook (OpenResty-style): an optional function in the
 * config, called once a request head is parsed. It sees the request and may
 * pick the pool (and server), edit request headers, or answer by itself.
 *
 *   hook = function(r)
 *     -- r.method, r.host, r.path, r.query, r.target, r.client, r.header("name"), r.headers()
 *     -- r.tls (nil over plain HTTP): .sni .protocol .cipher .client_verify .client_subject
 *     --   .client_issuer .client_serial .client_fingerprint
 *     return { pool = "api", server = "10.0.0.1:80",
 *              set_headers = { ["X-A"] = "1" }, remove_headers = { "X-B" } }
 *     -- or: return { status = 403, body = "no\n", headers = { ["Content-Type"] = "text/plain" } }
 *     -- or: nothing, to route as usual
 *   end
 *
 * The Lua state is the one that ran the config (one per config snapshot and
 * worker). An error or an exhausted instruction budget fails that request
 * only (500 and a log line with the traceback).
 */
#ifndef SLUICE_HOOK_H
#define SLUICE_HOOK_H

#include <stddef.h>
#include <stdint.h>

#include "route/router.h"

struct lua_State;

#define HOOK_MAX_HEADERS 32

/* The request as the hook sees it; header lookups call back into the transaction. */
struct tls_info;

struct hook_request {
	const char *method, *target, *host, *client;
	const char *protocol; /* "HTTP/1.1", "HTTP/2.0" */
	size_t method_len, target_len, host_len;
	const struct tls_info *tls; /* r.tls; NULL over plain HTTP */
	void *ctx;
	/* The value of header name (case-insensitive), or NULL. */
	const char *(*header)(void *ctx, const char *name, size_t len, size_t *vlen);
	/* Calls fn for every header, in order. */
	void (*each_header)(void *ctx, void (*fn)(void *arg, const char *name, size_t nlen,
						  const char *value, size_t vlen),
			    void *arg);
};

enum hook_outcome {
	HOOK_PASS,    /* route as usual (with header edits, maybe a pool) */
	HOOK_RESPOND, /* answer with status, body, headers */
	HOOK_FAIL,    /* error or budget exhausted: message in error */
};

/* What the hook returned. Strings point into Lua values that live until hook_release(). */
struct hook_result {
	const char *pool, *server, *body;
	size_t pool_len, server_len, body_len;
	uint16_t status;
	struct header_rules rules; /* set_headers / remove_headers for the request */
	struct header_kv set[HOOK_MAX_HEADERS], remove[HOOK_MAX_HEADERS];
	struct header_kv headers[HOOK_MAX_HEADERS]; /* of a direct answer */
	uint32_t nheaders;
	char error[2048];
};

struct hook {
	struct lua_State *L;
	int fn_ref;	      /* the hook function, in the registry */
	int req_ref;	      /* the request object handed to it, reused */
	uint32_t budget;      /* Lua instructions per call */
};

/*
 * Sets h up from the config's Lua state L, whose top is the hook function.
 * Turns the JIT off in L: instruction-count hooks do not run inside compiled
 * traces, and a runaway loop must be stoppable. Returns 0 or -1.
 */
int hook_init(struct hook *h, struct lua_State *L, uint32_t budget);
/* Calls the hook. Returns an outcome; hook_release() must follow. */
enum hook_outcome hook_run(struct hook *h, const struct hook_request *req, struct hook_result *res);
/* Lets go of the values res points into. */
void hook_release(struct hook *h);

#endif
