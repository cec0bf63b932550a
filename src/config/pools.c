/*
 * The pools section: servers, balancing, health checks, queue, retries
 * and TLS to the backends of each pool.
 */

#include <errno.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/load.h"
#include "core/common.h"
#include "tls/tls.h"

void cfg_load_server(struct vctx *v, const struct section *s, size_t i, struct cfg_server *srv)
{
	static const char *const keys[] = {"address", "weight",		 "backup",
					   "drain",   "max_connections", NULL};
	lua_State *L = v->L;
	struct cfg_path p = s->path;
	cfg_path_push(&p, "servers", false);
	srv->weight = 1;
	int idx = lua_gettop(L);
	bool table = lua_istable(L, idx);
	if (table)
		lua_getfield(L, idx, "address");
	else
		lua_pushvalue(L, idx);
	const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (!text) {
		char d[64];
		cfg_fail(v, &p,
			 "%s: server %zu must be \"host:port\" or { address = \"host:port\", ... "
			 "}, got %s",
			 s->label, i, cfg_describe(L, -1, d, sizeof(d)));
		lua_pop(L, 1);
		return;
	}
	char why[160];
	cfg_path_push(&p, text, true);
	if (config_parse_addr(text, &srv->addr, why, sizeof(why)) < 0)
		cfg_fail(v, &p, "%s: server \"%s\": %s", s->label, text, why);
	lua_pop(L, 1);
	if (!table)
		return;
	char label[240];
	snprintf(label, sizeof(label), "%.150s: server \"%.60s\"", s->label, text);
	struct section ss = {.label = label, .path = p};
	cfg_check_keys(v, idx, &ss, keys);
	cfg_get_size(v, idx, &ss, "weight", 1, 1000, &srv->weight);
	cfg_get_size(v, idx, &ss, "max_connections", 0, 1e6, &srv->max_connections);
	lua_getfield(L, idx, "backup");
	srv->backup = lua_toboolean(L, -1);
	lua_getfield(L, idx, "drain");
	srv->drain = lua_toboolean(L, -1);
	lua_pop(L, 2);
}

/* health = { type = "http"|"tcp", interval, timeout, rise, fall, path, method, host, status =
 * "200-399", body } */
static void load_health(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"type",   "interval", "timeout", "rise", "fall", "path",
					   "method", "host",	 "status",  "body", NULL};
	lua_State *L = v->L;
	struct subsection sub;
	if (!cfg_get_subsection(v, idx, ps, "health", keys, &sub))
		return;
	int t = sub.idx;
	struct section s = sub.s;
	const char *label = sub.label;
	struct cfg_health *h = &pool->health;
	*h = (struct cfg_health){.enabled = true,
				 .http = true,
				 .interval_ms = 2000,
				 .timeout_ms = 1000,
				 .rise = 2,
				 .fall = 3,
				 .status_min = 200,
				 .status_max = 399};
	cfg_get_seconds(v, t, &s, "interval", &h->interval_ms);
	cfg_get_seconds(v, t, &s, "timeout", &h->timeout_ms);
	cfg_get_size(v, t, &s, "rise", 1, 100, &h->rise);
	cfg_get_size(v, t, &s, "fall", 1, 100, &h->fall);
	const char *type = "http", *path = "/", *method = "GET", *host = NULL, *status = NULL,
		   *body = NULL;
	const char *const names[] = {"type", "path", "method", "host", "status", "body"};
	const char **vals[] = {&type, &path, &method, &host, &status, &body};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		lua_getfield(L, t, names[i]);
		struct cfg_path p = s.path;
		cfg_path_push(&p, names[i], false);
		if (lua_type(L, -1) == LUA_TSTRING)
			*vals[i] = lua_tostring(L, -1);
		else if (!lua_isnil(L, -1))
			cfg_fail(v, &p, "%s: %s must be a string", label, names[i]);
		lua_pop(L, 1);
	}
	struct cfg_path p = s.path;
	if (strcmp(type, "http") && strcmp(type, "tcp")) {
		cfg_path_push(&p, "type", false);
		cfg_fail(v, &p, "%s: type must be \"http\" or \"tcp\"", label);
	}
	h->http = !strcmp(type, "http");
	unsigned lo = 200, hi = 399;
	int end = 0;
	if (status && !((sscanf(status, "%3u-%3u%n", &lo, &hi, &end) == 2 && !status[end]) ||
			(sscanf(status, "%3u%n", &lo, &end) == 1 && !status[end] && (hi = lo)))) {
		cfg_path_push(&p, "status", false);
		cfg_fail(v, &p, "%s: status must be \"200\" or a range \"200-399\"", label);
	} else if (lo < 100 || hi > 599 || lo > hi) {
		cfg_path_push(&p, "status", false);
		cfg_fail(v, &p, "%s: status range must be within 100-599", label);
	}
	h->status_min = lo;
	h->status_max = hi;
	if (path[0] != '/' || !http_header_value_valid(path, strlen(path)) || strchr(path, ' ') ||
	    !http_header_name_valid(method, strlen(method)) ||
	    (host && (!http_header_value_valid(host, strlen(host)) || strchr(host, ' ')))) {
		cfg_fail(v, &s.path,
			 "%s: path, method and host must fit in a request line and header", label);
	}
	if (h->timeout_ms >= h->interval_ms) {
		cfg_path_push(&p, "timeout", false);
		cfg_fail(v, &p, "%s: timeout must be shorter than interval", label);
	}
	if (body)
		h->body = strdup(body);
	if (strlen(path) + strlen(method) + (host ? strlen(host) : 0) > 1024)
		cfg_fail(v, &s.path, "%s: path, method and host together must fit in 1024 bytes",
			 label);
	h->method = strdup(method);
	h->path = strdup(path);
	h->host = host ? strdup(host) : NULL;
	lua_pop(L, 1);
}

/* queue = { size = 1000, timeout = 5, retry_after = 1 } */
static void load_queue(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"size", "timeout", "retry_after", NULL};
	pool->queue = (struct cfg_queue){.size = 1000, .timeout_ms = 5000, .retry_after_s = 1};
	struct subsection sub;
	if (!cfg_get_subsection(v, idx, ps, "queue", keys, &sub))
		return;
	cfg_get_size(v, sub.idx, &sub.s, "size", 0, 1e6, &pool->queue.size);
	cfg_get_seconds(v, sub.idx, &sub.s, "timeout", &pool->queue.timeout_ms);
	cfg_get_size(v, sub.idx, &sub.s, "retry_after", 0, 86400, &pool->queue.retry_after_s);
	lua_pop(v->L, 1);
}

/* Entries of the table at idx, whatever their keys. */
static size_t table_entries(lua_State *L, int idx)
{
	size_t n = 0;
	int t = idx < 0 ? lua_gettop(L) + 1 + idx : idx; /* the iteration pushes */
	for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1))
		n++;
	return n;
}

/* One entry of retry.on: "error", "timeout" or a status from 400 to 599. */
static void load_retry_condition(struct vctx *v, struct cfg_retry *r, const struct section *s,
				 size_t i)
{
	lua_State *L = v->L;
	const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	double status = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
	if (name && !strcmp(name, "error")) {
		r->on_error = true;
	} else if (name && !strcmp(name, "timeout")) {
		r->on_timeout = true;
	} else if (status >= 400 && status < 600 && status == (double)(int)status) {
		unsigned bit = (unsigned)status - 400;
		r->on_status[bit / 64] |= 1ull << (bit % 64);
	} else {
		char d[64];
		struct cfg_path p = s->path;
		if (name)
			cfg_path_push(&p, name, true);
		cfg_fail(
		    v, &p,
		    "%s: on entry %zu must be \"error\", \"timeout\" or a status from 400 to 599, "
		    "got %s",
		    s->label, i, cfg_describe(L, -1, d, sizeof(d)));
	}
}

/* retry = { on = { "error", "timeout", 503 }, tries = 3, buffer = 65536, budget = 20, budget_min =
 * 10 } */
static void load_retry(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"on", "tries", "buffer", "budget", "budget_min", NULL};
	lua_State *L = v->L;
	struct cfg_retry *r = &pool->retry;
	*r =
	    (struct cfg_retry){.tries = 3, .buffer = 65536, .budget_percent = 20, .budget_min = 10};
	struct subsection sub;
	if (!cfg_get_subsection(v, idx, ps, "retry", keys, &sub))
		return;
	int t = sub.idx;
	struct section s = sub.s;
	const char *label = sub.label;
	cfg_get_size(v, t, &s, "tries", 1, CFG_MAX_TRIES, &r->tries);
	cfg_get_size(v, t, &s, "buffer", 0, 1 << 30, &r->buffer);
	cfg_get_size(v, t, &s, "budget", 0, 100, &r->budget_percent);
	cfg_get_size(v, t, &s, "budget_min", 0, 1e6, &r->budget_min);
	lua_getfield(L, t, "on");
	if (lua_isnil(L, -1)) {
		/* A retry table says retries are wanted: these two are safe for idempotent
		 * requests. */
		r->on_error = r->on_timeout = true;
	} else if (!lua_istable(L, -1) || table_entries(L, -1) != lua_objlen(L, -1)) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "on", false);
		cfg_fail(v, &p, "%s: on must be a list such as { \"error\", \"timeout\", 503 }",
			 label);
	} else {
		struct section on = {.label = label, .path = s.path};
		cfg_path_push(&on.path, "on", false);
		size_t n = lua_objlen(L, -1);
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, (int)i);
			load_retry_condition(v, r, &on, i);
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 2);
}

/* balance = "hash" keys on: hash = "client" | "host" | "header:Name" | "cookie:name" */
static void load_balance(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *s)
{
	lua_State *L = v->L;
	struct cfg_path p = s->path;
	lua_getfield(L, idx, "balance");
	if (!lua_isnil(L, -1)) {
		const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		size_t k = 0;
		while (k < BALANCE_ALGOS && strcmp(balance_algo_names[k], name))
			k++;
		cfg_path_push(&p, "balance", false);
		if (k == BALANCE_ALGOS)
			cfg_fail(
			    v, &p,
			    "%s: balance must be \"round_robin\", \"weighted\", \"least_conn\", "
			    "\"random2\" or \"hash\"",
			    s->label);
		else
			pool->balance = (enum balance_algo)k;
	}
	lua_pop(L, 1);
	lua_getfield(L, idx, "hash");
	const char *by = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	p = s->path;
	cfg_path_push(&p, "hash", false);
	if (!lua_isnil(L, -1) && pool->balance != BALANCE_HASH)
		cfg_fail(v, &p, "%s: hash is for balance = \"hash\"", s->label);
	pool->hash_by = HASH_CLIENT;
	if (by && !strcmp(by, "client")) {
		pool->hash_by = HASH_CLIENT;
	} else if (by && !strcmp(by, "host")) {
		pool->hash_by = HASH_HOST;
	} else if (by && (!strncmp(by, "header:", 7) || !strncmp(by, "cookie:", 7)) && by[7]) {
		pool->hash_by = by[0] == 'h' ? HASH_HEADER : HASH_COOKIE;
		pool->hash_name = strdup(by + 7);
		pool->hash_name_len = (uint32_t)strlen(by + 7);
	} else if (!lua_isnil(L, -1)) {
		cfg_fail(
		    v, &p,
		    "%s: hash must be \"client\", \"host\", \"header:Name\" or \"cookie:name\"",
		    s->label);
	}
	lua_pop(L, 1);
}

/* A string field naming a file: resolved into out (4096 bytes); NULL when absent. */
static const char *get_file(struct vctx *v, const struct subsection *sub, const char *key,
			    char *out)
{
	lua_getfield(v->L, sub->idx, key);
	struct cfg_path p = sub->s.path;
	cfg_path_push(&p, key, false);
	const char *file = NULL;
	if (lua_type(v->L, -1) == LUA_TSTRING) {
		if (cfg_relative(v, lua_tostring(v->L, -1), out, 4096))
			file = out;
		else
			cfg_fail(v, &p, "%s: %s: name too long", sub->label, key);
	} else if (!lua_isnil(v->L, -1)) {
		cfg_fail(v, &p, "%s: %s must name a file", sub->label, key);
	}
	lua_pop(v->L, 1);
	return file;
}

/* tls = { ca = "file", name = "api.internal", cert = "file", key = "file", verify = true } of a
 * pool. */
static void load_pool_tls(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"ca", "name", "cert", "key", "verify", NULL};
	struct subsection sub;
	if (!cfg_get_subsection(v, idx, ps, "tls", keys, &sub))
		return;
	lua_State *L = v->L;
	char ca[4096], cert[4096], key[4096];
	struct tls_client_opts o = {.verify = true, .nsessions = pool->nservers * CFG_THREADS};
	o.ca = get_file(v, &sub, "ca", ca);
	o.cert = get_file(v, &sub, "cert", cert);
	o.key = get_file(v, &sub, "key", key);
	struct cfg_path np = sub.s.path;
	cfg_path_push(&np, "name", false);
	lua_getfield(L, sub.idx, "name");
	char host[256];
	size_t nlen = 0;
	const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nlen) : NULL;
	if ((!name && !lua_isnil(L, -1)) ||
	    (name && host_normalize(name, nlen, host, sizeof(host)) != (int)nlen))
		cfg_fail(v, &np,
			 "%s: name must be a host name, as the servers' certificates carry it",
			 sub.label);
	o.name = name;
	lua_getfield(L, sub.idx, "verify");
	if (lua_isboolean(L, -1))
		o.verify = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		cfg_fail(v, &sub.s.path, "%s: verify must be true or false", sub.label);
	if (o.key && !o.cert)
		cfg_fail(v, &sub.s.path, "%s: key without cert", sub.label);
	char err[768];
	struct tls_warnings tw = {v, &sub.s.path};
	struct tls_report r = {err, sizeof(err), cfg_tls_warned, &tw};
	if (!v->failed && !(pool->tls = tls_client_new(&o, &r)))
		cfg_fail(v, &sub.s.path, "%s: %s", sub.label, err);
	if (!o.verify)
		cfg_warn(v, &sub.s.path,
			 "%s: verify = false: any certificate is taken, as from an attacker",
			 sub.label);
	lua_pop(L, 3);
}

int config_pool_ring(struct cfg_pool *pool)
{
	if (pool->balance != BALANCE_HASH)
		return 0;
	struct balance_server *bs = calloc(pool->nservers, sizeof(*bs));
	for (size_t i = 0; bs && i < pool->nservers; i++)
		bs[i] = (struct balance_server){.name = pool->servers[i].addr.text,
						.weight = pool->servers[i].weight};
	int rc = bs ? balance_ring_build(&pool->ring, bs, pool->nservers) : -ENOMEM;
	free(bs);
	return rc < 0 ? -ENOMEM : 0;
}

static void load_pool(struct vctx *v, struct cfg_pool *pool, const char *name)
{
	static const char *const keys[] = {
	    "servers",	   "keepalive", "keepalive_timeout", "keepalive_purge", "connect_backoff",
	    "max_backoff", "max_fails", "max_requests",	     "slow_start",	"balance",
	    "hash",	   "health",	"max_connections",   "queue",		"retry",
	    "tls",	   NULL};
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	char label[160];
	snprintf(label, sizeof(label), "pool \"%.100s\"", name);
	struct section s = {.label = label};
	cfg_path_push(&s.path, "pools", false);
	cfg_path_push(&s.path, name, false);

	pool->name = strdup(name);
	pool->keepalive = CFG_NO_CAP;
	pool->keepalive_timeout_ms = 60000;
	pool->keepalive_purge_ms = 5000;
	pool->connect_backoff_ms = 2000;
	pool->max_backoff_ms = 30000;
	pool->max_fails = 1;
	cfg_check_keys(v, idx, &s, keys);
	cfg_get_size(v, idx, &s, "keepalive", 0, 100000, &pool->keepalive);
	cfg_get_seconds(v, idx, &s, "keepalive_timeout", &pool->keepalive_timeout_ms);
	cfg_get_seconds(v, idx, &s, "keepalive_purge", &pool->keepalive_purge_ms);
	cfg_get_seconds(v, idx, &s, "connect_backoff", &pool->connect_backoff_ms);
	/* Unless set, the cool-down may grow to 30 s, or stays at a longer connect_backoff. */
	pool->max_backoff_ms = MAX(pool->max_backoff_ms, pool->connect_backoff_ms);
	cfg_get_seconds(v, idx, &s, "max_backoff", &pool->max_backoff_ms);
	cfg_get_size(v, idx, &s, "max_fails", 1, 1000, &pool->max_fails);
	cfg_get_size(v, idx, &s, "max_requests", 0, 1e9, &pool->max_requests);
	cfg_get_number(v, idx, &s, "slow_start", 1000.0, 0, 86400.0,
		       "a number of seconds, 0 for off", &pool->slow_start_ms);
	cfg_get_size(v, idx, &s, "max_connections", 0, 1e7, &pool->max_connections);
	load_queue(v, pool, idx, &s);
	load_retry(v, pool, idx, &s);
	if (pool->max_backoff_ms < pool->connect_backoff_ms) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "max_backoff", false);
		cfg_fail(v, &p, "%s: max_backoff must be at least connect_backoff", label);
	}
	load_balance(v, pool, idx, &s);
	load_health(v, pool, idx, &s);
	if (!cfg_get_table(v, idx, &s, "servers", true))
		return;
	size_t n = lua_objlen(L, -1);
	if (n == 0) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "servers", false);
		cfg_fail(v, &p, "%s: servers must list at least one \"host:port\"", label);
	}
	pool->servers = calloc(n ? n : 1, sizeof(*pool->servers));
	for (size_t i = 1; i <= n && pool->servers; i++) {
		lua_rawgeti(L, -1, (int)i);
		cfg_load_server(v, &s, i, &pool->servers[pool->nservers++]);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (pool->servers && !v->failed && config_pool_ring(pool) < 0)
		cfg_fail(v, NULL, "out of memory");
	load_pool_tls(v, pool, idx, &s);
}

void cfg_load_pools(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!cfg_get_table(v, 1, &top, "pools", true))
		return;
	int idx = lua_gettop(L);
	size_t n = table_entries(L, idx);
	cfg->pools = calloc(n ? n : 1, sizeof(*cfg->pools));
	if (!cfg->pools) {
		cfg_fail(v, NULL, "out of memory");
		lua_pop(L, 1);
		return;
	}
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		struct cfg_path p = {0};
		cfg_path_push(&p, "pools", false);
		if (cfg->npools == n) {
			lua_pop(L, 2);
			break;
		}
		if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
			cfg_fail(v, &p, "pools: each entry must be name = { servers = {...} }");
			continue;
		}
		const char *name = lua_tostring(L, -2);
		load_pool(v, &cfg->pools[cfg->npools++], name);
	}
	/*
	 * A metamethod of a pool can add pools while they are read; where the
	 * new keys land in the traversal is up to the hash seed, so it is
	 * found by counting again rather than by running past the count.
	 */
	if (table_entries(L, idx) != n)
		cfg_fail(v, &top.path, "pools: the table changed while it was read");
	if (n == 0)
		cfg_fail(v, &top.path, "pools: define at least one pool");
	lua_pop(L, 1);
}

size_t config_find_pool(const struct config *cfg, const char *name)
{
	for (size_t k = 0; k < cfg->npools; k++)
		if (!strcmp(cfg->pools[k].name, name))
			return k;
	return SIZE_MAX;
}
