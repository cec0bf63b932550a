#include "core/log.c"

#include "../unit.h"

TEST(test_log_limit_allows_its_lines_a_second_then_counts)
{
	struct log_limit l = {0};
	uint64_t t0 = 5000;
	for (int i = 0; i < 3; i++)
		CHECK(log_limit_allow(&l, t0 + (uint64_t)i, 3, "test errors"));
	CHECK(!log_limit_allow(&l, t0 + 10, 3, "test errors"));
	CHECK(!log_limit_allow(&l, t0 + 999, 3, "test errors"));
	CHECK(l.suppressed == 2);
	/* A new second: the count is said (and cleared) before its first line. */
	CHECK(log_limit_allow(&l, t0 + 1000, 3, "test errors"));
	CHECK(l.suppressed == 0 && l.lines == 1 && l.window_ms == t0 + 1000);
}

TEST(test_log_limit_flush_says_the_count_once)
{
	struct log_limit l = {.window_ms = 0, .lines = 1};
	CHECK(!log_limit_allow(&l, 10, 1, "test errors"));
	log_limit_flush(&l, "test errors");
	CHECK(l.suppressed == 0);
	log_limit_flush(&l, "test errors"); /* nothing left to say */
	CHECK(l.suppressed == 0);
}

int main(void)
{
	log_set_level(LOG_ERROR); /* the count's line is a warning: keep the test's output to its verdicts */
	RUN(test_log_limit_allows_its_lines_a_second_then_counts);
	RUN(test_log_limit_flush_says_the_count_once);
	UNIT_EXIT();
}
