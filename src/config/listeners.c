/*
 * The listeners section: addresses, their pool or the sites, limits,
 * and TLS (certificates, protocols, client certificates).
 */

#include <lua.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/load.h"
#include "core/common.h"
#include "tls/tls.h"

/* protocols = { "TLSv1.2", "TLSv1.3" }: the lowest and highest named. */
static void load_protocols(struct vctx *v, const struct subsection *sub, struct tls_server_opts *o)
{
	lua_State *L = v->L;
	lua_getfield(L, sub->idx, "protocols");
	struct cfg_path p = sub->s.path;
	cfg_path_push(&p, "protocols", false);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	size_t n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	if (!n)
		cfg_fail(v, &p, "%s: protocols must list \"TLSv1.2\" and/or \"TLSv1.3\"",
			 sub->label);
	int lo = INT32_MAX, hi = 0;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (int)i);
		const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
		int version = !strcmp(name, "TLSv1.2")	 ? TLS1_2_VERSION
			      : !strcmp(name, "TLSv1.3") ? TLS1_3_VERSION
							 : 0;
		if (!version && (!strcmp(name, "TLSv1") || !strcmp(name, "TLSv1.0") ||
				 !strcmp(name, "TLSv1.1") || !strncmp(name, "SSL", 3)))
			cfg_fail(v, &p,
				 "%s: protocols: %s is refused (broken); only TLSv1.2 and TLSv1.3",
				 sub->label, name);
		else if (!version)
			cfg_fail(
			    v, &p,
			    "%s: protocols: unknown protocol \"%s\"; \"TLSv1.2\" or \"TLSv1.3\"",
			    sub->label, name);
		lo = MIN(lo, version);
		hi = MAX(hi, version);
		lua_pop(L, 1);
	}
	if (!v->failed) {
		o->min_version = lo;
		o->max_version = hi;
	}
	lua_pop(L, 1);
}

static void load_certificates(struct vctx *v, const struct subsection *sub, struct tls_server *ts,
			      struct tls_report *r, struct tls_warnings *tw)
{
	static const char *const keys[] = {"cert", "key", NULL};
	lua_State *L = v->L;
	lua_getfield(L, sub->idx, "certificates");
	struct cfg_path lp = sub->s.path;
	cfg_path_push(&lp, "certificates", false);
	size_t n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	if (!lua_isnil(L, -1) && !lua_istable(L, -1))
		cfg_fail(v, &lp,
			 "%s: certificates must be a list of { cert = \"file\", key = \"file\" }",
			 sub->label);
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (int)i);
		int idx = lua_gettop(L);
		lua_getfield(L, idx, "cert");
		lua_getfield(L, idx, "key");
		const char *cert = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		struct section s = {.label = sub->label, .path = lp};
		if (cert)
			cfg_path_push(&s.path, cert, true);
		char cert_path[4096], key_path[4096];
		if (!lua_istable(L, idx) || !cert || (!key && !lua_isnil(L, -1))) {
			cfg_fail(v, &s.path,
				 "%s: certificates entry %zu must be { cert = \"file\", key = "
				 "\"file\" }",
				 sub->label, i);
		} else if (!cfg_relative(v, cert, cert_path, sizeof(cert_path)) ||
			   (key && !cfg_relative(v, key, key_path, sizeof(key_path)))) {
			cfg_fail(v, &s.path, "%s: file name too long", sub->label);
		} else {
			cfg_check_keys(v, idx, &s, keys);
			tw->path = &s.path;
			if (tls_server_add_cert(ts, cert_path, key ? key_path : NULL, r) < 0)
				cfg_fail(v, &s.path, "%s: %s", sub->label, r->err);
		}
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
}

/*
 * tls = { certificates = {...}, certificate_dir = "dir", protocols = {...},
 *         client_ca = "file", verify_client = "off" } of a listener.
 */
static void load_listener_tls(struct vctx *v, const struct config *cfg, struct cfg_listener *l,
			      int idx, const struct section *ls)
{
	static const char *const keys[] = {"certificates", "certificate_dir", "protocols",
					   "client_ca",	   "verify_client",   NULL};
	struct subsection sub;
	l->tls_verify = TLS_VERIFY_OFF;
	if (!cfg_get_subsection(v, idx, ls, "tls", keys, &sub))
		return;
	lua_State *L = v->L;
	struct tls_server_opts o = {TLS1_2_VERSION, TLS1_3_VERSION, TLS_VERIFY_OFF, NULL, l->http2};
	load_protocols(v, &sub, &o);
	cfg_load_verify(v, sub.idx, &sub.s, &l->tls_verify);
	o.verify = (enum tls_verify)l->tls_verify;
	lua_getfield(L, sub.idx, "client_ca");
	struct cfg_path cp = sub.s.path;
	cfg_path_push(&cp, "client_ca", false);
	char ca[4096];
	const struct site *needs = l->routed ? cfg_site_with_client_certs(cfg) : NULL;
	if (lua_type(L, -1) == LUA_TSTRING) {
		if (!cfg_relative(v, lua_tostring(L, -1), ca, sizeof(ca)))
			cfg_fail(v, &cp, "%s: client_ca: name too long", sub.label);
		o.client_ca = ca;
		l->client_ca = true;
	} else if (!lua_isnil(L, -1)) {
		cfg_fail(v, &cp, "%s: client_ca must name a PEM file of CA certificates",
			 sub.label);
	} else if (o.verify > TLS_VERIFY_OFF) {
		struct cfg_path vp = sub.s.path;
		cfg_path_push(&vp, "verify_client", false);
		cfg_fail(v, &vp,
			 "%s: verify_client needs client_ca, the CAs that sign client certificates",
			 sub.label);
	} else if (needs) {
		cfg_fail(
		    v, &sub.s.path,
		    "%s: site \"%s\" asks for client certificates: give this listener client_ca",
		    sub.label, needs->name);
	}
	lua_pop(L, 1);
	char err[768];
	struct tls_warnings tw = {v, &sub.s.path};
	struct tls_report r = {err, sizeof(err), cfg_tls_warned, &tw};
	if (!v->failed && !(l->tls = tls_server_new(&o, &r)))
		cfg_fail(v, &sub.s.path, "%s: %s", sub.label, err);
	if (l->tls)
		load_certificates(v, &sub, l->tls, &r, &tw);
	lua_getfield(L, sub.idx, "certificate_dir");
	struct cfg_path dp = sub.s.path;
	cfg_path_push(&dp, "certificate_dir", false);
	char dir[4096];
	tw.path = &dp;
	if (lua_type(L, -1) == LUA_TSTRING && l->tls && !v->failed) {
		if (!cfg_relative(v, lua_tostring(L, -1), dir, sizeof(dir)))
			cfg_fail(v, &dp, "%s: certificate_dir: name too long", sub.label);
		else if (tls_server_add_dir(l->tls, dir, &r) < 0)
			cfg_fail(v, &dp, "%s: %s", sub.label, err);
	} else if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
		cfg_fail(v, &dp, "%s: certificate_dir must name a directory", sub.label);
	}
	lua_pop(L, 1);
	tw.path = &sub.s.path;
	if (l->tls && !v->failed && tls_server_finish(l->tls, &r) < 0)
		cfg_fail(v, &sub.s.path, "%s: %s", sub.label, err);
	lua_pop(L, 1);
}

void cfg_load_listeners(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"address", "pool", "max_connections", "tls", "http2", NULL};
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!cfg_get_table(v, 1, &top, "listeners", true))
		return;
	size_t n = lua_objlen(L, -1);
	cfg->listeners = calloc(n ? n : 1, sizeof(*cfg->listeners));
	struct cfg_path lp = {0};
	cfg_path_push(&lp, "listeners", false);
	if (n == 0)
		cfg_fail(
		    v, &lp,
		    "listeners: define at least one { address = \"host:port\", pool = \"name\" }");
	for (size_t i = 1; i <= n && cfg->listeners; i++) {
		lua_rawgeti(L, -1, (int)i);
		if (!lua_istable(L, -1)) {
			cfg_fail(
			    v, &lp,
			    "listeners: entry %zu must be a table { address = ..., pool = ... }",
			    i);
			lua_pop(L, 1);
			continue;
		}
		int idx = lua_gettop(L);
		lua_getfield(L, idx, "address");
		const char *addr = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		char label[128];
		snprintf(label, sizeof(label), "listener \"%s\"", addr ? addr : "?");
		struct section s = {.label = label, .path = lp};
		if (addr)
			cfg_path_push(&s.path, addr, true);
		cfg_check_keys(v, idx, &s, keys);
		struct cfg_listener *l = &cfg->listeners[cfg->nlisteners++];
		l->protocol = "http/1.1"; /* the one there is, until a listener may ask for another */
		cfg_get_size(v, idx, &s, "max_connections", 1, 10000000, &l->max_connections);
		char why[160];
		if (!addr)
			cfg_fail(v, &s.path, "listeners: entry %zu needs address = \"host:port\"",
				 i);
		else if (config_parse_addr(addr, &l->addr, why, sizeof(why)) < 0)
			cfg_fail(v, &s.path, "%s: %s", label, why);
		lua_pop(L, 1);
		lua_getfield(L, idx, "pool");
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		struct cfg_path pp = s.path;
		cfg_path_push(&pp, "pool", false);
		if (!pool && !lua_isnil(L, -1)) {
			cfg_fail(v, &pp, "%s: pool must name a pool", label);
		} else if (!pool) {
			l->routed = true;
			if (!cfg->has_sites)
				cfg_fail(v, &pp, "%s: no pool, and no sites to route by", label);
		} else {
			l->pool = config_find_pool(cfg, pool);
			if (l->pool == SIZE_MAX) {
				cfg_path_push(&pp, pool, true);
				cfg_fail(v, &pp, "%s: unknown pool \"%s\"", label, pool);
			}
		}
		lua_pop(L, 1);
		lua_getfield(L, idx, "tls");
		l->http2 = !lua_isnil(L, -1); /* on by default where ALPN can offer it */
		lua_pop(L, 1);
		cfg_get_bool(v, idx, &s, "http2", &l->http2);
		if (l->http2) {
			lua_getfield(L, idx, "tls");
			if (lua_isnil(L, -1)) {
				struct cfg_path hp = s.path;
				cfg_path_push(&hp, "http2", false);
				cfg_fail(v, &hp, "%s: http2 needs tls (HTTP/2 without TLS, by prior knowledge, "
					 "is not supported yet)", label);
			}
			lua_pop(L, 1);
		}
		load_listener_tls(v, cfg, l, idx, &s);
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < cfg->nlisteners; i++)
		for (size_t j = 0; j < i; j++)
			if (cfg->listeners[i].addr.len &&
			    config_addr_equal(&cfg->listeners[i].addr, &cfg->listeners[j].addr)) {
				struct cfg_path p = lp;
				cfg_path_push(&p, cfg->listeners[i].addr.text, true);
				cfg_path_push(&p, cfg->listeners[i].addr.text, true);
				cfg_fail(v, &p, "listener \"%s\": address used twice",
					 cfg->listeners[i].addr.text);
			}
	lua_pop(L, 1);
}
