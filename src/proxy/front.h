/*
 * Fronts: the protocol a client connection speaks (HTTP/1.1 now), chosen
 * per listener. A front makes a session of each connection it is given and
 * one transaction (txn.h) per request on it; the proxy sees a session only
 * through the ops below, and never names a front: each front registers
 * itself under the name a listener asks for (an ALPN token or a mode).
 */
#ifndef SLUICE_FRONT_H
#define SLUICE_FRONT_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "core/common.h"

struct conn;
struct front_ops;
struct listener;
struct proxy;

/* What every session starts with; the front's own state follows it. */
struct session {
	struct list link; /* in proxy.sessions, from proxy_session_open() to proxy_session_close() */
	const struct front_ops *front;
	struct proxy *px;
	struct listener *listener; /* one reference held while open */
	/* The client, as its transactions see it. */
	struct conn *conn;	/* its connection: TLS facts */
	char ip[INET6_ADDRSTRLEN];
	char addr[INET6_ADDRSTRLEN + 8]; /* ip:port, for logs */
};

struct front_ops {
	const char *name; /* "http/1.1" */
	/*
	 * Starts a session on an accepted, non-blocking socket of l. The
	 * session owns fd from here (closed on failure). Returns 0 or -errno.
	 */
	int (*start)(struct proxy *px, struct listener *l, int fd, const struct sockaddr *peer);
	/* Graceful stop: close now if nothing is under way, else once the current request is answered. */
	void (*drain)(struct session *s);
	/* Closes at once; what is under way is cut. */
	void (*close)(struct session *s);
};

/* The front registered under name, or NULL. */
const struct front_ops *front_find(const char *name);
void front_register(const struct front_ops *ops);

/* Registers ops before main() runs; ends the file of a front, after its ops table. */
#define FRONT_REGISTER(ops)                                                        \
	__attribute__((constructor)) static void front_register_##ops(void)       \
	{                                                                          \
		front_register(&ops);                                             \
	}

#endif
