"""Slow clients: a client dribbling its request head is cut off after
timeouts.client_header while other clients are served normally."""

import select
import socket
import time


def test_slowloris_cut_off_after_client_header_timeout(env):
    b = env.backend()
    s = env.sluice([b], timeouts={"client_header": 1})
    slow = s.connect(timeout=10)
    t0 = time.monotonic()
    slow.send("GET / HTTP/1.1\r\nHost: x\r\n")
    cut_at = None
    reply = b""
    served = 0
    i = 0
    deadline = t0 + 8 * env.slow
    dribble = b"X-Slow: " + b"a" * 1000
    while time.monotonic() < deadline:
        # One header byte every 0.2 s (deliberately slow client).
        try:
            slow.sock.sendall(dribble[i:i + 1])
        except OSError:
            cut_at = time.monotonic()
            break
        i += 1
        # Meanwhile another client is served normally.
        r = s.get("/size/1000", timeout=5)
        assert r.status == 200, r
        served += 1
        r_, _, _ = select.select([slow.sock], [], [], 0.2)
        if r_:
            try:
                d = slow.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                d = b""
                cut_at = time.monotonic()
                break
            reply += d
            if not d:
                cut_at = time.monotonic()
                break
    slow.close()
    assert cut_at is not None, "slowloris client still connected after %.1fs" % (time.monotonic() - t0)
    dt = cut_at - t0
    assert dt >= 0.8, "cut off after %.2fs, before client_header (1 s)" % dt
    assert dt < 4 * env.slow, "cut off only after %.2fs (client_header is 1 s)" % dt
    if reply:
        assert reply.startswith(b"HTTP/1.1 408") or reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert served >= 3, "other clients served only %d times meanwhile" % served
    # The backend never saw the incomplete request.
    assert all(l == "GET /size/1000 HTTP/1.1" for l in b.request_lines()), b.request_lines()


def test_slow_request_line_cut_off(env):
    """Only part of a request line, then silence."""
    b = env.backend()
    s = env.sluice([b], timeouts={"client_header": 1})
    with s.connect() as c:
        t0 = time.monotonic()
        c.send("GET /partial")
        try:
            d = c.sock.recv(65536)  # socket timeout 15 s
            while d:
                d = c.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            pass
        except socket.timeout:
            raise AssertionError("client with a partial request line never cut off")
        dt = time.monotonic() - t0
    assert 0.8 <= dt < 4 * env.slow, "cut off after %.2fs" % dt


def test_idle_connection_without_request_is_closed(env):
    """A client that connects and sends nothing is closed (after client_header
    or client_keepalive, whichever sluice applies to a fresh connection)."""
    b = env.backend()
    s = env.sluice([b], timeouts={"client_header": 1, "client_keepalive": 1})
    with s.connect() as c:
        t0 = time.monotonic()
        closed, data = c.read_until_closed(10 * env.slow)
        assert closed, "silent client never closed"
        assert time.monotonic() - t0 >= 0.8
        # Closing silently is fine; a 408 before closing too.
        assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert s.get("/").status == 200


def test_slow_body_upload_within_idle_timeout_succeeds(env):
    """A client sending its body slowly but steadily (well within idle) is
    served: client_header covers the head only."""
    b = env.backend()
    s = env.sluice([b], timeouts={"client_header": 1, "idle": 5})
    with s.connect() as c:
        c.request("POST", "/sha256", headers=[("Content-Length", "10")])
        for i in range(10):
            time.sleep(0.2)  # deliberately slow body: 2 s total > client_header
            c.send(b"k")
        r = c.read_response()
    assert r.status == 200, r
    assert r.json()["length"] == 10
