/*
 * The backend session of a transaction: the request written to a backend
 * connection and the response read from it. Every backend speaks
 * HTTP/1.1 today (h1_back.c); the transaction makes the decisions
 * (retries, what a status means, when it is over) and the back does the
 * codec and the I/O, one attempt at a time.
 */
#ifndef SLUICE_BACK_H
#define SLUICE_BACK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "http/http.h"

struct back;
struct txn;

/* The size of a backend session: each transaction has room for one after it. */
size_t back_size(void);

/* Sets t->back up for the request whose head is m, and builds what the backend gets; false if it does not fit. */
bool back_prepare(struct txn *t, const struct http_msg *m);
/* Frees what t->back holds (the connection is the transaction's to give back). */
void back_release(struct txn *t);
/* Forgets the failed attempt's response; the request (head and replay) is kept to send again. */
void back_reset(struct txn *t);

/*
 * Writes to the backend what the request still owes: the rest of the
 * head, body bytes a replay owes, then body. Returns the bytes of body
 * taken (with *progress), or -errno when the connection failed.
 */
ssize_t back_write(struct txn *t, const struct iovec *body, bool *progress);
/* The head and the replay copy went out whole. */
bool back_request_out(const struct txn *t);
/* The response is under way: what was kept of the request for a replay is no longer needed. */
void back_request_drop(struct txn *t);

/* Reads from the backend. Returns bytes read, 0, IO_EOF or -errno (its response buffer is released when empty). */
ssize_t back_read(struct txn *t);

/* What back_parse() found. */
enum back_event {
	BACK_NONE,    /* nothing new */
	BACK_HEAD,    /* a response head: *head holds it until the next call */
	BACK_BODY,    /* body bytes checked: back_body() has them */
	BACK_ERROR,   /* the response is invalid; *why says how */
};
/* Parses the next response bytes. t->rsp_complete is set at the last byte. */
enum back_event back_parse(struct txn *t, const struct http_msg **head, const char **why);
/* The response head back_parse() returned was taken (queued for the client, or dropped). */
void back_head_done(struct txn *t, const struct http_msg *head);
/* The backend closed: true if that ends the response body properly (a body until EOF). */
bool back_eof_ends_body(struct txn *t);

/* The response bytes checked and ready for the client. */
size_t back_body(const struct txn *t, const char **data);
void back_body_consume(struct txn *t, size_t n);
/* A tunnel: every byte read is ready as it came. */
void back_body_raw(struct txn *t);

/* The connection may carry another request once this exchange is over. */
bool back_reusable(const struct txn *t);

#endif
