#include "core/stats.c"

#include <math.h>

#include "../unit.h"
#include "core/sbuf.h"

TEST(test_each_duration_falls_in_the_first_bucket_whose_bound_holds_it)
{
	CHECK(bucket_of(0) == 0);
	CHECK(bucket_of(50) == 0);
	CHECK(bucket_of(51) == 1);
	CHECK(bucket_of(1000) == 4);
	CHECK(bucket_of(1001) == 5);
	CHECK(bucket_of(60000000) == STATS_BOUNDS - 1);
	CHECK(bucket_of(60000001) == STATS_BOUNDS);
	CHECK(bucket_of(UINT64_MAX) == STATS_BOUNDS);
	for (unsigned i = 1; i < STATS_BOUNDS; i++)
		CHECK(stats_bound_us[i] > stats_bound_us[i - 1]);
}

TEST(test_status_classes_and_no_response)
{
	CHECK(stats_class_of(101) == CLASS_1XX);
	CHECK(stats_class_of(200) == CLASS_2XX);
	CHECK(stats_class_of(399) == CLASS_3XX);
	CHECK(stats_class_of(404) == CLASS_4XX);
	CHECK(stats_class_of(599) == CLASS_5XX);
	CHECK(stats_class_of(0) == CLASS_NONE);
	CHECK(stats_class_of(600) == CLASS_NONE);
}

TEST(test_sums_add_every_worker_and_quantiles_interpolate_in_the_bucket)
{
	struct req_stats a = {0}, b = {0};
	for (int i = 0; i < 90; i++)
		stats_hist_add(&a.total, 700); /* (500, 1000] */
	for (int i = 0; i < 10; i++)
		stats_hist_add(&b.total, 2000); /* (1000, 2500] */
	stat_add(&a.responses[CLASS_2XX], 90);
	stat_add(&b.responses[CLASS_5XX], 10);
	struct req_sum sum = {0};
	stats_req_sum(&sum, &a);
	stats_req_sum(&sum, &b);
	CHECK(sum.requests == 100 && sum.responses[CLASS_5XX] == 10);
	CHECK(sum.total.count == 100 && sum.total.sum_us == 90 * 700 + 10 * 2000);
	/* The 50th of 100 is 50/90 into (500, 1000]; the 99th 9/10 into (1000, 2500]. */
	CHECK(fabs(stats_quantile_us(&sum.total, 0.5) - (500 + 500 * 50.0 / 90)) < 1e-6);
	CHECK(fabs(stats_quantile_us(&sum.total, 0.99) - (1000 + 1500 * 9.0 / 10)) < 1e-6);
	struct hist_sum empty = {0};
	CHECK(stats_quantile_us(&empty, 0.99) == 0);
	struct stats_hist over = {0};
	stats_hist_add(&over, 100000000);
	struct hist_sum o = {0};
	stats_hist_sum(&o, &over);
	CHECK(stats_quantile_us(&o, 0.5) == 60000000);
}

TEST(test_a_worker_block_is_made_once_and_zeroed)
{
	_Atomic(void *) blocks[2] = {NULL, NULL};
	struct req_stats *r = stats_block(blocks, 1, sizeof(*r));
	CHECK(r != NULL && stat_get(&r->bytes_in) == 0 && ((uintptr_t)r & 63) == 0);
	stat_add(&r->bytes_in, 5);
	CHECK(stats_block(blocks, 1, sizeof(*r)) == r && stats_block_peek(blocks, 0) == NULL);
	free(atomic_load(&blocks[1]));
}

TEST(test_json_and_label_escapes_leave_nothing_that_ends_a_string)
{
	struct sbuf b = {0};
	sbuf_json_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
	CHECK(!strcmp(b.data, "\"a\\\"b\\\\c\\u000a\\u0001\\u00c3\\u00a9\""));
	b.len = 0;
	sbuf_label(&b, "x\"y\\z\nw");
	CHECK(!strcmp(b.data, "x\\\"y\\\\z\\nw"));
	sbuf_free(&b);
}

int main(void)
{
	RUN(test_each_duration_falls_in_the_first_bucket_whose_bound_holds_it);
	RUN(test_status_classes_and_no_response);
	RUN(test_sums_add_every_worker_and_quantiles_interpolate_in_the_bucket);
	RUN(test_a_worker_block_is_made_once_and_zeroed);
	RUN(test_json_and_label_escapes_leave_nothing_that_ends_a_string);
	UNIT_EXIT();
}
