/*
 * HTTP/1.1 proxying: the session of one client connection, its
 * transactions, and the backend connections they borrow.
 *
 * Both directions go through the h1 codec. Heads are rewritten (hop-by-hop
 * headers out, X-Forwarded-* in); bodies are forwarded as the bytes that
 * came, framing included, once the codec has checked them, so nothing is
 * re-encoded and nothing is buffered beyond one buffer per direction. The
 * exceptions are framing an HTTP/1.0 client cannot read (chunked: only the
 * data goes) and a body that ends at the backend's close (chunked for an
 * HTTP/1.1 client, so that its connection can stay).
 */
#ifndef SLUICE_HTTP1_H
#define SLUICE_HTTP1_H

#include <sys/socket.h>

#include "control/worker.h"

/* Starts a session on an accepted, non-blocking socket; the session owns fd (closed on failure). */
int http1_accept(struct worker *w, int fd, const struct sockaddr *peer, struct listener *l);
/* Graceful stop: idle sessions close now, busy ones after their current response. */
void http1_drain(struct worker *w);
/* Closes every session at once (end of a graceful stop's deadline, or exit). */
void http1_close_all(struct worker *w);
/* The size of a transaction, for the worker's pool of them. */
size_t http1_txn_size(void);

#endif
