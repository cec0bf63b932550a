#include "http/h2.c"

#include "../unit.h"

static struct http_msg msg;
static struct h2_head head;

static void start(uint32_t max) { h2_head_init(&head, &msg, max); }

static int field(const char *name, const char *value)
{
	return h2_head_field(&head, name, strlen(name), value, strlen(value));
}

static const char *value_of(const char *name)
{
	static char v[256];
	const struct http_header *h = http_find_header(&msg, name, strlen(name));
	if (!h)
		return NULL;
	snprintf(v, sizeof(v), "%.*s", (int)h->value.len, http_str(&msg, h->value));
	return v;
}

static void request(void)
{
	field(":method", "GET");
	field(":scheme", "https");
	field(":path", "/a?b");
}

TEST(test_authority_becomes_host_and_the_target_the_path)
{
	start(65536);
	request();
	field(":authority", "Example.com");
	CHECK(h2_head_finish(&head, true) == 0 && !head.status);
	CHECK_STR_EQ(value_of("host"), "Example.com");
	CHECK(msg.method == HTTP_METHOD_GET && msg.framing == HTTP_FRAMING_NONE);
	CHECK(msg.target.len == 4 && !memcmp(http_str(&msg, msg.target), "/a?b", 4));
	CHECK(msg.authority.len == 11);
	http_msg_free(&msg);
}

TEST(test_a_host_field_alone_is_the_authority_and_one_that_disagrees_is_refused)
{
	start(65536);
	request();
	field("host", "a.test");
	CHECK(h2_head_finish(&head, true) == 0);
	CHECK(msg.authority.len == 6 && !memcmp(http_str(&msg, msg.authority), "a.test", 6));
	http_msg_free(&msg);
	start(65536);
	request();
	field(":authority", "a.test");
	field("host", "A.TEST");
	CHECK(h2_head_finish(&head, true) == 0); /* the same name, in another case */
	http_msg_free(&msg);
	start(65536);
	request();
	field(":authority", "a.test");
	field("host", "b.test");
	CHECK(h2_head_finish(&head, true) == H2_PROTOCOL_ERROR);
	http_msg_free(&msg);
	start(65536);
	request();
	field("host", "a.test");
	field("host", "a.test");
	CHECK(h2_head_finish(&head, true) == H2_PROTOCOL_ERROR);
	http_msg_free(&msg);
}

TEST(test_cookies_in_pieces_become_one_field_in_order)
{
	start(65536);
	request();
	field("cookie", "a=1");
	field("x-other", "v");
	field("cookie", "b=2");
	field("cookie", "c=3");
	CHECK(h2_head_finish(&head, true) == 0);
	CHECK_STR_EQ(value_of("cookie"), "a=1; b=2; c=3");
	uint32_t cookies = 0;
	for (uint32_t i = 0; i < msg.nh; i++)
		cookies += msg.h[i].id == HDR_COOKIE;
	CHECK(cookies == 1);
	CHECK_STR_EQ(value_of("x-other"), "v");
	http_msg_free(&msg);
}

TEST(test_whitespace_in_method_or_path_and_an_empty_path_are_refused)
{
	start(65536);
	CHECK(field(":method", "GET /x") == H2_PROTOCOL_ERROR);
	http_msg_free(&msg);
	start(65536);
	CHECK(field(":path", "/a b") == H2_PROTOCOL_ERROR);
	CHECK(field(":path", "") == H2_PROTOCOL_ERROR);
	CHECK(field(":path", "/a%20b") == 0);
	http_msg_free(&msg);
}

TEST(test_the_body_framing_follows_end_stream_and_content_length)
{
	start(65536);
	request();
	field("content-length", "1234");
	CHECK(h2_head_finish(&head, false) == 0);
	CHECK(msg.framing == HTTP_FRAMING_LENGTH && msg.content_length == 1234);
	http_msg_free(&msg);
	start(65536);
	request();
	CHECK(h2_head_finish(&head, false) == 0 && msg.framing == HTTP_FRAMING_CHUNKED);
	http_msg_free(&msg);
}

/* An HPACK bomb: a small block that decodes to much. What it decodes to is counted, and stored no further. */
TEST(test_a_head_past_its_limit_is_431_and_stops_growing)
{
	start(4096);
	request();
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 10000; i++)
		CHECK(field("x-big", big) == 0);
	CHECK(h2_head_finish(&head, true) == 0);
	CHECK(head.status == 431);
	CHECK(msg.store_cap <= 8192 && msg.nh < 10);
	http_msg_free(&msg);
}

int main(void)
{
	RUN(test_authority_becomes_host_and_the_target_the_path);
	RUN(test_a_host_field_alone_is_the_authority_and_one_that_disagrees_is_refused);
	RUN(test_cookies_in_pieces_become_one_field_in_order);
	RUN(test_whitespace_in_method_or_path_and_an_empty_path_are_refused);
	RUN(test_the_body_framing_follows_end_stream_and_content_length);
	RUN(test_a_head_past_its_limit_is_431_and_stops_growing);
	UNIT_EXIT();
}
