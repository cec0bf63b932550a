"""The admin API's pool and site calls: a server added to or removed from a
pool, a site added, replaced or removed, under load and with no reload; each
taken by every worker within a second with no request failed; bad calls get
400 naming the field and change nothing; a reload brings back the file."""

import json
import signal

from harness import Load, Lua, SlowRequests, free_port, metric, wait_port, wait_until


def pool_sluice(env, servers, pool=None):
    block, admin = env.admin_config()
    s = env.sluice(servers, pool=pool, extra={"admin": block, "workers": 4})
    wait_port("127.0.0.1", admin.port, 10 * env.slow)
    return s, admin


def site_sluice(env, pools, sites, extra=None):
    block, admin = env.admin_config()
    x = {"admin": block, "workers": 4}
    x.update(extra or {})
    s = env.sluice(config=env.routed_config(pools, sites, extra=x))
    wait_port("127.0.0.1", admin.port, 10 * env.slow)
    return s, admin


def respond(body, path="/"):
    return {"path": path, "respond": {"status": 200, "body": body}}


def servers_of(admin, pool="web"):
    pools = admin.get_json("/api/config")["pools"]
    return [x["address"] for x in next(p for p in pools if p["name"] == pool)["servers"]]


def sites_of(admin):
    return {x["name"]: x for x in admin.get_json("/api/config")["sites"]}


def body_of(s, host, path="/"):
    r = s.get(path, host=host)
    return r.body.decode() if r.status == 200 else r.status


def call(admin, path, body):
    st, _, got = admin.request("POST", path, body=body)
    assert st == 200, (path, body, st, got)
    return json.loads(got)


# ---------------------------------------------------------------------------
# Pools


def test_an_added_server_gets_traffic_within_a_second_and_nothing_fails(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = pool_sluice(env, [a])
    load = Load(s)
    wait_until(lambda: len(load.statuses) >= 50, 10 * env.slow, what="the load under way")
    got = call(admin, "/api/pool", {"pool": "web", "add": {"address": b.addr, "weight": 1}})
    assert [x["address"] for x in got["servers"]] == [a.addr, b.addr], got
    # Every worker (4) takes the new snapshot in its next turn: b is picked at once.
    wait_until(lambda: len(b.request_lines()) >= 10, 1.0 * env.slow,
               what="the added server receiving requests within 1 s")
    total = load.finish()
    assert servers_of(admin) == [a.addr, b.addr]
    wait_until(lambda: "pool \"web\": server %s added" % b.addr in s.stderr_text(), 5 * env.slow,
               what="the change logged")
    assert "admin: 127.0.0.1:" in s.stderr_text()
    # Its counters are there as for any server.
    m = admin.metrics()
    assert metric(m, "sluice_server_requests_total", pool="web", server=b.addr, code="2xx") >= 10
    print("# %d requests under load, none failed; the added server got %d"
          % (total, len(b.request_lines())))


def test_a_removed_server_finishes_its_requests_and_gets_nothing_new(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = pool_sluice(env, [a, b])
    load = Load(s)
    slow = SlowRequests(env, s, [a, b], at=b)
    got = call(admin, "/api/pool", {"pool": "web", "remove": b.addr})
    assert [x["address"] for x in got["servers"]] == [a.addr], got
    seen = len(b.request_lines())
    n = len(load.statuses)
    wait_until(lambda: len(load.statuses) >= n + 200, 20 * env.slow, what="200 more requests")
    assert slow.join() == [200] * 6, slow.statuses
    # The load has one request in flight at a time: it may have been on its way to b.
    assert len(b.request_lines()) - seen <= 1
    load.finish()
    # Gone from what runs: the state API does not know it any more.
    st, _, _ = admin.request("POST", "/api/server", body={"pool": "web", "server": b.addr,
                                                         "state": "drain"})
    assert st == 400


def test_a_hash_pool_rebalances_over_the_servers_it_has_now(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = pool_sluice(env, [a], pool={"balance": "hash", "hash": "header:X-Key"})
    call(admin, "/api/pool", {"pool": "web", "add": b.addr})
    for i in range(200):
        assert s.get("/", headers=[("X-Key", "k%d" % i)]).status == 200
    na, nb = len(a.request_lines()), len(b.request_lines())
    assert na + nb == 200 and 40 < nb < 160, (na, nb)
    # The same key goes to the same server, request after request.
    before = len(b.request_lines())
    for _ in range(20):
        s.get("/", headers=[("X-Key", "k1")])
    moved = len(b.request_lines()) - before
    assert moved in (0, 20), moved


def test_server_state_set_by_the_api_survives_a_pool_change(env):
    a, b, c = env.backend("a"), env.backend("b"), env.backend("c")
    s, admin = pool_sluice(env, [a, b])
    call(admin, "/api/server", {"pool": "web", "server": b.addr, "state": "maint"})
    call(admin, "/api/pool", {"pool": "web", "add": c.addr})
    state = {x["address"]: x["state"] for x in admin.get_json("/api/config")["pools"][0]["servers"]}
    assert state == {a.addr: "ready", b.addr: "maint", c.addr: "ready"}, state
    for _ in range(60):
        assert s.get("/").status == 200
    assert not b.request_lines()


# ---------------------------------------------------------------------------
# Sites


def test_sites_added_replaced_and_removed_under_load(env):
    w = env.backend("w")
    sites = [{"hosts": ["keep.test"], "pool": "web"},
             {"hosts": ["gone.test", "*.gone.test"], "routes": [respond("gone\n")]}]
    s, admin = site_sluice(env, {"web": [w]}, sites)
    load = Load(s, host="keep.test")
    wait_until(lambda: len(load.statuses) >= 20, 10 * env.slow, what="the load under way")
    assert body_of(s, "new.test") == 404

    got = call(admin, "/api/site", {"add": {"hosts": ["new.test", "*.new.test"],
                                            "routes": [respond("v1\n")]}})
    assert got["name"] == "new.test" and got["from"] == "api", got
    assert sorted(got["hosts"]) == ["*.new.test", "new.test"], got
    wait_until(lambda: body_of(s, "new.test") == "v1\n", 1.0 * env.slow,
               what="the added site answering within 1 s")
    assert body_of(s, "a.new.test") == "v1\n"

    call(admin, "/api/site", {"replace": "new.test",
                              "site": {"hosts": ["new.test"], "routes": [respond("v2\n")]}})
    wait_until(lambda: body_of(s, "new.test") == "v2\n", 1.0 * env.slow,
               what="the replaced site answering within 1 s")
    assert body_of(s, "a.new.test") == 404, "a host the new site does not list"

    assert call(admin, "/api/site", {"remove": "gone.test"}) == {"removed": "gone.test"}
    wait_until(lambda: body_of(s, "gone.test") == 404, 1.0 * env.slow,
               what="the removed site answering 404 within 1 s")
    assert body_of(s, "x.gone.test") == 404
    n = len(load.statuses)
    wait_until(lambda: len(load.statuses) >= n + 100, 20 * env.slow, what="100 more requests")
    total = load.finish()
    assert set(sites_of(admin)) == {"keep.test", "new.test"}
    text = s.stderr_text()
    for line in ('site "new.test" added', 'site "new.test" replaced by site "new.test"',
                 'site "gone.test" removed'):
        assert line in text, line
    print("# %d requests to keep.test under load, none failed" % total)


def test_a_site_from_the_api_has_the_whole_site_syntax(env):
    w = env.backend("w")
    s, admin = site_sluice(env, {"web": [w], "other": [w]},
                           [{"hosts": ["keep.test"], "pool": "web"}])
    site = {"hosts": ["full.test"], "metrics": True,
            "routes": [{"path": "/", "pool": "web",
                        "request_headers": {"set": {"X-Added-By": "api"}}},
                       {"path": "/old/", "redirect": {"to": "https://full.test/new/",
                                                      "status": 301}},
                       {"path": "/hello", "respond": {"status": 201, "body": "hi\n",
                                                      "headers": {"X-Hi": "1"}}}]}
    call(admin, "/api/site", {"add": site})
    r = s.get("/headers", host="full.test")
    assert r.status == 200 and ["X-Added-By", "api"] in r.json()["headers"], r.body
    r = s.get("/old/x", host="full.test")
    assert r.status == 301 and r.header("Location") == "https://full.test/new/", r.status
    r = s.get("/hello", host="full.test")
    assert r.status == 201 and r.header("X-Hi") == "1" and r.body == b"hi\n"
    # A worker counts a request once its response is out: the last may not be counted yet.
    wait_until(lambda: metric(admin.metrics(), "sluice_site_requests_total", site="full.test",
                              code="2xx") == 2, 5 * env.slow, what="the 2 successes counted")
    got = sites_of(admin)["full.test"]
    assert {x["path"] for x in got["routes"]} == {"/", "/old/", "/hello"}, got


def test_a_config_with_a_hook_keeps_its_hook_across_changes(env):
    w = env.backend("w")
    hook = Lua('function(r) if r.path == "/hook" then return { status = 200, body = "hooked\\n" } end end')
    s, admin = site_sluice(env, {"web": [w]}, [{"hosts": ["keep.test"], "pool": "web"}],
                           extra={"hook": hook})
    call(admin, "/api/site", {"add": {"hosts": ["new.test"], "pool": "web"}})
    call(admin, "/api/pool", {"pool": "web", "add": "127.0.0.1:%d" % free_port()})
    # Every worker's own hook state still runs: new connections land on all 4.
    for _ in range(40):
        assert body_of(s, "new.test", "/hook") == "hooked\n"


def test_bad_calls_get_400_naming_the_field_and_change_nothing(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = site_sluice(env, {"web": [a]},
                           [{"hosts": ["keep.test"], "pool": "web"},
                            {"hosts": ["fallback.test"], "default": True, "pool": "web"}])
    before = admin.get_json("/api/config")
    deep = {"hosts": ["deep.test"], "pool": "web"}
    for _ in range(40):
        deep = {"x": deep}
    cases = [
        ("/api/pool", {"pool": "nope", "add": b.addr}, "pool:"),
        ("/api/pool", {"add": b.addr}, "pool:"),
        ("/api/pool", {"pool": "web"}, "body:"),
        ("/api/pool", {"pool": "web", "add": b.addr, "remove": a.addr}, "body:"),
        ("/api/pool", {"pool": "web", "add": "not an address"}, "add:"),
        ("/api/pool", {"pool": "web", "add": "127.0.0.1:99999"}, "add:"),
        ("/api/pool", {"pool": "web", "add": {"address": b.addr, "weight": 0}}, "add:"),
        ("/api/pool", {"pool": "web", "add": {"address": b.addr, "colour": 1}}, "add:"),
        ("/api/pool", {"pool": "web", "add": a.addr}, "add:"),  # there already
        ("/api/pool", {"pool": "web", "remove": "10.9.9.9:1"}, "remove:"),
        ("/api/pool", {"pool": "web", "remove": a.addr}, "remove:"),  # its last server
        ("/api/pool", {"pool": "web", "remove": 5}, "remove:"),
        ("/api/site", {"add": {"hosts": ["keep.test"], "pool": "web"}}, "add:"),  # host taken
        ("/api/site", {"add": {"hosts": ["x.test", "keep.test"], "pool": "web"}}, "add:"),
        ("/api/site", {"add": {"hosts": ["x.test"], "pool": "nope"}}, "add:"),
        ("/api/site", {"add": {"hosts": ["Bad Host"], "pool": "web"}}, "add:"),
        ("/api/site", {"add": {"hosts": ["x.test"]}}, "add:"),
        ("/api/site", {"add": {"hosts": ["x.test"], "pool": "web", "colour": 1}}, "add:"),
        ("/api/site", {"add": {"hosts": ["x.test"], "pool": "web", "default": True}}, "add:"),
        ("/api/site", {"add": {"hosts": ["x.test", None], "pool": "web"}}, "add:"),
        ("/api/site", {"add": "x.test"}, "add:"),
        ("/api/site", {"add": deep}, "add:"),
        ("/api/site", {"replace": "nope.test", "site": {"hosts": ["n.test"], "pool": "web"}},
         "replace:"),
        ("/api/site", {"replace": "keep.test"}, "site:"),
        ("/api/site", {"site": {"hosts": ["n.test"], "pool": "web"}}, "site:"),
        ("/api/site", {"replace": "keep.test", "site": {"hosts": ["fallback.test"],
                                                        "pool": "web"}}, "site:"),
        ("/api/site", {"remove": "nope.test"}, "remove:"),
        ("/api/site", {"remove": "keep.test", "add": {"hosts": ["x.test"], "pool": "web"}},
         "body:"),
        ("/api/site", {}, "body:"),
        ("/api/site", '{"add": {"hosts": ["x.test"], ', "body:"),
        ("/api/site", "[1]", "body:"),
        # cJSON's strings end at a NUL: "evil.test\u0000x" would be read as "evil.test".
        ("/api/site", '{"add": {"hosts": ["evil.test\\u0000x"], "pool": "web"}}', "body:"),
        # ... but an escaped backslash before "u0000" is text, and no host.
        ("/api/site", '{"add": {"hosts": ["evil.test\\\\u0000x"], "pool": "web"}}', "add:"),
    ]
    for path, body, field in cases:
        st, _, got = admin.request("POST", path, body=body)
        assert st == 400 and got.decode().startswith('{"error":"' + field), (body, st, got)
    # Larger than the admin reads at all.
    st, _, got = admin.request("POST", "/api/site", body="x" * ((1 << 20) + 1))
    assert st == 413 and b"body:" in got, (st, got)
    for path, body in (("/api/pool", {"pool": "web", "add": b.addr}),
                       ("/api/site", {"remove": "keep.test"})):
        assert admin.request("POST", path, body=body, token=False)[0] == 401
        assert admin.request("POST", path, body=body, token="wrong-token-wrong-token")[0] == 401
        assert admin.request("GET", path)[0] == 405
    assert admin.get_json("/api/config") == before
    assert s.get("/", host="keep.test").status == 200


def test_a_reload_brings_back_what_the_file_says(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = site_sluice(env, {"web": [a]}, [{"hosts": ["keep.test"], "pool": "web"},
                                               {"hosts": ["gone.test"], "pool": "web"}])
    before = admin.get_json("/api/config")
    call(admin, "/api/pool", {"pool": "web", "add": b.addr})
    call(admin, "/api/site", {"add": {"hosts": ["new.test"], "pool": "web"}})
    call(admin, "/api/site", {"remove": "gone.test"})
    changed = admin.get_json("/api/config")
    assert changed["generation"] == before["generation"] + 3
    assert set(x["name"] for x in changed["sites"]) == {"keep.test", "new.test"}
    s.signal(signal.SIGHUP)
    wait_until(lambda: admin.get_json("/api/config")["generation"] == before["generation"] + 4,
               10 * env.slow, what="the reload")
    s.expected_exit = False
    after = admin.get_json("/api/config")
    after["generation"] = before["generation"]
    assert after == before
    assert body_of(s, "new.test") == 404
    assert s.get("/", host="gone.test").status == 200
    assert "changes made through the admin API are dropped" in s.stderr_text()


def test_sites_need_a_listener_that_routes_by_them(env):
    a = env.backend("a")
    s, admin = pool_sluice(env, [a])
    st, _, got = admin.request("POST", "/api/site", body={"add": {"hosts": ["x.test"],
                                                                  "pool": "web"}})
    assert st == 400 and b"add: every listener has a pool of its own" in got, got
