"""The admin API's server calls under load: drain, maintenance, ready and
weight, applied to every worker at once with no request failed; refused
with 400 naming the field, or 401 without the token, changing nothing."""

import signal

from harness import Load, SlowRequests, metric, wait_port, wait_until


def start(env, backends, pool=None):
    block, admin = env.admin_config()
    s = env.sluice(backends, pool=pool, extra={"admin": block, "workers": 4})
    wait_port("127.0.0.1", admin.port, 10 * env.slow)
    return s, admin


def server_state(admin, addr):
    pools = admin.get_json("/api/config")["pools"]
    return next(x for x in pools[0]["servers"] if x["address"] == addr)


def test_drain_lets_in_flight_requests_finish_and_sends_nothing_new(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = start(env, [a, b])
    load = Load(s)
    slow = SlowRequests(env, s, [a, b], at=b)
    st, _, body = admin.request("POST", "/api/server",
                                body={"pool": "web", "server": b.addr, "state": "drain"})
    assert st == 200, body
    assert server_state(admin, b.addr)["state"] == "drain"
    seen_at_drain = len(b.request_lines())
    # Nothing new reaches b (every worker reads the state at its next pick) ...
    n_before = len(load.statuses)
    wait_until(lambda: len(load.statuses) >= n_before + 200, 20 * env.slow, what="200 more requests")
    # ... and the requests it had finish.
    assert slow.join() == [200] * 6, slow.statuses
    new_at_b = len(b.request_lines()) - seen_at_drain
    total = load.finish()
    # The load has one request in flight at a time: it may have been sent to b just before.
    assert new_at_b <= 1, "%d requests reached the drained server" % new_at_b
    print("# %d requests under load, none failed, none to the drained server" % total)
    wait_until(lambda: "admin: 127.0.0.1:" in s.stderr_text() and "-> drain" in s.stderr_text(),
               5 * env.slow, what="the change logged with the caller's address")


def test_maint_then_ready_brings_the_server_back_within_a_second(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = start(env, [a, b])
    load = Load(s)
    assert admin.request("POST", "/api/server",
                         body={"pool": "web", "server": b.addr, "state": "maint"})[0] == 200
    m = admin.metrics()
    assert metric(m, "sluice_server_admin_state", pool="web", server=b.addr) == 2
    mark = len(b.request_lines())
    n = len(load.statuses)
    wait_until(lambda: len(load.statuses) >= n + 100, 20 * env.slow, what="100 more requests")
    # (One request of the load may have been on its way to b as the call came.)
    assert len(b.request_lines()) <= mark + 1, "a server in maintenance got requests"
    assert admin.request("POST", "/api/server",
                         body={"pool": "web", "server": b.addr, "state": "ready"})[0] == 200
    wait_until(lambda: len(b.request_lines()) > mark + 10, 1.0 * env.slow,
               what="the server back in within 1 s")
    load.finish()


def test_weight_changes_the_share_a_server_gets(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = start(env, [a, b], pool={"balance": "weighted"})
    st, _, body = admin.request("POST", "/api/server", body={"pool": "web", "server": b.addr, "weight": 4})
    assert st == 200 and b'"weight":4' in body, body
    ma, mb = len(a.request_lines()), len(b.request_lines())
    for _ in range(500):
        assert s.get("/").status == 200
    da, db = len(a.request_lines()) - ma, len(b.request_lines()) - mb
    assert da + db == 500 and 3.0 < db / da < 5.0, (da, db)


def test_a_reload_brings_back_what_the_file_says(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = start(env, [a, b], pool={"balance": "weighted"})
    admin.request("POST", "/api/server", body={"pool": "web", "server": b.addr, "state": "drain", "weight": 9})
    assert server_state(admin, b.addr) == {"address": b.addr, "state": "drain", "weight": 9, "backup": False}
    s.signal(signal.SIGHUP)
    wait_until(lambda: admin.get_json("/api/config")["generation"] == 2, 10 * env.slow, what="the reload")
    s.expected_exit = False
    assert server_state(admin, b.addr) == {"address": b.addr, "state": "ready", "weight": 1, "backup": False}


def test_bad_calls_get_400_naming_the_field_and_change_nothing(env):
    a, b = env.backend("a"), env.backend("b")
    s, admin = start(env, [a, b])
    before = admin.get_json("/api/config")
    cases = [
        ({"pool": "nope", "server": b.addr, "state": "drain"}, "pool:"),
        ({"pool": "web", "server": "10.9.9.9:1", "state": "drain"}, "server:"),
        ({"pool": "web", "server": b.addr, "state": "asleep"}, "state:"),
        ({"pool": "web", "server": b.addr, "weight": 2}, "weight:"),  # round_robin: no weights
        ({"pool": "web", "server": b.addr, "weight": "2"}, "weight:"),
        ({"pool": "web", "server": b.addr}, "body:"),
        ({"pool": "web", "server": b.addr, "state": "drain", "colour": 1}, "colour:"),
        ({"server": b.addr, "state": "drain"}, "pool:"),
        ('{"pool": "web", "server": ', "body:"),
        ("[1, 2]", "body:"),
    ]
    for body, field in cases:
        st, _, got = admin.request("POST", "/api/server", body=body)
        assert st == 400 and got.decode().startswith('{"error":"' + field), (body, st, got)
    st, _, _ = admin.request("POST", "/api/server", token=False,
                             body={"pool": "web", "server": b.addr, "state": "drain"})
    assert st == 401
    st, _, _ = admin.request("POST", "/api/server", token="not-the-token-at-all",
                             body={"pool": "web", "server": b.addr, "state": "drain"})
    assert st == 401
    assert admin.request("GET", "/api/server")[0] == 405
    assert admin.get_json("/api/config") == before
