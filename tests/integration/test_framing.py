"""Response framing (RFC 9110 6.4.1, RFC 9112 6.3): responses whose head says
more than the message carries, and the requests that follow them on the same
client connection and backend connection."""

import pytest

from harness import pattern_bytes

# About HTTP semantics: each runs once per front protocol (tests/conftest.py).
pytestmark = pytest.mark.fronts


def next_get_is_intact(c, n, backend_conn=None):
    """A GET after the special response: the right body; backend_conn, if
    given, is the backend connection it must have reused."""
    c.request("GET", "/size/%d" % n)
    r = c.read_response()
    assert r.status == 200, r
    assert r.body == pattern_bytes(n), "body after the special response is wrong"
    if backend_conn is not None:
        assert r.header("X-Backend-Conn") == backend_conn, \
            "backend connection not reused: %s then %s" % (backend_conn, r.header("X-Backend-Conn"))
    return r


def test_bodiless_responses_keep_both_connections_in_step(env):
    b = env.backend()
    s = env.sluice([b])
    cases = [
        # (method, target, status, headers that must reach the client unchanged)
        ("GET", "/answer?status=304&length=1000", 304, {"content-length": "1000"}),
        ("GET", "/answer?status=304&chunked=1", 304, {"transfer-encoding": "chunked"}),
        ("GET", "/answer?status=204&length=0", 204, {}),
        ("HEAD", "/answer?length=5000", 200, {"content-length": "5000"}),
        ("HEAD", "/answer?length=5000&chunked=1", 200, {"transfer-encoding": "chunked"}),
        ("HEAD", "/size/777", 200, {"content-length": "777"}),
    ]
    with s.connect(timeout=10) as c:
        first = next_get_is_intact(c, 10)
        conn = first.header("X-Backend-Conn")
        for i, (method, target, status, hdrs) in enumerate(cases):
            c.request(method, target)
            r = c.read_response(method)
            assert r.status == status, (target, r)
            for name, value in hdrs.items():
                assert r.header(name) == value, (target, name, r)
            assert r.header("X-Backend-Conn") == conn, (target, r)
            next_get_is_intact(c, 100 + i, conn)
    assert len(b.request_lines()) == 2 * len(cases) + 1


def test_interim_responses_before_the_final_one_are_forwarded_in_order(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=10) as c:
        conn = next_get_is_intact(c, 10).header("X-Backend-Conn")
        for interim in ("100", "103", "100,103,103"):
            c.request("GET", "/answer?length=3000&interim=" + interim)
            codes = []
            while True:
                r = c.read_response(allow_1xx=True)
                if r.status >= 200:
                    break
                codes.append(str(r.status))
                if r.status == 103:
                    assert r.header_all("Link") == [
                        "</style.css>; rel=preload; as=style",
                        "</app.js>; rel=preload; as=script"], r
                assert r.header("Content-Length") is None, r
            assert codes == interim.split(","), (interim, codes)
            assert r.status == 200 and r.body == pattern_bytes(3000), (interim, r)
            next_get_is_intact(c, 20, conn)


def test_interim_responses_are_not_sent_to_http10_clients(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=10) as c:
        c.request("GET", "/answer?length=30&interim=100,103", version="HTTP/1.0",
                  headers=[("Connection", "keep-alive")])
        r = c.read_response(allow_1xx=True)
        assert r.status == 200 and r.body == pattern_bytes(30), r
        next_get_is_intact(c, 40)


def test_response_ending_at_eof_is_rechunked_and_the_client_connection_kept(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=10) as c:
        next_get_is_intact(c, 10)
        for n in (0, 1, 100000):
            c.request("GET", "/nolength?size=%d" % n)
            r = c.read_response()
            assert r.status == 200, r
            assert r.chunked, "a body that ended at EOF reached an HTTP/1.1 client unframed: %r" % r
            assert r.header("Connection") is None, r
            assert r.body == pattern_bytes(n), n
            next_get_is_intact(c, 50 + n % 7)


def test_response_ending_at_eof_closes_an_http10_client(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=10) as c:
        c.request("GET", "/nolength?size=5000", version="HTTP/1.0",
                  headers=[("Connection", "keep-alive")])
        r = c.read_response()
        assert r.status == 200 and r.body == pattern_bytes(5000), r
        assert c.wait_closed(5)


def test_http10_client_gets_a_chunked_body_whose_framing_fills_a_buffer(env):
    """De-chunking for an HTTP/1.0 client: chunk extensions longer than a
    buffer are framing that must be dropped as it is parsed, or nothing is
    left to write and no room to read (found in review)."""
    import socket
    import threading
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ext = b";" + b"e" * 20000
    body = b"5" + ext + b"\r\nhello\r\n6" + ext + b"\r\n world\r\n0\r\n\r\n"

    def serve():
        c, _ = ls.accept()
        with c:
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        s = env.sluice(["127.0.0.1:%d" % ls.getsockname()[1]], limits={"buffer_size": 16384},
                       timeouts={"idle": 5})
        with s.connect(timeout=10) as c:
            c.request("GET", "/", version="HTTP/1.0")
            closed, data = c.read_until_closed(8)
        assert closed, "the response did not end"
        head, _, got = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data[:200]
        assert b"transfer-encoding" not in head.lower(), head
        assert got == b"hello world", got[:100]
    finally:
        ls.close()
        t.join(5)
