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

/*
 * Lua tables do not remember where their fields were written, so a mistake
 * found after the script ran is located by searching the source for the path
 * that leads to it (e.g. pools, api, servers, "10.0.0.1:99999"), each token
 * after the previous one, in a copy with comments blanked out. Values computed
 * by the script are not in the text; the line of the nearest enclosing key
 * that is found is given instead.
 */
static char *blank_comments(const char *src, size_t len)
{
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	memcpy(out, src, len);
	out[len] = 0;
	for (size_t i = 0; i < len;) {
		char ch = out[i];
		if (ch == '"' || ch == '\'') {
			for (i++; i < len && out[i] != ch && out[i] != '\n'; i++)
				if (out[i] == '\\')
					i++;
			i++;
		} else if (ch == '-' && i + 1 < len && out[i + 1] == '-') {
			size_t end;
			bool long_comment = i + 3 < len && out[i + 2] == '[' && out[i + 3] == '[';
			if (long_comment) {
				char *close = strstr(out + i + 4, "]]");
				end = close ? (size_t)(close - out) + 2 : len;
			} else {
				char *nl = memchr(out + i, '\n', len - i);
				end = nl ? (size_t)(nl - out) : len;
			}
			for (; i < end; i++)
				if (out[i] != '\n')
					out[i] = ' ';
		} else {
			i++;
		}
	}
	return out;
}

static bool is_ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

/* Finds token (an identifier, or a quoted string when quoted) at or after from. */
static const char *find_token(const char *text, const char *from, const char *token, bool quoted)
{
	size_t n = strlen(token);
	for (const char *p = from; (p = strstr(p, token)); p++) {
		char before = p > text ? p[-1] : ' ';
		char after = p[n];
		if (quoted) {
			if ((before == '"' || before == '\'') && after == before)
				return p;
		} else if (!is_ident_char(before) && !is_ident_char(after)) {
			return p;
		}
	}
	return NULL;
}

struct cfg_path {
	const char *tokens[6];
	bool quoted[6];
	int n;
};

static void path_push(struct cfg_path *p, const char *token, bool quoted)
{
	if (p->n < (int)ARRAY_LEN(p->tokens)) {
		p->tokens[p->n] = token;
		p->quoted[p->n] = quoted;
		p->n++;
	}
}

static int path_line(const char *text, const struct cfg_path *path)
{
	if (!text)
		return 0;
	const char *pos = text, *found = NULL;
	for (int i = 0; i < path->n; i++) {
		const char *hit = find_token(text, pos, path->tokens[i], path->quoted[i]);
		if (!hit)
			break;
		found = hit;
		pos = hit + strlen(path->tokens[i]);
	}
	if (!found)
		return 0;
	int line = 1;
	for (const char *p = text; p < found; p++)
		line += *p == '\n';
	return line;
}

/* --- validation context --- */

struct vctx {
	lua_State *L;
	const char *name; /* file name for messages */
	const char *source;
	size_t source_len;
	char *text; /* source with comments blanked, once an error needs it */
	char *err;	   /* every mistake, a line each */
	size_t errlen;
	bool failed;
	unsigned nerrors;
	char *warnings; /* handed to the config when it loads */
	size_t warnings_len;
};

/* Adds a line to err, as much of it as fits. */
static void append_error(struct vctx *v, const char *msg)
{
	size_t used = strnlen(v->err, v->errlen);
	if (used + 1 >= v->errlen)
		return;
	snprintf(v->err + used, v->errlen - used, "%s%s", used ? "\n" : "", msg);
}

/*
 * Records a mistake, each on its own line of err, and loading goes on to
 * find the others: an operator fixes them all in one go. Checks that need
 * an earlier part to be right (building TLS contexts, the ring of a hash
 * pool) are skipped once anything failed, so that no message is only the
 * consequence of another.
 */
static void fail(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
{
	v->failed = true;
	if (++v->nerrors > CONFIG_MAX_ERRORS)
		return;
	/* Only a mistake needs the source searched: blank its comments now, not for every load. */
	if (path && !v->text)
		v->text = blank_comments(v->source, v->source_len);
	int line = path ? path_line(v->text, path) : 0;
	char msg[1024];
	int n = line ? snprintf(msg, sizeof(msg), "%s:%d: ", v->name, line)
		     : snprintf(msg, sizeof(msg), "%s: ", v->name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	append_error(v, msg);
}

/* After loading: how many mistakes the report leaves out, if it left any out. */
static void count_unreported(struct vctx *v)
{
	if (v->nerrors <= CONFIG_MAX_ERRORS)
		return;
	char msg[128];
	snprintf(msg, sizeof(msg), "%s: %u more mistakes not shown (the first %d are)", v->name,
		 v->nerrors - CONFIG_MAX_ERRORS, CONFIG_MAX_ERRORS);
	append_error(v, msg);
}

static void warn(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
{
	if (!v->text)
		v->text = blank_comments(v->source, v->source_len);
	int line = path_line(v->text, path);
	char msg[1024];
	int n = line ? snprintf(msg, sizeof(msg), "%s:%d: warning: ", v->name, line)
		     : snprintf(msg, sizeof(msg), "%s: warning: ", v->name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = strlen(msg);
	char *p = realloc(v->warnings, v->warnings_len + len + 2);
	if (!p)
		return;
	memcpy(p + v->warnings_len, msg, len);
	p[v->warnings_len + len] = '\n';
	p[v->warnings_len + len + 1] = 0;
	v->warnings = p;
	v->warnings_len += len + 1;
}

static void log_warnings(const char *warnings)
{
	for (const char *p = warnings; p && *p;) {
		const char *nl = strchr(p, '\n');
		log_warn("%.*s", (int)(nl - p), p);
		p = nl + 1;
	}
}

void config_log_warnings(const struct config *cfg) { log_warnings(cfg->warnings); }

/*
 * A file named in the config, relative to the config file's directory so
 * that a config and its certificates move together, into out. False if too long.
 */
static bool config_relative(const struct vctx *v, const char *file, char *out, size_t cap)
{
	const char *slash = strrchr(v->name, '/');
	int n = file[0] == '/' || !slash ? snprintf(out, cap, "%s", file)
					 : snprintf(out, cap, "%.*s/%s", (int)(slash - v->name), v->name, file);
	return n >= 0 && (size_t)n < cap;
}

struct tls_warnings {
	struct vctx *v;
	const struct cfg_path *path;
};

static void tls_warned(void *ud, const char *msg)
{
	struct tls_warnings *w = ud;
	warn(w->v, w->path, "%s", msg);
}

/* Describes the Lua value at idx for a message: "abc" in quotes, numbers as is, else its type. */
static const char *describe(lua_State *L, int idx, char *out, size_t len)
{
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		snprintf(out, len, "\"%s\"", lua_tostring(L, idx));
		break;
	case LUA_TNUMBER:
		snprintf(out, len, "%.14g", lua_tonumber(L, idx));
		break;
	case LUA_TBOOLEAN:
		snprintf(out, len, "%s", lua_toboolean(L, idx) ? "true" : "false");
		break;
	default:
		snprintf(out, len, "a %s", lua_typename(L, lua_type(L, idx)));
	}
	return out;
}

/* The prefix of messages about a section: `pool "api": ` or `timeouts: `. */
struct section {
	const char *label; /* e.g. "pool \"api\"" or "timeouts"; "" at top level */
	struct cfg_path path;
};

/* Fails on any key of the table at idx that is not in allowed (NULL-terminated). */
static void check_keys(struct vctx *v, int idx, const struct section *s, const char *const *allowed)
{
	lua_State *L = v->L;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			char d[64];
			fail(v, &s->path, "%s%sunexpected entry %s (fields are name = value)", s->label,
			     *s->label ? ": " : "", describe(L, -1, d, sizeof(d)));
			continue;
		}
		const char *key = lua_tostring(L, -1);
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= !strcmp(*a, key);
		if (!ok) {
			struct cfg_path p = s->path;
			path_push(&p, key, false);
			fail(v, &p, "%s%sunknown key \"%s\"", s->label, *s->label ? ": " : "", key);
		}
	}
}

/*
 * Reads number field key of the table at idx into *out, scaled by scale and
 * rounded; absent keeps *out. Fails unless min <= value <= max.
 */
static void get_number(struct vctx *v, int idx, const struct section *s, const char *key,
		       double scale, double min, double max, const char *what, uint32_t *out)
{
	lua_State *L = v->L;
	lua_getfield(L, idx, key);
	if (!lua_isnil(L, -1)) {
		struct cfg_path p = s->path;
		path_push(&p, key, false);
		double x = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
		if (lua_type(L, -1) != LUA_TNUMBER || !(x >= min && x <= max)) {
			char d[64];
			fail(v, &p, "%s%s%s must be %s, got %s", s->label, *s->label ? ": " : "", key, what,
			     describe(L, -1, d, sizeof(d)));
		} else {
			*out = (uint32_t)(x * scale + 0.5);
		}
	}
	lua_pop(L, 1);
}

static void get_seconds(struct vctx *v, int idx, const struct section *s, const char *key,
			uint32_t *ms)
{
	get_number(v, idx, s, key, 1000.0, 0.001, 86400.0 * 7,
		   "a positive number of seconds (at most a week)", ms);
}

static void get_size(struct vctx *v, int idx, const struct section *s, const char *key,
		     double min, double max, uint32_t *out)
{
	char what[96];
	snprintf(what, sizeof(what), "an integer from %.0f to %.0f", min, max);
	lua_getfield(v->L, idx, key);
	/* Not a cast: 1/0 (inf) would not fit the integer it was cast to (found by fuzz_config). */
	bool fractional = lua_type(v->L, -1) == LUA_TNUMBER &&
			  lua_tonumber(v->L, -1) != floor(lua_tonumber(v->L, -1));
	lua_pop(v->L, 1);
	if (fractional) {
		struct cfg_path p = s->path;
		path_push(&p, key, false);
		fail(v, &p, "%s%s%s must be %s", s->label, *s->label ? ": " : "", key, what);
		return;
	}
	get_number(v, idx, s, key, 1.0, min, max, what, out);
}

/* Pushes field key of the table at idx if it is a table; fails and returns false otherwise. */
static bool get_table(struct vctx *v, int idx, const struct section *s, const char *key, bool required)
{
	lua_getfield(v->L, idx, key);
	if (lua_istable(v->L, -1))
		return true;
	if (!lua_isnil(v->L, -1) || required) {
		struct cfg_path p = s->path;
		path_push(&p, key, false);
		char d[64];
		fail(v, &p, "%s%s%s must be a table, got %s", s->label, *s->label ? ": " : "", key,
		     lua_isnil(v->L, -1) ? "nothing" : describe(v->L, -1, d, sizeof(d)));
	}
	lua_pop(v->L, 1);
	return false;
}

/* A table nested in a section, named "parent: key" in messages. */
struct subsection {
	struct section s;
	char label[200];
	int idx; /* its stack index while pushed */
};

/*
 * Pushes field key of the table at idx if it is a table, and checks its keys
 * against allowed; false (nothing pushed) when it is absent, or not a table
 * (reported).
 */
static bool get_subsection(struct vctx *v, int idx, const struct section *parent, const char *key,
			   const char *const *allowed, struct subsection *sub)
{
	if (!get_table(v, idx, parent, key, false))
		return false;
	snprintf(sub->label, sizeof(sub->label), "%.150s: %s", parent->label, key);
	sub->s = (struct section){.label = sub->label, .path = parent->path};
	path_push(&sub->s.path, key, false);
	sub->idx = lua_gettop(v->L);
	check_keys(v, sub->idx, &sub->s, allowed);
	return true;
}

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

/* --- sections --- */

/*
 * One entry of servers: "host:port" or
 * { address = "host:port", weight = 1, backup = false, drain = false, max_connections = 0 }.
 */
static void load_server(struct vctx *v, const struct section *s, size_t i, struct cfg_server *srv)
{
	static const char *const keys[] = {"address", "weight", "backup", "drain", "max_connections",
					   NULL};
	lua_State *L = v->L;
	struct cfg_path p = s->path;
	path_push(&p, "servers", false);
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
		fail(v, &p, "%s: server %zu must be \"host:port\" or { address = \"host:port\", ... }, got %s",
		     s->label, i, describe(L, -1, d, sizeof(d)));
		lua_pop(L, 1);
		return;
	}
	char why[160];
	path_push(&p, text, true);
	if (config_parse_addr(text, &srv->addr, why, sizeof(why)) < 0)
		fail(v, &p, "%s: server \"%s\": %s", s->label, text, why);
	lua_pop(L, 1);
	if (!table)
		return;
	char label[240];
	snprintf(label, sizeof(label), "%.150s: server \"%.60s\"", s->label, text);
	struct section ss = {.label = label, .path = p};
	check_keys(v, idx, &ss, keys);
	get_size(v, idx, &ss, "weight", 1, 1000, &srv->weight);
	get_size(v, idx, &ss, "max_connections", 0, 1e6, &srv->max_connections);
	lua_getfield(L, idx, "backup");
	srv->backup = lua_toboolean(L, -1);
	lua_getfield(L, idx, "drain");
	srv->drain = lua_toboolean(L, -1);
	lua_pop(L, 2);
}

/* health = { type = "http"|"tcp", interval, timeout, rise, fall, path, method, host, status = "200-399", body } */
static void load_health(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"type", "interval", "timeout", "rise", "fall", "path",
					   "method", "host", "status", "body", NULL};
	lua_State *L = v->L;
	struct subsection sub;
	if (!get_subsection(v, idx, ps, "health", keys, &sub))
		return;
	int t = sub.idx;
	struct section s = sub.s;
	const char *label = sub.label;
	struct cfg_health *h = &pool->health;
	*h = (struct cfg_health){.enabled = true, .http = true, .interval_ms = 2000, .timeout_ms = 1000,
				 .rise = 2, .fall = 3, .status_min = 200, .status_max = 399};
	get_seconds(v, t, &s, "interval", &h->interval_ms);
	get_seconds(v, t, &s, "timeout", &h->timeout_ms);
	get_size(v, t, &s, "rise", 1, 100, &h->rise);
	get_size(v, t, &s, "fall", 1, 100, &h->fall);
	const char *type = "http", *path = "/", *method = "GET", *host = NULL, *status = NULL, *body = NULL;
	const char *const names[] = {"type", "path", "method", "host", "status", "body"};
	const char **vals[] = {&type, &path, &method, &host, &status, &body};
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		lua_getfield(L, t, names[i]);
		struct cfg_path p = s.path;
		path_push(&p, names[i], false);
		if (lua_type(L, -1) == LUA_TSTRING)
			*vals[i] = lua_tostring(L, -1);
		else if (!lua_isnil(L, -1))
			fail(v, &p, "%s: %s must be a string", label, names[i]);
		lua_pop(L, 1);
	}
	struct cfg_path p = s.path;
	if (strcmp(type, "http") && strcmp(type, "tcp")) {
		path_push(&p, "type", false);
		fail(v, &p, "%s: type must be \"http\" or \"tcp\"", label);
	}
	h->http = !strcmp(type, "http");
	unsigned lo = 200, hi = 399;
	int end = 0;
	if (status && !((sscanf(status, "%3u-%3u%n", &lo, &hi, &end) == 2 && !status[end]) ||
			(sscanf(status, "%3u%n", &lo, &end) == 1 && !status[end] && (hi = lo))) ) {
		path_push(&p, "status", false);
		fail(v, &p, "%s: status must be \"200\" or a range \"200-399\"", label);
	} else if (lo < 100 || hi > 599 || lo > hi) {
		path_push(&p, "status", false);
		fail(v, &p, "%s: status range must be within 100-599", label);
	}
	h->status_min = lo;
	h->status_max = hi;
	if (path[0] != '/' || !http_header_value_valid(path, strlen(path)) || strchr(path, ' ') ||
	    !http_header_name_valid(method, strlen(method)) ||
	    (host && (!http_header_value_valid(host, strlen(host)) || strchr(host, ' ')))) {
		fail(v, &s.path, "%s: path, method and host must fit in a request line and header", label);
	}
	if (h->timeout_ms >= h->interval_ms) {
		path_push(&p, "timeout", false);
		fail(v, &p, "%s: timeout must be shorter than interval", label);
	}
	if (body)
		h->body = strdup(body);
	if (strlen(path) + strlen(method) + (host ? strlen(host) : 0) > 1024)
		fail(v, &s.path, "%s: path, method and host together must fit in 1024 bytes", label);
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
	if (!get_subsection(v, idx, ps, "queue", keys, &sub))
		return;
	get_size(v, sub.idx, &sub.s, "size", 0, 1e6, &pool->queue.size);
	get_seconds(v, sub.idx, &sub.s, "timeout", &pool->queue.timeout_ms);
	get_size(v, sub.idx, &sub.s, "retry_after", 0, 86400, &pool->queue.retry_after_s);
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
			path_push(&p, name, true);
		fail(v, &p, "%s: on entry %zu must be \"error\", \"timeout\" or a status from 400 to 599, "
			    "got %s",
		     s->label, i, describe(L, -1, d, sizeof(d)));
	}
}

/* retry = { on = { "error", "timeout", 503 }, tries = 3, buffer = 65536, budget = 20, budget_min = 10 } */
static void load_retry(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"on", "tries", "buffer", "budget", "budget_min", NULL};
	lua_State *L = v->L;
	struct cfg_retry *r = &pool->retry;
	*r = (struct cfg_retry){.tries = 3, .buffer = 65536, .budget_percent = 20, .budget_min = 10};
	struct subsection sub;
	if (!get_subsection(v, idx, ps, "retry", keys, &sub))
		return;
	int t = sub.idx;
	struct section s = sub.s;
	const char *label = sub.label;
	get_size(v, t, &s, "tries", 1, CFG_MAX_TRIES, &r->tries);
	get_size(v, t, &s, "buffer", 0, 1 << 30, &r->buffer);
	get_size(v, t, &s, "budget", 0, 100, &r->budget_percent);
	get_size(v, t, &s, "budget_min", 0, 1e6, &r->budget_min);
	lua_getfield(L, t, "on");
	if (lua_isnil(L, -1)) {
		/* A retry table says retries are wanted: these two are safe for idempotent requests. */
		r->on_error = r->on_timeout = true;
	} else if (!lua_istable(L, -1) || table_entries(L, -1) != lua_objlen(L, -1)) {
		struct cfg_path p = s.path;
		path_push(&p, "on", false);
		fail(v, &p, "%s: on must be a list such as { \"error\", \"timeout\", 503 }", label);
	} else {
		struct section on = {.label = label, .path = s.path};
		path_push(&on.path, "on", false);
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
		path_push(&p, "balance", false);
		if (k == BALANCE_ALGOS)
			fail(v, &p, "%s: balance must be \"round_robin\", \"weighted\", \"least_conn\", "
				    "\"random2\" or \"hash\"",
			     s->label);
		else
			pool->balance = (enum balance_algo)k;
	}
	lua_pop(L, 1);
	lua_getfield(L, idx, "hash");
	const char *by = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	p = s->path;
	path_push(&p, "hash", false);
	if (!lua_isnil(L, -1) && pool->balance != BALANCE_HASH)
		fail(v, &p, "%s: hash is for balance = \"hash\"", s->label);
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
		fail(v, &p, "%s: hash must be \"client\", \"host\", \"header:Name\" or \"cookie:name\"",
		     s->label);
	}
	lua_pop(L, 1);
}

/* A string field naming a file: resolved into out (4096 bytes); NULL when absent. */
static const char *get_file(struct vctx *v, const struct subsection *sub, const char *key, char *out)
{
	lua_getfield(v->L, sub->idx, key);
	struct cfg_path p = sub->s.path;
	path_push(&p, key, false);
	const char *file = NULL;
	if (lua_type(v->L, -1) == LUA_TSTRING) {
		if (config_relative(v, lua_tostring(v->L, -1), out, 4096))
			file = out;
		else
			fail(v, &p, "%s: %s: name too long", sub->label, key);
	} else if (!lua_isnil(v->L, -1)) {
		fail(v, &p, "%s: %s must name a file", sub->label, key);
	}
	lua_pop(v->L, 1);
	return file;
}

/* tls = { ca = "file", name = "api.internal", cert = "file", key = "file", verify = true } of a pool. */
static void load_pool_tls(struct vctx *v, struct cfg_pool *pool, int idx, const struct section *ps)
{
	static const char *const keys[] = {"ca", "name", "cert", "key", "verify", NULL};
	struct subsection sub;
	if (!get_subsection(v, idx, ps, "tls", keys, &sub))
		return;
	lua_State *L = v->L;
	char ca[4096], cert[4096], key[4096];
	struct tls_client_opts o = {.verify = true, .nsessions = pool->nservers * CFG_THREADS};
	o.ca = get_file(v, &sub, "ca", ca);
	o.cert = get_file(v, &sub, "cert", cert);
	o.key = get_file(v, &sub, "key", key);
	struct cfg_path np = sub.s.path;
	path_push(&np, "name", false);
	lua_getfield(L, sub.idx, "name");
	char host[256];
	size_t nlen = 0;
	const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nlen) : NULL;
	if ((!name && !lua_isnil(L, -1)) ||
	    (name && host_normalize(name, nlen, host, sizeof(host)) != (int)nlen))
		fail(v, &np, "%s: name must be a host name, as the servers' certificates carry it",
		     sub.label);
	o.name = name;
	lua_getfield(L, sub.idx, "verify");
	if (lua_isboolean(L, -1))
		o.verify = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		fail(v, &sub.s.path, "%s: verify must be true or false", sub.label);
	if (o.key && !o.cert)
		fail(v, &sub.s.path, "%s: key without cert", sub.label);
	char err[768];
	struct tls_warnings tw = {v, &sub.s.path};
	struct tls_report r = {err, sizeof(err), tls_warned, &tw};
	if (!v->failed && !(pool->tls = tls_client_new(&o, &r)))
		fail(v, &sub.s.path, "%s: %s", sub.label, err);
	if (!o.verify)
		warn(v, &sub.s.path, "%s: verify = false: any certificate is taken, as from an attacker",
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
	static const char *const keys[] = {"servers",	      "keepalive",   "keepalive_timeout",
					   "keepalive_purge", "connect_backoff", "max_backoff", "max_fails",
					   "max_requests",    "slow_start",  "balance",
					   "hash",	      "health",	     "max_connections",
					   "queue",	      "retry",	     "tls",
					   NULL};
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	char label[160];
	snprintf(label, sizeof(label), "pool \"%.100s\"", name);
	struct section s = {.label = label};
	path_push(&s.path, "pools", false);
	path_push(&s.path, name, false);

	pool->name = strdup(name);
	pool->keepalive = CFG_NO_CAP;
	pool->keepalive_timeout_ms = 60000;
	pool->keepalive_purge_ms = 5000;
	pool->connect_backoff_ms = 2000;
	pool->max_backoff_ms = 30000;
	pool->max_fails = 1;
	check_keys(v, idx, &s, keys);
	get_size(v, idx, &s, "keepalive", 0, 100000, &pool->keepalive);
	get_seconds(v, idx, &s, "keepalive_timeout", &pool->keepalive_timeout_ms);
	get_seconds(v, idx, &s, "keepalive_purge", &pool->keepalive_purge_ms);
	get_seconds(v, idx, &s, "connect_backoff", &pool->connect_backoff_ms);
	/* Unless set, the cool-down may grow to 30 s, or stays at a longer connect_backoff. */
	pool->max_backoff_ms = MAX(pool->max_backoff_ms, pool->connect_backoff_ms);
	get_seconds(v, idx, &s, "max_backoff", &pool->max_backoff_ms);
	get_size(v, idx, &s, "max_fails", 1, 1000, &pool->max_fails);
	get_size(v, idx, &s, "max_requests", 0, 1e9, &pool->max_requests);
	get_number(v, idx, &s, "slow_start", 1000.0, 0, 86400.0, "a number of seconds, 0 for off",
		   &pool->slow_start_ms);
	get_size(v, idx, &s, "max_connections", 0, 1e7, &pool->max_connections);
	load_queue(v, pool, idx, &s);
	load_retry(v, pool, idx, &s);
	if (pool->max_backoff_ms < pool->connect_backoff_ms) {
		struct cfg_path p = s.path;
		path_push(&p, "max_backoff", false);
		fail(v, &p, "%s: max_backoff must be at least connect_backoff", label);
	}
	load_balance(v, pool, idx, &s);
	load_health(v, pool, idx, &s);
	if (!get_table(v, idx, &s, "servers", true))
		return;
	size_t n = lua_objlen(L, -1);
	if (n == 0) {
		struct cfg_path p = s.path;
		path_push(&p, "servers", false);
		fail(v, &p, "%s: servers must list at least one \"host:port\"", label);
	}
	pool->servers = calloc(n ? n : 1, sizeof(*pool->servers));
	for (size_t i = 1; i <= n && pool->servers; i++) {
		lua_rawgeti(L, -1, (int)i);
		load_server(v, &s, i, &pool->servers[pool->nservers++]);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (pool->servers && !v->failed && config_pool_ring(pool) < 0)
		fail(v, NULL, "out of memory");
	load_pool_tls(v, pool, idx, &s);
}

static void load_pools(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!get_table(v, 1, &top, "pools", true))
		return;
	int idx = lua_gettop(L);
	size_t n = table_entries(L, idx);
	cfg->pools = calloc(n ? n : 1, sizeof(*cfg->pools));
	if (!cfg->pools) {
		fail(v, NULL, "out of memory");
		lua_pop(L, 1);
		return;
	}
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		struct cfg_path p = {0};
		path_push(&p, "pools", false);
		if (cfg->npools == n) {
			lua_pop(L, 2);
			break;
		}
		if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1)) {
			fail(v, &p, "pools: each entry must be name = { servers = {...} }");
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
		fail(v, &top.path, "pools: the table changed while it was read");
	if (n == 0)
		fail(v, &top.path, "pools: define at least one pool");
	lua_pop(L, 1);
}

bool config_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && !memcmp(&a->sa, &b->sa, a->len);
}

size_t config_find_pool(const struct config *cfg, const char *name)
{
	for (size_t k = 0; k < cfg->npools; k++)
		if (!strcmp(cfg->pools[k].name, name))
			return k;
	return SIZE_MAX;
}

/* --- sites --- */

/* Reads { ["Name"] = "value", ... } at the top of the stack into an array in the arena. */
static const struct header_kv *load_header_map(struct vctx *v, struct config *cfg,
					       const struct section *s, const char *what, uint32_t *count)
{
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	uint32_t n = 0;
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
		n++;
	struct header_kv *kv = arena_alloc(&cfg->arena, (n ? n : 1) * sizeof(*kv));
	*count = 0;
	if (!kv) {
		fail(v, NULL, "out of memory");
		return NULL;
	}
	for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
		struct cfg_path p = s->path;
		path_push(&p, what, false);
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
			fail(v, &p, "%s: %s must map header names to string values", s->label, what);
			continue;
		}
		size_t nl, vl;
		const char *name = lua_tolstring(L, -2, &nl);
		const char *value = lua_tolstring(L, -1, &vl);
		path_push(&p, name, false);
		if (!http_header_name_valid(name, nl))
			fail(v, &p, "%s: %s: \"%s\" is not a valid header name", s->label, what, name);
		else if (http_header_owned(name, nl))
			fail(v, &p, "%s: %s: \"%s\" is managed by sluice and cannot be set", s->label,
			     what, name);
		else if (!http_header_value_valid(value, vl))
			fail(v, &p, "%s: %s: header \"%s\": value contains a control character", s->label, what,
			     name);
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
	if (!get_table(v, idx, rs, key, false))
		return;
	int t = lua_gettop(L);
	char label[320];
	snprintf(label, sizeof(label), "%.290s: %s", rs->label, key);
	struct section s = {.label = label, .path = rs->path};
	path_push(&s.path, key, false);
	check_keys(v, t, &s, keys);
	if (get_table(v, t, &s, "set", false)) {
		rules->set = load_header_map(v, cfg, &s, "set", &rules->nset);
		lua_pop(L, 1);
	}
	if (get_table(v, t, &s, "add", false)) {
		rules->add = load_header_map(v, cfg, &s, "add", &rules->nadd);
		lua_pop(L, 1);
	}
	if (get_table(v, t, &s, "remove", false)) {
		size_t n = lua_objlen(L, -1);
		struct header_kv *kv = arena_alloc(&cfg->arena, (n ? n : 1) * sizeof(*kv));
		for (size_t i = 1; kv && i <= n; i++) {
			lua_rawgeti(L, -1, (int)i);
			size_t nl = 0;
			const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
			if (!name || !http_header_name_valid(name, nl) || http_header_owned(name, nl)) {
				struct cfg_path p = s.path;
				path_push(&p, "remove", false);
				fail(v, &p, "%s: remove must list header names (not framing or connection ones)",
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

/* verify_client = "off" | "optional" | "required" of the table at idx; absent keeps *out. */
static void load_verify(struct vctx *v, int idx, const struct section *s, uint8_t *out)
{
	lua_getfield(v->L, idx, "verify_client");
	if (!lua_isnil(v->L, -1)) {
		const char *m = lua_type(v->L, -1) == LUA_TSTRING ? lua_tostring(v->L, -1) : "";
		int mode = !strcmp(m, "off")	    ? TLS_VERIFY_OFF
			   : !strcmp(m, "optional") ? TLS_VERIFY_OPTIONAL
			   : !strcmp(m, "required") ? TLS_VERIFY_REQUIRED
						    : -1;
		struct cfg_path p = s->path;
		path_push(&p, "verify_client", false);
		char d[64];
		if (mode < 0)
			fail(v, &p, "%s: verify_client must be \"off\", \"optional\" or \"required\", got %s",
			     s->label, describe(v->L, -1, d, sizeof(d)));
		else
			*out = (uint8_t)mode;
	}
	lua_pop(v->L, 1);
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
		get_size(v, idx, s, "force_https", 1, 65535, &p);
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
		path_push(&p, "metrics", false);
		fail(v, &p, "%s: metrics must be true or false", s->label);
	}
	lua_pop(v->L, 1);
	if (!on)
		return 0;
	struct cfg_tracked *t = realloc(cfg->tracked, (cfg->ntracked + 1) * sizeof(*t));
	if (!t) {
		fail(v, NULL, "out of memory");
		return 0;
	}
	cfg->tracked = t;
	t[cfg->ntracked] = (struct cfg_tracked){.site = site, .route = route};
	return (uint32_t)++cfg->ntracked;
}

static void load_route(struct vctx *v, struct config *cfg, const struct section *ss,
		       const char *site, struct route *rt, const char *default_path)
{
	static const char *const keys[] = {"path",	      "pool",		  "respond",
					   "redirect",	      "request_headers", "response_headers",
					   "force_https",      "metrics",	  NULL};
	lua_State *L = v->L;
	int idx = lua_gettop(L);
	lua_getfield(L, idx, "path");
	size_t plen = 0;
	const char *path = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &plen) : default_path;
	if (path == default_path)
		plen = path ? strlen(path) : 0;
	char label[300];
	snprintf(label, sizeof(label), "%.150s: route \"%.100s\"", ss->label, path ? path : "?");
	struct section s = {.label = label, .path = ss->path};
	if (path && path != default_path)
		path_push(&s.path, path, true);
	check_keys(v, idx, &s, keys);
	if (!path || path[0] != '/') {
		fail(v, &s.path, "%s: path must be a prefix starting with \"/\"", label);
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
		path_push(&p, "pool", false);
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		rt->action = ROUTE_PROXY;
		rt->pool = pool ? config_find_pool(cfg, pool) : SIZE_MAX;
		if (!pool)
			fail(v, &p, "%s: pool must name a pool", label);
		else if (rt->pool == SIZE_MAX) {
			path_push(&p, pool, true);
			fail(v, &p, "%s: unknown pool \"%s\"", label, pool);
		}
	}
	lua_pop(L, 1);
	if (get_table(v, idx, &s, "respond", false)) {
		static const char *const rkeys[] = {"status", "body", "headers", NULL};
		actions++;
		int r = lua_gettop(L);
		struct section rs = {.label = label, .path = s.path};
		path_push(&rs.path, "respond", false);
		check_keys(v, r, &rs, rkeys);
		uint32_t status = 200;
		get_size(v, r, &rs, "status", 200, 599, &status);
		rt->action = ROUTE_RESPOND;
		rt->status = (uint16_t)status;
		lua_getfield(L, r, "body");
		size_t blen = 0;
		const char *body = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &blen) : "";
		if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
			struct cfg_path p = rs.path;
			path_push(&p, "body", false);
			fail(v, &p, "%s: respond body must be a string", label);
		}
		if (blen > 65536) {
			struct cfg_path p = rs.path;
			path_push(&p, "body", false);
			fail(v, &p, "%s: respond body is %zu bytes; at most 65536", label, blen);
		}
		rt->body = arena_strndup(&cfg->arena, body, blen);
		rt->body_len = (uint32_t)blen;
		lua_pop(L, 1);
		if (get_table(v, r, &rs, "headers", false)) {
			rt->respond_headers = load_header_map(v, cfg, &rs, "headers", &rt->nrespond_headers);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	if (get_table(v, idx, &s, "redirect", false)) {
		static const char *const rkeys[] = {"to", "status", "keep_path", NULL};
		actions++;
		int r = lua_gettop(L);
		struct section rs = {.label = label, .path = s.path};
		path_push(&rs.path, "redirect", false);
		check_keys(v, r, &rs, rkeys);
		uint32_t status = 302;
		get_size(v, r, &rs, "status", 300, 399, &status);
		rt->action = ROUTE_REDIRECT;
		rt->status = (uint16_t)status;
		lua_getfield(L, r, "to");
		size_t tlen = 0;
		const char *to = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &tlen) : NULL;
		if (!to || !tlen || !http_header_value_valid(to, tlen)) {
			struct cfg_path p = rs.path;
			path_push(&p, "to", false);
			fail(v, &p, "%s: redirect needs to = \"URL\" (no control characters)", label);
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
		fail(v, &s.path, "%s: give exactly one of pool, respond or redirect", label);
	get_https_port(v, idx, &s, &rt->https_port);
	rt->metrics = get_metrics(v, cfg, idx, &s, site, rt->prefix);
	load_header_rules(v, cfg, idx, &s, "request_headers", &rt->req);
	load_header_rules(v, cfg, idx, &s, "response_headers", &rt->rsp);
}

static void load_site(struct vctx *v, struct config *cfg, size_t index)
{
	static const char *const keys[] = {"hosts", "default", "pool",	"routes",
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
	path_push(&s.path, "sites", false);
	if (first)
		path_push(&s.path, first, true);
	site->name = arena_strndup(&cfg->arena, first ? first : "", first ? strlen(first) : 0);
	lua_pop(L, 1);
	if (!hosts_ok) {
		struct cfg_path p = s.path;
		path_push(&p, "hosts", false);
		fail(v, &p, "sites: entry %zu: hosts must be a list of host names", index + 1);
	}
	size_t nhosts = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	for (size_t i = 1; i <= nhosts; i++) {
		lua_rawgeti(L, -1, (int)i);
		size_t hl = 0;
		const char *host = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &hl) : NULL;
		/* "hosts" comes before the first host that names the site: not searched for. */
		struct cfg_path p = s.path;
		if (host)
			path_push(&p, host, true);
		int rc = host ? router_add_host(&cfg->router, arena_strndup(&cfg->arena, host, hl), hl,
						(uint32_t)index)
			      : -EINVAL;
		if (rc == -EEXIST)
			fail(v, &p, "%s: host \"%s\" belongs to another site already", label, host);
		else if (rc == -ENOSPC)
			fail(v, &p, "%s: more hosts than were there when they were counted "
				    "(a metamethod that changes the table?)", label);
		else if (rc < 0)
			fail(v, &p, "%s: \"%s\" is not a host name (lower case, no port) or *.suffix",
			     label, host ? host : "?");
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	check_keys(v, idx, &s, keys);
	static const char *const tls_keys[] = {"verify_client", NULL};
	struct subsection tls;
	if (get_subsection(v, idx, &s, "tls", tls_keys, &tls)) {
		load_verify(v, tls.idx, &tls.s, &site->tls_verify);
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
			path_push(&p, "default", false);
			fail(v, &p, "%s: only one site can be the default", label);
		}
		cfg->router.default_site = (int64_t)index;
	} else if (!nhosts) {
		fail(v, &s.path, "%s: hosts must list at least one host (or set default = true)", label);
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
		fail(v, NULL, "out of memory");
		return;
	}
	if (shorthand) {
		/* pool = "x" is a route "/" to it; explicit routes with longer prefixes win. */
		lua_getfield(L, idx, "pool");
		struct cfg_path p = s.path;
		path_push(&p, "pool", false);
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		struct route *rt = &site->routes[site->nroutes++];
		rt->prefix = "/";
		rt->prefix_len = 1;
		rt->action = ROUTE_PROXY;
		rt->https_port = https_port;
		rt->pool = pool ? config_find_pool(cfg, pool) : SIZE_MAX;
		if (!pool) {
			fail(v, &p, "%s: pool must name a pool", label);
		} else if (rt->pool == SIZE_MAX) {
			path_push(&p, pool, true);
			fail(v, &p, "%s: unknown pool \"%s\"", label, pool);
		}
		lua_pop(L, 1);
	}
	if (get_table(v, idx, &s, "routes", false)) {
		for (size_t i = 1; i <= nroutes; i++) {
			lua_rawgeti(L, -1, (int)i);
			if (!lua_istable(L, -1)) {
				struct cfg_path p = s.path;
				path_push(&p, "routes", false);
				fail(v, &p, "%s: routes must be a list of { path = ..., ... }", label);
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
		fail(v, &s.path, "%s: give pool = \"name\" or routes = { ... }", label);
	router_sort_routes(site);
	/* Sorted by length: a repeated prefix is within its run of equal lengths. */
	for (uint32_t i = 0; i < site->nroutes; i++)
		for (uint32_t k = i + 1;
		     k < site->nroutes && site->routes[k].prefix_len == site->routes[i].prefix_len; k++)
			if (!memcmp(site->routes[i].prefix, site->routes[k].prefix,
				    site->routes[i].prefix_len)) {
				struct cfg_path p = s.path;
				path_push(&p, "routes", false);
				path_push(&p, site->routes[i].prefix, true);
				path_push(&p, site->routes[i].prefix, true);
				fail(v, &p, "%s: route \"%s\" given twice", label, site->routes[i].prefix);
			}
}

static void load_sites(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!get_table(v, 1, &top, "sites", false))
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
		fail(v, NULL, "out of memory");
		lua_pop(L, 1);
		return;
	}
	cfg->has_sites = true;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		if (!lua_istable(L, -1)) {
			struct cfg_path p = {0};
			path_push(&p, "sites", false);
			fail(v, &p, "sites: entry %zu must be a table { hosts = {...}, ... }", i);
		} else {
			load_site(v, cfg, i - 1);
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

/* --- TLS --- */

/* protocols = { "TLSv1.2", "TLSv1.3" }: the lowest and highest named. */
static void load_protocols(struct vctx *v, const struct subsection *sub, struct tls_server_opts *o)
{
	lua_State *L = v->L;
	lua_getfield(L, sub->idx, "protocols");
	struct cfg_path p = sub->s.path;
	path_push(&p, "protocols", false);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	size_t n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	if (!n)
		fail(v, &p, "%s: protocols must list \"TLSv1.2\" and/or \"TLSv1.3\"", sub->label);
	int lo = INT32_MAX, hi = 0;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (int)i);
		const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
		int version = !strcmp(name, "TLSv1.2") ? TLS1_2_VERSION
			      : !strcmp(name, "TLSv1.3") ? TLS1_3_VERSION
							 : 0;
		if (!version && (!strcmp(name, "TLSv1") || !strcmp(name, "TLSv1.0") ||
				 !strcmp(name, "TLSv1.1") || !strncmp(name, "SSL", 3)))
			fail(v, &p, "%s: protocols: %s is refused (broken); only TLSv1.2 and TLSv1.3",
			     sub->label, name);
		else if (!version)
			fail(v, &p, "%s: protocols: unknown protocol \"%s\"; \"TLSv1.2\" or \"TLSv1.3\"",
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
	path_push(&lp, "certificates", false);
	size_t n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
	if (!lua_isnil(L, -1) && !lua_istable(L, -1))
		fail(v, &lp, "%s: certificates must be a list of { cert = \"file\", key = \"file\" }",
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
			path_push(&s.path, cert, true);
		char cert_path[4096], key_path[4096];
		if (!lua_istable(L, idx) || !cert || (!key && !lua_isnil(L, -1))) {
			fail(v, &s.path, "%s: certificates entry %zu must be { cert = \"file\", key = \"file\" }",
			     sub->label, i);
		} else if (!config_relative(v, cert, cert_path, sizeof(cert_path)) ||
			   (key && !config_relative(v, key, key_path, sizeof(key_path)))) {
			fail(v, &s.path, "%s: file name too long", sub->label);
		} else {
			check_keys(v, idx, &s, keys);
			tw->path = &s.path;
			if (tls_server_add_cert(ts, cert_path, key ? key_path : NULL, r) < 0)
				fail(v, &s.path, "%s: %s", sub->label, r->err);
		}
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
}

/* Whether a site asks for client certificates (which a TLS listener routing to it must be able to check). */
static const struct site *site_with_client_certs(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->router.nsites; i++)
		if (cfg->router.sites[i].tls_verify > TLS_VERIFY_OFF)
			return &cfg->router.sites[i];
	return NULL;
}

/*
 * tls = { certificates = {...}, certificate_dir = "dir", protocols = {...},
 *         client_ca = "file", verify_client = "off" } of a listener.
 */
static void load_listener_tls(struct vctx *v, const struct config *cfg, struct cfg_listener *l, int idx,
			      const struct section *ls)
{
	static const char *const keys[] = {"certificates", "certificate_dir", "protocols",
					   "client_ca",	   "verify_client",   NULL};
	struct subsection sub;
	l->tls_verify = TLS_VERIFY_OFF;
	if (!get_subsection(v, idx, ls, "tls", keys, &sub))
		return;
	lua_State *L = v->L;
	struct tls_server_opts o = {TLS1_2_VERSION, TLS1_3_VERSION, TLS_VERIFY_OFF, NULL};
	load_protocols(v, &sub, &o);
	load_verify(v, sub.idx, &sub.s, &l->tls_verify);
	o.verify = (enum tls_verify)l->tls_verify;
	lua_getfield(L, sub.idx, "client_ca");
	struct cfg_path cp = sub.s.path;
	path_push(&cp, "client_ca", false);
	char ca[4096];
	const struct site *needs = l->routed ? site_with_client_certs(cfg) : NULL;
	if (lua_type(L, -1) == LUA_TSTRING) {
		if (!config_relative(v, lua_tostring(L, -1), ca, sizeof(ca)))
			fail(v, &cp, "%s: client_ca: name too long", sub.label);
		o.client_ca = ca;
		l->client_ca = true;
	} else if (!lua_isnil(L, -1)) {
		fail(v, &cp, "%s: client_ca must name a PEM file of CA certificates", sub.label);
	} else if (o.verify > TLS_VERIFY_OFF) {
		struct cfg_path vp = sub.s.path;
		path_push(&vp, "verify_client", false);
		fail(v, &vp, "%s: verify_client needs client_ca, the CAs that sign client certificates",
		     sub.label);
	} else if (needs) {
		fail(v, &sub.s.path, "%s: site \"%s\" asks for client certificates: give this listener client_ca",
		     sub.label, needs->name);
	}
	lua_pop(L, 1);
	char err[768];
	struct tls_warnings tw = {v, &sub.s.path};
	struct tls_report r = {err, sizeof(err), tls_warned, &tw};
	if (!v->failed && !(l->tls = tls_server_new(&o, &r)))
		fail(v, &sub.s.path, "%s: %s", sub.label, err);
	if (l->tls)
		load_certificates(v, &sub, l->tls, &r, &tw);
	lua_getfield(L, sub.idx, "certificate_dir");
	struct cfg_path dp = sub.s.path;
	path_push(&dp, "certificate_dir", false);
	char dir[4096];
	tw.path = &dp;
	if (lua_type(L, -1) == LUA_TSTRING && l->tls && !v->failed) {
		if (!config_relative(v, lua_tostring(L, -1), dir, sizeof(dir)))
			fail(v, &dp, "%s: certificate_dir: name too long", sub.label);
		else if (tls_server_add_dir(l->tls, dir, &r) < 0)
			fail(v, &dp, "%s: %s", sub.label, err);
	} else if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) {
		fail(v, &dp, "%s: certificate_dir must name a directory", sub.label);
	}
	lua_pop(L, 1);
	tw.path = &sub.s.path;
	if (l->tls && !v->failed && tls_server_finish(l->tls, &r) < 0)
		fail(v, &sub.s.path, "%s: %s", sub.label, err);
	lua_pop(L, 1);
}

static void load_listeners(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"address", "pool", "max_connections", "tls", NULL};
	lua_State *L = v->L;
	struct section top = {.label = ""};
	if (!get_table(v, 1, &top, "listeners", true))
		return;
	size_t n = lua_objlen(L, -1);
	cfg->listeners = calloc(n ? n : 1, sizeof(*cfg->listeners));
	struct cfg_path lp = {0};
	path_push(&lp, "listeners", false);
	if (n == 0)
		fail(v, &lp, "listeners: define at least one { address = \"host:port\", pool = \"name\" }");
	for (size_t i = 1; i <= n && cfg->listeners; i++) {
		lua_rawgeti(L, -1, (int)i);
		if (!lua_istable(L, -1)) {
			fail(v, &lp, "listeners: entry %zu must be a table { address = ..., pool = ... }", i);
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
			path_push(&s.path, addr, true);
		check_keys(v, idx, &s, keys);
		struct cfg_listener *l = &cfg->listeners[cfg->nlisteners++];
		get_size(v, idx, &s, "max_connections", 1, 10000000, &l->max_connections);
		char why[160];
		if (!addr)
			fail(v, &s.path, "listeners: entry %zu needs address = \"host:port\"", i);
		else if (config_parse_addr(addr, &l->addr, why, sizeof(why)) < 0)
			fail(v, &s.path, "%s: %s", label, why);
		lua_pop(L, 1);
		lua_getfield(L, idx, "pool");
		const char *pool = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		struct cfg_path pp = s.path;
		path_push(&pp, "pool", false);
		if (!pool && !lua_isnil(L, -1)) {
			fail(v, &pp, "%s: pool must name a pool", label);
		} else if (!pool) {
			l->routed = true;
			if (!cfg->has_sites)
				fail(v, &pp, "%s: no pool, and no sites to route by", label);
		} else {
			l->pool = config_find_pool(cfg, pool);
			if (l->pool == SIZE_MAX) {
				path_push(&pp, pool, true);
				fail(v, &pp, "%s: unknown pool \"%s\"", label, pool);
			}
		}
		lua_pop(L, 1);
		load_listener_tls(v, cfg, l, idx, &s);
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < cfg->nlisteners; i++)
		for (size_t j = 0; j < i; j++)
			if (cfg->listeners[i].addr.len &&
			    config_addr_equal(&cfg->listeners[i].addr, &cfg->listeners[j].addr)) {
				struct cfg_path p = lp;
				path_push(&p, cfg->listeners[i].addr.text, true);
				path_push(&p, cfg->listeners[i].addr.text, true);
				fail(v, &p, "listener \"%s\": address used twice",
				     cfg->listeners[i].addr.text);
			}
	lua_pop(L, 1);
}

static void load_timeouts(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"client_header",    "client_keepalive", "backend_connect",
					   "backend_response", "idle",		   "shutdown",
					   "tls_handshake",    NULL};
	struct cfg_timeouts *t = &cfg->timeouts;
	struct section top = {.label = ""};
	if (!get_table(v, 1, &top, "timeouts", false))
		return;
	int idx = lua_gettop(v->L);
	struct section s = {.label = "timeouts"};
	path_push(&s.path, "timeouts", false);
	check_keys(v, idx, &s, keys);
	get_seconds(v, idx, &s, "client_header", &t->client_header_ms);
	get_seconds(v, idx, &s, "client_keepalive", &t->client_keepalive_ms);
	get_seconds(v, idx, &s, "backend_connect", &t->backend_connect_ms);
	get_seconds(v, idx, &s, "backend_response", &t->backend_response_ms);
	get_seconds(v, idx, &s, "idle", &t->idle_ms);
	get_seconds(v, idx, &s, "shutdown", &t->shutdown_ms);
	get_seconds(v, idx, &s, "tls_handshake", &t->tls_handshake_ms);
	lua_pop(v->L, 1);
}

static void load_limits(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"max_request_line", "max_header_size",   "buffer_size",
					   "max_connections",  "hook_instructions", "busy_poll",
					   NULL};
	struct cfg_limits *l = &cfg->limits;
	struct section top = {.label = ""};
	if (!get_table(v, 1, &top, "limits", false))
		return;
	int idx = lua_gettop(v->L);
	struct section s = {.label = "limits"};
	path_push(&s.path, "limits", false);
	check_keys(v, idx, &s, keys);
	get_size(v, idx, &s, "max_header_size", 256, 1 << 20, &l->max_header_size);
	/* Unless set, the request line may use what the head may. */
	l->max_request_line = MIN(l->max_request_line, l->max_header_size);
	get_size(v, idx, &s, "max_request_line", 64, 1 << 20, &l->max_request_line);
	get_size(v, idx, &s, "buffer_size", 1024, 16 << 20, &l->buffer_size);
	get_size(v, idx, &s, "max_connections", 1, 10000000, &l->max_connections);
	get_size(v, idx, &s, "hook_instructions", 1000, 1e9, &l->hook_instructions);
	get_number(v, idx, &s, "busy_poll", 1e6, 0, 0.01, "a number of seconds from 0 to 0.01",
		   &l->busy_poll_us);
	if (l->max_request_line > l->max_header_size) {
		struct cfg_path p = s.path;
		path_push(&p, "max_request_line", false);
		fail(v, &p, "limits: max_request_line (%u) must not exceed max_header_size (%u)",
		     l->max_request_line, l->max_header_size);
	}
	if (l->buffer_size < l->max_header_size) {
		struct cfg_path p = s.path;
		path_push(&p, "buffer_size", false);
		fail(v, &p, "limits: buffer_size (%u) must be at least max_header_size (%u)",
		     l->buffer_size, l->max_header_size);
	}
	lua_pop(v->L, 1);
}

static void load_logging(struct vctx *v, struct config *cfg)
{
	lua_State *L = v->L;
	lua_getfield(L, 1, "access_log");
	struct cfg_path p = {0};
	path_push(&p, "access_log", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1))
		cfg->access_log = strdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
		char d[64];
		fail(v, &p, "access_log must be a file path, \"stderr\" or false, got %s",
		     describe(L, -1, d, sizeof(d)));
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "access_log_format");
	struct cfg_path fp = {0};
	path_push(&fp, "access_log_format", false);
	const char *format = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (format && !strcmp(format, "json"))
		cfg->access_log_format = ACCESS_LOG_JSON;
	else if (!lua_isnil(L, -1) && !(format && !strcmp(format, "text"))) {
		char d[64];
		fail(v, &fp, "access_log_format must be \"text\" or \"json\", got %s",
		     describe(L, -1, d, sizeof(d)));
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "pid_file");
	struct cfg_path pp = {0};
	path_push(&pp, "pid_file", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1))
		cfg->pid_file = strdup(lua_tostring(L, -1));
	else if (!lua_isnil(L, -1))
		fail(v, &pp, "pid_file must be a file path");
	lua_pop(L, 1);
	lua_getfield(L, 1, "log_level");
	struct cfg_path q = {0};
	path_push(&q, "log_level", false);
	if (!lua_isnil(L, -1)) {
		int level = lua_type(L, -1) == LUA_TSTRING ? log_level_parse(lua_tostring(L, -1)) : -1;
		char d[64];
		if (level < 0)
			fail(v, &q, "log_level must be \"debug\", \"info\", \"warn\" or \"error\", got %s",
			     describe(L, -1, d, sizeof(d)));
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
		fail(v, path, "admin: token_file \"%s\": %s", a->token_file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	char buf[1025];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf)) {
		fail(v, path, "admin: token_file \"%s\": %s", a->token_file,
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
			fail(v, path, "admin: token_file \"%s\": the token must be one word of visible "
				      "characters",
			     a->token_file);
			return;
		}
	if (end - start < 16) {
		fail(v, path, "admin: token_file \"%s\": the token must have at least 16 characters",
		     a->token_file);
		return;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		warn(v, path, "admin: token_file \"%s\" can be read by other users (chmod 600)",
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
	if (!get_table(v, 1, top, "admin", false))
		return;
	struct subsection sub = {.s = {.label = "admin"}, .idx = lua_gettop(v->L)};
	path_push(&sub.s.path, "admin", false);
	check_keys(v, sub.idx, &sub.s, keys);
	struct cfg_admin *a = &cfg->admin;
	a->enabled = true;
	lua_State *L = v->L;
	lua_getfield(L, sub.idx, "address");
	struct cfg_path p = sub.s.path;
	path_push(&p, "address", false);
	const char *addr = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	char why[160];
	if (lua_isnil(L, -1))
		addr = "127.0.0.1:9901";
	if (!addr || !*addr) {
		fail(v, &p, "admin: address must be \"host:port\" or a unix socket path");
	} else if (addr[0] == '/') {
		if (strlen(addr) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			fail(v, &p, "admin: unix socket path \"%s\" is too long", addr);
		a->unix_path = strdup(addr);
		snprintf(a->addr.text, sizeof(a->addr.text), "unix:%.58s", addr);
	} else if (config_parse_addr(addr, &a->addr, why, sizeof(why)) < 0) {
		fail(v, &p, "admin: address \"%s\": %s", addr, why);
	} else if (!loopback(&a->addr)) {
		warn(v, &p, "admin: address %s is not a loopback address: /metrics can be read "
			    "by anyone who reaches it",
		     addr);
	}
	lua_pop(L, 1);
	lua_getfield(L, sub.idx, "token_file");
	struct cfg_path tp = sub.s.path;
	path_push(&tp, "token_file", false);
	if (lua_type(L, -1) == LUA_TSTRING && *lua_tostring(L, -1)) {
		a->token_file = strdup(lua_tostring(L, -1));
		load_admin_token(v, a, &tp);
	} else if (!lua_isnil(L, -1)) {
		fail(v, &tp, "admin: token_file must be a file path");
	}
	lua_pop(L, 1);
	lua_pop(L, 1);
}

/* workers = N, cpu_affinity = true */
static void load_workers(struct vctx *v, struct config *cfg, const struct section *top)
{
	get_size(v, 1, top, "workers", 1, CFG_MAX_WORKERS, &cfg->workers);
	lua_getfield(v->L, 1, "cpu_affinity");
	if (lua_isboolean(v->L, -1)) {
		cfg->cpu_affinity = lua_toboolean(v->L, -1);
	} else if (!lua_isnil(v->L, -1)) {
		struct cfg_path p = {0};
		path_push(&p, "cpu_affinity", false);
		fail(v, &p, "cpu_affinity must be true or false");
	}
	lua_pop(v->L, 1);
}

static void load_config(struct vctx *v, struct config *cfg)
{
	static const char *const keys[] = {"listeners",	 "pools",     "sites",	  "timeouts", "limits",
					   "access_log", "log_level", "pid_file", "hook",     "workers",
					   "cpu_affinity", "admin", "access_log_format", NULL};
	struct section top = {.label = ""};
	check_keys(v, 1, &top, keys);
	load_workers(v, cfg, &top);
	load_admin(v, cfg, &top);
	load_pools(v, cfg);
	load_sites(v, cfg);
	load_listeners(v, cfg);
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
		fail(v, NULL, "the script must return a table (or set the global 'config')");
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
			fail(v, NULL, "out of memory");
		x->cfg->has_hook = !v->failed;
	} else if (!lua_isnil(L, -1)) {
		struct cfg_path p = {0};
		path_push(&p, "hook", false);
		char d[64];
		fail(v, &p, "hook must be a function(r), got %s", describe(L, -1, d, sizeof(d)));
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
			count_unreported(&v); /* the script stopped at what the checks found */
		else if (status == LUA_ERRMEM) /* Lua's message names no file */
			snprintf(err, errlen, "%s: out of memory (a config script may use at most %zu MiB)",
				 name, cfg->lua_mem.limit >> 20);
		else if (msg)
			snprintf(err, errlen, "%s", msg);
		else
			snprintf(err, errlen, "%s: the script raised an error that is not a string", name);
		goto fail;
	}
	if (v.failed) {
		count_unreported(&v);
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
	load_site(x->v, x->cfg, x->index);
	return 0;
}

static int evaluate_server(lua_State *L)
{
	struct lua_entry *x = lua_touserdata(L, -1);
	lua_pop(L, 1);
	char label[160];
	snprintf(label, sizeof(label), "pool \"%.100s\"", x->pool->name);
	struct section s = {.label = label};
	load_server(x->v, &s, 1, x->srv);
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
	count_unreported(&v);
	lua_settop(L, top);
	log_warnings(v.warnings);
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
