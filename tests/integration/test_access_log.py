"""The access log: TIME CLIENT_ADDR METHOD TARGET STATUS BYTES_SENT SERVER DURATION_US TLS SNI."""

import re

from harness import wait_until

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\S+) (\d{3}) (\d+) (\S+) (\d+) (\S+) (\S+)$")


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
    ts, addr, method, target, status, sent, server, dur, tls, sni = m.groups()
    assert tls == "-" and sni == "-", m.group(0)
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
