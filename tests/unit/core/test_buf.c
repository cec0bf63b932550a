#include "core/buf.c"

#include "../unit.h"

TEST(test_buffer_holds_no_storage_until_reserved)
{
	struct buf_pool pool;
	buf_pool_init(&pool, 64, 4);
	struct buf b = {0};
	CHECK(b.data == NULL && buf_len(&b) == 0);
	CHECK(buf_reserve(&b, &pool) == 0);
	CHECK(b.data != NULL && b.tail == 0 && pool.in_use == 1);
	buf_release_if_empty(&b, &pool);
	CHECK(b.data == NULL && pool.in_use == 0 && pool.nfree == 1);
	buf_pool_destroy(&pool);
}

TEST(test_released_storage_is_reused_from_the_free_list)
{
	struct buf_pool pool;
	buf_pool_init(&pool, 64, 4);
	struct buf a = {0}, b = {0};
	buf_reserve(&a, &pool);
	char *first = a.data;
	buf_release(&a, &pool);
	buf_reserve(&b, &pool);
	CHECK(b.data == first);
	buf_release(&b, &pool);
	buf_pool_destroy(&pool);
}

TEST(test_free_list_is_bounded)
{
	struct buf_pool pool;
	buf_pool_init(&pool, 32, 2);
	struct buf bs[5] = {{0}};
	for (int i = 0; i < 5; i++)
		CHECK(buf_reserve(&bs[i], &pool) == 0);
	for (int i = 0; i < 5; i++)
		buf_release(&bs[i], &pool);
	CHECK(pool.nfree == 2 && pool.in_use == 0);
	buf_pool_destroy(&pool);
}

TEST(test_append_consume_and_make_room)
{
	struct buf_pool pool;
	buf_pool_init(&pool, 16, 1);
	struct buf b = {0};
	buf_reserve(&b, &pool);
	CHECK(buf_append(&b, &pool, "0123456789", 10) == 0);
	CHECK(buf_append(&b, &pool, "0123456789", 10) < 0); /* does not fit: nothing written */
	CHECK(buf_len(&b) == 10);
	buf_consume(&b, 4);
	CHECK(buf_len(&b) == 6 && !memcmp(buf_start(&b), "456789", 6));
	buf_make_room(&b);
	CHECK(b.head == 0 && b.tail == 6 && !memcmp(buf_start(&b), "456789", 6));
	buf_consume(&b, 6);
	CHECK(b.head == 0 && b.tail == 0); /* drained: indices reset */
	buf_release(&b, &pool);
	buf_pool_destroy(&pool);
}

int main(void)
{
	RUN(test_buffer_holds_no_storage_until_reserved);
	RUN(test_released_storage_is_reused_from_the_free_list);
	RUN(test_free_list_is_bounded);
	RUN(test_append_consume_and_make_room);
	UNIT_EXIT();
}
