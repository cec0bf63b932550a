/*
 * A growing string for answers sluice writes whole (the admin listener's
 * metrics, JSON and pages), with the escapes those formats need.
 */
#ifndef SLUICE_SBUF_H
#define SLUICE_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char *data; /* NUL-terminated while not failed; free() it */
	size_t len, cap;
	bool failed; /* out of memory: what was asked after is lost */
};

void sbuf_put(struct sbuf *b, const char *s, size_t len);
void sbuf_puts(struct sbuf *b, const char *s);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included: every control character and non-ASCII byte escaped. */
void sbuf_json_str(struct sbuf *b, const char *s, size_t len);
/* s as a Prometheus label value (without quotes): backslash, quote and newline escaped. */
void sbuf_label(struct sbuf *b, const char *s);
void sbuf_free(struct sbuf *b);

#endif
