/*
 * HTTP/2 from a client: the codec and the translation of each request head
 * to HTTP/1.1, as the h2 front drives them. The input is what a client
 * sends after the connection preface (which is added); its first byte sets
 * how the rest is cut into reads. Every head is answered with a response
 * and a body, bodies are taken as they come, and what the codec writes is
 * drained after each read.
 * Properties:
 *  - a head the codec and the translation accept becomes an HTTP/1.1
 *    request head with no CR, LF or NUL inside a line, whose Host is the
 *    request's authority;
 *  - a head refused is reset, and none is answered twice;
 *  - no crash, leak or hang, whatever the frames.
 */
#include "core/common.h"
#include "fuzz.h"
#include "http/h1.h"
#include "http/h2.h"

struct stream {
	struct h2_head head;
	struct http_msg msg;
	int32_t id;
	size_t body_left;
	bool answered;
	struct stream *next;
};

struct session {
	struct h2 *h2;
	struct stream *streams;
};

static const char body[3000];

static void *stream_open(void *ud, int32_t id)
{
	struct session *s = ud;
	struct stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->id = id;
	h2_head_init(&st->head, &st->msg, 4096);
	st->next = s->streams;
	s->streams = st;
	return st;
}

static int header(void *ud, void *sp, const char *name, size_t nlen, const char *value, size_t vlen)
{
	(void)ud;
	return h2_head_field(&((struct stream *)sp)->head, name, nlen, value, vlen);
}

static void check_translation(const struct http_msg *m)
{
	static char out[16384];
	struct http_edit e = {.client_ip = "192.0.2.1", .proto = "https"};
	struct h1_head_opts o = {
		.edit = &e,
		.reframe = m->framing == HTTP_FRAMING_CHUNKED ? H1_REFRAME_CHUNK : H1_REFRAME_NONE,
		.version_minor = 1,
	};
	ssize_t n = h1_write_request(out, sizeof(out), m, &o);
	if (n < 0)
		return;
	fuzz_check_head(out, (size_t)n);
	const struct http_header *host = http_find_header(m, "host", 4);
	FUZZ_CHECK(!m->authority.len || (host && host->value.len == m->authority.len &&
					 !strncasecmp(http_str(m, host->value), http_str(m, m->authority),
						      m->authority.len)),
		   "the Host sent is not the authority routed by");
}

static int head_done(void *ud, void *sp, bool end_stream)
{
	struct session *s = ud;
	struct stream *st = sp;
	int code = h2_head_finish(&st->head, end_stream);
	if (code)
		return code;
	FUZZ_CHECK(!st->answered, "stream %d answered twice", st->id);
	if (!st->head.status && st->msg.method_name.len && st->msg.path.len)
		check_translation(&st->msg);
	st->answered = true;
	st->body_left = st->id % 3 ? sizeof(body) : 0;
	static const struct h2_field f[] = {{"content-type", "text/plain", 12, 10}};
	h2_respond(s->h2, st->id, st->head.status ? st->head.status : 200, f, 1, st->body_left > 0);
	return 0;
}

static int data(void *ud, void *sp, const char *d, size_t len)
{
	struct session *s = ud;
	(void)d;
	h2_consumed(s->h2, ((struct stream *)sp)->id, len);
	return 0;
}

static int body_done(void *ud, void *sp)
{
	(void)ud;
	(void)sp;
	return 0;
}

static ssize_t send_body(void *ud, void *sp, char *buf, size_t len, bool *eof)
{
	(void)ud;
	struct stream *st = sp;
	size_t n = MIN_SIZE(len, st->body_left);
	memcpy(buf, body, n);
	st->body_left -= n;
	*eof = st->body_left == 0;
	return (ssize_t)n;
}

static void forget(struct session *s, struct stream *st)
{
	for (struct stream **p = &s->streams; *p; p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			break;
		}
	http_msg_free(&st->msg);
	free(st);
}

static void stream_close(void *ud, void *sp, uint32_t error)
{
	(void)error;
	forget(ud, sp);
}

static const struct h2_events events = {stream_open, header, head_done, data, body_done, send_body,
					stream_close};

static void drain(struct session *s)
{
	for (int i = 0; i < 1000; i++) {
		const char *out;
		if (h2_pending(s->h2, &out) <= 0)
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	if (size < 1 || size > 256 * 1024)
		return 0;
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	size_t step = 1 + in[0] % 64 * 37;
	size_t len = sizeof(preface) - 1 + size - 1;
	char *data_in = malloc(len);
	memcpy(data_in, preface, sizeof(preface) - 1);
	memcpy(data_in + sizeof(preface) - 1, in + 1, size - 1);
	struct session s = {0};
	struct h2_settings set = {100, 65535, 4096, 50};
	s.h2 = h2_server_new(&set, &events, &s);
	FUZZ_CHECK(s.h2, "no session");
	for (size_t off = 0; off < len;) {
		size_t n = MIN_SIZE(step, len - off);
		ssize_t used = h2_recv(s.h2, data_in + off, n);
		drain(&s);
		if (used < 0)
			break;
		off += n;
	}
	h2_goaway(s.h2, H2_NO_ERROR);
	drain(&s);
	h2_free(s.h2);
	while (s.streams)
		forget(&s, s.streams);
	free(data_in);
	return 0;
}
