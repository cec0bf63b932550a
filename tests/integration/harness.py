"""Helpers for the sluice integration tests (Python 3.11 standard library only).

Every test function receives an Env (the env fixture of tests/conftest.py),
which owns the temporary directory, the processes started for the test and
their cleanup:

    def test_something(env):
        b = env.backend("a")                  # real HTTP backend, waits for "ready"
        s = env.sluice([b])                   # sluice in front of it, waits for the port
        r = s.get("/")                        # one request on a fresh raw connection
        assert r.status == 200

Processes are stopped by PID (SIGTERM, then SIGKILL after a deadline) when the
test ends, pass or fail.  A sluice that died on its own, exited non-zero
after SIGTERM, or printed a sanitizer report fails the test.

SLUICE_TEST_WORKERS=N in the environment gives every config built here
(Env.config, Env.routed_config) `workers = N` unless the test sets its own;
unset, sluice runs its default (one worker per CPU).
"""

import hashlib
import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BACKEND_PY = os.path.join(HERE, "backend.py")
sys.path.insert(0, HERE)

import backend as _backend  # noqa: E402  (the shared body pattern)

pattern = _backend.pattern
pattern_bytes = _backend.pattern_bytes
PATTERN_BLOCK = _backend.BLOCK


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


raise_nofile()  # children (sluice, backends) inherit it

_sha_cache = {}


def pattern_sha256(n):
    """sha256 hex of the first n bytes of the backend pattern."""
    if n not in _sha_cache:
        h = hashlib.sha256()
        off = 0
        while off < n:
            k = min(PATTERN_BLOCK, n - off)
            h.update(pattern(off, k))
            off += k
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


_ports_given = set()


def free_port(host="127.0.0.1"):
    """A port nothing listens on now, and not handed out before in this process:
    the kernel may offer a just-closed port again, and a test that keeps one
    unused (a "dead" server) must not see it given to sluice's listener."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value; raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_port(host, port, timeout, proc=None):
    """TCP connect polling: returns once (host, port) accepts a connection."""
    deadline = time.monotonic() + timeout
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("process exited with status %s before %s:%d was ready"
                                 % (proc.returncode, host, port))
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect((host, port))
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("%s:%d not accepting connections after %.1fs" % (host, port, timeout))
        time.sleep(0.02)


def port_refuses(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect((host, port))
            return False
    except OSError:
        return True


def is_sanitized_binary(path):
    """Built with AddressSanitizer or ThreadSanitizer: slower, and its RSS says little."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return any(m in data for m in (b"__asan_init", b"libasan", b"__tsan_init", b"libtsan"))
    except OSError:
        return False


def _cmd_of_pid(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return None


def kill_recorded(pidfile):
    """Used by the runner after a test process was killed: SIGKILLs the
    processes that test recorded (by PID, and only if the command line still
    matches the one recorded)."""
    try:
        with open(pidfile) as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        pid, argv = rec["pid"], [a.encode() for a in rec["argv"]]
        if _cmd_of_pid(pid) == argv:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Lua config generation


def _lua_key(k):
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
        return k
    return "[%s]" % _lua_value(k, 0)


class Lua(str):
    """Lua source written into a config as it is (a hook's function)."""


def _lua_value(v, indent):
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(v, Lua):
        return str(v)
    if v is None or v is False:
        return "false"
    if v is True:
        return "true"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        if not v:
            return "{}"
        return "{\n" + "".join("%s%s,\n" % (pad, _lua_value(x, indent + 1)) for x in v) + end + "}"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{\n" + "".join("%s%s = %s,\n" % (pad, _lua_key(k), _lua_value(x, indent + 1))
                               for k, x in v.items()) + end + "}"
    raise TypeError("cannot write %r as Lua" % (v,))


def lua_config(cfg):
    """Lua source of a config: 'return { ... }' from a Python dict."""
    return "-- generated by tests/integration/harness.py\nreturn " + _lua_value(cfg, 0) + "\n"


# For a test of what one worker does (a balancing algorithm's turns): `extra=ONE_WORKER`.
ONE_WORKER = {"workers": 1}

DEFAULT_TIMEOUTS = {
    "client_header": 10, "client_keepalive": 75, "backend_connect": 5,
    "backend_response": 30, "idle": 30, "shutdown": 3,
}
DEFAULT_LIMITS = {
    "max_request_line": 8192, "max_header_size": 16384,
    "buffer_size": 16384, "max_connections": 10000,
}


# ---------------------------------------------------------------------------
# Raw HTTP client


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []   # [(name, value)] in order
        self.body = b""
        self.body_length = 0
        self.trailers = []
        self.chunked = False
        self.head_bytes = b""

    def header(self, name, default=None):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%d bytes>" % (
            self.status, self.reason, self.headers, self.body_length)


class ConnectionClosed(Exception):
    pass


def h1_only(env, why):
    """A test of HTTP/1.1 itself: skipped where it runs over another front."""
    if env.front != "http/1.1":
        import pytest
        pytest.skip("HTTP/1.1 only: " + why)


def _dechunk(data):
    """The data of a chunked body (no extensions, no trailers)."""
    out = b""
    while True:
        line, data = data.split(b"\r\n", 1)
        n = int(line, 16)
        if n == 0:
            return out
        out, data = out + data[:n], data[n + 2:]


class RawClient:
    """A byte-exact HTTP/1.1 client over one TCP connection."""

    def __init__(self, port, host="127.0.0.1", timeout=15, rcvbuf=None, source=None):
        """source: local address to connect from (e.g. "127.0.0.7": all of 127/8 is loopback)."""
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.timeout = timeout

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        self.close()

    def local_addr(self):
        a = self.sock.getsockname()
        return "%s:%d" % (a[0], a[1])

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def request(self, method, target, headers=(), body=None, version="HTTP/1.1", host="test.local"):
        lines = ["%s %s %s" % (method, target, version)]
        names = {n.lower() for n, _ in headers}
        if host is not None and "host" not in names:
            lines.append("Host: %s" % host)
        for n, v in headers:
            lines.append("%s: %s" % (n, v))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if body:
            data += body
        self.send(data)

    def _fill(self, n=262144):
        try:
            d = self.sock.recv(n)
        except ConnectionResetError:
            d = b""
        if not d:
            return False
        self.buf += d
        return True

    def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > 1 << 20:
                raise AssertionError("line too long in response")
            if not self._fill():
                raise ConnectionClosed("connection closed while reading a line (got %r)"
                                       % bytes(self.buf[:200]))

    def read_exact(self, n, sink):
        while n > 0:
            if not self.buf and not self._fill():
                raise ConnectionClosed("connection closed with %d body bytes missing" % n)
            k = min(n, len(self.buf))
            sink(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k

    def read_head(self):
        r = Response()
        line = self.read_line()
        raw = [line]
        parts = line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError("bad status line %r" % line)
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            line = self.read_line()
            raw.append(line)
            if not line:
                break
            n, sep, v = line.decode("latin-1").partition(":")
            if not sep:
                raise AssertionError("bad header line %r" % line)
            r.headers.append((n, v.strip()))
        r.head_bytes = b"\r\n".join(raw) + b"\r\n"
        return r

    def read_response(self, method="GET", sink=None, allow_1xx=False):
        """Reads one response, framed per RFC 9112.  With sink, the body goes to
        sink(bytes) instead of r.body.  1xx responses are skipped unless allow_1xx."""
        while True:
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101 and not allow_1xx:
                continue
            break
        parts = []
        count = [0]

        def put(b):
            count[0] += len(b)
            if sink:
                sink(b)
            else:
                parts.append(b)

        te = ",".join(r.header_all("transfer-encoding")).lower()
        if method == "HEAD" or r.status < 200 or r.status in (204, 304):
            pass
        elif "chunked" in te:
            r.chunked = True
            while True:
                size_line = self.read_line()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self.read_line()
                        if not t:
                            break
                        n, _, v = t.decode("latin-1").partition(":")
                        r.trailers.append((n.strip(), v.strip()))
                    break
                self.read_exact(size, put)
                crlf = self.read_line()
                if crlf != b"":
                    raise AssertionError("bad chunk terminator %r" % crlf)
        elif r.header("content-length") is not None:
            self.read_exact(int(r.header("content-length")), put)
        else:
            while True:
                if self.buf:
                    put(bytes(self.buf))
                    self.buf.clear()
                if not self._fill():
                    break
        r.body = b"".join(parts)
        r.body_length = count[0]
        return r

    def read_until_closed(self, timeout=5):
        """Reads until the peer closes (EOF or RST).  Returns (closed, data)."""
        data = bytearray(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(data)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False, bytes(data)
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                return True, bytes(data)
            if not d:
                return True, bytes(data)
            data += d

    def assert_unanswered(self, seconds, why):
        """Nothing comes back for seconds (a connection the kernel's backlog holds)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1)
            raise AssertionError("%s: %r" % (why, data))
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(self.timeout)

    def wait_closed(self, timeout=5):
        """True if the peer closes (EOF or RST) within timeout with no more data;
        raises if unexpected bytes arrive, False on timeout."""
        if self.buf:
            raise AssertionError("unexpected extra bytes: %r" % bytes(self.buf[:200]))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError):
                return True
            if not d:
                return True
            raise AssertionError("unexpected extra bytes: %r" % d[:200])


# ---------------------------------------------------------------------------
# Processes


class Backend:
    def __init__(self, env, name, port, log, proc):
        self.env = env
        self.name = name
        self.port = port
        self.addr = "127.0.0.1:%d" % port
        self.log_path = log
        self.proc = proc

    def log_lines(self):
        try:
            with open(self.log_path) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def request_lines(self):
        """Request lines received, in order (without the connection number)."""
        return [l.split(" ", 1)[1] for l in self.log_lines() if " " in l]

    def connections_used(self):
        return {l.split(" ", 1)[0] for l in self.log_lines() if " " in l}

    def stats(self):
        with RawClient(self.port) as c:
            c.request("GET", "/stats")
            return c.read_response().json()

    def stop(self):
        self.env._stop_proc(self.proc, 5)


class Sluice:
    def __init__(self, env, proc, listeners, config_path, stderr_path, access_log):
        self.env = env
        self.proc = proc
        self.pid = proc.pid
        self.listeners = listeners  # [(host, port)]
        self.host, self.port = listeners[0]
        self.config_path = config_path
        self.stderr_path = stderr_path
        self.access_log = access_log
        self.expected_exit = False

    # -- client helpers ----------------------------------------------------
    def connect(self, **kw):
        if self.env.front == "h2":
            import pytest
            pytest.skip("speaks HTTP/1.1 bytes")
        return RawClient(self.port, self.host, **kw)

    def get(self, target, method="GET", headers=(), body=None, version="HTTP/1.1", timeout=15,
            host="test.local", source=None):
        """One request on a fresh connection (Host: host unless headers name one;
        host=None sends none; source: local address to connect from), in the
        protocol the test runs with (env.front)."""
        if self.env.front == "h2":
            return self._get_h2(target, method, headers, body, version, timeout, host, source)
        with self.connect(timeout=timeout, source=source) as c:
            c.request(method, target, headers=headers, body=body, version=version, host=host)
            return c.read_response(method)

    def _get_h2(self, target, method, headers, body, version, timeout, host, source):
        import pytest
        from h2util import H2Client
        if version != "HTTP/1.1" or source or host is None:
            pytest.skip("HTTP/1.x only: %s" % (version if version != "HTTP/1.1" else "a request without Host"
                                               if host is None else "a source address"))
        # What the request says in HTTP/2: Host is :authority, names are lower case, a value's
        # surrounding whitespace is not part of it (RFC 9110 5.5), and a chunked body is a
        # body without content-length.
        fields, chunked = [], False
        for n, v in headers:
            n = (n.decode() if isinstance(n, bytes) else n).lower()
            v = (v.decode("latin-1") if isinstance(v, bytes) else v).strip(" \t")
            if n == "host":
                host = v
            elif n == "transfer-encoding" and v.lower() == "chunked":
                chunked = True
            else:
                fields.append((n, v))
        if isinstance(body, str):
            body = body.encode()
        if chunked:
            body = _dechunk(body)
        c = H2Client(self.port, timeout=timeout)
        try:
            sid = c.request(method, target, headers=fields, body=body, authority=host)
            status, h, data = c.response(sid)
        finally:
            c.close()
        r = Response()
        if status == "reset":
            raise ConnectionClosed("stream reset (error %d)" % h)
        r.version, r.status = "HTTP/2", status
        r.headers = [(n, v) for n, v in c.fields[sid] if not n.startswith(":")]
        r.body = data
        r.body_length = len(data)
        return r

    def url(self, path):
        return "http://%s:%d%s" % (self.host, self.port, path)

    # -- process inspection ------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fds(self):
        """What each open fd is ("socket:[123]", "anon_inode:[eventfd]", a path), for messages."""
        out = []
        for fd in sorted(os.listdir("/proc/%d/fd" % self.pid), key=int):
            try:
                out.append("%s=%s" % (fd, os.readlink("/proc/%d/fd/%s" % (self.pid, fd))))
            except OSError:
                pass
        return out

    def worker_accepts(self):
        """{worker: connections accepted}, from the lines workers log as they stop."""
        return {int(m.group(1)): int(m.group(2)) for m in re.finditer(
            r"\] w(\d+): stopped; it accepted (\d+) connection", self.stderr_text())}

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access_lines(self):
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except (FileNotFoundError, TypeError):
            return []

    def signal(self, sig):
        self.expected_exit = True
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("sluice did not exit within %.1fs" % timeout)


def _assemble(listeners, pools, sites, timeouts, limits, access_log, log_level, extra):
    """The config dict both Env.config and Env.routed_config build, keys in this order."""
    t = dict(DEFAULT_TIMEOUTS)
    t.update(timeouts or {})
    lim = dict(DEFAULT_LIMITS)
    lim.update(limits or {})
    cfg = {"listeners": listeners, "pools": pools}
    if sites is not None:
        cfg["sites"] = sites
    cfg.update({
        "timeouts": t,
        "limits": lim,
        "access_log": access_log if access_log else False,
        "log_level": log_level,
    })
    workers = os.environ.get("SLUICE_TEST_WORKERS")
    if workers:
        cfg["workers"] = int(workers)
    cfg.update(extra or {})
    return cfg


ADMIN_TOKEN = "test-admin-token-0123456789"
PROM_PARSE = os.path.join(HERE, "prom_parse.py")


class Load:
    """Requests on new connections (so every worker serves some) until stopped, in a
    thread; bounded. finish() asserts that every one got 200."""

    def __init__(self, s, path="/", host="test.local"):
        self.s, self.path, self.host = s, path, host
        self.stop = threading.Event()
        self.statuses = []
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        for _ in range(20000):
            if self.stop.is_set():
                return
            try:
                self.statuses.append(self.s.get(self.path, host=self.host, timeout=10).status)
            except Exception as e:  # a failure is counted, not raised in the thread
                self.statuses.append(repr(e))

    def finish(self):
        self.stop.set()
        self.t.join()
        bad = [x for x in self.statuses if x != 200]
        assert not bad and self.statuses, "failed requests under load: %r" % bad[:10]
        return len(self.statuses)


class SlowRequests:
    """n requests of /slow?delay=D on s, each in a thread; returns once all n have reached
    one of backends and at least one has reached `at`. join() gives their statuses."""

    def __init__(self, env, s, backends, at, n=6, delay=1.5):
        self.statuses = []
        self.threads = [threading.Thread(
            target=lambda: self.statuses.append(s.get("/slow?delay=%g" % delay).status))
            for _ in range(n)]
        for t in self.threads:
            t.start()

        def slow_at(x):
            return sum(1 for l in x.request_lines() if "/slow" in l)
        wait_until(lambda: sum(slow_at(x) for x in backends) == n and slow_at(at) >= 1,
                   5 * env.slow, what="the %d slow requests under way, some at %s" % (n, at.addr))

    def join(self):
        for t in self.threads:
            t.join()
        return self.statuses


class Admin:
    """A client of sluice's admin listener (see Env.admin_config)."""

    def __init__(self, port, token):
        self.host, self.port, self.token = "127.0.0.1", port, token

    def request(self, method, path, body=None, token=True, headers=None, timeout=10):
        """(status, headers dict with lower-case names, body bytes); token=False sends none,
        a string sends that one."""
        import http.client
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + (token if isinstance(token, str) else self.token)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get_json(self, path, **kw):
        st, _, body = self.request("GET", path, **kw)
        assert st == 200, "GET %s: %d %r" % (path, st, body[:300])
        return json.loads(body)

    def metrics_text(self):
        st, h, body = self.request("GET", "/metrics", token=False)
        assert st == 200, (st, body[:300])
        assert h["content-type"].startswith("text/plain; version=0.0.4"), h
        return body.decode()

    def metrics(self):
        """The samples of /metrics, as Debian's prometheus_client parser reads them:
        {(sample name, ((label, value), ...) sorted): value}."""
        p = subprocess.run(["/usr/bin/python3", PROM_PARSE], input=self.metrics_text(),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, "the Prometheus parser refused /metrics:\n" + p.stderr[-3000:]
        return {(x["name"], tuple(sorted(x["labels"].items()))): x["value"]
                for x in json.loads(p.stdout)}


def metric(samples, name, **labels):
    """The value of one sample (0 when absent: a family with no such series yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0)


class Env:
    """Per-test environment: temp dir, processes, cleanup."""

    def __init__(self, sluice_path, workdir=None, pidfile=None):
        self.sluice_path = os.path.abspath(sluice_path)
        self.dir = workdir or tempfile.mkdtemp(prefix="sl-")
        os.makedirs(self.dir, exist_ok=True)
        self.pidfile = pidfile
        self.procs = []      # (Popen, kind)
        self.sluices = []
        self.backends = []
        self.sanitized = is_sanitized_binary(self.sluice_path)
        self.slow = 3.0 if self.sanitized else 1.0   # scale factor for deadlines
        self.front = "http/1.1"  # what Sluice.get() speaks (conftest: the `fronts` tests run per front)
        self._front_cert = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def _record(self, proc, argv):
        self.procs.append(proc)
        if self.pidfile:
            with open(self.pidfile, "a") as f:
                f.write(json.dumps({"pid": proc.pid, "argv": argv}) + "\n")

    def popen(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self._record(p, argv)
        return p

    def front_tls(self):
        """The tls block a listener gets when the tests speak HTTP/2 to it (a certificate of a test CA)."""
        if not self._front_cert:
            from tlsutil import CA
            self._front_cert = CA(self.dir, name="front-ca").issue(
                "front", ["test.local", "*.test", "localhost"])
        crt, key = self._front_cert
        return {"certificates": [{"cert": crt, "key": key}]}

    # -- backends ------------------------------------------------------------
    def backend(self, name=None, port=None, idle_close=None, host="127.0.0.1", tls=None):
        """A backend.py; tls=(cert, key) or (cert, key, client_ca) makes it speak HTTPS."""
        name = name or "b%d" % (len(self.backends) + 1)
        port = port or free_port(host)
        log = self.path("backend-%s.log" % name)
        argv = [sys.executable, BACKEND_PY, "--port", str(port), "--host", host,
                "--name", name, "--log", log]
        if idle_close is not None:
            argv += ["--idle-close", str(idle_close)]
        if tls:
            argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
            argv += ["--tls-client-ca", tls[2]] if len(tls) > 2 else []
        errf = open(self.path("backend-%s.stderr" % name), "wb")
        p = self.popen(argv, stdout=subprocess.PIPE, stderr=errf)
        errf.close()
        deadline = time.monotonic() + 15
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                line = p.stdout.readline()
                break
            if p.poll() is not None:
                break
        if line.strip() != b"ready":
            raise AssertionError("backend %s did not become ready (got %r, status %s)"
                                 % (name, line, p.poll()))
        b = Backend(self, name, port, log, p)
        self.backends.append(b)
        return b

    # -- sluice --------------------------------------------------------------
    def admin_config(self, token=ADMIN_TOKEN):
        """An admin = {...} table on a free loopback port (with a token file unless
        token is None), and the Admin client for it: extra={"admin": block}."""
        port = free_port()
        block = {"address": "127.0.0.1:%d" % port}
        if token is not None:
            path = self.path("admin.token")
            with open(path, "w") as f:
                f.write(token + "\n")
            os.chmod(path, 0o600)
            block["token_file"] = path
        return block, Admin(port, token)

    def config(self, servers, timeouts=None, limits=None, pool=None, access_log=None,
               log_level="info", listeners=None, extra=None):
        """A config dict: one listener (or `listeners`) on pool "web" with `servers`
        (Backend objects or "host:port" strings)."""
        srv = [s.addr if isinstance(s, Backend) else s for s in servers]
        p = {"servers": srv, "keepalive_timeout": 60, "connect_backoff": 2}
        p.update(pool or {})
        if listeners is None:
            listeners = [{"address": "127.0.0.1:%d" % free_port(), "pool": "web"}]
        return _assemble(listeners, {"web": p}, None, timeouts, limits, access_log,
                         log_level, extra)

    def routed_config(self, pools, sites, timeouts=None, limits=None, access_log=None,
                      log_level="info", listeners=None, extra=None):
        """A config dict that routes by `sites` (a list of site tables, written as
        given) over `pools`: {name: [servers]} or {name: {"servers": [...], ...}}.
        A server is a Backend, a "host:port" string, or a table whose "address"
        may be a Backend.  The one listener (unless `listeners`) has no pool."""
        def server(x):
            if isinstance(x, Backend):
                return x.addr
            if isinstance(x, dict):
                x = dict(x)
                if isinstance(x.get("address"), Backend):
                    x["address"] = x["address"].addr
            return x

        ps = {}
        for name, p in pools.items():
            p = dict(p) if isinstance(p, dict) else {"servers": list(p)}
            p["servers"] = [server(x) for x in p["servers"]]
            ps[name] = p
        if listeners is None:
            listeners = [{"address": "127.0.0.1:%d" % free_port()}]
        return _assemble(listeners, ps, sites, timeouts, limits, access_log, log_level, extra)

    def sluice(self, servers=None, config=None, config_text=None, wait=True, **kw):
        """Starts sluice.  Either servers (+ config() keywords), a config dict or Lua text."""
        if config_text is None:
            if config is None:
                config = self.config(servers or [], **kw)
            if self.front == "h2":
                for l in config["listeners"]:
                    l.setdefault("tls", self.front_tls())
            config_text = lua_config(config)
            listeners = config["listeners"]
        else:
            listeners = kw.get("listeners") or []
        addrs = []
        for l in listeners:
            a = l["address"]
            m = re.fullmatch(r"\[(.*)\]:(\d+)", a) or re.fullmatch(r"(.*):(\d+)", a)
            addrs.append((m.group(1), int(m.group(2))))
        n = len(self.sluices) + 1
        cfg_path = self.path("sluice-%d.lua" % n)
        with open(cfg_path, "w") as f:
            f.write(config_text)
        err_path = self.path("sluice-%d.stderr" % n)
        access = config.get("access_log") if config else None
        errf = open(err_path, "wb")
        argv = [self.sluice_path, "-c", cfg_path]
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        p = self.popen(argv, stdout=errf, stderr=errf, cwd=self.dir, env=env)
        errf.close()
        s = Sluice(self, p, addrs, cfg_path, err_path, access if isinstance(access, str) and access != "stderr" else None)
        self.sluices.append(s)
        if wait:
            for host, port in addrs:
                wait_port(host, port, 20 * self.slow, proc=p)
        return s

    def check_config(self, text, name="sluice.lua"):
        """Runs `sluice -t -c NAME` in the temp dir; returns CompletedProcess (text)."""
        with open(self.path(name), "w") as f:
            f.write(text)
        return subprocess.run([self.sluice_path, "-t", "-c", name], cwd=self.dir,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30 * self.slow)

    # -- cleanup -------------------------------------------------------------
    def _stop_proc(self, p, grace):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                except OSError:
                    pass
                p.wait(timeout=10)
                return "killed"
        return p.returncode

    def close(self):
        """Stops everything.  Returns a list of problems found with sluice."""
        problems = []
        for s in self.sluices:
            died = s.proc.poll()
            if died is not None and not s.expected_exit:
                problems.append("sluice (pid %d) exited by itself during the test with status %s"
                                % (s.pid, died))
            grace = (DEFAULT_TIMEOUTS["shutdown"] + 10) * self.slow
            rc = self._stop_proc(s.proc, grace)
            # A test that signalled sluice expects it to exit, but never by a signal (a crash).
            if isinstance(rc, int) and rc < 0:
                problems.append("sluice (pid %d) died of signal %d" % (s.pid, -rc))
            if died is None and not s.expected_exit:
                if rc == "killed":
                    problems.append("sluice (pid %d) did not exit within %.0fs of SIGTERM"
                                    % (s.pid, grace))
                elif rc != 0:
                    problems.append("sluice (pid %d) exited with status %s after SIGTERM"
                                    % (s.pid, rc))
            err = s.stderr_text()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer"):
                if marker in err:
                    problems.append("sanitizer report in sluice stderr (%s)" % marker)
                    break
        for p in self.procs:
            if p.poll() is None:
                self._stop_proc(p, 5)
            if p.stdout:
                p.stdout.close()
        return problems

    def stderr_tails(self, n=40):
        out = []
        for i, s in enumerate(self.sluices, 1):
            lines = s.stderr_text().splitlines()
            out.append("--- sluice #%d stderr (last %d of %d lines; %s) ---"
                       % (i, min(n, len(lines)), len(lines), s.stderr_path))
            out.extend(lines[-n:])
        return "\n".join(out)
