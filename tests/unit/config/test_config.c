/* Small budgets, so that a runaway script is stopped within a test. */
#define CONFIG_EVAL_LIMIT_MS 300
#define CONFIG_EVAL_MAX_BYTES (64u << 20)
#include "config/config.c"

#include "../unit.h"

static char err[1024];

static struct config *load(const char *src) { return config_load_string("x.lua", src, err, sizeof(err)); }

#define MINIMAL_POOLS "  pools = { web = { servers = { '127.0.0.1:9001' } } },\n"

TEST(test_minimal_config_gets_defaults)
{
	struct config *cfg = load("return {\n"
				  "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
				  "}\n");
	CHECK(cfg);
	CHECK(cfg->nlisteners == 1 && cfg->npools == 1 && cfg->pools[0].nservers == 1);
	CHECK(cfg->timeouts.client_header_ms == 10000 && cfg->timeouts.backend_connect_ms == 5000);
	CHECK(cfg->limits.buffer_size == 16384 && cfg->limits.max_header_size == 16384);
	/* No cap on idle backend connections unless set: recent concurrency sizes the pool. */
	CHECK(cfg->pools[0].keepalive == CFG_NO_CAP && cfg->pools[0].keepalive_purge_ms == 5000);
	CHECK(cfg->limits.busy_poll_us == 0);
	CHECK(cfg->access_log == NULL);
	config_unref(cfg);
}

TEST(test_full_config_values_are_read)
{
	struct config *cfg = load(
		"return {\n"
		"  listeners = {{ address = '[::1]:8443', pool = 'web' }},\n"
		"  pools = { web = { servers = { '127.0.0.1:1', '127.0.0.2:2' }, keepalive = 8,\n"
		"                    keepalive_timeout = 1.5, keepalive_purge = 0.5,\n"
		"                    connect_backoff = 0.25 } },\n"
		"  timeouts = { client_header = 0.5, idle = 3 },\n"
		"  limits = { max_header_size = 4096, buffer_size = 8192, max_connections = 5,\n"
		"             busy_poll = 0.0001 },\n"
		"  access_log = '/tmp/a.log', log_level = 'warn',\n"
		"}\n");
	CHECK(cfg);
	CHECK(cfg->listeners[0].addr.sa.ss_family == AF_INET6);
	CHECK(cfg->pools[0].keepalive == 8 && cfg->pools[0].keepalive_timeout_ms == 1500);
	CHECK(cfg->pools[0].keepalive_purge_ms == 500);
	CHECK(cfg->pools[0].connect_backoff_ms == 250);
	CHECK(cfg->timeouts.client_header_ms == 500 && cfg->timeouts.idle_ms == 3000);
	/* max_request_line follows a smaller max_header_size unless set */
	CHECK(cfg->limits.max_request_line == 4096 && cfg->limits.max_connections == 5);
	CHECK(cfg->limits.busy_poll_us == 100);
	CHECK(!strcmp(cfg->access_log, "/tmp/a.log") && cfg->log_level == LOG_WARN);
	config_unref(cfg);
}

TEST(test_port_out_of_range_names_pool_server_and_line)
{
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'api' }},\n"
		    "  pools = {\n"
		    "    api = {\n"
		    "      servers = {\n"
		    "        '10.0.0.1:80',\n"
		    "        '10.0.0.1:99999',\n"
		    "      },\n"
		    "    },\n"
		    "  },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:7: pool \"api\": server \"10.0.0.1:99999\": port out of range"));
}

TEST(test_unknown_keys_are_errors_with_their_line)
{
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:9001' },\n"
		    "                    srvers = 1 } },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: pool \"web\": unknown key \"srvers\""));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "  -- idle would match this comment\n"
		    "  timeouts = {\n"
		    "    idel = 5,\n"
		    "  },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:6: timeouts: unknown key \"idel\""));
	CHECK(!load("return { listners = {} }\n"));
	CHECK_STR_CONTAINS(err, "x.lua:1: unknown key \"listners\"");
}

TEST(test_wrong_types_and_ranges_are_reported)
{
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "  timeouts = { client_header = 'abc' },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: timeouts: client_header must be a positive number of seconds "
			   "(at most a week), got \"abc\""));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:9001' },\n"
		    "                    keepalive_purge = 0 } },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: pool \"web\": keepalive_purge must be a positive number of "
			   "seconds (at most a week), got 0"));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "  limits = { busy_poll = 1 },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: limits: busy_poll must be a number of seconds from 0 to 0.01, got 1"));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "  limits = { buffer_size = 2048, max_header_size = 4096 },\n"
		    "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: limits: buffer_size (2048) must be at least max_header_size");
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "  limits = { max_connections = 1.5 },\n"
		    "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: limits: max_connections must be an integer");
}

TEST(test_limits_queue_and_retry_are_read_with_defaults)
{
	struct config *cfg = load("return {\n"
				  "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
				  "}\n");
	CHECK(cfg);
	const struct cfg_pool *p = &cfg->pools[0];
	CHECK(p->max_connections == 0 && p->servers[0].max_connections == 0);
	CHECK(p->queue.size == 1000 && p->queue.timeout_ms == 5000 && p->queue.retry_after_s == 1);
	/* Without a retry table only failed connects are retried. */
	CHECK(p->retry.tries == 3 && !p->retry.on_error && !p->retry.on_timeout);
	CHECK(!cfg_retry_on_status(&p->retry, 503));
	config_unref(cfg);
	cfg = load("return {\n"
		   "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		   "  pools = { web = { servers = { { address = '127.0.0.1:1', max_connections = 10 } },\n"
		   "    max_connections = 50, queue = { size = 20, timeout = 0.5, retry_after = 3 },\n"
		   "    retry = { on = { 'timeout', 502, 599 }, tries = 5, buffer = 1024, budget = 10,\n"
		   "              budget_min = 2 } } },\n"
		   "}\n");
	CHECK(cfg);
	p = &cfg->pools[0];
	CHECK(p->max_connections == 50 && p->servers[0].max_connections == 10);
	CHECK(p->queue.size == 20 && p->queue.timeout_ms == 500 && p->queue.retry_after_s == 3);
	CHECK(p->retry.tries == 5 && p->retry.buffer == 1024 && p->retry.budget_percent == 10 &&
	      p->retry.budget_min == 2);
	CHECK(!p->retry.on_error && p->retry.on_timeout);
	CHECK(cfg_retry_on_status(&p->retry, 502) && cfg_retry_on_status(&p->retry, 599));
	CHECK(!cfg_retry_on_status(&p->retry, 503) && !cfg_retry_on_status(&p->retry, 200));
	config_unref(cfg);
	/* A retry table without on retries errors and timeouts. */
	cfg = load("return {\n"
		   "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		   "  pools = { web = { servers = { '127.0.0.1:1' }, retry = {} } },\n"
		   "}\n");
	CHECK(cfg && cfg->pools[0].retry.on_error && cfg->pools[0].retry.on_timeout);
	config_unref(cfg);
}

TEST(test_bad_queue_and_retry_settings_name_their_line)
{
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:1' },\n"
		    "    retry = { on = { 'error',\n"
		    "                     'reset' } } } },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:5: pool \"web\": retry: on entry 2 must be \"error\", \"timeout\" "
			   "or a status from 400 to 599, got \"reset\""));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:1' },\n"
		    "    retry = { tries = 9 } } },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: pool \"web\": retry: tries must be an integer from 1 to 8, got 9"));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:1' },\n"
		    "    retry = { on = { error = true } } } },\n"
		    "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: pool \"web\": retry: on must be a list");
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = { '127.0.0.1:1' },\n"
		    "    queue = { size = 10, timout = 1 } } },\n"
		    "}\n"));
	CHECK(!strcmp(err, "x.lua:4: pool \"web\": queue: unknown key \"timout\""));
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n"
		    "  pools = { web = { servers = {\n"
		    "    { address = '127.0.0.1:1', max_connections = -1 } } } },\n"
		    "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: pool \"web\": server \"127.0.0.1:1\": max_connections must be "
				"an integer from 0 to 1000000");
}

TEST(test_listener_with_unknown_pool_is_an_error)
{
	CHECK(!load("return {\n"
		    "  listeners = {\n"
		    "    { address = '127.0.0.1:8080', pool = 'nope' },\n"
		    "  },\n" MINIMAL_POOLS "}\n"));
	CHECK(!strcmp(err, "x.lua:3: listener \"127.0.0.1:8080\": unknown pool \"nope\""));
}

TEST(test_lua_errors_keep_lua_line)
{
	CHECK(!load("return {\n  listeners = {\n}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: '}' expected");
	CHECK(!load("local x = nil\nreturn x.y\n"));
	CHECK_STR_CONTAINS(err, "x.lua:2:");
	CHECK(!load("return 42\n"));
	CHECK_STR_CONTAINS(err, "must return a table");
}

TEST(test_addresses_parse_and_reject)
{
	struct cfg_addr a;
	char why[128];
	CHECK(config_parse_addr("127.0.0.1:80", &a, why, sizeof(why)) == 0);
	CHECK(config_parse_addr("[::1]:80", &a, why, sizeof(why)) == 0 && a.sa.ss_family == AF_INET6);
	CHECK(config_parse_addr("*:80", &a, why, sizeof(why)) == 0);
	CHECK(config_parse_addr("127.0.0.1:0", &a, why, sizeof(why)) < 0);
	CHECK(!strcmp(why, "port out of range"));
	CHECK(config_parse_addr("127.0.0.1:65536", &a, why, sizeof(why)) < 0);
	CHECK(config_parse_addr("127.0.0.1", &a, why, sizeof(why)) < 0);
	CHECK(config_parse_addr("::1:80", &a, why, sizeof(why)) < 0);
	CHECK_STR_CONTAINS(why, "brackets");
	CHECK(config_parse_addr("127.0.0.1:8x", &a, why, sizeof(why)) < 0);
}

TEST(test_default_config_is_valid)
{
	struct config *cfg = config_load(NULL, err, sizeof(err));
	CHECK(cfg);
	CHECK(cfg->nlisteners == 1 && cfg->pools[0].nservers == 2);
	config_unref(cfg);
}

TEST(test_duplicate_listener_address_is_an_error)
{
	CHECK(!load("return {\n"
		    "  listeners = {\n"
		    "    { address = '127.0.0.1:8080', pool = 'web' },\n"
		    "    { address = '127.0.0.1:8080', pool = 'web' },\n"
		    "  },\n" MINIMAL_POOLS "}\n"));
	CHECK(!strcmp(err, "x.lua:4: listener \"127.0.0.1:8080\": address used twice"));
}

TEST(test_endless_script_is_stopped_with_its_line)
{
	CHECK(!load("local n = 0\n"
		    "while true do n = n + 1 end\n"
		    "return {}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:2: the script was still running after 0.3 s");
}

TEST(test_script_that_eats_memory_is_stopped)
{
	CHECK(!load("local t = {}\n"
		    "for i = 1, 1e9 do t[i] = string.rep('x', 10000) .. i end\n"
		    "return {}\n"));
	CHECK_STR_CONTAINS(err, "x.lua: out of memory (a config script may use at most ");
	CHECK_STR_CONTAINS(err, " MiB)");
}

/* Reading the returned table runs its metamethods: an error there must not escape as a panic. */
TEST(test_error_in_a_metamethod_while_reading_is_a_config_error)
{
	CHECK(!load("return setmetatable({\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
		    "}, { __index = function(t, k) error('no ' .. k) end })\n"));
	CHECK_STR_CONTAINS(err, "x.lua:4: no ");
}

TEST(test_metatable_defaults_are_read)
{
	struct config *cfg = load("local defaults = { timeouts = { idle = 7 } }\n"
				  "return setmetatable({\n"
				  "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
				  "}, { __index = defaults })\n");
	CHECK(cfg);
	CHECK(cfg->timeouts.idle_ms == 7000);
	config_unref(cfg);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

/*
 * Found by fuzz_config (out of memory): with the counting allocator still
 * in place at lua_close, LuaJIT kept its own arena, 60 KiB per load.
 */
TEST(test_loading_again_and_again_does_not_grow)
{
	const char *src = "return {\n"
			  "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
			  "  hook = function(r) end,\n"
			  "}\n";
	for (int i = 0; i < 100; i++)
		config_unref(load(src));
	long before = rss_kb();
	for (int i = 0; i < 2000; i++) {
		struct config *cfg = load(src);
		CHECK(cfg);
		config_unref(cfg);
		CHECK(!load("return { listeners = 1 }"));
	}
	long grown = rss_kb() - before;
	(void)grown;
#ifndef __SANITIZE_ADDRESS__ /* its quarantine holds freed memory back; its leak check is the test there */
	CHECK(before > 0 && grown < 8 * 1024);
#endif
}

/* Found in review: a pcall caught the deadline's error, and the script ran on for ever. */
TEST(test_a_caught_timeout_does_not_let_the_script_run_on)
{
	CHECK(!load("pcall(function() while true do end end)\n"
		    "while true do end\n"));
	CHECK_STR_CONTAINS(err, "the script was still running after");
}

/* Found in review: reading the global 'config' ran a metamethod of _G outside protection. */
TEST(test_strict_globals_and_no_return_is_a_config_error)
{
	CHECK(!load("setmetatable(_G, { __index = function(t, k) error('undefined global ' .. k) end })\n"
		    "return nil\n"));
	CHECK_STR_CONTAINS(err, "the script must return a table");
	CHECK(!load("setmetatable(_G, { __index = function(t, k) while true do end end })\n"
		    "local x = undefined\n"));
	CHECK_STR_CONTAINS(err, "x.lua:1: the script was still running after");
}

/* Found in review: counted once, filled on a second walk that a metamethod could make longer. */
TEST(test_tables_that_change_while_read_are_refused)
{
	CHECK(!load("local pools = {}\n"
		    "local n = 0\n"
		    "local function pool() return setmetatable({ servers = { '127.0.0.1:1' } },\n"
		    "  { __index = function(t, k) n = n + 1; if n < 50 then pools['p' .. n] = pool() end end }) end\n"
		    "pools.a = pool()\n"
		    "return { listeners = {{ address = '127.0.0.1:8080', pool = 'a' }}, pools = pools }\n"));
	CHECK_STR_CONTAINS(err, "pools: the table changed while it was read");
	CHECK(!load("local hosts, calls = { 'a.example' }, 0\n"
		    "local site = setmetatable({ pool = 'web' }, { __index = function(t, k)\n"
		    "  if k ~= 'hosts' then return nil end calls = calls + 1\n"
		    "  if calls == 2 then for i = 1, 20 do hosts[#hosts + 1] = 'h' .. i .. '.example' end end\n"
		    "  return hosts end })\n"
		    "return { listeners = {{ address = '127.0.0.1:8080' }},\n" MINIMAL_POOLS
		    "  sites = { site } }\n"));
	CHECK_STR_CONTAINS(err, "more hosts than were there when they were counted");
}

/* Found by fuzz_config: max_connections = 5/00 was cast from inf to an integer (undefined). */
TEST(test_infinite_and_nan_sizes_are_refused)
{
	CHECK(!load("return { listeners = {{ address = '127.0.0.1:8080', pool = 'web', max_connections = 5/0 }},\n"
		    MINIMAL_POOLS "}\n"));
	CHECK_STR_CONTAINS(err, "max_connections must be an integer from 1 to");
	CHECK(!load("return { listeners = {{ address = '127.0.0.1:8080', pool = 'web', max_connections = 0/0 }},\n"
		    MINIMAL_POOLS "}\n"));
	CHECK_STR_CONTAINS(err, "max_connections must be an integer from 1 to");
}

TEST(test_the_jit_cannot_be_turned_back_on)
{
	CHECK(!load("jit.on()\nreturn {}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:1: attempt to index global 'jit'");
	CHECK(!load("local j = require('jit')\nreturn {}\n"));
	CHECK_STR_CONTAINS(err, "module 'jit' not found");
}

/* More mistakes than err holds: whole lines only, each naming its place, then the count of the rest. */
TEST(test_a_report_larger_than_its_buffer_keeps_whole_lines)
{
	char src[8192] = "return {\n  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
			 "  sites = {\n";
	for (int i = 0; i < 30; i++)
		snprintf(src + strlen(src), sizeof(src) - strlen(src),
			 "    { hosts = { 'site%02d.example.com' }, pool = 'web', a_rather_long_unknown_key_%02d = 1 },\n",
			 i, i);
	strcat(src, "  },\n}\n");
	CHECK(!load(src));
	int lines = 0;
	const char *last = err;
	for (char *l = err; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		CHECK(!strncmp(l, "x.lua:", 6));
		last = l;
		lines++;
	}
	CHECK(lines > 1 && lines < 30);
	CHECK(strstr(err, "x.lua:5: site \"site00.example.com\": unknown key") == err);
	char expect[128];
	snprintf(expect, sizeof(expect), "x.lua: %d more mistakes not shown (the first %d are)", 31 - lines,
		 lines - 1);
	CHECK(!strcmp(last, expect));
}

TEST(test_http2_is_on_for_tls_listeners_and_checked)
{
	struct config *cfg = load("return {\n"
				  "  listeners = {{ address = '127.0.0.1:8080', pool = 'web' }},\n" MINIMAL_POOLS
				  "  limits = { h2_max_concurrent_streams = 10, h2_initial_window = 1048576 },\n"
				  "}\n");
	CHECK(cfg);
	CHECK(!cfg->listeners[0].http2); /* plain: no ALPN to offer it with */
	CHECK(cfg->limits.h2_max_concurrent_streams == 10 && cfg->limits.h2_initial_window == 1048576);
	CHECK(cfg->limits.h2_max_header_list == 65536);
	CHECK(cfg->limits.h2_max_glitches == 1000 && cfg->limits.h2_max_requests == 10000);
	config_unref(cfg);
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web',\n"
		    "                 http2 = true }},\n" MINIMAL_POOLS "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:3: listener \"127.0.0.1:8080\": http2 needs tls");
	CHECK(!load("return {\n"
		    "  listeners = {{ address = '127.0.0.1:8080', pool = 'web', http2 = 'yes' }},\n" MINIMAL_POOLS
		    "  limits = { h2_initial_window = 100 },\n"
		    "}\n"));
	CHECK_STR_CONTAINS(err, "x.lua:2: listener \"127.0.0.1:8080\": http2 must be true or false, got \"yes\"");
	CHECK_STR_CONTAINS(err, "x.lua:4: limits: h2_initial_window must be an integer from 16384");
}

int main(void)
{
	RUN(test_minimal_config_gets_defaults);
	RUN(test_full_config_values_are_read);
	RUN(test_port_out_of_range_names_pool_server_and_line);
	RUN(test_unknown_keys_are_errors_with_their_line);
	RUN(test_wrong_types_and_ranges_are_reported);
	RUN(test_limits_queue_and_retry_are_read_with_defaults);
	RUN(test_bad_queue_and_retry_settings_name_their_line);
	RUN(test_listener_with_unknown_pool_is_an_error);
	RUN(test_lua_errors_keep_lua_line);
	RUN(test_addresses_parse_and_reject);
	RUN(test_default_config_is_valid);
	RUN(test_duplicate_listener_address_is_an_error);
	RUN(test_endless_script_is_stopped_with_its_line);
	RUN(test_script_that_eats_memory_is_stopped);
	RUN(test_error_in_a_metamethod_while_reading_is_a_config_error);
	RUN(test_metatable_defaults_are_read);
	RUN(test_loading_again_and_again_does_not_grow);
	RUN(test_a_caught_timeout_does_not_let_the_script_run_on);
	RUN(test_strict_globals_and_no_return_is_a_config_error);
	RUN(test_tables_that_change_while_read_are_refused);
	RUN(test_infinite_and_nan_sizes_are_refused);
	RUN(test_the_jit_cannot_be_turned_back_on);
	RUN(test_a_report_larger_than_its_buffer_keeps_whole_lines);
	RUN(test_http2_is_on_for_tls_listeners_and_checked);
	UNIT_EXIT();
}
