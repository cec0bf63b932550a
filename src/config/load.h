/*
 * The config loader's own interface, for its files only: the validation
 * context that collects mistakes with their file:line, the helpers that
 * read and check values, and the sections, each loaded by a file of its
 * own (pools.c, sites.c, listeners.c; the global settings in config.c).
 */
#ifndef SLUICE_CONFIG_LOAD_H
#define SLUICE_CONFIG_LOAD_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg_server;
struct config;
struct site;

/* Mistakes a failed load reports, at most (CONFIG_ERR_MAX holds them); one more line counts the rest. */
#define CONFIG_MAX_ERRORS 50

/* The path of keys that leads to a value, to find its line in the source. */
struct cfg_path {
	const char *tokens[6];
	bool quoted[6];
	int n;
};

struct vctx {
	lua_State *L;
	const char *name; /* file name for messages */
	const char *source;
	size_t source_len;
	char *text; /* source with comments blanked, once an error needs it */
	char *err;  /* every mistake, a line each */
	size_t errlen;
	bool failed;
	unsigned nerrors;
	unsigned shown; /* of them, those in err */
	char *warnings; /* handed to the config when it loads */
	size_t warnings_len;
};

struct tls_warnings {
	struct vctx *v;
	const struct cfg_path *path;
};

/* The prefix of messages about a section: `pool "api": ` or `timeouts: `. */
struct section {
	const char *label; /* e.g. "pool \"api\"" or "timeouts"; "" at top level */
	struct cfg_path path;
};

/* A table nested in a section, named "parent: key" in messages. */
struct subsection {
	struct section s;
	char label[200];
	int idx; /* its stack index while pushed */
};

/* --- validation helpers (load.c) --- */

void cfg_path_push(struct cfg_path *p, const char *token, bool quoted);

/*
 * Records a mistake, each on its own line of err, and loading goes on to
 * find the others: an operator fixes them all in one go. Checks that need
 * an earlier part to be right (building TLS contexts, the ring of a hash
 * pool) are skipped once anything failed, so that no message is only the
 * consequence of another.
 */
void cfg_fail(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void cfg_warn(struct vctx *v, const struct cfg_path *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * After loading: orders the report by line, and says how many mistakes it
 * leaves out, if it left any out.
 */
void cfg_report_done(struct vctx *v);

void cfg_log_warnings(const char *warnings);

/*
 * A file named in the config, relative to the config file's directory so
 * that a config and its certificates move together, into out. False if too long.
 */
bool cfg_relative(const struct vctx *v, const char *file, char *out, size_t cap);

void cfg_tls_warned(void *ud, const char *msg);

/* Describes the Lua value at idx for a message: "abc" in quotes, numbers as is, else its type. */
const char *cfg_describe(lua_State *L, int idx, char *out, size_t len);

/* Fails on any key of the table at idx that is not in allowed (NULL-terminated). */
void cfg_check_keys(struct vctx *v, int idx, const struct section *s, const char *const *allowed);

/*
 * Reads number field key of the table at idx into *out, scaled by scale and
 * rounded; absent keeps *out. Fails unless min <= value <= max.
 */
void cfg_get_number(struct vctx *v, int idx, const struct section *s, const char *key, double scale,
		    double min, double max, const char *what, uint32_t *out);

void cfg_get_seconds(struct vctx *v, int idx, const struct section *s, const char *key,
		     uint32_t *ms);

/* key = true or false, into *out; left as it is when unset. */
void cfg_get_bool(struct vctx *v, int idx, const struct section *s, const char *key, bool *out);
void cfg_get_size(struct vctx *v, int idx, const struct section *s, const char *key, double min,
		  double max, uint32_t *out);

/* Pushes field key of the table at idx if it is a table; fails and returns false otherwise. */
bool cfg_get_table(struct vctx *v, int idx, const struct section *s, const char *key,
		   bool required);

/*
 * Pushes field key of the table at idx if it is a table, and checks its keys
 * against allowed; false (nothing pushed) when it is absent, or not a table
 * (reported).
 */
bool cfg_get_subsection(struct vctx *v, int idx, const struct section *parent, const char *key,
			const char *const *allowed, struct subsection *sub);

/* verify_client = "off" | "optional" | "required" of the table at idx; absent keeps *out. */
void cfg_load_verify(struct vctx *v, int idx, const struct section *s, uint8_t *out);

/* --- sections --- */

/* pools = { name = { ... } } (pools.c), and one entry of a pool's servers. */
void cfg_load_pools(struct vctx *v, struct config *cfg);
/*
 * One entry of servers: "host:port" or
 * { address = "host:port", weight = 1, backup = false, drain = false, max_connections = 0 }.
 */
void cfg_load_server(struct vctx *v, const struct section *s, size_t i, struct cfg_server *srv);

/* sites = { ... } (sites.c), and one site, the index-th. */
void cfg_load_sites(struct vctx *v, struct config *cfg);
void cfg_load_site(struct vctx *v, struct config *cfg, size_t index);
/*
 * A site that asks for client certificates (which a TLS listener routing
 * to it must be able to check), or NULL.
 */
const struct site *cfg_site_with_client_certs(const struct config *cfg);

/* listeners = { ... } (listeners.c). */
void cfg_load_listeners(struct vctx *v, struct config *cfg);

#endif
