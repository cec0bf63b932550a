/*
 * Writes N certificates for bench/cert_load.py: DIR/siteI.crt and
 * DIR/siteI.key, each with its own P-256 key, for siteI.test and
 * *.siteI.test, signed by a CA made on the spot (DIR/../ca.crt).
 * The openssl CLI takes seconds per hundred; this takes seconds for 10,000.
 *
 *     make_certs DIR N
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static void die(const char *what)
{
	fprintf(stderr, "make_certs: %s failed\n", what);
	exit(1);
}

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	if (!k)
		die("EVP_EC_gen");
	return k;
}

static X509 *new_cert(EVP_PKEY *key, const char *cn, long serial, X509 *issuer, EVP_PKEY *issuer_key,
		      const char *san)
{
	X509 *x = X509_new();
	if (!x)
		die("X509_new");
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 30L * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, san ? NID_subject_alt_name : NID_basic_constraints,
						  san ? san : "critical,CA:TRUE");
	if (!ext || !X509_add_ext(x, ext, -1))
		die("X509_add_ext");
	X509_EXTENSION_free(ext);
	if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
		die("X509_sign");
	return x;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");
	if (!f || (x && !PEM_write_X509(f, x)) || (k && !PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)))
		die(path);
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 3 || atol(argv[2]) < 1) {
		fprintf(stderr, "usage: make_certs DIR N\n");
		return 2;
	}
	const char *dir = argv[1];
	long n = atol(argv[2]);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		die("mkdir");
	EVP_PKEY *ca_key = new_key();
	X509 *ca = new_cert(ca_key, "bench CA", 1, NULL, NULL, NULL);
	char path[4096], san[256], cn[64];
	snprintf(path, sizeof(path), "%s/../ca.crt", dir);
	write_pem(path, ca, NULL);
	for (long i = 0; i < n; i++) {
		snprintf(cn, sizeof(cn), "site%ld.test", i);
		snprintf(san, sizeof(san), "DNS:site%ld.test,DNS:*.site%ld.test", i, i);
		EVP_PKEY *k = new_key();
		X509 *x = new_cert(k, cn, 1000 + i, ca, ca_key, san);
		snprintf(path, sizeof(path), "%s/site%ld.crt", dir, i);
		write_pem(path, x, NULL);
		snprintf(path, sizeof(path), "%s/site%ld.key", dir, i);
		write_pem(path, NULL, k);
		X509_free(x);
		EVP_PKEY_free(k);
	}
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return 0;
}
