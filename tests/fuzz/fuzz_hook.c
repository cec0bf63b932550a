/*
 * The hook's answer: whatever Lua value a hook returns gives a response, a
 * routing decision or a failure (a 500), never a crash.
 *
 * The input is decoded into a Lua value (nil, booleans, numbers, strings
 * from the bytes or from the names a hook's answer uses, tables, lists,
 * functions, tables whose metamethods fail, coroutines), which the hook
 * returns. Properties: a failure says why; an answer has a status from 200
 * to 599 and headers sluice may write, and the head written from it parses
 * back with that status; a routing decision's header edits are valid, and
 * the request head written with them has no CR, LF or NUL in a line.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"
#include "http/h1.h"
#include "route/hook.h"

static lua_State *L;
static struct hook hook;

static const char *const words[] = {
	"status", "body", "headers", "pool", "server", "set_headers", "remove_headers",
	"Content-Type", "X-A", "Host", "Content-Length", "Proxy-Connection", "TE", "X-Forwarded-For",
	"200", "404", "a\r\nb", "", "text/plain", "127.0.0.1:80",
};

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t next(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static int fails(lua_State *l) { return luaL_error(l, "a metamethod that fails"); }
static int returns_one(lua_State *l)
{
	lua_pushinteger(l, 1);
	return 1;
}

static void push_value(struct input *in, int depth);

/* Fills the table on top with n pairs (or list entries) read from the input. */
static void fill_table(struct input *in, int depth, bool list)
{
	int t = lua_gettop(L);
	unsigned n = next(in) % 8;
	for (unsigned i = 1; i <= n; i++) {
		if (list) {
			push_value(in, depth + 1);
			lua_rawseti(L, t, (int)i);
			continue;
		}
		push_value(in, depth + 1);
		push_value(in, depth + 1);
		/* A nil or NaN key cannot be set: skip the pair. */
		if (lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2)))
			lua_pop(L, 2);
		else
			lua_rawset(L, t);
	}
}

static void push_value(struct input *in, int depth)
{
	uint8_t kind = next(in);
	if (depth > 4)
		kind %= 7; /* no more tables */
	switch (kind % 12) {
	case 0: lua_pushnil(L); break;
	case 1: lua_pushboolean(L, 1); break;
	case 2: lua_pushboolean(L, 0); break;
	case 3: lua_pushnumber(L, (double)(next(in) | next(in) << 8) - 1000); break;
	case 4: {
		double d;
		uint8_t b[8];
		for (int i = 0; i < 8; i++)
			b[i] = next(in);
		memcpy(&d, b, sizeof(d));
		lua_pushnumber(L, d);
		break;
	}
	case 5: {
		size_t n = next(in) % 48;
		char s[48];
		for (size_t i = 0; i < n; i++)
			s[i] = (char)next(in);
		lua_pushlstring(L, s, n);
		break;
	}
	case 6: lua_pushstring(L, words[next(in) % (sizeof(words) / sizeof(words[0]))]); break;
	case 7: lua_newtable(L); fill_table(in, depth, false); break;
	case 8: lua_newtable(L); fill_table(in, depth, true); break;
	case 9: lua_pushcfunction(L, returns_one); break;
	case 10:
		/* A table whose every metamethod fails. */
		lua_newtable(L);
		fill_table(in, depth, false);
		lua_newtable(L);
		lua_pushcfunction(L, fails);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, fails);
		lua_setfield(L, -2, "__len");
		lua_pushcfunction(L, fails);
		lua_setfield(L, -2, "__tostring");
		lua_setmetatable(L, -2);
		break;
	default: lua_newthread(L); break;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	L = luaL_newstate();
	luaL_openlibs(L);
	if (luaL_dostring(L, "return function(r) return ANSWER end") || hook_init(&hook, L, 100000) < 0)
		abort();
	return 0;
}

static const char *no_header(void *ctx, const char *name, size_t len, size_t *vlen)
{
	(void)ctx, (void)name, (void)len, (void)vlen;
	return NULL;
}

static void no_headers(void *ctx, void (*fn)(void *, const char *, size_t, const char *, size_t), void *arg)
{
	(void)ctx, (void)fn, (void)arg;
}

static void check_kv(const struct header_kv *kv, uint32_t n, bool owned_ok)
{
	for (uint32_t i = 0; i < n; i++) {
		FUZZ_CHECK(http_header_name_valid(kv[i].name, kv[i].name_len), "bad name");
		FUZZ_CHECK(http_header_value_valid(kv[i].value, kv[i].value_len), "bad value");
		FUZZ_CHECK(owned_ok || !http_header_owned(kv[i].name, kv[i].name_len), "an owned header");
	}
}

static void check_answer(const struct hook_result *res)
{
	FUZZ_CHECK(res->status >= 200 && res->status <= 599, "status %u", res->status);
	check_kv(res->headers, res->nheaders, false);
	struct http_answer a = {.status = res->status, .headers = res->headers, .nheaders = res->nheaders,
				.body_len = (uint32_t)res->body_len};
	static char out[65536];
	ssize_t n = h1_write_answer(out, sizeof(out), &a, H1_CONN_NONE);
	FUZZ_CHECK(n > 0, "a hook's answer does not fit");
	fuzz_check_head(out, (size_t)n);
	struct h1_parser p;
	struct http_msg m;
	h1_response_parser_init(&p, &(struct h1_limits){0, sizeof(out)}, false, false);
	FUZZ_CHECK(h1_parse_head(&p, &m, out, (size_t)n) == H1_DONE && m.status == res->status,
		   "the answer's head does not parse back: %s", p.error ? p.error : "incomplete");
}

static void check_routing(const struct hook_result *res)
{
	check_kv(res->rules.set, res->rules.nset, false);
	check_kv(res->rules.remove, res->rules.nremove, false);
	static const char request[] = "GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
	struct h1_parser p;
	struct http_msg m;
	h1_request_parser_init(&p, &(struct h1_limits){1024, 4096});
	FUZZ_CHECK(h1_parse_head(&p, &m, request, sizeof(request) - 1) == H1_DONE, "fixture");
	struct http_edit e = {.rules = {&res->rules}, .client_ip = "192.0.2.1", .proto = "http"};
	struct h1_head_opts o = {.edit = &e, .version_minor = 1};
	static char out[65536];
	ssize_t n = h1_write_request(out, sizeof(out), &m, &o);
	FUZZ_CHECK(n > 0, "the request head does not fit");
	fuzz_check_head(out, (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	lua_settop(L, 0);
	push_value(&in, 0);
	lua_setglobal(L, "ANSWER");
	struct hook_request req = {
		.method = "GET", .method_len = 3, .target = "/x", .target_len = 2,
		.host = "h", .host_len = 1, .client = "192.0.2.1",
		.header = no_header, .each_header = no_headers,
	};
	static struct hook_result res;
	enum hook_outcome o = hook_run(&hook, &req, &res);
	if (o == HOOK_FAIL)
		FUZZ_CHECK(res.error[0], "a failure without a reason");
	else if (o == HOOK_RESPOND)
		check_answer(&res);
	else
		check_routing(&res);
	hook_release(&hook);
	lua_pushnil(L);
	lua_setglobal(L, "ANSWER");
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
