/*
 * The sites section: hosts, routes, header rules, fixed answers and
 * redirects, and a site's TLS policy.
 */

#include <errno.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/load.h"
#include "tls/tls.h"

/* Reads { ["Name"] = "value", ... } at the top of the stack into an array in the arena. */
static const struct header_kv *load_header_map(struct vctx *v, struct config *cfg,
					       const struct section *s, const char *what,
					       uint32_t *count)
{
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	uint32_t n = 0;
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
		n++;
	struct header_kv *kv = arena_alloc(&cfg->arena, (n ? n : 1) * sizeof(*kv));
	*count = 0;
	if (!kv) {
		cfg_fail(v, NULL, "out of memory");
		return NULL;
	}
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		struct cfg_path p = s->path;
		cfg_path_push(&p, what, false);
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
			cfg_fail(v, &p, "%s: %s must map header names to string values", s->label,
				 what);
			continue;
		}
		size_t nl, vl;
		const char *name = lua_tolstring(L, -2, &nl);
		const char *value = lua_tolstring(L, -1, &vl);
		cfg_path_push(&p, name, false);
		if (!http_header_name_valid(name, nl))
			cfg_fail(v, &p, "%s: %s: \"%s\" is not a valid header name", s->label, what,
				 name);
		else if (http_header_owned(name, nl))
			cfg_fail(v, &p, "%s: %s: \"%s\" is managed by sluice and cannot be set",
				 s->label, what, name);
		else if (!http_header_value_valid(value, vl))
			cfg_fail(v, &p, "%s: %s: header \"%s\": value contains a control character",
				 s->label, what, name);
		kv[*count] = (struct header_kv){arena_strndup(&cfg->arena, name, nl),
						arena_strndup(&cfg->arena, value, vl), (uint32_t)nl,
						(uint32_t)vl};
		(*count)++;
	}
	return kv;
}

/* request_headers / response_headers = { set = {...}, add = {...}, remove = { "Name", ... } } */
static void load_header_rules(struct vctx *v, struct config *cfg, int idx, const struct section *rs,
			      const char *key, struct header_rules *rules)
{
	static const char *const keys[] = {"set", "add", "remove", NULL};
	lua_State *L = v->L;
	if (!cfg_get_table(v, idx, rs, key, false))
		return;
	int t = lua_gettop(L);
	char label[320];
	snprintf(label, sizeof(label), "%.290s: %s", rs->label, key);
	struct section s = {.label = label, .path = rs->path};
	cfg_path_push(&s.path, key, false);
	cfg_check_keys(v, t, &s, keys);
	if (cfg_get_table(v, t, &s, "set", false)) {
		rules->set = load_header_map(v, cfg, &s, "set", &rules->nset);
		lua_pop(L, 1);
	}
	if (cfg_get_table(v, t, &s, "add", false)) {
		rules->add = load_header_map(v, cfg, &s, "add", &rules->nadd);
		lua_pop(L, 1);
	}
	if (cfg_get_table(v, t, &s, "remove", false)) {
		size_t n = lua_objlen(L, -1);
		struct header_kv *kv = arena_alloc(&cfg->arena, (n ? n : 1) * sizeof(*kv));
		for (size_t i = 1; kv && i <= n; i++) {
			lua_rawgeti(L, -1, (int)i);
			size_t nl = 0;
			const char *name =
			    lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
			if (!name || !http_header_name_valid(name, nl) ||
			    http_header_owned(name, nl)) {
				struct cfg_path p = s.path;
				cfg_path_push(&p, "remove", false);
				cfg_fail(v, &p,
					 "%s: remove must list header names (not framing or "
					 "connection ones)",
					 label);
			} else {
				kv[rules->nremove++] = (struct header_kv){
				    arena_strndup(&cfg->arena, name, nl), "", (uint32_t)nl, 0};
			}
			lua_pop(L, 1);
		}
		rules->remove = kv;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/*
 * force_https = true (port 443), a port, or false: plain HTTP requests get
 * a redirect to https://host[:port] with their target. Absent keeps *port.
 */
static void get_https_port(struct vctx *v, int idx, const struct section *s, uint16_t *port)
{
	lua_getfield(v->L, idx, "force_https");
	if (lua_isboolean(v->L, -1)) {
		*port = lua_toboolean(v->L, -1) ? 443 : 0;
	} else if (!lua_isnil(v->L, -1)) {
		uint32_t p = 0;
		cfg_get_size(v, idx, s, "force_https", 1, 65535, &p);
		*port = (uint16_t)p;
	}
	lua_pop(v->L, 1);
}

/*
 * metrics = true in the table at idx: a series of its own for the site
 * (route NULL) or the route; returns its slot + 1, or 0.
 */
static uint32_t get_metrics(struct vctx *v, struct config *cfg, int idx, const struct section *s,
			    const char *site, const char *route)
{
	lua_getfield(v->L, idx, "metrics");
	bool on = lua_toboolean(v->L, -1);
	if (!lua_isnil(v->L, -1) && !lua_isboolean(v->L, -1)) {
		struct cfg_path p = s->path;
		cfg_path_push(&p, "metrics", false);
		cfg_fail(v, &p, "%s: metrics must be true or false", s->label);
	}
	lua_pop(v->L, 1);
	if (!on)
		return 0;
	struct cfg_tracked *t = realloc(cfg->tracked, (cfg->ntracked + 1) * sizeof(*t));
	if (!t) {
		cfg_fail(v, NULL, "out of memory");
		return 0;
	}
	cfg->tracked = t;
	t[cfg->ntracked] = (struct cfg_tracked){.site = site, .route = route};
	return (uint32_t)++cfg->ntracked;
}

static void load_route(struct vctx *v, struct config *cfg, const struct section *ss,
		       const char *site, struct route *rt, const char *default_path)
{
	static const char *const keys[] = {
	    "path",	   "pool",    "respond", "redirect", "request_headers", "response_headers",
	    "force_https", "metrics", NULL};
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	lua_getfield(L, idx, "path");
	size_t plen = 0;
	const char *path =
	    lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &plen) : default_path;
	if (path == default_path)
		plen = path ? strlen(path) : 0;
	char label[300];
	snprintf(label, sizeof(label), "%.150s: route \"%.100s\"", ss->label, path ? path : "?");
	struct section s = {.label = label, .path = ss->path};
	if (path && path != default_path)
		cfg_path_push(&s.path, path, true);
	cfg_check_keys(v, idx, &s, keys);
	if (!path || path[0] != '/') {
		cfg_fail(v, &s.path, "%s: path must be a prefix starting with \"/\"", label);
		path = "/";
		plen = 1;
	}
	rt->prefix = arena_strndup(&cfg->arena, path, plen);
	rt->prefix_len = (uint32_t)plen;
	lua_pop(L, 1);

	int actions = 0;
	lua_getfield(L, idx, "pool");
	if (!lua_isnil(L, -1)) {
		actions++;
		struct cfg_path p = s.path;
		cfg_path_push(&p, "pool", false);
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		rt->action = ROUTE_PROXY;
		rt->pool = pool ? config_find_pool(cfg, pool) : SIZE_MAX;
		if (!pool)
			cfg_fail(v, &p, "%s: pool must name a pool", label);
		else if (rt->pool == SIZE_MAX) {
			cfg_path_push(&p, pool, true);
			cfg_fail(v, &p, "%s: unknown pool \"%s\"", label, pool);
		}
	}
	lua_pop(L, 1);
	if (cfg_get_table(v, idx, &s, "respond", false)) {
		static const char *const rkeys[] = {"status", "body", "headers", NULL};
		actions++;
		int r = lua_gettop(L);
		struct section rs = {.label = label, .path = s.path};
		cfg_path_push(&rs.path, "respond", false);
		cfg_check_keys(v, r, &rs, rkeys);
		uint32_t status = 200;
		cfg_get_size(v, r, &rs, "status", 200, 599, &status);
		rt->action = ROUTE_RESPOND;
		rt->status = (uint16_t)status;
		lua_getfield(L, r, "body");
		size_t blen = 0;
		const char *body =
		    lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &blen) : "";
		if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
			struct cfg_path p = rs.path;
			cfg_path_push(&p, "body", false);
			cfg_fail(v, &p, "%s: respond body must be a string", label);
		}
		if (blen > 65536) {
			struct cfg_path p = rs.path;
			cfg_path_push(&p, "body", false);
			cfg_fail(v, &p, "%s: respond body is %zu bytes; at most 65536", label,
				 blen);
		}
		rt->body = arena_strndup(&cfg->arena, body, blen);
		rt->body_len = (uint32_t)blen;
		lua_pop(L, 1);
		if (cfg_get_table(v, r, &rs, "headers", false)) {
			rt->respond_headers =
			    load_header_map(v, cfg, &rs, "headers", &rt->nrespond_headers);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	if (cfg_get_table(v, idx, &s, "redirect", false)) {
		static const char *const rkeys[] = {"to", "status", "keep_path", NULL};
		actions++;
		int r = lua_gettop(L);
		struct section rs = {.label = label, .path = s.path};
		cfg_path_push(&rs.path, "redirect", false);
		cfg_check_keys(v, r, &rs, rkeys);
		uint32_t status = 302;
		cfg_get_size(v, r, &rs, "status", 300, 399, &status);
		rt->action = ROUTE_REDIRECT;
		rt->status = (uint16_t)status;
		lua_getfield(L, r, "to");
		size_t tlen = 0;
		const char *to =
		    lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &tlen) : NULL;
		if (!to || !tlen || !http_header_value_valid(to, tlen)) {
			struct cfg_path p = rs.path;
			cfg_path_push(&p, "to", false);
			cfg_fail(v, &p, "%s: redirect needs to = \"URL\" (no control characters)",
				 label);
			to = "/";
			tlen = 1;
		}
		rt->location = arena_strndup(&cfg->arena, to, tlen);
		rt->location_len = (uint32_t)tlen;
		lua_pop(L, 1);
		lua_getfield(L, r, "keep_path");
		rt->keep_path = lua_toboolean(L, -1);
		lua_pop(L, 2);
	}
	if (actions != 1)
		cfg_fail(v, &s.path, "%s: give exactly one of pool, respond or redirect", label);
	get_https_port(v, idx, &s, &rt->https_port);
	rt->metrics = get_metrics(v, cfg, idx, &s, site, rt->prefix);
	load_header_rules(v, cfg, idx, &s, "request_headers", &rt->req);
	load_header_rules(v, cfg, idx, &s, "response_headers", &rt->rsp);
}

void cfg_load_site(struct vctx *v, struct config *cfg, size_t index)
{
	static const char *const keys[] = {"hosts", "default",	   "pool",    "routes",
					   "tls",   "force_https", "metrics", NULL};
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	struct site *site = &cfg->router.sites[index];
	lua_getfield(L, idx, "hosts");
	bool hosts_ok = lua_istable(L, -1) || lua_isnil(L, -1);
	if (lua_istable(L, -1))
		lua_rawgeti(L, -1, 1);
	else
		lua_pushnil(L);
	const char *first = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	char label[300];
	snprintf(label, sizeof(label), "site \"%.200s\"", first ? first : "?");
	struct section s = {.label = label};
	cfg_path_push(&s.path, "sites", false);
	if (first)
		cfg_path_push(&s.path, first, true);
	site->name = arena_strndup(&cfg->arena, first ? first : "", first ? strlen(first) : 0);
	lua_pop(L, 1);
	if (!hosts_ok) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "hosts", false);
		cfg_fail(v, &p, "sites: entry %zu: hosts must be a list of host names", index + 1);
	}
	size_t nhosts = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	for (size_t i = 1; i <= nhosts; i++) {
		lua_rawgeti(L, -1, (int)i);
		size_t hl = 0;
		const char *host =
		    lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &hl) : NULL;
		/* "hosts" comes before the first host that names the site: not searched for. */
		struct cfg_path p = s.path;
		if (host)
			cfg_path_push(&p, host, true);
		int rc = host ? router_add_host(&cfg->router, arena_strndup(&cfg->arena, host, hl),
						hl, (uint32_t)index)
			      : -EINVAL;
		if (rc == -EEXIST)
			cfg_fail(v, &p, "%s: host \"%s\" belongs to another site already", label,
				 host);
		else if (rc == -ENOSPC)
			cfg_fail(v, &p,
				 "%s: more hosts than were there when they were counted "
				 "(a metamethod that changes the table?)",
				 label);
		else if (rc < 0)
			cfg_fail(v, &p,
				 "%s: \"%s\" is not a host name (lower case, no port) or *.suffix",
				 label, host ? host : "?");
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	cfg_check_keys(v, idx, &s, keys);
	static const char *const tls_keys[] = {"verify_client", NULL};
	struct subsection tls;
	if (cfg_get_subsection(v, idx, &s, "tls", tls_keys, &tls)) {
		cfg_load_verify(v, tls.idx, &tls.s, &site->tls_verify);
		cfg->sites_require_certs |= site->tls_verify == TLS_VERIFY_REQUIRED;
		lua_pop(L, 1);
	}
	uint16_t https_port = 0;
	get_https_port(v, idx, &s, &https_port);
	site->metrics = get_metrics(v, cfg, idx, &s, site->name, NULL);
	lua_getfield(L, idx, "default");
	if (lua_toboolean(L, -1)) {
		if (cfg->router.default_site >= 0) {
			struct cfg_path p = s.path;
			cfg_path_push(&p, "default", false);
			cfg_fail(v, &p, "%s: only one site can be the default", label);
		}
		cfg->router.default_site = (int64_t)index;
	} else if (!nhosts) {
		cfg_fail(v, &s.path,
			 "%s: hosts must list at least one host (or set default = true)", label);
	}
	lua_pop(L, 1);

	lua_getfield(L, idx, "routes");
	size_t nroutes = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	lua_pop(L, 1);
	lua_getfield(L, idx, "pool");
	bool shorthand = !lua_isnil(L, -1);
	lua_pop(L, 1);
	site->routes = arena_alloc(&cfg->arena, (nroutes + shorthand + 1) * sizeof(*site->routes));
	if (!site->routes) {
		cfg_fail(v, NULL, "out of memory");
		return;
	}
	if (shorthand) {
		/* pool = "x" is a route "/" to it; explicit routes with longer prefixes win. */
		lua_getfield(L, idx, "pool");
		struct cfg_path p = s.path;
		cfg_path_push(&p, "pool", false);
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		struct route *rt = &site->routes[site->nroutes++];
		rt->prefix = "/";
		rt->prefix_len = 1;
		rt->action = ROUTE_PROXY;
		rt->https_port = https_port;
		rt->pool = pool ? config_find_pool(cfg, pool) : SIZE_MAX;
		if (!pool) {
			cfg_fail(v, &p, "%s: pool must name a pool", label);
		} else if (rt->pool == SIZE_MAX) {
			cfg_path_push(&p, pool, true);
			cfg_fail(v, &p, "%s: unknown pool \"%s\"", label, pool);
		}
		lua_pop(L, 1);
	}
	if (cfg_get_table(v, idx, &s, "routes", false)) {
		for (size_t i = 1; i <= nroutes; i++) {
			lua_rawgeti(L, -1, (int)i);
			if (!lua_istable(L, -1)) {
				struct cfg_path p = s.path;
				cfg_path_push(&p, "routes", false);
				cfg_fail(v, &p, "%s: routes must be a list of { path = ..., ... }",
					 label);
			} else {
				struct route *rt = &site->routes[site->nroutes++];
				rt->https_port = https_port;
				load_route(v, cfg, &s, site->name, rt, NULL);
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	if (!site->nroutes)
		cfg_fail(v, &s.path, "%s: give pool = \"name\" or routes = { ... }", label);
	router_sort_routes(site);
	/* Sorted by length: a repeated prefix is within its run of equal lengths. */
	for (uint32_t i = 0; i < site->nroutes; i++)
		for (uint32_t k = i + 1;
		     k < site->nroutes && site->routes[k].prefix_len == site->routes[i].prefix_len;
		     k++)
			if (!memcmp(site->routes[i].prefix, site->routes[k].prefix,
				    site->routes[i].prefix_len)) {
				struct cfg_path p = s.path;
				cfg_path_push(&p, "routes", false);
				cfg_path_push(&p, site->routes[i].prefix, true);
				cfg_path_push(&p, site->routes[i].prefix, true);
				cfg_fail(v, &p, "%s: route \"%s\" given twice", label,
					 site->routes[i].prefix);
			}
}

void cfg_load_sites(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!cfg_get_table(v, 1, &top, "sites", false))
		return;
	int idx = lua_gettop(L);
	size_t n = lua_objlen(L, idx), nexact = 0, nwildcard = 0;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		if (lua_istable(L, -1)) {
			lua_getfield(L, -1, "hosts");
			size_t nh = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
			for (size_t k = 1; k <= nh; k++) {
				lua_rawgeti(L, -1, (int)k);
				const char *h = lua_tostring(L, -1);
				if (h && h[0] == '*')
					nwildcard++;
				else
					nexact++;
				lua_pop(L, 1);
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	if (router_init(&cfg->router, &cfg->arena, n, nexact, nwildcard) < 0) {
		cfg_fail(v, NULL, "out of memory");
		lua_pop(L, 1);
		return;
	}
	cfg->has_sites = true;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		if (!lua_istable(L, -1)) {
			struct cfg_path p = {0};
			cfg_path_push(&p, "sites", false);
			cfg_fail(v, &p, "sites: entry %zu must be a table { hosts = {...}, ... }",
				 i);
		} else {
			cfg_load_site(v, cfg, i - 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

const struct site *cfg_site_with_client_certs(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->router.nsites; i++)
		if (cfg->router.sites[i].tls_verify > TLS_VERIFY_OFF)
			return &cfg->router.sites[i];
	return NULL;
}
