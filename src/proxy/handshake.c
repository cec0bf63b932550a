/*
 * The TLS handshake of a client connection, before any protocol: done here
 * rather than by a front, so that the front can be the one ALPN settled
 * (the listener's own where the client offered none). Once the handshake is
 * done the connection moves into a session of that front, which reads the
 * first request from it.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/log.h"
#include "proxy/front.h"
#include "proxy/proxy.h"
#include "route/router.h"
#include "tls/tls.h"

struct handshake {
	struct session s; /* first: the proxy knows it as a session */
	struct conn conn;
	struct timer timer;
	uint64_t since_ms; /* accepted */
	struct sockaddr_storage peer;
};

static void count(struct handshake *h, bool done)
{
	struct proc_stats *ps = &h->s.px->sh->stats[h->s.px->index];
	stat_add(done ? &ps->tls_handshakes : &ps->tls_failures, 1);
}

/* Ends h, its connection gone (failed) or passed on (done). */
static void handshake_free(struct handshake *h)
{
	timer_cancel(h->s.px->loop, &h->timer);
	loop_free_later(h->s.px->loop, h);
}

static void handshake_fail(struct handshake *h)
{
	count(h, false);
	conn_close(&h->conn);
	handshake_free(h);
	proxy_session_close(&h->s);
}

static void handshake_done(struct handshake *h)
{
	count(h, true);
	char alpn[32];
	const struct front_ops *front = tls_alpn(&h->conn, alpn, sizeof(alpn)) ? front_find(alpn) : NULL;
	if (!front)
		front = h->s.listener->front; /* no ALPN, or a token of its (http/1.0) */
	struct accepted a = {-1, &h->conn, (const struct sockaddr *)&h->peer, h->since_ms};
	handshake_free(h);
	proxy_session_pass(&h->s, front, &a);
}

static void handshake_on_io(struct conn *cn)
{
	struct handshake *h = container_of(cn, struct handshake, conn);
	int rc = cn->xprt->handshake(cn);
	if (rc == 0)
		handshake_done(h);
	else if (rc < 0) {
		log_debug("client %s: %s", h->s.addr, tls_failure(cn));
		handshake_fail(h);
	}
}

static void handshake_timed_out(struct timer *t)
{
	handshake_fail(container_of(t, struct handshake, timer));
}

/* The policy of the site the client's TLS name leads to, by the current config. */
static enum tls_verify sni_site_policy(struct conn *cn, const char *host, size_t len)
{
	const struct handshake *h = container_of(cn, struct handshake, conn);
	const struct config *cfg = h->s.px->gen->cfg;
	const struct site *site = cfg->has_sites ? router_find_site(&cfg->router, host, len) : NULL;
	return site ? (enum tls_verify)site->tls_verify : TLS_VERIFY_INHERIT;
}

static int handshake_start(struct proxy *px, struct listener *l, const struct accepted *a)
{
	struct handshake *h = calloc(1, sizeof(*h));
	if (!h) {
		front_drop(a);
		return -ENOMEM;
	}
	int err = front_take(&h->conn, px->loop, a, handshake_on_io);
	if (err < 0) {
		free(h);
		return err;
	}
	if ((err = tls_accept(&h->conn, l->cfg->tls, l->cfg->routed ? sni_site_policy : NULL)) < 0) {
		conn_close(&h->conn);
		free(h);
		return err;
	}
	h->since_ms = a->since_ms;
	memcpy(&h->peer, a->peer,
	       a->peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	proxy_session_open(px, &h->s, l, &tls_handshake_phase, &h->conn, a->peer);
	h->timer.on_expire = handshake_timed_out;
	const struct cfg_timeouts *to = &px->gen->cfg->timeouts;
	timer_arm_at(px->loop, &h->timer, h->since_ms + MIN(to->tls_handshake_ms, to->client_header_ms));
	/* The ClientHello may be here already (TCP_DEFER_ACCEPT, or a fast client). */
	h->conn.flags |= CONN_READABLE | CONN_WRITABLE;
	handshake_on_io(&h->conn);
	return 0;
}

/* A stop or a reload does not wait for a handshake: no request has come yet. */
static void handshake_close(struct session *s)
{
	handshake_fail(container_of(s, struct handshake, s));
}

const struct front_ops tls_handshake_phase = {
	.name = "tls",
	.start = handshake_start,
	.drain = handshake_close,
	.close = handshake_close,
};
