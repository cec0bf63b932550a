/*
 * The error log (stderr, timestamped, levelled) and the access log.
 *
 * Error-log lines name the thread that wrote them ("w2: ..."), each line
 * one write(2). Access log lines are gathered in a per-worker buffer and
 * written once per loop turn (a loop hook), not one write(2) per request;
 * workers write their own, whole lines only.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Returns the level named by s, or -1. */
int log_level_parse(const char *s);
void log_set_level(enum log_level level);
/* Names the calling thread in its error-log lines ("w0"; "main" unless set). */
void log_set_thread_name(const char *name);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/*
 * A budget of error-log lines a second for what outsiders can cause at
 * will (a client's bad requests): past it, lines are only counted, and
 * one line later says how many were left out.
 */
struct log_limit {
	uint64_t window_ms;  /* the start of the current second */
	uint32_t lines;	     /* written in it */
	uint64_t suppressed; /* left out, not yet said */
};
/*
 * Whether a line may be written at now_ms, per_second a second. A new
 * second first says how many were left out in the ones before.
 */
bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint32_t per_second, const char *what);
/* Says how many lines about what were left out, if any (the caller's timer ends their second). */
void log_limit_flush(struct log_limit *l, const char *what);

/* Writes "2026-11-25T14:44:02.123Z" (24 bytes and a NUL; room for any year) for the wall clock now. */
void log_timestamp(char out[64]);

struct access_log {
	int fd; /* -1: off */
	bool regular; /* a file: one write of many lines is atomic (O_APPEND) */
	bool json;    /* JSON lines, else the text line */
	char *buf;
	size_t len, cap;
};

/* Opens path ("stderr" for fd 2, NULL for off), for lines in JSON or text. Returns 0 or -errno. */
int access_log_open(struct access_log *al, const char *path, bool json);
void access_log_close(struct access_log *al);

struct access_entry {
	const char *client;   /* "ip:port" */
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	int status;
	uint64_t bytes_sent;
	const char *server;   /* "ip:port" or NULL */
	uint64_t duration_us;
	const char *tls;      /* "TLSv1.3", or NULL for plain HTTP */
	const char *sni;      /* the name the TLS client asked for, or NULL */
	const char *protocol; /* "HTTP/1.1", "HTTP/2.0"; NULL: no request came */
	/* In JSON lines only: */
	uint64_t bytes_received; /* the request's head and body */
	const char *site;	 /* its first host, or NULL */
	const char *route;	 /* the route's path prefix, or NULL */
	const char *pool;	 /* or NULL */
	uint64_t backend_us;	 /* to the server's response head; 0: no response from one */
	uint64_t added_us;	 /* sluice's own time (stats.h) */
	const char *cipher, *verify; /* TLS: the cipher, the client certificate's verdict */
};

/*
 * Text: TIME CLIENT METHOD TARGET STATUS BYTES SERVER DURATION_US TLS SNI PROTOCOL ("-" for none).
 * JSON: one object per line, every field a client sent escaped (README, "Access log").
 */
void access_log_write(struct access_log *al, const struct access_entry *e);
void access_log_flush(struct access_log *al);

#endif
