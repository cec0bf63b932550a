#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct sbuf *b, size_t more)
{
	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *d = realloc(b->data, cap);
	if (!d) {
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void sbuf_put(struct sbuf *b, const char *s, size_t len)
{
	if (!reserve(b, len))
		return;
	memcpy(b->data + b->len, s, len);
	b->len += len;
	b->data[b->len] = 0;
}

void sbuf_puts(struct sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sbuf_json_str(struct sbuf *b, const char *s, size_t len)
{
	sbuf_put(b, "\"", 1);
	size_t run = 0; /* bytes that need no escape, put at once */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
			continue;
		sbuf_put(b, s + run, i - run);
		char esc[8];
		if (ch == '"' || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else
			/* Non-ASCII bytes too: client input need not be UTF-8, and a JSON reader must not choke. */
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
		sbuf_puts(b, esc);
		run = i + 1;
	}
	sbuf_put(b, s + run, len - run);
	sbuf_put(b, "\"", 1);
}

void sbuf_label(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			sbuf_put(b, "\\\\", 2);
		else if (*s == '"')
			sbuf_put(b, "\\\"", 2);
		else if (*s == '\n')
			sbuf_put(b, "\\n", 2);
		else
			sbuf_put(b, s, 1);
	}
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	*b = (struct sbuf){0};
}
