#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <malloc.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config/load.h"
#include "core/common.h"
#include "core/log.h"
#include "tls/tls.h"

/*
 * What a config script may take: a reload runs it in the process it would
 * replace, so an endless loop or a runaway table must end in an error, not
 * hang or exhaust sluice. (The fuzzer builds with smaller ones.)
 */
#ifndef CONFIG_EVAL_LIMIT_MS
#define CONFIG_EVAL_LIMIT_MS 60000
#endif
#ifndef CONFIG_EVAL_MAX_BYTES
#define CONFIG_EVAL_MAX_BYTES (4ull << 30)
#endif
/* How names in addresses are resolved; the fuzzer asks for numeric ones only (AI_NUMERICHOST). */
#ifndef CONFIG_RESOLVE_FLAGS
#define CONFIG_RESOLVE_FLAGS 0
#endif
/* Instructions between two looks at the clock while a script runs. */
#define EVAL_CHECK_EVERY 100000

const char config_default_source[] =
	"-- sluice's embedded default config: a proxy on 127.0.0.1:8080 in front of\n"
	"-- the two demo backends that `make run` starts on ports 9001 and 9002.\n"
	"return {\n"
	"  listeners = {\n"
	"    { address = \"127.0.0.1:8080\", pool = \"demo\" },\n"
	"  },\n"
	"  pools = {\n"
	"    demo = { servers = { \"127.0.0.1:9001\", \"127.0.0.1:9002\" } },\n"
	"  },\n"
	"  access_log = \"stderr\",\n"
	"}\n";

/* --- locating a mistake in the source --- */


/* --- addresses --- */

int config_parse_addr(const char *text, struct cfg_addr *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->text, sizeof(out->text), "%s", text);
	char host[256];
	const char *port_str;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen, "expected [ipv6]:port");
			return -1;
		}
		size_t n = (size_t)(close - text - 1);
		if (n >= sizeof(host)) {
			snprintf(err, errlen, "host too long");
			return -1;
		}
		memcpy(host, text + 1, n);
		host[n] = 0;
		port_str = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon) {
			snprintf(err, errlen, "expected host:port");
			return -1;
		}
		size_t n = (size_t)(colon - text);
		if (n >= sizeof(host)) {
			snprintf(err, errlen, "host too long");
			return -1;
		}
		memcpy(host, text, n);
		host[n] = 0;
		if (strchr(host, ':')) {
			snprintf(err, errlen, "an IPv6 address must be written in brackets, as [::1]:80");
			return -1;
		}
		port_str = colon + 1;
	}
	if (!*port_str || strspn(port_str, "0123456789") != strlen(port_str)) {
		snprintf(err, errlen, "port must be a number");
		return -1;
	}
	long port = strlen(port_str) > 6 ? 100000 : strtol(port_str, NULL, 10);
	if (port < 1 || port > 65535) {
		snprintf(err, errlen, "port out of range");
		return -1;
	}
	struct sockaddr_in *in4 = (struct sockaddr_in *)&out->sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->sa;
	if (!strcmp(host, "*") || !*host) {
		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
		in4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*in4);
	} else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*in6);
	} else {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					 .ai_flags = CONFIG_RESOLVE_FLAGS};
		struct addrinfo *res;
		int rc = getaddrinfo(host, NULL, &hints, &res);
		if (rc) {
			snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
			return -1;
		}
		memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
		out->len = res->ai_addrlen;
		freeaddrinfo(res);
		if (out->sa.ss_family == AF_INET)
			in4->sin_port = htons((uint16_t)port);
		else
			in6->sin6_port = htons((uint16_t)port);
	}
	return 0;
}

bool config_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

static void load_timeouts(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"client_header",    "client_keepalive", "backend_connect",
					   "backend_response", "idle",		   "shutdown",
					   "tls_handshake",    NULL};
	struct cfg_timeouts *t = &cfg->timeouts;
	struct section top = {.label = ""};
	if (!cfg_get_table(v, 1, &top, "timeouts", false))
		return;
	int idx = lua_gettop(v->L);
	struct section s = {.label = "timeouts"};
	cfg_path_push(&s.path, "timeouts", false);
	cfg_check_keys(v, idx, &s, keys);
	cfg_get_seconds(v, idx, &s, "client_header", &t->client_header_ms);
	cfg_get_seconds(v, idx, &s, "client_keepalive", &t->client_keepalive_ms);
	cfg_get_seconds(v, idx, &s, "backend_connect", &t->backend_connect_ms);
	cfg_get_seconds(v, idx, &s, "backend_response", &t->backend_response_ms);
	cfg_get_seconds(v, idx, &s, "idle", &t->idle_ms);
	cfg_get_seconds(v, idx, &s, "shutdown", &t->shutdown_ms);
	cfg_get_seconds(v, idx, &s, "tls_handshake", &t->tls_handshake_ms);
	lua_pop(v->L, 1);
}

static void load_limits(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"max_request_line", "max_header_size",   "buffer_size",
					   "max_connections",  "hook_instructions", "busy_poll",
					   "h2_max_concurrent_streams", "h2_initial_window",
					   "h2_max_header_list", "h2_max_glitches", "h2_max_requests", NULL};
	struct cfg_limits *l = &cfg->limits;
	struct section top = {.label = ""};
	if (!cfg_get_table(v, 1, &top, "limits", false))
		return;
	int idx = lua_gettop(v->L);
	struct section s = {.label = "limits"};
	cfg_path_push(&s.path, "limits", false);
	cfg_check_keys(v, idx, &s, keys);
	cfg_get_size(v, idx, &s, "max_header_size", 256, 1 << 20, &l->max_header_size);
	/* Unless set, the request line may use what the head may. */
	l->max_request_line = MIN(l->max_request_line, l->max_header_size);
	cfg_get_size(v, idx, &s, "max_request_line", 64, 1 << 20, &l->max_request_line);
	cfg_get_size(v, idx, &s, "buffer_size", 1024, 16 << 20, &l->buffer_size);
	cfg_get_size(v, idx, &s, "max_connections", 1, 10000000, &l->max_connections);
	cfg_get_size(v, idx, &s, "hook_instructions", 1000, 1e9, &l->hook_instructions);
	cfg_get_number(v, idx, &s, "busy_poll", 1e6, 0, 0.01, "a number of seconds from 0 to 0.01",
		       &l->busy_poll_us);
	cfg_get_size(v, idx, &s, "h2_max_concurrent_streams", 1, 10000, &l->h2_max_concurrent_streams);
	/* RFC 9113 6.9.2: a window is at most 2^31 - 1; below a frame's worth, uploads crawl. */
	cfg_get_size(v, idx, &s, "h2_initial_window", 16384, 16 << 20, &l->h2_initial_window);
	cfg_get_size(v, idx, &s, "h2_max_header_list", 1024, 1 << 20, &l->h2_max_header_list);
	cfg_get_size(v, idx, &s, "h2_max_glitches", 1, 1e9, &l->h2_max_glitches);
	cfg_get_size(v, idx, &s, "h2_max_requests", 1, 1e9, &l->h2_max_requests);
	if (l->max_request_line > l->max_header_size) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "max_request_line", false);
		cfg_fail(v, &p,
			 "limits: max_request_line (%u) must not exceed max_header_size (%u)",
			 l->max_request_line, l->max_header_size);
	}
	if (l->buffer_size < l->max_header_size) {
		struct cfg_path p = s.path;
		cfg_path_push(&p, "buffer_size", false);
		cfg_fail(v, &p, "limits: buffer_size (%u) must be at least max_header_size (%u)",
			 l->buffer_size, l->max_header_size);
	}
	lua_pop(v->L, 1);
}

static void load_logging(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	lua_getfield(L, 1, "access_log");
	struct cfg_path p = {0};
	cfg_path_push(&p, "access_log", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1))
		cfg->access_log = strdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
		char d[64];
		cfg_fail(v, &p, "access_log must be a file path, \"stderr\" or false, got %s",
			 cfg_describe(L, -1, d, sizeof(d)));
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "access_log_format");
	struct cfg_path fp = {0};
	cfg_path_push(&fp, "access_log_format", false);
	const char *format = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (format && !strcmp(format, "json"))
		cfg->access_log_format = ACCESS_LOG_JSON;
	else if (!lua_isnil(L, -1) && !(format && !strcmp(format, "text"))) {
		char d[64];
		cfg_fail(v, &fp, "access_log_format must be \"text\" or \"json\", got %s",
			 cfg_describe(L, -1, d, sizeof(d)));
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "pid_file");
	struct cfg_path pp = {0};
	cfg_path_push(&pp, "pid_file", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1))
		cfg->pid_file = strdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1))
		cfg_fail(v, &pp, "pid_file must be a file path");
	lua_pop(L, 1);
	lua_getfield(L, 1, "log_level");
	struct cfg_path q = {0};
	cfg_path_push(&q, "log_level", false);
	if (!lua_isnil(L, -1)) {
		int level =
		    lua_type(L, -1) == LUA_TSTRING ? log_level_parse(lua_tostring(L, -1)) : -1;
		char d[64];
		if (level < 0)
			cfg_fail(
			    v, &q,
			    "log_level must be \"debug\", \"info\", \"warn\" or \"error\", got %s",
			    cfg_describe(L, -1, d, sizeof(d)));
		else
			cfg->log_level = level;
	}
	lua_pop(L, 1);
}

/* The token as token_file holds it: one line, surrounding whitespace dropped. */
static void load_admin_token(struct vctx *v, struct cfg_admin *a, const struct cfg_path *path)
{
	int fd = open(a->token_file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		cfg_fail(v, path, "admin: token_file \"%s\": %s", a->token_file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	char buf[1025];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf)) {
		cfg_fail(v, path, "admin: token_file \"%s\": %s", a->token_file,
			 n < 0 ? strerror(errno) : "longer than 1024 bytes");
		return;
	}
	size_t start = 0, end = (size_t)n;
	while (start < end && isspace((unsigned char)buf[start]))
		start++;
	while (end > start && isspace((unsigned char)buf[end - 1]))
		end--;
	for (size_t i = start; i < end; i++)
		if ((unsigned char)buf[i] <= ' ' || buf[i] == 127) {
			cfg_fail(v, path,
				 "admin: token_file \"%s\": the token must be one word of visible "
				 "characters",
				 a->token_file);
			return;
		}
	if (end - start < 16) {
		cfg_fail(v, path,
			 "admin: token_file \"%s\": the token must have at least 16 characters",
			 a->token_file);
		return;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		cfg_warn(v, path, "admin: token_file \"%s\" can be read by other users (chmod 600)",
			 a->token_file);
	a->token = strndup(buf + start, end - start);
}

static bool loopback(const struct cfg_addr *a)
{
	if (a->sa.ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr) >> 24) == 127;
	return a->sa.ss_family == AF_INET6 &&
	       IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->sa)->sin6_addr);
}

/* admin = { address = "127.0.0.1:9901" or "/path.sock", token_file = "..." } */
static void load_admin(struct vctx *v, struct config *cfg, const struct section *top)
{
	static const char *const keys[] = {"address", "token_file", NULL};
	if (!cfg_get_table(v, 1, top, "admin", false))
		return;
	struct subsection sub = {.s = {.label = "admin"}, .idx = lua_gettop(v->L)};
	cfg_path_push(&sub.s.path, "admin", false);
	cfg_check_keys(v, sub.idx, &sub.s, keys);
	struct cfg_admin *a = &cfg->admin;
	a->enabled = true;
	lua_State *L = v->L;
	lua_getfield(L, sub.idx, "address");
	struct cfg_path p = sub.s.path;
	cfg_path_push(&p, "address", false);
	const char *addr = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	char why[160];
	if (lua_isnil(L, -1))
		addr = "127.0.0.1:9901";
	if (!addr || !*addr) {
		cfg_fail(v, &p, "admin: address must be \"host:port\" or a unix socket path");
	} else if (addr[0] == '/') {
		if (strlen(addr) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			cfg_fail(v, &p, "admin: unix socket path \"%s\" is too long", addr);
		a->unix_path = strdup(addr);
		snprintf(a->addr.text, sizeof(a->addr.text), "unix:%.58s", addr);
	} else if (config_parse_addr(addr, &a->addr, why, sizeof(why)) < 0) {
		cfg_fail(v, &p, "admin: address \"%s\": %s", addr, why);
	} else if (!loopback(&a->addr)) {
		cfg_warn(v, &p,
			 "admin: address %s is not a loopback address: /metrics can be read "
			 "by anyone who reaches it",
			 addr);
	}
	lua_pop(L, 1);
	lua_getfield(L, sub.idx, "token_file");
	struct cfg_path tp = sub.s.path;
	cfg_path_push(&tp, "token_file", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1)) {
		a->token_file = strdup(lua_tostring(L, -1));
		load_admin_token(v, a, &tp);
	} else if (!lua_isnil(L, -1)) {
		cfg_fail(v, &tp, "admin: token_file must be a file path");
	}
	lua_pop(L, 1);
	lua_pop(L, 1);
}

/* workers = N, cpu_affinity = true */
static void load_workers(struct vctx *v, struct config *cfg, const struct section *top)
{
	cfg_get_size(v, 1, top, "workers", 1, CFG_MAX_WORKERS, &cfg->workers);
	lua_getfield(v->L, 1, "cpu_affinity");
	if (lua_isboolean(v->L, -1)) {
		cfg->cpu_affinity = lua_toboolean(v->L, -1);
	} else if (!lua_isnil(v->L, -1)) {
		struct cfg_path p = {0};
		cfg_path_push(&p, "cpu_affinity", false);
		cfg_fail(v, &p, "cpu_affinity must be true or false");
	}
	lua_pop(v->L, 1);
}

static void load_config(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"listeners",	 "pools",     "sites",	  "timeouts", "limits",
					   "access_log", "log_level", "pid_file", "hook",     "workers",
					   "cpu_affinity", "admin", "access_log_format", NULL};
	struct section top = {.label = ""};
	cfg_check_keys(v, 1, &top, keys);
	load_workers(v, cfg, &top);
	load_admin(v, cfg, &top);
	cfg_load_pools(v, cfg);
	cfg_load_sites(v, cfg);
	cfg_load_listeners(v, cfg);
	load_timeouts(v, cfg);
	load_limits(v, cfg);
	load_logging(v, cfg);
}

static void set_defaults(struct config *cfg)
{
	cfg->refs = 1;
	cfg->timeouts = (struct cfg_timeouts){
		.client_header_ms = 10000,
		.client_keepalive_ms = 75000,
		.backend_connect_ms = 5000,
		.backend_response_ms = 60000,
		.idle_ms = 60000,
		.shutdown_ms = 10000,
		.tls_handshake_ms = 10000,
	};
	cfg->limits = (struct cfg_limits){
		.max_request_line = 8192,
		.max_header_size = 16384,
		.buffer_size = 16384,
		.max_connections = 10000,
		.hook_instructions = 1000000,
		.h2_max_concurrent_streams = 100,
		.h2_initial_window = 65535,
		.h2_max_header_list = 65536,
		.h2_max_glitches = 1000,
		.h2_max_requests = 10000,
	};
	cfg->log_level = LOG_INFO;
	cpu_set_t cpus;
	int n = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
	cfg->workers = (uint32_t)MIN(MAX(n, 1), CFG_MAX_WORKERS);
}

static void close_state(lua_State *L) { lua_close(L); }

/* What a derived snapshot owns (see config.base); the rest is its base's. */
static void derived_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->npools; i++) {
		free(cfg->pools[i].servers);
		balance_ring_free(&cfg->pools[i].ring);
	}
	free(cfg->pools);
	free(cfg->tracked);
	arena_free(&cfg->arena);
	config_unref(cfg->base);
	free(cfg);
}

static void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	if (cfg->base) {
		derived_free(cfg);
		return;
	}
	for (size_t i = 0; i < cfg->npools; i++) {
		free(cfg->pools[i].name);
		free(cfg->pools[i].servers);
		free(cfg->pools[i].hash_name);
		free(cfg->pools[i].health.method);
		free(cfg->pools[i].health.path);
		free(cfg->pools[i].health.host);
		free(cfg->pools[i].health.body);
		balance_ring_free(&cfg->pools[i].ring);
		tls_client_free(cfg->pools[i].tls);
	}
	free(cfg->pools);
	for (size_t i = 0; i < cfg->nlisteners; i++)
		tls_server_free(cfg->listeners[i].tls);
	free(cfg->listeners);
	free(cfg->warnings);
	free(cfg->access_log);
	free(cfg->pid_file);
	free(cfg->admin.unix_path);
	free(cfg->admin.token);
	free(cfg->admin.token_file);
	free(cfg->tracked);
	if (cfg->has_hook)
		close_state(cfg->hook.L);
	for (uint32_t i = 0; cfg->worker_hooks && i + 1 < cfg->workers; i++)
		if (cfg->worker_hooks[i].hook.L)
			close_state(cfg->worker_hooks[i].hook.L);
	free(cfg->worker_hooks);
	free(cfg->name);
	free(cfg->source);
	arena_free(&cfg->arena);
	free(cfg);
}

/*
 * A state's allocator: the system's malloc, not LuaJIT's own, so that what
 * a script's tables took goes back to the system once collected (see
 * keep_hook_only()); with a count of the state's memory and a ceiling.
 */
static void *counted_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct lua_mem *m = ud;
	size_t old = ptr ? osize : 0;
	if (!nsize) {
		free(ptr);
		m->used -= MIN_SIZE(old, m->used);
		return NULL;
	}
	if (nsize > old && nsize - old > m->limit - m->used)
		return NULL; /* Lua reports "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p)
		m->used = m->used - MIN_SIZE(old, m->used) + nsize;
	return p;
}

static uint64_t clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The count hook of a running script: past its deadline, an error where it
 * is, and again at every instruction after, so that a pcall in the script
 * cannot catch it and carry on.
 */
static void eval_tick(lua_State *L, lua_Debug *ar)
{
	void *ud;
	lua_getallocf(L, &ud);
	const struct lua_mem *m = ud;
	if (clock_ms() <= m->deadline_ms)
		return;
	lua_sethook(L, eval_tick, LUA_MASKCOUNT, 1);
	lua_getinfo(L, "Sl", ar);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s:%d: the script was still running after %.1f s (an endless loop?)",
		 ar->short_src, ar->currentline, CONFIG_EVAL_LIMIT_MS / 1000.0);
	lua_pushstring(L, msg);
	lua_error(L);
}

/*
 * The state a config script runs in. The JIT is off: the count hook that
 * bounds the script's time does not run in compiled code, and a script
 * that runs once is faster interpreted (100,000 sites load in 0.93 s
 * instead of 1.38).
 */
static lua_State *new_state(struct lua_mem *m)
{
	*m = (struct lua_mem){.limit = CONFIG_EVAL_MAX_BYTES};
	lua_State *L = lua_newstate(counted_alloc, m);
	if (!L)
		return NULL;
	luaL_openlibs(L);
	luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
	/* jit.on() would let compiled code run where no count hook can stop it, here or in a hook. */
	lua_pushnil(L);
	lua_setglobal(L, "jit");
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_pushnil(L);
	lua_setfield(L, -2, "jit");
	lua_pop(L, 2);
	m->deadline_ms = clock_ms() + CONFIG_EVAL_LIMIT_MS;
	lua_sethook(L, eval_tick, LUA_MASKCOUNT, EVAL_CHECK_EVERY);
	return L;
}

/*
 * A state that ran its script keeps only what its hook refers to, with no
 * budget of the script's. At 100,000 sites the script's tables were 30 MB;
 * collected, about 0.5 MB stay, and the rest goes back to the system (with
 * LuaJIT's own allocator it stayed: 14 MB per worker).
 */
static void keep_hook_only(struct lua_mem *m, lua_State *L)
{
	lua_sethook(L, NULL, 0, 0);
	m->limit = SIZE_MAX;
	lua_settop(L, 0);
	lua_gc(L, LUA_GCCOLLECT, 0);
	malloc_trim(0);
}

struct evaluation {
	struct vctx *v;
	struct config *cfg;
};

/*
 * Runs the script, then reads the table it returned into cfg and sets the
 * hook up. All of it runs protected, reading included (it runs the
 * metamethods of the script's tables): an error anywhere is an error of
 * the config, never a panic of the process that is reloading it.
 */
/* Runs the script; leaves what it returned (or its global 'config') on top. */
static void run_script(lua_State *L, const char *name, const char *source, size_t len)
{
	char chunkname[512];
	snprintf(chunkname, sizeof(chunkname), "@%s", name);
	if (luaL_loadbuffer(L, source, len, chunkname))
		lua_error(L);
	lua_call(L, 0, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushstring(L, "config");
		lua_rawget(L, LUA_GLOBALSINDEX);
	}
}

static int evaluate(lua_State *L)
{
	struct evaluation *x = lua_touserdata(L, 1);
	struct vctx *v = x->v;
	run_script(L, v->name, v->source, v->source_len);
	if (!lua_istable(L, -1)) {
		cfg_fail(v, NULL, "the script must return a table (or set the global 'config')");
		return 0;
	}
	/* The validation reads the config table at index 1. */
	lua_replace(L, 1);
	lua_settop(L, 1);
	load_config(v, x->cfg);
	if (v->failed)
		return 0;
	lua_getfield(L, 1, "hook");
	if (lua_isfunction(L, -1)) {
		if (hook_init(&x->cfg->hook, L, x->cfg->limits.hook_instructions) < 0)
			cfg_fail(v, NULL, "out of memory");
		x->cfg->has_hook = !v->failed;
	} else if (!lua_isnil(L, -1)) {
		struct cfg_path p = {0};
		cfg_path_push(&p, "hook", false);
		char d[64];
		cfg_fail(v, &p, "hook must be a function(r), got %s",
			 cfg_describe(L, -1, d, sizeof(d)));
	}
	return 0;
}

struct config *config_load_string(const char *name, const char *source, char *err, size_t errlen)
{
	struct vctx v = {.name = name, .err = err, .errlen = errlen};
	if (errlen)
		err[0] = 0;
	size_t len = strlen(source);
	struct config *cfg = calloc(1, sizeof(*cfg));
	v.L = cfg ? new_state(&cfg->lua_mem) : NULL;
	v.source = source;
	v.source_len = len;
	if (!cfg || !v.L) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	set_defaults(cfg);
	struct evaluation x = {&v, cfg};
	int status = lua_cpcall(v.L, evaluate, &x);
	if (status) {
		const char *msg = lua_tostring(v.L, -1);
		if (v.failed)
			cfg_report_done(&v); /* the script stopped at what the checks found */
		else if (status == LUA_ERRMEM)	  /* Lua's message names no file */
			snprintf(err, errlen,
				 "%s: out of memory (a config script may use at most %zu MiB)",
				 name, cfg->lua_mem.limit >> 20);
		else if (msg)
			snprintf(err, errlen, "%s", msg);
		else
			snprintf(err, errlen, "%s: the script raised an error that is not a string", name);
		goto fail;
	}
	if (v.failed) {
		cfg_report_done(&v);
		goto fail;
	}
	free(v.text);
	cfg->warnings = v.warnings;
	if (!cfg->has_hook) {
		close_state(v.L);
		malloc_trim(0); /* the script's tables, back to the system (30 MB at 100,000 sites) */
		return cfg;
	}
	/*
	 * The state stays: the hook runs in it for as long as this snapshot
	 * lives, with budgets of its own. Only the hook (and what it refers
	 * to) stays: 100k sites' tables go now. The script stays too, for the
	 * other workers' states.
	 */
	keep_hook_only(&cfg->lua_mem, v.L);
	cfg->name = strdup(name);
	cfg->source = strdup(source);
	if (!cfg->name || !cfg->source) {
		snprintf(err, errlen, "%s: out of memory", name);
		config_free(cfg);
		return NULL;
	}
	return cfg;
fail:
	if (v.L)
		close_state(v.L);
	free(v.text);
	free(v.warnings);
	config_free(cfg);
	return NULL;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	if (!path)
		return config_load_string("(default)", config_default_source, err, errlen);
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *source = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 16384;
			char *p = realloc(source, cap + 1);
			if (!p) {
				free(source);
				fclose(f);
				snprintf(err, errlen, "%s: out of memory", path);
				return NULL;
			}
			source = p;
		}
		size_t n = fread(source + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	int read_error = ferror(f);
	fclose(f);
	if (read_error) {
		free(source);
		snprintf(err, errlen, "%s: read error", path);
		return NULL;
	}
	source[len] = 0;
	if (strlen(source) != len) {
		free(source);
		snprintf(err, errlen, "%s: contains a NUL byte; not a config file", path);
		return NULL;
	}
	struct config *cfg = config_load_string(path, source, err, errlen);
	free(source);
	return cfg;
}

/* --- one site or server at a time, for runtime changes --- */

struct lua_entry {
	struct vctx *v;
	struct config *cfg;
	const struct cfg_pool *pool;
	size_t index;
	struct cfg_server *srv;
};

static int evaluate_site(lua_State *L)
{
	struct lua_entry *x = lua_touserdata(L, -1);
	lua_pop(L, 1);
	cfg_load_site(x->v, x->cfg, x->index);
	return 0;
}

static int evaluate_server(lua_State *L)
{
	struct lua_entry *x = lua_touserdata(L, -1);
	lua_pop(L, 1);
	char label[160];
	snprintf(label, sizeof(label), "pool \"%.100s\"", x->pool->name);
	struct section s = {.label = label};
	cfg_load_server(x->v, &s, 1, x->srv);
	return 0;
}

/*
 * Runs fn on the table at the top of L (left there), as part of no file:
 * messages start with what. Warnings are logged: there is no load to hand
 * them to.
 */
static int evaluate_entry(lua_State *L, lua_CFunction fn, struct lua_entry *x, const char *what,
			  char *err, size_t errlen)
{
	struct vctx v = {.L = L, .name = what, .source = "", .err = err, .errlen = errlen};
	if (errlen)
		err[0] = 0;
	x->v = &v;
	int top = lua_gettop(L);
	lua_pushcfunction(L, fn);
	lua_pushvalue(L, top);
	lua_pushlightuserdata(L, x);
	/* Called, not cpcall'ed: the function must see the table where load_* expect it, on top. */
	int status = lua_pcall(L, 2, 0, 0);
	if (status && !v.failed)
		snprintf(err, errlen, "%s: %s", what,
			 status == LUA_ERRMEM ? "out of memory"
			 : lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
	cfg_report_done(&v);
	lua_settop(L, top);
	cfg_log_warnings(v.warnings);
	free(v.warnings);
	free(v.text);
	return status || v.failed ? -1 : 0;
}

int config_lua_site(struct config *cfg, struct lua_State *L, size_t index, const char *what,
		    char *err, size_t errlen)
{
	struct lua_entry x = {.cfg = cfg, .index = index};
	return evaluate_entry(L, evaluate_site, &x, what, err, errlen);
}

int config_lua_server(const struct cfg_pool *pool, struct lua_State *L, struct cfg_server *srv,
		      const char *what, char *err, size_t errlen)
{
	struct lua_entry x = {.pool = pool, .srv = srv};
	return evaluate_entry(L, evaluate_server, &x, what, err, errlen);
}

struct hook_evaluation {
	const struct config *cfg;
	struct hook *hook;
};

/* The script once more, for its hook alone: it was checked when the config loaded. */
static int evaluate_hook(lua_State *L)
{
	struct hook_evaluation *x = lua_touserdata(L, 1);
	run_script(L, x->cfg->name, x->cfg->source, strlen(x->cfg->source));
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: the script returned no table this time", x->cfg->name);
	lua_getfield(L, -1, "hook");
	if (!lua_isfunction(L, -1))
		luaL_error(L, "%s: the script returned no hook function this time", x->cfg->name);
	if (hook_init(x->hook, L, x->cfg->limits.hook_instructions) < 0)
		luaL_error(L, "out of memory");
	return 0;
}

int config_add_worker_hooks(struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->has_hook || cfg->workers < 2)
		return 0;
	cfg->worker_hooks = calloc(cfg->workers - 1, sizeof(*cfg->worker_hooks));
	if (!cfg->worker_hooks) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i + 1 < cfg->workers; i++) {
		struct worker_hook *wh = &cfg->worker_hooks[i];
		lua_State *L = new_state(&wh->mem);
		if (!L) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		struct hook_evaluation x = {cfg, &wh->hook};
		if (lua_cpcall(L, evaluate_hook, &x)) {
			snprintf(err, errlen, "the hook for worker %u: %s", i + 1,
				 lua_isstring(L, -1) ? lua_tostring(L, -1) : "an error that is not a string");
			close_state(L);
			wh->hook.L = NULL;
			return -1;
		}
		keep_hook_only(&wh->mem, L);
	}
	return 0;
}

struct hook *config_hook(struct config *cfg, uint32_t index)
{
	if (cfg->base)
		return config_hook(cfg->base, index);
	return index == 0 ? &cfg->hook : &cfg->worker_hooks[index - 1].hook;
}

/* Atomic: worker threads hold references to one snapshot. */
void config_log_warnings(const struct config *cfg)
{
	cfg_log_warnings(cfg->warnings);
}

struct config *config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}
