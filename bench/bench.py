#!/usr/bin/env python3
"""Side-by-side benchmark: sluice vs HAProxy vs nginx (and wrk straight to the
backend), all in front of one shared nginx backend, on loopback only.

python3 stdlib only.  See bench/README.md for the method and the caveats.

    python3 bench/bench.py [--sluice build/sluice] [--duration 5] [--rounds 3]
                           [--only ka-100B,idle] [--proxies sluice,haproxy]
                           [--idle-conns 2000] [--json FILE] [--skip-sluice]
"""

import argparse
import ctypes
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"            # loopback only, never any other address
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILES = {                     # name -> size of the fixed files the backend serves
    "100.bin": 100,
    "16k.bin": 16 * 1024,
    "1m.bin": 1024 * 1024,
}

WORKLOADS = [
    # name, path, wrk connections, Connection: close?, description
    {"name": "ka-100B", "path": "/100.bin", "conns": 50, "close": False,
     "desc": "100 B body, 50 keep-alive clients"},
    {"name": "ka-100B-500", "path": "/100.bin", "conns": 500, "close": False,
     "desc": "100 B body, 500 keep-alive clients"},
    {"name": "ka-16KiB", "path": "/16k.bin", "conns": 32, "close": False,
     "desc": "16 KiB body, 32 keep-alive clients"},
    {"name": "ka-1MiB", "path": "/1m.bin", "conns": 10, "close": False,
     "desc": "1 MiB body, 10 keep-alive clients", "mb": 1.0},
    {"name": "close-100B", "path": "/100.bin", "conns": 50, "close": True,
     "desc": "100 B body, a new connection per request (Connection: close), 50 clients"},
    {"name": "latency", "path": "/100.bin", "conns": 1, "close": False,
     "desc": "100 B body, 1 keep-alive client: added latency"},
    # HTTPS to the proxy (the same certificate for all; plain HTTP to the backend)
    {"name": "tls-ka-100B", "path": "/100.bin", "conns": 50, "close": False, "tls": "ecdsa",
     "desc": "HTTPS (ECDSA P-256), 100 B body, 50 keep-alive clients"},
    {"name": "tls-hs-ecdsa", "path": "/100.bin", "conns": 4, "close": True, "tls": "ecdsa",
     "client": "s_time",
     "desc": "HTTPS, a full handshake per request (ECDSA P-256), 4 openssl s_time -new"},
    {"name": "tls-hs-rsa", "path": "/100.bin", "conns": 4, "close": True, "tls": "rsa",
     "client": "s_time",
     "desc": "HTTPS, a full handshake per request (RSA 2048), 4 openssl s_time -new"},
    {"name": "tls-resume", "path": "/100.bin", "conns": 50, "close": True, "tls": "ecdsa",
     "desc": "HTTPS, a resumed handshake per request (TLS 1.3 ticket), 50 clients"},
]
IDLE = "idle"                 # pseudo-workload: memory per idle connection
TLS_IDLE = "tls-idle"         # the same over TLS (ECDSA P-256)
# sluice-hook: sluice with a trivial Lua hook (hook = function(r) end), to price a hook call;
# sluice-busy and haproxy-busy: with their opt-in busy polling (limits.busy_poll = 0.0001,
# busy-polling), for the one-client latency only, where waking a sleeping CPU dominates
# sluice-2, haproxy-2, nginx-2: two workers (threads, processes) given both CPUs, which wrk
# (-t2) and the backend share with them: what a second core buys, and what it costs per request
# sluice-base: another sluice binary (--baseline), run with sluice's config in the same session,
# so that a change is priced against what it changes, under the same noise
ALL_PROXIES = ["direct", "sluice", "sluice-base", "sluice-hook", "sluice-busy", "haproxy",
               "haproxy-busy", "nginx", "sluice-2", "haproxy-2", "nginx-2"]
SPREAD = {"sluice-2", "haproxy-2", "nginx-2"}
SCALING = {"ka-100B", "close-100B"}
ONLY_WORKLOADS = {"sluice-busy": {"latency"}, "haproxy-busy": {"latency"},
                  **{p: SCALING for p in SPREAD}}
NO_IDLE_TEST = {"direct", "sluice-hook", "sluice-busy", "haproxy-busy"} | SPREAD
NO_TLS = {"direct", "sluice-hook", "sluice-busy", "haproxy-busy"} | SPREAD  # rows without HTTPS runs
TLS_KINDS = ("ecdsa", "rsa")  # one HTTPS listener per kind of certificate, each with its own

START_TIMEOUT = 10.0          # seconds for a server to accept connections
STOP_TIMEOUT = 5.0            # seconds after SIGTERM before SIGKILL


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# /proc helpers

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the "(comm)" field; index 0 = state."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()


def descendants(pid):
    """pid and all its descendants (scan of /proc, by parent pid)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_ticks(pids):
    """utime+stime (clock ticks) summed over pids (all threads of each)."""
    total = 0
    for p in pids:
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])       # fields 14 and 15 of stat
    return total


def cpu_line(cpu):
    """(busy, total) jiffies of one CPU from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)   # idle + iowait
                total = sum(v[:8])                          # without guest
                return total - idle, total
    return 0, 0


def memory_kib(pids):
    """Sum of Pss, Rss and Private_* (KiB) from smaps_rollup over pids."""
    out = {"pss": 0, "rss": 0, "private": 0}
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    k, _, rest = line.partition(":")
                    if k == "Pss":
                        out["pss"] += int(rest.split()[0])
                    elif k == "Rss":
                        out["rss"] += int(rest.split()[0])
                    elif k in ("Private_Clean", "Private_Dirty"):
                        out["private"] += int(rest.split()[0])
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------
# processes: every child is recorded by PID and killed by PID

_libc = None


def _die_with_parent():
    """preexec: the child gets SIGKILL if this script dies without cleaning up."""
    try:
        _libc.prctl(1, signal.SIGKILL)        # PR_SET_PDEATHSIG
    except Exception:
        pass


def start_time(pid):
    try:
        return int(_stat_fields(pid)[19])          # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


class Watchdog:
    """A forked helper that outlives this script only to clean up after it.

    Every process we start is announced to it (pid and start time); if this
    script dies without saying "done" (even by SIGKILL: the pipe reaches EOF),
    the helper SIGKILLs those PIDs that still are the same processes, e.g.
    nginx workers that a dead master leaves behind, and removes the temp dir.
    """

    def __init__(self, tmp):
        r, w = os.pipe()                 # not inherited by exec'd children
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                entries, buf = {}, b""
                while True:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        words = line.split()
                        if words[:1] == [b"done"]:
                            os._exit(0)
                        if words[:1] == [b"add"]:
                            entries[int(words[1])] = int(words[2])
                        elif words[:1] == [b"del"]:
                            entries.pop(int(words[1]), None)
                for p, st in entries.items():
                    if start_time(p) == st:
                        try:
                            os.kill(p, signal.SIGKILL)
                        except OSError:
                            pass
                shutil.rmtree(tmp, ignore_errors=True)
            finally:
                os._exit(0)
        os.close(r)
        self.pid, self.w = pid, w

    def _send(self, msg):
        try:
            os.write(self.w, msg.encode())
        except OSError:
            pass

    def add(self, pids):
        for p in pids:
            st = start_time(p)
            if st is not None:
                self._send(f"add {p} {st}\n")

    def remove(self, pids):
        for p in pids:
            self._send(f"del {p}\n")

    def done(self):
        self._send("done\n")
        os.close(self.w)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class Server:
    def __init__(self, name, argv, port, logpath):
        self.name, self.argv, self.port, self.logpath = name, argv, port, logpath
        self.proc = None
        self.known = []

    @property
    def pid(self):
        return self.proc.pid

    def tree(self):
        return descendants(self.proc.pid)


class Procs:
    def __init__(self, watchdog):
        self.live = []
        self.watchdog = watchdog

    def track(self, srv):
        """Announce srv's current process tree to the watchdog."""
        srv.known = sorted(set(srv.known) | set(srv.tree()))
        self.watchdog.add(srv.known)

    def start(self, name, argv, port, logpath, cwd=None):
        srv = Server(name, argv, port, logpath)
        logf = open(logpath, "ab")
        try:
            srv.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                cwd=cwd, start_new_session=True,
                preexec_fn=_die_with_parent if _libc else None)
        finally:
            logf.close()
        self.live.append(srv)
        srv.known = [srv.pid]
        self.watchdog.add(srv.known)
        try:
            self.wait_ready(srv)
        except BaseException:
            self.stop(srv)
            raise
        return srv

    def wait_ready(self, srv):
        """Poll a TCP connect to the server's port (bounded in time)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = srv.proc.poll()
            if rc is not None:
                raise BenchError(f"{srv.name} exited with status {rc} at start:\n"
                                 + tail(srv.logpath))
            try:
                socket.create_connection((HOST, srv.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{srv.name} not accepting on {HOST}:{srv.port} "
                                 f"after {START_TIMEOUT:.0f}s:\n" + tail(srv.logpath))
            time.sleep(0.01)

    def stop(self, srv):
        if srv not in self.live:
            return
        self.live.remove(srv)
        if srv.proc.poll() is not None:
            self.watchdog.remove(srv.known)
            return
        pids = sorted(set(srv.tree()) | set(srv.known))
        try:
            os.kill(srv.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            srv.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"  {srv.name} (pid {srv.pid}) ignored SIGTERM for "
                f"{STOP_TIMEOUT:.0f}s, sending SIGKILL")
        # whatever is left of the tree (e.g. nginx workers) goes by PID
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            srv.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self.watchdog.remove(pids)

    def stop_all(self):
        for srv in list(reversed(self.live)):
            try:
                self.stop(srv)
            except Exception as e:   # keep cleaning up the others
                log(f"  stopping {srv.name}: {e}")


def find_sluice(path):
    """The absolute path of the sluice binary named path (as given, or relative to
    the repository), or None if it is not an executable file."""
    if not os.path.isabs(path) and not os.path.exists(path):
        alt = os.path.join(REPO, path)
        if os.path.exists(alt):
            path = alt
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return os.path.abspath(path)
    return None


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  | " + l for l in lines[-n:]) or "  (log empty)"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# a minimal HTTP/1.1 client, for correctness checks and the idle test

def _recv(sock, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise BenchError("response timed out")
    sock.settimeout(left)
    chunk = sock.recv(262144)
    if not chunk:
        raise BenchError("connection closed before the response was complete")
    return chunk


def http_get(sock, path, close=False, timeout=5.0):
    """Send one GET, read one whole response; returns (status, headers, body)."""
    deadline = time.monotonic() + timeout
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if close:
        req += "Connection: close\r\n"
    sock.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += _recv(sock, deadline)
        if len(buf) > 65536 and b"\r\n\r\n" not in buf:
            raise BenchError("response head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise BenchError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += _recv(sock, deadline)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += _recv(sock, deadline)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break            # (trailers not expected from these servers)
        extra = rest
    elif "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            rest += _recv(sock, deadline)
        body, extra = rest[:n], rest[n:]
    else:
        raise BenchError("response has neither Content-Length nor chunked body")
    if extra:
        raise BenchError(f"{len(extra)} unexpected bytes after the response")
    return status, headers, body


def check_proxy(port, contents):
    """Each file twice on one keep-alive connection, byte for byte; then
    Connection: close must end in EOF."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        for name, data in contents.items():
            for _ in range(2):
                st, _, body = http_get(s, "/" + name)
                if st != 200:
                    raise BenchError(f"GET /{name}: status {st}")
                if body != data:
                    raise BenchError(f"GET /{name}: body differs "
                                     f"({len(body)} bytes, expected {len(data)})")
    with socket.create_connection((HOST, port), timeout=5) as s:
        st, _, body = http_get(s, "/100.bin", close=True)
        if st != 200 or body != contents["100.bin"]:
            raise BenchError(f"GET /100.bin with Connection: close: status {st}")
        s.settimeout(5)
        try:
            if s.recv(1) != b"":
                raise BenchError("bytes after a Connection: close response")
        except socket.timeout:
            raise BenchError("connection not closed after Connection: close")
        except ConnectionResetError:
            pass


# --------------------------------------------------------------------------
# HTTPS: one certificate of each kind for every proxy, made with the openssl CLI

def make_certificates(tmp):
    """tmp/{ecdsa,rsa}.{crt,key}, self-signed, and .pem (both in one) for HAProxy."""
    for kind, newkey in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                         ("rsa", ["-newkey", "rsa:2048"])):
        crt, key = os.path.join(tmp, kind + ".crt"), os.path.join(tmp, kind + ".key")
        p = subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
                            "-out", crt, "-days", "7", "-subj", "/CN=bench.test",
                            "-addext", "subjectAltName=DNS:bench.test"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise BenchError(f"openssl could not make the {kind} certificate: {p.stderr}")
        with open(os.path.join(tmp, kind + ".pem"), "w") as f:
            f.write(open(crt).read() + open(key).read())
        os.chmod(key, 0o644)  # nginx reads it as root; the files live in our own temp dir


def tls_connect(port, timeout=5.0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((HOST, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="bench.test")


def check_tls(port, contents):
    """Each file once over HTTPS, byte for byte."""
    with tls_connect(port) as s:
        for name, data in contents.items():
            st, _, body = http_get(s, "/" + name)
            if st != 200 or body != data:
                raise BenchError(f"HTTPS GET /{name}: status {st}, {len(body)} bytes")


# --------------------------------------------------------------------------
# wrk

UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_wrk(out):
    def num(pattern, conv=float, default=None):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else default

    def pct(p):
        m = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        return float(m.group(1)) * UNIT_US[m.group(2)] if m else None

    r = {
        "requests": num(r"^\s*(\d+) requests in", int),
        "rps": num(r"^Requests/sec:\s+([\d.]+)"),
        "p50_us": pct(50), "p75_us": pct(75), "p90_us": pct(90), "p99_us": pct(99),
        "non2xx": num(r"Non-2xx or 3xx responses:\s+(\d+)", int, 0),
    }
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, m.groups()))) if m else {}
    r["errors"] = r["non2xx"] + sum(r["socket_errors"].values())
    if r["requests"] is None or r["rps"] is None or r["p50_us"] is None:
        raise BenchError("cannot parse wrk output:\n" + out)
    return r


def run_wrk(args, port, path, conns, duration, close, tls=False, spread=False):
    """spread: wrk runs two threads on both CPUs, beside a proxy given both."""
    cpus = f"{args.proxy_cpu},{args.load_cpu}" if spread else str(args.load_cpu)
    argv = ["taskset", "-c", cpus, "wrk", "-t2" if spread else "-t1", f"-c{conns}",
            f"-d{duration}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"{'https' if tls else 'http'}://{HOST}:{port}{path}")
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=duration + 30,
                       preexec_fn=_die_with_parent if _libc else None)
    if p.returncode != 0:
        raise BenchError(f"wrk failed ({p.returncode}): {p.stderr}{p.stdout}")
    return " ".join(argv), p.stdout


def run_s_time(args, port, path, procs, duration):
    """procs openssl s_time -new side by side: a full handshake, a GET and a close each time."""
    argv = ["taskset", "-c", str(args.load_cpu), "openssl", "s_time", "-connect",
            f"{HOST}:{port}", "-new", "-time", str(duration), "-www", path]
    ps = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True) for _ in range(procs)]
    outs = [p.communicate(timeout=duration + 30)[0] for p in ps]
    n = 0
    for p, out in zip(ps, outs):
        m = re.search(r"^(\d+) connections in (\d+) real seconds", out, re.M)
        if p.returncode != 0 or not m:
            raise BenchError(f"openssl s_time failed ({p.returncode}): {out[-500:]}")
        n += int(m.group(1))
    r = {"requests": n, "rps": n / duration, "p50_us": None, "p75_us": None, "p90_us": None,
         "p99_us": None, "non2xx": 0, "socket_errors": {}, "errors": 0}
    return f"{procs} x " + " ".join(argv), "\n".join(outs)[-2000:], r


def backend_accepts(status_port):
    """Connections the backend nginx has accepted so far (its stub_status)."""
    with socket.create_connection((HOST, status_port), timeout=5) as s:
        _, _, body = http_get(s, "/", close=True)
    m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n", body)
    if not m:
        raise BenchError(f"cannot read the backend's stub_status: {body[:200]!r}")
    return int(m.group(1))


def measure(args, port, wl, proxy_srv, backend_srv, status_port):
    """One wrk run; CPU of the proxy tree (and of the backend) over it, and
    the connections the backend accepted meanwhile."""
    ppids = proxy_srv.tree() if proxy_srv else []
    bpids = backend_srv.tree()
    a0 = backend_accepts(status_port)
    c0 = cpu_line(args.proxy_cpu)
    p0, b0 = cpu_ticks(ppids), cpu_ticks(bpids)
    if wl.get("tls"):
        port = proxy_srv.tls_ports[wl["tls"]]
    if wl.get("client") == "s_time":
        cmd, out, r = run_s_time(args, port, wl["path"], wl["conns"], args.duration)
    else:
        cmd, out = run_wrk(args, port, wl["path"], wl["conns"], args.duration,
                           wl["close"], tls=bool(wl.get("tls")),
                           spread=bool(proxy_srv and proxy_srv.spread))
    p1, b1 = cpu_ticks(ppids), cpu_ticks(bpids)
    c1 = cpu_line(args.proxy_cpu)
    # the status request of a0 is one of the accepted connections
    a1 = backend_accepts(status_port) - 1
    if wl.get("client") != "s_time":
        r = parse_wrk(out)
    r["wrk_cmd"], r["wrk_output"] = cmd, out
    n = max(r["requests"], 1)
    r["backend_conns_per_1k"] = 1000.0 * (a1 - a0) / n
    r["proxy_cpu_s"] = (p1 - p0) / CLK_TCK if proxy_srv else None
    r["cpu_us_per_req"] = (p1 - p0) / CLK_TCK * 1e6 / n if proxy_srv else None
    r["backend_cpu_us_per_req"] = (b1 - b0) / CLK_TCK * 1e6 / n
    r["cpu_us_per_mb"] = (r["cpu_us_per_req"] / wl["mb"]
                          if wl.get("mb") and proxy_srv else None)
    # busy time on the proxy's CPU that is not the proxy: noise from elsewhere
    busy, total = c1[0] - c0[0], c1[1] - c0[1]
    other = busy - ((p1 - p0) if proxy_srv else 0)
    spread = proxy_srv is not None and proxy_srv.spread  # it shares both CPUs by design
    r["proxy_cpu_other_pct"] = round(100.0 * max(other, 0) / total, 1) \
        if total and not spread else None
    return r


# --------------------------------------------------------------------------
# configurations

def nginx_common(tmp, name, workers=1):
    return f"""\
worker_processes {workers};
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err warn;
worker_rlimit_nofile {NOFILE};
events {{ worker_connections {WORKER_CONNS}; }}
"""


def backend_conf(tmp, port, root, status_port):
    return nginx_common(tmp, "backend") + f"""\
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    client_body_temp_path {tmp}/backend_body;
    proxy_temp_path {tmp}/backend_proxy;
    fastcgi_temp_path {tmp}/backend_fastcgi;
    uwsgi_temp_path {tmp}/backend_uwsgi;
    scgi_temp_path {tmp}/backend_scgi;
    server {{
        listen {HOST}:{port} backlog=4096;
        root {root};
        location / {{ }}
    }}
    server {{
        listen {HOST}:{status_port};
        location / {{ stub_status; }}
    }}
}}
"""


def nginx_proxy_conf(tmp, port, bport, tls_ports, workers=1):
    tls = "".join(f"""
    server {{
        listen {HOST}:{tls_ports[k]} ssl backlog=4096;
        ssl_certificate {tmp}/{k}.crt;
        ssl_certificate_key {tmp}/{k}.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}""" for k in TLS_KINDS)
    return nginx_common(tmp, "nginx", workers) + f"""\
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/nginx_body;
    proxy_temp_path {tmp}/nginx_proxy;
    fastcgi_temp_path {tmp}/nginx_fastcgi;
    uwsgi_temp_path {tmp}/nginx_uwsgi;
    scgi_temp_path {tmp}/nginx_scgi;
    upstream backend {{
        server {HOST}:{bport};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}{tls}
}}
"""


def haproxy_conf(tmp, port, bport, tls_ports, busy=False, threads=1):
    busy_line = "    busy-polling\n" if busy else ""
    tls = "".join(f"""
frontend fe_{k}
    bind {HOST}:{tls_ports[k]} backlog 4096 ssl crt {tmp}/{k}.pem alpn http/1.1 ssl-min-ver TLSv1.2
    default_backend be
""" for k in TLS_KINDS)
    return f"""\
global
    nbthread {threads}
    maxconn {MAXCONN}
    ulimit-n {NOFILE}
{busy_line}
defaults
    mode http
    maxconn {MAXCONN}
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend fe
    bind {HOST}:{port} backlog 4096
    default_backend be
{tls}
backend be
    server s1 {HOST}:{bport}
"""


def sluice_conf(tmp, port, bport, tls_ports, hook=False, busy=False, workers=1):
    hook_line = "  hook = function(r) end,\n" if hook else ""
    tls = "".join(f"""
    {{ address = "{HOST}:{tls_ports[k]}", pool = "backend",
      tls = {{ certificates = {{ {{ cert = "{tmp}/{k}.crt", key = "{tmp}/{k}.key" }} }} }} }},"""
                  for k in TLS_KINDS)
    busy_line = "    busy_poll = 0.0001,\n" if busy else ""
    # Unless asked for, the default: one worker per CPU it may run on, here the one it is pinned to
    # (and a binary from before workers existed runs the same config).
    workers_line = f"  workers = {workers},\n" if workers > 1 else ""
    return f"""\
-- generated by bench/bench.py
return {{
{workers_line}  listeners = {{
    {{ address = "{HOST}:{port}", pool = "backend" }},{tls}
  }},
  pools = {{
    backend = {{
      servers = {{ "{HOST}:{bport}" }},
      keepalive_timeout = 300,
      connect_backoff = 2,
    }},
  }},
  timeouts = {{
    client_header = 60,
    client_keepalive = 300,
    backend_connect = 5,
    backend_response = 60,
    idle = 60,
    shutdown = 1,
  }},
  limits = {{
    max_request_line = 8192,
    max_header_size = 16384,
    buffer_size = 16384,
    max_connections = {MAXCONN},
{busy_line}  }},
  access_log = false,
  log_level = "warn",
{hook_line}}}
"""


# sized from --idle-conns in main()
MAXCONN = WORKER_CONNS = NOFILE = 0


class Bench:
    def __init__(self, args, tmp, procs):
        self.args, self.tmp, self.procs = args, tmp, procs
        self.backend = None
        self.bport = None
        self.contents = {}

    def start_backend(self):
        root = os.path.join(self.tmp, "www")
        os.makedirs(root)
        for name, size in FILES.items():
            pattern = bytes(range(33, 127)) + b"\n"
            data = (pattern * (size // len(pattern) + 1))[:size]
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
            self.contents[name] = data
        make_certificates(self.tmp)
        self.bport, self.status_port = free_port(), free_port()
        conf = os.path.join(self.tmp, "backend.conf")
        with open(conf, "w") as f:
            f.write(backend_conf(self.tmp, self.bport, root, self.status_port))
        argv = ["taskset", "-c", str(self.args.load_cpu), "nginx", "-p", self.tmp,
                "-e", os.path.join(self.tmp, "backend.err"), "-c", conf,
                "-g", "daemon off; master_process on;"]
        self.backend = self.procs.start("backend nginx", argv, self.bport,
                                        os.path.join(self.tmp, "backend.log"))
        check_proxy(self.bport, self.contents)
        self.procs.track(self.backend)

    def start_proxy(self, name):
        """Start one proxy on CPU 0 in front of the backend; returns the Server."""
        tmp, port, bport = self.tmp, free_port(), self.bport
        tls_ports = {k: free_port() for k in TLS_KINDS}
        spread = name in SPREAD
        workers = 2 if spread else 1
        pin = ["taskset", "-c", f"{self.args.proxy_cpu},{self.args.load_cpu}" if spread
               else str(self.args.proxy_cpu)]
        logpath = os.path.join(tmp, f"{name}.log")
        if name.startswith("sluice"):
            conf = os.path.join(tmp, f"{name}.lua")
            with open(conf, "w") as f:
                f.write(sluice_conf(tmp, port, bport, tls_ports, hook=name == "sluice-hook",
                                    busy=name == "sluice-busy", workers=workers))
            binary = self.args.baseline if name == "sluice-base" else self.args.sluice
            argv = pin + [binary] + [
                a.replace("{config}", conf) for a in self.args.sluice_args.split()]
        elif name.startswith("haproxy"):
            conf = os.path.join(tmp, f"{name}.cfg")
            with open(conf, "w") as f:
                f.write(haproxy_conf(tmp, port, bport, tls_ports, busy=name == "haproxy-busy",
                                     threads=workers))
            argv = pin + ["haproxy", "-db", "-f", conf]
        elif name.startswith("nginx"):
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_proxy_conf(tmp, port, bport, tls_ports, workers))
            argv = pin + ["nginx", "-p", tmp, "-e", os.path.join(tmp, "nginx.err"),
                          "-c", conf, "-g", "daemon off; master_process on;"]
        else:
            raise ValueError(name)
        srv = self.procs.start(name, argv, port, logpath)
        srv.tls_ports = tls_ports
        srv.spread = spread
        try:
            check_proxy(port, self.contents)
            for k in TLS_KINDS:
                check_tls(tls_ports[k], self.contents)
        except BaseException as e:
            self.procs.stop(srv)
            if isinstance(e, (BenchError, OSError)):
                raise BenchError(f"{name} failed the correctness check: {e}\n"
                                 + tail(logpath)) from None
            raise
        self.procs.track(srv)
        return srv

    def run_workloads(self, proxy, workloads, rnd):
        only = ONLY_WORKLOADS.get(proxy)
        workloads = [w for w in workloads if (only is None or w["name"] in only)
                     and not (w.get("tls") and proxy in NO_TLS)]
        if not workloads:
            return []
        srv = None if proxy == "direct" else self.start_proxy(proxy)
        try:
            port = self.bport if srv is None else srv.port
            if self.args.warmup > 0:
                run_wrk(self.args, port, "/100.bin", 32, self.args.warmup, False,
                        spread=srv is not None and srv.spread)
            results = []
            for wl in workloads:
                r = measure(self.args, port, wl, srv, self.backend, self.status_port)
                r.update(round=rnd, proxy=proxy, workload=wl["name"])
                cpu = (f"{r['cpu_us_per_req']:.2f} µs/req CPU"
                       if r["cpu_us_per_req"] is not None else "")
                lat = (f"p50 {r['p50_us']:.0f} µs  p99 {r['p99_us']:.0f} µs  "
                       if r["p50_us"] is not None else "")
                log(f"  {proxy:8} {wl['name']:10} {r['rps']:>10.0f} req/s  {lat}{cpu}"
                    + (f"  ERRORS {r['errors']}" if r["errors"] else "")
                    + (f"  (other load on CPU {self.args.proxy_cpu}: "
                       f"{r['proxy_cpu_other_pct']}%)"
                       if (r["proxy_cpu_other_pct"] or 0) > 10 else ""))
                if r["errors"]:
                    log(f"    wrk reported errors: socket {r['socket_errors']}, "
                        f"non-2xx/3xx {r['non2xx']}")
                results.append(r)
            if srv is not None and srv.proc.poll() is not None:
                raise BenchError(f"{proxy} died during the run:\n" + tail(srv.logpath))
            return results
        finally:
            if srv is not None:
                self.procs.stop(srv)

    def idle_test(self, proxy, rnd, tls=False):
        """Memory per idle keep-alive client connection (over HTTPS with tls), on a fresh proxy."""
        n = self.args.idle_conns
        srv = self.start_proxy(proxy)
        port = srv.tls_ports["ecdsa"] if tls else srv.port

        def connect():
            return tls_connect(port) if tls else socket.create_connection((HOST, port), timeout=5)

        socks = []
        try:
            # warm up: a few connections and requests, so that lazy
            # initialisation and the backend connection are not counted
            for _ in range(4):
                with connect() as s:
                    for _ in range(8):
                        http_get(s, "/100.bin")
            before = memory_kib(srv.tree())
            deadline = time.monotonic() + max(60.0, n / 100.0)
            for i in range(n):
                if time.monotonic() > deadline:
                    raise BenchError(f"opening idle connections too slow "
                                     f"({i} of {n} in time)")
                s = connect()
                socks.append(s)
                st, _, body = http_get(s, "/100.bin")
                if st != 200 or len(body) != 100:
                    raise BenchError(f"idle connection {i}: status {st}")
            after = memory_kib(srv.tree())
            # connections that the proxy closed (or that got bytes) are readable
            poller = select.poll()
            for s in socks:
                poller.register(s.fileno(), select.POLLIN | select.POLLHUP)
            closed = len(poller.poll(0))
            r = {"round": rnd, "proxy": proxy, "conns": n, "closed": closed,
                 "before_kib": before, "after_kib": after, "kind": TLS_IDLE if tls else IDLE}
            for k in ("pss", "rss", "private"):
                r[f"{k}_kib_per_conn"] = (after[k] - before[k]) / n
            log(f"  {proxy:8} {r['kind']:10} {n} conns: "
                f"{r['pss_kib_per_conn']:.2f} KiB/conn (PSS), "
                f"{r['rss_kib_per_conn']:.2f} KiB/conn (RSS), "
                f"PSS {before['pss']} -> {after['pss']} KiB"
                + (f"  {closed} CLOSED BY PROXY" if closed else ""))
            return r
        finally:
            for s in socks:
                s.close()
            self.procs.stop(srv)


# --------------------------------------------------------------------------
# report

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, width=9):
    if v is None:
        return f"{'-':>{width}}"
    if digits == 0:
        return f"{v:>{width},.0f}"
    return f"{v:>{width},.{digits}f}"


def ratio(a, b):
    """a ÷ b; none where b is not positive (an added latency at or below direct)."""
    return f"{a / b:.2f}" if a is not None and b is not None and b > 0 else "-"


def summarize(runs, idles, proxies, workloads, args):
    summary = {}
    lines = []
    for wl in workloads:
        rows = {}
        for p in proxies:
            rs = [r for r in runs if r["proxy"] == p and r["workload"] == wl["name"]]
            if not rs:
                continue
            rows[p] = {
                "rounds": len(rs),
                "rps": med([r["rps"] for r in rs]),
                "p50_us": med([r["p50_us"] for r in rs]),
                "p99_us": med([r["p99_us"] for r in rs]),
                "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
                "cpu_us_per_mb": med([r["cpu_us_per_mb"] for r in rs]),
                "backend_cpu_us_per_req": med([r["backend_cpu_us_per_req"] for r in rs]),
                "backend_conns_per_1k": med([r["backend_conns_per_1k"] for r in rs]),
                "errors": sum(r["errors"] for r in rs),
            }
        if not rows:
            continue
        d = rows.get("direct")
        for p, row in rows.items():
            if d and p != "direct":
                row["added_p50_us"] = row["p50_us"] - d["p50_us"]
                row["added_p99_us"] = row["p99_us"] - d["p99_us"]
            else:
                row["added_p50_us"] = row["added_p99_us"] = None
        summary[wl["name"]] = rows
        nr = max(r["rounds"] for r in rows.values())
        per_mb = wl.get("mb") is not None
        lines.append("")
        client = (f"{wl['conns']} x openssl s_time -new -time {args.duration}"
                  if wl.get("client") == "s_time" else f"wrk -t1 -c{wl['conns']} -d{args.duration}s")
        lines.append(f"== {wl['name']}: GET {wl['path']}, {wl['desc']}; {client}; "
                     f"median of {nr} round{'s' if nr > 1 else ''}")
        lines.append(f"{'proxy':<12}{'req/s':>10}{'p50 µs':>9}{'p99 µs':>9}"
                     f"{'+p50 µs':>9}{'+p99 µs':>9}{'CPU µs/req':>12}"
                     + (f"{'CPU µs/MB':>11}" if per_mb else "")
                     + f"{'bk conn/1k':>11}{'errors':>8}")
        for p, row in rows.items():
            lines.append(f"{p:<12}{fmt(row['rps'], 0, 10)}{fmt(row['p50_us'])}"
                         f"{fmt(row['p99_us'])}{fmt(row['added_p50_us'])}"
                         f"{fmt(row['added_p99_us'])}"
                         f"{fmt(row['cpu_us_per_req'], 2, 12)}"
                         + (fmt(row['cpu_us_per_mb'], 1, 11) if per_mb else "")
                         + f"{fmt(row['backend_conns_per_1k'], 1, 11)}{row['errors']:>8}")
        s = rows.get("sluice")
        base = rows.get("sluice-base")
        if s and base:
            lines.append(f"sluice ÷ sluice-base: CPU/req {ratio(s['cpu_us_per_req'], base['cpu_us_per_req'])}, "
                         f"req/s {ratio(s['rps'], base['rps'])}, "
                         f"+p50 {ratio(s['added_p50_us'], base['added_p50_us'])}")
            for ref in ("haproxy",):
                if ref not in rows:
                    continue
                field = "cpu_us_per_mb" if per_mb else "cpu_us_per_req"
                per_round = []
                for rnd in sorted({r["round"] for r in runs}):
                    one = {r["proxy"]: r for r in runs
                           if r["workload"] == wl["name"] and r["round"] == rnd}
                    if {"sluice", "sluice-base", ref} <= one.keys():
                        per_round.append(f"{ratio(one['sluice'][field], one[ref][field])}"
                                         f"/{ratio(one['sluice-base'][field], one[ref][field])}")
                lines.append(f"CPU{'/MB' if per_mb else '/req'} ÷ {ref} per round, sluice/sluice-base: "
                             + " ".join(per_round))
                lines.append(f"sluice-base ÷ {ref}: CPU/req "
                             f"{ratio(base['cpu_us_per_req'], rows[ref]['cpu_us_per_req'])}"
                             + (f", CPU/MB {ratio(base['cpu_us_per_mb'], rows[ref]['cpu_us_per_mb'])}"
                                if per_mb else ""))
        for ref in ("haproxy", "nginx"):
            if not s or ref not in rows:
                continue
            o = rows[ref]
            lines.append(f"sluice ÷ {ref}: CPU/req {ratio(s['cpu_us_per_req'], o['cpu_us_per_req'])}, "
                         f"req/s {ratio(s['rps'], o['rps'])}, "
                         f"+p50 {ratio(s['added_p50_us'], o['added_p50_us'])}, "
                         f"+p99 {ratio(s['added_p99_us'], o['added_p99_us'])}, "
                         f"backend conns/1k {ratio(s['backend_conns_per_1k'], o['backend_conns_per_1k'])}")
        for one, two in (("sluice", "sluice-2"), ("haproxy", "haproxy-2"), ("nginx", "nginx-2")):
            if one in rows and two in rows:
                a, b = rows[one], rows[two]
                lines.append(f"{two} ÷ {one}: CPU/req {ratio(b['cpu_us_per_req'], a['cpu_us_per_req'])}, "
                             f"req/s {ratio(b['rps'], a['rps'])} (2 workers on 2 CPUs shared with "
                             "wrk -t2, vs 1 on its own CPU)")
        for ref in ("haproxy-2", "nginx-2"):
            if "sluice-2" in rows and ref in rows:
                a, b = rows["sluice-2"], rows[ref]
                lines.append(f"sluice-2 ÷ {ref}: CPU/req {ratio(a['cpu_us_per_req'], b['cpu_us_per_req'])}, "
                             f"req/s {ratio(a['rps'], b['rps'])}")
        h = rows.get("sluice-hook")
        if s and h and h["cpu_us_per_req"] is not None and s["cpu_us_per_req"] is not None:
            lines.append("hook: sluice-hook CPU/req − sluice CPU/req = "
                         f"{h['cpu_us_per_req'] - s['cpu_us_per_req']:+.2f} µs")
        if not s and "haproxy" in rows and "nginx" in rows:
            lines.append("ratios: (sluice not run) haproxy CPU/req ÷ nginx "
                         f"{ratio(rows['haproxy']['cpu_us_per_req'], rows['nginx']['cpu_us_per_req'])}, "
                         f"req/s ÷ nginx {ratio(rows['haproxy']['rps'], rows['nginx']['rps'])}")
    for kind, what in ((IDLE, "idle keep-alive client connection"),
                       (TLS_IDLE, "idle keep-alive HTTPS client connection (ECDSA P-256)")):
        rows = {}
        for p in proxies:
            rs = [r for r in idles if r["proxy"] == p and r["kind"] == kind]
            if rs:
                rows[p] = {k: med([r[k] for r in rs]) for k in
                           ("pss_kib_per_conn", "rss_kib_per_conn",
                            "private_kib_per_conn")}
                rows[p]["closed"] = sum(r["closed"] for r in rs)
                rows[p]["rounds"] = len(rs)
                rows[p]["before_pss_kib"] = med([r["before_kib"]["pss"] for r in rs])
        if not rows:
            continue
        summary[kind] = rows
        nr = max(r["rounds"] for r in rows.values())
        lines.append("")
        lines.append(f"== {kind}: memory per {what} "
                     f"({args.idle_conns} connections, one 100 B request each, "
                     f"then idle); median of {nr} round{'s' if nr > 1 else ''}")
        lines.append(f"{'proxy':<9}{'KiB/conn PSS':>13}{'KiB/conn RSS':>13}"
                     f"{'KiB/conn priv':>14}{'PSS before KiB':>15}{'closed':>8}")
        for p, row in rows.items():
            lines.append(f"{p:<9}{fmt(row['pss_kib_per_conn'], 2, 13)}"
                         f"{fmt(row['rss_kib_per_conn'], 2, 13)}"
                         f"{fmt(row['private_kib_per_conn'], 2, 14)}"
                         f"{fmt(row['before_pss_kib'], 0, 15)}{row['closed']:>8}")
        s = rows.get("sluice")
        for ref in ("haproxy", "nginx"):
            if s and ref in rows:
                o = rows[ref]
                lines.append(f"sluice ÷ {ref}: KiB/conn PSS "
                             f"{ratio(s['pss_kib_per_conn'], o['pss_kib_per_conn'])}, "
                             f"RSS {ratio(s['rss_kib_per_conn'], o['rss_kib_per_conn'])}")
    return summary, lines


# The performance targets of sluice (issues 10 and 11), checked against one run's medians.
TARGETS = [
    # workload, what, field, reference proxy (None: an absolute bound), bound, sluice's row
    ("ka-100B", "CPU/req, 50 keep-alive clients", "cpu_us_per_req", "haproxy", 0.85, "sluice"),
    ("ka-100B-500", "CPU/req, 500 keep-alive clients", "cpu_us_per_req", "haproxy", 0.85, "sluice"),
    ("close-100B", "CPU/req, new connection per request", "cpu_us_per_req", "haproxy", 0.85,
     "sluice"),
    ("ka-1MiB", "CPU/MB, 1 MiB bodies", "cpu_us_per_mb", "haproxy", 0.6, "sluice"),
    ("latency", "added p50 latency, 1 client (µs)", "added_p50_us", None, 50, "sluice"),
    ("latency", "added p99 latency, 1 client (µs)", "added_p99_us", None, 120, "sluice"),
    ("latency", "  the same, busy_poll = 0.0001 (opt-in)", "added_p50_us", None, 50, "sluice-busy"),
    ("latency", "  the same, busy_poll = 0.0001 (opt-in)", "added_p99_us", None, 120,
     "sluice-busy"),
    (IDLE, "idle keep-alive connection (KiB RSS)", "rss_kib_per_conn", None, 0.5, "sluice"),
    # issue 11: TLS
    ("tls-hs-ecdsa", "CPU/handshake, ECDSA P-256", "cpu_us_per_req", "haproxy", 1.0, "sluice"),
    ("tls-hs-rsa", "CPU/handshake, RSA 2048", "cpu_us_per_req", "haproxy", 1.0, "sluice"),
    ("tls-ka-100B", "CPU/req, keep-alive HTTPS", "cpu_us_per_req", "haproxy", 0.9, "sluice"),
    ("tls-resume", "CPU/resumed handshake (TLS 1.3 ticket)", "cpu_us_per_req", "haproxy", 1.0,
     "sluice"),
    (TLS_IDLE, "idle HTTPS connection (KiB RSS)", "rss_kib_per_conn", "nginx", 1.0, "sluice"),
    # issue 12: worker threads, on two CPUs shared with the load
    ("ka-100B", "CPU/req, workers = 2 (vs 1)", "cpu_us_per_req", "sluice", 1.05, "sluice-2"),
    ("close-100B", "CPU/req, new connections, workers = 2 (vs 1)", "cpu_us_per_req", "sluice",
     1.05, "sluice-2"),
    ("ka-100B", "req/s, workers = 1 on 1 CPU (vs 2 on 2)", "rps", "sluice-2", 1.0, "sluice"),
]


def target_lines(summary):
    out = []
    for wl, what, field, ref, bound, row in TARGETS:
        rows = summary.get(wl, {})
        s = rows.get(row, {}).get(field)
        if ref:
            o = rows.get(ref, {}).get(field)
            value = s / o if s is not None and o else None
            shown = f"{value:.2f} × {ref}" if value is not None else "-"
            want = f"≤ {bound} × {ref}"
        else:
            value = s
            shown = f"{value:.2f}" if value is not None else "-"
            want = f"≤ {bound}"
        verdict = "not run" if value is None else ("met" if value <= bound else "MISSED")
        out.append(f"{what:<42}{shown:>18}  {want:<18}{verdict}")
    return out


# --------------------------------------------------------------------------

def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


def versions(args, proxies):
    out = {}

    def first_line(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return ((p.stdout or "") + (p.stderr or "")).strip().splitlines()[0]
        except Exception as e:
            return f"? ({e})"

    out["nginx"] = first_line(["nginx", "-v"])
    out["haproxy"] = first_line(["haproxy", "-v"])
    out["wrk"] = first_line(["wrk", "-v"])
    if "sluice" in proxies:
        out["sluice"] = args.sluice
    out["kernel"] = platform.release()
    return out


def main():
    global MAXCONN, WORKER_CONNS, NOFILE, _libc
    ap = argparse.ArgumentParser(
        description="sluice vs HAProxy vs nginx, side by side, on loopback")
    ap.add_argument("--sluice", default="build/sluice",
                    help="sluice binary (default build/sluice)")
    ap.add_argument("--sluice-args", default="-c {config}",
                    help="sluice arguments; {config} is the generated Lua file")
    ap.add_argument("--skip-sluice", action="store_true", help="do not run sluice")
    ap.add_argument("--baseline", metavar="SLUICE",
                    help="another sluice binary to run beside build/sluice as sluice-base "
                         "(the one before a change), with ratios of both to HAProxy per round")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES),
                    help="comma list of direct,sluice,haproxy,nginx (default all)")
    ap.add_argument("--only", default=None,
                    help="comma list of workloads: "
                         + ",".join(w["name"] for w in WORKLOADS) + f",{IDLE},{TLS_IDLE}")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=1,
                    help="seconds of wrk warm-up after each proxy start (0: none)")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions; medians reported")
    ap.add_argument("--idle-conns", type=int, default=10000,
                    help="connections for the idle memory test")
    ap.add_argument("--proxy-cpu", type=int, default=0, help="CPU for the proxy")
    ap.add_argument("--load-cpu", type=int, default=1, help="CPU for wrk and the backend")
    ap.add_argument("--json", metavar="FILE", help="write raw results as JSON")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (configs, logs) for debugging")
    args = ap.parse_args()

    if not 1 <= args.duration <= 600:
        ap.error("--duration must be 1..600 seconds")
    if not 0 <= args.warmup <= 60:
        ap.error("--warmup must be 0..60 seconds")
    if not 1 <= args.rounds <= 50:
        ap.error("--rounds must be 1..50")
    if not 1 <= args.idle_conns <= 100000:
        ap.error("--idle-conns must be 1..100000")
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    bad = [p for p in proxies if p not in ALL_PROXIES]
    if bad:
        ap.error(f"unknown proxy {bad}; choose from {ALL_PROXIES}")
    if args.baseline:
        if find_sluice(args.baseline) is None:
            ap.error(f"--baseline {args.baseline}: not found")
        args.baseline = find_sluice(args.baseline)
        if "sluice" in proxies and "sluice-base" not in proxies:
            proxies.append("sluice-base")
    else:
        proxies = [p for p in proxies if p != "sluice-base"]
    proxies = [p for p in ALL_PROXIES if p in proxies]       # canonical order
    names = [w["name"] for w in WORKLOADS] + [IDLE, TLS_IDLE]
    if args.only:
        only = [w.strip() for w in args.only.split(",") if w.strip()]
        bad = [w for w in only if w not in names]
        if bad:
            ap.error(f"unknown workload {bad}; choose from {names}")
    else:
        only = names
    workloads = [w for w in WORKLOADS if w["name"] in only]
    do_idle = IDLE in only
    do_tls_idle = TLS_IDLE in only

    cpus = os.sched_getaffinity(0)
    if args.proxy_cpu not in cpus or args.load_cpu not in cpus \
            or args.proxy_cpu == args.load_cpu:
        ap.error(f"--proxy-cpu and --load-cpu must be two different CPUs of {sorted(cpus)}")
    for tool in ("taskset", "wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None and not (tool == "haproxy" and "haproxy" not in proxies):
            sys.exit(f"bench: {tool} not found in PATH")

    notes = []
    if any(p.startswith("sluice") for p in proxies):
        if args.skip_sluice:
            proxies = [p for p in proxies if not p.startswith("sluice")]
            notes.append("sluice skipped (--skip-sluice)")
        elif find_sluice(args.sluice) is None:
            proxies = [p for p in proxies if not p.startswith("sluice")]
            notes.append(f"sluice binary {args.sluice} not found "
                         "(build it first, e.g. `make`); running the others")
        else:
            args.sluice = find_sluice(args.sluice)
    for n in notes:
        log("bench: " + n)
    if not [p for p in proxies if p != "direct" or workloads]:
        sys.exit("bench: nothing to run")

    # What this process gets is what the proxies inherit. HAProxy refuses to
    # start unless its limit holds 2 file descriptors per maxconn: where the
    # hard limit is lower, the idle test opens fewer connections.
    NOFILE = raise_nofile(4 * (args.idle_conns + 1024))
    fit = (NOFILE - 128) // 2 - 1024
    if fit < args.idle_conns:
        notes.append(f"idle test with {fit} connections, not {args.idle_conns}: "
                     f"RLIMIT_NOFILE is {NOFILE} and cannot be raised")
        log("bench: " + notes[-1])
        args.idle_conns = fit
    MAXCONN = args.idle_conns + 1024
    WORKER_CONNS = 2 * args.idle_conns + 1024

    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _libc = None
    # this script stays off the proxy's CPU
    try:
        os.sched_setaffinity(0, {args.load_cpu})
    except OSError:
        pass

    # Ctrl-C and SIGTERM both unwind through the finally blocks
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    est = args.rounds * (len(proxies) * (args.warmup + len(workloads) * args.duration)
                         + (3 * len([p for p in proxies if p != "direct"]) if do_idle else 0)
                         + (20 * len([p for p in proxies if p != "direct"]) if do_tls_idle else 0))
    log(f"bench: {', '.join(proxies)} x {', '.join(w['name'] for w in workloads)}"
        f"{' + idle' if do_idle else ''}{' + tls-idle' if do_tls_idle else ''}; {args.rounds} round(s) of {args.duration}s "
        f"runs, about {est // 60}m{est % 60:02d}s; proxy on CPU {args.proxy_cpu}, "
        f"wrk and backend on CPU {args.load_cpu}")

    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(tmp, 0o755)      # nginx workers run as an unprivileged user
    watchdog = Watchdog(tmp)
    procs = Procs(watchdog)
    runs, idles, failed = [], [], {}
    rc = 0
    t0 = time.monotonic()
    try:
        bench = Bench(args, tmp, procs)
        bench.start_backend()
        log(f"bench: backend nginx pid {bench.backend.pid} on {HOST}:{bench.bport}")
        for rnd in range(1, args.rounds + 1):
            log(f"round {rnd}/{args.rounds}")
            # rotate the order each round so no proxy always runs first
            order = proxies[(rnd - 1) % len(proxies):] + proxies[:(rnd - 1) % len(proxies)]
            for p in order:
                if p in failed:
                    continue
                try:
                    if workloads:
                        runs.extend(bench.run_workloads(p, workloads, rnd))
                    if do_idle and p not in NO_IDLE_TEST:
                        idles.append(bench.idle_test(p, rnd))
                    if do_tls_idle and p not in NO_IDLE_TEST:
                        idles.append(bench.idle_test(p, rnd, tls=True))
                except BenchError as e:
                    failed[p] = str(e)
                    log(f"bench: {p} FAILED, skipped from now on: {e}")
                if bench.backend.proc.poll() is not None:
                    raise BenchError("the backend nginx died:\n"
                                     + tail(os.path.join(tmp, "backend.err")))
    except KeyboardInterrupt:
        log("bench: interrupted, cleaning up")
        rc = 130
    except BenchError as e:
        log(f"bench: {e}")
        rc = 1
    finally:
        procs.stop_all()
        if args.keep_tmp:
            log(f"bench: temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        watchdog.done()

    summary, lines = summarize(runs, idles, proxies, workloads, args)
    print(f"\nsluice bench: {args.rounds} round(s), {args.duration}s per run; "
          f"proxy pinned to CPU {args.proxy_cpu}, wrk + backend nginx to CPU "
          f"{args.load_cpu}; loopback; {time.monotonic() - t0:.0f}s total")
    print("latency in µs; +p50/+p99 = proxy minus direct; CPU µs/req = "
          "(utime+stime of the proxy's processes) / requests")
    for n in notes:
        print("note: " + n)
    for line in lines:
        print(line)
    for p, msg in failed.items():
        print(f"\nFAILED: {p}: {msg}")
    total_errors = sum(r["errors"] for r in runs)
    closed = sum(r["closed"] for r in idles)
    if "sluice" in proxies:
        print("\n== targets (medians of this run; see issues 10 and 11)")
        for line in target_lines(summary):
            print(line)
        print(f"{'errors in all runs':<42}{total_errors + closed:>18}  {'= 0':<18}"
              f"{'met' if total_errors + closed == 0 else 'MISSED'}")
    if total_errors:
        print(f"\nERRORS: {total_errors} wrk errors in total (see the errors "
              "column; details in the progress log above)")
    if closed:
        print(f"\nERRORS: {closed} idle connections were closed by a proxy")
    noisy = [r for r in runs if (r["proxy_cpu_other_pct"] or 0) > 10]
    if noisy:
        print(f"\nnote: {len(noisy)} run(s) saw more than 10% of CPU "
              f"{args.proxy_cpu} used by other processes; numbers are noisy")
    sys.stdout.flush()

    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "meta": {"args": vars(args), "proxies": proxies,
                         "workloads": workloads, "clk_tck": CLK_TCK,
                         "versions": versions(args, proxies), "notes": notes,
                         "failed": failed, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                "runs": runs, "idle": idles, "summary": summary,
            }, f, indent=1)
        log(f"bench: raw results written to {args.json}")
    if rc == 0 and (failed or total_errors or closed):
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
