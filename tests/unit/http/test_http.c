#include "http/http.c"

#include <stdio.h>

#include "../unit.h"

/* A message over a head of "Name: value" lines (no request line), parsed by hand. */
struct fixture {
	char text[1024];
	struct http_msg m;
};

static void headers(struct fixture *f, const char *const *lines)
{
	memset(f, 0, sizeof(*f));
	f->m.base = f->text;
	size_t at = 0;
	for (size_t i = 0; lines[i]; i++) {
		size_t n = strlen(lines[i]);
		memcpy(f->text + at, lines[i], n);
		const char *colon = strchr(lines[i], ':');
		uint32_t nlen = (uint32_t)(colon - lines[i]);
		uint32_t voff = nlen + 2;
		f->m.h[f->m.nh++] = (struct http_header){{(uint32_t)at, nlen},
							  {(uint32_t)at + voff, (uint32_t)n - voff}, HDR_OTHER};
		at += n;
	}
	http_classify(&f->m);
}

static bool hop(const struct fixture *f, uint32_t i) { return http_header_hop_by_hop(&f->m, i, false); }

TEST(owned_headers_are_framing_connection_and_proxy_ones)
{
	static const char *const owned_names[] = {
		"Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "TE", "Trailer",
		"Upgrade", "Proxy-Connection", "Proxy-Authorization", "PROXY-AUTHENTICATE", NULL};
	for (size_t i = 0; owned_names[i]; i++)
		CHECK(http_header_owned(owned_names[i], strlen(owned_names[i])));
	static const char *const free_names[] = {"Host", "X-Forwarded-For", "Cookie", "Proxy",
						 "Proxy-", "Tea", NULL};
	for (size_t i = 0; free_names[i]; i++)
		CHECK(!http_header_owned(free_names[i], strlen(free_names[i])));
}

TEST(hop_by_hop_follows_connection_but_never_for_framing_or_host)
{
	struct fixture f;
	static const char *const lines[] = {"Connection: close, X-Private, content-length, HOST",
					     "X-Private: 1", "Content-Length: 5", "Host: h", "Keep-Alive: 1",
					     "Upgrade: websocket", "X-Other: 2", NULL};
	headers(&f, lines);
	CHECK(hop(&f, 0) && hop(&f, 1) && hop(&f, 4) && hop(&f, 5));
	CHECK(!hop(&f, 2) && !hop(&f, 3) && !hop(&f, 6));
	CHECK(!http_header_hop_by_hop(&f.m, 5, true));
}

TEST(header_ids_ignore_the_case_of_letters_only)
{
	static const struct {
		const char *name;
		enum http_hdr id;
	} cases[] = {
		{"Host", HDR_HOST},
		{"HOST", HDR_HOST},
		{"te", HDR_TE},
		{"Cookie", HDR_COOKIE},
		{"upgrade", HDR_UPGRADE},
		{"Trailer", HDR_TRAILER},
		{"X-Real-IP", HDR_X_REAL_IP},
		{"CONNECTION", HDR_CONNECTION},
		{"Keep-Alive", HDR_KEEP_ALIVE},
		{"content-length", HDR_CONTENT_LENGTH},
		{"X-Forwarded-For", HDR_X_FORWARDED_FOR},
		{"Transfer-Encoding", HDR_TRANSFER_ENCODING},
		{"x-forwarded-proto", HDR_X_FORWARDED_PROTO},
		{"Proxy-Connection", HDR_PROXY},
		{"proxy-authorization", HDR_PROXY},
		{"Proxy", HDR_OTHER},
		{"Proxy-", HDR_OTHER},
		{"Hosts", HDR_OTHER},
		{"Tea", HDR_OTHER},
		/* Not letters: '\r' | 0x20 is '-', which must not make these match. */
		{"Keep\ralive", HDR_OTHER},
		{"Content\rLength", HDR_OTHER},
		{"", HDR_OTHER},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		CHECK(http_header_id(cases[i].name, strlen(cases[i].name)) == cases[i].id);
}

TEST(connection_names_only_headers_it_alone_makes_hop_by_hop)
{
	struct fixture f;
	static const char *const plain[] = {"Connection: close, Keep-Alive, upgrade, TE", "Host: h",
					     NULL};
	headers(&f, plain);
	CHECK(!f.m.connection_names && f.m.h[0].id == HDR_CONNECTION && f.m.h[1].id == HDR_HOST);
	static const char *const named[] = {"Host: h", "connection: keep-alive", "Connection: ,X-A ,",
					     "X-A: 1", NULL};
	headers(&f, named);
	CHECK(f.m.connection_names && hop(&f, 3) && !hop(&f, 0));
}

TEST(list_tokens)
{
	const char *v = " keep-alive ,\tUpgrade,, x ";
	CHECK(http_list_has_token(v, strlen(v), "upgrade", 7));
	CHECK(http_list_has_token(v, strlen(v), "keep-alive", 10));
	CHECK(http_list_has_token(v, strlen(v), "x", 1));
	CHECK(!http_list_has_token(v, strlen(v), "keep", 4));
	CHECK(!http_list_has_token("", 0, "x", 1));
}

TEST(header_validity)
{
	CHECK(http_header_name_valid("X-Ok_1!#$%&'*+.^`|~", 19));
	CHECK(!http_header_name_valid("", 0) && !http_header_name_valid("a b", 3));
	CHECK(!http_header_name_valid("a:b", 3) && !http_header_name_valid("a\0b", 3));
	CHECK(http_header_value_valid("any thing\t\x80", 11));
	CHECK(!http_header_value_valid("a\r", 2) && !http_header_value_valid("a\nb", 3));
	CHECK(!http_header_value_valid("a\0b", 3));
	/* Found by fuzz_hook: other control characters are refused by strict peers too. */
	CHECK(!http_header_value_valid("v\x08", 2) && !http_header_value_valid("\x7f", 1));
}

TEST(forwarding_headers)
{
	CHECK(http_header_forwarding(http_header_id("X-Forwarded-For", 15)));
	CHECK(http_header_forwarding(http_header_id("x-real-ip", 9)));
	CHECK(http_header_forwarding(http_header_id("X-FORWARDED-PROTO", 17)));
	CHECK(!http_header_forwarding(http_header_id("X-Forwarded-Host", 16)));
}

TEST(edit_owns_what_its_rules_set_or_remove)
{
	struct header_kv set[] = {{"X-A", "1", 3, 1}};
	struct header_kv add[] = {{"X-B", "1", 3, 1}};
	struct header_kv rm[] = {{"x-c", "", 3, 0}};
	struct header_rules route = {set, NULL, NULL, 1, 0, 0};
	struct header_rules hook = {NULL, add, rm, 0, 1, 1};
	struct http_edit e = {.rules = {&route, &hook}};
	CHECK(http_edit_owns(&e, "x-a", 3) && http_edit_owns(&e, "X-C", 3));
	CHECK(!http_edit_owns(&e, "X-B", 3));
}

/* Collects the policy's fields as "Name: value" lines. */
static void collect(void *ctx, enum http_hdr id, const char *name, size_t nlen,
		    const struct http_part *value, int nparts)
{
	(void)id;
	char *out = ctx;
	strncat(out, name, nlen);
	strcat(out, ": ");
	for (int i = 0; i < nparts; i++)
		strncat(out, value[i].p, value[i].len);
	strcat(out, "\n");
}

TEST(the_policy_forwards_end_to_end_fields_then_rules_then_who_the_client_is)
{
	struct fixture f;
	static const char *const lines[] = {"Host: a.test",	  "Connection: close, X-Gone",
					    "X-Gone: 1",	  "X-Forwarded-For: 10.0.0.1",
					    "X-Real-IP: 6.6.6.6", "X-Client-Verify: SUCCESS",
					    "X-Set: old",	  "Accept: */*",
					    NULL};
	headers(&f, lines);
	f.m.is_request = true;
	struct header_kv set[] = {{"X-Set", "new", 5, 3}};
	struct header_rules route = {set, NULL, NULL, 1, 0, 0};
	const struct http_client_cert cert = {.verify = "NONE"};
	struct http_edit e = {.rules = {&route}, .client_ip = "192.0.2.7", .proto = "https", .cert = &cert};
	char out[1024] = "";
	http_edit_fields(&f.m, &e, collect, out);
	CHECK_STR_EQ(out, "Host: a.test\nAccept: */*\nX-Set: new\n"
			  "X-Forwarded-For: 10.0.0.1, 192.0.2.7\nX-Real-IP: 192.0.2.7\n"
			  "X-Forwarded-Proto: https\nX-Client-Verify: NONE\n");
	/* A response keeps what a request's forwarding would replace. */
	f.m.is_request = false;
	out[0] = 0;
	http_edit_fields(&f.m, &(struct http_edit){0}, collect, out);
	CHECK_STR_EQ(out, "Host: a.test\nX-Forwarded-For: 10.0.0.1\nX-Real-IP: 6.6.6.6\n"
			  "X-Client-Verify: SUCCESS\nX-Set: old\nAccept: */*\n");
}

TEST(a_message_built_field_by_field_gets_the_same_policy)
{
	/* As an HTTP/2 front would build one from HPACK's output: strings that lie nowhere together. */
	struct http_msg m = {.is_request = true, .method = HTTP_METHOD_GET};
	CHECK(http_msg_copy(&m, "a.test", 6, 65536, &m.authority));
	static const char *const fields[][2] = {{"accept", "*/*"},
						{"connection", "x-gone"},
						{"x-gone", "1"},
						{"x-forwarded-for", "10.0.0.1"}};
	for (size_t i = 0; i < ARRAY_LEN(fields); i++)
		CHECK(http_msg_add_header(&m, fields[i][0], strlen(fields[i][0]), fields[i][1],
					  strlen(fields[i][1]), 65536));
	CHECK(m.connection_names && m.h[1].id == HDR_CONNECTION);
	const struct http_header *h = http_find_header(&m, "Accept", 6);
	CHECK(h && h->value.len == 3 && !memcmp(http_str(&m, h->value), "*/*", 3));
	char out[512] = "";
	http_edit_fields(&m, &(struct http_edit){.client_ip = "192.0.2.7", .proto = "https"}, collect,
			 out);
	CHECK_STR_EQ(out, "accept: */*\nX-Forwarded-For: 10.0.0.1, 192.0.2.7\n"
			  "X-Real-IP: 192.0.2.7\nX-Forwarded-Proto: https\n");
	http_msg_free(&m);
}

TEST(a_built_message_grows_without_moving_its_spans_and_keeps_its_limits)
{
	struct http_msg m = {0};
	char value[100];
	memset(value, 'v', sizeof(value));
	uint32_t n = 0;
	while (http_msg_add_header(&m, "x-field", 7, value, sizeof(value), 8192))
		n++;
	/* 8192 bytes hold 76 fields of 107 bytes; the store moved as it grew. */
	CHECK(n == 76 && m.store_len <= 8192);
	CHECK(m.h[0].value.len == 100 && !memcmp(http_str(&m, m.h[0].value), value, 100));
	CHECK(!memcmp(http_str(&m, m.h[75].name), "x-field", 7));
	http_msg_free(&m);
	struct http_msg few = {0};
	for (n = 0; http_msg_add_header(&few, "a", 1, "b", 1, 1 << 20); n++)
		;
	CHECK(n == HTTP_MAX_HEADERS);
	http_msg_free(&few);
}

TEST(an_answer_has_its_fields_edited_by_its_rules)
{
	struct header_kv fixed[] = {{"X-Keep", "1", 6, 1}, {"X-Drop", "1", 6, 1}};
	struct header_kv rm[] = {{"x-drop", "", 6, 0}};
	struct header_kv add[] = {{"X-Added", "2", 7, 1}};
	struct header_rules rules = {NULL, add, rm, 0, 1, 1};
	struct http_answer a = {.status = 301, .headers = fixed, .nheaders = 2, .location = "https://a.test",
				.location_len = 14, .location_tail = "/x?y", .location_tail_len = 4,
				.retry_after_s = 30, .rules = &rules};
	char out[512] = "";
	http_answer_fields(&a, collect, out);
	CHECK_STR_EQ(out, "X-Keep: 1\nLocation: https://a.test/x?y\nX-Added: 2\nRetry-After: 30\n");
}

TEST(cookie_values)
{
	const char *v = "a=1; sid=abc;x=; other=sid=no";
	size_t n;
	const char *s = http_cookie_value(v, strlen(v), "sid", 3, &n);
	CHECK(s && n == 3 && !memcmp(s, "abc", 3));
	s = http_cookie_value(v, strlen(v), "x", 1, &n);
	CHECK(s && n == 0);
	CHECK(!http_cookie_value(v, strlen(v), "si", 2, &n));
	CHECK(!http_cookie_value("", 0, "a", 1, &n));
}

TEST(methods_and_reasons)
{
	CHECK(http_method_idempotent(HTTP_METHOD_GET) && http_method_idempotent(HTTP_METHOD_DELETE));
	CHECK(!http_method_idempotent(HTTP_METHOD_POST) && !http_method_idempotent(HTTP_METHOD_OTHER));
	CHECK(!strcmp(http_reason(501), "Not Implemented") && !strcmp(http_reason(599), "Error"));
	CHECK(!strcmp(http_reason(299), ""));
}

TEST(find_header_is_case_insensitive)
{
	struct fixture f;
	static const char *const lines[] = {"X-One: 1", "x-two: 2", NULL};
	headers(&f, lines);
	const struct http_header *h = http_find_header(&f.m, "X-TWO", 5);
	CHECK(h && h->value.len == 1 && *http_str(&f.m, h->value) == '2');
	CHECK(!http_find_header(&f.m, "X-Three", 7));
}

int main(void)
{
	RUN(owned_headers_are_framing_connection_and_proxy_ones);
	RUN(hop_by_hop_follows_connection_but_never_for_framing_or_host);
	RUN(header_ids_ignore_the_case_of_letters_only);
	RUN(connection_names_only_headers_it_alone_makes_hop_by_hop);
	RUN(list_tokens);
	RUN(header_validity);
	RUN(forwarding_headers);
	RUN(edit_owns_what_its_rules_set_or_remove);
	RUN(the_policy_forwards_end_to_end_fields_then_rules_then_who_the_client_is);
	RUN(a_message_built_field_by_field_gets_the_same_policy);
	RUN(a_built_message_grows_without_moving_its_spans_and_keeps_its_limits);
	RUN(an_answer_has_its_fields_edited_by_its_rules);
	RUN(cookie_values);
	RUN(methods_and_reasons);
	RUN(find_header_is_case_insensitive);
	UNIT_EXIT();
}
