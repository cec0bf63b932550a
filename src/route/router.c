#include "route/router.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"

#define MAX_MATCH_PATH 16384

int router_init(struct router *r, struct arena *a, size_t nsites, size_t nexact, size_t nwildcard)
{
	memset(r, 0, sizeof(*r));
	r->default_site = -1;
	r->nsites = nsites;
	if (nsites && !(r->sites = arena_alloc(a, nsites * sizeof(*r->sites))))
		return -ENOMEM;
	if (host_table_init(&r->exact, a, nexact) < 0 || host_table_init(&r->wildcard, a, nwildcard) < 0)
		return -ENOMEM;
	return 0;
}

void router_each_host(const struct router *r,
		      void (*fn)(void *ud, const char *name, size_t len, bool wildcard, uint32_t site),
		      void *ud)
{
	const struct host_table *tables[2] = {&r->exact, &r->wildcard};
	for (int t = 0; t < 2; t++)
		for (size_t i = 0; tables[t]->slots && i <= tables[t]->mask; i++) {
			const struct host_entry *e = &tables[t]->slots[i];
			if (e->value)
				fn(ud, e->name, e->len, t == 1, e->value - 1);
		}
}

size_t router_site_index(const struct router *r, const char *name)
{
	for (size_t i = 0; i < r->nsites; i++)
		if (!strcmp(r->sites[i].name, name))
			return i;
	return SIZE_MAX;
}

int router_add_host(struct router *r, const char *host, size_t len, uint32_t site)
{
	bool wildcard = len > 2 && host[0] == '*' && host[1] == '.';
	const char *name = wildcard ? host + 2 : host;
	size_t n = wildcard ? len - 2 : len;
	char norm[HOST_MAX_LEN + 1];
	int nlen = host_normalize(name, n, norm, sizeof(norm));
	/* The name must already be in lookup form: anything else would never match. */
	if (nlen < 0 || (size_t)nlen != n || memcmp(norm, name, n))
		return -EINVAL;
	return host_table_put(wildcard ? &r->wildcard : &r->exact, name, n, site);
}

const struct site *router_find_site(const struct router *r, const char *host, size_t len)
{
	if (len) {
		int64_t site = host_table_get(&r->exact, host, len);
		if (site >= 0)
			return &r->sites[site];
		/* a.b.example.com: try b.example.com, example.com, com; the longest wins. */
		for (size_t i = 0; i < len && r->wildcard.used; i++) {
			if (host[i] != '.')
				continue;
			const char *suffix = host + i + 1;
			size_t slen = len - i - 1;
			site = host_table_get(&r->wildcard, suffix, slen);
			if (site >= 0)
				return &r->sites[site];
		}
	}
	return r->default_site >= 0 ? &r->sites[r->default_site] : NULL;
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static bool unreserved(char ch)
{
	/* RFC 3986 2.3: decoding these never changes what a URI means. */
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/*
 * Normalizes path into out (RFC 3986 6.2.2 plus merged slashes); returns
 * its length. A slash stays after the last segment when one followed it,
 * or when that segment was "." or "..": "/a/" and "/a/b/.." are "/a/".
 */
static size_t normalize_segments(const char *path, size_t len, char *out)
{
	size_t n = 0;
	out[n++] = '/';
	size_t i = path[0] == '/' ? 1 : 0;
	while (i < len) {
		/* One segment: decode into out after the slash already written. */
		size_t seg = n;
		while (i < len && path[i] != '/') {
			char ch = path[i];
			bool escape = ch == '%' && i + 2 < len && hex_value(path[i + 1]) >= 0 &&
				      hex_value(path[i + 2]) >= 0;
			if (escape) {
				char dec = (char)(hex_value(path[i + 1]) * 16 + hex_value(path[i + 2]));
				if (unreserved(dec)) {
					out[n++] = dec;
					i += 3;
					continue;
				}
			} else if (ch == '%') {
				/*
				 * A '%' that starts no escape is written as one ("%25"):
				 * left bare, what is decoded after it could form an
				 * escape that was not there ("%%352e" would become "%52e").
				 */
				memcpy(out + n, "%25", 3);
				n += 3;
				i++;
				continue;
			}
			out[n++] = ch;
			i++;
		}
		bool more = i < len; /* a slash follows */
		i++;
		size_t seglen = n - seg;
		if (seglen == 0) {
			/* "//": merged */
		} else if (seglen == 1 && out[seg] == '.') {
			n = seg;
		} else if (seglen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			n = seg;
			/* Drop the previous segment; never above the root. */
			if (n > 1) {
				n--;
				while (n > 0 && out[n - 1] != '/')
					n--;
			}
		} else if (more) {
			out[n++] = '/';
		}
	}
	return n;
}

size_t router_normalize_path(const char *path, size_t len, char *out)
{
	/* "*" (OPTIONS) matches as the root. */
	if (len == 0 || path[0] != '/') {
		out[0] = '/';
		return 1;
	}
	return normalize_segments(path, len, out);
}

const struct route *router_find_route(const struct site *s, const char *path, size_t len)
{
	char norm[3 * MAX_MATCH_PATH + 1];
	if (len > MAX_MATCH_PATH)
		return NULL; /* cannot be normalized here, so cannot be matched safely */
	size_t n = router_normalize_path(path, len, norm);
	for (uint32_t i = 0; i < s->nroutes; i++) {
		const struct route *rt = &s->routes[i];
		if (rt->prefix_len <= n && !memcmp(norm, rt->prefix, rt->prefix_len))
			return rt;
	}
	return NULL;
}

static int longer_prefix_first(const void *a, const void *b)
{
	const struct route *x = a, *y = b;
	return (int)y->prefix_len - (int)x->prefix_len;
}

void router_sort_routes(struct site *s)
{
	qsort(s->routes, s->nroutes, sizeof(*s->routes), longer_prefix_first);
}
