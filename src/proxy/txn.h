/*
 * A transaction: one request and its response, whatever protocol the
 * client speaks. It decides where the request goes (hook, router, a
 * local answer), gets it a backend connection (queue, connect, retries,
 * replay), moves the bytes between the client's stream and the backend
 * session (back.h), and counts and logs what happened.
 *
 * It knows the client only through the session's facts (front.h) and the
 * stream ops below: the front that made it implements them, and the
 * transaction never sees the front's own structs. Its own timer carries
 * the queue, connect, response and idle deadlines; the backend's events
 * and queue grants come to it, and it asks the stream to run it (wake).
 */
#ifndef SLUICE_TXN_H
#define SLUICE_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "config/config.h"
#include "core/loop.h"
#include "http/http.h"
#include "upstream/upstream.h"

struct back;
struct generation;
struct session;
struct txn;

/* What one client stream gives its transaction. Those returning int: -1 means the stream is closed, and t with it. */
struct stream_ops {
	/*
	 * The request body bytes ready to go on, read from the client as far
	 * as there is room; as they came, framing included, when the backend
	 * takes the same framing (in a tunnel: every byte), else their data
	 * only (t->req_as_data: the back frames them). Sets
	 * t->req_complete once its last byte is among them. Returns 1 when
	 * something was read, 0, -1, or 2 when the body was invalid and the
	 * request failed (txn_fail(): its answer is queued).
	 */
	int (*read_body)(struct txn *t, struct iovec *body);
	/* The first n bytes of what read_body gave went on. */
	void (*consume_body)(struct txn *t, size_t n);
	/* Queues the head of a backend's response, interim (1xx) or final; false if it cannot be written. */
	bool (*send_head)(struct txn *t, const struct http_msg *rsp);
	/*
	 * Queues an answer of sluice's own with its body (which lives as long
	 * as t). Returns 0, or a status to fail with and *why.
	 */
	int (*answer)(struct txn *t, struct http_answer *a, const char *body, const char **why);
	/*
	 * Writes what is queued, then up to len bytes of response body (as
	 * they came from the back, or their data: t->rsp_as_data); *taken says
	 * how many of those went. Returns 1 when bytes went, 0, or -1.
	 */
	int (*send_body)(struct txn *t, const char *data, size_t len, size_t *taken);
	/* Bytes are queued for the client that it has not taken yet. */
	bool (*output_pending)(const struct txn *t);
	/*
	 * The request failed with status: answer it if nothing of a final
	 * response went out; else cut this request (HTTP/1: the connection).
	 * retry_after_s: a Retry-After to send with it, or 0. Returns 0 when
	 * an answer is queued, or -1.
	 */
	int (*fail)(struct txn *t, int status, uint32_t retry_after_s);
	/* The rest of the request body will never be read: the stream ends with this response. */
	bool (*ends_stream)(const struct txn *t);
	/* The response is out and the request in: the transaction is over, and freed. */
	void (*finish)(struct txn *t);
	/* A tunnel's client sent its last byte (after read_body took every other). */
	bool (*client_done)(const struct txn *t);
	/* A tunnel's backend is done: end the client's direction once what is queued is out. */
	void (*shutdown)(struct txn *t);
	/* Closes the stream at once; the transaction ends with it. */
	void (*close)(struct txn *t);
	/* Runs the stream, and so the transaction: something it waited for happened. */
	void (*wake)(struct txn *t);
};

/* "METHOD TARGET" of most requests fits in the transaction; a longer one is allocated. */
#define LOG_LINE_INLINE 192

/*
 * One request and its response. Taken from the proxy's pool by txn_new();
 * every field but the log line is cleared then.
 */
struct txn {
	struct session *s;	/* the client: its address, TLS facts and listener */
	const struct stream_ops *ops;
	struct generation *gen; /* the config it runs on, timeouts included; one reference held */
	struct timer timer;	/* its deadline: queue, connect, response or idle */
	struct loop_task wake;	/* a queue grant runs the stream from the loop */
	struct back *back;	/* the backend session, once proxied */
	struct bconn *bc;	/* the backend connection of the current attempt */
	struct server_rt *srv;
	const char *protocol;	/* as the client spoke: "HTTP/1.1", "HTTP/2.0"; set before txn_request() */
	/* The request body sent so far, kept (up to retry.buffer) to send it again. */
	struct {
		char *data;
		uint32_t len, cap, sent;
		bool keep; /* still keeping: the pool retries and it fitted so far */
	} replay;
	uint64_t body_consumed;	/* request body bytes taken from the client */

	bool req_complete;	/* the request's last byte was read */
	bool req_sent;		/* ... and all of it reached the backend */
	bool req_has_body;
	bool is_head;
	bool idempotent;	/* RFC 9110 9.2.2: may be sent again if an answer was lost */
	bool upgrade;		/* the request asks for a protocol switch */
	bool tunnel;		/* switched: bytes flow raw both ways */
	bool rsp_as_data;	/* the stream takes the response body's data, not its framing */
	bool req_as_data;	/* the stream gives the request body's data, not its framing */
	bool interim_sent;	/* a 1xx head went to the client */
	bool rsp_head_done;	/* the final response head is queued for the client */
	bool rsp_complete;	/* the response's last byte was read (or the local answer is queued) */
	bool connecting;
	bool rsp_started;	/* a response byte arrived: the request can no longer be replayed */
	bool back_eof;		/* the backend closed (or reset) its side */
	bool pooled;		/* it went to a pool (its counters count it) */
	bool own_held;		/* it yielded with work left: the time until it resumes is sluice's */
	bool started;		/* begun or failed: its timer runs */
	bool done;		/* counted and logged */
	bool body_waiting;	/* request body bytes read wait for the backend to take them */
	size_t pool;		/* index into the config's pools */
	struct upstream_request ureq; /* servers tried, place in the pool's queue */
	const struct route *route; /* NULL for a listener with a pool of its own */
	const struct site *site;   /* the route's */
	char *owned_body;	/* a hook's answer, copied out of Lua */
	const struct header_rules *hook_rules; /* while the request head is rewritten */
	int32_t forced_server;	/* a server the hook named, or -1 */
	uint16_t status;
	uint16_t last_status; /* what the last failed attempt would answer, and why */
	const char *last_why;
	/* Timings, in µs on the loop's clock (stats.h says what each histogram means). */
	uint64_t start_us;
	uint64_t own_us, own_mark_us; /* sluice's own time so far, and when it was last counted */
	uint64_t attempt_us;	      /* the current attempt got its connection */
	uint64_t backend_us;	      /* ... and its response head came this long after */
	uint64_t queued_us;	      /* it entered the pool's queue */
	uint64_t bytes_from_client;   /* its head; body_consumed is added at the end */
	uint64_t bytes_to_client;     /* counted by the stream as the client takes them */
	uint64_t phase_since_ms; /* queued, connect start, or request fully sent */
	uint64_t last_io_ms;
	char *log_line;		/* "METHOD TARGET" for the access log: log_inline or allocated */
	uint32_t log_method_len;
	/*
	 * Not cleared when a transaction starts: written before it is read.
	 * The last field, so that txn_new() clears every other one, whatever
	 * is added: an assertion in txn.c keeps it last.
	 */
	char log_inline[LOG_LINE_INLINE];
};

/*
 * Room for the front's own state of the request, in the transaction's
 * block: a connection between requests holds none of it.
 */
#define TXN_STREAM_ROOM 256
#define TXN_STREAM_OFFSET ((sizeof(struct txn) + 15) & ~(size_t)15)
static inline void *txn_stream(const struct txn *t) { return (char *)t + TXN_STREAM_OFFSET; }

/* A transaction for a request of session s on the proxy's current config; NULL when out of memory. */
struct txn *txn_new(struct session *s, const struct stream_ops *ops);
/* Ends t whatever its state (its access-log line is written if it had a request) and frees it. */
void txn_free(struct txn *t);

/*
 * The request head m is complete: decide where it goes (hook, route,
 * client-certificate policy, HTTPS redirect, a route's own answer) and
 * prepare what the backend gets. A local answer is queued on the stream.
 * Returns 0, or the status to fail with and *why. m is not used after.
 */
int txn_request(struct txn *t, const struct http_msg *m, const char **why);
/*
 * Starts what txn_request() decided: fail with status (if not 0), or send
 * the request to its pool (queued, or a connection asked for). Returns -1
 * when the stream closed.
 */
int txn_begin(struct txn *t, int status, const char *why);

/*
 * Moves what can move: connect, request bytes to the backend, response
 * bytes to the client. Returns 1 on progress, 0 on none, -1 when the
 * stream closed or the transaction finished (t is gone then).
 */
int txn_step(struct txn *t);

/* Fails t with status; see stream_ops.fail. Returns -1 when the stream closed. */
int txn_fail(struct txn *t, int status, const char *why);

/* After a run of the stream: counts sluice's own time, and whether it yielded with work left. */
void txn_ran(struct txn *t, bool yielded);

/* "METHOD TARGET", or "-" before the head came. */
const char *txn_log_line(const struct txn *t);
/* Those of the config the transaction runs on. */
const struct cfg_timeouts *txn_timeouts(const struct txn *t);
const struct cfg_limits *txn_limits(const struct txn *t);

/* For the back and the tunnel. */
uint64_t txn_now_ms(const struct txn *t);
/* Why an attempt on a backend failed, as retry.on names it. */
enum txn_failure { FAIL_CONNECT, FAIL_ERROR, FAIL_TIMEOUT, FAIL_STATUS };
/* An attempt failed: retry it elsewhere if allowed, else fail with status. Returns -1 when the stream closed. */
int txn_backend_failed(struct txn *t, int status, const char *why, enum txn_failure cause);

/* The tunnel after a 101 (tunnel.c): bytes both ways until both sides are done. Returns as txn_step(). */
int tunnel_step(struct txn *t);
/* For the tunnel: reads the backend (its close is only noted), sends what it read as it came. */
int txn_tunnel_read(struct txn *t);
int txn_tunnel_send(struct txn *t);
/* Response bytes wait for the client. */
bool txn_response_owed(const struct txn *t);

#endif
