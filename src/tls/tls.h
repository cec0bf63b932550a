/*
 * TLS with OpenSSL 3, as a transport under struct conn (xprt_tls): the
 * protocol above reads and writes plain bytes and never sees a record.
 *
 * A TLS listener has a struct tls_server, built with its config: one
 * SSL_CTX and every certificate it serves, with tables from the names in
 * them (SAN, else CN) to the certificates. The certificate of a handshake is
 * chosen by SNI: the exact name, then a wildcard one label deep, then the
 * listener's first certificate; a name may have an RSA and an ECDSA one and
 * OpenSSL picks by what the client supports. Read-only once built. The
 * SSL_CTX owns the tls_server, and every connection holds a reference to
 * the SSL_CTX: a reload frees the old one when its last connection goes.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/conn.h"

struct tls_server;

/* Whether a client certificate is asked for, and whether one is a must. */
enum tls_verify {
	TLS_VERIFY_INHERIT, /* a site without a policy of its own: the listener's */
	TLS_VERIFY_OFF,
	TLS_VERIFY_OPTIONAL, /* asked for; a client without one, or with a bad one, is let in */
	TLS_VERIFY_REQUIRED, /* a handshake without a certificate the CA signed fails */
};

struct tls_server_opts {
	int min_version, max_version; /* TLS1_2_VERSION, TLS1_3_VERSION */
	enum tls_verify verify;	      /* the listener's policy */
	const char *client_ca;	      /* PEM file of the CAs client certificates must chain to */
	bool h2;		      /* ALPN offers h2 before http/1.1 */
};

/* What building a tls_server has to say: the first error, and warnings (an expired certificate). */
struct tls_report {
	char *err;
	size_t errlen;
	void (*warn)(void *ud, const char *msg);
	void *ud;
};

struct tls_server *tls_server_new(const struct tls_server_opts *o, struct tls_report *r);
/*
 * Loads a PEM certificate, the chain after it in the same file, and its
 * private key (key NULL: from the certificate's file). Returns 0, or -1 with
 * the reason in r->err: a missing file, no key, a key that does not match.
 */
int tls_server_add_cert(struct tls_server *ts, const char *cert, const char *key, struct tls_report *r);
/*
 * Loads every *.crt and *.pem of dir, in name order, each with the key of
 * the same name and .key, or the key in its own file. 0 or -1 as above.
 */
int tls_server_add_dir(struct tls_server *ts, const char *dir, struct tls_report *r);
/* Builds the name tables once every certificate is in. 0 or -1 as above. */
int tls_server_finish(struct tls_server *ts, struct tls_report *r);
size_t tls_server_ncerts(const struct tls_server *ts);
void tls_server_free(struct tls_server *ts);

/*
 * The policy of the site a TLS name (SNI) leads to, asked during the
 * handshake of c: TLS_VERIFY_INHERIT for the listener's. host is in lookup
 * form (lower case, no trailing dot).
 */
typedef enum tls_verify (*tls_site_policy)(struct conn *c, const char *host, size_t len);

/*
 * Makes an attached, just accepted conn a TLS server connection; site_policy
 * may be NULL (the listener's policy for every name). 0 or -ENOMEM (the conn
 * stays plain).
 */
int tls_accept(struct conn *c, struct tls_server *ts, tls_site_policy site_policy);

/*
 * TLS to the servers of a pool: one SSL_CTX, the name to check (and send as
 * SNI), and the session of each server's last handshake, offered for
 * resumption. Owned by its SSL_CTX as a tls_server is.
 */
struct tls_client;

struct tls_client_opts {
	const char *ca;		  /* PEM file of trusted CAs; NULL: the system's store */
	const char *name;	  /* NULL: each server's host as written in its address */
	const char *cert, *key;	  /* a client certificate for the servers to check; NULL: none */
	bool verify;		  /* false: any certificate is taken (testing only) */
	size_t nsessions;	  /* sessions kept to resume: one per server and thread */
};

struct tls_client *tls_client_new(const struct tls_client_opts *o, struct tls_report *r);
void tls_client_free(struct tls_client *tc);

/*
 * Makes conn c, connecting or connected to a server of the pool at addr
 * ("host:port" as configured), a TLS client; conn_finish_connect() then
 * does the handshake. session (below nsessions) names the slot of the
 * session to resume and keep: the server's for the calling thread. 0 or
 * -ENOMEM (c stays plain).
 */
int tls_connect(struct conn *c, struct tls_client *tc, size_t session, const char *addr);
/* Why the handshake of c failed: the certificate's fault, or the protocol's. */
const char *tls_failure(const struct conn *c);

extern const struct xprt_ops xprt_tls;

static inline bool conn_is_tls(const struct conn *c) { return c->xprt == &xprt_tls; }
/* What a TLS conn's handshake settled, once it is done. Strings live as long as the conn. */
struct tls_info {
	const char *protocol; /* "TLSv1.3" */
	const char *cipher;
	const char *sni;      /* in lookup form; NULL: none sent, or not a host name */
	const char *verify;   /* client certificate: "SUCCESS", "FAILED", or "NONE" */
	/* Of the client's certificate, or NULL without one: RFC 2253 names, hex serial, SHA-256 hex. */
	const char *subject, *issuer, *serial, *fingerprint;
};

/* The protocol ALPN settled, into out; false when none was (or it does not fit). */
bool tls_alpn(const struct conn *c, char *out, size_t cap);
/* Computed on the first call, kept with the conn. NULL if out of memory. */
const struct tls_info *tls_info(struct conn *c);
/* The client-certificate policy the handshake applied (never INHERIT). */
enum tls_verify tls_applied_verify(const struct conn *c);

/*
 * Session tickets are sealed with a process-wide key that changes every
 * hour and on this call (a reload); the two before it still open tickets.
 */
void tls_rotate_ticket_keys(void);

#endif
