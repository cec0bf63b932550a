#include "route/router.c"

#include <stdio.h>

#include "../unit.h"

/* --- helpers --- */

/* A router over nsites sites named "s0", "s1", ...; each site's route "/" is set up by add_route. */
struct fixture {
	struct arena arena;
	struct router r;
};

static int fixture_init(struct fixture *f, size_t nsites, size_t nhosts)
{
	memset(f, 0, sizeof(*f));
	return router_init(&f->r, &f->arena, nsites, nhosts, nhosts);
}

/* Adds a host; the router keeps the pointer, so the name lives in the arena as config.c does it. */
static int add(struct fixture *f, const char *host, uint32_t site)
{
	size_t len = strlen(host);
	return router_add_host(&f->r, arena_strndup(&f->arena, host, len), len, site);
}

/* The index of the site a raw Host value (normalised first) leads to; -1 for none, -2 if invalid. */
static long site_for(const struct fixture *f, const char *host)
{
	char norm[256];
	int n = host_normalize(host, strlen(host), norm, sizeof(norm));
	if (n < 0)
		return -2;
	const struct site *s = router_find_site(&f->r, norm, (size_t)n);
	return s ? (long)(s - f->r.sites) : -1;
}

#define MAX_ROUTES 16

struct site_fixture {
	struct site site;
	struct route routes[MAX_ROUTES];
};

/* A site with routes for the given prefixes (NULL-terminated), sorted as config.c does. */
static void site_with(struct site_fixture *sf, const char *const *prefixes)
{
	memset(sf, 0, sizeof(*sf));
	sf->site.routes = sf->routes;
	for (uint32_t i = 0; prefixes[i]; i++) {
		sf->routes[i].prefix = prefixes[i];
		sf->routes[i].prefix_len = (uint32_t)strlen(prefixes[i]);
		sf->routes[i].pool = i; /* identifies the route after the sort */
		sf->site.nroutes++;
	}
	router_sort_routes(&sf->site);
}

/* The prefix of the route a request path takes, or "(none)". */
static const char *route_for(const struct site_fixture *sf, const char *path)
{
	const struct route *rt = router_find_route(&sf->site, path, strlen(path));
	return rt ? rt->prefix : "(none)";
}

#define CHECK_ROUTE(sf, path, want)                                                            \
	do {                                                                                   \
		const char *got_ = route_for((sf), (path));                                    \
		if (strcmp(got_, (want))) {                                                    \
			printf("FAIL %s: %s:%d: path \"%s\" took route \"%s\", expected \"%s\"\n", \
			       unit_name, __FILE__, __LINE__, (path), got_, (want));           \
			unit_current_failed = 1;                                               \
			return;                                                                \
		}                                                                              \
	} while (0)

#define CHECK_SITE(f, host, want)                                                              \
	do {                                                                                   \
		long got_ = site_for((f), (host));                                             \
		if (got_ != (want)) {                                                          \
			printf("FAIL %s: %s:%d: host \"%s\" found site %ld, expected %ld\n",         \
			       unit_name, __FILE__, __LINE__, (host), got_, (long)(want));      \
			unit_current_failed = 1;                                               \
			return;                                                                \
		}                                                                              \
	} while (0)

/* --- hosts --- */

TEST(test_exact_host_beats_wildcard_and_longest_wildcard_wins)
{
	struct fixture f;
	CHECK(fixture_init(&f, 5, 8) == 0);
	CHECK(add(&f, "*.example.com", 0) == 0);
	CHECK(add(&f, "a.example.com", 1) == 0);
	CHECK(add(&f, "*.deep.example.com", 2) == 0);
	CHECK(add(&f, "example.com", 3) == 0); /* the apex: exact, separate from the wildcard */
	f.r.default_site = 4;
	CHECK_SITE(&f, "a.example.com", 1);
	CHECK_SITE(&f, "b.example.com", 0);
	CHECK_SITE(&f, "x.a.example.com", 0);
	CHECK_SITE(&f, "x.deep.example.com", 2);
	CHECK_SITE(&f, "y.x.deep.example.com", 2);
	CHECK_SITE(&f, "deep.example.com", 0); /* *.deep does not match deep itself */
	CHECK_SITE(&f, "example.com", 3);
	CHECK_SITE(&f, "other.org", 4);
	CHECK_SITE(&f, "com", 4);
	CHECK_SITE(&f, "xexample.com", 4);
	arena_free(&f.arena);
}

TEST(test_wildcard_does_not_match_its_bare_domain)
{
	struct fixture f;
	CHECK(fixture_init(&f, 1, 1) == 0);
	CHECK(add(&f, "*.example.com", 0) == 0);
	CHECK_SITE(&f, "www.example.com", 0);
	CHECK_SITE(&f, "example.com", -1); /* no default site */
	CHECK_SITE(&f, "wwwexample.com", -1);
	arena_free(&f.arena);
}

TEST(test_unknown_host_gets_the_default_site_or_none)
{
	struct fixture f;
	CHECK(fixture_init(&f, 2, 1) == 0);
	CHECK(add(&f, "a.test", 0) == 0);
	CHECK_SITE(&f, "b.test", -1);
	CHECK(router_find_site(&f.r, "", 0) == NULL); /* no Host (HTTP/1.0) */
	f.r.default_site = 1;
	CHECK_SITE(&f, "b.test", 1);
	CHECK(router_find_site(&f.r, "", 0) == &f.r.sites[1]);
	CHECK_SITE(&f, "a.test", 0);
	arena_free(&f.arena);
}

TEST(test_host_lookup_ignores_case_port_and_trailing_dot)
{
	struct fixture f;
	CHECK(fixture_init(&f, 2, 2) == 0);
	CHECK(add(&f, "www.example.com", 0) == 0);
	CHECK(add(&f, "*.example.com", 1) == 0);
	CHECK_SITE(&f, "WWW.Example.Com", 0);
	CHECK_SITE(&f, "www.example.com:8080", 0);
	CHECK_SITE(&f, "www.example.com.", 0);
	CHECK_SITE(&f, "Api.EXAMPLE.com.:80", 1);
	arena_free(&f.arena);
}

TEST(test_invalid_host_patterns_are_rejected)
{
	static const char *const bad[] = {
		"Example.com",	 "a b",		  "example.com:80", "example.com.", "",
		"*",		 "*.",		  "a*.example.com", "*example.com", "http://x",
		"example.com/",	 "ex ample.com",
	};
	struct fixture f;
	CHECK(fixture_init(&f, 1, ARRAY_LEN(bad)) == 0);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		if (add(&f, bad[i], 0) != -EINVAL) {
			printf("FAIL %s: %s:%d: \"%s\" was accepted\n", unit_name, __FILE__, __LINE__,
			       bad[i]);
			unit_current_failed = 1;
			return;
		}
	}
	CHECK(f.r.exact.used == 0 && f.r.wildcard.used == 0);
	CHECK(add(&f, "ok-1.example_2.com", 0) == 0);
	CHECK(add(&f, "*.ok.example.com", 0) == 0);
	CHECK(add(&f, "[::1]", 0) == 0);
	arena_free(&f.arena);
}

/* Found in review: a host past the count the table was sized for made probes loop for ever. */
TEST(test_more_hosts_than_sized_for_is_enospc)
{
	struct fixture f;
	CHECK(fixture_init(&f, 1, 1) == 0);
	char name[32];
	int rc = 0, added = 0;
	for (int i = 0; i < 100 && rc == 0; i++) {
		snprintf(name, sizeof(name), "h%d.example", i);
		rc = add(&f, name, 0);
		added += rc == 0;
	}
	CHECK(rc == -ENOSPC && added >= 1);
	CHECK(site_for(&f, "h0.example") == 0 && site_for(&f, "nosuch.example") == -1);
	arena_free(&f.arena);
}

TEST(test_duplicate_host_is_eexist)
{
	struct fixture f;
	CHECK(fixture_init(&f, 2, 6) == 0);
	CHECK(add(&f, "example.com", 0) == 0);
	CHECK(add(&f, "*.example.com", 0) == 0);
	CHECK(add(&f, "example.com", 1) == -EEXIST);
	CHECK(add(&f, "*.example.com", 1) == -EEXIST);
	CHECK(add(&f, "example.com", 0) == -EEXIST); /* within one site too */
	CHECK(add(&f, "www.example.com", 1) == 0);   /* exact and wildcard do not collide */
	CHECK_SITE(&f, "example.com", 0);
	CHECK_SITE(&f, "www.example.com", 1);
	CHECK_SITE(&f, "a.example.com", 0);
	arena_free(&f.arena);
}

TEST(test_100000_hosts_are_all_found)
{
	enum { N = 100000 };
	struct fixture f;
	/* As config.c sizes it: one exact host per site, a wildcard for every tenth. */
	CHECK(fixture_init(&f, N + 1, N + N / 10) == 0);
	char name[64];
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "site%05u.example.com", i);
		CHECK(add(&f, name, i) == 0);
		if (i % 10 == 0) {
			snprintf(name, sizeof(name), "*.site%05u.example.net", i);
			CHECK(add(&f, name, i) == 0);
		}
	}
	f.r.default_site = N;
	CHECK(f.r.exact.used == N && f.r.wildcard.used == N / 10);
	/* At most half full: one probe, give or take. */
	CHECK((f.r.exact.mask + 1) >= 2 * (size_t)N && (f.r.wildcard.mask + 1) >= 2 * (size_t)(N / 10));
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "SITE%05u.example.com:443", i);
		CHECK(site_for(&f, name) == (long)i);
		snprintf(name, sizeof(name), "www.site%05u.example.net", i);
		CHECK(site_for(&f, name) == (i % 10 == 0 ? (long)i : (long)N));
	}
	CHECK_SITE(&f, "site100000.example.com", N);
	CHECK_SITE(&f, "site00001.example.net", N);
	CHECK_SITE(&f, "site00000.example.net", N); /* the wildcard's bare domain */
	CHECK(add(&f, "site04242.example.com", 0) == -EEXIST);
	arena_free(&f.arena);
}

/* --- paths --- */

TEST(test_longest_prefix_wins_whatever_the_order)
{
	static const char *const prefixes[] = {"/", "/api/v2/", "/api/", "/static", "/api/v2/admin",
					       NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/", "/");
	CHECK_ROUTE(&sf, "/index.html", "/");
	CHECK_ROUTE(&sf, "/api", "/");
	CHECK_ROUTE(&sf, "/api/", "/api/");
	CHECK_ROUTE(&sf, "/api/v1/x", "/api/");
	CHECK_ROUTE(&sf, "/api/v2", "/api/");
	CHECK_ROUTE(&sf, "/api/v2/", "/api/v2/");
	CHECK_ROUTE(&sf, "/api/v2/users", "/api/v2/");
	CHECK_ROUTE(&sf, "/api/v2/admin", "/api/v2/admin");
	CHECK_ROUTE(&sf, "/api/v2/administrator", "/api/v2/admin"); /* a prefix, not a segment */
	CHECK_ROUTE(&sf, "/static", "/static");
	CHECK_ROUTE(&sf, "/staticfiles/a.css", "/static");
	for (uint32_t i = 1; i < sf.site.nroutes; i++)
		CHECK(sf.routes[i - 1].prefix_len >= sf.routes[i].prefix_len);
}

TEST(test_no_matching_prefix_is_null)
{
	static const char *const prefixes[] = {"/api/", "/admin", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/", "(none)");
	CHECK_ROUTE(&sf, "/api", "(none)");
	CHECK_ROUTE(&sf, "/API/", "(none)"); /* paths are case-sensitive */
	CHECK_ROUTE(&sf, "/x/api/", "(none)");
	CHECK_ROUTE(&sf, "/adm", "(none)");
	struct site_fixture empty;
	site_with(&empty, (const char *const[]){NULL});
	CHECK_ROUTE(&empty, "/", "(none)");
}

TEST(test_unreserved_escapes_are_decoded_before_matching)
{
	static const char *const prefixes[] = {"/", "/admin", "/a~b/", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/%61dmin", "/admin");
	CHECK_ROUTE(&sf, "/%61%64%6D%69%6E", "/admin");
	CHECK_ROUTE(&sf, "/%61%64%6d%69%6e/x", "/admin");
	CHECK_ROUTE(&sf, "/a%7Eb/", "/a~b/");
	CHECK_ROUTE(&sf, "/a%7eb/c", "/a~b/");
	/* %41 is "A": decoded, and "/Admin" is another path than "/admin". */
	CHECK_ROUTE(&sf, "/%41dmin", "/");
	static const char *const upper[] = {"/", "/Admin", NULL};
	struct site_fixture su;
	site_with(&su, upper);
	CHECK_ROUTE(&su, "/%41dmin", "/Admin");
	CHECK_ROUTE(&su, "/%41%64min/x", "/Admin");
}

TEST(test_reserved_escapes_are_not_decoded)
{
	static const char *const prefixes[] = {"/", "/a/b", "/admin", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/a%2Fb", "/");
	CHECK_ROUTE(&sf, "/a%2fb", "/");
	CHECK_ROUTE(&sf, "/%2Fadmin", "/");
	CHECK_ROUTE(&sf, "/a%3Fb", "/"); /* "?" */
	CHECK_ROUTE(&sf, "/%25%36%31dmin", "/"); /* %25 is "%": decoded once at most */
	CHECK_ROUTE(&sf, "/%zzadmin", "/");	  /* not an escape: kept as is */
	CHECK_ROUTE(&sf, "/admin%", "/admin");
	CHECK_ROUTE(&sf, "/admin%6", "/admin");
}

/* Found by fuzz_path: decoding next to a stray '%' made an escape that was not there. */
TEST(test_stray_percent_is_written_as_an_escape_of_itself)
{
	char out[64];
	static const char raw[] = "/%%352e/%z";
	size_t n = router_normalize_path(raw, sizeof(raw) - 1, out);
	out[n] = 0;
	CHECK(!strcmp(out, "/%2552e/%25z"));
	char again[64];
	size_t m = router_normalize_path(out, n, again);
	again[m] = 0;
	CHECK(!strcmp(again, out));
}

TEST(test_dot_segments_and_repeated_slashes_are_resolved)
{
	static const char *const prefixes[] = {"/", "/admin", "/a/b/", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "//admin", "/admin");
	CHECK_ROUTE(&sf, "///admin//x", "/admin");
	CHECK_ROUTE(&sf, "/./admin", "/admin");
	CHECK_ROUTE(&sf, "/x/../admin", "/admin");
	CHECK_ROUTE(&sf, "/x/y/../../admin", "/admin");
	CHECK_ROUTE(&sf, "/x/./../admin/", "/admin");
	CHECK_ROUTE(&sf, "/x/%2e%2e/admin", "/admin");
	CHECK_ROUTE(&sf, "/x/%2E%2e/admin", "/admin");
	CHECK_ROUTE(&sf, "/%2e/admin", "/admin");
	CHECK_ROUTE(&sf, "/x/.%2e/admin", "/admin");
	CHECK_ROUTE(&sf, "/a//b/", "/a/b/");
	CHECK_ROUTE(&sf, "/a/./b/c", "/a/b/");
	CHECK_ROUTE(&sf, "/a/c/../b/c", "/a/b/");
	/* Not dot segments: names that merely contain dots. */
	CHECK_ROUTE(&sf, "/x/.../admin", "/");
	CHECK_ROUTE(&sf, "/x/..admin", "/");
	CHECK_ROUTE(&sf, "/x/admin..", "/");
	/* The segment before ".." goes, whatever it is. */
	CHECK_ROUTE(&sf, "/admin/../public", "/");
	CHECK_ROUTE(&sf, "/a/b/../c", "/");
}

TEST(test_dot_dot_never_climbs_above_the_root)
{
	static const char *const prefixes[] = {"/admin", "/x/", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/../admin", "/admin");
	CHECK_ROUTE(&sf, "/../../../admin/y", "/admin");
	CHECK_ROUTE(&sf, "/x/../../admin", "/admin");
	CHECK_ROUTE(&sf, "/%2e%2e/%2e%2e/admin", "/admin");
	CHECK_ROUTE(&sf, "/..", "(none)");
	CHECK_ROUTE(&sf, "/../x/", "/x/");
	static const char *const root[] = {"/", NULL};
	struct site_fixture sr;
	site_with(&sr, root);
	CHECK_ROUTE(&sr, "/..", "/");
	CHECK_ROUTE(&sr, "/../..", "/");
	CHECK_ROUTE(&sr, "/.", "/");
}

TEST(test_trailing_slash_keeps_a_directory_prefix_matching)
{
	static const char *const prefixes[] = {"/a/", "/b", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "/a/", "/a/");
	CHECK_ROUTE(&sf, "/a", "(none)");
	CHECK_ROUTE(&sf, "/a/.", "/a/");
	CHECK_ROUTE(&sf, "/a/x/..", "/a/");
	CHECK_ROUTE(&sf, "/a/x/../", "/a/");
	CHECK_ROUTE(&sf, "/a//", "/a/");
	CHECK_ROUTE(&sf, "/a/x/", "/a/");
	CHECK_ROUTE(&sf, "/b/", "/b");
	CHECK_ROUTE(&sf, "/b/.", "/b");
	CHECK_ROUTE(&sf, "/x/../a/", "/a/");
}

TEST(test_asterisk_and_empty_paths_match_as_the_root)
{
	static const char *const prefixes[] = {"/", "/admin", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	CHECK_ROUTE(&sf, "*", "/");
	CHECK_ROUTE(&sf, "", "/");
	static const char *const only_admin[] = {"/admin", NULL};
	struct site_fixture sa;
	site_with(&sa, only_admin);
	CHECK_ROUTE(&sa, "*", "(none)");
}

TEST(test_overlong_path_matches_no_route)
{
	static const char *const prefixes[] = {"/", NULL};
	struct site_fixture sf;
	site_with(&sf, prefixes);
	static char path[MAX_MATCH_PATH + 2];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	CHECK(router_find_route(&sf.site, path, MAX_MATCH_PATH) != NULL);
	CHECK(router_find_route(&sf.site, path, MAX_MATCH_PATH + 1) == NULL);
	/* The longest path that fits, ending in a slash, cannot overflow the buffer. */
	memset(path, '/', sizeof(path));
	CHECK(router_find_route(&sf.site, path, MAX_MATCH_PATH) != NULL);
}

struct seen {
	char names[8][32];
	uint32_t sites[8];
	int n;
};

static void record_host(void *ud, const char *name, size_t len, bool wildcard, uint32_t site)
{
	struct seen *s = ud;
	if (s->n < 8) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s%.*s", wildcard ? "*." : "", (int)len,
			 name);
		s->sites[s->n++] = site;
	}
}

static uint32_t seen_site(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->names[i], name))
			return s->sites[i];
	return UINT32_MAX;
}

TEST(test_each_host_visits_every_host_once_with_its_site)
{
	struct fixture f;
	CHECK(fixture_init(&f, 3, 4) == 0);
	CHECK(add(&f, "a.example", 0) == 0);
	CHECK(add(&f, "b.example", 1) == 0);
	CHECK(add(&f, "*.b.example", 1) == 0);
	CHECK(add(&f, "c.example", 2) == 0);
	struct seen s = {0};
	router_each_host(&f.r, record_host, &s);
	CHECK(s.n == 4);
	CHECK(seen_site(&s, "a.example") == 0);
	CHECK(seen_site(&s, "b.example") == 1);
	CHECK(seen_site(&s, "*.b.example") == 1);
	CHECK(seen_site(&s, "c.example") == 2);
	arena_free(&f.arena);
}

TEST(test_a_site_is_found_by_its_name)
{
	struct fixture f;
	CHECK(fixture_init(&f, 3, 1) == 0);
	const char *names[] = {"a.example", "b.example", ""}; /* the last: a default without hosts */
	for (int i = 0; i < 3; i++)
		f.r.sites[i].name = names[i];
	CHECK(router_site_index(&f.r, "b.example") == 1);
	CHECK(router_site_index(&f.r, "") == 2);
	CHECK(router_site_index(&f.r, "c.example") == SIZE_MAX);
	CHECK(router_site_index(&f.r, "a.example.") == SIZE_MAX);
	arena_free(&f.arena);
}

TEST(test_a_copied_host_table_finds_what_the_original_does)
{
	struct fixture f;
	CHECK(fixture_init(&f, 2, 40) == 0);
	char name[32];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "h%d.example", i);
		CHECK(add(&f, name, (uint32_t)(i % 2)) == 0);
	}
	/* The same size (slot for slot), and a larger one (put one by one). */
	size_t sizes[2] = {40, 1000};
	for (int k = 0; k < 2; k++) {
		struct host_table t;
		CHECK(host_table_copy(&t, &f.arena, &f.r.exact, sizes[k]) == 0);
		CHECK(t.used == 40 && (k == 0) == (t.mask == f.r.exact.mask));
		for (int i = 0; i < 40; i++) {
			snprintf(name, sizeof(name), "h%d.example", i);
			CHECK(host_table_get(&t, name, strlen(name)) == i % 2);
		}
		CHECK(host_table_get(&t, "nope.example", 12) == -1);
		CHECK(host_table_put(&t, "new.example", 11, 1) == 0);
		CHECK(host_table_put(&t, "h3.example", 10, 0) == -EEXIST);
	}
	arena_free(&f.arena);
}

int main(void)
{
	RUN(test_exact_host_beats_wildcard_and_longest_wildcard_wins);
	RUN(test_wildcard_does_not_match_its_bare_domain);
	RUN(test_unknown_host_gets_the_default_site_or_none);
	RUN(test_host_lookup_ignores_case_port_and_trailing_dot);
	RUN(test_invalid_host_patterns_are_rejected);
	RUN(test_duplicate_host_is_eexist);
	RUN(test_100000_hosts_are_all_found);
	RUN(test_longest_prefix_wins_whatever_the_order);
	RUN(test_no_matching_prefix_is_null);
	RUN(test_unreserved_escapes_are_decoded_before_matching);
	RUN(test_reserved_escapes_are_not_decoded);
	RUN(test_dot_segments_and_repeated_slashes_are_resolved);
	RUN(test_dot_dot_never_climbs_above_the_root);
	RUN(test_trailing_slash_keeps_a_directory_prefix_matching);
	RUN(test_asterisk_and_empty_paths_match_as_the_root);
	RUN(test_overlong_path_matches_no_route);
	RUN(test_stray_percent_is_written_as_an_escape_of_itself);
	RUN(test_more_hosts_than_sized_for_is_enospc);
	RUN(test_each_host_visits_every_host_once_with_its_site);
	RUN(test_a_site_is_found_by_its_name);
	RUN(test_a_copied_host_table_finds_what_the_original_does);
	UNIT_EXIT();
}
