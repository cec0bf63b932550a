/*
 * A non-blocking stream socket and the transport under it.
 *
 * Layers: socket -> transport (struct xprt_ops: plain here, TLS in tls.c,
 * each with a context of its own in xprt_ctx) -> protocol (a front, or a
 * backend session) which owns the conn and gets its events through on_io.
 *
 * Readiness is edge-triggered: CONN_READABLE/CONN_WRITABLE are set by events
 * and cleared only when the socket says EAGAIN (or a short read/write shows it
 * is drained/full), so the owner can stop reading for backpressure and resume
 * later without any epoll_ctl.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/buf.h"
#include "core/loop.h"

enum conn_flags {
	CONN_READABLE = 1u << 0,
	CONN_WRITABLE = 1u << 1,
	CONN_CONNECTING = 1u << 2, /* connect() in progress */
	CONN_SHUT_WR = 1u << 3,    /* we sent FIN */
	CONN_RDHUP = 1u << 4,      /* the peer sent FIN: read until EOF even after a short read */
	/* A transport with a handshake (TLS): */
	CONN_HANDSHAKE = 1u << 5,	 /* not finished yet */
	CONN_READ_WANTS_WRITE = 1u << 6, /* reading must wait until the socket is writable */
	CONN_WRITE_WANTS_READ = 1u << 7, /* writing must wait until the socket is readable */
	CONN_SOCK_DRAINED = 1u << 8,	 /* the transport's last read from the socket was short */
};

struct conn;

/* A transport. Functions follow the I/O convention of common.h. */
struct xprt_ops {
	ssize_t (*recv)(struct conn *c, void *dst, size_t len);
	ssize_t (*sendv)(struct conn *c, const struct iovec *iov, int iovcnt);
	void (*shutdown_write)(struct conn *c);
	void (*close)(struct conn *c); /* frees the context and closes the socket */
	/* A step of the handshake: 0 done, 1 under way, or -errno. */
	int (*handshake)(struct conn *c);
	/* The conn is at a new address (conn_move()); NULL where nothing points at it. */
	void (*moved)(struct conn *c);
};

extern const struct xprt_ops xprt_plain;

struct conn {
	struct io_handler io;
	int fd; /* -1 once closed: late events for it are ignored */
	uint16_t flags;
	const struct xprt_ops *xprt;
	void *xprt_ctx;
	void (*on_io)(struct conn *c); /* readiness changed */
};

/* Takes ownership of a connected non-blocking fd and registers it. Returns 0 or -errno. */
int conn_attach(struct conn *c, struct loop *loop, int fd, void (*on_io)(struct conn *c));
/*
 * Starts a non-blocking connect to addr. Returns 0 when the connect is under
 * way or done (on_io tells; then call conn_finish_connect), or -errno when it
 * failed at once (the conn is left closed).
 */
int conn_connect(struct conn *c, struct loop *loop, const struct sockaddr *addr, socklen_t len,
		 void (*on_io)(struct conn *c));
/*
 * After an event of a connecting conn: 0 connected (and its transport's
 * handshake done), 1 still connecting, or -errno.
 */
int conn_finish_connect(struct conn *c);

/*
 * Moves the open conn from into to (its new owner's), its events going to
 * on_io from here; from is left closed. 0, or -errno with both closed.
 */
int conn_move(struct conn *to, struct conn *from, struct loop *loop, void (*on_io)(struct conn *c));

ssize_t conn_recv(struct conn *c, void *dst, size_t len);
ssize_t conn_sendv(struct conn *c, const struct iovec *iov, int iovcnt);
void conn_shutdown_write(struct conn *c);
/*
 * Reads what fits into b (taking a buffer from pool if it has none, and
 * moving its bytes to the front when little room is left). parsed and fwd
 * (NULL for none) are indices into b that move with its bytes. Returns bytes
 * read, 0 (would block, or no room), IO_EOF or -errno; an empty b is given
 * back to the pool unless bytes came.
 */
ssize_t conn_fill(struct conn *c, struct buf *b, struct buf_pool *pool, uint32_t *parsed,
		  uint32_t *fwd);
/* Closes the socket (safe to call twice). The owner frees the memory with loop_free_later(). */
void conn_close(struct conn *c);

#endif
