/*
 * Fronts: the protocol a client connection speaks (HTTP/1.1 now), chosen
 * per listener, or on a TLS listener by what ALPN settled in the
 * handshake. A front makes a session of each connection it is given and
 * one transaction (txn.h) per request on it; the proxy sees a session only
 * through the ops below, and never names a front: each front registers
 * itself under the name a listener or ALPN asks for.
 */
#ifndef SLUICE_FRONT_H
#define SLUICE_FRONT_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "core/common.h"

struct conn;
struct front_ops;
struct loop;
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

/* A client connection as the proxy hands it to a front. */
struct accepted {
	int fd;		   /* a plain socket, not yet attached; or -1 with: */
	struct conn *conn; /* a TLS conn whose handshake is done, to conn_move() into the session */
	const struct sockaddr *peer;
	uint64_t since_ms; /* accepted then: the first request's deadline counts from it */
};

struct front_ops {
	const char *name; /* "http/1.1": an ALPN token where there is one */
	/*
	 * Starts a session on connection a of l, which it owns from here
	 * (closed on failure). Returns 0 or -errno.
	 */
	int (*start)(struct proxy *px, struct listener *l, const struct accepted *a);
	/* Graceful stop: close now if nothing is under way, else once the current request is answered. */
	void (*drain)(struct session *s);
	/* Closes at once; what is under way is cut. */
	void (*close)(struct session *s);
	/* A new config was adopted (a reload, an API change); NULL: nothing to do. */
	void (*adopted)(struct session *s);
};

/*
 * For a front's start(): c takes connection a (attached or moved), its
 * events going to on_io. Returns 0, or -errno with a closed.
 */
int front_take(struct conn *c, struct loop *loop, const struct accepted *a, void (*on_io)(struct conn *c));
/* Closes connection a, which no session took. */
void front_drop(const struct accepted *a);

/* Before any front: the handshake of a TLS listener's connection, which then goes to the front ALPN chose. */
extern const struct front_ops tls_handshake_phase;

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
