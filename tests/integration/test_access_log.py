"""The access log: TIME CLIENT_ADDR METHOD TARGET STATUS BYTES_SENT SERVER DURATION_US TLS SNI PROTOCOL."""

import re

from harness import wait_until

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\S+) (\d{3}) (\d+) (\S+) (\d+) (\S+) (\S+) (\S+)$")


def _find(env, s, pred, what):
    def look():
        for l in s.access_lines():
            m = LINE.match(l)
            if m and pred(m):
                return m
        return None
    return wait_until(look, 10 * env.slow, what="%s in access log:\n%s" % (what, "\n".join(s.access_lines()[-10:])))


def test_access_log_line_has_documented_fields(env):
    b = env.backend()
    log = env.path("access.log")
    s = env.sluice([b], access_log=log)
    with s.connect() as c:
        client = c.local_addr()
        c.request("GET", "/size/1234?x=1")
        r = c.read_response()
        assert r.status == 200
        c.request("GET", "/status/404")
        assert c.read_response().status == 404
        c.request("HEAD", "/size/99")
        assert c.read_response("HEAD").status == 200
    m = _find(env, s, lambda m: m.group(4) == "/size/1234?x=1", "the GET line")
    ts, addr, method, target, status, sent, server, dur, tls, sni, protocol = m.groups()
    assert tls == "-" and sni == "-" and protocol == "HTTP/1.1", m.group(0)
    assert addr == client, (addr, client)
    assert method == "GET" and status == "200", m.group(0)
    assert 1234 <= int(sent) < 1234 + 1024, "BYTES_SENT %s for a 1234-byte body" % sent
    assert server == b.addr, (server, b.addr)
    assert int(dur) < 10_000_000, dur
    m = _find(env, s, lambda m: m.group(4) == "/status/404", "the 404 line")
    assert m.group(5) == "404" and m.group(2) == client and m.group(7) == b.addr, m.group(0)
    m = _find(env, s, lambda m: m.group(3) == "HEAD", "the HEAD line")
    assert m.group(4) == "/size/99" and m.group(5) == "200", m.group(0)
    assert int(m.group(6)) < 1024, m.group(0)


def test_access_log_shows_error_status_and_no_server(env):
    log = env.path("access.log")
    b = env.backend()
    s = env.sluice([b], access_log=log, timeouts={"backend_response": 1})
    r = s.get("/hang")
    assert r.status == 504
    m = _find(env, s, lambda m: m.group(4) == "/hang", "the 504 line")
    assert m.group(5) == "504", m.group(0)
    assert m.group(7) in (b.addr, "-"), m.group(0)
    assert int(m.group(8)) >= 900_000, "DURATION_US %s for a 1 s timeout" % m.group(8)


def test_access_log_one_line_per_request(env):
    b = env.backend()
    log = env.path("access.log")
    s = env.sluice([b], access_log=log)
    with s.connect() as c:
        for i in range(20):
            c.request("GET", "/?n=%d" % i)
            assert c.read_response().status == 200
    wait_until(lambda: len([l for l in s.access_lines() if " /?n=" in l]) >= 20, 10 * env.slow,
               what="20 access log lines")
    lines = [l for l in s.access_lines() if " /?n=" in l]
    assert len(lines) == 20, lines
    assert [LINE.match(l).group(4) for l in lines] == ["/?n=%d" % i for i in range(20)], lines


def _json_lines(s):
    import json
    out = []
    for l in s.access_lines():
        out.append(json.loads(l))  # every line is one whole JSON object
    return out


def test_json_access_log_carries_route_pool_server_and_durations(env):
    b = env.backend()
    log = env.path("access.log")
    cfg = env.routed_config(
        pools={"web": [b]},
        sites=[{"hosts": ["shop.test"], "routes": [{"path": "/size/", "pool": "web"},
                                                   {"path": "/", "respond": {"status": 204}}]}],
        access_log=log, extra={"access_log_format": "json"})
    s = env.sluice(config=cfg)
    assert s.get("/size/1000", host="shop.test").status == 200
    assert s.get("/", host="shop.test").status == 204
    lines = wait_until(lambda: len(_json_lines(s)) == 2 and _json_lines(s), 10 * env.slow,
                       what="two JSON lines")
    api, local = sorted(lines, key=lambda x: x["target"])[::-1]
    assert api["target"] == "/size/1000" and api["method"] == "GET" and api["status"] == 200, api
    assert api["site"] == "shop.test" and api["route"] == "/size/" and api["pool"] == "web", api
    assert api["server"] == b.addr and api["bytes_out"] >= 1000 and api["bytes_in"] > 20, api
    assert api["duration_us"] >= api["backend_us"] > 0 and 0 < api["added_us"] <= api["duration_us"], api
    assert api["tls"] is None and re.match(r"\d{4}-\d\d-\d\dT", api["time"]), api
    assert local["status"] == 204 and local["pool"] is None and local["server"] is None, local
    assert local["backend_us"] is None and local["route"] == "/", local


def test_json_access_log_lines_cannot_be_forged_by_a_request(env):
    b = env.backend()
    log = env.path("access.log")
    s = env.sluice([b], access_log=log, extra={"access_log_format": "json"})
    # A quote, a backslash and bytes past ASCII in the target (what a strict parser lets through).
    evil = [b'/x"},{"status":999', b"/back\\slash", b"/caf\xc3\xa9", b"/%0a%22"]
    sent = 0
    for target in evil:
        with s.connect() as c:
            c.send(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            try:
                c.read_response()
            except Exception:
                pass
            sent += 1
    lines = wait_until(lambda: len(s.access_lines()) >= sent and _json_lines(s), 10 * env.slow,
                       what="a JSON line per request")
    assert all(set(x) >= {"time", "client", "target", "status"} for x in lines), lines
    assert not any(x["status"] == 999 for x in lines), lines
    logged = [x["target"] for x in lines]
    # What was logged reads back byte for byte (bytes past ASCII as \u00XX, one per byte);
    # a target the parser refused (400) is logged as "-".
    for t in logged:
        assert t == "-" or t.encode("latin-1") in evil, (t, evil)
    assert sum(t != "-" for t in logged) >= 3, logged
