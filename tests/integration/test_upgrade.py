"""Upgrade: a 101 answer turns the connection into a raw byte tunnel both ways."""

import hashlib
import os
import threading

WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def _upgrade(c):
    c.request("GET", "/ws", headers=WS_HEADERS)
    r = c.read_head()
    assert r.status == 101, r
    assert (r.header("Upgrade") or "").lower() == "websocket", r
    assert "upgrade" in (r.header("Connection") or "").lower(), r
    assert r.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r
    return r


def test_upgrade_tunnel_moves_bytes_both_ways(env):
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=30) as c:
        _upgrade(c)
        # Small exchanges, one at a time.
        for msg in (b"ping", b"\x00\x01\x02\xff" * 100, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            c.send(msg)
            got = bytearray(c.buf)
            c.buf.clear()
            while len(got) < len(msg):
                d = c.sock.recv(65536)
                assert d, "tunnel closed early"
                got += d
            assert bytes(got) == msg, (got, msg)
        # 8 MB in flight both ways at once (a sender thread, this thread reads).
        data = os.urandom(8 << 20)
        err = []

        def sender():
            try:
                c.sock.sendall(data)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=sender)
        t.start()
        h = hashlib.sha256()
        n = 0
        while n < len(data):
            d = c.sock.recv(1 << 20)
            assert d, "tunnel closed after %d bytes" % n
            h.update(d)
            n += len(d)
        t.join(30)
        assert not err, err
        assert n == len(data)
        assert h.hexdigest() == hashlib.sha256(data).hexdigest(), "tunnel corrupted bytes"
        # Half-close from the client: the backend echo ends, sluice ends the tunnel.
        import socket
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(10 * env.slow), "tunnel not closed after both sides finished"
    # The backend saw exactly one HTTP request: the tunnelled bytes were not parsed as HTTP.
    assert b.request_lines() == ["GET /ws HTTP/1.1"], b.request_lines()
    assert s.get("/").status == 200


def test_upgrade_request_bytes_sent_with_the_head_are_tunnelled(env):
    """Bytes the client sends right after the upgrade request, before the 101,
    belong to the tunnel."""
    b = env.backend()
    s = env.sluice([b])
    with s.connect(timeout=30) as c:
        head = "GET /ws HTTP/1.1\r\nHost: t\r\n" + "".join("%s: %s\r\n" % h for h in WS_HEADERS) + "\r\n"
        c.send(head.encode() + b"early-bytes")
        r = c.read_head()
        assert r.status == 101, r
        got = bytearray(c.buf)
        c.buf.clear()
        while len(got) < len(b"early-bytes"):
            d = c.sock.recv(65536)
            assert d, "closed"
            got += d
        assert bytes(got) == b"early-bytes", got


def test_upgrade_not_accepted_by_backend_keeps_http(env):
    """A backend that answers an upgrade request with a normal response (200
    here) keeps the connection in HTTP mode; the Upgrade header did reach it."""
    b = env.backend()
    s = env.sluice([b])
    with s.connect() as c:
        c.request("GET", "/headers", headers=[("Upgrade", "testproto/1"), ("Connection", "Upgrade")])
        r = c.read_response()
        assert r.status == 200, r
        hdrs = r.json()["headers"]
        assert [v for n, v in hdrs if n.lower() == "upgrade"] == ["testproto/1"], hdrs
        if "close" in (r.header("Connection") or "").lower():
            return  # sluice chose to end the connection, announced: acceptable
        c.request("GET", "/size/10")
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == bytes(range(10)), r2
