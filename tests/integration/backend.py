#!/usr/bin/env python3
"""A small, byte-exact HTTP/1.1 backend for the sluice integration tests.

Standalone:  python3 tests/integration/backend.py --port 9001 [--host 127.0.0.1]
                 [--name NAME] [--log FILE] [--idle-close SECONDS]
                 [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
With --tls-cert it speaks HTTPS (with --tls-client-ca it requires a client
certificate that CA signed; /headers then shows its subject as "client_cert").
Prints "ready" on stdout once it listens.  Python standard library only.

One thread per connection, blocking sockets: every byte on the wire is
written here by hand, so the tests know exactly what the proxy received and
sent.  The request parser is deliberately *lenient* (bare LF, obs-fold,
space before colon are accepted): if the proxy ever forwards a smuggled
request, this server sees it and logs it.

Every response carries X-Backend: NAME, X-Backend-Conn: <connection number>
and X-Backend-Req: <request number on that connection>.

Log (--log FILE): one line per request, flushed:  "<conn> <request line>".

Endpoints
  GET  /                      "hello from NAME\\n"
  GET|HEAD /size/N            N bytes of pattern() (see below), Content-Length;
                              ?chunked=1 sends it chunked (&chunk=BYTES, default 65536),
                              &trailer=1 adds trailers X-Sha256 and X-Trailer-Test,
                              &close=1 answers with Connection: close and closes after
  POST|PUT /echo              echoes the request body (chunked if the request was)
  POST /sha256                {"length": n, "sha256": hex, "chunked": bool}, streamed
  *    /headers               JSON: method, target, version, request_line,
                              headers ([name, value] pairs as received), peer, body_length
  *    /status/N              status N (no body for 1xx/204/304 and HEAD)
  *    /hang                  reads the request, never answers, waits for EOF
  *    /drop                  reads the request and closes without answering
  *    /slow?delay=S          answers after S seconds
  *    /drip?n=N&interval=S   Content-Length N, sends one byte every S seconds
  GET  /ws                    with Upgrade: websocket -> 101, then raw byte echo until EOF
  *    /close                 answers with Connection: close and closes
  *    /nolength?size=N       body (pattern, default 10000 bytes) delimited by close
  *    /truncated?size=N&send=M  announces Content-Length N, sends M bytes, closes
  *    /malformed             a garbage status line, then closes
  *    /reset?send=M&size=N   reads the request; M=0: resets the connection (RST) without
                              a byte; M>0: announces Content-Length N (default 100000),
                              sends M bytes, waits 0.2 s, resets; M=-1: sends half a
                              response head, then resets
  *    /early                 answers 200 "ok" at once, then reads the whole request body
                              and logs "<conn> BODY <length>"; keeps the connection
  Any path with ?fail_on=NAME[,NAME] behaves as above only on the backends named;
  the others answer it as /echo, or as &else=PATH says (so a test can tell which
  backend a retry reached).
  *    /expect-reject         417 without reading the body, then closes
  *    /answer?status=N&length=L&chunked=1&interim=100,103
                              first the interim 1xx heads listed (103 with two Link
                              headers), then status N (default 200) with Content-Length: L
                              (default 0), or Transfer-Encoding: chunked; a body of L
                              pattern bytes only where RFC 9110 allows one (not for HEAD,
                              1xx, 204, 304), so a proxy must know when the head says more
                              than the message carries
  GET  /stats                 {"name", "accepted", "open", "requests", "max_in_flight"};
                              "open" leaves out connections that asked for /stats
Requests with "Expect: 100-continue" get "HTTP/1.1 100 Continue" before the
body is read (except /expect-reject).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import resource
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------
# The deterministic body pattern: byte at offset i is i % 251.  Shared with the
# harness (imported from there), so tests can verify bodies independently.
PERIOD = 251
BLOCK = 1 << 20
_PAT = bytes(range(PERIOD)) * (BLOCK // PERIOD + 2)


def pattern(offset, n):
    """n (<= BLOCK) pattern bytes starting at absolute offset, as a memoryview."""
    assert n <= BLOCK
    s = offset % PERIOD
    return memoryview(_PAT)[s:s + n]


def pattern_bytes(n, offset=0):
    out = bytearray()
    while n > 0:
        k = min(n, BLOCK)
        out += pattern(offset, k)
        offset += k
        n -= k
    return bytes(out)


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    204: "No Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 404: "Not Found",
    417: "Expectation Failed", 426: "Upgrade Required",
    500: "Internal Server Error", 503: "Service Unavailable",
}

MAX_HEAD = 1 << 20
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ClientGone(Exception):
    pass


class Server:
    def __init__(self, name, log_path, idle_close):
        self.name = name
        self.idle_close = idle_close
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.stats_open = 0     # of the open ones, those that asked for /stats
        self.requests = 0
        self.in_flight = 0      # requests being served right now, and the most at once
        self.max_in_flight = 0
        self.log = open(log_path, "a", buffering=1) if log_path else None
        self.tls = None  # an ssl.SSLContext to wrap connections in

    def log_request(self, cid, line):
        if self.log:
            with self.lock:
                self.log.write("%d %s\n" % (cid, line))
                self.log.flush()


class Conn:
    def __init__(self, server, sock, peer, cid):
        self.srv = server
        self.sock = sock
        self.peer = peer
        self.cid = cid
        self.buf = bytearray()
        self.nreq = 0
        self.stats = False  # it asked for /stats
        self.serving = False  # a request of it counts in srv.in_flight

    def served(self):
        """The request is over as far as in_flight goes: said before its last bytes go,
        so that a proxy that sends the next request as soon as it has them never
        finds this one still counted."""
        if self.serving:
            self.serving = False
            with self.srv.lock:
                self.srv.in_flight -= 1

    # -- input -------------------------------------------------------------
    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self):
        """Bytes of the next request head (without the blank line) or None on EOF."""
        first = True
        while True:
            m = re.search(rb"\r?\n\r?\n", self.buf)
            if m:
                head = bytes(self.buf[:m.start()])
                del self.buf[:m.end()]
                return head
            if len(self.buf) > MAX_HEAD:
                raise ClientGone("head too large")
            if first and not self.buf and self.srv.idle_close:
                self.sock.settimeout(self.srv.idle_close)
            try:
                ok = self.fill()
            except socket.timeout:
                return None  # idle close: just close, like real servers do
            finally:
                self.sock.settimeout(None)
            if not ok:
                if self.buf.strip():
                    raise ClientGone("EOF inside a request head")
                return None
            # Skip empty lines before a request (RFC 9112 2.2).
            while self.buf[:2] == b"\r\n" or self.buf[:1] == b"\n":
                del self.buf[:2 if self.buf[:2] == b"\r\n" else 1]
            first = False

    def read_line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > MAX_HEAD:
                raise ClientGone("line too long")
            if not self.fill():
                raise ClientGone("EOF inside a chunked body")

    def read_some(self, limit):
        if not self.buf and not self.fill():
            raise ClientGone("EOF inside a body")
        n = min(limit, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def body_chunks(self, req):
        """Yields the request body in pieces; fills req['trailers']."""
        if req["chunked"]:
            while True:
                line = self.read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self.read_line()
                        if not t:
                            break
                        n, _, v = t.partition(b":")
                        req["trailers"].append([n.decode("latin-1").strip(),
                                                v.decode("latin-1").strip()])
                    return
                left = size
                while left:
                    d = self.read_some(left)
                    left -= len(d)
                    yield d
                if self.read_line() != b"":
                    raise ClientGone("bad chunk terminator")
        else:
            left = req["length"]
            while left:
                d = self.read_some(left)
                left -= len(d)
                yield d

    # -- output ------------------------------------------------------------
    def head(self, status, headers=(), keep=True, reason=None):
        lines = ["HTTP/1.1 %d %s" % (status, reason or REASONS.get(status, "Status"))]
        lines.append("X-Backend: %s" % self.srv.name)
        lines.append("X-Backend-Conn: %d" % self.cid)
        lines.append("X-Backend-Req: %d" % self.nreq)
        for n, v in headers:
            lines.append("%s: %s" % (n, v))
        if not keep:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, req, status, body=b"", headers=(), keep=True, ctype="text/plain"):
        hdrs = list(headers)
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            hdrs.append(("Content-Type", ctype))
            hdrs.append(("Content-Length", str(len(body))))
        out = self.head(status, hdrs, keep)
        if not no_body and req["method"] != "HEAD":
            out += body
        self.served()
        self.sock.sendall(out)
        return keep


def parse_head(head):
    lines = re.split(rb"\r?\n", head)
    request_line = lines[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise ClientGone("bad request line %r" % request_line)
    method, target, version = parts
    headers = []
    for raw in lines[1:]:
        s = raw.decode("latin-1")
        if s[:1] in (" ", "\t") and headers:  # obs-fold, leniently joined
            headers[-1][1] += " " + s.strip()
            continue
        n, sep, v = s.partition(":")
        if not sep:
            continue
        headers.append([n.rstrip(), v.strip()])
    req = {"method": method, "target": target, "version": version,
           "request_line": request_line, "headers": headers, "trailers": []}

    def values(name):
        return [v for n, v in headers if n.lower() == name]

    req["values"] = values
    te = ",".join(values("transfer-encoding")).lower()
    codings = [c.strip() for c in te.split(",") if c.strip()]
    req["chunked"] = bool(codings) and codings[-1] == "chunked"
    cl = values("content-length")
    req["length"] = 0 if req["chunked"] or not cl else int(cl[0].split(",")[0].strip())
    conn_tokens = {t.strip().lower() for t in ",".join(values("connection")).split(",")}
    if version == "HTTP/1.0":
        req["keep"] = "keep-alive" in conn_tokens
    else:
        req["keep"] = "close" not in conn_tokens
    req["conn_tokens"] = conn_tokens
    return req


def qparam(q, name, default=None):
    v = q.get(name)
    return v[0] if v else default


def client_subject(sock):
    """The CN of a TLS client's certificate, or None."""
    cert = sock.getpeercert() if hasattr(sock, "getpeercert") else None
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def handle_conn(srv, sock, peer, cid):
    try:
        if srv.tls:
            sock.settimeout(10)
            sock = srv.tls.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
    except (OSError, ValueError):
        with srv.lock:
            srv.open -= 1
        sock.close()
        return
    c = Conn(srv, sock, peer, cid)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            head = c.read_head()
            if head is None:
                return
            c.nreq += 1
            req = parse_head(head)
            srv.log_request(cid, req["request_line"])
            with srv.lock:
                srv.requests += 1
                srv.in_flight += 1
                srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            c.serving = True
            try:
                keep = serve(c, req)
            finally:
                c.served()
            if not keep:
                return
    except (ClientGone, OSError, ValueError):
        return
    finally:
        with srv.lock:
            srv.open -= 1
            srv.stats_open -= c.stats
        try:
            sock.close()
        except OSError:
            pass


def serve(c, req):
    """Handles one request; returns True to keep the connection."""
    srv = c.srv
    url = urlsplit(req["target"])
    path = url.path
    q = parse_qs(url.query)
    method = req["method"]
    keep = req["keep"]
    has_body = req["chunked"] or req["length"] > 0
    expect = ",".join(req["values"]("expect")).lower()
    if "fail_on" in q and srv.name not in q["fail_on"][0].split(","):
        path = qparam(q, "else", "/echo")

    if path == "/expect-reject":
        c.respond(req, 417, b"rejected\n", keep=False)
        return False
    if "100-continue" in expect and has_body:
        c.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    body_iter = c.body_chunks(req)

    def drain():
        n = 0
        for d in body_iter:
            n += len(d)
        return n

    if path == "/":
        drain()
        return c.respond(req, 200, ("hello from %s\n" % srv.name).encode(), keep=keep)

    if path.startswith("/size/"):
        drain()
        n = int(path[len("/size/"):])
        chunked = qparam(q, "chunked") == "1"
        trailer = qparam(q, "trailer") == "1"
        if qparam(q, "close") == "1":
            keep = False
        hdrs = [("Content-Type", "application/octet-stream")]
        if chunked:
            hdrs.append(("Transfer-Encoding", "chunked"))
            if trailer:
                hdrs.append(("Trailer", "X-Sha256, X-Trailer-Test"))
        else:
            hdrs.append(("Content-Length", str(n)))
        c.sock.sendall(c.head(200, hdrs, keep))
        if method == "HEAD":
            return keep
        off = 0
        if chunked:
            step = int(qparam(q, "chunk", "65536"))
            h = hashlib.sha256() if trailer else None
            while off < n:
                k = min(step, n - off, BLOCK)
                data = pattern(off, k)
                if h:
                    h.update(data)
                c.sock.sendall(b"%x\r\n" % k + data + b"\r\n")
                off += k
            tail = b"0\r\n"
            if trailer:
                tail += b"X-Sha256: " + h.hexdigest().encode() + b"\r\nX-Trailer-Test: yes\r\n"
            c.sock.sendall(tail + b"\r\n")
        else:
            while off < n:
                k = min(BLOCK, n - off)
                c.sock.sendall(pattern(off, k))
                off += k
        return keep

    if path == "/echo":
        pieces = list(body_iter)
        if req["chunked"]:
            hdrs = [("Transfer-Encoding", "chunked"), ("Content-Type", "application/octet-stream")]
            out = [c.head(200, hdrs, keep)]
            for p in pieces:
                out.append(b"%x\r\n" % len(p) + p + b"\r\n")
            out.append(b"0\r\n")
            for n, v in req["trailers"]:
                out.append(("%s: %s\r\n" % (n, v)).encode("latin-1"))
            out.append(b"\r\n")
            c.sock.sendall(b"".join(out))
            return keep
        return c.respond(req, 200, b"".join(pieces), keep=keep, ctype="application/octet-stream")

    if path == "/sha256":
        h = hashlib.sha256()
        n = 0
        for d in body_iter:
            h.update(d)
            n += len(d)
        body = json.dumps({"length": n, "sha256": h.hexdigest(), "chunked": req["chunked"]})
        return c.respond(req, 200, body.encode(), keep=keep, ctype="application/json")

    if path == "/headers":
        n = drain()
        body = json.dumps({
            "method": method, "target": req["target"], "version": req["version"],
            "request_line": req["request_line"], "headers": req["headers"],
            "trailers": req["trailers"], "peer": "%s:%d" % (c.peer[0], c.peer[1]),
            "body_length": n, "client_cert": client_subject(c.sock),
            "tls_resumed": getattr(c.sock, "session_reused", None)})
        return c.respond(req, 200, body.encode(), keep=keep, ctype="application/json")

    if path.startswith("/status/"):
        drain()
        st = int(path[len("/status/"):])
        return c.respond(req, st, ("status %d\n" % st).encode(), keep=keep)

    if path == "/hang":
        drain()
        while c.sock.recv(65536):
            pass
        return False

    if path == "/drop":
        drain()
        return False  # reads the request, closes without a byte

    if path == "/slow":
        drain()
        time.sleep(float(qparam(q, "delay", "1")))
        return c.respond(req, 200, b"slow\n", keep=keep)

    if path == "/drip":
        drain()
        n = int(qparam(q, "n", "5"))
        interval = float(qparam(q, "interval", "0.2"))
        c.sock.sendall(c.head(200, [("Content-Length", str(n))], keep))
        for i in range(n):
            time.sleep(interval)
            c.sock.sendall(pattern(i, 1))
        return keep

    if path == "/ws":
        drain()
        up = ",".join(req["values"]("upgrade")).lower()
        if "websocket" not in up or "upgrade" not in req["conn_tokens"]:
            return c.respond(req, 426, b"upgrade required\n", keep=keep,
                             headers=[("Upgrade", "websocket")])
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        key = req["values"]("sec-websocket-key")
        if key:
            acc = base64.b64encode(hashlib.sha1(key[0].encode() + WS_GUID).digest())
            hdrs.append(("Sec-WebSocket-Accept", acc.decode()))
        c.sock.sendall(c.head(101, hdrs, True))
        if c.buf:
            c.sock.sendall(bytes(c.buf))
            c.buf.clear()
        while True:
            d = c.sock.recv(262144)
            if not d:
                break
            c.sock.sendall(d)
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return False

    if path == "/close":
        drain()
        c.respond(req, 200, b"closing\n", keep=False)
        return False

    if path == "/nolength":
        drain()
        n = int(qparam(q, "size", "10000"))
        c.sock.sendall(c.head(200, [("Content-Type", "application/octet-stream")], False))
        off = 0
        while off < n:
            k = min(BLOCK, n - off)
            c.sock.sendall(pattern(off, k))
            off += k
        return False

    if path == "/truncated":
        drain()
        n = int(qparam(q, "size", "100000"))
        m = int(qparam(q, "send", "5000"))
        c.sock.sendall(c.head(200, [("Content-Length", str(n))], keep) + bytes(pattern(0, m)))
        return False

    if path == "/reset":
        drain()
        m = int(qparam(q, "send", "0"))
        if m < 0:
            c.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
            time.sleep(0.2)
        elif m > 0:
            n = int(qparam(q, "size", "100000"))
            c.sock.sendall(c.head(200, [("Content-Length", str(n))], keep) + bytes(pattern(0, m)))
            time.sleep(0.2)  # so that the proxy has passed these bytes on before the RST
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    if path == "/early":
        c.sock.sendall(c.head(200, [("Content-Length", "2")], keep) + b"ok")
        srv.log_request(c.cid, "BODY %d" % drain())
        return keep

    if path == "/answer":
        drain()
        for code in filter(None, qparam(q, "interim", "").split(",")):
            code = int(code)
            hints = [("Link", "</style.css>; rel=preload; as=style"),
                     ("Link", "</app.js>; rel=preload; as=script")] if code == 103 else []
            c.sock.sendall(c.head(code, hints, True, reason="Early Hints" if code == 103 else None))
        st = int(qparam(q, "status", "200"))
        n = int(qparam(q, "length", "0"))
        chunked = qparam(q, "chunked") == "1"
        hdrs = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(n))]
        out = c.head(st, hdrs, keep)
        if method != "HEAD" and st >= 200 and st not in (204, 304):
            data = bytes(pattern(0, n))
            out += (b"%x\r\n%s\r\n0\r\n\r\n" % (n, data) if n else b"0\r\n\r\n") if chunked else data
        c.sock.sendall(out)
        return keep

    if path == "/malformed":
        drain()
        c.sock.sendall(b"HTTP/1.1 this is not a status line\r\n\x00\x01garbage\r\n\r\n")
        return False

    if path == "/stats":
        drain()
        with srv.lock:
            if not c.stats:
                c.stats = True
                srv.stats_open += 1
            # "open" counts the others: not this one, nor a /stats client still closing
            st = {"name": srv.name, "accepted": srv.accepted,
                  "open": srv.open - srv.stats_open, "requests": srv.requests,
                  "max_in_flight": srv.max_in_flight}
        return c.respond(req, 200, json.dumps(st).encode(), keep=False, ctype="application/json")

    drain()
    return c.respond(req, 404, b"not found\n", keep=keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default=None)
    ap.add_argument("--log", default=None)
    ap.add_argument("--idle-close", type=float, default=None,
                    help="close a keep-alive connection idle this many seconds")
    ap.add_argument("--tls-cert", default=None)
    ap.add_argument("--tls-key", default=None)
    ap.add_argument("--tls-client-ca", default=None)
    a = ap.parse_args()
    name = a.name or "backend-%d" % a.port

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    threading.stack_size(512 * 1024)

    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(4096)
    srv = Server(name, a.log, a.idle_close)
    if a.tls_cert:
        srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.tls.load_cert_chain(a.tls_cert, a.tls_key)
        if a.tls_client_ca:
            srv.tls.load_verify_locations(a.tls_client_ca)
            srv.tls.verify_mode = ssl.CERT_REQUIRED
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    cid = 0
    while True:
        try:
            s, peer = ls.accept()
        except InterruptedError:
            continue
        except OSError:
            time.sleep(0.01)  # EMFILE and friends: back off, keep serving
            continue
        cid += 1
        with srv.lock:
            srv.accepted += 1
            srv.open += 1
        t = threading.Thread(target=handle_conn, args=(srv, s, peer, cid), daemon=True)
        t.start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
