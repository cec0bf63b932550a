"""Keep-alive and pipelining on the client side, pooled connections to backends."""

import json
import time

from harness import ONE_WORKER, pattern_bytes, wait_until


def test_100_requests_on_one_keepalive_connection(env):
    b = env.backend()
    s = env.sluice([b])
    conns = set()
    with s.connect() as c:
        for i in range(100):
            c.request("GET", "/size/%d" % (100 + i))
            r = c.read_response()
            assert r.status == 200, (i, r)
            assert r.body == pattern_bytes(100 + i), i
            conns.add(r.header("X-Backend-Conn"))
    lines = b.request_lines()
    assert len(lines) == 100, "backend saw %d requests" % len(lines)
    # Backend connection reuse: the 100 requests went over very few connections.
    assert len(conns) <= 2, "backend saw %d connections for 100 sequential requests" % len(conns)
    assert b.stats()["accepted"] <= 3


def test_backend_connections_are_reused_across_client_connections(env):
    b = env.backend()
    # One worker: idle connections are kept per worker (README: workers).
    s = env.sluice([b], extra=ONE_WORKER)
    conns = set()
    for i in range(20):
        r = s.get("/")
        assert r.status == 200, r
        conns.add(r.header("X-Backend-Conn"))
    assert len(conns) <= 2, "20 sequential clients used %d backend connections" % len(conns)


def test_10_pipelined_requests_answered_in_order(env):
    b = env.backend()
    s = env.sluice([b])
    reqs = []
    expect = []
    for i in range(10):
        if i == 0:
            reqs.append("GET /slow?delay=0.3&i=0 HTTP/1.1\r\nHost: p\r\n\r\n")
            expect.append(("GET", lambda r: r.body == b"slow\n"))
        elif i == 4:
            reqs.append("HEAD /size/777 HTTP/1.1\r\nHost: p\r\n\r\n")
            expect.append(("HEAD", lambda r: r.header("Content-Length") == "777" and r.body == b""))
        elif i == 6:
            reqs.append("POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 11\r\n\r\nhello world")
            expect.append(("POST", lambda r: r.body == b"hello world"))
        elif i % 2:
            n = 100000 * i
            reqs.append("GET /size/%d HTTP/1.1\r\nHost: p\r\n\r\n" % n)
            expect.append(("GET", lambda r, n=n: r.body == pattern_bytes(n)))
        else:
            reqs.append("GET /headers?i=%d HTTP/1.1\r\nHost: p\r\n\r\n" % i)
            expect.append(("GET", lambda r, i=i: json.loads(r.body)["target"] == "/headers?i=%d" % i))
    with s.connect(timeout=30) as c:
        c.send("".join(reqs))
        for i, (method, ok) in enumerate(expect):
            r = c.read_response(method)
            assert r.status == 200, (i, r)
            assert ok(r), "response %d out of order or wrong: %r %r" % (i, r, r.body[:200])
        # The connection stays usable.
        c.request("GET", "/")
        assert c.read_response().status == 200


def test_requests_split_into_tiny_writes_are_parsed(env):
    b = env.backend()
    s = env.sluice([b])
    data = ("GET /size/10 HTTP/1.1\r\nHost: tiny\r\nX-A: 1\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: tiny\r\nContent-Length: 5\r\n\r\nabcde").encode()
    with s.connect() as c:
        for i in range(0, len(data), 3):
            c.send(data[i:i + 3])
            time.sleep(0.002)
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 200 and r1.body == pattern_bytes(10), r1
    assert r2.status == 200 and r2.body == b"abcde", r2


def test_backend_idle_close_never_fails_client_request(env):
    """The backend closes pooled connections after 0.3 s idle; requests spaced
    around that interval must all succeed (sluice detects dead pooled
    connections, or retries a GET that never reached a live backend)."""
    b = env.backend(idle_close=0.3)
    s = env.sluice([b])
    with s.connect() as client:
        gaps = [0.1, 0.5, 0.05, 0.45, 0.3, 0.28, 0.32, 0.6, 0.0, 0.29, 0.31, 0.5]
        for i, gap in enumerate(gaps):
            time.sleep(gap)  # deliberate: lets the backend's idle close happen (or race)
            client.request("GET", "/size/1000?i=%d" % i)
            r = client.read_response()
            assert r.status == 200, "request %d after %.2fs idle: %r" % (i, gap, r)
            assert r.body == pattern_bytes(1000)
    # Wait until the backend really closed every idle connection, then go again.
    wait_until(lambda: b.stats()["open"] == 0, 10, what="backend idle connections closed")
    for i in range(3):
        r = s.get("/")
        assert r.status == 200, r


def test_backend_connection_close_never_fails_next_request(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        for i in range(10):
            c.request("GET", "/close")
            r = c.read_response()
            assert r.status == 200 and r.body == b"closing\n", (i, r)
            c.request("GET", "/size/500")
            r = c.read_response()
            assert r.status == 200 and r.body == pattern_bytes(500), (i, r)


def test_idle_client_closed_after_client_keepalive_timeout(env):
    b = env.backend()
    s = env.sluice([b], timeouts={"client_keepalive": 1})
    with s.connect() as c:
        c.request("GET", "/")
        assert c.read_response().status == 200
        t0 = time.monotonic()
        closed = c.wait_closed(10 * env.slow)
        dt = time.monotonic() - t0
    assert closed, "idle keep-alive client not closed"
    assert dt > 0.7, "idle client closed too early (%.2fs)" % dt
    # An active client is not affected meanwhile.
    assert s.get("/").status == 200
