/*
 * The price of one Lua hook call, measured on its own: the request-level
 * benchmark (bench.py's sluice-hook row) cannot resolve a fraction of a
 * microsecond on a shared machine. Runs hook_run() on a parsed-looking
 * request a million times for a trivial hook and for one that reads a
 * header, and prints nanoseconds per call (CPU time of this process).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "route/hook.h"

static const char *header(void *ctx, const char *name, size_t len, size_t *vlen)
{
	(void)ctx;
	if (len == 4 && !strncasecmp(name, "host", 4)) {
		*vlen = 11;
		return "example.com";
	}
	return NULL;
}

static void each_header(void *ctx, void (*fn)(void *, const char *, size_t, const char *, size_t),
			void *arg)
{
	(void)ctx;
	fn(arg, "Host", 4, "example.com", 11);
}

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int measure(const char *label, const char *hook_src, long n)
{
	char src[1024], err[1024];
	snprintf(src, sizeof(src),
		 "return { listeners = {{ address = '127.0.0.1:1', pool = 'p' }},\n"
		 "  pools = { p = { servers = { '127.0.0.1:2' } } },\n"
		 "  hook = %s }\n",
		 hook_src);
	struct config *cfg = config_load_string("hook_cost.lua", src, err, sizeof(err));
	if (!cfg || !cfg->has_hook) {
		fprintf(stderr, "hook_cost: %s\n", cfg ? "no hook" : err);
		return 1;
	}
	struct hook_request req = {
		.method = "GET", .method_len = 3, .target = "/index.html?x=1", .target_len = 15,
		.host = "example.com", .host_len = 11, .client = "127.0.0.1",
		.header = header, .each_header = each_header,
	};
	static struct hook_result res;
	for (long i = 0; i < n / 10; i++) { /* warm up */
		hook_run(&cfg->hook, &req, &res);
		hook_release(&cfg->hook);
	}
	double t0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		if (hook_run(&cfg->hook, &req, &res) == HOOK_FAIL) {
			fprintf(stderr, "hook_cost: %s\n", res.error);
			return 1;
		}
		hook_release(&cfg->hook);
	}
	double per_call = (cpu_ns() - t0) / (double)n;
	printf("%-40s %8.0f ns per call\n", label, per_call);
	config_unref(cfg);
	return 0;
}

int main(void)
{
	long n = 1000000;
	printf("Lua hook cost, %ld calls each (CPU time of this process)\n", n);
	return measure("hook = function(r) end", "function(r) end", n) ||
	       measure("reads r.path and r.header(\"host\")",
		       "function(r) if r.path == '/x' and r.header('host') then return { pool = 'p' } end end",
		       n) ||
	       measure("returns { pool = \"p\" }", "function(r) return { pool = 'p' } end", n);
}
