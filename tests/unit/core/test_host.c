#include "core/host.c"

#include "../unit.h"

/* The lookup form of a host as a string ("" when rejected). */
static const char *norm_host(const char *host)
{
	static char out[300];
	int n = host_normalize(host, strlen(host), out, sizeof(out));
	out[n < 0 ? 0 : n] = 0;
	return out;
}

TEST(test_lookup_form_drops_case_port_and_trailing_dots)
{
	CHECK(!strcmp(norm_host("Example.COM"), "example.com"));
	CHECK(!strcmp(norm_host("example.com:8080"), "example.com"));
	CHECK(!strcmp(norm_host("example.com."), "example.com"));
	CHECK(!strcmp(norm_host("EXAMPLE.com.:443"), "example.com"));
	CHECK(!strcmp(norm_host("example.com..:443"), "example.com"));
	CHECK(!strcmp(norm_host("[::1]:8080"), "[::1]"));
	CHECK(!strcmp(norm_host("[::1]"), "[::1]"));
	CHECK(!strcmp(norm_host("127.0.0.1:80"), "127.0.0.1"));
}

TEST(test_implausible_host_values_are_rejected)
{
	CHECK(!strcmp(norm_host(""), ""));
	CHECK(!strcmp(norm_host(":80"), ""));
	CHECK(!strcmp(norm_host("."), ""));
	CHECK(!strcmp(norm_host("a b.com"), ""));
	CHECK(!strcmp(norm_host("a/b.com"), ""));
	CHECK(!strcmp(norm_host("a@b.com"), ""));
	CHECK(!strcmp(norm_host("[::1"), ""));
	char out[16];
	CHECK(host_normalize("a-long-host-name.example", 24, out, sizeof(out)) == -1);
	char long_host[300];
	memset(long_host, 'a', sizeof(long_host));
	CHECK(host_normalize(long_host, 255, (char[300]){0}, 300) == 255);
	CHECK(host_normalize(long_host, 256, (char[300]){0}, 300) == -1);
}

TEST(test_table_finds_what_was_put_and_refuses_more_than_sized_for)
{
	struct arena a = {0};
	struct host_table t;
	CHECK(host_table_init(&t, &a, 3) == 0);
	CHECK(host_table_put(&t, "a.example", 9, 7) == 0);
	CHECK(host_table_put(&t, "b.example", 9, 0) == 0);
	CHECK(host_table_put(&t, "a.example", 9, 1) == -EEXIST);
	CHECK(host_table_get(&t, "a.example", 9) == 7);
	CHECK(host_table_get(&t, "b.example", 9) == 0);
	CHECK(host_table_get(&t, "c.example", 9) == -1);
	/* Sized for 3 names: 16 slots, so the table takes 8 before it says it is full. */
	char name[32];
	int put = 2, rc = 0;
	while (rc == 0 && put < 100) {
		snprintf(name, sizeof(name), "n%d.example", put);
		rc = host_table_put(&t, arena_strndup(&a, name, strlen(name)), strlen(name), (uint32_t)put);
		put += rc == 0;
	}
	CHECK(rc == -ENOSPC && put == 8);
	arena_free(&a);
}

int main(void)
{
	RUN(test_lookup_form_drops_case_port_and_trailing_dots);
	RUN(test_implausible_host_values_are_rejected);
	RUN(test_table_finds_what_was_put_and_refuses_more_than_sized_for);
	UNIT_EXIT();
}
