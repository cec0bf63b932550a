"""Passive health: consecutive failures take a server out for a cool-down that grows."""

import re
import time

from harness import free_port, wait_until


def test_failing_server_is_taken_out_after_max_fails_with_a_growing_cool_down(env):
    live = env.backend("live")
    dead = "127.0.0.1:%d" % free_port()          # nothing listens: connect refused
    s = env.sluice([dead, live], pool={"max_fails": 2, "connect_backoff": 0.2,
                                       "max_backoff": 10})
    outages = lambda: re.findall(r"taken out for (\d+) ms \(outage (\d+)\)", s.stderr_text())
    deadline = time.monotonic() + 20 * env.slow
    while len(outages()) < 3 and time.monotonic() < deadline:
        r = s.get("/")
        # Every request succeeds: a refused connect moves on to the live server.
        assert r.status == 200 and r.header("X-Backend") == "live", r
        time.sleep(0.05)   # pacing the client, not synchronising: the cool-downs are timed
    got = [(int(ms), int(n)) for ms, n in outages()[:3]]
    assert got == [(200, 1), (400, 2), (800, 3)], (got, s.stderr_text())
    assert "1 of 2 failures before it is taken out" in s.stderr_text()


def test_a_response_resets_the_count(env):
    b = env.backend("b")
    s = env.sluice([b], pool={"max_fails": 2, "connect_backoff": 5})
    # The backend closes one connection without answering: one failure, not enough.
    r = s.get("/drop")
    assert r.status == 502, r
    assert s.get("/").status == 200
    r = s.get("/drop")
    assert r.status == 502, r
    # Two failures, but not in a row: the server is still in.
    assert s.get("/").status == 200
    assert "taken out for" not in s.stderr_text(), s.stderr_text()


def _checked(env, servers, **health):
    h = {"interval": 0.2, "timeout": 0.15, "rise": 2, "fall": 2}
    h.update(health)
    return env.sluice(servers, pool={"health": h, "max_fails": 1000})


def test_health_check_takes_a_dead_server_out_and_brings_it_back(env):
    a, b = env.backend("A"), env.backend("B")
    s = _checked(env, [a, b], path="/")
    b_port = b.port
    b.stop()
    wait_until(lambda: "server %s: health check failed 2 times in a row" % b.addr in s.stderr_text(),
               10 * env.slow, what="B to be taken out")
    for _ in range(10):
        r = s.get("/")
        assert r.status == 200 and r.header("X-Backend") == "A", r
    env.backend("B", port=b_port)
    wait_until(lambda: "server %s: health check passed 2 times in a row; back in" % b.addr
               in s.stderr_text(), 10 * env.slow, what="B to come back")
    seen = {s.get("/").header("X-Backend") for _ in range(6)}
    assert seen == {"A", "B"}, seen


def test_health_check_judges_status_and_body(env):
    a, b = env.backend("A"), env.backend("B")
    s = _checked(env, [a, b], path="/", body="hello from A")
    wait_until(lambda: "server %s: health check failed 2 times in a row (body lacks" % b.addr
               in s.stderr_text(), 10 * env.slow, what="B to fail the body check")
    assert {s.get("/").header("X-Backend") for _ in range(6)} == {"A"}
    s2 = _checked(env, [a], path="/status/500", status="200-399")
    wait_until(lambda: "(status 500); taken out" in s2.stderr_text(), 10 * env.slow,
               what="A to fail the status check")
    assert s2.get("/").status == 503


def test_health_config_errors_name_their_line(env):
    p = env.check_config("return {\n  listeners = {{ address = '127.0.0.1:1', pool = 'a' }},\n"
                         "  pools = { a = { servers = { '127.0.0.1:2' },\n"
                         "    health = { type = 'udp' } } },\n}\n", "h.lua")
    assert p.returncode == 1 and p.stderr.startswith("h.lua:4: "), p.stderr
    assert 'type must be "http" or "tcp"' in p.stderr, p.stderr


def test_health_check_searches_the_data_of_a_chunked_body(env):
    """The body text is looked for in the body's data, as the h1 codec reads it: chunk
    framing in the middle of the text does not hide it."""
    port = free_port()
    addr = "127.0.0.1:%d" % port
    # Bytes 65..74 of the pattern are "ABCDEFGHIJ"; chunks of 7 put framing between E and F.
    s = _checked(env, [addr], path="/size/100?chunked=1&chunk=7", body="ABCDEFGHIJ")
    wait_until(lambda: "server %s: health check failed 2 times in a row" % addr in s.stderr_text(),
               10 * env.slow, what="the absent server to be taken out")
    env.backend("A", port=port)
    wait_until(lambda: "server %s: health check passed 2 times in a row; back in" % addr
               in s.stderr_text(), 10 * env.slow, what="the chunked body to pass the check")
    assert s.get("/").status == 200


def test_health_check_fails_a_response_cut_short_or_malformed(env):
    a, b = env.backend("A"), env.backend("B")
    s = _checked(env, [a], path="/truncated?size=100&send=50", body="ABC")
    wait_until(lambda: "(closed in the middle of the response body); taken out"
               in s.stderr_text(), 10 * env.slow, what="a cut body to fail the check")
    s2 = _checked(env, [b], path="/malformed")
    wait_until(lambda: re.search(r"server %s: health check failed 2 times in a row \([^)]+\); "
                                 r"taken out" % re.escape(b.addr), s2.stderr_text()),
               10 * env.slow, what="a malformed response to fail the check")
