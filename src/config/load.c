/*
 * The config loader's validation helpers: reading values out of the
 * script's tables, checking them, and saying where a mistake is.
 */

#include <lua.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/load.h"
#include "core/common.h"
#include "core/log.h"
#include "tls/tls.h"

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

void cfg_path_push(struct cfg_path *p, const char *token, bool quoted)
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

/* Adds a line to err, as much of it as fits. */
/*
 * Appends msg as a line of its own when it fits whole with `room` bytes to
 * spare, since a cut line would sort as one without a line number; only the
 * first message is cut to fit, so that the report is never empty.
 */
static bool append_error(struct vctx *v, const char *msg, size_t room)
{
	size_t used = strnlen(v->err, v->errlen);
	size_t need = used + (used ? 1 : 0) + strlen(msg) + 1;
	if (used ? need + room > v->errlen : v->errlen == 0)
		return false;
	snprintf(v->err + used, v->errlen - used, "%s%s", used ? "\n" : "", msg);
	return true;
}

/* "file:line: " (or "file: " where the path leads to no line), kind, then the message, into msg. */
static void locate(struct vctx *v, const struct cfg_path *path, const char *kind, char *msg,
		   size_t cap, const char *fmt, va_list ap)
{
	/* Only a message needs the source searched: blank its comments now, not for every load. */
	if (path && !v->text)
		v->text = blank_comments(v->source, v->source_len);
	int line = path ? path_line(v->text, path) : 0;
	int n = line ? snprintf(msg, cap, "%s:%d: %s", v->name, line, kind)
		     : snprintf(msg, cap, "%s: %s", v->name, kind);
	vsnprintf(msg + n, cap - (size_t)n, fmt, ap);
}

void cfg_fail(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
{
	v->failed = true;
	if (++v->nerrors > CONFIG_MAX_ERRORS)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	locate(v, path, "", msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Room stays for the line that counts the mistakes not shown. */
	if (append_error(v, msg, strlen(v->name) + 64))
		v->shown++;
}

/* The line number of a report line, "name:LINE: ...", or 0 for one without. */
static long report_line(const struct vctx *v, const char *msg)
{
	size_t n = strlen(v->name);
	if (strncmp(msg, v->name, n) || msg[n] != ':')
		return 0;
	char *end;
	long line = strtol(msg + n + 1, &end, 10);
	return end > msg + n + 1 && *end == ':' ? line : 0;
}

struct report_entry {
	long line;
	size_t order;
	char *msg;
};

static int by_line(const void *a, const void *b)
{
	const struct report_entry *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

void cfg_report_done(struct vctx *v)
{
	/* In the order of the file, as a compiler's: the script's tables give them in any order. */
	struct report_entry e[CONFIG_MAX_ERRORS];
	size_t n = 0;
	size_t len = strnlen(v->err, v->errlen);
	char *copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, v->err, len + 1);
		for (char *save, *m = strtok_r(copy, "\n", &save); m && n < CONFIG_MAX_ERRORS;
		     m = strtok_r(NULL, "\n", &save)) {
			e[n] = (struct report_entry){report_line(v, m), n, m};
			n++;
		}
		qsort(e, n, sizeof(*e), by_line);
		v->err[0] = 0;
		for (size_t i = 0; i < n; i++)
			append_error(v, e[i].msg, 0);
		free(copy);
	}
	if (v->nerrors <= v->shown)
		return;
	char msg[128];
	snprintf(msg, sizeof(msg), "%s: %u more mistakes not shown (the first %u are)", v->name,
		 v->nerrors - v->shown, v->shown);
	append_error(v, msg, 0);
}

void cfg_warn(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	locate(v, path, "warning: ", msg, sizeof(msg), fmt, ap);
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

void cfg_log_warnings(const char *warnings)
{
	for (const char *p = warnings; p && *p;) {
		const char *nl = strchr(p, '\n');
		log_warn("%.*s", (int)(nl - p), p);
		p = nl + 1;
	}
}

bool cfg_relative(const struct vctx *v, const char *file, char *out, size_t cap)
{
	const char *slash = strrchr(v->name, '/');
	int n = file[0] == '/' || !slash
		    ? snprintf(out, cap, "%s", file)
		    : snprintf(out, cap, "%.*s/%s", (int)(slash - v->name), v->name, file);
	return n >= 0 && (size_t)n < cap;
}

void cfg_tls_warned(void *ud, const char *msg)
{
	struct tls_warnings *w = ud;
	cfg_warn(w->v, w->path, "%s", msg);
}

const char *cfg_describe(lua_State *L, int idx, char *out, size_t len)
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

void cfg_check_keys(struct vctx *v, int idx, const struct section *s, const char *const *allowed)
{
	lua_State *L = v->L;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			char d[64];
			cfg_fail(v, &s->path, "%s%sunexpected entry %s (fields are name = value)",
				 s->label, *s->label ? ": " : "",
				 cfg_describe(L, -1, d, sizeof(d)));
			continue;
		}
		const char *key = lua_tostring(L, -1);
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= !strcmp(*a, key);
		if (!ok) {
			struct cfg_path p = s->path;
			cfg_path_push(&p, key, false);
			cfg_fail(v, &p, "%s%sunknown key \"%s\"", s->label, *s->label ? ": " : "",
				 key);
		}
	}
}

void cfg_get_number(struct vctx *v, int idx, const struct section *s, const char *key, double scale,
		    double min, double max, const char *what, uint32_t *out)
{
	lua_State *L = v->L;
	lua_getfield(L, idx, key);
	if (!lua_isnil(L, -1)) {
		struct cfg_path p = s->path;
		cfg_path_push(&p, key, false);
		double x = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
		if (lua_type(L, -1) != LUA_TNUMBER || !(x >= min && x <= max)) {
			char d[64];
			cfg_fail(v, &p, "%s%s%s must be %s, got %s", s->label,
				 *s->label ? ": " : "", key, what,
				 cfg_describe(L, -1, d, sizeof(d)));
		} else {
			*out = (uint32_t)(x * scale + 0.5);
		}
	}
	lua_pop(L, 1);
}

void cfg_get_seconds(struct vctx *v, int idx, const struct section *s, const char *key,
		     uint32_t *ms)
{
	cfg_get_number(v, idx, s, key, 1000.0, 0.001, 86400.0 * 7,
		       "a positive number of seconds (at most a week)", ms);
}

void cfg_get_size(struct vctx *v, int idx, const struct section *s, const char *key, double min,
		  double max, uint32_t *out)
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
		cfg_path_push(&p, key, false);
		cfg_fail(v, &p, "%s%s%s must be %s", s->label, *s->label ? ": " : "", key, what);
		return;
	}
	cfg_get_number(v, idx, s, key, 1.0, min, max, what, out);
}

void cfg_get_bool(struct vctx *v, int idx, const struct section *s, const char *key, bool *out)
{
	lua_getfield(v->L, idx, key);
	if (lua_isboolean(v->L, -1)) {
		*out = lua_toboolean(v->L, -1);
	} else if (!lua_isnil(v->L, -1)) {
		struct cfg_path p = s->path;
		cfg_path_push(&p, key, false);
		char d[64];
		cfg_fail(v, &p, "%s%s%s must be true or false, got %s", s->label, *s->label ? ": " : "",
			 key, cfg_describe(v->L, -1, d, sizeof(d)));
	}
	lua_pop(v->L, 1);
}

bool cfg_get_table(struct vctx *v, int idx, const struct section *s, const char *key, bool required)
{
	lua_getfield(v->L, idx, key);
	if (lua_istable(v->L, -1))
		return true;
	if (!lua_isnil(v->L, -1) || required) {
		struct cfg_path p = s->path;
		cfg_path_push(&p, key, false);
		char d[64];
		cfg_fail(v, &p, "%s%s%s must be a table, got %s", s->label, *s->label ? ": " : "",
			 key,
			 lua_isnil(v->L, -1) ? "nothing" : cfg_describe(v->L, -1, d, sizeof(d)));
	}
	lua_pop(v->L, 1);
	return false;
}

bool cfg_get_subsection(struct vctx *v, int idx, const struct section *parent, const char *key,
			const char *const *allowed, struct subsection *sub)
{
	if (!cfg_get_table(v, idx, parent, key, false))
		return false;
	snprintf(sub->label, sizeof(sub->label), "%.150s: %s", parent->label, key);
	sub->s = (struct section){.label = sub->label, .path = parent->path};
	cfg_path_push(&sub->s.path, key, false);
	sub->idx = lua_gettop(v->L);
	cfg_check_keys(v, sub->idx, &sub->s, allowed);
	return true;
}

void cfg_load_verify(struct vctx *v, int idx, const struct section *s, uint8_t *out)
{
	lua_getfield(v->L, idx, "verify_client");
	if (!lua_isnil(v->L, -1)) {
		const char *m = lua_type(v->L, -1) == LUA_TSTRING ? lua_tostring(v->L, -1) : "";
		int mode = !strcmp(m, "off")	    ? TLS_VERIFY_OFF
			   : !strcmp(m, "optional") ? TLS_VERIFY_OPTIONAL
			   : !strcmp(m, "required") ? TLS_VERIFY_REQUIRED
						    : -1;
		struct cfg_path p = s->path;
		cfg_path_push(&p, "verify_client", false);
		char d[64];
		if (mode < 0)
			cfg_fail(v, &p,
				 "%s: verify_client must be \"off\", \"optional\" or \"required\", "
				 "got %s",
				 s->label, cfg_describe(v->L, -1, d, sizeof(d)));
		else
			*out = (uint8_t)mode;
	}
	lua_pop(v->L, 1);
}
