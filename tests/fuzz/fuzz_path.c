/*
 * Path normalisation and routing, and host normalisation.
 *
 * The first byte picks what the rest is: a request path (even) or a Host
 * value (odd). Properties of a path's normal form: normalising it again
 * changes nothing; it starts with "/", has no "." or ".." segment, no "//"
 * and no %-escape of an unreserved character; and the route chosen for the
 * raw path is the one chosen for its normal form. Of a host's: lower case,
 * no port, no trailing dot, and normalising it again changes nothing.
 */
#include "fuzz.h"
#include "route/router.h"

#include <stdbool.h>

static const char *const prefixes[] = {"/", "/admin", "/admin/", "/a/b/", "/static/", "/%2F",
				       "/x.y/", "/~user/", "/a/b/c", "/.well-known/"};

static struct site site;
static struct route routes[sizeof(prefixes) / sizeof(prefixes[0])];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	site.routes = routes;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		routes[i] = (struct route){.prefix = prefixes[i], .prefix_len = (uint32_t)strlen(prefixes[i])};
	site.nroutes = (uint32_t)(sizeof(prefixes) / sizeof(prefixes[0]));
	router_sort_routes(&site);
	return 0;
}

/* The oracle's own idea of RFC 3986, not the code under test's. */
static bool unreserved(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int hex(char ch)
{
	return ch >= '0' && ch <= '9'	? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
					: -1;
}

static void check_normal_form(const char *n, size_t len)
{
	FUZZ_CHECK(len >= 1 && n[0] == '/', "does not start with /");
	for (size_t i = 0; i + 1 < len; i++)
		FUZZ_CHECK(!(n[i] == '/' && n[i + 1] == '/'), "// at %zu: %.*s", i, (int)len, n);
	for (size_t i = 0; i < len; i++) {
		if (n[i] != '/')
			continue;
		size_t seg = i + 1, end = seg;
		while (end < len && n[end] != '/')
			end++;
		bool dot = end - seg == 1 && n[seg] == '.';
		bool dotdot = end - seg == 2 && n[seg] == '.' && n[seg + 1] == '.';
		FUZZ_CHECK(!dot && !dotdot, "dot segment at %zu: %.*s", i, (int)len, n);
	}
	for (size_t i = 0; i + 2 < len; i++)
		if (n[i] == '%' && hex(n[i + 1]) >= 0 && hex(n[i + 2]) >= 0)
			FUZZ_CHECK(!unreserved((char)(hex(n[i + 1]) * 16 + hex(n[i + 2]))),
				   "escaped unreserved character at %zu: %.*s", i, (int)len, n);
}

static void check_path(const char *path, size_t len)
{
	char *once = malloc(3 * len + 1);
	size_t n1 = router_normalize_path(path, len, once);
	FUZZ_CHECK(n1 <= 3 * len + 1, "normal form of %zu bytes is %zu", len, n1);
	check_normal_form(once, n1);
	char *twice = malloc(3 * n1 + 1);
	size_t n2 = router_normalize_path(once, n1, twice);
	FUZZ_CHECK(n2 == n1 && !memcmp(once, twice, n1), "not idempotent: %.*s -> %.*s", (int)n1, once,
		   (int)n2, twice);
	const struct route *raw = router_find_route(&site, path, len);
	if (len <= 16384)
		FUZZ_CHECK(raw == router_find_route(&site, once, n1), "raw and normal paths route apart: %.*s",
			   (int)n1, once);
	else
		FUZZ_CHECK(!raw, "a path too long to match matched");
	free(once);
	free(twice);
}

static void check_host(const char *host, size_t len)
{
	char once[300], twice[300];
	int n1 = host_normalize(host, len, once, sizeof(once));
	if (n1 < 0)
		return;
	FUZZ_CHECK(n1 > 0 && n1 <= 255, "host of %d bytes", n1);
	FUZZ_CHECK(once[n1 - 1] != '.', "trailing dot");
	for (int i = 0; i < n1; i++)
		FUZZ_CHECK(!(once[i] >= 'A' && once[i] <= 'Z'), "upper case");
	if (once[0] != '[')
		FUZZ_CHECK(!memchr(once, ':', (size_t)n1), "port kept");
	int n2 = host_normalize(once, (size_t)n1, twice, sizeof(twice));
	FUZZ_CHECK(n2 == n1 && !memcmp(once, twice, (size_t)n1), "host not idempotent: %.*s", n1, once);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = fuzz_copy(data + 1, size - 1);
	if (data[0] & 1)
		check_host(s, size - 1);
	else
		check_path(s, size - 1);
	free(s);
	return 0;
}
