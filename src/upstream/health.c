#include "upstream/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "http/h1.h"
#include "tls/tls.h"
#include "upstream/upstream.h"

/* What a check keeps of a response: its head and enough body to search. */
#define CHECK_BUF 16384

enum { CHECK_IDLE, CHECK_CONNECTING, CHECK_WAITING };

static const struct cfg_health *cfg_of(const struct health_check *hc)
{
	return &hc->srv->pool->health;
}

static void check_finish(struct health_check *hc, bool ok, const char *why)
{
	const struct cfg_health *h = cfg_of(hc);
	struct server_rt *srv = hc->srv;
	struct server_state *st = srv->st;
	conn_close(&hc->conn);
	free(hc->buf);
	hc->buf = NULL;
	free(hc->msg);
	hc->msg = NULL;
	hc->len = hc->sent = 0;
	hc->phase = CHECK_IDLE;
	bool down = atomic_load(&st->check_down);
	if (ok) {
		st->fail_streak = 0;
		if (down && ++st->ok_streak >= h->rise) {
			atomic_store(&st->check_down, false);
			upstream_server_back(hc->up, srv);
			log_warn("server %s: health check passed %u times in a row; back in",
				 srv->cfg->addr.text, st->ok_streak);
		}
	} else {
		st->ok_streak = 0;
		if (!down && ++st->fail_streak >= h->fall) {
			atomic_store(&st->check_down, true);
			log_warn("server %s: health check failed %u times in a row (%s); taken out",
				 srv->cfg->addr.text, st->fail_streak, why);
		} else {
			log_debug("server %s: health check failed: %s", srv->cfg->addr.text, why);
		}
	}
	timer_arm(hc->up->loop, &hc->timer, h->interval_ms);
}

/*
 * Reads the response as far as it came, through the h1 codec as every
 * response sluice reads: the status must be in range and, where a body
 * text is asked for, the body's data (chunked framing taken out) must
 * contain it. Finishes the check once it has its answer: at the end of the
 * message, at the close that ends it, or with a full buffer (enough to
 * judge; the rest is not ours to read). Returns true when finished.
 */
static bool check_parse(struct health_check *hc, bool eof)
{
	const struct cfg_health *h = cfg_of(hc);
	struct h1_parser *p = &hc->parser;
	bool full = hc->len == CHECK_BUF;
	if (!p->head_done) {
		enum h1_result r = h1_parse_head(p, hc->msg, hc->buf, hc->len);
		if (r == H1_ERROR) {
			check_finish(hc, false, p->error);
			return true;
		}
		if (r == H1_AGAIN) {
			if (eof || full)
				check_finish(hc, false, eof ? "closed before a whole response head"
							    : "response head too large");
			return eof || full;
		}
		unsigned status = hc->msg->status;
		if (status < h->status_min || status > h->status_max) {
			char why[64];
			snprintf(why, sizeof(why), "status %u", status);
			check_finish(hc, false, why);
			return true;
		}
		if (!h->body) {
			check_finish(hc, true, NULL);
			return true;
		}
		hc->parsed = hc->body_end = hc->msg->head_len;
	}
	char *out = hc->buf + hc->body_end;
	ssize_t n = h1_parse_body(p, hc->buf + hc->parsed, hc->len - hc->parsed, &out);
	if (n < 0) {
		check_finish(hc, false, p->error);
		return true;
	}
	hc->parsed += (uint32_t)n;
	hc->body_end = (uint32_t)(out - hc->buf);
	bool ended = p->msg_done || (eof && h1_parse_eof(p));
	if (!ended && !full) {
		if (eof)
			check_finish(hc, false, "closed in the middle of the response body");
		return eof;
	}
	const char *body = hc->buf + hc->msg->head_len;
	bool found = memmem(body, hc->body_end - hc->msg->head_len, h->body, strlen(h->body));
	check_finish(hc, found, "body lacks the expected text");
	return true;
}

static void check_on_io(struct conn *c)
{
	struct health_check *hc = container_of(c, struct health_check, conn);
	const struct cfg_health *h = cfg_of(hc);
	if (hc->phase == CHECK_CONNECTING) {
		int rc = conn_finish_connect(c);
		if (rc == 1)
			return;
		if (rc < 0) {
			bool handshake = conn_is_tls(c) && !(c->flags & CONN_CONNECTING);
			check_finish(hc, false, handshake ? tls_failure(c) : strerror(-rc));
			return;
		}
		if (!h->http) {
			check_finish(hc, true, NULL);
			return;
		}
		hc->phase = CHECK_WAITING;
	}
	if (hc->phase != CHECK_WAITING)
		return;
	while (hc->sent < hc->request_len && (c->flags & CONN_WRITABLE)) {
		struct iovec iov = {hc->request + hc->sent, hc->request_len - hc->sent};
		ssize_t n = conn_sendv(c, &iov, 1);
		if (n < 0) {
			check_finish(hc, false, "write failed");
			return;
		}
		if (n == 0)
			break;
		hc->sent += (uint32_t)n;
	}
	while (c->flags & CONN_READABLE) {
		ssize_t n = conn_recv(c, hc->buf + hc->len, CHECK_BUF - hc->len);
		if (n < 0 && n != IO_EOF) {
			check_finish(hc, false, strerror((int)-n));
			return;
		}
		if (n == 0)
			break;
		if (n > 0)
			hc->len += (uint32_t)n;
		if (check_parse(hc, n == IO_EOF))
			return;
	}
}

static void check_timer(struct timer *t)
{
	struct health_check *hc = container_of(t, struct health_check, timer);
	const struct cfg_health *h = cfg_of(hc);
	if (hc->phase != CHECK_IDLE) {
		check_finish(hc, false, "timed out");
		return;
	}
	/* In maintenance a server is not checked: whatever it answers then says nothing. */
	if (atomic_load(&hc->srv->st->admin) == SERVER_MAINT ||
	    (h->http && (!(hc->buf = malloc(CHECK_BUF)) || !(hc->msg = malloc(sizeof(*hc->msg)))))) {
		free(hc->buf);
		hc->buf = NULL;
		timer_arm(hc->up->loop, &hc->timer, h->interval_ms);
		return;
	}
	if (h->http) {
		struct h1_limits lim = {0, CHECK_BUF};
		h1_response_parser_init(&hc->parser, &lim, !strcmp(h->method, "HEAD"), true);
	}
	const struct cfg_addr *a = &hc->srv->cfg->addr;
	int rc = conn_connect(&hc->conn, hc->up->loop, (const struct sockaddr *)&a->sa, a->len,
			      check_on_io);
	struct tls_client *tls = hc->srv->pool->tls;
	if (rc == 0 && tls &&
	    (rc = tls_connect(&hc->conn, tls, upstream_session_slot(hc->up, hc->srv), a->text)) < 0)
		conn_close(&hc->conn);
	if (rc < 0) {
		hc->phase = CHECK_CONNECTING; /* so that finishing it is the same path */
		check_finish(hc, false, strerror(-rc));
		return;
	}
	hc->phase = CHECK_CONNECTING;
	timer_arm(hc->up->loop, &hc->timer, h->timeout_ms);
}

int health_start(struct upstream *up)
{
	for (size_t i = 0; i < up->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		if (!p->cfg->health.enabled)
			continue;
		for (size_t k = 0; k < p->cfg->nservers; k++) {
			struct health_check *hc = calloc(1, sizeof(*hc));
			if (!hc) {
				health_stop(up);
				return -ENOMEM;
			}
			hc->up = up;
			hc->srv = &p->servers[k];
			const struct cfg_health *h = &p->cfg->health;
			if (h->http) {
				const char *host = h->host ? h->host : hc->srv->cfg->addr.text;
				size_t cap = strlen(h->method) + strlen(h->path) + strlen(host) + 128;
				hc->request = malloc(cap);
				if (!hc->request) {
					free(hc);
					health_stop(up);
					return -ENOMEM;
				}
				int n = snprintf(hc->request, cap,
						 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health-check\r\n"
						 "Connection: close\r\n\r\n",
						 h->method, h->path, host);
				hc->request_len = (uint32_t)n;
			}
			hc->conn.fd = -1;
			hc->timer.on_expire = check_timer;
			p->servers[k].check = hc;
			/* Spread the first checks over the interval rather than all at once. */
			timer_arm(up->loop, &hc->timer, (p->cfg->health.interval_ms * k) / p->cfg->nservers);
		}
	}
	return 0;
}

void health_stop(struct upstream *up)
{
	for (size_t i = 0; i < up->npools; i++) {
		struct pool_rt *p = &up->pools[i];
		for (size_t k = 0; p->servers && k < p->cfg->nservers; k++) {
			struct health_check *hc = p->servers[k].check;
			if (!hc)
				continue;
			timer_cancel(up->loop, &hc->timer);
			conn_close(&hc->conn);
			free(hc->buf);
			free(hc->msg);
			free(hc->request);
			/* Events for its socket may still be queued in this loop turn. */
			loop_free_later(up->loop, hc);
			p->servers[k].check = NULL;
		}
	}
}
