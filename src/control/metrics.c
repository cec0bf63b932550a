#include "control/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/common.h"
#include "core/stats.h"

/* Every worker's counts of one pool, or of one server, summed. */
struct pool_sum {
	struct req_sum req;
	uint64_t retries, queued;
	struct hist_sum queue;
};
struct server_sum {
	struct req_sum req;
	uint64_t failures, opened, open, idle;
};
struct proc_sum {
	uint64_t responses[STATS_CLASSES], requests;
	uint64_t clients_opened, clients_open, clients_idle;
	uint64_t bytes_in, bytes_out, tls_handshakes, tls_failures;
	uint64_t client_errors[STATS_CLIENT_ERRORS];
};

struct sums {
	struct proc_sum proc;
	struct req_sum *tracked;    /* [ntracked] */
	struct pool_sum *pools;	    /* [npools] */
	struct server_sum **servers; /* [npools][nservers], one allocation behind servers[0] */
};

static void sum_proc(struct proc_sum *to, struct shared *sh)
{
	for (uint32_t w = 0; w < sh->workers; w++) {
		struct proc_stats *p = &sh->stats[w];
		for (unsigned k = 0; k < STATS_CLASSES; k++) {
			uint64_t n = stat_get(&p->responses[k]);
			to->responses[k] += n;
			to->requests += n;
		}
		uint64_t opened = stat_get(&p->clients_opened);
		to->clients_opened += opened;
		to->clients_open += opened - stat_get(&p->clients_closed);
		to->clients_idle += stat_get(&p->clients_idle);
		to->bytes_in += stat_get(&p->bytes_in);
		to->bytes_out += stat_get(&p->bytes_out);
		to->tls_handshakes += stat_get(&p->tls_handshakes);
		to->tls_failures += stat_get(&p->tls_failures);
		for (unsigned k = 0; k < STATS_CLIENT_ERRORS; k++)
			to->client_errors[k] += stat_get(&p->client_errors[k]);
	}
}

static void sum_pool(struct pool_sum *to, struct pool_state *st, uint32_t workers)
{
	for (uint32_t w = 0; w < workers; w++) {
		struct pool_stats *p = stats_block_peek(st->stats, w);
		if (!p)
			continue;
		stats_req_sum(&to->req, &p->req);
		to->retries += stat_get(&p->retries);
		to->queued += stat_get(&p->queued);
		stats_hist_sum(&to->queue, &p->queue);
	}
}

static void sum_server(struct server_sum *to, struct server_state *st, uint32_t workers)
{
	for (uint32_t w = 0; w < workers; w++) {
		struct server_stats *s = stats_block_peek(st->stats, w);
		if (!s)
			continue;
		stats_req_sum(&to->req, &s->req);
		to->failures += stat_get(&s->failures);
		to->opened += stat_get(&s->conns_opened);
		to->open += stat_get(&s->conns_open);
		to->idle += stat_get(&s->conns_idle);
	}
}

static void sums_free(struct sums *s)
{
	if (s->servers)
		free(s->servers[0]);
	free(s->servers);
	free(s->pools);
	free(s->tracked);
}

static int sums_take(struct sums *s, const struct metrics_src *src)
{
	const struct config *cfg = src->gen->cfg;
	uint32_t workers = src->sh->workers;
	size_t nservers = 0;
	for (size_t i = 0; i < cfg->npools; i++)
		nservers += cfg->pools[i].nservers;
	*s = (struct sums){0};
	s->pools = calloc(cfg->npools + 1, sizeof(*s->pools));
	s->servers = calloc(cfg->npools + 1, sizeof(*s->servers));
	s->tracked = calloc(cfg->ntracked + 1, sizeof(*s->tracked));
	struct server_sum *all = calloc(nservers + 1, sizeof(*all));
	if (!s->pools || !s->servers || !s->tracked || !all) {
		free(all);
		sums_free(s);
		return -1;
	}
	sum_proc(&s->proc, src->sh);
	for (size_t i = 0; i < cfg->ntracked; i++)
		for (uint32_t w = 0; w < workers; w++) {
			struct req_stats *r = stats_block_peek(src->gen->tracked[i]->stats, w);
			if (r)
				stats_req_sum(&s->tracked[i], r);
		}
	for (size_t i = 0; i < cfg->npools; i++) {
		sum_pool(&s->pools[i], src->gen->pools[i], workers);
		s->servers[i] = all;
		for (size_t k = 0; k < cfg->pools[i].nservers; k++)
			sum_server(&all[k], src->gen->servers[i][k], workers);
		all += cfg->pools[i].nservers;
	}
	s->servers[0] = s->servers[0] ? s->servers[0] : all;
	return 0;
}

static bool healthy(struct server_state *st, uint64_t now_ms)
{
	return !atomic_load_explicit(&st->check_down, memory_order_relaxed) &&
	       atomic_load_explicit(&st->down_until_ms, memory_order_relaxed) <= now_ms;
}

/* What the status page shows: "drain" or "maint" if so set, else "up" or "down" by health. */
static const char *state_name(struct server_state *st, uint64_t now_ms)
{
	enum server_admin a = atomic_load_explicit(&st->admin, memory_order_relaxed);
	if (a != SERVER_READY)
		return server_admin_name[a];
	return healthy(st, now_ms) ? "up" : "down";
}

/* --- Prometheus text format (version 0.0.4) --- */

static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The labels of a pool's or a server's series: pool="web",server="10.0.0.1:80" */
static void labels_of(struct sbuf *b, const char *pool, const char *server)
{
	b->len = 0;
	sbuf_puts(b, "pool=\"");
	sbuf_label(b, pool);
	sbuf_puts(b, "\"");
	if (server) {
		sbuf_puts(b, ",server=\"");
		sbuf_label(b, server);
		sbuf_puts(b, "\"");
	}
}

static void sample(struct sbuf *b, const char *name, const char *labels, uint64_t v)
{
	sbuf_printf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
}

static void by_class(struct sbuf *b, const char *name, const char *labels,
		     const uint64_t responses[STATS_CLASSES])
{
	for (unsigned k = 0; k < STATS_CLASSES; k++)
		sbuf_printf(b, "%s{%s%scode=\"%s\"} %llu\n", name, labels, *labels ? "," : "",
			    stats_class_name[k], (unsigned long long)responses[k]);
}

static void histogram(struct sbuf *b, const char *name, const char *labels,
		      const struct hist_sum *h)
{
	uint64_t cum = 0;
	const char *sep = *labels ? "," : "";
	for (unsigned i = 0; i < STATS_BOUNDS; i++) {
		cum += h->bucket[i];
		sbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
			    (double)stats_bound_us[i] / 1e6, (unsigned long long)cum);
	}
	sbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		    (unsigned long long)h->count);
	sbuf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
		    (double)h->sum_us / 1e6, name, labels, (unsigned long long)h->count);
}

static void process_metrics(struct sbuf *b, const struct metrics_src *src, const struct proc_sum *p)
{
	family(b, "sluice_build_info", "gauge", "The running version of sluice.");
	sbuf_printf(b, "sluice_build_info{version=\"%s\"} 1\n", SLUICE_VERSION);
	family(b, "sluice_start_time_seconds", "gauge", "When the process started, in Unix time.");
	sbuf_printf(b, "sluice_start_time_seconds %.3f\n", src->start_time);
	family(b, "sluice_workers", "gauge", "Worker threads.");
	sbuf_printf(b, "sluice_workers %u\n", src->sh->workers);
	family(b, "sluice_config_generation", "gauge",
	       "The configuration in use: 1 at start, one more per reload or API change applied.");
	sbuf_printf(b, "sluice_config_generation %llu\n", (unsigned long long)src->generation);
	family(b, "sluice_reloads_total", "counter", "Reloads (SIGHUP), applied or refused.");
	sbuf_printf(b, "sluice_reloads_total{result=\"ok\"} %llu\n",
		    (unsigned long long)src->reloads);
	sbuf_printf(b, "sluice_reloads_total{result=\"failed\"} %llu\n",
		    (unsigned long long)src->reload_failures);
	family(b, "sluice_requests_total", "counter",
	       "Requests by the class of their response (none: the client left first), routed or not.");
	by_class(b, "sluice_requests_total", "", p->responses);
	family(b, "sluice_received_bytes_total", "counter", "Request bytes from clients.");
	sbuf_printf(b, "sluice_received_bytes_total %llu\n", (unsigned long long)p->bytes_in);
	family(b, "sluice_sent_bytes_total", "counter", "Response bytes to clients.");
	sbuf_printf(b, "sluice_sent_bytes_total %llu\n", (unsigned long long)p->bytes_out);
	family(b, "sluice_client_connections_opened_total", "counter", "Client connections accepted.");
	sbuf_printf(b, "sluice_client_connections_opened_total %llu\n",
		    (unsigned long long)p->clients_opened);
	family(b, "sluice_client_connections", "gauge", "Client connections open.");
	sbuf_printf(b, "sluice_client_connections %llu\n", (unsigned long long)p->clients_open);
	family(b, "sluice_client_connections_idle", "gauge",
	       "Client connections open between requests.");
	sbuf_printf(b, "sluice_client_connections_idle %llu\n", (unsigned long long)p->clients_idle);
	family(b, "sluice_tls_handshakes_total", "counter",
	       "TLS handshakes with clients, completed or failed (a client that left during one failed).");
	sbuf_printf(b, "sluice_tls_handshakes_total{result=\"ok\"} %llu\n",
		    (unsigned long long)p->tls_handshakes);
	sbuf_printf(b, "sluice_tls_handshakes_total{result=\"failed\"} %llu\n",
		    (unsigned long long)p->tls_failures);
	family(b, "sluice_client_errors_total", "counter",
	       "Requests refused for the client's own mistake, by the status they got (4xx: any other).");
	for (unsigned k = 0; k < STATS_CLIENT_ERRORS; k++)
		sbuf_printf(b, "sluice_client_errors_total{status=\"%s\"} %llu\n",
			    stats_client_error_name[k], (unsigned long long)p->client_errors[k]);
}

static const char *const hist_help[3] = {
	"Requests from their first byte to their response's last.",
	"From sending a request to the server to its response head (connect included).",
	"sluice's own time per request: the total less waiting on the backend and the client.",
};

/* The histograms of a req_sum, one family each; of[i] is the req_sum of series i. */
static void req_histograms(struct sbuf *b, const char *prefix, struct sbuf *lab, size_t n,
			   const struct req_sum *(*of)(void *ctx, size_t i, struct sbuf *lab),
			   void *ctx)
{
	static const char *const suffix[3] = {"request_duration_seconds",
					      "backend_response_seconds", "added_seconds"};
	for (unsigned h = 0; h < 3; h++) {
		char name[96];
		snprintf(name, sizeof(name), "%s_%s", prefix, suffix[h]);
		family(b, name, "histogram", hist_help[h]);
		for (size_t i = 0; i < n; i++) {
			const struct req_sum *r = of(ctx, i, lab);
			const struct hist_sum *hs = h == 0 ? &r->total : h == 1 ? &r->backend : &r->added;
			histogram(b, name, lab->data, hs);
		}
	}
}

struct walk {
	const struct config *cfg;
	const struct sums *s;
	size_t *pool_of, *index_of; /* a server's pool and its index there, by flat index */
};

static const struct req_sum *pool_req(void *ctx, size_t i, struct sbuf *lab)
{
	struct walk *w = ctx;
	labels_of(lab, w->cfg->pools[i].name, NULL);
	return &w->s->pools[i].req;
}

static const struct req_sum *server_req(void *ctx, size_t i, struct sbuf *lab)
{
	struct walk *w = ctx;
	size_t p = w->pool_of[i], k = w->index_of[i];
	labels_of(lab, w->cfg->pools[p].name, w->cfg->pools[p].servers[k].addr.text);
	return &w->s->servers[p][k].req;
}

/* The labels of a tracked site's or route's series: site="shop.example",route="/api/" */
static void tracked_labels(struct sbuf *b, const struct cfg_tracked *t)
{
	b->len = 0;
	sbuf_puts(b, "site=\"");
	sbuf_label(b, t->site);
	sbuf_puts(b, "\"");
	if (t->route) {
		sbuf_puts(b, ",route=\"");
		sbuf_label(b, t->route);
		sbuf_puts(b, "\"");
	}
}

/* Sites (route false) or routes with metrics = true, by their index among those. */
struct tracked_walk {
	const struct config *cfg;
	const struct sums *s;
	size_t *index; /* [n] into cfg->tracked */
};

static const struct req_sum *tracked_req(void *ctx, size_t i, struct sbuf *lab)
{
	struct tracked_walk *w = ctx;
	tracked_labels(lab, &w->cfg->tracked[w->index[i]]);
	return &w->s->tracked[w->index[i]];
}

static void tracked_metrics(struct sbuf *b, const struct config *cfg, const struct sums *s,
			    struct sbuf *lab, bool routes)
{
	struct tracked_walk w = {.cfg = cfg, .s = s};
	size_t n = 0;
	if (!(w.index = malloc((cfg->ntracked + 1) * sizeof(*w.index)))) {
		b->failed = true;
		return;
	}
	for (size_t i = 0; i < cfg->ntracked; i++)
		if ((cfg->tracked[i].route != NULL) == routes)
			w.index[n++] = i;
	const char *prefix = routes ? "sluice_route" : "sluice_site";
	char name[64];
	snprintf(name, sizeof(name), "%s_requests_total", prefix);
	family(b, name, "counter",
	       routes ? "Requests of a route with metrics = true, by the class of their response."
		      : "Requests of a site with metrics = true, by the class of their response.");
	for (size_t i = 0; i < n; i++) {
		const struct req_sum *r = tracked_req(&w, i, lab);
		by_class(b, name, lab->data, r->responses);
	}
	req_histograms(b, prefix, lab, n, tracked_req, &w);
	free(w.index);
}

static void pool_metrics(struct sbuf *b, struct walk *w, struct sbuf *lab)
{
	const struct config *cfg = w->cfg;
	const struct sums *s = w->s;
	family(b, "sluice_pool_requests_total", "counter",
	       "Requests sent to the pool, by the class of their response.");
	for (size_t i = 0; i < cfg->npools; i++) {
		labels_of(lab, cfg->pools[i].name, NULL);
		by_class(b, "sluice_pool_requests_total", lab->data, s->pools[i].req.responses);
	}
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} fields[] = {
		{"sluice_pool_received_bytes_total", "counter", "Request bytes from clients.",
		 offsetof(struct pool_sum, req.bytes_in)},
		{"sluice_pool_sent_bytes_total", "counter", "Response bytes to clients.",
		 offsetof(struct pool_sum, req.bytes_out)},
		{"sluice_pool_retries_total", "counter", "Requests sent again to another server.",
		 offsetof(struct pool_sum, retries)},
		{"sluice_pool_queue_length", "gauge",
		 "Requests waiting for a slot of the pool or of a server (max_connections).",
		 offsetof(struct pool_sum, queued)},
	};
	for (size_t f = 0; f < ARRAY_LEN(fields); f++) {
		family(b, fields[f].name, fields[f].type, fields[f].help);
		for (size_t i = 0; i < cfg->npools; i++) {
			labels_of(lab, cfg->pools[i].name, NULL);
			uint64_t v;
			memcpy(&v, (const char *)&s->pools[i] + fields[f].off, sizeof(v));
			sample(b, fields[f].name, lab->data, v);
		}
	}
	family(b, "sluice_pool_queue_seconds", "histogram",
	       "Time requests waited in the pool's queue, of those that waited.");
	for (size_t i = 0; i < cfg->npools; i++) {
		labels_of(lab, cfg->pools[i].name, NULL);
		histogram(b, "sluice_pool_queue_seconds", lab->data, &s->pools[i].queue);
	}
	req_histograms(b, "sluice_pool", lab, cfg->npools, pool_req, w);
}

static void server_metrics(struct sbuf *b, struct walk *w, struct sbuf *lab, size_t n,
			   const struct metrics_src *src)
{
	family(b, "sluice_server_requests_total", "counter",
	       "Requests sent to the server, by the class of their response.");
	for (size_t i = 0; i < n; i++) {
		const struct req_sum *r = server_req(w, i, lab);
		by_class(b, "sluice_server_requests_total", lab->data, r->responses);
	}
	family(b, "sluice_server_up", "gauge",
	       "1 while health checks and passive health let the server take requests.");
	for (size_t i = 0; i < n; i++) {
		server_req(w, i, lab);
		sample(b, "sluice_server_up", lab->data,
		       healthy(src->gen->servers[w->pool_of[i]][w->index_of[i]], src->now_ms));
	}
	family(b, "sluice_server_admin_state", "gauge",
	       "0 ready, 1 drain (no new requests), 2 maint: as the admin API or drain = true set it.");
	for (size_t i = 0; i < n; i++) {
		server_req(w, i, lab);
		sample(b, "sluice_server_admin_state", lab->data,
		       atomic_load(&src->gen->servers[w->pool_of[i]][w->index_of[i]]->admin));
	}
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} fields[] = {
		{"sluice_server_failures_total", "counter",
		 "Connects refused or timed out, and connections closed before a response.",
		 offsetof(struct server_sum, failures)},
		{"sluice_server_connections_opened_total", "counter", "Connections opened to the server.",
		 offsetof(struct server_sum, opened)},
		{"sluice_server_connections", "gauge", "Connections open to the server, idle ones included.",
		 offsetof(struct server_sum, open)},
		{"sluice_server_connections_idle", "gauge", "Idle connections kept for reuse.",
		 offsetof(struct server_sum, idle)},
	};
	for (size_t f = 0; f < ARRAY_LEN(fields); f++) {
		family(b, fields[f].name, fields[f].type, fields[f].help);
		for (size_t i = 0; i < n; i++) {
			server_req(w, i, lab);
			uint64_t v;
			memcpy(&v,
			       (const char *)&w->s->servers[w->pool_of[i]][w->index_of[i]] + fields[f].off,
			       sizeof(v));
			sample(b, fields[f].name, lab->data, v);
		}
	}
	req_histograms(b, "sluice_server", lab, n, server_req, w);
}

void metrics_prometheus(struct sbuf *out, const struct metrics_src *src)
{
	struct sums s;
	const struct config *cfg = src->gen->cfg;
	size_t n = 0;
	for (size_t i = 0; i < cfg->npools; i++)
		n += cfg->pools[i].nservers;
	struct walk w = {.cfg = cfg, .s = &s};
	w.pool_of = malloc((n + 1) * sizeof(*w.pool_of));
	w.index_of = malloc((n + 1) * sizeof(*w.index_of));
	if (!w.pool_of || !w.index_of || sums_take(&s, src) < 0) {
		free(w.pool_of);
		free(w.index_of);
		out->failed = true;
		return;
	}
	for (size_t i = 0, j = 0; i < cfg->npools; i++)
		for (size_t k = 0; k < cfg->pools[i].nservers; k++, j++) {
			w.pool_of[j] = i;
			w.index_of[j] = k;
		}
	struct sbuf lab = {0};
	process_metrics(out, src, &s.proc);
	pool_metrics(out, &w, &lab);
	server_metrics(out, &w, &lab, n, src);
	if (cfg->ntracked) {
		tracked_metrics(out, cfg, &s, &lab, false);
		tracked_metrics(out, cfg, &s, &lab, true);
	}
	out->failed |= lab.failed;
	sbuf_free(&lab);
	free(w.pool_of);
	free(w.index_of);
	sums_free(&s);
}

/* --- the status page's JSON --- */

static void json_latency(struct sbuf *b, const char *key, const struct hist_sum *h)
{
	sbuf_printf(b, "\"%s\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"count\":%llu}", key,
		    stats_quantile_us(h, 0.5) / 1e3, stats_quantile_us(h, 0.9) / 1e3,
		    stats_quantile_us(h, 0.99) / 1e3, (unsigned long long)h->count);
}

static void json_requests(struct sbuf *b, const struct req_sum *r)
{
	sbuf_printf(b, "\"requests\":%llu,\"responses\":{", (unsigned long long)r->requests);
	for (unsigned k = 0; k < STATS_CLASSES; k++)
		sbuf_printf(b, "%s\"%s\":%llu", k ? "," : "", stats_class_name[k],
			    (unsigned long long)r->responses[k]);
	sbuf_printf(b, "},\"errors\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,",
		    (unsigned long long)r->responses[CLASS_5XX], (unsigned long long)r->bytes_in,
		    (unsigned long long)r->bytes_out);
	json_latency(b, "latency_ms", &r->total);
	sbuf_puts(b, ",");
	json_latency(b, "backend_ms", &r->backend);
	sbuf_puts(b, ",");
	json_latency(b, "added_ms", &r->added);
}

void metrics_status_json(struct sbuf *out, const struct metrics_src *src)
{
	struct sums s;
	if (sums_take(&s, src) < 0) {
		out->failed = true;
		return;
	}
	const struct config *cfg = src->gen->cfg;
	const struct proc_sum *p = &s.proc;
	sbuf_printf(out,
		    "{\"version\":\"%s\",\"generation\":%llu,\"start_time\":%.3f,\"workers\":%u,"
		    "\"reloads\":%llu,\"reload_failures\":%llu,\"requests\":%llu,\"responses\":{",
		    SLUICE_VERSION, (unsigned long long)src->generation, src->start_time,
		    src->sh->workers, (unsigned long long)src->reloads,
		    (unsigned long long)src->reload_failures, (unsigned long long)p->requests);
	for (unsigned k = 0; k < STATS_CLASSES; k++)
		sbuf_printf(out, "%s\"%s\":%llu", k ? "," : "", stats_class_name[k],
			    (unsigned long long)p->responses[k]);
	sbuf_printf(out,
		    "},\"clients\":{\"open\":%llu,\"idle\":%llu,\"opened\":%llu},"
		    "\"tls\":{\"handshakes\":%llu,\"failures\":%llu},\"pools\":[",
		    (unsigned long long)p->clients_open, (unsigned long long)p->clients_idle,
		    (unsigned long long)p->clients_opened, (unsigned long long)p->tls_handshakes,
		    (unsigned long long)p->tls_failures);
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *cp = &cfg->pools[i];
		const struct pool_sum *ps = &s.pools[i];
		sbuf_puts(out, i ? ",{\"name\":" : "{\"name\":");
		sbuf_json_str(out, cp->name, strlen(cp->name));
		sbuf_printf(out, ",\"balance\":\"%s\",\"retries\":%llu,\"queued\":%llu,",
			    balance_algo_names[cp->balance], (unsigned long long)ps->retries,
			    (unsigned long long)ps->queued);
		json_requests(out, &ps->req);
		sbuf_puts(out, ",\"servers\":[");
		for (size_t k = 0; k < cp->nservers; k++) {
			const struct cfg_server *cs = &cp->servers[k];
			const struct server_sum *ss = &s.servers[i][k];
			struct server_state *st = src->gen->servers[i][k];
			uint32_t weight = atomic_load(&st->weight);
			sbuf_puts(out, k ? ",{\"address\":" : "{\"address\":");
			sbuf_json_str(out, cs->addr.text, strlen(cs->addr.text));
			sbuf_printf(out,
				    ",\"state\":\"%s\",\"weight\":%u,\"backup\":%s,\"failures\":%llu,"
				    "\"connections\":%llu,\"idle\":%llu,",
				    state_name(st, src->now_ms), weight ? weight : cs->weight,
				    cs->backup ? "true" : "false",
				    (unsigned long long)ss->failures, (unsigned long long)ss->open,
				    (unsigned long long)ss->idle);
			json_requests(out, &ss->req);
			sbuf_puts(out, "}");
		}
		sbuf_puts(out, "]}");
	}
	sbuf_puts(out, "],\"tracked\":[");
	for (size_t i = 0; i < cfg->ntracked; i++) {
		const struct cfg_tracked *t = &cfg->tracked[i];
		sbuf_puts(out, i ? ",{\"site\":" : "{\"site\":");
		sbuf_json_str(out, t->site, strlen(t->site));
		sbuf_puts(out, ",\"route\":");
		if (t->route)
			sbuf_json_str(out, t->route, strlen(t->route));
		else
			sbuf_puts(out, "null");
		sbuf_puts(out, ",");
		json_requests(out, &s.tracked[i]);
		sbuf_puts(out, "}");
	}
	sbuf_puts(out, "]}\n");
	sums_free(&s);
}
