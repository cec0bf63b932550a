#include "control/runtime.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "tls/tls.h"

/* JSON nested deeper than a site ever is (site, routes, route, respond, headers) by far. */
#define JSON_MAX_DEPTH 16

/* --- JSON into Lua, for the config's own checks --- */

/*
 * Pushes item as the Lua value the config file would have written: objects
 * and arrays as tables, null as nothing (a key set to null is absent).
 * Returns 0, or -1 with a message in err and nothing pushed.
 */
static int push_json(lua_State *L, const cJSON *item, int depth, const char *what, char *err,
		     size_t errlen)
{
	if (depth > JSON_MAX_DEPTH || !lua_checkstack(L, 4)) {
		snprintf(err, errlen, "%s: nested deeper than %d", what, JSON_MAX_DEPTH);
		return -1;
	}
	if (cJSON_IsString(item)) {
		lua_pushstring(L, item->valuestring);
	} else if (cJSON_IsNumber(item)) {
		lua_pushnumber(L, item->valuedouble);
	} else if (cJSON_IsBool(item)) {
		lua_pushboolean(L, cJSON_IsTrue(item));
	} else if (cJSON_IsNull(item)) {
		lua_pushnil(L);
	} else if (cJSON_IsArray(item)) {
		lua_createtable(L, cJSON_GetArraySize(item), 0);
		int i = 0;
		for (const cJSON *e = item->child; e; e = e->next) {
			if (cJSON_IsNull(e)) {
				snprintf(err, errlen, "%s: null in a list", what);
				lua_pop(L, 1);
				return -1;
			}
			if (push_json(L, e, depth + 1, what, err, errlen) < 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_rawseti(L, -2, ++i);
		}
	} else if (cJSON_IsObject(item)) {
		lua_createtable(L, 0, cJSON_GetArraySize(item));
		for (const cJSON *e = item->child; e; e = e->next) {
			lua_getfield(L, -1, e->string);
			bool taken = !lua_isnil(L, -1);
			lua_pop(L, 1);
			if (taken) {
				snprintf(err, errlen, "%s: key \"%.100s\" given twice", what,
					 e->string);
				lua_pop(L, 1);
				return -1;
			}
			if (push_json(L, e, depth + 1, what, err, errlen) < 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_setfield(L, -2, e->string);
		}
	} else {
		snprintf(err, errlen, "%s: not a JSON value", what);
		return -1;
	}
	return 0;
}

/* --- the overlay --- */

/* A copy of the n bytes at src, or NULL. */
static void *memdup(const void *src, size_t n)
{
	void *dst = malloc(n ? n : 1);
	return dst ? memcpy(dst, src, n) : NULL;
}

static void overlay_free(struct overlay *ov, size_t npools)
{
	for (size_t i = 0; ov->pools && i < npools; i++)
		free(ov->pools[i].servers);
	free(ov->pools);
	for (size_t i = 0; i < ov->nremoved; i++)
		free(ov->removed[i]);
	free(ov->removed);
	for (size_t i = 0; i < ov->nsites; i++) {
		free(ov->sites[i].name);
		free(ov->sites[i].json);
	}
	free(ov->sites);
	*ov = (struct overlay){0};
}

/* A deep copy of src, to change and then keep or drop: 0 or -ENOMEM. */
static int overlay_copy(struct overlay *dst, const struct overlay *src, size_t npools)
{
	*dst = (struct overlay){0};
	if (!(dst->pools = calloc(npools ? npools : 1, sizeof(*dst->pools))))
		goto oom;
	for (size_t i = 0; src->pools && i < npools; i++) {
		const struct runtime_pool *p = &src->pools[i];
		if (!p->servers)
			continue;
		if (!(dst->pools[i].servers = memdup(p->servers, p->nservers * sizeof(*p->servers))))
			goto oom;
		dst->pools[i].nservers = p->nservers;
	}
	/* One spare slot each: a change adds at most one. */
	if (!(dst->removed = calloc(src->nremoved + 1, sizeof(*dst->removed))) ||
	    !(dst->sites = calloc(src->nsites + 1, sizeof(*dst->sites))))
		goto oom;
	for (; dst->nremoved < src->nremoved; dst->nremoved++)
		if (!(dst->removed[dst->nremoved] = strdup(src->removed[dst->nremoved])))
			goto oom;
	for (; dst->nsites < src->nsites; dst->nsites++) {
		struct runtime_site *s = &dst->sites[dst->nsites];
		s->name = strdup(src->sites[dst->nsites].name);
		s->json = strdup(src->sites[dst->nsites].json);
		if (!s->name || !s->json) {
			dst->nsites++; /* freed with the rest */
			goto oom;
		}
	}
	return 0;
oom:
	overlay_free(dst, npools);
	return -ENOMEM;
}

static bool is_removed(const struct overlay *ov, const char *name)
{
	for (size_t i = 0; i < ov->nremoved; i++)
		if (!strcmp(ov->removed[i], name))
			return true;
	return false;
}

/* --- deriving a snapshot --- */

struct host_copy {
	const int64_t *remap; /* the file's site index -> the new one, or -1 */
	struct router *to;
	size_t exact, wildcard; /* counted, when to is NULL */
	int rc;
};

static void copy_host(void *ud, const char *name, size_t len, bool wildcard, uint32_t site)
{
	struct host_copy *c = ud;
	if (c->remap[site] < 0)
		return;
	if (!c->to) {
		*(wildcard ? &c->wildcard : &c->exact) += 1;
		return;
	}
	/* The name stays in the file's arena, which the derived snapshot holds. */
	int rc = host_table_put(wildcard ? &c->to->wildcard : &c->to->exact, name, len,
				(uint32_t)c->remap[site]);
	if (rc < 0)
		c->rc = rc;
}

static void count_hosts(const cJSON *site, size_t *exact, size_t *wildcard)
{
	const cJSON *hosts = cJSON_GetObjectItemCaseSensitive(site, "hosts");
	for (const cJSON *h = cJSON_IsArray(hosts) ? hosts->child : NULL; h; h = h->next)
		*(cJSON_IsString(h) && h->valuestring[0] == '*' ? wildcard : exact) += 1;
}

/* A site that asks for client certificates needs every TLS listener routing to it able to check
 * them. */
static int check_client_certs(const struct config *cfg, const struct site *s, const char *what,
			      char *err, size_t errlen)
{
	if (s->tls_verify <= TLS_VERIFY_OFF)
		return 0;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		if (l->routed && l->tls && !l->client_ca) {
			snprintf(
			    err, errlen,
			    "%s: site \"%s\" asks for client certificates, and listener \"%s\" "
			    "has no tls.client_ca to check them",
			    what, s->name, l->addr.text);
			return -1;
		}
	}
	return 0;
}

static int derive_pools(struct config *cfg, const struct config *file, const struct overlay *ov)
{
	if (!(cfg->pools = calloc(file->npools ? file->npools : 1, sizeof(*cfg->pools))))
		return -ENOMEM;
	for (size_t i = 0; i < file->npools; i++) {
		struct cfg_pool *p = &cfg->pools[cfg->npools++];
		*p = file->pools[i];
		p->ring = (struct balance_ring){0};
		p->servers = NULL;
		const struct runtime_pool *rp =
		    ov->pools && ov->pools[i].servers ? &ov->pools[i] : NULL;
		const struct cfg_server *from = rp ? rp->servers : file->pools[i].servers;
		size_t n = rp ? rp->nservers : file->pools[i].nservers;
		if (!(p->servers = memdup(from, n * sizeof(*p->servers))))
			return -ENOMEM;
		p->nservers = n;
		if (config_pool_ring(p) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int derive_sites(struct config *cfg, const struct config *file, const struct overlay *ov,
			const char *what, char *err, size_t errlen)
{
	if (!ov->nsites && !ov->nremoved) {
		/* Only pools changed: the file's router serves as it is. */
		cfg->router = file->router;
		return 0;
	}
	size_t nfile = file->router.nsites, kept = 0;
	int64_t *remap = malloc((nfile ? nfile : 1) * sizeof(*remap));
	cJSON **given = calloc(ov->nsites + 1, sizeof(*given));
	lua_State *L = NULL;
	int rc = -1;
	if (!remap || !given)
		goto oom;
	for (size_t i = 0; i < nfile; i++)
		remap[i] = is_removed(ov, file->router.sites[i].name) ? -1 : (int64_t)kept++;
	/* Every site of the file is there, where it was: its tables copy as they are. */
	bool whole = kept == nfile;
	struct host_copy hc = {.remap = remap};
	if (whole) {
		hc.exact = file->router.exact.used;
		hc.wildcard = file->router.wildcard.used;
	} else {
		router_each_host(&file->router, copy_host, &hc);
	}
	for (size_t i = 0; i < ov->nsites; i++) {
		if (!(given[i] = cJSON_Parse(ov->sites[i].json)))
			goto oom; /* it parsed when it was given */
		count_hosts(given[i], &hc.exact, &hc.wildcard);
	}
	if (router_init(&cfg->router, &cfg->arena, kept + ov->nsites, whole ? 0 : hc.exact,
			whole ? 0 : hc.wildcard) < 0)
		goto oom;
	for (size_t i = 0; i < nfile; i++)
		if (remap[i] >= 0)
			cfg->router.sites[remap[i]] = file->router.sites[i];
	if (file->router.default_site >= 0)
		cfg->router.default_site = remap[file->router.default_site];
	if (whole) {
		if (host_table_copy(&cfg->router.exact, &cfg->arena, &file->router.exact,
				    hc.exact) < 0 ||
		    host_table_copy(&cfg->router.wildcard, &cfg->arena, &file->router.wildcard,
				    hc.wildcard) < 0)
			goto oom;
	} else {
		hc.to = &cfg->router;
		router_each_host(&file->router, copy_host, &hc);
		if (hc.rc < 0)
			goto oom;
	}
	if (ov->nsites && !(L = luaL_newstate()))
		goto oom;
	for (size_t i = 0; i < ov->nsites; i++) {
		if (push_json(L, given[i], 0, what, err, errlen) < 0 ||
		    config_lua_site(cfg, L, kept + i, what, err, errlen) < 0)
			goto out;
		lua_pop(L, 1);
		struct site *s = &cfg->router.sites[kept + i];
		s->added = true;
		if (check_client_certs(cfg, s, what, err, errlen) < 0)
			goto out;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	if (L)
		lua_close(L);
	for (size_t i = 0; given && i < ov->nsites; i++)
		cJSON_Delete(given[i]);
	free(given);
	free(remap);
	return rc;
}

struct config *runtime_derive(struct config *file, const struct overlay *ov, const char *what,
			      char *err, size_t errlen)
{
	struct config *cfg = malloc(sizeof(*cfg));
	if (!cfg) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/*
	 * Everything borrowed, then what it owns replaced (config.h says which).
	 * All but refs, first, which workers change as this runs.
	 */
	static_assert(offsetof(struct config, refs) == 0, "refs comes first");
	const size_t from = offsetof(struct config, workers);
	memcpy((char *)cfg + from, (const char *)file + from, sizeof(*cfg) - from);
	cfg->refs = 1;
	cfg->base = config_ref(file);
	cfg->arena = (struct arena){0};
	cfg->pools = NULL;
	cfg->npools = 0;
	cfg->tracked = NULL;
	cfg->ntracked = 0;
	cfg->warnings = NULL;
	memset(&cfg->router, 0, sizeof(cfg->router));
	cfg->router.default_site = -1;
	if (derive_pools(cfg, file, ov) < 0)
		goto oom;
	if (file->ntracked) {
		if (!(cfg->tracked = memdup(file->tracked, file->ntracked * sizeof(*cfg->tracked))))
			goto oom;
		cfg->ntracked = file->ntracked;
	}
	if (derive_sites(cfg, file, ov, what, err, errlen) < 0)
		goto fail;
	return cfg;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	config_unref(cfg);
	return NULL;
}

/* --- the changes --- */

void runtime_reset(struct runtime *rt, struct config *file)
{
	/* Any change made a copy of the pools: none there, none made. */
	if (rt->ov.pools)
		log_info("the changes made through the admin API are dropped: the file's "
			 "configuration runs");
	if (rt->file)
		overlay_free(&rt->ov, rt->file->npools);
	config_unref(rt->file);
	rt->file = config_ref(file);
}

void runtime_free(struct runtime *rt)
{
	if (rt->file)
		overlay_free(&rt->ov, rt->file->npools);
	config_unref(rt->file);
	rt->file = NULL;
}

/* Runs file with next in place of the overlay; keeps next (and frees the old) if that worked. */
static int apply(struct runtime *rt, struct overlay *next, const char *what, char *err,
		 size_t errlen)
{
	struct config *cfg = runtime_derive(rt->file, next, what, err, errlen);
	int rc = cfg ? rt->publish(rt->ud, cfg, err, errlen) : -1;
	config_unref(cfg);
	if (rc < 0) {
		overlay_free(next, rt->file->npools);
		return -1;
	}
	overlay_free(&rt->ov, rt->file->npools);
	rt->ov = *next;
	return 0;
}

static int copy_for_change(struct runtime *rt, struct overlay *next, char *err, size_t errlen)
{
	if (overlay_copy(next, &rt->ov, rt->file->npools) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* The index of the pool named name in the file's config, or SIZE_MAX with a message. */
static size_t pool_index(const struct runtime *rt, const char *name, char *err, size_t errlen)
{
	size_t i = config_find_pool(rt->file, name);
	if (i == SIZE_MAX)
		snprintf(err, errlen, "pool: no pool \"%.200s\"", name);
	return i;
}

/*
 * A copy of the overlay in next, with pool i's servers its own and room for
 * one more, to change; NULL (and nothing in next) with a message.
 */
static struct runtime_pool *servers_to_change(struct runtime *rt, struct overlay *next, size_t i,
					      char *err, size_t errlen)
{
	if (copy_for_change(rt, next, err, errlen) < 0)
		return NULL;
	struct runtime_pool *p = &next->pools[i];
	const struct cfg_pool *fp = &rt->file->pools[i];
	if (!p->servers && (p->servers = memdup(fp->servers, fp->nservers * sizeof(*p->servers))))
		p->nservers = fp->nservers;
	struct cfg_server *grown =
	    p->servers ? realloc(p->servers, (p->nservers + 1) * sizeof(*p->servers)) : NULL;
	if (!grown) {
		overlay_free(next, rt->file->npools);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->servers = grown;
	return p;
}

/* The server in item, checked as the config file's: 0, or -1 with a message. */
static int parse_server(const struct cfg_pool *pool, const cJSON *item, struct cfg_server *srv,
			char *err, size_t errlen)
{
	lua_State *L = luaL_newstate();
	if (!L) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = push_json(L, item, 0, "add", err, errlen);
	if (rc == 0)
		rc = config_lua_server(pool, L, srv, "add", err, errlen);
	lua_close(L);
	return rc;
}

static size_t find_server(const struct runtime_pool *p, const struct cfg_addr *addr)
{
	size_t k = 0;
	while (k < p->nservers && !config_addr_equal(&p->servers[k].addr, addr))
		k++;
	return k;
}

int runtime_add_server(struct runtime *rt, const char *pool, const cJSON *server, char *err,
		       size_t errlen)
{
	size_t i = pool_index(rt, pool, err, errlen);
	struct cfg_server srv = {0};
	struct overlay next;
	struct runtime_pool *p;
	if (i == SIZE_MAX || parse_server(&rt->file->pools[i], server, &srv, err, errlen) < 0 ||
	    !(p = servers_to_change(rt, &next, i, err, errlen)))
		return -1;
	size_t k = find_server(p, &srv.addr);
	if (k < p->nservers) {
		snprintf(err, errlen, "add: pool \"%.100s\" has server %s already", pool,
			 p->servers[k].addr.text);
		overlay_free(&next, rt->file->npools);
		return -1;
	}
	p->servers[p->nservers++] = srv;
	return apply(rt, &next, "add", err, errlen);
}

int runtime_remove_server(struct runtime *rt, const char *pool, const char *address, char *err,
			  size_t errlen)
{
	size_t i = pool_index(rt, pool, err, errlen);
	if (i == SIZE_MAX)
		return -1;
	struct cfg_addr addr;
	char why[160];
	if (config_parse_addr(address, &addr, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "remove: \"%.100s\": %s", address, why);
		return -1;
	}
	struct overlay next;
	struct runtime_pool *p = servers_to_change(rt, &next, i, err, errlen);
	if (!p)
		return -1;
	size_t k = find_server(p, &addr);
	if (k == p->nservers || p->nservers == 1) {
		if (k == p->nservers)
			snprintf(err, errlen, "remove: pool \"%.100s\" has no server %.100s", pool,
				 address);
		else
			snprintf(err, errlen,
				 "remove: %.100s is the last server of pool \"%.100s\"", address,
				 pool);
		overlay_free(&next, rt->file->npools);
		return -1;
	}
	memmove(&p->servers[k], &p->servers[k + 1], (p->nservers - k - 1) * sizeof(*p->servers));
	p->nservers--;
	return apply(rt, &next, "remove", err, errlen);
}

/* Takes the site named name out of what next runs: 0, or -1 with a message if there is none. */
static int take_out_site(const struct runtime *rt, struct overlay *next, const char *name,
			 const char *what, char *err, size_t errlen)
{
	for (size_t i = 0; i < next->nsites; i++) {
		if (strcmp(next->sites[i].name, name))
			continue;
		free(next->sites[i].name);
		free(next->sites[i].json);
		memmove(&next->sites[i], &next->sites[i + 1],
			(next->nsites - i - 1) * sizeof(*next->sites));
		next->nsites--;
		return 0;
	}
	if (is_removed(next, name) || router_site_index(&rt->file->router, name) == SIZE_MAX) {
		snprintf(err, errlen, "%s: no site \"%.200s\"", what, name);
		return -1;
	}
	if (!(next->removed[next->nremoved] = strdup(name))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	next->nremoved++;
	return 0;
}

/* Appends site to next->sites (a spare slot is there): 0, or -1 with a message. */
static int append_site(struct overlay *next, const cJSON *site, const char *what, char *err,
		       size_t errlen)
{
	if (!cJSON_IsObject(site)) {
		snprintf(err, errlen, "%s: a site is an object { \"hosts\": [...], \"pool\": ... }",
			 what);
		return -1;
	}
	struct runtime_site *s = &next->sites[next->nsites];
	s->name = strdup(runtime_site_name(site));
	s->json = cJSON_PrintUnformatted(site);
	next->nsites++; /* freed with next, whatever happens */
	if (!s->name || !s->json) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

const char *runtime_site_name(const cJSON *site)
{
	const cJSON *hosts = cJSON_GetObjectItemCaseSensitive(site, "hosts");
	const cJSON *first = cJSON_IsArray(hosts) ? hosts->child : NULL;
	return cJSON_IsString(first) ? first->valuestring : "";
}

static int need_sites(const struct runtime *rt, const char *what, char *err, size_t errlen)
{
	if (rt->file->has_sites)
		return 0;
	snprintf(err, errlen,
		 "%s: every listener has a pool of its own: sites need a listener without one "
		 "(and sites = {...}) in the file",
		 what);
	return -1;
}

int runtime_add_site(struct runtime *rt, const cJSON *site, char *err, size_t errlen)
{
	struct overlay next;
	if (need_sites(rt, "add", err, errlen) < 0 || copy_for_change(rt, &next, err, errlen) < 0)
		return -1;
	if (append_site(&next, site, "add", err, errlen) < 0) {
		overlay_free(&next, rt->file->npools);
		return -1;
	}
	return apply(rt, &next, "add", err, errlen);
}

int runtime_replace_site(struct runtime *rt, const char *name, const cJSON *site, char *err,
			 size_t errlen)
{
	struct overlay next;
	if (need_sites(rt, "site", err, errlen) < 0 || copy_for_change(rt, &next, err, errlen) < 0)
		return -1;
	/* A site the API gave comes back at the end: the one loaded last is the one a clash names.
	 */
	if (take_out_site(rt, &next, name, "replace", err, errlen) < 0 ||
	    append_site(&next, site, "site", err, errlen) < 0) {
		overlay_free(&next, rt->file->npools);
		return -1;
	}
	return apply(rt, &next, "site", err, errlen);
}

int runtime_remove_site(struct runtime *rt, const char *name, char *err, size_t errlen)
{
	struct overlay next;
	if (copy_for_change(rt, &next, err, errlen) < 0)
		return -1;
	if (take_out_site(rt, &next, name, "remove", err, errlen) < 0) {
		overlay_free(&next, rt->file->npools);
		return -1;
	}
	return apply(rt, &next, "remove", err, errlen);
}
