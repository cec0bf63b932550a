/*
 * HTTP/2 (RFC 9113), the server's side of a connection: framing, HPACK,
 * flow control and the protocol's own checks of a request head (no
 * uppercase names, no CR, LF or NUL, no connection-specific fields,
 * pseudo-headers first, once, and known; a content-length that agrees
 * with the DATA). libnghttp2 does the work behind these calls, so that
 * another version of it (or another library) is a change of h2.c alone.
 *
 * Bytes in (h2_recv), events out through struct h2_events, frames out as
 * bytes to write (h2_pending). Pure: no sockets, no clock, no config.
 */
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"

struct h2;

struct h2_settings {
	uint32_t max_concurrent_streams;
	uint32_t initial_window;  /* of each stream the client opens: request body bytes in flight */
	uint32_t max_header_list; /* decoded size of a request head (names, values, 32 each) */
	/*
	 * Protocol mistakes a connection may make (each a "glitch": an empty
	 * DATA frame that ends nothing, a frame the codec refuses, a stream it
	 * has to reset) before it ends with ENHANCE_YOUR_CALM: cheap frames
	 * that cost the server work are how the 2019 and 2025 floods work.
	 */
	uint32_t max_glitches;
};

/* A field to send. */
struct h2_field {
	const char *name, *value;
	size_t name_len, value_len;
};

/* Error codes (RFC 9113 7) the front sends. */
enum h2_error {
	H2_NO_ERROR = 0x0,
	H2_PROTOCOL_ERROR = 0x1,
	H2_INTERNAL_ERROR = 0x2,
	H2_REFUSED_STREAM = 0x7,
	H2_CANCEL = 0x8,
	H2_ENHANCE_YOUR_CALM = 0xb,
};

/*
 * What the client did. `stream` is what stream_open returned for the
 * stream; callbacks that return int return 0, or a reset code for the
 * stream (enum h2_error).
 */
struct h2_events {
	/* A request's head begins on stream id: its state, or NULL to refuse it (REFUSED_STREAM). */
	void *(*stream_open)(void *ud, int32_t id);
	/* A field of its head, pseudo-headers included, in the order they came. */
	int (*header)(void *ud, void *stream, const char *name, size_t name_len, const char *value,
		      size_t value_len);
	/* The head is whole; end_stream: no body follows. */
	int (*head_done)(void *ud, void *stream, bool end_stream);
	/* Body bytes: the client may send more once h2_consumed() gives them back. */
	int (*data)(void *ud, void *stream, const char *data, size_t len);
	/* The body's last byte came. */
	int (*body_done)(void *ud, void *stream);
	/*
	 * Response body for the DATA frame being made: up to len bytes into
	 * buf. Returns the bytes given (*eof with the last of them), or -1
	 * when none are ready yet (h2_resume() once some are).
	 */
	ssize_t (*body)(void *ud, void *stream, char *buf, size_t len, bool *eof);
	/* The stream is over: error is H2_NO_ERROR when it ended well, else why it was reset (by either side). */
	void (*stream_close)(void *ud, void *stream, uint32_t error);
};

/*
 * A request head built from a stream's fields, as HTTP/1.1 would have
 * carried it: Host from :authority, one Cookie field (RFC 9113 8.2.3), the
 * framing its body takes. The codec has checked what RFC 9113 asks; these
 * check what a translation to HTTP/1.1 needs besides (whitespace in
 * :method or :path, a host that disagrees with :authority).
 */
struct h2_head {
	struct http_msg *m; /* built in its own storage */
	uint32_t max;	    /* h2_max_header_list */
	uint32_t bytes;	    /* the head's size as RFC 9113 6.5.2 counts it */
	uint16_t status;    /* a mistake to answer once the head is whole (431), or 0 */
	const char *why;
	bool has_content_length;
};

/* Starts h on m (cleared here) for a head of at most max bytes. */
void h2_head_init(struct h2_head *h, struct http_msg *m, uint32_t max);
/* A field, in the order the codec gives them. Returns 0, or a reset code for the stream. */
int h2_head_field(struct h2_head *h, const char *name, size_t nlen, const char *value, size_t vlen);
/* The head is whole; end_stream: no body follows. Returns 0, or a reset code. */
int h2_head_finish(struct h2_head *h, bool end_stream);

/* A server session with settings s, whose SETTINGS frame is queued. NULL when out of memory. */
struct h2 *h2_server_new(const struct h2_settings *s, const struct h2_events *ev, void *ud);
void h2_free(struct h2 *h);

/*
 * Takes len bytes from the client. Returns how many were taken, or -1 on a
 * connection error: a GOAWAY is queued where one can still be sent; send
 * what is pending, then close.
 */
ssize_t h2_recv(struct h2 *h, const char *in, size_t len);
/*
 * The next bytes to send: *out is valid until the next call. Returns
 * their length, 0 when nothing is due, or -1 on a fatal error.
 */
ssize_t h2_pending(struct h2 *h, const char **out);
/* The session has more to read or to write; neither: it is over (after a GOAWAY, say). */
bool h2_alive(const struct h2 *h);

/* Queues a response head (status and fields); body: DATA follows, taken through events.body. */
int h2_respond(struct h2 *h, int32_t id, unsigned status, const struct h2_field *f, size_t n, bool body);
/* Queues a 1xx head. */
int h2_interim(struct h2 *h, int32_t id, unsigned status, const struct h2_field *f, size_t n);
/* Body bytes are ready again for a stream whose events.body said none were. */
void h2_resume(struct h2 *h, int32_t id);
/* n body bytes of stream id were used up: the client may send that many more. */
void h2_consumed(struct h2 *h, int32_t id, size_t n);
/* Resets stream id with error. */
void h2_reset(struct h2 *h, int32_t id, enum h2_error error);
/* GOAWAY: graceful (streams up to the last one begun still finish) with H2_NO_ERROR, else at once. */
void h2_goaway(struct h2 *h, enum h2_error error);

#endif
