/*
 * The transaction driven through a fake client stream and a fake backend
 * session (this file's back_* replace h1_back.c: the Makefile links the
 * test without it). Backend connections are real sockets to listening
 * sockets of the test, so that the pool picks, connects and retries as it
 * does in sluice; what the backend "answers" is scripted.
 */
#include "proxy/txn.c"

#include <unistd.h>

#include "../loopback.h"
#include "../unit.h"
#include "http/h1.h"

/* --- the fake backend session --- */

struct back {
	int unused;
};

/* One back_read(): bytes (or IO_EOF, -errno), and what back_parse() then finds in them. */
struct step {
	ssize_t n;
	uint16_t status; /* a response head */
	size_t body;	 /* body bytes */
	bool complete;	 /* the response ends with them */
};

static struct {
	struct step script[8];
	int nsteps, next;
	struct step pending;
	bool head_sent; /* this attempt's request head went */
	size_t body_ready;
	uint64_t body_written;
	int prepares, resets;
	struct http_msg rsp;
	char body[4096];
} fb;

static void script(const struct step *steps, int n)
{
	memset(&fb, 0, sizeof(fb));
	if (n)
		memcpy(fb.script, steps, sizeof(*steps) * (size_t)n);
	fb.nsteps = n;
}

size_t back_size(void) { return sizeof(struct back); }
bool back_prepare(struct txn *t, const struct http_msg *m)
{
	(void)t, (void)m;
	fb.prepares++;
	return true;
}
void back_release(struct txn *t) { (void)t; }
void back_reset(struct txn *t)
{
	(void)t;
	fb.resets++;
	fb.pending = (struct step){0};
	fb.head_sent = false;
	fb.body_ready = 0;
}
ssize_t back_write(struct txn *t, const struct iovec *body, bool *progress)
{
	if (!t->bc || t->connecting)
		return 0;
	if (!fb.head_sent || body->iov_len)
		*progress = true;
	fb.head_sent = true;
	fb.body_written += body->iov_len;
	return (ssize_t)body->iov_len;
}
bool back_request_out(const struct txn *t)
{
	(void)t;
	return fb.head_sent;
}
void back_request_drop(struct txn *t) { (void)t; }
ssize_t back_read(struct txn *t)
{
	(void)t;
	if (fb.next == fb.nsteps)
		return 0;
	struct step s = fb.script[fb.next++];
	if (s.n > 0)
		fb.pending = s;
	return s.n;
}
enum back_event back_parse(struct txn *t, const struct http_msg **head, const char **why)
{
	(void)why;
	if (fb.pending.status && !t->rsp_head_done) {
		fb.rsp = (struct http_msg){.status = fb.pending.status, .keep_alive = true,
					   .framing = HTTP_FRAMING_LENGTH};
		fb.pending.status = 0;
		*head = &fb.rsp;
		return BACK_HEAD;
	}
	if (fb.pending.body || fb.pending.complete) {
		fb.body_ready += fb.pending.body;
		t->rsp_complete = fb.pending.complete;
		fb.pending = (struct step){0};
		return BACK_BODY;
	}
	return BACK_NONE;
}
void back_head_done(struct txn *t, const struct http_msg *head) { (void)t, (void)head; }
bool back_eof_ends_body(struct txn *t)
{
	(void)t;
	return false;
}
size_t back_body(const struct txn *t, const char **data)
{
	if (!t->rsp_head_done)
		return 0;
	*data = fb.body;
	return fb.body_ready;
}
void back_body_consume(struct txn *t, size_t n)
{
	(void)t;
	fb.body_ready -= n;
}
void back_body_raw(struct txn *t) { (void)t; }
bool back_reusable(const struct txn *t) { return t->rsp_complete; }

/* --- the fake client stream --- */

struct fake_stream {
	struct session s;
	struct conn conn;
	struct txn *t; /* NULL once the transaction ended */
	const char *req_body;
	size_t req_body_len, req_body_taken;
	bool body_ends; /* req_body is the whole body */
	uint16_t answer_status, head_status, fail_status;
	uint32_t retry_after;
	uint64_t body_sent;
	int wakes;
	bool finished, closed;
};

static struct fake_stream *fake_of(const struct txn *t) { return container_of(t->s, struct fake_stream, s); }

static void end_txn(struct fake_stream *fs)
{
	txn_free(fs->t);
	fs->t = NULL;
}

static int fake_read_body(struct txn *t, struct iovec *body)
{
	struct fake_stream *fs = fake_of(t);
	*body = (struct iovec){(void *)(fs->req_body + fs->req_body_taken),
			       fs->req_body_len - fs->req_body_taken};
	if (fs->body_ends)
		t->req_complete = true;
	return 0;
}
static void fake_consume_body(struct txn *t, size_t n) { fake_of(t)->req_body_taken += n; }
static bool fake_send_head(struct txn *t, const struct http_msg *rsp)
{
	fake_of(t)->head_status = rsp->status;
	return true;
}
static int fake_answer(struct txn *t, struct http_answer *a, const char *body, const char **why)
{
	(void)body, (void)why;
	fake_of(t)->answer_status = a->status;
	return 0;
}
static int fake_send_body(struct txn *t, const char *data, size_t len, size_t *taken)
{
	(void)data;
	*taken = len;
	fake_of(t)->body_sent += len;
	t->bytes_to_client += len;
	return len > 0;
}
static bool fake_output_pending(const struct txn *t)
{
	(void)t;
	return false;
}
static int fake_fail(struct txn *t, int status, uint32_t retry_after_s)
{
	struct fake_stream *fs = fake_of(t);
	fs->fail_status = (uint16_t)status;
	fs->retry_after = retry_after_s;
	if (t->rsp_head_done) {
		fs->closed = true;
		end_txn(fs);
		return -1;
	}
	return 0;
}
static bool fake_ends_stream(const struct txn *t)
{
	(void)t;
	return false;
}
static void fake_finish(struct txn *t)
{
	struct fake_stream *fs = fake_of(t);
	fs->finished = true;
	end_txn(fs);
}
static bool fake_client_done(const struct txn *t)
{
	(void)t;
	return false;
}
static void fake_shutdown(struct txn *t) { (void)t; }
static void fake_close(struct txn *t)
{
	struct fake_stream *fs = fake_of(t);
	fs->closed = true;
	end_txn(fs);
}
static void fake_wake(struct txn *t) { fake_of(t)->wakes++; }

static const struct stream_ops fake_ops = {
	.read_body = fake_read_body,
	.consume_body = fake_consume_body,
	.send_head = fake_send_head,
	.answer = fake_answer,
	.send_body = fake_send_body,
	.output_pending = fake_output_pending,
	.fail = fake_fail,
	.ends_stream = fake_ends_stream,
	.finish = fake_finish,
	.client_done = fake_client_done,
	.shutdown = fake_shutdown,
	.close = fake_close,
	.wake = fake_wake,
};

/* --- a worker's proxy on a config of the test --- */

struct fixture {
	struct config *cfg;
	struct loop *loop;
	struct shared sh;
	struct shared_gen *sg;
	struct proxy px;
	int servers[2]; /* listening sockets the pool's servers are */
};

/*
 * A proxy on: a listener routed to site a.test, whose "/hello" is answered
 * by sluice and the rest goes to pool p (two reachable servers, with
 * pool_fields added).
 */
static bool setup(struct fixture *f, const char *pool_fields)
{
	char src[2048], err[256];
	int port[3];
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 2; i++)
		if ((f->servers[i] = listen_loopback(&port[i])) < 0)
			return false;
	int probe = listen_loopback(&port[2]); /* a free port for the listener */
	close(probe);
	snprintf(src, sizeof(src),
		 "return { listeners = {{ address = '127.0.0.1:%d' }},\n"
		 "  pools = { p = { servers = { '127.0.0.1:%d', '127.0.0.1:%d' }, %s } },\n"
		 "  sites = {{ hosts = { 'a.test' }, routes = {\n"
		 "    { path = '/hello', respond = { status = 201, body = 'hi\\n' } },\n"
		 "    { path = '/', pool = 'p' } } }} }\n",
		 port[2], port[0], port[1], pool_fields);
	if (!(f->cfg = config_load_string("t.lua", src, err, sizeof(err)))) {
		printf("config: %s\n", err);
		return false;
	}
	if (!(f->loop = loop_create()) || shared_init(&f->sh, 1) < 0)
		return false;
	if (!(f->sg = shared_gen_build(&f->sh, f->cfg, NULL, err, sizeof(err)))) {
		printf("shared_gen_build: %s\n", err);
		return false;
	}
	if (proxy_init(&f->px, &f->sh, 0, f->loop, f->sg, err, sizeof(err)) < 0) {
		printf("proxy_init: %s\n", err);
		return false;
	}
	return true;
}

static void teardown(struct fixture *f)
{
	proxy_destroy(&f->px);
	shared_gen_unref(f->sg);
	shared_destroy(&f->sh);
	loop_destroy(f->loop);
	config_unref(f->cfg);
	for (int i = 0; i < 2; i++)
		close(f->servers[i]);
}

/* A client stream of the fixture's listener, with a transaction for the request raw. */
static bool open_stream(struct fixture *f, struct fake_stream *fs, const char *raw)
{
	static struct h1_parser p;
	static struct http_msg m;
	memset(fs, 0, sizeof(*fs));
	fs->conn = (struct conn){.fd = -1, .xprt = &xprt_plain};
	fs->s = (struct session){.px = &f->px, .listener = f->px.listeners, .conn = &fs->conn};
	strcpy(fs->s.ip, "192.0.2.1");
	strcpy(fs->s.addr, "192.0.2.1:5000");
	h1_request_parser_init(&p, &(struct h1_limits){8192, 65536});
	if (h1_parse_head(&p, &m, raw, strlen(raw)) != H1_DONE)
		return false;
	if (!(fs->t = txn_new(&fs->s, &fake_ops)))
		return false;
	fs->t->req_complete = p.msg_done;
	const char *why = NULL;
	int status = txn_request(fs->t, &m, &why);
	return txn_begin(fs->t, status, why) == 0;
}

/* Runs the transaction as its stream would, its backend connection ready, until it stops moving. */
static void run(struct fake_stream *fs)
{
	for (int i = 0; i < 32 && fs->t; i++) {
		if (fs->t->bc)
			fs->t->bc->conn.flags |= CONN_READABLE | CONN_WRITABLE;
		if (txn_step(fs->t) == 0)
			return;
	}
}

/* As if the transaction's deadline had come. */
static void expire(struct txn *t)
{
	uint64_t late = deadline(t) - txn_now_ms(t) + 1;
	t->phase_since_ms -= late;
	t->last_io_ms -= late;
	txn_timer_fired(&t->timer);
}

static uint64_t responses(struct fixture *f, enum stats_class k)
{
	return f->sh.stats[0].responses[k];
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: a.test\r\n\r\n"

TEST(test_a_local_answer_goes_to_the_stream_and_is_counted)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, ""));
	script(NULL, 0);
	CHECK(open_stream(&f, &fs, GET("/hello")));
	CHECK(fs.answer_status == 201 && fs.t->rsp_complete);
	run(&fs);
	CHECK(fs.finished && !fs.closed);
	CHECK(fb.prepares == 0); /* no backend was asked */
	CHECK(responses(&f, CLASS_2XX) == 1);
	teardown(&f);
}

TEST(test_a_host_without_a_site_fails_with_404)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, ""));
	script(NULL, 0);
	CHECK(open_stream(&f, &fs, "GET / HTTP/1.1\r\nHost: b.test\r\n\r\n"));
	CHECK(fs.fail_status == 404);
	run(&fs);
	CHECK(fs.finished && responses(&f, CLASS_4XX) == 1);
	teardown(&f);
}

TEST(test_a_proxied_response_streams_to_the_client)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, ""));
	struct step s[] = {{.n = 100, .status = 200, .body = 60}, {.n = 40, .body = 40, .complete = true}};
	script(s, 2);
	CHECK(open_stream(&f, &fs, GET("/x")));
	CHECK(fs.t->bc && fb.prepares == 1);
	run(&fs);
	CHECK(fs.finished && fs.head_status == 200 && fs.body_sent == 100);
	CHECK(f.px.gen->up.pools[0].servers[0].nidle + f.px.gen->up.pools[0].servers[1].nidle == 1);
	teardown(&f);
}

TEST(test_a_reset_before_any_answer_is_retried_on_the_other_server)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, "retry = { on = { 'error' }, tries = 2 }"));
	struct step s[] = {{.n = -ECONNRESET}, {.n = 10, .status = 200, .complete = true}};
	script(s, 2);
	CHECK(open_stream(&f, &fs, GET("/x")));
	struct server_rt *first = fs.t->srv;
	run(&fs);
	CHECK(fs.finished && fs.head_status == 200 && fs.fail_status == 0);
	CHECK(fb.resets == 1);
	CHECK(first->st->down_until_ms > loop_now_ms(f.loop)); /* taken out */
	teardown(&f);
}

TEST(test_a_post_that_reached_the_backend_is_not_sent_again)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, "retry = { on = { 'error' }, tries = 2 }"));
	struct step s[] = {{.n = -ECONNRESET}, {.n = 10, .status = 200, .complete = true}};
	script(s, 2);
	CHECK(open_stream(&f, &fs,
			  "POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n"));
	fs.req_body = "abc";
	fs.req_body_len = 3;
	fs.body_ends = true;
	run(&fs);
	CHECK(fs.fail_status == 502 && fb.next == 1); /* the second server was not asked */
	CHECK(fs.finished && responses(&f, CLASS_5XX) == 1);
	teardown(&f);
}

TEST(test_a_queued_request_gets_503_with_retry_after_when_its_time_is_up)
{
	struct fixture f;
	struct fake_stream holder, waiter;
	CHECK(setup(&f, "max_connections = 1, queue = { size = 4, timeout = 2, retry_after = 7 }"));
	script(NULL, 0);
	CHECK(open_stream(&f, &holder, GET("/x")) && holder.t->bc);
	CHECK(open_stream(&f, &waiter, GET("/y")) && !waiter.t->bc);
	CHECK(upstream_waiting(&waiter.t->ureq));
	expire(waiter.t);
	CHECK(waiter.fail_status == 503 && waiter.retry_after == 7 && waiter.wakes == 1);
	run(&waiter);
	CHECK(waiter.finished);
	fake_close(holder.t);
	teardown(&f);
}

TEST(test_a_backend_closing_in_the_middle_of_the_body_cuts_the_stream)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, ""));
	struct step s[] = {{.n = 50, .status = 200, .body = 30}, {.n = IO_EOF}};
	script(s, 2);
	CHECK(open_stream(&f, &fs, GET("/x")));
	struct server_rt *srv = fs.t->srv;
	run(&fs);
	CHECK(fs.closed && !fs.finished && fs.body_sent == 30);
	CHECK(srv->st->down_until_ms > loop_now_ms(f.loop)); /* taken out */
	CHECK(responses(&f, CLASS_2XX) == 1); /* counted, with the status that was under way */
	teardown(&f);
}

TEST(test_a_client_that_stops_in_the_middle_of_its_body_gets_408)
{
	struct fixture f;
	struct fake_stream fs;
	CHECK(setup(&f, ""));
	script(NULL, 0);
	CHECK(open_stream(&f, &fs,
			  "PUT /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n"));
	fs.req_body = "abcd";
	fs.req_body_len = 4;
	run(&fs);
	CHECK(fb.body_written == 4 && !fs.t->req_sent);
	expire(fs.t);
	CHECK(fs.fail_status == 408);
	run(&fs);
	CHECK(fs.finished);
	teardown(&f);
}

int main(void)
{
	RUN(test_a_local_answer_goes_to_the_stream_and_is_counted);
	RUN(test_a_host_without_a_site_fails_with_404);
	RUN(test_a_proxied_response_streams_to_the_client);
	RUN(test_a_reset_before_any_answer_is_retried_on_the_other_server);
	RUN(test_a_post_that_reached_the_backend_is_not_sent_again);
	RUN(test_a_queued_request_gets_503_with_retry_after_when_its_time_is_up);
	RUN(test_a_backend_closing_in_the_middle_of_the_body_cuts_the_stream);
	RUN(test_a_client_that_stops_in_the_middle_of_its_body_gets_408);
	UNIT_EXIT();
}
