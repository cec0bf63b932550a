#include "control/admin.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The API's bodies are parsed by cJSON (Debian's libcjson-dev), a small, well-kept parser. */
#include <cjson/cJSON.h>

#include "control/runtime.h"
#include "control/status_page.h"
#include "core/common.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "http/h1.h"
#include "http/http.h"

/* Admin connections at once; more wait in the backlog. */
#define ADMIN_MAX_CONNS 64
#define ADMIN_MAX_HEAD 16384
#define ADMIN_MAX_BODY (1u << 20)
/* An admin connection with nothing to do for this long is closed. */
#define ADMIN_IDLE_MS 30000
/* How long a closing connection keeps reading (and dropping) what the client still sends. */
#define ADMIN_LINGER_MS 2000

struct admin {
	struct loop *loop;
	const struct metrics_src *src;
	struct runtime *rt; /* the changes of pools and sites */
	int fd;
	struct io_handler io;
	struct cfg_addr addr;
	char *unix_path; /* to unlink when closed */
	char *token;	 /* NULL: the API is refused */
	struct list conns;
	uint32_t nconns;
	bool full; /* stopped accepting at ADMIN_MAX_CONNS */
};

struct admin_conn {
	struct conn conn;
	struct admin *a;
	struct list link;
	struct timer timer;
	char peer[INET6_ADDRSTRLEN + 8];
	char *in;
	size_t in_len, in_cap;
	struct sbuf out; /* the response being written */
	size_t out_sent;
	bool close_after; /* once out is written */
	bool lingering;	  /* answered and sent FIN: dropping what the client still sends */
	bool eof;
	struct h1_parser parser;
	struct http_msg msg;
};

/* One request, as the handlers see it. */
struct admin_req {
	struct admin_conn *c;
	const struct http_msg *m;
	const char *path; /* without the query */
	size_t path_len;
	const char *body;
	size_t body_len;
};

/* --- the listening socket --- */

static int open_listener(const struct cfg_admin *cfg, char *err, size_t errlen)
{
	bool un = cfg->unix_path != NULL;
	int fd = socket(un ? AF_UNIX : cfg->addr.sa.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "admin %s: socket: %s", cfg->addr.text, strerror(errno));
		return -1;
	}
	int rc;
	if (un) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", cfg->unix_path);
		/* A socket left by a process that is gone is replaced; any other file is not. */
		struct stat st;
		if (lstat(cfg->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno == ECONNREFUSED)
			unlink(cfg->unix_path);
		close(fd);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
			snprintf(err, errlen, "admin %s: socket: %s", cfg->addr.text, strerror(errno));
			return -1;
		}
		rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	} else {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (cfg->addr.sa.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc = bind(fd, (const struct sockaddr *)&cfg->addr.sa, cfg->addr.len);
	}
	if (rc < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "admin %s: %s", cfg->addr.text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void close_listener(struct admin *a)
{
	if (a->fd < 0)
		return;
	close(a->fd);
	a->fd = -1;
	if (a->unix_path)
		unlink(a->unix_path);
	free(a->unix_path);
	a->unix_path = NULL;
}

static void accept_ready(struct admin *a);
static void on_listener(struct io_handler *h, uint32_t events)
{
	(void)events;
	accept_ready(container_of(h, struct admin, io));
}

static int take_listener(struct admin *a, const struct cfg_admin *cfg, int fd, char *err,
			 size_t errlen)
{
	a->io.on_event = on_listener;
	int rc = loop_add_fd(a->loop, fd, EPOLLIN, &a->io);
	if (rc < 0) {
		snprintf(err, errlen, "admin %s: epoll: %s", cfg->addr.text, strerror(-rc));
		close(fd);
		return -1;
	}
	close_listener(a);
	a->fd = fd;
	a->addr = cfg->addr;
	a->unix_path = cfg->unix_path ? strdup(cfg->unix_path) : NULL;
	log_info("admin listening on %s", cfg->addr.text);
	accept_ready(a);
	return 0;
}

/* --- connections --- */

static void conn_close_admin(struct admin_conn *c)
{
	struct admin *a = c->a;
	timer_cancel(a->loop, &c->timer);
	conn_close(&c->conn);
	list_remove(&c->link);
	free(c->in);
	sbuf_free(&c->out);
	loop_free_later(a->loop, c);
	a->nconns--;
	if (a->full) {
		a->full = false;
		accept_ready(a);
	}
}

static void conn_timed_out(struct timer *t)
{
	conn_close_admin(container_of(t, struct admin_conn, timer));
}

static void respond(struct admin_conn *c, int status, const char *type, const char *body,
		    size_t len, const char *headers)
{
	bool head = c->msg.method == HTTP_METHOD_HEAD;
	sbuf_printf(&c->out,
		    "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
		    status, http_reason((unsigned)status), type, len, headers ? headers : "",
		    c->close_after ? "Connection: close\r\n" : "");
	if (!head)
		sbuf_put(&c->out, body, len);
}

/* {"error": why}, for every refusal: a client reads the field it got wrong. */
static void respond_error(struct admin_conn *c, int status, const char *why, const char *headers)
{
	struct sbuf b = {0};
	sbuf_puts(&b, "{\"error\":");
	sbuf_json_str(&b, why, strlen(why));
	sbuf_puts(&b, "}\n");
	respond(c, status, "application/json", b.failed ? "" : b.data, b.failed ? 0 : b.len, headers);
	sbuf_free(&b);
}

/* Whether the request carries the token; a constant-time compare, so timing tells nothing. */
static bool authorized(const struct admin *a, const struct http_msg *m)
{
	const struct http_header *h = http_find_header(m, "authorization", 13);
	if (!h || h->value.len < 7 || strncasecmp(http_str(m, h->value), "Bearer ", 7) != 0)
		return false;
	const char *given = http_str(m, h->value) + 7;
	size_t len = h->value.len - 7, want = strlen(a->token);
	unsigned char diff = len != want;
	for (size_t i = 0; i < want; i++)
		diff |= (unsigned char)(a->token[i] ^ (i < len ? given[i] : 0));
	return diff == 0;
}

static bool path_is(const struct admin_req *r, const char *p)
{
	return r->path_len == strlen(p) && !memcmp(r->path, p, r->path_len);
}

static void serve_sbuf(struct admin_conn *c, struct sbuf *b, const char *type)
{
	if (b->failed)
		respond_error(c, 500, "out of memory", NULL);
	else
		respond(c, 200, type, b->data ? b->data : "", b->len, NULL);
	sbuf_free(b);
}

/* The facts of src, with the clock read now. */
static struct metrics_src current(const struct admin *a)
{
	struct metrics_src s = *a->src;
	s.now_ms = loop_now_ms(a->loop);
	return s;
}

/* 400 naming the field: "weight: must be ...". */
static void refuse(struct admin_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct admin_conn *c, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	respond_error(c, 400, why, NULL);
}

/* Whether JSON text escapes a NUL (\u0000), which cJSON's strings would silently end at. */
static bool escapes_nul(const char *s, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (s[i] == '\\') {
			if (s[i + 1] == 'u' && i + 5 < len && !memcmp(s + i + 2, "0000", 4))
				return true;
			i++; /* the escaped character: "\\u0000" is a backslash, then text */
		}
	return false;
}

/* The body as a JSON object whose fields are all in allowed; NULL (refused) otherwise. */
static cJSON *json_body(struct admin_req *r, const char *const *allowed)
{
	if (escapes_nul(r->body, r->body_len)) {
		refuse(r->c, "body: a string holds \\u0000");
		return NULL;
	}
	cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
	if (!j || !cJSON_IsObject(j)) {
		refuse(r->c, "body: not a JSON object");
		cJSON_Delete(j);
		return NULL;
	}
	for (cJSON *f = j->child; f; f = f->next) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, f->string);
		if (!ok) {
			refuse(r->c, "%.100s: unknown field", f->string);
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

/* A string field: NULL (and refused, if required) when absent or not a string. */
static const char *json_string(struct admin_conn *c, const cJSON *j, const char *name,
			       bool required, bool *bad)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, name);
	if (!f && !required)
		return NULL;
	if (!cJSON_IsString(f)) {
		refuse(c, "%s: must be a string", name);
		*bad = true;
		return NULL;
	}
	return f->valuestring;
}

static void server_json(struct sbuf *b, const struct cfg_server *cs, struct server_state *st)
{
	uint32_t weight = atomic_load(&st->weight);
	sbuf_puts(b, "{\"address\":");
	sbuf_json_str(b, cs->addr.text, strlen(cs->addr.text));
	sbuf_printf(b, ",\"state\":\"%s\",\"weight\":%u,\"backup\":%s}",
		    server_admin_name[atomic_load(&st->admin)], weight ? weight : cs->weight,
		    cs->backup ? "true" : "false");
}

/*
 * POST /api/server {"pool": "web", "server": "10.0.0.1:80", "state": "drain", "weight": 5}:
 * state and weight, either or both. Every worker sees it at its next pick.
 */
static void api_server(struct admin_req *r)
{
	static const char *const fields[] = {"pool", "server", "state", "weight", NULL};
	struct admin_conn *c = r->c;
	const struct shared_gen *g = c->a->src->gen;
	cJSON *j = json_body(r, fields);
	if (!j)
		return;
	bool bad = false;
	const char *pool = json_string(c, j, "pool", true, &bad);
	const char *server = bad ? NULL : json_string(c, j, "server", true, &bad);
	const char *state = bad ? NULL : json_string(c, j, "state", false, &bad);
	const cJSON *weight = cJSON_GetObjectItemCaseSensitive(j, "weight");
	size_t pi = bad ? SIZE_MAX : config_find_pool(g->cfg, pool);
	const struct cfg_pool *cp = pi < g->cfg->npools ? &g->cfg->pools[pi] : NULL;
	size_t k = 0;
	while (cp && k < cp->nservers && strcmp(cp->servers[k].addr.text, server))
		k++;
	int admin = -1;
	for (int a = 0; state && a < 3; a++)
		if (!strcmp(state, server_admin_name[a]))
			admin = a;
	if (bad) {
		/* refused already */
	} else if (!cp) {
		refuse(c, "pool: no pool \"%.200s\"", pool);
	} else if (k == cp->nservers) {
		refuse(c, "server: pool \"%.100s\" has no server \"%.100s\"", pool, server);
	} else if (state && admin < 0) {
		refuse(c, "state: must be \"ready\", \"drain\" or \"maint\", got \"%.100s\"", state);
	} else if (weight && (!cJSON_IsNumber(weight) || weight->valuedouble < 1 ||
			      weight->valuedouble > 1000 ||
			      weight->valuedouble != (double)(int)weight->valuedouble)) {
		refuse(c, "weight: must be an integer from 1 to 1000");
	} else if (weight && cp->balance == BALANCE_ROUND_ROBIN) {
		refuse(c, "weight: pool \"%.100s\" balances round_robin, which has no weights", pool);
	} else if (!state && !weight) {
		refuse(c, "body: give state, weight or both");
	} else {
		struct server_state *st = g->servers[pi][k];
		enum server_admin was = atomic_load(&st->admin);
		uint32_t was_weight = atomic_load(&st->weight);
		if (admin >= 0)
			atomic_store(&st->admin, (uint8_t)admin);
		if (weight)
			atomic_store(&st->weight, (uint32_t)weight->valuedouble);
		log_info("admin: %s: pool \"%s\" server %s: state %s -> %s, weight %u -> %u", c->peer,
			 cp->name, server, server_admin_name[was], server_admin_name[atomic_load(&st->admin)],
			 was_weight ? was_weight : cp->servers[k].weight,
			 weight ? (uint32_t)weight->valuedouble : was_weight ? was_weight : cp->servers[k].weight);
		struct sbuf b = {0};
		server_json(&b, &cp->servers[k], st);
		sbuf_puts(&b, "\n");
		serve_sbuf(c, &b, "application/json");
	}
	cJSON_Delete(j);
}

static void pool_json(struct sbuf *b, const struct shared_gen *g, size_t i)
{
	const struct cfg_pool *cp = &g->cfg->pools[i];
	sbuf_puts(b, "{\"name\":");
	sbuf_json_str(b, cp->name, strlen(cp->name));
	sbuf_printf(b, ",\"balance\":\"%s\",\"servers\":[", balance_algo_names[cp->balance]);
	for (size_t k = 0; k < cp->nservers; k++) {
		if (k)
			sbuf_puts(b, ",");
		server_json(b, &cp->servers[k], g->servers[i][k]);
	}
	sbuf_puts(b, "]}");
}

/* The hosts of a router's sites (or of one), grouped by site: for listing them. */
struct site_hosts {
	size_t *start; /* [nsites + 1]: site i's are names[start[i], start[i + 1]) */
	char **names;  /* as written: "*.example.com" for a wildcard */
	size_t n;
	size_t only; /* the site wanted, or SIZE_MAX for all */
};

static void count_host(void *ud, const char *name, size_t len, bool wildcard, uint32_t site)
{
	(void)name, (void)len, (void)wildcard;
	struct site_hosts *h = ud;
	if (h->only == SIZE_MAX || h->only == site)
		h->start[site + 1]++;
}

static void place_host(void *ud, const char *name, size_t len, bool wildcard, uint32_t site)
{
	struct site_hosts *h = ud;
	if (h->only != SIZE_MAX && h->only != site)
		return;
	char *text = malloc(len + 3);
	if (text)
		snprintf(text, len + 3, "%s%.*s", wildcard ? "*." : "", (int)len, name);
	/* start[site] runs ahead as they are placed; put back by one shift after. */
	h->names[h->start[site]++] = text;
}

static void site_hosts_free(struct site_hosts *h)
{
	for (size_t i = 0; h->names && i < h->n; i++)
		free(h->names[i]);
	free(h->names);
	free(h->start);
}

static int site_hosts_collect(struct site_hosts *h, const struct router *r, size_t only)
{
	*h = (struct site_hosts){.only = only};
	if (!(h->start = calloc(r->nsites + 1, sizeof(*h->start))))
		return -1;
	router_each_host(r, count_host, h);
	for (size_t i = 0; i < r->nsites; i++)
		h->start[i + 1] += h->start[i];
	h->n = h->start[r->nsites];
	if (!(h->names = calloc(h->n ? h->n : 1, sizeof(*h->names)))) {
		site_hosts_free(h);
		return -1;
	}
	router_each_host(r, place_host, h);
	memmove(h->start + 1, h->start, r->nsites * sizeof(*h->start));
	h->start[0] = 0;
	return 0;
}

static void site_json(struct sbuf *b, const struct config *cfg, size_t i, const struct site_hosts *h)
{
	const struct site *s = &cfg->router.sites[i];
	sbuf_puts(b, "{\"name\":");
	sbuf_json_str(b, s->name, strlen(s->name));
	sbuf_printf(b, ",\"from\":\"%s\",\"default\":%s,\"hosts\":[", s->added ? "api" : "file",
		    cfg->router.default_site == (int64_t)i ? "true" : "false");
	for (size_t k = h->start[i]; k < h->start[i + 1]; k++) {
		const char *name = h->names[k] ? h->names[k] : "?";
		sbuf_puts(b, k > h->start[i] ? "," : "");
		sbuf_json_str(b, name, strlen(name));
	}
	sbuf_puts(b, "],\"routes\":[");
	for (uint32_t k = 0; k < s->nroutes; k++) {
		const struct route *rt = &s->routes[k];
		sbuf_puts(b, k ? ",{\"path\":" : "{\"path\":");
		sbuf_json_str(b, rt->prefix, rt->prefix_len);
		if (rt->action == ROUTE_PROXY) {
			const char *pool = cfg->pools[rt->pool].name;
			sbuf_puts(b, ",\"pool\":");
			sbuf_json_str(b, pool, strlen(pool));
		} else if (rt->action == ROUTE_RESPOND) {
			sbuf_printf(b, ",\"respond\":%u", rt->status);
		} else {
			sbuf_printf(b, ",\"redirect\":%u,\"to\":", rt->status);
			sbuf_json_str(b, rt->location, rt->location_len);
		}
		sbuf_puts(b, "}");
	}
	sbuf_puts(b, "]}");
}

/* A 400 from a runtime change: its message names the field already. */
static void refuse_change(struct admin_conn *c, const char *err)
{
	if (!strcmp(err, "out of memory"))
		respond_error(c, 500, err, NULL);
	else
		refuse(c, "%s", err);
}

/*
 * POST /api/pool {"pool": "web", "add": "10.0.0.9:80" | {"address": ..., "weight": ...}}
 *            or {"pool": "web", "remove": "10.0.0.9:80"}: what runs, without a reload.
 */
static void api_pool(struct admin_req *r)
{
	static const char *const fields[] = {"pool", "add", "remove", NULL};
	struct admin_conn *c = r->c;
	cJSON *j = json_body(r, fields);
	if (!j)
		return;
	bool bad = false;
	const char *pool = json_string(c, j, "pool", true, &bad);
	const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "add");
	const char *remove = bad ? NULL : json_string(c, j, "remove", false, &bad);
	char err[1024];
	if (bad) {
		/* refused already */
	} else if (!add == !remove) {
		refuse(c, "body: give one of add or remove");
	} else if (add ? runtime_add_server(c->a->rt, pool, add, err, sizeof(err)) < 0
		       : runtime_remove_server(c->a->rt, pool, remove, err, sizeof(err)) < 0) {
		refuse_change(c, err);
	} else {
		const struct shared_gen *g = c->a->src->gen;
		size_t i = config_find_pool(g->cfg, pool);
		log_info("admin: %s: pool \"%s\": server %s %s", c->peer, pool,
			 add ? g->cfg->pools[i].servers[g->cfg->pools[i].nservers - 1].addr.text : remove,
			 add ? "added" : "removed");
		struct sbuf b = {0};
		pool_json(&b, g, i);
		sbuf_puts(&b, "\n");
		serve_sbuf(c, &b, "application/json");
	}
	cJSON_Delete(j);
}

/* The site named name in what runs now, as JSON; or {"removed": name}. */
static void serve_site(struct admin_conn *c, const char *name)
{
	const struct config *cfg = c->a->src->gen->cfg;
	size_t i = router_site_index(&cfg->router, name);
	struct sbuf b = {0};
	struct site_hosts h;
	if (i == SIZE_MAX) {
		sbuf_puts(&b, "{\"removed\":");
		sbuf_json_str(&b, name, strlen(name));
		sbuf_puts(&b, "}\n");
	} else if (site_hosts_collect(&h, &cfg->router, i) == 0) {
		site_json(&b, cfg, i, &h);
		sbuf_puts(&b, "\n");
		site_hosts_free(&h);
	} else {
		respond_error(c, 500, "out of memory", NULL);
		return;
	}
	serve_sbuf(c, &b, "application/json");
}

/*
 * POST /api/site {"add": {"hosts": [...], "pool": ...}}
 *             or {"replace": "example.com", "site": {...}}
 *             or {"remove": "example.com"}: a site is named by its first host.
 */
static void api_site(struct admin_req *r)
{
	static const char *const fields[] = {"add", "replace", "site", "remove", NULL};
	struct admin_conn *c = r->c;
	cJSON *j = json_body(r, fields);
	if (!j)
		return;
	bool bad = false;
	const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "add");
	const cJSON *site = cJSON_GetObjectItemCaseSensitive(j, "site");
	const char *replace = json_string(c, j, "replace", false, &bad);
	const char *remove = bad ? NULL : json_string(c, j, "remove", false, &bad);
	struct runtime *rt = c->a->rt;
	char err[1024];
	if (bad) {
		/* refused already */
	} else if (site && !replace) {
		refuse(c, "site: goes with replace");
	} else if ((add != NULL) + (replace != NULL) + (remove != NULL) != 1) {
		refuse(c, "body: give one of add, replace (with site) or remove");
	} else if (replace && !site) {
		refuse(c, "site: replace needs the site that takes its place");
	} else if (add ? runtime_add_site(rt, add, err, sizeof(err)) < 0
		   : replace ? runtime_replace_site(rt, replace, site, err, sizeof(err)) < 0
			     : runtime_remove_site(rt, remove, err, sizeof(err)) < 0) {
		refuse_change(c, err);
	} else {
		const char *name = add ? runtime_site_name(add) : replace ? runtime_site_name(site) : remove;
		if (replace)
			log_info("admin: %s: site \"%s\" replaced by site \"%s\"", c->peer, replace,
				 name);
		else
			log_info("admin: %s: site \"%s\" %s", c->peer, name, add ? "added" : "removed");
		serve_site(c, name);
	}
	cJSON_Delete(j);
}

/* GET /api/config: what runs, with what the admin API changed. */
static void api_config(struct admin_conn *c)
{
	const struct shared_gen *g = c->a->src->gen;
	const struct config *cfg = g->cfg;
	struct sbuf b = {0};
	sbuf_printf(&b, "{\"generation\":%llu,\"workers\":%u,\"listeners\":[",
		    (unsigned long long)c->a->src->generation, c->a->src->sh->workers);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		sbuf_puts(&b, i ? ",{\"address\":" : "{\"address\":");
		sbuf_json_str(&b, l->addr.text, strlen(l->addr.text));
		sbuf_printf(&b, ",\"tls\":%s,\"pool\":", l->tls ? "true" : "false");
		if (l->routed)
			sbuf_puts(&b, "null}");
		else {
			sbuf_json_str(&b, cfg->pools[l->pool].name, strlen(cfg->pools[l->pool].name));
			sbuf_puts(&b, "}");
		}
	}
	sbuf_puts(&b, "],\"pools\":[");
	for (size_t i = 0; i < cfg->npools; i++) {
		if (i)
			sbuf_puts(&b, ",");
		pool_json(&b, g, i);
	}
	sbuf_puts(&b, "],\"sites\":[");
	struct site_hosts h;
	if (site_hosts_collect(&h, &cfg->router, SIZE_MAX) < 0) {
		sbuf_free(&b);
		respond_error(c, 500, "out of memory", NULL);
		return;
	}
	for (size_t i = 0; i < cfg->router.nsites; i++) {
		if (i)
			sbuf_puts(&b, ",");
		site_json(&b, cfg, i, &h);
	}
	site_hosts_free(&h);
	sbuf_puts(&b, "]}\n");
	serve_sbuf(c, &b, "application/json");
}

static void handle(struct admin_req *r)
{
	struct admin_conn *c = r->c;
	struct admin *a = c->a;
	const struct http_msg *m = r->m;
	bool get = m->method == HTTP_METHOD_GET || m->method == HTTP_METHOD_HEAD;
	bool api = r->path_len >= 5 && !memcmp(r->path, "/api/", 5);
	if (!api) {
		if (!path_is(r, "/metrics") && !path_is(r, "/healthz") && !path_is(r, "/")) {
			respond_error(c, 404, "no such admin endpoint", NULL);
			return;
		}
		if (!get) {
			respond_error(c, 405, "only GET", "Allow: GET, HEAD\r\n");
			return;
		}
		struct sbuf b = {0};
		if (path_is(r, "/metrics")) {
			struct metrics_src s = current(a);
			metrics_prometheus(&b, &s);
			serve_sbuf(c, &b, "text/plain; version=0.0.4; charset=utf-8");
		} else if (path_is(r, "/healthz")) {
			respond(c, 200, "text/plain", "ok\n", 3, NULL);
		} else {
			respond(c, 200, "text/html; charset=utf-8", status_page_html,
				strlen(status_page_html),
				"Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
				"style-src 'unsafe-inline'; connect-src 'self'; img-src data:\r\n"
				"X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n");
		}
		return;
	}
	if (!a->token) {
		respond_error(c, 403, "the admin API is off: admin.token_file is not set", NULL);
		return;
	}
	if (!authorized(a, m)) {
		log_warn("admin: %s %.*s %.*s: refused, no valid token", c->peer,
			 (int)m->method_name.len, http_str(m, m->method_name), (int)MIN(r->path_len, 200),
			 r->path);
		respond_error(c, 401, "this call needs Authorization: Bearer <admin token>",
			      "WWW-Authenticate: Bearer realm=\"sluice\"\r\n");
		return;
	}
	if (path_is(r, "/api/status") || path_is(r, "/api/config")) {
		if (!get) {
			respond_error(c, 405, "only GET", "Allow: GET, HEAD\r\n");
			return;
		}
		if (path_is(r, "/api/config")) {
			api_config(c);
			return;
		}
		struct sbuf b = {0};
		struct metrics_src s = current(a);
		metrics_status_json(&b, &s);
		serve_sbuf(c, &b, "application/json");
		return;
	}
	void (*change)(struct admin_req *) = path_is(r, "/api/server") ? api_server
					     : path_is(r, "/api/pool")	 ? api_pool
					     : path_is(r, "/api/site")	 ? api_site
									 : NULL;
	if (change) {
		if (m->method != HTTP_METHOD_POST) {
			respond_error(c, 405, "only POST", "Allow: POST\r\n");
			return;
		}
		change(r);
		return;
	}
	respond_error(c, 404, "no such admin endpoint", NULL);
}

/*
 * Parses and answers the request at the start of c->in, if it is all
 * there. Returns 1 if one was answered, 0 if more bytes are needed, -1 if
 * the connection is to close once the answer (if any) is out.
 */
static int next_request(struct admin_conn *c)
{
	if (!c->in_len)
		return 0;
	h1_request_parser_init(&c->parser, &(struct h1_limits){8192, ADMIN_MAX_HEAD});
	enum h1_result hr = h1_parse_head(&c->parser, &c->msg, c->in, c->in_len);
	if (hr == H1_AGAIN) {
		if (c->in_len < ADMIN_MAX_HEAD)
			return 0;
		hr = H1_ERROR;
		c->parser.error_status = 431;
		c->parser.error = "request head too large";
	}
	if (hr == H1_ERROR) {
		c->close_after = true;
		respond_error(c, c->parser.error_status ? c->parser.error_status : 400,
			      c->parser.error ? c->parser.error : "malformed request", NULL);
		return -1;
	}
	const struct http_msg *m = &c->msg;
	size_t body = 0;
	if (m->framing == HTTP_FRAMING_CHUNKED) {
		c->close_after = true;
		respond_error(c, 411, "send the body with Content-Length", NULL);
		return -1;
	}
	if (m->framing == HTTP_FRAMING_LENGTH) {
		if (m->content_length > ADMIN_MAX_BODY) {
			c->close_after = true;
			respond_error(c, 413, "body: larger than 1 MiB", NULL);
			return -1;
		}
		body = (size_t)m->content_length;
	}
	if (c->in_len < m->head_len + body)
		return 0;
	c->close_after = !m->keep_alive;
	const char *path = http_str(m, m->path);
	const char *q = memchr(path, '?', m->path.len);
	struct admin_req r = {
		.c = c,
		.m = m,
		.path = path,
		.path_len = q ? (size_t)(q - path) : m->path.len,
		.body = c->in + m->head_len,
		.body_len = body,
	};
	handle(&r);
	size_t used = m->head_len + body;
	memmove(c->in, c->in + used, c->in_len - used);
	c->in_len -= used;
	return c->close_after ? -1 : 1;
}

/* Reads what there is; returns false when the connection failed. */
static bool read_in(struct admin_conn *c)
{
	for (;;) {
		if (c->in_len == c->in_cap) {
			if (c->in_cap >= ADMIN_MAX_HEAD + ADMIN_MAX_BODY)
				return true; /* a whole request's worth: answer it first */
			size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
			char *in = realloc(c->in, cap);
			if (!in)
				return false;
			c->in = in;
			c->in_cap = cap;
		}
		ssize_t n = conn_recv(&c->conn, c->in + c->in_len, c->in_cap - c->in_len);
		if (n > 0) {
			c->in_len += (size_t)n;
			continue;
		}
		if (n == IO_EOF)
			c->eof = true;
		return n == 0 || n == IO_EOF;
	}
}

/* Writes what there is; returns 1 when all is out, 0 if not yet, -1 on failure. */
static int write_out(struct admin_conn *c)
{
	while (c->out_sent < c->out.len) {
		struct iovec iov = {c->out.data + c->out_sent, c->out.len - c->out_sent};
		ssize_t n = conn_sendv(&c->conn, &iov, 1);
		if (n <= 0)
			return n < 0 ? -1 : 0;
		c->out_sent += (size_t)n;
	}
	sbuf_free(&c->out);
	c->out_sent = 0;
	return 1;
}

/*
 * After a refusal the client may still be sending (a body too large):
 * closing with unread bytes would reset the connection and could destroy
 * the answer in flight, so the rest is read and dropped until the client
 * closes, for a while.
 */
static void linger(struct admin_conn *c)
{
	if (!c->lingering) {
		c->lingering = true;
		conn_shutdown_write(&c->conn);
		timer_arm(c->a->loop, &c->timer, ADMIN_LINGER_MS);
	}
	char sink[16384];
	for (;;) {
		ssize_t n = conn_recv(&c->conn, sink, sizeof(sink));
		if (n > 0)
			continue;
		if (n < 0)
			conn_close_admin(c);
		return;
	}
}

static void conn_run(struct admin_conn *c)
{
	if (c->lingering) {
		linger(c);
		return;
	}
	for (;;) {
		/* Each time round: reading stops at a whole request's worth, and edges do not repeat. */
		if (!read_in(c)) {
			conn_close_admin(c);
			return;
		}
		int w = write_out(c);
		if (w < 0) {
			conn_close_admin(c);
			return;
		}
		if (w > 0 && c->close_after) {
			linger(c);
			return;
		}
		if (w == 0)
			break;
		if (c->out.failed) {
			conn_close_admin(c);
			return;
		}
		int r = next_request(c);
		if (r == 0) {
			if (c->eof) {
				conn_close_admin(c);
				return;
			}
			break;
		}
	}
	timer_arm(c->a->loop, &c->timer, ADMIN_IDLE_MS);
}

static void on_conn(struct conn *cn) { conn_run(container_of(cn, struct admin_conn, conn)); }

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(in4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "unix");
	}
}

static void accept_ready(struct admin *a)
{
	while (a->fd >= 0) {
		if (a->nconns >= ADMIN_MAX_CONNS) {
			a->full = true;
			return;
		}
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(a->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("admin: accept: %s", strerror(errno));
			return;
		}
		struct admin_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->timer.on_expire = conn_timed_out;
		peer_text(&ss, c->peer, sizeof(c->peer));
		if (conn_attach(&c->conn, a->loop, fd, on_conn) < 0) { /* it closed fd */
			free(c);
			continue;
		}
		/* A request may be waiting already: read optimistically. */
		c->conn.flags |= CONN_READABLE | CONN_WRITABLE;
		list_insert_tail(&a->conns, &c->link);
		a->nconns++;
		conn_run(c);
	}
}

/* --- lifetime --- */

static void take_token(struct admin *a, const struct cfg_admin *cfg)
{
	free(a->token);
	a->token = cfg->token ? strdup(cfg->token) : NULL;
}

struct admin *admin_start(struct loop *loop, const struct cfg_admin *cfg,
			  const struct metrics_src *src, struct runtime *rt, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->loop = loop;
	a->src = src;
	a->rt = rt;
	a->fd = -1;
	list_init(&a->conns);
	int fd = open_listener(cfg, err, errlen);
	if (fd < 0 || take_listener(a, cfg, fd, err, errlen) < 0) {
		free(a);
		return NULL;
	}
	take_token(a, cfg);
	return a;
}

static bool same_address(const struct admin *a, const struct cfg_admin *cfg)
{
	if (a->unix_path || cfg->unix_path)
		return a->unix_path && cfg->unix_path && !strcmp(a->unix_path, cfg->unix_path);
	return config_addr_equal(&a->addr, &cfg->addr);
}

int admin_update(struct admin *a, const struct cfg_admin *cfg, char *err, size_t errlen)
{
	if (!same_address(a, cfg)) {
		int fd = open_listener(cfg, err, errlen);
		if (fd < 0 || take_listener(a, cfg, fd, err, errlen) < 0)
			return -1;
	}
	take_token(a, cfg);
	return 0;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	close_listener(a);
	while (!list_empty(&a->conns))
		conn_close_admin(container_of(a->conns.next, struct admin_conn, link));
	free(a->token);
	/*
	 * Later: an event of its listener may still wait in this turn's batch
	 * (a reload that turned it off).
	 */
	loop_free_later(a->loop, a);
}
