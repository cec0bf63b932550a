#include "control/runtime.c"

#include "../unit.h"

static char err[1024];

static const char FILE_CONFIG[] =
    "return {\n"
    "  listeners = {{ address = '127.0.0.1:8080' }},\n"
    "  pools = {\n"
    "    web = { servers = { '127.0.0.1:9001', '127.0.0.1:9002' } },\n"
    "    hashed = { servers = { '127.0.0.1:9003' }, balance = 'hash' },\n"
    "  },\n"
    "  sites = {\n"
    "    { hosts = { 'a.test', '*.a.test' }, pool = 'web' },\n"
    "    { hosts = { 'b.test' }, pool = 'web', metrics = true },\n"
    "    { hosts = { 'fallback.test' }, default = true, pool = 'web' },\n"
    "  },\n"
    "}\n";

/* A runtime over FILE_CONFIG whose publish keeps what it was given. */
struct fixture {
	struct runtime rt;
	struct config *running;
	int published;
};

static int keep(void *ud, struct config *cfg, char *e, size_t elen)
{
	(void)e, (void)elen;
	struct fixture *f = ud;
	config_unref(f->running);
	f->running = config_ref(cfg);
	f->published++;
	return 0;
}

static int fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	struct config *file = config_load_string("x.lua", FILE_CONFIG, err, sizeof(err));
	if (!file)
		return -1;
	f->rt.publish = keep;
	f->rt.ud = f;
	runtime_reset(&f->rt, file);
	f->running = file;
	return 0;
}

static void fixture_free(struct fixture *f)
{
	runtime_free(&f->rt);
	config_unref(f->running);
}

/* The name of the site host leads to in what runs ("" for none). */
static const char *site_for(const struct fixture *f, const char *host)
{
	const struct site *s = router_find_site(&f->running->router, host, strlen(host));
	return s ? s->name : "";
}

static int add_site(struct fixture *f, const char *json)
{
	cJSON *j = cJSON_Parse(json);
	int rc = j ? runtime_add_site(&f->rt, j, err, sizeof(err)) : -2;
	cJSON_Delete(j);
	return rc;
}

static int add_server(struct fixture *f, const char *pool, const char *json)
{
	cJSON *j = cJSON_Parse(json);
	int rc = j ? runtime_add_server(&f->rt, pool, j, err, sizeof(err)) : -2;
	cJSON_Delete(j);
	return rc;
}

TEST(test_an_added_site_is_found_and_the_files_sites_stay)
{
	struct fixture f;
	CHECK(fixture_init(&f) == 0);
	CHECK(add_site(&f, "{\"hosts\": [\"c.test\", \"*.c.test\"], \"pool\": \"web\"}") == 0);
	CHECK(f.published == 1 && f.running->base == f.rt.file);
	CHECK(f.running->router.nsites == 4);
	CHECK(!strcmp(site_for(&f, "c.test"), "c.test"));
	CHECK(!strcmp(site_for(&f, "x.c.test"), "c.test"));
	CHECK(!strcmp(site_for(&f, "x.a.test"), "a.test"));
	CHECK(!strcmp(site_for(&f, "b.test"), "b.test"));
	CHECK(!strcmp(site_for(&f, "unknown.test"), "fallback.test"));
	const struct site *c = router_find_site(&f.running->router, "c.test", 6);
	CHECK(c->added && !router_find_site(&f.running->router, "a.test", 6)->added);
	/* The file's snapshot is untouched. */
	CHECK(f.rt.file->router.nsites == 3);
	CHECK(!strcmp(router_find_site(&f.rt.file->router, "c.test", 6)->name, "fallback.test"));
	fixture_free(&f);
}

TEST(test_a_taken_host_refuses_the_site_and_changes_nothing)
{
	struct fixture f;
	CHECK(fixture_init(&f) == 0);
	CHECK(add_site(&f, "{\"hosts\": [\"c.test\", \"b.test\"], \"pool\": \"web\"}") == -1);
	CHECK_STR_CONTAINS(err, "add: site \"c.test\": host \"b.test\" belongs to another site");
	CHECK(f.published == 0 && f.rt.ov.nsites == 0 && !f.rt.ov.pools);
	CHECK(add_site(&f, "{\"hosts\": [\"c.test\"], \"pool\": \"nope\"}") == -1);
	CHECK_STR_CONTAINS(err, "unknown pool \"nope\"");
	fixture_free(&f);
}

TEST(test_replace_and_remove_take_the_old_sites_hosts_away)
{
	struct fixture f;
	CHECK(fixture_init(&f) == 0);
	cJSON *j = cJSON_Parse("{\"hosts\": [\"a.test\"], \"routes\": [{\"path\": \"/\", "
			       "\"respond\": {\"status\": 204}}]}");
	CHECK(runtime_replace_site(&f.rt, "a.test", j, err, sizeof(err)) == 0);
	cJSON_Delete(j);
	CHECK(router_find_site(&f.running->router, "a.test", 6)->added);
	/* The wildcard was the old site's: it goes with it. */
	CHECK(!strcmp(site_for(&f, "x.a.test"), "fallback.test"));
	CHECK(runtime_remove_site(&f.rt, "fallback.test", err, sizeof(err)) == 0);
	CHECK(f.running->router.default_site == -1 && !strcmp(site_for(&f, "x.a.test"), ""));
	/* Removing the site the API put in its place leaves no a.test at all. */
	CHECK(runtime_remove_site(&f.rt, "a.test", err, sizeof(err)) == 0);
	CHECK(!strcmp(site_for(&f, "a.test"), "") && f.running->router.nsites == 1);
	CHECK(runtime_remove_site(&f.rt, "a.test", err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "remove: no site \"a.test\"");
	CHECK(f.published == 3);
	/* b.test's series slot is still where its routes point. */
	const struct site *b = router_find_site(&f.running->router, "b.test", 6);
	CHECK(b->metrics && !strcmp(f.running->tracked[b->metrics - 1].site, "b.test"));
	fixture_free(&f);
}

TEST(test_servers_added_and_removed_and_the_hash_ring_rebuilt)
{
	struct fixture f;
	CHECK(fixture_init(&f) == 0);
	size_t web = config_find_pool(f.rt.file, "web"), hashed = config_find_pool(f.rt.file, "hashed");
	CHECK(add_server(&f, "web", "{\"address\": \"127.0.0.1:9009\", \"weight\": 7}") == 0);
	CHECK(f.running->pools[web].nservers == 3 && f.running->pools[web].servers[2].weight == 7);
	/* No site changed: the file's router is used as it is. */
	CHECK(f.running->router.sites == f.rt.file->router.sites);
	CHECK(add_server(&f, "web", "\"127.0.0.1:9009\"") == -1);
	CHECK_STR_CONTAINS(err, "add: pool \"web\" has server 127.0.0.1:9009 already");
	CHECK(add_server(&f, "nope", "\"127.0.0.1:9010\"") == -1);
	CHECK_STR_CONTAINS(err, "pool: no pool \"nope\"");
	CHECK(runtime_remove_server(&f.rt, "web", "127.0.0.1:9001", err, sizeof(err)) == 0);
	CHECK(f.running->pools[web].nservers == 2);
	CHECK(!strcmp(f.running->pools[web].servers[0].addr.text, "127.0.0.1:9002"));
	CHECK(add_server(&f, "hashed", "\"127.0.0.1:9011\"") == 0);
	CHECK(f.running->pools[hashed].ring.n > f.rt.file->pools[hashed].ring.n);
	CHECK(runtime_remove_server(&f.rt, "hashed", "127.0.0.1:9003", err, sizeof(err)) == 0);
	CHECK(runtime_remove_server(&f.rt, "hashed", "127.0.0.1:9011", err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "is the last server of pool \"hashed\"");
	/* A site change keeps what the pools were changed to. */
	CHECK(add_site(&f, "{\"hosts\": [\"d.test\"], \"pool\": \"hashed\"}") == 0);
	CHECK(f.running->pools[web].nservers == 2 && f.running->pools[hashed].nservers == 1);
	CHECK(!strcmp(f.running->pools[hashed].servers[0].addr.text, "127.0.0.1:9011"));
	/* The file's pools are as loaded. */
	CHECK(f.rt.file->pools[web].nservers == 2 && f.rt.file->pools[hashed].nservers == 1);
	fixture_free(&f);
}

TEST(test_a_reset_drops_the_overlay)
{
	struct fixture f;
	CHECK(fixture_init(&f) == 0);
	CHECK(add_site(&f, "{\"hosts\": [\"c.test\"], \"pool\": \"web\"}") == 0);
	struct config *file = config_load_string("x.lua", FILE_CONFIG, err, sizeof(err));
	CHECK(file);
	runtime_reset(&f.rt, file);
	config_unref(file);
	CHECK(f.rt.ov.nsites == 0 && !f.rt.ov.pools);
	CHECK(add_site(&f, "{\"hosts\": [\"e.test\"], \"pool\": \"web\"}") == 0);
	CHECK(f.running->router.nsites == 4 && !strcmp(site_for(&f, "c.test"), "fallback.test"));
	fixture_free(&f);
}

TEST(test_json_becomes_the_lua_the_file_would_have)
{
	lua_State *L = luaL_newstate();
	cJSON *j = cJSON_Parse("{\"a\": [1, \"x\", true], \"b\": {\"c\": null}}");
	CHECK(push_json(L, j, 0, "add", err, sizeof(err)) == 0);
	lua_getfield(L, -1, "a");
	CHECK(lua_objlen(L, -1) == 3);
	lua_rawgeti(L, -1, 2);
	CHECK(!strcmp(lua_tostring(L, -1), "x"));
	lua_pop(L, 2);
	lua_getfield(L, -1, "b");
	lua_getfield(L, -1, "c");
	CHECK(lua_isnil(L, -1));
	lua_settop(L, 0);
	cJSON_Delete(j);
	j = cJSON_Parse("{\"a\": 1, \"a\": 2}");
	CHECK(push_json(L, j, 0, "add", err, sizeof(err)) == -1 && lua_gettop(L) == 0);
	CHECK_STR_CONTAINS(err, "add: key \"a\" given twice");
	cJSON_Delete(j);
	lua_close(L);
}

int main(void)
{
	RUN(test_an_added_site_is_found_and_the_files_sites_stay);
	RUN(test_a_taken_host_refuses_the_site_and_changes_nothing);
	RUN(test_replace_and_remove_take_the_old_sites_hosts_away);
	RUN(test_servers_added_and_removed_and_the_hash_ring_rebuilt);
	RUN(test_a_reset_drops_the_overlay);
	RUN(test_json_becomes_the_lua_the_file_would_have);
	UNIT_EXIT();
}
