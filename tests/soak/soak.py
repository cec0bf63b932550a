#!/usr/bin/env python3
"""The soak: mixed traffic with faults through one sluice (the ASan build, by
`make soak`), for --seconds (default 600). Python standard library only.

    python3 tests/soak/soak.py --sluice build-asan/sluice [--seconds 600]
                               [--kill-every 4] [--reload-every 2] [--seed N]

Traffic, each kind from its own threads, every request with a unique id in
its target: keep-alive GETs of bodies up to 1 MB, a new connection per
request, pipelined bursts, 10 MB uploads (Content-Length and chunked) and
10 MB downloads checked by SHA-256, slow readers, clients that abort
mid-response or mid-upload, and garbage bytes. Faults: a backend is killed
(SIGKILL) every --kill-every seconds and restarted a second later, on the
same port, one at a time; the config is reloaded every --reload-every
seconds, alternating between two.

It passes when sluice never dies or prints a sanitizer report (also at its
exit), every completed response is byte-exact, every failed request was in
flight on a backend killed during it (by sluice's access log: the server it
went to, against the kill log), and at the end its open fds return to the
baseline and its RSS to within 10% of what it was after the warm-up.
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.dont_write_bytecode = True

import harness  # noqa: E402
from harness import ConnectionClosed, RawClient, pattern_bytes, pattern_sha256, wait_until  # noqa: E402

MB = 1 << 20
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def log(msg):
    print("soak: " + msg, flush=True)


class Ledger:
    """Every request: what it was, when, and how it ended."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_id = 0
        self.done = {}        # id -> (kind, start, end, outcome, detail)
        self.bytes_up = 0
        self.bytes_down = 0
        self.counts = {}      # fault or traffic kind -> count

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def record(self, rid, kind, start, outcome, detail="", up=0, down=0):
        with self.lock:
            self.done[rid] = (kind, start, time.monotonic(), outcome, detail)
            self.bytes_up += up
            self.bytes_down += down

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + n


class Corrupt(Exception):
    """A completed response whose bytes are wrong: always a failure of the soak."""


def get_checked(c, target, n, method="GET"):
    """GET target (n pattern bytes) on c; returns bytes read; raises Corrupt on wrong bytes."""
    c.request(method, target)
    h = hashlib.sha256()
    r = c.read_response(method, sink=h.update)
    if r.status != 200:
        return r.status, 0
    if r.body_length != n or h.hexdigest() != pattern_sha256(n):
        raise Corrupt("%s: %d bytes, sha %s" % (target, r.body_length, h.hexdigest()[:12]))
    return 200, n


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.env = harness.Env(args.sluice, workdir=args.workdir)
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.kills = []   # (time, backend address) of each SIGKILL
        self.kills_lock = threading.Lock()
        self.problems = []

    # -- setup -------------------------------------------------------------
    def config(self, variant):
        port = self.port
        pool = {
            "servers": [b.addr for b in self.backends],
            "keepalive": 32, "keepalive_timeout": 1, "connect_backoff": 1, "max_backoff": 2,
            "retry": {"on": ["error", "timeout"], "tries": 3},
        }
        if variant:
            pool["balance"] = "least_conn"
            pool["servers"] = [{"address": b.addr, "weight": i + 1} for i, b in enumerate(self.backends)]
        return self.env.config(
            [], pool=pool, listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web"}],
            timeouts={"client_header": 3, "client_keepalive": 5, "backend_connect": 2,
                      "backend_response": 10, "idle": 10, "shutdown": 5},
            limits={"max_connections": 20000}, access_log=self.access_log, log_level="warn")

    def write_config(self, variant):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(harness.lua_config(self.config(variant)))
        os.replace(tmp, self.config_path)

    def start(self):
        self.backends = [self.env.backend("b%d" % i) for i in range(3)]
        self.port = harness.free_port()
        self.access_log = self.env.path("access.log")
        cfg = self.config(0)
        self.sluice = self.env.sluice(config=cfg)
        self.config_path = self.sluice.config_path
        self.baseline_fds = self.sluice.fd_count()

    # -- faults ------------------------------------------------------------
    def killer(self):
        while not self.stop.wait(self.args.kill_every):
            i = self.rng.randrange(len(self.backends))
            b = self.backends[i]
            with self.kills_lock:
                self.kills.append((time.monotonic(), b.addr))
            os.kill(b.proc.pid, signal.SIGKILL)
            b.proc.wait()
            self.ledger.count("backend kills")
            time.sleep(1)
            self.backends[i] = self.env.backend(b.name, port=b.port)

    def reloader(self):
        variant = 0
        while not self.stop.wait(self.args.reload_every):
            variant ^= 1
            self.write_config(variant)
            os.kill(self.sluice.pid, signal.SIGHUP)
            self.ledger.count("reloads")

    # -- traffic -----------------------------------------------------------
    def run_kind(self, kind, fn):
        while not self.stop.is_set():
            try:
                fn()
            except Corrupt as e:
                self.problems.append("%s: corrupt response: %s" % (kind, e))
            except Exception as e:  # noqa: BLE001 - a client-side bug would show in the ledger
                self.problems.append("%s: client error %r" % (kind, e))
                time.sleep(0.1)

    def one(self, kind, c, target, n, method="GET"):
        """One checked GET on an open client; records it. False if the connection is gone."""
        rid = self.ledger.new_id()
        sep = "&" if "?" in target else "?"
        t0 = time.monotonic()
        try:
            status, got = get_checked(c, "%s%sid=%d" % (target, sep, rid), n, method)
        except (ConnectionClosed, OSError) as e:
            self.ledger.record(rid, kind, t0, "cut", repr(e))
            return False
        self.ledger.record(rid, kind, t0, "ok" if status == 200 else status, down=got)
        return status == 200

    def keepalive(self):
        with RawClient(self.port, timeout=30) as c:
            for _ in range(50):
                if self.stop.is_set():
                    return
                n = self.rng.choice((0, 1, 100, 4096, 65536, 300000, MB))
                if not self.one("keep-alive", c, "/size/%d" % n, n):
                    return

    def new_connection(self):
        with RawClient(self.port, timeout=30) as c:
            n = self.rng.choice((10, 1000, 20000))
            self.one("new connection", c, "/size/%d" % n, n)

    def pipelined(self):
        with RawClient(self.port, timeout=30) as c:
            sizes = [self.rng.choice((0, 7, 1000, 70000)) for _ in range(5)]
            ids = [self.ledger.new_id() for _ in sizes]
            t0 = time.monotonic()
            c.send("".join("GET /size/%d?id=%d HTTP/1.1\r\nHost: p\r\n\r\n" % (n, i)
                           for n, i in zip(sizes, ids)))
            for n, rid in zip(sizes, ids):
                h = hashlib.sha256()
                try:
                    r = c.read_response(sink=h.update)
                except (ConnectionClosed, OSError) as e:
                    self.ledger.record(rid, "pipelined", t0, "cut", repr(e))
                    continue
                if r.status == 200 and (r.body_length != n or h.hexdigest() != pattern_sha256(n)):
                    raise Corrupt("pipelined /size/%d id=%d out of order or wrong" % (n, rid))
                self.ledger.record(rid, "pipelined", t0, "ok" if r.status == 200 else r.status, down=n)

    def upload(self):
        n = 10 * MB
        body = self.rng.randbytes(n)
        want = hashlib.sha256(body).hexdigest()
        chunked = self.rng.random() < 0.5
        rid = self.ledger.new_id()
        t0 = time.monotonic()
        try:
            with RawClient(self.port, timeout=60) as c:
                if chunked:
                    c.send("POST /sha256?id=%d HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n" % rid)
                    for off in range(0, n, 256 * 1024):
                        piece = body[off:off + 256 * 1024]
                        c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    c.send(b"0\r\n\r\n")
                else:
                    c.request("POST", "/sha256?id=%d" % rid, body=body)
                r = c.read_response()
        except (ConnectionClosed, OSError) as e:
            self.ledger.record(rid, "10 MB upload", t0, "cut", repr(e))
            return
        if r.status == 200:
            got = json.loads(r.body)
            if got["length"] != n or got["sha256"] != want or got["chunked"] != chunked:
                raise Corrupt("upload id=%d: %r" % (rid, got))
        self.ledger.record(rid, "10 MB upload", t0, "ok" if r.status == 200 else r.status,
                           up=n if r.status == 200 else 0)

    def download(self):
        with RawClient(self.port, timeout=60) as c:
            self.one("10 MB download", c, "/size/%d%s" % (10 * MB, self.rng.choice(("", "?chunked=1"))),
                     10 * MB)

    def slow_reader(self):
        n = 2 * MB
        rid = self.ledger.new_id()
        t0 = time.monotonic()
        try:
            with RawClient(self.port, timeout=60, rcvbuf=16384) as c:
                c.request("GET", "/size/%d?id=%d" % (n, rid))
                head = c.read_head()
                h = hashlib.sha256(bytes(c.buf))
                got = len(c.buf)
                c.buf.clear()
                while head.status == 200 and got < n:
                    d = c.sock.recv(16384)
                    if not d:
                        raise ConnectionClosed("after %d bytes" % got)
                    h.update(d)
                    got += len(d)
                    time.sleep(0.005)
        except (ConnectionClosed, OSError) as e:
            self.ledger.record(rid, "slow reader", t0, "cut", repr(e))
            return
        if head.status == 200 and h.hexdigest() != pattern_sha256(n):
            raise Corrupt("slow reader id=%d" % rid)
        self.ledger.record(rid, "slow reader", t0, "ok" if head.status == 200 else head.status, down=got)

    def aborter(self):
        c = RawClient(self.port, timeout=30)
        try:
            if self.rng.random() < 0.5:
                c.request("GET", "/size/%d?abort=1" % (10 * MB))
                c.read_head()
                c.sock.recv(self.rng.choice((1, 1000, 100000)))
            else:
                c.send("POST /sha256?abort=1 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (10 * MB))
                c.send(os.urandom(self.rng.choice((1, 1000, MB))))
        except (ConnectionClosed, OSError):
            pass
        c.abort()
        self.ledger.count("client aborts")
        time.sleep(0.05)

    GARBAGE = [
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
    ]

    def garbage(self):
        with RawClient(self.port, timeout=10) as c:
            data = self.rng.choice(self.GARBAGE) if self.rng.random() < 0.5 else self.rng.randbytes(
                self.rng.randrange(1, 3000))
            try:
                c.send(data)
                c.sock.shutdown(socket.SHUT_WR)
                c.read_until_closed(8)
            except OSError:
                pass
        self.ledger.count("garbage inputs")
        time.sleep(0.05)

    # -- the run -----------------------------------------------------------
    def run(self):
        self.start()
        kinds = [("keep-alive", self.keepalive)] * 3 + [("new connection", self.new_connection)] * 2 + [
            ("pipelined", self.pipelined), ("10 MB upload", self.upload), ("10 MB download", self.download),
            ("slow reader", self.slow_reader), ("client abort", self.aborter), ("garbage", self.garbage)]
        threads = [threading.Thread(target=self.run_kind, args=k, daemon=True) for k in kinds]
        threads += [threading.Thread(target=self.killer, daemon=True),
                    threading.Thread(target=self.reloader, daemon=True)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        warm_at = t_start + min(60, self.args.seconds / 4)
        self.warm_rss = None
        next_report = t_start + 60
        while time.monotonic() - t_start < self.args.seconds:
            time.sleep(1)
            if not self.sluice.alive():
                self.problems.append("sluice died (status %s)" % self.sluice.proc.poll())
                break
            if self.warm_rss is None and time.monotonic() >= warm_at:
                self.warm_rss = self.sluice.rss_kb()
            if time.monotonic() >= next_report:
                next_report += 60
                log("%.0f s: %d requests, RSS %d kB" % (time.monotonic() - t_start,
                                                         len(self.ledger.done), self.sluice.rss_kb()))
        self.stop.set()
        for t in threads:
            t.join(90)
        self.elapsed = time.monotonic() - t_start
        self.finish()

    def finish(self):
        s = self.sluice
        if s.alive():
            # Idle backend connections expire after 1 s, clients after 5 s.
            try:
                wait_until(lambda: s.fd_count() <= self.baseline_fds, 30, what="fds back to baseline")
            except AssertionError:
                self.problems.append("fds did not return to the baseline %d (now %d)"
                                     % (self.baseline_fds, s.fd_count()))
            self.end_fds = s.fd_count()
            time.sleep(1)
            self.end_rss = s.rss_kb()
            if self.warm_rss and self.end_rss > self.warm_rss * 1.10:
                self.problems.append("RSS %d kB at the end, %d kB after the warm-up"
                                     % (self.end_rss, self.warm_rss))
            s.signal(signal.SIGTERM)
            try:
                rc = s.wait_exit(30)
                if rc != 0:
                    self.problems.append("sluice exited with status %s" % rc)
            except AssertionError as e:
                self.problems.append(str(e))
        err = s.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in err:
                self.problems.append("sanitizer report in sluice's stderr: %s" % m)
        self.judge_failures()
        self.env.close()

    def judge_failures(self):
        """Every failed request must have been in flight on a backend killed during it."""
        server_of = {}
        id_re = re.compile(r"[?&]id=(\d+)")
        try:
            with open(self.access_log, errors="replace") as f:
                for line in f:
                    parts = line.split()
                    m = id_re.search(parts[3]) if len(parts) >= 8 else None
                    if m:
                        server_of[int(m.group(1))] = (parts[6], parts[4])
        except FileNotFoundError:
            self.problems.append("no access log")
        self.failures = {}
        unexplained = []
        for rid, (kind, start, end, outcome, detail) in self.ledger.done.items():
            if outcome == "ok":
                continue
            server, status = server_of.get(rid, ("-", "?"))
            killed = [t for t, addr in self.kills if addr == server and start - 1.0 <= t <= end + 0.1]
            why = "%s %s" % (kind, outcome)
            if killed:
                self.failures[why] = self.failures.get(why, 0) + 1
            else:
                unexplained.append("id=%d %s: %s (%s; server %s, logged %s)"
                                   % (rid, kind, outcome, detail, server, status))
        if unexplained:
            self.problems.append("%d failed requests not explained by a backend kill, e.g.:\n  %s"
                                 % (len(unexplained), "\n  ".join(unexplained[:10])))

    def report(self):
        ok = sum(1 for v in self.ledger.done.values() if v[3] == "ok")
        c = self.ledger.counts
        log("%.0f s, %d requests (%d completed and byte-exact), %.2f GB up, %.2f GB down"
            % (self.elapsed, len(self.ledger.done), ok, self.ledger.bytes_up / 1e9,
               self.ledger.bytes_down / 1e9))
        log("faults: %d backend kills, %d reloads, %d client aborts, %d garbage inputs"
            % (c.get("backend kills", 0), c.get("reloads", 0), c.get("client aborts", 0),
               c.get("garbage inputs", 0)))
        nfail = sum(getattr(self, "failures", {}).values())
        log("failed requests: %d, each in flight on a backend killed during it%s"
            % (nfail, "".join("\n      %d %s" % (n, w) for w, n in sorted(self.failures.items()))))
        log("fds: baseline %d, end %s; RSS: after warm-up %s kB, end %s kB"
            % (self.baseline_fds, getattr(self, "end_fds", "?"), self.warm_rss,
               getattr(self, "end_rss", "?")))
        for p in self.problems:
            log("PROBLEM: " + p)
        log("PASS" if not self.problems else "FAIL")
        return not self.problems


def main():
    ap = argparse.ArgumentParser(description="sluice soak test")
    ap.add_argument("--sluice", default="build-asan/sluice")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--kill-every", type=float, default=4)
    ap.add_argument("--reload-every", type=float, default=2)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    log("seed %d, %.0f s, sluice %s" % (args.seed, args.seconds, args.sluice))
    soak = Soak(args)
    try:
        soak.run()
    finally:
        if not soak.stop.is_set():
            soak.stop.set()
            soak.env.close()
    sys.exit(0 if soak.report() else 1)


if __name__ == "__main__":
    main()
