#include "core/host.h"

#include <errno.h>
#include <string.h>

static bool host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
	       ch == '_' || ch == '[' || ch == ']' || ch == ':';
}

int host_normalize(const char *host, size_t len, char *out, size_t cap)
{
	size_t end = len;
	if (len && host[0] == '[') {
		/* [v6] or [v6]:port */
		const char *close = memchr(host, ']', len);
		if (!close)
			return -1;
		end = (size_t)(close - host) + 1;
	} else {
		const char *colon = memchr(host, ':', len);
		if (colon)
			end = (size_t)(colon - host);
	}
	while (end && host[end - 1] == '.')
		end--;
	if (end == 0 || end >= cap || end > HOST_MAX_LEN)
		return -1;
	for (size_t i = 0; i < end; i++) {
		char ch = host[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!host_char(ch))
			return -1;
		out[i] = ch;
	}
	return (int)end;
}

/* FNV-1a: host names are short; the table's job is one probe, not resisting floods. */
static uint64_t hash_name(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h ^ (h >> 29);
}

int host_table_init(struct host_table *t, struct arena *a, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	t->slots = arena_alloc(a, cap * sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->mask = cap - 1;
	t->used = 0;
	return 0;
}

static const struct host_entry *table_find(const struct host_table *t, const char *name, size_t len,
					   uint64_t h)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct host_entry *e = &t->slots[i];
		if (!e->value)
			return NULL;
		if (e->hash == h && e->len == len && !memcmp(e->name, name, len))
			return e;
	}
}

int64_t host_table_get(const struct host_table *t, const char *name, size_t len)
{
	const struct host_entry *e = table_find(t, name, len, hash_name(name, len));
	return e ? (int64_t)e->value - 1 : -1;
}

int host_table_put(struct host_table *t, const char *name, size_t len, uint32_t value)
{
	uint64_t h = hash_name(name, len);
	if (table_find(t, name, len, h))
		return -EEXIST;
	/* The table was sized for the names counted: more would fill it, and probes never end. */
	if ((t->used + 1) * 2 > t->mask + 1)
		return -ENOSPC;
	size_t i = h & t->mask;
	while (t->slots[i].value)
		i = (i + 1) & t->mask;
	t->slots[i] = (struct host_entry){.name = name, .len = (uint32_t)len, .value = value + 1, .hash = h};
	t->used++;
	return 0;
}

int host_table_copy(struct host_table *dst, struct arena *a, const struct host_table *src, size_t n)
{
	if (host_table_init(dst, a, n) < 0)
		return -ENOMEM;
	if (dst->mask == src->mask) {
		memcpy(dst->slots, src->slots, (src->mask + 1) * sizeof(*src->slots));
		dst->used = src->used;
		return 0;
	}
	for (size_t i = 0; i <= src->mask; i++) {
		const struct host_entry *e = &src->slots[i];
		if (e->value && host_table_put(dst, e->name, e->len, e->value - 1) < 0)
			return -ENOMEM;
	}
	return 0;
}

