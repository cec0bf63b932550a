#include "tls/tls.c"

#include "../unit.h"

/* --- helpers --- */

static int warnings;
static char last_warning[512];

static void count_warning(void *ud, const char *msg)
{
	(void)ud;
	warnings++;
	snprintf(last_warning, sizeof(last_warning), "%s", msg);
}

/* A certificate slot with a fresh key of the kind given (no X509: name tables need only the key). */
static uint32_t add_fake_cert(struct tls_server *ts, bool ec, const char *file)
{
	if (ts->ncerts == ts->certs_cap) {
		ts->certs_cap = ts->certs_cap ? ts->certs_cap * 2 : 4;
		ts->certs = realloc(ts->certs, ts->certs_cap * sizeof(*ts->certs));
	}
	ts->certs[ts->ncerts] = (struct tls_cert){
		.key = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(1024),
		.file = file,
	};
	return (uint32_t)ts->ncerts++;
}

static struct tls_server *server(struct tls_report *r)
{
	struct tls_server_opts o = {TLS1_2_VERSION, TLS1_3_VERSION, TLS_VERIFY_OFF, NULL, false};
	return tls_server_new(&o, r);
}

static void add(struct tls_server *ts, const char *name, uint32_t cert)
{
	add_name(ts, name, strlen(name), cert);
}

/* Which certificate (index, or -1) a client asking for sni gets in slot. */
static long cert_for(const struct tls_server *ts, const char *sni, int slot)
{
	const struct tls_name *n = find_name(ts, sni);
	return n->cert[slot] ? (long)n->cert[slot] - 1 : -1;
}

/* --- tests --- */

TEST(test_exact_then_one_label_wildcard_then_the_first)
{
	char err[256];
	struct tls_report r = {err, sizeof(err), count_warning, NULL};
	struct tls_server *ts = server(&r);
	CHECK(ts);
	uint32_t a = add_fake_cert(ts, true, "a.crt"), wild = add_fake_cert(ts, true, "wild.crt"),
		 b = add_fake_cert(ts, true, "b.crt");
	add(ts, "a.test", a);
	add(ts, "*.a.test", wild);
	add(ts, "b.test", b);
	add(ts, "WWW.B.test", b); /* names in certificates may have capitals */
	CHECK(tls_server_finish(ts, &r) == 0);
	CHECK(cert_for(ts, "a.test", SLOT_EC) == a);
	CHECK(cert_for(ts, "A.Test.", SLOT_EC) == a);
	CHECK(cert_for(ts, "x.a.test", SLOT_EC) == wild);
	CHECK(cert_for(ts, "www.b.test", SLOT_EC) == b);
	/* One label deep only, then the listener's first certificate. */
	CHECK(cert_for(ts, "y.x.a.test", SLOT_EC) == a);
	CHECK(cert_for(ts, "unknown.test", SLOT_EC) == a);
	CHECK(cert_for(ts, NULL, SLOT_EC) == a);
	CHECK(cert_for(ts, "not a host", SLOT_EC) == a);
	CHECK(cert_for(ts, "", SLOT_EC) == a);
	tls_server_free(ts);
}

TEST(test_rsa_and_ecdsa_side_by_side_and_the_first_of_a_kind_wins)
{
	char err[256];
	struct tls_report r = {err, sizeof(err), count_warning, NULL};
	struct tls_server *ts = server(&r);
	CHECK(ts);
	uint32_t rsa = add_fake_cert(ts, false, "rsa.crt"), ec = add_fake_cert(ts, true, "ec.crt"),
		 ec2 = add_fake_cert(ts, true, "ec2.crt");
	add(ts, "a.test", rsa);
	add(ts, "a.test", ec);
	add(ts, "a.test", ec2);
	warnings = 0;
	CHECK(tls_server_finish(ts, &r) == 0);
	CHECK(cert_for(ts, "a.test", SLOT_RSA) == rsa);
	CHECK(cert_for(ts, "a.test", SLOT_EC) == ec);
	CHECK(warnings == 1);
	CHECK_STR_CONTAINS(last_warning, "ec.crt is used, not ec2.crt");
	/* With no SNI: the first certificate, and its name's other kind too. */
	CHECK(cert_for(ts, NULL, SLOT_RSA) == rsa);
	CHECK(cert_for(ts, NULL, SLOT_EC) == ec);
	tls_server_free(ts);
}

TEST(test_names_no_client_could_send_are_left_out)
{
	char err[256];
	struct tls_report r = {err, sizeof(err), NULL, NULL};
	struct tls_server *ts = server(&r);
	CHECK(ts);
	uint32_t a = add_fake_cert(ts, true, "a.crt"), odd = add_fake_cert(ts, true, "odd.crt");
	add(ts, "a.test", a);
	add(ts, "f*.odd.test", odd);
	add(ts, "odd.test:443", odd);
	add(ts, "odd test", odd);
	CHECK(ts->nfound == 1);
	CHECK(tls_server_finish(ts, &r) == 0);
	CHECK(cert_for(ts, "foo.odd.test", SLOT_EC) == a);
	tls_server_free(ts);
}

TEST(test_a_listener_needs_a_certificate)
{
	char err[256];
	struct tls_report r = {err, sizeof(err), NULL, NULL};
	struct tls_server *ts = server(&r);
	CHECK(ts);
	CHECK(tls_server_finish(ts, &r) < 0);
	CHECK_STR_CONTAINS(err, "no certificate");
	tls_server_free(ts);
}

TEST(test_the_host_of_a_server_address)
{
	char host[256];
	host_of("10.0.0.5:8443", host, sizeof(host));
	CHECK(!strcmp(host, "10.0.0.5"));
	host_of("[::1]:443", host, sizeof(host));
	CHECK(!strcmp(host, "::1"));
	host_of("api.internal:443", host, sizeof(host));
	CHECK(!strcmp(host, "api.internal"));
}

int main(void)
{
	RUN(test_exact_then_one_label_wildcard_then_the_first);
	RUN(test_rsa_and_ecdsa_side_by_side_and_the_first_of_a_kind_wins);
	RUN(test_names_no_client_could_send_are_left_out);
	RUN(test_a_listener_needs_a_certificate);
	RUN(test_the_host_of_a_server_address);
	UNIT_EXIT();
}
