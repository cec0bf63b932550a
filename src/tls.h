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

#include "conn.h"

struct tls_server;

struct tls_server_opts {
	int min_version, max_version; /* TLS1_2_VERSION, TLS1_3_VERSION */
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

/* Makes an attached, just accepted conn a TLS server connection. 0 or -ENOMEM (the conn stays plain). */
int tls_accept(struct conn *c, struct tls_server *ts);

extern const struct xprt_ops xprt_tls;

static inline bool conn_is_tls(const struct conn *c) { return c->xprt == &xprt_tls; }
/* Of a TLS conn: "TLSv1.3", and the name the client asked for (NULL: none). */
const char *tls_protocol(const struct conn *c);
const char *tls_sni(const struct conn *c);

/*
 * Session tickets are sealed with a process-wide key that changes every
 * hour and on this call (a reload); the two before it still open tickets.
 */
void tls_rotate_ticket_keys(void);

#endif
