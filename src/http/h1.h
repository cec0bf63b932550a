/*
 * The HTTP/1.1 codec: bytes to a struct http_msg, parsed by llhttp in strict
 * mode plus the checks RFC 9112 asks of a server that llhttp leaves out, and
 * a struct http_msg back to the bytes of a head. Pure: no sockets, no loop,
 * no config; fuzzed (tests/fuzz/) and unit-tested alone.
 *
 * A parser reads one connection's messages in order. Heads are parsed in
 * place, in the buffer they arrived in; bodies are checked as they pass,
 * so that a proxy can forward them as they came, framing included.
 */
#ifndef SLUICE_H1_H
#define SLUICE_H1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"

struct h1_limits {
	uint32_t max_line; /* a request target longer than this: 414 */
	uint32_t max_head; /* a head larger than this: 431 (a response's: 502) */
};

enum h1_result {
	H1_ERROR = -1, /* error_status and error say why; nothing more can be read from this peer */
	H1_AGAIN = 0,  /* more bytes are needed */
	H1_DONE = 1,   /* the head is complete */
};

struct h1_parser {
	llhttp_t llh;
	struct h1_limits lim;
	struct http_msg *msg; /* the head being parsed */
	uint32_t fed;	      /* bytes of the current head already parsed */
	bool is_request;
	bool head_request;    /* a response parser whose request was HEAD: no body */
	bool dechunk;	      /* a response parser: hand out only the body's data */
	bool chunked;	      /* the current message's body is chunked */
	bool in_name;	      /* the last header name span is still open */
	bool too_many;	      /* more than HTTP_MAX_HEADERS */
	bool line_too_long;
	bool head_done;
	bool msg_done; /* the last byte of the current message was parsed */
	char *out;     /* while dechunking: where the next body data goes */
	uint16_t error_status;
	const char *error;
};

void h1_request_parser_init(struct h1_parser *p, const struct h1_limits *lim);
/*
 * A parser for the responses to one request: head_request when it was HEAD
 * (no response then has a body), dechunk to have chunked bodies reduced to
 * their data (for an HTTP/1.0 client).
 */
void h1_response_parser_init(struct h1_parser *p, const struct h1_limits *lim, bool head_request,
			     bool dechunk);

/*
 * Parses the head that starts at base and has len bytes so far; the first
 * p->fed of them were parsed by an earlier call (base may have moved since,
 * with its bytes). H1_DONE: msg holds the head, msg->head_len bytes from
 * base, valid while those bytes stay; p->msg_done when the message has no
 * body. Each head needs a call with p->fed == 0 first: after H1_DONE, the
 * next head of the connection (a response after a 1xx) starts afresh.
 */
enum h1_result h1_parse_head(struct h1_parser *p, struct http_msg *msg, const char *base,
			     size_t len);

/*
 * Checks the body bytes data[0, len) of the message whose head was parsed
 * last. Returns how many belong to it (fewer than len when it ended there:
 * the rest belongs to the next message), with p->msg_done at its end; or -1
 * with error_status and error. Called with len 0 it may still end a message
 * whose body is empty. While dechunking, the body's data (a chunked body's
 * without its framing) is also copied to *out, which is advanced: *out ends
 * the data whatever the framing. *out may overlap data but not lie after it.
 */
ssize_t h1_parse_body(struct h1_parser *p, const char *data, size_t len, char **out);

/* The peer closed the connection: true if that properly ends the message (a body until EOF). */
bool h1_parse_eof(struct h1_parser *p);

/* What the Connection header of a written head says. */
enum h1_connection { H1_CONN_NONE, H1_CONN_CLOSE, H1_CONN_KEEP_ALIVE, H1_CONN_UPGRADE };

/* How the body framing of a forwarded message changes on the way. */
enum h1_reframe {
	H1_REFRAME_NONE,    /* as it came: Content-Length or Transfer-Encoding pass */
	H1_REFRAME_DECHUNK, /* chunked, to an HTTP/1.0 client: Transfer-Encoding goes, a close ends it */
	H1_REFRAME_CHUNK,   /* until EOF, to an HTTP/1.1 client: chunked, so its connection can stay */
};

struct h1_head_opts {
	const struct http_edit *edit;
	enum h1_connection connection;
	enum h1_reframe reframe;
	uint8_t version_minor; /* of a request line: HTTP/1.<minor> */
};

/*
 * Write the head of m as sluice forwards it into out[0, cap): hop-by-hop
 * headers out, the edit's rules and (for a request) X-Forwarded-* in.
 * Return its length, or -1 if it does not fit.
 */
ssize_t h1_write_request(char *out, size_t cap, const struct http_msg *m,
			 const struct h1_head_opts *o);
ssize_t h1_write_response(char *out, size_t cap, const struct http_msg *m,
			  const struct h1_head_opts *o);
/* The head of a response sluice makes itself; -1 if it does not fit. */
ssize_t h1_write_answer(char *out, size_t cap, const struct http_answer *a,
			enum h1_connection connection);

/* The longest chunk-size line h1_chunk_line writes: 16 hex digits and CRLF. */
#define H1_CHUNK_LINE_MAX 18
/* Writes the line that starts a chunk of n bytes ("1f4\r\n"); returns its length. */
size_t h1_chunk_line(char *out, size_t n);

#endif
