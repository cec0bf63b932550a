"""HTTP/2 attacks, each against a running sluice while a well-behaved client on another
connection keeps being answered: sluice stays up, its memory bounded, and the attacking
connection ends with a GOAWAY within a bounded time."""

import socket
import ssl
import threading
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from harness import free_port
from test_h2 import _frames, _start
from tlsutil import curl_https

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "a.test")]


def _raw(port, rcvbuf=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window stays small
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="a.test")
    s.sendall(PREFACE + SettingsFrame(0).serialize())
    return s


class Bystander(threading.Thread):
    """A well-behaved client (curl, over HTTP/2) asking all along, in processes of its own."""

    def __init__(self, port, ca):
        super().__init__(daemon=True)
        self.port, self.ca, self.ok, self.failed, self.stop = port, ca, 0, [], False

    def run(self):
        while not self.stop:
            r = curl_https(self.port, "a.test", "/", cacert=self.ca.crt,
                           extra=["--http2", "-w", "%{http_version} %{http_code}", "-o", "/dev/null"])
            if r.returncode == 0 and r.stdout == "2 200":
                self.ok += 1
            else:
                self.failed.append((r.returncode, r.stdout, r.stderr))
            time.sleep(0.05)

    def finish(self):
        self.stop = True
        self.join(20)
        assert not self.failed and self.ok >= 3, (self.ok, self.failed[:3])


def _attack(env, send, limits=None, within=10, rcvbuf=None, timeouts=None, max_rss_kb=64 * 1024):
    """Runs send(sock) against sluice beside a bystander; returns the GOAWAY that ended it."""
    s, port, ca, b = _start(env, limits=limits, timeouts=timeouts)
    rss0 = s.rss_kb()
    by = Bystander(port, ca)
    by.start()
    sock = _raw(port, rcvbuf)
    t0 = time.monotonic()
    # One thread per TLS socket: a peer that stops reading makes the writes time out, well
    # within the 5 s an ending session waits for its last frames to be read (h2_front.c).
    sock.settimeout(2)
    try:
        send(sock)
    except (socket.timeout, BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
        pass
    goaway = None
    try:
        sock.settimeout(max(within * env.slow - (time.monotonic() - t0), 0.5))
        for f in _frames(sock):
            if isinstance(f, GoAwayFrame):
                goaway = f
    except (socket.timeout, ConnectionResetError, ssl.SSLError, OSError):
        pass
    took = time.monotonic() - t0
    sock.close()
    time.sleep(0.5)  # the bystander asks once more after the attack
    by.finish()
    assert s.alive()
    if not env.sanitized:
        assert s.rss_kb() - rss0 < max_rss_kb, "RSS grew by %d KiB" % (s.rss_kb() - rss0)
    assert goaway is not None, "no GOAWAY after %.1fs" % took
    assert took < within * env.slow, took
    return goaway


def _headers(enc, sid, end_stream=True, fields=REQUEST):
    f = HeadersFrame(sid, enc.encode(fields))
    f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f.serialize()


def test_rapid_reset_ends_the_connection(env):
    def send(sock):
        enc = hpack.Encoder()
        for i in range(20000):
            sid = 1 + 2 * i
            sock.sendall(_headers(enc, sid) + RstStreamFrame(sid, error_code=8).serialize())
    g = _attack(env, send)
    assert g.error_code in (0xb, 0x1, 0x2), g.error_code


def test_continuation_flood_ends_the_connection(env):
    def send(sock):
        enc = hpack.Encoder()
        h = HeadersFrame(1, enc.encode(REQUEST))
        sock.sendall(h.serialize())
        for i in range(100000):
            sock.sendall(ContinuationFrame(1, enc.encode([("x-a%d" % (i % 50), "b" * 100)])).serialize())
    g = _attack(env, send)
    assert g.error_code in (0xb, 0x1, 0x9), g.error_code


def test_hpack_bomb_is_refused_and_the_connection_ends(env):
    def send(sock):
        enc = hpack.Encoder()
        enc.header_table_size = 4096
        big = ("x-bomb", "z" * 4000)
        sid = 1
        # The first block puts the value in the dynamic table; each later one names it with a byte or two.
        for i in range(3000):
            block = enc.encode(REQUEST + [big] * 200)
            f = HeadersFrame(sid, block)
            f.flags.add("END_HEADERS")
            f.flags.add("END_STREAM")
            sock.sendall(f.serialize())
            sid += 2
    g = _attack(env, send)
    assert g.error_code in (0xb, 0x1, 0x2), g.error_code


def test_ping_and_settings_floods_from_a_client_that_reads_nothing_end_the_connection(env):
    def send(sock):
        for i in range(200000):
            sock.sendall(PingFrame(0, opaque_data=b"12345678").serialize() + SettingsFrame(0).serialize())
    g = _attack(env, send, rcvbuf=4096)
    assert g.error_code == 0xb, g.error_code


def test_empty_data_frames_end_the_connection(env):
    def send(sock):
        enc = hpack.Encoder()
        sock.sendall(_headers(enc, 1, end_stream=False, fields=[
            (":method", "POST"), (":path", "/sha256"), (":scheme", "https"), (":authority", "a.test")]))
        for i in range(200000):
            sock.sendall(DataFrame(1, b"").serialize())
    g = _attack(env, send)
    assert g.error_code == 0xb, g.error_code


def test_a_window_update_of_zero_ends_the_connection(env):
    def send(sock):
        enc = hpack.Encoder()
        sock.sendall(_headers(enc, 1, fields=[(":method", "GET"), (":path", "/slow?delay=1"),
                                              (":scheme", "https"), (":authority", "a.test")]))
        sock.sendall(WindowUpdateFrame(1, window_increment=0).serialize())
    g = _attack(env, send)
    assert g.error_code == 0x1, g.error_code  # PROTOCOL_ERROR (libnghttp2 makes it the connection's)


def test_a_window_past_2_to_the_31_ends_the_connection(env):
    def send(sock):
        sock.sendall(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
        sock.sendall(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
    g = _attack(env, send)
    assert g.error_code == 0x3, g.error_code  # FLOW_CONTROL_ERROR


def test_streams_whose_window_stays_shut_hold_a_buffer_each_and_are_cut_when_idle(env):
    def send(sock):
        # A window of 0 for every stream, never opened: 100 large downloads that cannot move.
        sock.sendall(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}).serialize())
        enc = hpack.Encoder()
        for i in range(100):
            sock.sendall(_headers(enc, 1 + 2 * i, fields=[
                (":method", "GET"), (":path", "/size/10000000?i=%d" % i), (":scheme", "https"),
                (":authority", "a.test")]))
    g = _attack(env, send, timeouts={"idle": 2, "client_keepalive": 1}, max_rss_kb=16 * 1024)
    assert g.error_code == 0, g.error_code
