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
