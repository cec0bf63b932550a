"""Request headers as the backend sees them (via /headers), and Expect: 100-continue."""

import time

import pytest

from harness import h1_only

# About HTTP semantics: each runs once per front protocol (tests/conftest.py).
pytestmark = pytest.mark.fronts

HOP_BY_HOP = {"connection", "keep-alive", "te", "trailer", "proxy-authorization",
              "proxy-authenticate", "proxy-connection", "upgrade", "x-hop-one", "x-hop-two"}


def seen(r):
    j = r.json()
    return j, [(n, v) for n, v in j["headers"]]


def values(hdrs, name):
    return [v for n, v in hdrs if n.lower() == name.lower()]


def test_host_header_preserved(env):
    b = env.backend()
    s = env.sluice([b])
    for host in ("example.test", "www.example.test:8080", "UPPER.Example.TEST"):
        r = s.get("/headers", headers=[("Host", host)])
        assert r.status == 200, r
        j, h = seen(r)
        assert values(h, "host") == [host], h


def test_request_line_and_end_to_end_headers_preserved(env):
    b = env.backend()
    s = env.sluice([b])
    target = "/headers?a=1&b=%20x&c=/d?e"
    r = s.get(target, headers=[("X-Dup", "1"), ("X-Custom", "  value with  spaces"),
                               ("X-Dup", "2"), ("Accept", "*/*"), ("Cookie", "a=b; c=d")])
    assert r.status == 200, r
    j, h = seen(r)
    assert j["method"] == "GET" and j["target"] == target, j
    assert j["version"] == "HTTP/1.1", j
    assert values(h, "x-dup") == ["1", "2"], h
    assert values(h, "x-custom") == ["value with  spaces"], h
    assert values(h, "cookie") == ["a=b; c=d"], h


def test_x_forwarded_for_set_when_absent(env):
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/headers")
    j, h = seen(r)
    assert values(h, "x-forwarded-for") == ["127.0.0.1"], h


def test_x_forwarded_for_appended(env):
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/headers", headers=[("X-Forwarded-For", "203.0.113.7")])
    j, h = seen(r)
    xff = values(h, "x-forwarded-for")
    assert len(xff) == 1, "expected one X-Forwarded-For, got %r" % xff
    assert [x.strip() for x in xff[0].split(",")] == ["203.0.113.7", "127.0.0.1"], xff
    r = s.get("/headers", headers=[("X-Forwarded-For", "198.51.100.1, 203.0.113.7")])
    j, h = seen(r)
    xff = values(h, "x-forwarded-for")
    assert len(xff) == 1 and [x.strip() for x in xff[0].split(",")] == [
        "198.51.100.1", "203.0.113.7", "127.0.0.1"], xff


def scheme(env):
    """What the client's connection is: HTTP/2 runs over TLS in these tests."""
    return "https" if env.front == "h2" else "http"


def test_x_forwarded_proto_and_x_real_ip_set(env):
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/headers")
    j, h = seen(r)
    assert values(h, "x-forwarded-proto") == [scheme(env)], h
    assert values(h, "x-real-ip") == ["127.0.0.1"], h


def test_spoofed_x_real_ip_and_proto_are_replaced(env):
    b = env.backend()
    s = env.sluice([b])
    spoofed = "http" if scheme(env) == "https" else "https"
    r = s.get("/headers", headers=[("X-Real-IP", "6.6.6.6"), ("X-Forwarded-Proto", spoofed)])
    j, h = seen(r)
    assert values(h, "x-real-ip") == ["127.0.0.1"], h
    assert values(h, "x-forwarded-proto") == [scheme(env)], h


def test_hop_by_hop_headers_removed(env):
    h1_only(env, "HTTP/2 has no hop-by-hop headers: a stream that sends them is reset (test_h2)")
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/headers", headers=[
        ("Connection", "keep-alive, X-Hop-One"),
        ("Connection", "x-hop-two"),
        ("X-Hop-One", "secret1"),
        ("X-Hop-Two", "secret2"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X-Foo"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "foo/1"),
        ("X-End-To-End", "kept"),
    ])
    assert r.status == 200, r
    j, h = seen(r)
    for n, v in h:
        if n.lower() == "connection":
            toks = {t.strip().lower() for t in v.split(",")}
            assert toks <= {"keep-alive", "close"}, "Connection forwarded: %r" % v
            continue
        assert n.lower() not in HOP_BY_HOP, "hop-by-hop header %s: %s forwarded" % (n, v)
    assert values(h, "x-end-to-end") == ["kept"], h


def test_backend_connection_close_not_relayed_to_keepalive_client(env):
    """The backend's Connection: close concerns the backend connection only: the
    client's keep-alive connection is not told to close and stays usable."""
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("GET", "/close")
        r = c.read_response()
        assert r.status == 200
        assert "close" not in (r.header("Connection") or "").lower(), r
        c.request("GET", "/")
        r2 = c.read_response()
        assert r2.status == 200


def test_expect_100_continue_is_relayed(env):
    b = env.backend()
    s = env.sluice([b])
    body = b"z" * 200000
    with s.connect(timeout=10 * env.slow) as c:
        c.request("POST", "/sha256", headers=[("Expect", "100-continue"),
                                              ("Content-Length", str(len(body)))])
        # The body is held back until 100 Continue arrives (a timeout fails the test).
        r = c.read_response(allow_1xx=True)
        assert r.status == 100, "expected 100 Continue first, got %r" % r
        c.send(body)
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["length"] == len(body)
        # Keep-alive continues.
        c.request("GET", "/")
        assert c.read_response().status == 200
    # The backend got the Expect header; a client that sends the body without
    # waiting is served too (any 1xx is skipped by read_response).
    r = s.get("/headers", body=b"abc", method="POST", headers=[("Expect", "100-continue")])
    assert r.status == 200, r
    j, h = seen(r)
    assert values(h, "expect") == ["100-continue"], h
    assert j["body_length"] == 3


def test_expect_100_continue_with_curl(env):
    h1_only(env, "curl's plain-HTTP/1.1 URL")
    import subprocess
    b = env.backend()
    s = env.sluice([b])
    path = env.path("body.bin")
    with open(path, "wb") as f:
        f.write(b"q" * 100000)
    t0 = time.monotonic()
    # --expect100-timeout 10: curl would wait 10 s if no 100 Continue came.
    p = subprocess.run(["curl", "-sS", "-v", "--max-time", "30", "--expect100-timeout", "10",
                        "-H", "Expect: 100-continue", "--data-binary", "@" + path,
                        s.url("/sha256")], capture_output=True, timeout=60)
    dt = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert b"< HTTP/1.1 100" in p.stderr, p.stderr[-2000:]
    assert b'"length": 100000' in p.stdout, p.stdout
    assert dt < 8, "curl waited %.1fs: 100 Continue not relayed promptly" % dt


def test_expect_rejected_by_backend_is_relayed(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("POST", "/expect-reject", headers=[("Expect", "100-continue"),
                                                     ("Content-Length", "100000")])
        r = c.read_response()
        assert r.status == 417, r
