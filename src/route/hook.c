#include "route/hook.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "route/router.h"
#include "tls/tls.h"

/* The request being hooked: Lua's callbacks reach it through here (one per thread). */
static _Thread_local const struct hook_request *current;
static _Thread_local uint32_t budget_left;

#define COUNT_STEP 1000

static void count_instructions(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	if (budget_left <= COUNT_STEP) {
		lua_sethook(L, NULL, 0, 0);
		luaL_error(L, "hook ran out of its instruction budget");
	}
	budget_left -= COUNT_STEP;
}

static int req_header(lua_State *L)
{
	size_t len, vlen;
	const char *name = luaL_checklstring(L, 1, &len);
	const char *v = current ? current->header(current->ctx, name, len, &vlen) : NULL;
	if (v)
		lua_pushlstring(L, v, vlen);
	else
		lua_pushnil(L);
	return 1;
}

static void add_header(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	lua_State *L = arg;
	char lower[256];
	size_t n = MIN_SIZE(nlen, sizeof(lower));
	for (size_t i = 0; i < n; i++)
		lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
	lua_pushlstring(L, lower, n);
	lua_pushlstring(L, value, vlen);
	lua_rawset(L, -3);
}

/* r.headers(): a new table, lower-case names; of repeated headers the last one. */
static int req_headers(lua_State *L)
{
	lua_newtable(L);
	if (current)
		current->each_header(current->ctx, add_header, L);
	return 1;
}

static void push_field(lua_State *L, const char *s, size_t len)
{
	if (s)
		lua_pushlstring(L, s, len);
	else
		lua_pushnil(L);
}

static void set_string(lua_State *L, const char *key, const char *value)
{
	if (!value)
		return;
	lua_pushstring(L, value);
	lua_setfield(L, -2, key);
}

static void push_tls(lua_State *L, const struct tls_info *tls)
{
	if (!tls) {
		lua_pushnil(L);
		return;
	}
	lua_createtable(L, 0, 8);
	set_string(L, "sni", tls->sni);
	set_string(L, "protocol", tls->protocol);
	set_string(L, "cipher", tls->cipher);
	set_string(L, "client_verify", tls->verify);
	set_string(L, "client_subject", tls->subject);
	set_string(L, "client_issuer", tls->issuer);
	set_string(L, "client_serial", tls->serial);
	set_string(L, "client_fingerprint", tls->fingerprint);
}

/* r.<field>: computed when read, so that a hook pays only for what it looks at. */
static int req_index(lua_State *L)
{
	const char *key = luaL_checkstring(L, 2);
	const struct hook_request *r = current;
	if (!r) {
		lua_pushnil(L);
		return 1;
	}
	const char *q = memchr(r->target, '?', r->target_len);
	size_t path_len = q ? (size_t)(q - r->target) : r->target_len;
	if (!strcmp(key, "method"))
		push_field(L, r->method, r->method_len);
	else if (!strcmp(key, "host"))
		push_field(L, r->host, r->host_len);
	else if (!strcmp(key, "target"))
		push_field(L, r->target, r->target_len);
	else if (!strcmp(key, "path"))
		push_field(L, r->target, path_len);
	else if (!strcmp(key, "query"))
		push_field(L, q ? q + 1 : NULL, q ? r->target_len - path_len - 1 : 0);
	else if (!strcmp(key, "client"))
		lua_pushstring(L, r->client);
	else if (!strcmp(key, "protocol"))
		lua_pushstring(L, r->protocol ? r->protocol : "HTTP/1.1");
	else if (!strcmp(key, "tls"))
		push_tls(L, r->tls);
	else if (!strcmp(key, "header"))
		lua_pushcfunction(L, req_header);
	else if (!strcmp(key, "headers"))
		lua_pushcfunction(L, req_headers);
	else
		lua_pushnil(L);
	return 1;
}

int hook_init(struct hook *h, lua_State *L, uint32_t budget)
{
	h->L = L;
	h->budget = budget;
	luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
	h->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	lua_newtable(L);
	lua_pushcfunction(L, req_index);
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	h->req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return h->fn_ref == LUA_REFNIL || h->req_ref == LUA_REFNIL ? -1 : 0;
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
	return 1;
}

/*
 * The hook's answer is read raw: a metamethod of its tables would run (and
 * could fail) outside the protected call, where an error cannot be caught.
 */
static void get_raw_field(lua_State *L, int idx, const char *key)
{
	lua_pushstring(L, key);
	lua_rawget(L, idx);
}

/* Reads the { name = value } table at idx into kv; false with a message on bad input. */
static bool read_map(lua_State *L, int idx, const char *what, struct header_kv *kv, uint32_t *n,
		     struct hook_result *res)
{
	get_raw_field(L, idx, what);
	int t = lua_gettop(L);
	bool ok = true;
	if (lua_istable(L, t)) {
		for (lua_pushnil(L); ok && lua_next(L, t); lua_pop(L, 1)) {
			size_t nl, vl;
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
				snprintf(res->error, sizeof(res->error), "hook: %s must map names to strings", what);
				ok = false;
				break;
			}
			const char *name = lua_tolstring(L, -2, &nl);
			const char *value = lua_tolstring(L, -1, &vl);
			if (*n == HOOK_MAX_HEADERS || !http_header_name_valid(name, nl) || !http_header_value_valid(value, vl) ||
			    http_header_owned(name, nl)) {
				snprintf(res->error, sizeof(res->error),
					 "hook: %s: bad or too many headers (at most %d; names are tokens, not "
					 "framing or connection ones; values have no control characters)",
					 what, HOOK_MAX_HEADERS);
				ok = false;
				break;
			}
			/* The strings stay alive: the table holding them stays on the stack. */
			kv[(*n)++] = (struct header_kv){name, value, (uint32_t)nl, (uint32_t)vl};
		}
		if (!ok)
			lua_pop(L, 2);
	} else if (!lua_isnil(L, t)) {
		snprintf(res->error, sizeof(res->error), "hook: %s must be a table", what);
		ok = false;
	}
	if (ok && !lua_istable(L, t))
		lua_pop(L, 1);
	/* A table read is left on the stack so that its strings live; hook_release() pops it. */
	return ok;
}

static bool read_string(lua_State *L, int idx, const char *what, const char **out, size_t *len,
			struct hook_result *res)
{
	get_raw_field(L, idx, what);
	if (lua_type(L, -1) == LUA_TSTRING) {
		*out = lua_tolstring(L, -1, len);
		return true; /* left on the stack, like tables */
	}
	bool ok = lua_isnil(L, -1);
	if (!ok)
		snprintf(res->error, sizeof(res->error), "hook: %s must be a string", what);
	lua_pop(L, 1);
	return ok;
}

static enum hook_outcome read_result(lua_State *L, struct hook_result *res)
{
	int idx = lua_gettop(L);
	if (lua_isnil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx)))
		return HOOK_PASS;
	if (!lua_istable(L, idx)) {
		snprintf(res->error, sizeof(res->error), "hook: must return nothing or a table, returned a %s",
			 lua_typename(L, lua_type(L, idx)));
		return HOOK_FAIL;
	}
	get_raw_field(L, idx, "status");
	if (!lua_isnil(L, -1)) {
		lua_Number status = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
		lua_pop(L, 1);
		if (!(status >= 200 && status <= 599) || status != (lua_Number)(int)status) {
			snprintf(res->error, sizeof(res->error), "hook: status must be an integer from 200 to 599");
			return HOOK_FAIL;
		}
		res->status = (uint16_t)status;
		if (!read_string(L, idx, "body", &res->body, &res->body_len, res) ||
		    !read_map(L, idx, "headers", res->headers, &res->nheaders, res))
			return HOOK_FAIL;
		return HOOK_RESPOND;
	}
	lua_pop(L, 1);
	if (!read_string(L, idx, "pool", &res->pool, &res->pool_len, res) ||
	    !read_string(L, idx, "server", &res->server, &res->server_len, res) ||
	    !read_map(L, idx, "set_headers", res->set, &res->rules.nset, res))
		return HOOK_FAIL;
	get_raw_field(L, idx, "remove_headers");
	int t = lua_gettop(L);
	if (lua_istable(L, t)) {
		size_t n = lua_objlen(L, t);
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, t, (int)i);
			size_t nl;
			const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
			lua_pop(L, 1); /* the table keeps the string alive */
			if (!name || !http_header_name_valid(name, nl) || http_header_owned(name, nl) ||
			    res->rules.nremove == HOOK_MAX_HEADERS) {
				snprintf(res->error, sizeof(res->error),
					 "hook: remove_headers must list at most %d header names", HOOK_MAX_HEADERS);
				return HOOK_FAIL;
			}
			res->remove[res->rules.nremove++] = (struct header_kv){name, "", (uint32_t)nl, 0};
		}
	} else if (!lua_isnil(L, t)) {
		snprintf(res->error, sizeof(res->error), "hook: remove_headers must be a list");
		return HOOK_FAIL;
	}
	res->rules.set = res->set;
	res->rules.remove = res->remove;
	return HOOK_PASS;
}

enum hook_outcome hook_run(struct hook *h, const struct hook_request *req, struct hook_result *res)
{
	lua_State *L = h->L;
	memset(res, 0, offsetof(struct hook_result, set));
	res->nheaders = 0;
	res->error[0] = 0;
	lua_settop(L, 0);
	lua_pushcfunction(L, traceback);
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->req_ref);
	current = req;
	budget_left = h->budget;
	lua_sethook(L, count_instructions, LUA_MASKCOUNT, COUNT_STEP);
	int rc = lua_pcall(L, 1, 1, 1);
	lua_sethook(L, NULL, 0, 0);
	current = NULL;
	if (rc) {
		snprintf(res->error, sizeof(res->error), "hook failed: %s", lua_tostring(L, -1));
		return HOOK_FAIL;
	}
	return read_result(L, res);
}

void hook_release(struct hook *h)
{
	lua_settop(h->L, 0);
}
