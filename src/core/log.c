#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"

/* Set at start-up and by each reload, read by every thread. */
static _Atomic int min_level = LOG_INFO;
/* "w3" for worker 3's lines; the control thread's are "main". */
static _Thread_local char thread_name[16] = "main";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (!strcmp(s, level_names[i]))
			return (int)i;
	return -1;
}

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

int log_enabled(enum log_level level)
{
	return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

void log_set_thread_name(const char *name)
{
	snprintf(thread_name, sizeof(thread_name), "%s", name);
}

void log_timestamp(char out[64])
{
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char line[1024];
	char ts[64];
	log_timestamp(ts);
	int n = snprintf(line, sizeof(line), "%s [%s] %s: ", ts, level_names[level], thread_name);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : MIN_SIZE((size_t)m, sizeof(line) - (size_t)n - 2));
	line[len++] = '\n';
	/* One write per line so that lines from several threads never interleave. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint32_t per_second, const char *what)
{
	if (now_ms - l->window_ms >= 1000) {
		log_limit_flush(l, what);
		l->window_ms = now_ms;
		l->lines = 0;
	}
	if (l->lines < per_second) {
		l->lines++;
		return true;
	}
	l->suppressed++;
	return false;
}

void log_limit_flush(struct log_limit *l, const char *what)
{
	if (!l->suppressed)
		return;
	log_warn("%llu similar %s not logged (more than %u a second)", (unsigned long long)l->suppressed,
		 what, l->lines);
	l->suppressed = 0;
}

int access_log_open(struct access_log *al, const char *path, bool json)
{
	al->json = json;
	al->fd = -1;
	al->len = 0;
	al->cap = 0;
	al->buf = NULL;
	if (!path)
		return 0;
	if (!strcmp(path, "stderr")) {
		al->fd = STDERR_FILENO;
	} else {
		al->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (al->fd < 0)
			return -errno;
	}
	struct stat st;
	al->regular = fstat(al->fd, &st) == 0 && S_ISREG(st.st_mode);
	al->cap = 128 * 1024;
	al->buf = malloc(al->cap);
	if (!al->buf) {
		access_log_close(al);
		return -ENOMEM;
	}
	return 0;
}

void access_log_close(struct access_log *al)
{
	access_log_flush(al);
	if (al->fd > STDERR_FILENO)
		close(al->fd);
	al->fd = -1;
	free(al->buf);
	al->buf = NULL;
}

/*
 * Each worker writes its own lines, so no line may be split by another's.
 * A write with O_APPEND to a file is atomic whole; to a pipe only up to
 * PIPE_BUF: there, writes end at a line's end and hold at most PIPE_BUF
 * (a longer line goes alone, and may be torn only if it is that long).
 */
static size_t chunk_end(const struct access_log *al, size_t off)
{
	if (al->regular || al->len - off <= PIPE_BUF)
		return al->len;
	size_t end = off + PIPE_BUF;
	while (end > off && al->buf[end - 1] != '\n')
		end--;
	if (end > off)
		return end;
	const char *nl = memchr(al->buf + off, '\n', al->len - off);
	return nl ? (size_t)(nl - al->buf) + 1 : al->len;
}

void access_log_flush(struct access_log *al)
{
	size_t off = 0;
	while (off < al->len) {
		ssize_t n = write(al->fd, al->buf + off, chunk_end(al, off) - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* a full disk must not stop the proxy: the lines are lost */
		off += (size_t)n;
	}
	al->len = 0;
}

/* What a JSON line can take at most: a target of 8192 bytes, each escaped to 6. */
#define JSON_LINE_MAX (8192 * 6 + 255 * 6 + 4096)

static char *put(char *out, const char *s)
{
	size_t n = strlen(s);
	memcpy(out, s, n);
	return out + n;
}

/* s[0, len) as a JSON string (or null), escaped so that no byte can end it or the line. */
static char *json_str(char *out, const char *s, size_t len)
{
	if (!s)
		return put(out, "null");
	static const char hex[] = "0123456789abcdef";
	*out++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*out++ = '\\';
			*out++ = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			/* Bytes past ASCII too: a request need not be UTF-8, and the line must parse. */
			memcpy(out, "\\u00", 4);
			out[4] = hex[c >> 4];
			out[5] = hex[c & 15];
			out += 6;
		} else {
			*out++ = (char)c;
		}
	}
	*out++ = '"';
	return out;
}

static char *json_cstr(char *out, const char *s) { return json_str(out, s, s ? strlen(s) : 0); }

static void access_log_json(struct access_log *al, const struct access_entry *e)
{
	if (al->cap - al->len < JSON_LINE_MAX)
		access_log_flush(al);
	char ts[64];
	log_timestamp(ts);
	char *p = al->buf + al->len, *start = p;
	p += sprintf(p, "{\"time\":\"%s\",\"client\":", ts);
	p = json_cstr(p, e->client);
	p = put(p, ",\"method\":");
	p = json_str(p, e->method, MIN_SIZE(e->method_len, 32));
	p = put(p, ",\"target\":");
	p = json_str(p, e->target, MIN_SIZE(e->target_len, 8192));
	p = put(p, ",\"protocol\":");
	p = json_cstr(p, e->protocol);
	p += sprintf(p, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"site\":", e->status,
		     (unsigned long long)e->bytes_received, (unsigned long long)e->bytes_sent);
	p = json_cstr(p, e->site);
	p = put(p, ",\"route\":");
	p = json_cstr(p, e->route);
	p = put(p, ",\"pool\":");
	p = json_cstr(p, e->pool);
	p = put(p, ",\"server\":");
	p = json_cstr(p, e->server);
	p += sprintf(p, ",\"duration_us\":%llu,\"backend_us\":", (unsigned long long)e->duration_us);
	p += e->backend_us ? sprintf(p, "%llu", (unsigned long long)e->backend_us)
			   : sprintf(p, "null");
	p += sprintf(p, ",\"added_us\":%llu,\"tls\":", (unsigned long long)e->added_us);
	if (e->tls) {
		p = put(p, "{\"protocol\":");
		p = json_cstr(p, e->tls);
		p = put(p, ",\"cipher\":");
		p = json_cstr(p, e->cipher);
		p = put(p, ",\"sni\":");
		p = json_str(p, e->sni, e->sni ? MIN_SIZE(strlen(e->sni), 255) : 0);
		p = put(p, ",\"client_cert\":");
		p = json_cstr(p, e->verify);
		*p++ = '}';
	} else {
		p = put(p, "null");
	}
	p = put(p, "}\n");
	al->len += (size_t)(p - start);
}

void access_log_write(struct access_log *al, const struct access_entry *e)
{
	if (al->fd < 0)
		return;
	if (al->json) {
		access_log_json(al, e);
		return;
	}
	/* Targets can be long; a line is capped so that one entry always fits. */
	if (al->cap - al->len < 8192 + 512)
		access_log_flush(al);
	char ts[64];
	log_timestamp(ts);
	int target_len = (int)MIN_SIZE(e->target_len, 8192);
	int n = snprintf(al->buf + al->len, al->cap - al->len,
			 "%s %s %.*s %.*s %d %llu %s %llu %s %.*s %s\n", ts, e->client, (int)MIN_SIZE(e->method_len, 32),
			 e->method ? e->method : "-", target_len, e->target ? e->target : "-", e->status,
			 (unsigned long long)e->bytes_sent, e->server ? e->server : "-",
			 (unsigned long long)e->duration_us, e->tls ? e->tls : "-",
			 e->sni ? (int)MIN_SIZE(strlen(e->sni), 255) : 1, e->sni ? e->sni : "-",
			 e->protocol ? e->protocol : "-");
	if (n > 0)
		al->len += MIN_SIZE((size_t)n, al->cap - al->len - 1);
}
