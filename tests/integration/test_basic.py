"""Basic proxying: GET, POST, HEAD, status codes without bodies, HTTP/1.0."""

import http.client
import subprocess
import time

from harness import pattern_bytes


def test_get_returns_backend_response(env):
    b = env.backend("alpha")
    s = env.sluice([b])
    r = s.get("/")
    assert r.status == 200, r
    assert r.body == b"hello from alpha\n", r.body
    assert r.header("X-Backend") == "alpha"


def test_get_with_http_client_library(env):
    b = env.backend()
    s = env.sluice([b])
    c = http.client.HTTPConnection(s.host, s.port, timeout=15)
    try:
        c.request("GET", "/size/5000")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200
        assert body == pattern_bytes(5000)
    finally:
        c.close()


def test_post_body_is_echoed(env):
    b = env.backend()
    s = env.sluice([b])
    body = b"name=sluice&data=" + bytes(range(256)) * 10
    r = s.get("/echo", method="POST", body=body,
              headers=[("Content-Type", "application/octet-stream")])
    assert r.status == 200, r
    assert r.body == body


def test_put_body_is_echoed(env):
    b = env.backend()
    s = env.sluice([b])
    body = b"x" * 100000
    r = s.get("/echo", method="PUT", body=body)
    assert r.status == 200, r
    assert r.body == body


def test_empty_post_is_forwarded(env):
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/sha256", method="POST", body=b"")
    assert r.status == 200, r
    assert r.json()["length"] == 0


def test_head_has_no_body_and_keepalive_continues(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("HEAD", "/size/5000")
        r = c.read_response("HEAD")
        assert r.status == 200, r
        assert r.header("Content-Length") == "5000", r
        # Had sluice sent a body after the HEAD response, the next status line
        # would be garbage.
        c.request("GET", "/")
        r2 = c.read_response()
        assert r2.status == 200, r2
        assert r2.body.startswith(b"hello from"), r2.body
        c.request("HEAD", "/size/70000")
        r3 = c.read_response("HEAD")
        assert r3.status == 200 and r3.header("Content-Length") == "70000", r3
        c.request("GET", "/size/10")
        r4 = c.read_response()
        assert r4.body == pattern_bytes(10), r4.body


def test_204_and_304_have_no_body_and_keepalive_continues(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        for st in (204, 304, 204):
            c.request("GET", "/status/%d" % st)
            r = c.read_response()
            assert r.status == st, r
            assert r.header("Transfer-Encoding") is None, r
            c.request("GET", "/size/100")
            r2 = c.read_response()
            assert r2.status == 200, r2
            assert r2.body == pattern_bytes(100)


def test_backend_error_statuses_are_passed_through(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        for st in (404, 500, 503, 201, 302):
            c.request("GET", "/status/%d" % st)
            r = c.read_response()
            assert r.status == st, r
            assert r.body == b"status %d\n" % st
            assert r.header("X-Backend") == b.name


def test_http10_client_gets_correct_response(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("GET", "/size/3000", version="HTTP/1.0")
        r = c.read_response()
        assert r.status == 200, r
        assert r.version in ("HTTP/1.0", "HTTP/1.1"), r
        assert not r.chunked, "chunked response to an HTTP/1.0 client: %r" % r
        assert r.body == pattern_bytes(3000)
        # HTTP/1.0 without keep-alive: the connection ends after the response.
        assert c.wait_closed(10 * env.slow), "connection to HTTP/1.0 client not closed"


def test_http10_client_gets_unchunked_body_from_chunked_backend(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("GET", "/size/50000?chunked=1&chunk=7000", version="HTTP/1.0")
        r = c.read_response()
        assert r.status == 200, r
        assert not r.chunked, "chunked response to an HTTP/1.0 client: %r" % r
        assert r.body == pattern_bytes(50000), "body differs (%d bytes)" % len(r.body)


def test_http10_without_host_header_is_served(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.send("GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body.startswith(b"hello from")


def test_curl_get_and_post(env):
    b = env.backend()
    s = env.sluice([b])
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}",
                        s.url("/size/1000")], capture_output=True, timeout=30)
    body, _, code = p.stdout.rpartition(b"\n")
    assert code == b"200", p
    assert body == pattern_bytes(1000)
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--data-binary", "curl body",
                        s.url("/echo")], capture_output=True, timeout=30)
    assert p.returncode == 0 and p.stdout == b"curl body", p


def test_ipv6_listener(env):
    b = env.backend()
    from harness import free_port
    port = free_port("::1")
    try:
        port4 = free_port()
    except OSError:
        port4 = None
    listeners = [{"address": "[::1]:%d" % port, "pool": "web"}]
    if port4:
        listeners.append({"address": "127.0.0.1:%d" % port4, "pool": "web"})
    s = env.sluice([b], listeners=listeners)
    from harness import RawClient
    with RawClient(port, "::1") as c:
        c.request("GET", "/")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body.startswith(b"hello from")


def test_http10_slow_client_gets_every_byte_of_a_dechunked_response(env):
    """De-chunking for an HTTP/1.0 client while the client reads slowly: partial
    writes leave chunk framing behind in the buffer, none of it may reach the client."""
    b = env.backend()
    s = env.sluice([b])
    n = 3 * 1000 * 1000
    with s.connect(timeout=30, rcvbuf=8192) as c:
        c.request("GET", "/size/%d?chunked=1&chunk=997" % n, version="HTTP/1.0")
        head = c.read_head()
        assert head.status == 200, head
        assert head.header("Transfer-Encoding") is None, head
        body = bytearray(c.buf)
        c.buf.clear()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            d = c.sock.recv(3000)
            if not d:
                break
            body += d
            if len(body) < n // 3:
                time.sleep(0.002)
        assert len(body) == n, "got %d of %d bytes" % (len(body), n)
        assert bytes(body) == pattern_bytes(n), "body differs"
