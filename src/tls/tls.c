#include "tls/tls.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/host.h"
#include "core/log.h"

/* Mozilla's "intermediate" profile (v5.7), less its DHE suites: no DH parameters to ship. */
#define TLS12_CIPHERS                                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_CIPHERS "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"
#define SESSION_TIMEOUT_S 7200
#define TICKET_KEY_LIFE_S 3600
/* Small pieces of one write are gathered into a record of up to this. */
#define GATHER_MAX 16384

/* Slots of a name: RSA (and any other kind of key) and ECDSA, side by side. */
enum { SLOT_RSA, SLOT_EC, NSLOTS };

struct tls_cert {
	X509 *x509;
	EVP_PKEY *key;
	STACK_OF(X509) *chain;
	const char *file; /* for messages */
};

/* The certificates of one name, + 1; 0: none of that kind. */
struct tls_name {
	uint32_t cert[NSLOTS];
};

/* A name found in a certificate, until the tables are built. */
struct found_name {
	const char *name; /* lower case; "*.x" stays as written */
	uint32_t len, cert;
};

struct tls_server {
	SSL_CTX *ctx;
	struct arena arena;
	struct tls_cert *certs;
	size_t ncerts, certs_cap;
	struct found_name *found;
	size_t nfound, found_cap;
	struct tls_name *names;
	struct host_table exact, wildcard; /* -> index into names; "*.example.com" as "example.com" */
	struct tls_name fallback;	   /* the listener's first certificate, and its name's other kind */
	enum tls_verify verify;
	bool h2; /* ALPN offers h2 */
	/* While certificates load: one decoder for every key (making one per key is most of the time). */
	OSSL_DECODER_CTX *key_decoder;
	EVP_PKEY *decoded;
};

/* A TLS conn's context (conn.xprt_ctx). */
struct tls_conn {
	SSL *ssl;
	tls_site_policy site_policy;
	enum tls_verify applied;
	struct tls_info *info;
	size_t server;	 /* a client's: the server's index in its pool */
	const char *why; /* a client's failed handshake: a static string */
};

struct tls_client {
	SSL_CTX *ctx;
	char *name;
	bool verify;
	/* The last session each server gave, to resume: a slot per server and thread. */
	SSL_SESSION **sessions;
	size_t nsessions;
};

static int ctx_ex_index = -1, client_ex_index = -1;
static BIO_METHOD *conn_bio_method;

static void report_error(struct tls_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_error(struct tls_report *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	/* The first reason OpenSSL gives says what was wrong with the file. */
	unsigned long e = ERR_peek_error();
	if (e && n >= 0 && (size_t)n < r->errlen)
		snprintf(r->err + n, r->errlen - (size_t)n, " (%s)", ERR_reason_error_string(e));
	ERR_clear_error();
}

static void report_warning(struct tls_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_warning(struct tls_report *r, const char *fmt, ...)
{
	if (!r->warn)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->warn(r->ud, msg);
}

/* --- session tickets --- */

struct ticket_key {
	unsigned char name[16], aes[32], hmac[32];
};

/*
 * One ring for the process: a ticket sealed by one worker resumes in any.
 * Handshakes read it, a reload or the hourly rotation writes it.
 */
static struct {
	pthread_rwlock_t lock;
	struct ticket_key keys[3]; /* the current first */
	int n;
	time_t rotated;
} ticket_ring = {.lock = PTHREAD_RWLOCK_INITIALIZER};

static time_t mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static bool ring_stale(void)
{
	return !ticket_ring.n || mono_seconds() - ticket_ring.rotated >= TICKET_KEY_LIFE_S;
}

/* With the ring write-locked. */
static void rotate_locked(void)
{
	memmove(&ticket_ring.keys[1], &ticket_ring.keys[0], sizeof(ticket_ring.keys[0]) * 2);
	struct ticket_key *k = &ticket_ring.keys[0];
	if (RAND_bytes((unsigned char *)k, sizeof(*k)) != 1) {
		/* Without fresh randomness, tickets stop: full handshakes are slower, not unsafe. */
		ticket_ring.n = 0;
		ERR_clear_error();
		return;
	}
	ticket_ring.n = MIN(ticket_ring.n + 1, (int)ARRAY_LEN(ticket_ring.keys));
	ticket_ring.rotated = mono_seconds();
}

void tls_rotate_ticket_keys(void)
{
	pthread_rwlock_wrlock(&ticket_ring.lock);
	rotate_locked();
	pthread_rwlock_unlock(&ticket_ring.lock);
}

/* Copies the key to seal with (enc) or the one named (else) into *out; false if none. */
static bool ticket_key_find(bool enc, const unsigned char name[16], struct ticket_key *out,
			    bool *older)
{
	pthread_rwlock_rdlock(&ticket_ring.lock);
	if (ring_stale()) {
		pthread_rwlock_unlock(&ticket_ring.lock);
		pthread_rwlock_wrlock(&ticket_ring.lock);
		if (ring_stale()) /* unless another thread just did */
			rotate_locked();
	}
	int found = 0;
	if (!enc)
		for (; found < ticket_ring.n && memcmp(ticket_ring.keys[found].name, name, 16); found++)
			;
	bool ok = found < ticket_ring.n;
	if (ok)
		*out = ticket_ring.keys[found];
	*older = found > 0;
	pthread_rwlock_unlock(&ticket_ring.lock);
	return ok;
}

static int ticket_key_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher,
			 EVP_MAC_CTX *mac, int enc)
{
	struct ticket_key key;
	bool older;
	if (!ticket_key_find(enc, name, &key, &older))
		return 0; /* no ticket this time, or an unknown or expired key: a full handshake */
	const struct ticket_key *k = &key;
	if (enc) {
		if (RAND_bytes(iv, 16) != 1)
			return 0;
		memcpy(name, k->name, 16);
	}
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"sha256", 0),
		OSSL_PARAM_construct_end(),
	};
	int rc = EVP_MAC_CTX_set_params(mac, params) &&
		 (enc ? EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k->aes, iv)
		      : EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k->aes, iv));
	OPENSSL_cleanse(&key, sizeof(key));
	if (!rc)
		return -1;
	/*
	 * A ticket sealed with an older key is good, and replaced by one with
	 * the current key. TLS 1.3 clients use a ticket once (RFC 8446 C.4):
	 * without a new one after each resumption, every other connection
	 * would be a full handshake.
	 */
	return older || SSL_version(ssl) == TLS1_3_VERSION ? 2 : 1;
}

/* --- handshake callbacks --- */

/* "optional": the handshake goes on whatever the chain; the verdict is kept for X-Client-Verify. */
static int accept_any_cert(int ok, X509_STORE_CTX *store)
{
	(void)ok;
	(void)store;
	return 1;
}

static const struct tls_name *find_name(const struct tls_server *ts, const char *sni)
{
	char name[256];
	int len = sni ? host_normalize(sni, strlen(sni), name, sizeof(name)) : -1;
	if (len > 0) {
		int64_t i = host_table_get(&ts->exact, name, (size_t)len);
		if (i >= 0)
			return &ts->names[i];
		/* *.example.com covers a.example.com, not a.b.example.com (RFC 6125 6.4.3). */
		const char *dot = memchr(name, '.', (size_t)len);
		if (dot && (i = host_table_get(&ts->wildcard, dot + 1, (size_t)(name + len - dot - 1))) >= 0)
			return &ts->names[i];
	}
	return &ts->fallback;
}

/* The host_name of a ClientHello's server_name extension (RFC 6066 3), in lookup form, or -1. */
static int hello_sni(SSL *ssl, char *out, size_t cap)
{
	const unsigned char *p;
	size_t len;
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
		return -1;
	size_t list = (size_t)p[0] << 8 | p[1];
	size_t name = (size_t)p[3] << 8 | p[4];
	if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name || name + 3 > list)
		return -1;
	return host_normalize((const char *)p + 5, name, out, cap);
}

/*
 * Client certificates are asked for by the policy of the site the SNI names,
 * decided before OpenSSL looks for a session to resume: sessions of one
 * policy carry its own session id context, so that a session made without a
 * certificate cannot be resumed where one is required.
 */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	const struct tls_server *ts = arg;
	struct conn *c = SSL_get_app_data(ssl);
	struct tls_conn *tc = c->xprt_ctx;
	enum tls_verify v = ts->verify;
	char host[256];
	int len;
	if (tc->site_policy && (len = hello_sni(ssl, host, sizeof(host))) > 0) {
		enum tls_verify site = tc->site_policy(c, host, (size_t)len);
		if (site != TLS_VERIFY_INHERIT)
			v = site;
	}
	tc->applied = v;
	static const char *const sid_ctx[] = {"", "sluice/off", "sluice/optional", "sluice/required"};
	SSL_set_session_id_context(ssl, (const unsigned char *)sid_ctx[v], strlen(sid_ctx[v]));
	if (v == TLS_VERIFY_OFF)
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	else if (v == TLS_VERIFY_OPTIONAL)
		SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any_cert);
	else
		SSL_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE,
			       NULL);
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int cert_cb(SSL *ssl, void *arg)
{
	const struct tls_server *ts = arg;
	const struct tls_name *n = find_name(ts, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
	for (int slot = 0; slot < NSLOTS; slot++) {
		if (!n->cert[slot])
			continue;
		const struct tls_cert *c = &ts->certs[n->cert[slot] - 1];
		if (SSL_use_cert_and_key(ssl, c->x509, c->key, c->chain, 1) != 1)
			return 0;
	}
	return 1;
}

/* Only what sluice speaks; a client that offers none of it gets a no_application_protocol alert. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned int inlen, void *arg)
{
	(void)ssl;
	const struct tls_server *ts = arg;
	/* In our order of preference: SSL_select_next_proto() takes the first of ours the client offers. */
	static const unsigned char h2[] = "\x02h2\x08http/1.1\x08http/1.0";
	const unsigned char *ours = ts->h2 ? h2 : h2 + 3;
	unsigned ours_len = ts->h2 ? sizeof(h2) - 1 : sizeof(h2) - 4;
	unsigned char *chosen;
	if (SSL_select_next_proto(&chosen, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = chosen;
	return SSL_TLSEXT_ERR_OK;
}

/* --- building a tls_server --- */

static void free_server(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	struct tls_server *ts = ptr;
	if (!ts)
		return;
	for (size_t i = 0; i < ts->ncerts; i++) {
		X509_free(ts->certs[i].x509);
		EVP_PKEY_free(ts->certs[i].key);
		sk_X509_pop_free(ts->certs[i].chain, X509_free);
	}
	free(ts->certs);
	free(ts->found);
	OSSL_DECODER_CTX_free(ts->key_decoder);
	arena_free(&ts->arena);
	free(ts);
}

static void free_client(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	struct tls_client *tc = ptr;
	if (!tc)
		return;
	for (size_t i = 0; i < tc->nsessions; i++)
		SSL_SESSION_free(tc->sessions[i]);
	free(tc->sessions);
	free(tc->name);
	free(tc);
}

static BIO_METHOD *new_bio_method(void);

static void init(void)
{
	ctx_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_server);
	client_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_client);
	conn_bio_method = new_bio_method();
}

/* Before the first context: what every worker's connections then read without a lock. */
static int tls_init_once(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, init);
	return ctx_ex_index < 0 || client_ex_index < 0 || !conn_bio_method ? -1 : 0;
}

struct tls_server *tls_server_new(const struct tls_server_opts *o, struct tls_report *r)
{
	if (tls_init_once() < 0) {
		report_error(r, "cannot set up OpenSSL");
		return NULL;
	}
	struct tls_server *ts = calloc(1, sizeof(*ts));
	SSL_CTX *ctx = ts ? SSL_CTX_new(TLS_server_method()) : NULL;
	if (!ctx) {
		free(ts);
		report_error(r, "out of memory");
		return NULL;
	}
	ts->ctx = ctx;
	ts->h2 = o->h2;
	if (!SSL_CTX_set_ex_data(ctx, ctx_ex_index, ts)) {
		free(ts);
		SSL_CTX_free(ctx);
		report_error(r, "out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, o->min_version);
	SSL_CTX_set_max_proto_version(ctx, o->max_version);
	/*
	 * Our order (AES-GCM first, ChaCha20 where the client ranks it first:
	 * a phone without AES instructions), not the client's: a client cannot
	 * talk us down to the weakest suite both know.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_PRIORITIZE_CHACHA);
	/* Idle connections give their record buffers back; writes may return after a record. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) || !SSL_CTX_set_ciphersuites(ctx, TLS13_CIPHERS) ||
	    !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS)) {
		report_error(r, "OpenSSL refused the cipher suites");
		SSL_CTX_free(ctx);
		return NULL;
	}
	ts->verify = o->verify;
	if (o->client_ca) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
		if (!names || !SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL)) {
			report_error(r, "client_ca %s: no PEM certificate in it, or it cannot be read", o->client_ca);
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			SSL_CTX_free(ctx);
			return NULL;
		}
		/* The CertificateRequest names them, so that a client picks a certificate they signed. */
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, ts);
	SSL_CTX_set_cert_cb(ctx, cert_cb, ts);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, ts);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
	/* A TLS 1.3 client takes one ticket per connection; a second would be CPU spent for nothing. */
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT_S);
	static const unsigned char sid_ctx[] = "sluice";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	return ts;
}

void tls_server_free(struct tls_server *ts)
{
	if (ts)
		SSL_CTX_free(ts->ctx); /* the last reference frees ts too */
}

size_t tls_server_ncerts(const struct tls_server *ts) { return ts->ncerts; }

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static X509 *read_x509(BIO *b) { return PEM_read_bio_X509(b, NULL, no_passphrase, NULL); }

/* The first unencrypted private key among the PEM blocks of b (a certificate may come first). */
static EVP_PKEY *read_key(struct tls_server *ts, BIO *b)
{
	if (!ts->key_decoder) {
		ts->key_decoder = OSSL_DECODER_CTX_new_for_pkey(&ts->decoded, "DER", NULL, NULL,
							       OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
		if (!ts->key_decoder)
			return NULL;
	}
	char *name, *header;
	unsigned char *der;
	long len;
	EVP_PKEY *key = NULL;
	while (!key && PEM_read_bio(b, &name, &header, &der, &len)) {
		bool is_key = strstr(name, "PRIVATE KEY") && !strstr(name, "ENCRYPTED") &&
			      !strstr(header, "ENCRYPTED");
		const unsigned char *data = der;
		size_t left = (size_t)len;
		ts->decoded = NULL;
		if (is_key && OSSL_DECODER_from_data(ts->key_decoder, &data, &left))
			key = ts->decoded;
		else
			EVP_PKEY_free(ts->decoded);
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(der);
		if (is_key)
			break;
	}
	/* The end of the file is no reason to give: the message says what is missing. */
	if (!key)
		ERR_clear_error();
	return key;
}

static bool pem_has_key(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return false;
	char line[128];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = !strncmp(line, "-----BEGIN ", 11) && strstr(line, "PRIVATE KEY-----");
	fclose(f);
	return found;
}

static int add_name(struct tls_server *ts, const char *name, size_t len, uint32_t cert)
{
	char norm[256];
	bool wildcard = len > 2 && name[0] == '*' && name[1] == '.';
	size_t off = wildcard ? 2 : 0;
	/* Names a client could send (lower case, no port): anything else, e.g. "f*.x", never matches. */
	int n = host_normalize(name + off, len - off, norm + off, sizeof(norm) - off);
	if (n <= 0 || (size_t)n != len - off || memchr(name, ':', len))
		return 0;
	if (wildcard)
		memcpy(norm, "*.", 2);
	if (ts->nfound == ts->found_cap) {
		size_t cap = ts->found_cap ? ts->found_cap * 2 : 16;
		struct found_name *p = realloc(ts->found, cap * sizeof(*p));
		if (!p)
			return -1;
		ts->found = p;
		ts->found_cap = cap;
	}
	char *copy = arena_strndup(&ts->arena, norm, len);
	if (!copy)
		return -1;
	ts->found[ts->nfound++] = (struct found_name){copy, (uint32_t)len, cert};
	return 0;
}

/* The DNS names of the SAN extension; the subject's CN only when there are none (RFC 6125 6.4.4). */
static int add_names(struct tls_server *ts, X509 *x, uint32_t cert)
{
	size_t before = ts->nfound;
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int rc = 0;
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !rc; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_DNS)
			rc = add_name(ts, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
				      (size_t)ASN1_STRING_length(g->d.dNSName), cert);
	}
	GENERAL_NAMES_free(sans);
	if (!rc && ts->nfound == before) {
		char cn[256];
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
		if (n > 0)
			rc = add_name(ts, cn, (size_t)n, cert);
	}
	return rc;
}

static void check_dates(X509 *x, const char *file, struct tls_report *r)
{
	const ASN1_TIME *after = X509_get0_notAfter(x), *before = X509_get0_notBefore(x);
	char when[64] = "?";
	BIO *b = BIO_new(BIO_s_mem());
	if (X509_cmp_current_time(after) < 0) {
		int n = b && ASN1_TIME_print(b, after) ? BIO_read(b, when, sizeof(when) - 1) : 0;
		if (n > 0)
			when[n] = 0;
		report_warning(r, "certificate %s expired (not after %s)", file, when);
	} else if (X509_cmp_current_time(before) > 0) {
		report_warning(r, "certificate %s is not valid yet", file);
	}
	BIO_free(b);
	ERR_clear_error();
}

int tls_server_add_cert(struct tls_server *ts, const char *cert, const char *key, struct tls_report *r)
{
	BIO *b = BIO_new_file(cert, "r");
	if (!b) {
		ERR_clear_error();
		report_error(r, "certificate %s: %s", cert, strerror(errno ? errno : ENOENT));
		return -1;
	}
	struct tls_cert c = {.x509 = read_x509(b), .file = arena_strndup(&ts->arena, cert, strlen(cert))};
	if (!c.x509) {
		BIO_free(b);
		report_error(r, "certificate %s: no PEM certificate in it", cert);
		return -1;
	}
	c.chain = sk_X509_new_null();
	X509 *ca;
	while (c.chain && (ca = read_x509(b)))
		sk_X509_push(c.chain, ca);
	ERR_clear_error(); /* the end of the file ends the chain */
	BIO_free(b);
	if (!key && !pem_has_key(cert)) {
		report_error(r, "certificate %s: no private key in it; give key = \"...\"", cert);
		goto fail;
	}
	const char *key_file = key ? key : cert;
	b = BIO_new_file(key_file, "r");
	if (!b) {
		ERR_clear_error();
		report_error(r, "key %s: %s", key_file, strerror(errno ? errno : ENOENT));
		goto fail;
	}
	c.key = read_key(ts, b);
	BIO_free(b);
	if (!c.key) {
		report_error(r, "key %s: no private key in it, or one sealed with a passphrase", key_file);
		goto fail;
	}
	if (!X509_check_private_key(c.x509, c.key)) {
		report_error(r, "key %s does not match certificate %s", key_file, cert);
		goto fail;
	}
	check_dates(c.x509, cert, r);
	if (ts->ncerts == ts->certs_cap) {
		size_t cap = ts->certs_cap ? ts->certs_cap * 2 : 4;
		struct tls_cert *p = realloc(ts->certs, cap * sizeof(*p));
		if (!p)
			goto oom;
		ts->certs = p;
		ts->certs_cap = cap;
	}
	if (!c.chain || !c.file || add_names(ts, c.x509, (uint32_t)ts->ncerts) < 0)
		goto oom;
	ts->certs[ts->ncerts++] = c;
	return 0;
oom:
	report_error(r, "certificate %s: out of memory", cert);
fail:
	X509_free(c.x509);
	EVP_PKEY_free(c.key);
	sk_X509_pop_free(c.chain, X509_free);
	return -1;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && !strcmp(s + n - m, suffix);
}

static int cert_file(const struct dirent *d)
{
	return d->d_name[0] != '.' && (has_suffix(d->d_name, ".crt") || has_suffix(d->d_name, ".pem"));
}

int tls_server_add_dir(struct tls_server *ts, const char *dir, struct tls_report *r)
{
	struct dirent **list;
	int n = scandir(dir, &list, cert_file, alphasort);
	if (n < 0) {
		report_error(r, "certificate_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = 0, found = 0;
	for (int i = 0; i < n; i++) {
		char cert[PATH_MAX], key[PATH_MAX];
		struct stat st;
		int len = snprintf(cert, sizeof(cert), "%s/%s", dir, list[i]->d_name);
		if (!rc && len > 0 && (size_t)len < sizeof(cert) && stat(cert, &st) == 0 && S_ISREG(st.st_mode)) {
			snprintf(key, sizeof(key), "%.*s.key", len - 4, cert);
			rc = tls_server_add_cert(ts, cert, access(key, F_OK) == 0 ? key : NULL, r);
			found++;
		}
		free(list[i]);
	}
	free(list);
	if (!rc && !found) {
		report_error(r, "certificate_dir %s: no *.crt or *.pem file in it", dir);
		rc = -1;
	}
	return rc;
}

static int key_slot(const struct tls_cert *c) { return EVP_PKEY_get_base_id(c->key) == EVP_PKEY_EC; }

int tls_server_finish(struct tls_server *ts, struct tls_report *r)
{
	if (!ts->ncerts) {
		report_error(r, "no certificate: give certificates = { ... } or certificate_dir");
		return -1;
	}
	size_t nwild = 0;
	for (size_t i = 0; i < ts->nfound; i++)
		nwild += ts->found[i].name[0] == '*';
	ts->names = arena_alloc(&ts->arena, (ts->nfound + 1) * sizeof(*ts->names));
	if (!ts->names || host_table_init(&ts->exact, &ts->arena, ts->nfound - nwild) < 0 ||
	    host_table_init(&ts->wildcard, &ts->arena, nwild) < 0) {
		report_error(r, "out of memory");
		return -1;
	}
	size_t nnames = 0;
	for (size_t i = 0; i < ts->nfound; i++) {
		const struct found_name *f = &ts->found[i];
		bool wild = f->name[0] == '*';
		struct host_table *t = wild ? &ts->wildcard : &ts->exact;
		const char *key = f->name + (wild ? 2 : 0);
		size_t klen = f->len - (wild ? 2 : 0);
		int64_t at = host_table_get(t, key, klen);
		if (at < 0) {
			at = (int64_t)nnames++;
			memset(&ts->names[at], 0, sizeof(ts->names[at]));
			if (host_table_put(t, key, klen, (uint32_t)at) < 0) {
				report_error(r, "out of memory");
				return -1;
			}
		}
		struct tls_name *n = &ts->names[at];
		int slot = key_slot(&ts->certs[f->cert]);
		if (!n->cert[slot])
			n->cert[slot] = f->cert + 1;
		else if (n->cert[slot] != f->cert + 1)
			report_warning(r, "%.*s: certificate %s is used, not %s (the first given wins)",
				       (int)f->len, f->name, ts->certs[n->cert[slot] - 1].file,
				       ts->certs[f->cert].file);
	}
	/* No SNI, or a name no certificate has: the first certificate, with its first name's other kind. */
	const struct found_name *first = ts->nfound && ts->found[0].cert == 0 ? &ts->found[0] : NULL;
	if (first) {
		bool wild = first->name[0] == '*';
		ts->fallback = ts->names[host_table_get(wild ? &ts->wildcard : &ts->exact,
							first->name + (wild ? 2 : 0),
							first->len - (wild ? 2 : 0))];
	}
	ts->fallback.cert[key_slot(&ts->certs[0])] = 1;
	free(ts->found);
	ts->found = NULL;
	ts->nfound = ts->found_cap = 0;
	OSSL_DECODER_CTX_free(ts->key_decoder);
	ts->key_decoder = NULL;
	return 0;
}

/* --- TLS to backends --- */

/* A TLS 1.3 server sends its session after the handshake: kept whenever it comes. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_client *tc = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_ex_index);
	const struct conn *c = SSL_get_app_data(ssl);
	const struct tls_conn *t = c->xprt_ctx;
	SSL_SESSION_free(tc->sessions[t->server]);
	tc->sessions[t->server] = sess;
	return 1; /* the reference is ours */
}

struct tls_client *tls_client_new(const struct tls_client_opts *o, struct tls_report *r)
{
	if (tls_init_once() < 0) {
		report_error(r, "cannot set up OpenSSL");
		return NULL;
	}
	struct tls_client *tc = calloc(1, sizeof(*tc));
	SSL_CTX *ctx = tc ? SSL_CTX_new(TLS_client_method()) : NULL;
	if (!ctx || !SSL_CTX_set_ex_data(ctx, client_ex_index, tc)) {
		free(tc);
		SSL_CTX_free(ctx);
		report_error(r, "out of memory");
		return NULL;
	}
	/* From here on, freeing ctx frees tc. */
	tc->ctx = ctx;
	tc->sessions = calloc(o->nsessions ? o->nsessions : 1, sizeof(*tc->sessions));
	if (!tc->sessions || (o->name && !(tc->name = strdup(o->name)))) {
		SSL_CTX_free(ctx);
		report_error(r, "out of memory");
		return NULL;
	}
	tc->nsessions = o->nsessions;
	tc->verify = o->verify;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	static const unsigned char alpn[] = "\x08http/1.1";
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
	if (o->ca ? !SSL_CTX_load_verify_locations(ctx, o->ca, NULL) : !SSL_CTX_set_default_verify_paths(ctx)) {
		report_error(r, "ca %s: no PEM certificate in it, or it cannot be read",
			     o->ca ? o->ca : "(the system's)");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (o->cert) {
		const char *key = o->key ? o->key : o->cert;
		if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert)) {
			report_error(r, "cert %s: no PEM certificate in it, or it cannot be read", o->cert);
			SSL_CTX_free(ctx);
			return NULL;
		}
		BIO *b = BIO_new_file(key, "r");
		EVP_PKEY *pkey = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
		BIO_free(b);
		if (!pkey) {
			report_error(r, "key %s: no private key in it, or one sealed with a passphrase", key);
			SSL_CTX_free(ctx);
			return NULL;
		}
		int ok = SSL_CTX_use_PrivateKey(ctx, pkey);
		EVP_PKEY_free(pkey);
		if (!ok) {
			ERR_clear_error();
			report_error(r, "key %s does not match certificate %s", key, o->cert);
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	ERR_clear_error();
	return tc;
}

void tls_client_free(struct tls_client *tc)
{
	if (tc)
		SSL_CTX_free(tc->ctx);
}

/* Of "host:port" or "[v6]:port": the host, in out. */
static void host_of(const char *addr, char *out, size_t cap)
{
	const char *end = strrchr(addr, ':');
	size_t n = end ? (size_t)(end - addr) : strlen(addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	snprintf(out, cap, "%.*s", (int)n, addr);
}

/* --- the transport --- */

static SSL *ssl_of(const struct conn *c) { return ((const struct tls_conn *)c->xprt_ctx)->ssl; }

/* Reads and writes go straight to the socket, so that readiness is tracked as for plain conns. */
static int bio_read(BIO *b, char *dst, int len)
{
	struct conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	for (;;) {
		ssize_t n = recv(c->fd, dst, (size_t)len, 0);
		if (n > 0) {
			if (n < len && !(c->flags & CONN_RDHUP))
				c->flags |= CONN_SOCK_DRAINED;
			return (int)n;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->flags |= CONN_SOCK_DRAINED;
			BIO_set_retry_read(b);
		}
		return -1;
	}
}

static int bio_write(BIO *b, const char *src, int len)
{
	struct conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	for (;;) {
		ssize_t n = send(c->fd, src, (size_t)len, MSG_NOSIGNAL);
		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_write(b);
		return -1;
	}
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH;
}

static BIO_METHOD *new_bio_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice conn");
	if (!m || !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl)) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* A TLS context for c on ctx, its SSL reading and writing c's socket; the conn is TLS from here on. */
static struct tls_conn *attach(struct conn *c, SSL_CTX *ctx)
{
	BIO_METHOD *m = conn_bio_method;
	struct tls_conn *tc = m ? calloc(1, sizeof(*tc)) : NULL;
	SSL *ssl = tc ? SSL_new(ctx) : NULL;
	BIO *b = ssl ? BIO_new(m) : NULL;
	if (!b) {
		SSL_free(ssl);
		free(tc);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(b, c);
	BIO_set_init(b, 1);
	SSL_set_bio(ssl, b, b);
	SSL_set_app_data(ssl, c);
	tc->ssl = ssl;
	c->xprt = &xprt_tls;
	c->xprt_ctx = tc;
	c->flags |= CONN_HANDSHAKE;
	return tc;
}

int tls_accept(struct conn *c, struct tls_server *ts, tls_site_policy site_policy)
{
	struct tls_conn *tc = attach(c, ts->ctx);
	if (!tc)
		return -ENOMEM;
	SSL_set_accept_state(tc->ssl);
	tc->site_policy = site_policy;
	tc->applied = ts->verify;
	return 0;
}

int tls_connect(struct conn *c, struct tls_client *tc, size_t session, const char *addr)
{
	struct tls_conn *t = attach(c, tc->ctx);
	if (!t)
		return -ENOMEM;
	SSL *ssl = t->ssl;
	t->server = session;
	SSL_set_connect_state(ssl);
	char host[256];
	host_of(addr, host, sizeof(host));
	const char *name = tc->name ? tc->name : host;
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
	/* RFC 6066 3: no SNI for an address. */
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, name);
	if (tc->verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		if (is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
		else
			SSL_set1_host(ssl, name);
	}
	if (tc->sessions[session])
		SSL_set_session(ssl, tc->sessions[session]);
	ERR_clear_error();
	return 0;
}

const char *tls_failure(const struct conn *c)
{
	const struct tls_conn *t = c->xprt_ctx;
	return t->why ? t->why : "TLS handshake failed";
}

static void after_io(struct conn *c, SSL *ssl)
{
	if ((c->flags & CONN_HANDSHAKE) && SSL_is_init_finished(ssl))
		c->flags &= (uint16_t)~CONN_HANDSHAKE;
}

/* The mistake nginx also explains: http:// to a TLS port. Best effort, the connection closes after. */
static void answer_plain_http(struct conn *c)
{
	static const char msg[] = "HTTP/1.1 400 Bad Request\r\n"
				  "Content-Type: text/plain\r\n"
				  "Content-Length: 42\r\n"
				  "Connection: close\r\n"
				  "\r\n"
				  "This port speaks HTTPS: use https:// URLs\n";
	ssize_t n = send(c->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL);
	(void)n;
}

/*
 * What a failed SSL_read or SSL_write means for the conn: 0 to wait (the
 * flag of what to wait for cleared), IO_EOF, or -errno.
 */
static ssize_t ssl_failure(struct conn *c, SSL *ssl, int rc, bool reading)
{
	int err = SSL_get_error(ssl, rc);
	after_io(c, ssl);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		c->flags &= (uint16_t)~CONN_READABLE;
		if (!reading)
			c->flags = (uint16_t)((c->flags & ~CONN_WRITABLE) | CONN_WRITE_WANTS_READ);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->flags &= (uint16_t)~CONN_WRITABLE;
		if (reading)
			c->flags = (uint16_t)((c->flags & ~CONN_READABLE) | CONN_READ_WANTS_WRITE);
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	case SSL_ERROR_SYSCALL: {
		int e = errno;
		ERR_clear_error();
		SSL_set_quiet_shutdown(ssl, 1);
		return e ? -e : IO_EOF;
	}
	default:
		if (reading && ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST)
			answer_plain_http(c);
		if (log_enabled(LOG_DEBUG)) {
			char why[256];
			ERR_error_string_n(ERR_peek_error(), why, sizeof(why));
			log_debug("tls: %s", why);
		}
		ERR_clear_error();
		/* After a fatal error, no close_notify (SSL_shutdown must not run). */
		SSL_set_quiet_shutdown(ssl, 1);
		return -EPROTO;
	}
}

static ssize_t tls_recv(struct conn *c, void *dst, size_t len)
{
	SSL *ssl = ssl_of(c);
	c->flags &= (uint16_t)~(CONN_READ_WANTS_WRITE | CONN_SOCK_DRAINED);
	int n = SSL_read(ssl, dst, (int)MIN(len, (size_t)INT_MAX));
	if (n <= 0)
		return ssl_failure(c, ssl, n, true);
	after_io(c, ssl);
	/* No new edge comes for bytes already read into OpenSSL's buffer: only drained is done. */
	if ((c->flags & CONN_SOCK_DRAINED) && !SSL_has_pending(ssl))
		c->flags &= (uint16_t)~CONN_READABLE;
	return n;
}

/*
 * Small pieces are gathered so that a head and the start of a body go in one
 * record. A write that must be retried is retried with the same bytes first,
 * as OpenSSL requires: the caller sends again from where it was told it got to,
 * and gathering the same pieces gives the same record.
 */
static ssize_t tls_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
	static _Thread_local char gather[GATHER_MAX];
	SSL *ssl = ssl_of(c);
	c->flags &= (uint16_t)~CONN_WRITE_WANTS_READ;
	size_t total = 0, off = 0;
	int i = 0;
	while (i < iovcnt) {
		const char *p = (const char *)iov[i].iov_base + off;
		size_t len = iov[i].iov_len - off;
		if (len < GATHER_MAX && i + 1 < iovcnt) {
			size_t o = off;
			len = 0;
			for (int k = i; k < iovcnt && len < GATHER_MAX; k++, o = 0) {
				size_t take = MIN(iov[k].iov_len - o, GATHER_MAX - len);
				memcpy(gather + len, (const char *)iov[k].iov_base + o, take);
				len += take;
			}
			p = gather;
		}
		if (!len) {
			i++;
			off = 0;
			continue;
		}
		int n = SSL_write(ssl, p, (int)MIN(len, (size_t)INT_MAX));
		if (n <= 0) {
			ssize_t r = ssl_failure(c, ssl, n, false);
			return total ? (ssize_t)total : r;
		}
		total += (size_t)n;
		/* Step over what was written, piece by piece. */
		for (size_t done = (size_t)n; done;) {
			size_t rest = iov[i].iov_len - off;
			if (done < rest) {
				off += done;
				break;
			}
			done -= rest;
			i++;
			off = 0;
		}
		while (i < iovcnt && off == iov[i].iov_len) {
			i++;
			off = 0;
		}
	}
	after_io(c, ssl);
	return (ssize_t)total;
}

static int tls_handshake(struct conn *c)
{
	struct tls_conn *t = c->xprt_ctx;
	int rc = SSL_do_handshake(t->ssl);
	if (rc == 1) {
		c->flags &= (uint16_t)~CONN_HANDSHAKE;
		return 0;
	}
	int err = SSL_get_error(t->ssl, rc);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return 1;
	if (SSL_is_server(t->ssl) && err == SSL_ERROR_SSL &&
	    ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST)
		answer_plain_http(c);
	long verdict = SSL_get_verify_result(t->ssl);
	unsigned long e = ERR_peek_error();
	t->why = verdict != X509_V_OK ? X509_verify_cert_error_string(verdict)
		 : e			? ERR_reason_error_string(e)
		 : err == SSL_ERROR_SYSCALL ? "the connection closed during the TLS handshake"
					    : NULL;
	ERR_clear_error();
	SSL_set_quiet_shutdown(t->ssl, 1);
	/* A session that led here is not offered again. */
	SSL_CTX *ctx = SSL_get_SSL_CTX(t->ssl);
	struct tls_client *tc = SSL_CTX_get_ex_data(ctx, client_ex_index);
	if (tc && tc->sessions[t->server]) {
		SSL_SESSION_free(tc->sessions[t->server]);
		tc->sessions[t->server] = NULL;
	}
	return -EPROTO;
}

static void tls_shutdown_write(struct conn *c)
{
	SSL *ssl = ssl_of(c);
	if (SSL_is_init_finished(ssl)) {
		SSL_shutdown(ssl); /* close_notify; the peer's is not waited for */
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
}

static void tls_close(struct conn *c)
{
	SSL *ssl = ssl_of(c);
	/* A close_notify unless one went already, the peer left, or the session failed. */
	if (!(c->flags & (CONN_SHUT_WR | CONN_RDHUP)) && SSL_is_init_finished(ssl)) {
		SSL_shutdown(ssl);
		ERR_clear_error();
	}
	SSL_free(ssl);
	struct tls_conn *tc = c->xprt_ctx;
	free(tc->info);
	free(tc);
	close(c->fd);
}

/* OpenSSL calls back with the conn: its BIO and the SSL's app data follow it. */
static void tls_moved(struct conn *c)
{
	SSL *ssl = ssl_of(c);
	BIO_set_data(SSL_get_rbio(ssl), c);
	SSL_set_app_data(ssl, c);
}

const struct xprt_ops xprt_tls = {
	.recv = tls_recv,
	.sendv = tls_sendv,
	.shutdown_write = tls_shutdown_write,
	.close = tls_close,
	.handshake = tls_handshake,
	.moved = tls_moved,
};

bool tls_alpn(const struct conn *c, char *out, size_t cap)
{
	const unsigned char *p;
	unsigned int len;
	SSL_get0_alpn_selected(ssl_of(c), &p, &len);
	if (!len || len >= cap)
		return false;
	memcpy(out, p, len);
	out[len] = 0;
	return true;
}

enum tls_verify tls_applied_verify(const struct conn *c)
{
	return ((const struct tls_conn *)c->xprt_ctx)->applied;
}

/* Strings gathered into one allocation after the struct. */
struct info_builder {
	char *buf;
	size_t len, cap;
	size_t at[8]; /* offsets of the strings, in struct tls_info's order */
	int n;
};

static void add_string(struct info_builder *b, const char *s, size_t len)
{
	if (!s) {
		b->at[b->n++] = SIZE_MAX;
		return;
	}
	if (b->len + len + 1 > b->cap) {
		size_t cap = MAX(b->cap * 2, b->len + len + 1 + 256);
		char *p = realloc(b->buf, cap);
		if (!p) {
			b->at[b->n++] = SIZE_MAX;
			return;
		}
		b->buf = p;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, s, len);
	b->buf[b->len + len] = 0;
	b->at[b->n++] = b->len;
	b->len += len + 1;
}

static void add_cstring(struct info_builder *b, const char *s) { add_string(b, s, s ? strlen(s) : 0); }

/* An RFC 2253 name, escaped to printable ASCII (so that it can go in a header). */
static void add_name_string(struct info_builder *b, const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL;
	long n = bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0
			 ? BIO_get_mem_data(bio, &data)
			 : 0;
	add_string(b, n > 0 ? data : "", n > 0 ? (size_t)n : 0);
	BIO_free(bio);
}

static void add_cert_strings(struct info_builder *b, X509 *x)
{
	add_name_string(b, X509_get_subject_name(x));
	add_name_string(b, X509_get_issuer_name(x));
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	add_cstring(b, hex);
	OPENSSL_free(hex);
	BN_free(bn);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char fp[2 * EVP_MAX_MD_SIZE + 1];
	if (X509_digest(x, EVP_sha256(), md, &mdlen)) {
		for (unsigned int i = 0; i < mdlen; i++)
			snprintf(fp + 2 * i, 3, "%02x", md[i]);
		add_string(b, fp, 2 * mdlen);
	} else {
		add_string(b, NULL, 0);
	}
}

const struct tls_info *tls_info(struct conn *c)
{
	struct tls_conn *tc = c->xprt_ctx;
	if (tc->info)
		return tc->info;
	SSL *ssl = tc->ssl;
	struct info_builder b = {0};
	add_cstring(&b, SSL_get_version(ssl));
	add_cstring(&b, SSL_get_cipher_name(ssl));
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	char host[256];
	int hlen = sni ? host_normalize(sni, strlen(sni), host, sizeof(host)) : -1;
	add_string(&b, hlen > 0 ? host : NULL, hlen > 0 ? (size_t)hlen : 0);
	X509 *peer = SSL_get0_peer_certificate(ssl);
	add_cstring(&b, !peer ? "NONE" : SSL_get_verify_result(ssl) == X509_V_OK ? "SUCCESS" : "FAILED");
	if (peer) {
		add_cert_strings(&b, peer);
	} else {
		for (int i = 0; i < 4; i++)
			add_string(&b, NULL, 0);
	}
	ERR_clear_error();
	struct tls_info *info = malloc(sizeof(*info) + b.len);
	if (!info) {
		free(b.buf);
		return NULL;
	}
	char *strings = (char *)(info + 1);
	if (b.len)
		memcpy(strings, b.buf, b.len);
	free(b.buf);
	const char **fields[] = {&info->protocol, &info->cipher,  &info->sni,	 &info->verify,
				 &info->subject,  &info->issuer, &info->serial, &info->fingerprint};
	for (int i = 0; i < 8; i++)
		*fields[i] = b.at[i] == SIZE_MAX ? NULL : strings + b.at[i];
	tc->info = info;
	return info;
}
