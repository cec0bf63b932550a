"""Graceful shutdown on SIGTERM / SIGINT."""

import signal
import threading
import time

from harness import ConnectionClosed, port_refuses, wait_until


def _inflight(env, sig):
    b = env.backend()
    s = env.sluice([b], timeouts={"shutdown": 5})
    n = 4
    results = [None] * n

    def worker(i):
        try:
            r = s.get("/slow?delay=1&i=%d" % i, timeout=30)
            results[i] = (r.status, r.body)
        except Exception as e:
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # Readiness: every request has reached the backend.
    wait_until(lambda: sum("/slow" in l for l in b.request_lines()) == n, 10 * env.slow,
               what="the slow requests to reach the backend")
    t_sig = time.monotonic()
    s.signal(sig)
    for t in threads:
        t.join(30)
    rc = s.wait_exit(15 * env.slow)
    dt = time.monotonic() - t_sig
    assert results == [(200, b"slow\n")] * n, results
    assert rc == 0, "sluice exited with %s after %s" % (rc, sig)
    assert dt < 5 + 5 * env.slow, "exit took %.1fs" % dt
    assert port_refuses(s.host, s.port), "listener still accepting after exit"


def test_sigterm_lets_inflight_requests_finish(env):
    _inflight(env, signal.SIGTERM)


def test_sigint_lets_inflight_requests_finish(env):
    _inflight(env, signal.SIGINT)


def test_sigterm_stops_accepting_new_connections(env):
    b = env.backend()
    s = env.sluice([b], timeouts={"shutdown": 5})
    c = s.connect(timeout=30)
    c.request("GET", "/slow?delay=2")
    wait_until(lambda: any("/slow" in l for l in b.request_lines()), 10 * env.slow,
               what="the slow request to reach the backend")
    s.signal(signal.SIGTERM)
    # While the in-flight request is still running, new clients get no service:
    # either the port refuses, or an accepted connection is never answered.
    try:
        wait_until(lambda: port_refuses(s.host, s.port), 1.0, what="listener closed")
    except AssertionError:
        try:
            with s.connect(timeout=1) as n:
                n.request("GET", "/")
                r = n.read_response()
        except (OSError, ConnectionClosed):
            r = None
        assert r is None, "new request served during shutdown: %r" % r
    r = c.read_response()
    c.close()
    assert r.status == 200 and r.body == b"slow\n", r
    assert s.wait_exit(15 * env.slow) == 0


def test_sigterm_gives_up_after_shutdown_timeout(env):
    b = env.backend()
    s = env.sluice([b], timeouts={"shutdown": 1, "backend_response": 60})
    c = s.connect(timeout=30)
    c.request("GET", "/hang")
    wait_until(lambda: any("/hang" in l for l in b.request_lines()), 10 * env.slow,
               what="the hanging request to reach the backend")
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    rc = s.wait_exit(15 * env.slow)
    dt = time.monotonic() - t0
    c.close()
    assert rc == 0, rc
    assert 0.8 <= dt < 6 * env.slow, "exit %.1fs after SIGTERM with shutdown = 1" % dt


def test_sigterm_does_not_wait_for_idle_keepalive_clients(env):
    b = env.backend()
    s = env.sluice([b], timeouts={"shutdown": 10})
    idle = []
    for i in range(5):
        c = s.connect()
        c.request("GET", "/")
        assert c.read_response().status == 200
        idle.append(c)
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    rc = s.wait_exit(20 * env.slow)
    dt = time.monotonic() - t0
    for c in idle:
        assert c.wait_closed(2), "idle client not closed at exit"
        c.close()
    assert rc == 0, rc
    assert dt < 5 * env.slow, "idle keep-alive clients delayed exit by %.1fs" % dt
