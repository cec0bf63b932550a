/*
 * Version-independent HTTP: the message a codec produces (h1 now, h2 later),
 * the rules that hold whatever the version (which headers are hop-by-hop,
 * which ones sluice owns, X-Forwarded-*, header validity, reason phrases),
 * and the edits a route or a hook asks for. Pure functions: no sockets, no
 * loop, no config.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header fields per message at most; more is 431 (a request) or 502 (a response). */
#define HTTP_MAX_HEADERS 128

/* A span of a message head, as offsets from its first byte (the head may move, whole). */
struct http_span {
	uint32_t off, len;
};

/* A part of a field value, wherever its bytes are. */
struct http_part {
	const char *p;
	size_t len;
};

/*
 * The header names sluice acts on, told apart once per head (by
 * http_classify) so that forwarding a header costs no string compare.
 */
enum http_hdr {
	HDR_OTHER,
	HDR_HOST,
	HDR_CONNECTION,
	HDR_KEEP_ALIVE,
	HDR_TE,
	HDR_TRAILER,
	HDR_UPGRADE,
	HDR_PROXY, /* Proxy-Connection and every other Proxy-* */
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_X_FORWARDED_FOR,
	HDR_X_REAL_IP,
	HDR_X_FORWARDED_PROTO,
	HDR_X_CLIENT_CERT, /* X-Client-Verify, -Subject, -Issuer, -Serial, -Fingerprint */
	HDR_COOKIE,
};

struct http_header {
	struct http_span name, value; /* value without leading and trailing whitespace */
	uint8_t id;		      /* enum http_hdr */
};

/* What sluice treats differently; the name itself is in http_msg.method_name. */
enum http_method {
	HTTP_METHOD_OTHER,
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_POST,
	HTTP_METHOD_PUT,
	HTTP_METHOD_DELETE,
	HTTP_METHOD_OPTIONS,
	HTTP_METHOD_TRACE,
	HTTP_METHOD_CONNECT,
};

/* How the body of a message is delimited (RFC 9112 6.3). */
enum http_framing {
	HTTP_FRAMING_NONE,	/* no body */
	HTTP_FRAMING_LENGTH,	/* content_length bytes */
	HTTP_FRAMING_CHUNKED,	/* chunked transfer coding, trailers allowed */
	HTTP_FRAMING_UNTIL_EOF, /* a response whose body ends when the connection closes */
};

/*
 * One message head. Spans are offsets from base: for a head the HTTP/1
 * codec parsed, the input bytes, which the owner keeps until it is done
 * with the message; for one built field by field (http_msg_add_header():
 * fields decoded by HPACK do not lie in one buffer), storage of the
 * message's own, which may move as it grows without moving any span.
 */
struct http_msg {
	const char *base;
	uint32_t head_len;
	bool is_request;
	uint8_t version_minor; /* HTTP/1.<minor>; HTTP/2 reads as 1 */
	bool keep_alive;       /* the sender allows another message on its connection */
	bool upgrade;	       /* a request asks to switch protocols; a 101 does switch */
	bool absolute_form;    /* the request target named its authority (RFC 9112 3.2.2) */
	bool connection_names; /* a Connection header names headers sluice does not own */
	enum http_method method;
	uint16_t status;		/* a response's */
	enum http_framing framing;
	uint64_t content_length;	/* with HTTP_FRAMING_LENGTH */
	struct http_span method_name;	/* a request's */
	struct http_span target;	/* a request's, as sent */
	struct http_span path;		/* a request's origin-form target: path and query; "*" for OPTIONS * */
	struct http_span authority;	/* Host, or the authority of an absolute-form target */
	struct http_span reason;	/* a response's */
	/* A built message's storage (base), or NULL; a parsed head has none (the codec clears it). */
	char *store;
	uint32_t store_len, store_cap;
	uint32_t nh;
	struct http_header h[HTTP_MAX_HEADERS];
};

/*
 * Building a message from fields that arrive apart. http_msg_copy() puts
 * len bytes of s in m's storage and gives their span; false when the
 * storage would pass max_bytes (the limit of a head, as for a parsed one)
 * or memory is short. http_msg_add_header() adds a field, classified as
 * the codec classifies them; false also past HTTP_MAX_HEADERS.
 * http_msg_free() frees the storage (nothing for a parsed head).
 */
bool http_msg_copy(struct http_msg *m, const char *s, size_t len, uint32_t max_bytes,
		   struct http_span *out);
bool http_msg_add_header(struct http_msg *m, const char *name, size_t nlen, const char *value,
			 size_t vlen, uint32_t max_bytes);
void http_msg_free(struct http_msg *m);

static inline const char *http_str(const struct http_msg *m, struct http_span s)
{
	return m->base + s.off;
}
/* Which of the names sluice acts on name is. */
enum http_hdr http_header_id(const char *name, size_t len);
/* Sets the id of each header of m, and m->connection_names. */
void http_classify(struct http_msg *m);

/* The first header called name (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_msg *m, const char *name, size_t len);

bool http_method_idempotent(enum http_method m); /* RFC 9110 9.2.2 */
/* The method called name (case matters: RFC 9110 9.1). */
enum http_method http_method_named(const char *name, size_t len);
/* The reason phrase sluice writes for a status of its own ("" if it has none). */
const char *http_reason(unsigned status);

/* A field name is a token (RFC 9110 5.6.2). */
bool http_header_name_valid(const char *name, size_t len);
/*
 * A value sluice writes (and a reason phrase it forwards) holds visible
 * characters, obs-text, spaces and tabs only (RFC 9110 5.5, RFC 9112 4):
 * no line break, NUL or other control character that a strict peer would
 * refuse or a lenient one misread.
 */
bool http_header_value_valid(const char *value, size_t len);
/* Does the comma-separated list value contain token (case-insensitive)? */
bool http_list_has_token(const char *value, size_t len, const char *token, size_t tlen);

/*
 * The headers sluice owns: those that frame the message or manage the
 * connection (Content-Length, Transfer-Encoding, Connection, Keep-Alive,
 * TE, Trailer, Upgrade, Proxy-Connection and every other Proxy-*). sluice
 * writes or removes them itself on every hop; a wrong one from a config or
 * a hook would desynchronise a client or a backend, so neither may touch
 * them.
 */
bool http_header_owned(const char *name, size_t len);

/*
 * Whether header i of m stays on this hop only (RFC 9110 7.6.1): the
 * connection-management headers above, Upgrade unless keep_upgrade, and
 * whatever a Connection header names; never Content-Length,
 * Transfer-Encoding or Host, whatever Connection says (dropping framing on
 * a client's word would desynchronise us from the backend).
 */
bool http_header_hop_by_hop(const struct http_msg *m, uint32_t i, bool keep_upgrade);

/* Whether sluice sets this request header from what it saw of the connection. */
bool http_header_forwarding(enum http_hdr id);

/* A header as configuration or a hook writes it. */
struct header_kv {
	const char *name, *value;
	uint32_t name_len, value_len;
};

/* Header edits of a route or a hook, applied to a request or a response. */
struct header_rules {
	const struct header_kv *set;	/* replace any header of that name */
	const struct header_kv *add;	/* append, keeping those there */
	const struct header_kv *remove; /* value unused */
	uint32_t nset, nadd, nremove;
};

/* Who a client's certificate says it is, for X-Client-*: NULL fields are not sent. */
struct http_client_cert {
	const char *verify; /* "SUCCESS", "FAILED", or "NONE" */
	const char *subject, *issuer, *serial, *fingerprint;
};

/* How a forwarded message is changed on its way through. */
struct http_edit {
	const struct header_rules *rules[2]; /* a route's and a hook's, or NULL */
	const char *client_ip;		     /* a request: X-Forwarded-For, X-Real-IP */
	const char *proto;		     /* a request: X-Forwarded-Proto ("http") */
	const struct http_client_cert *cert; /* a request over TLS: X-Client-*; NULL for plain */
	bool keep_upgrade;		     /* a protocol switch is under way: Upgrade passes */
};

/* Is name set or removed by one of the edit's rules? Then the rules decide it. */
bool http_edit_owns(const struct http_edit *e, const char *name, size_t len);
bool http_kv_names(const struct header_kv *kv, uint32_t n, const char *name, size_t len);

/*
 * Receives one field of a message as the next hop gets it: id as
 * http_header_id() tells it (HDR_OTHER for what sluice adds), the value in
 * nparts parts to be joined as they are (X-Forwarded-For is the only field
 * in more than one).
 */
typedef void http_field_fn(void *ctx, enum http_hdr id, const char *name, size_t nlen,
			   const struct http_part *value, int nparts);

/*
 * The header policy, the same whatever protocol serializes the result:
 * calls fn for each field of m that the next hop gets, in this order: m's
 * end-to-end fields that no rule sets or removes (hop-by-hop ones out,
 * Upgrade only with keep_upgrade; for a request, the client's own
 * X-Forwarded-*, X-Real-IP and X-Client-* out, and Host when an
 * absolute-form target names the authority), the rules' set and add
 * fields, then for a request X-Forwarded-For (earlier hops, then the
 * client), X-Real-IP, X-Forwarded-Proto, X-Client-* and the absolute-form
 * authority as Host, each unless a rule decides it. Content-Length and
 * Transfer-Encoding are passed as they came: re-framing them is the
 * serializer's, and so is the connection's own Connection header.
 */
void http_edit_fields(const struct http_msg *m, const struct http_edit *e, http_field_fn *fn,
		      void *ctx);

/* The value of cookie name in a Cookie header value ("a=1; b=2"), or NULL. */
const char *http_cookie_value(const char *v, size_t len, const char *name, size_t nlen,
			      size_t *vlen);

/* A response sluice makes itself: a route's answer or redirect, a hook's, or an error. */
struct http_answer {
	uint16_t status;
	const struct header_kv *headers; /* as configured; the rules below edit them */
	uint32_t nheaders;
	const char *location; /* Location, or NULL; location_tail is appended to it */
	const char *location_tail;
	uint32_t location_len, location_tail_len;
	uint32_t retry_after_s;		  /* Retry-After, or 0 */
	const struct header_rules *rules; /* the route's response rules, or NULL */
	uint32_t body_len;		  /* Content-Length (none for 204) */
};

/*
 * The fields of an answer before its framing, by the same policy: its
 * configured fields that its rules do not set or remove, Location, the
 * rules' set and add fields, and Retry-After. Content-Length (body_len) is
 * the serializer's.
 */
void http_answer_fields(const struct http_answer *a, http_field_fn *fn, void *ctx);

#endif
