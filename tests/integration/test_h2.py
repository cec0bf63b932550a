"""HTTP/2 to clients: ALPN, streams as transactions, bodies both ways, and the translation to HTTP/1.1."""

import json
import socket
import ssl

import h2.events

from h2util import H2Client
from harness import free_port, lua_config, pattern_sha256, wait_until
from tlsutil import CA, curl_https


def _start(env, backend=None, http2=None, limits=None, timeouts=None, servers=None, pool=None):
    ca = CA(env.dir)
    crt, key = ca.issue("a", ["a.test"])
    b = backend or env.backend()
    port = free_port()
    listener = {"address": "127.0.0.1:%d" % port, "pool": "web",
                "tls": {"certificates": [{"cert": crt, "key": key}]}}
    if http2 is not None:
        listener["http2"] = http2
    cfg = env.config(servers or [b], listeners=[listener], limits=limits, timeouts=timeouts,
                     pool=pool)
    return env.sluice(config=cfg), port, ca, b


def test_curl_speaks_h2_and_gets_the_backends_answer(env):
    s, port, ca, b = _start(env)
    r = curl_https(port, "a.test", "/size/100000", cacert=ca.crt,
                   extra=["--http2", "-o", env.path("out"), "-w", "%{http_version} %{http_code}"])
    assert r.returncode == 0 and r.stdout == "2 200", (r.stdout, r.stderr)
    with open(env.path("out"), "rb") as f:
        body = f.read()
    assert len(body) == 100000 and pattern_sha256(100000) == __import__("hashlib").sha256(body).hexdigest()
    # HTTP/1.1 still, to a client that asks for it.
    r = curl_https(port, "a.test", "/", cacert=ca.crt, extra=["--http1.1", "-w", " %{http_version}"])
    assert r.returncode == 0 and r.stdout.endswith(" 1.1"), r.stdout


def test_many_streams_at_once_on_one_connection(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    sids = [c.request("GET", "/size/%d" % (1000 * (i + 1))) for i in range(20)]
    for i, sid in enumerate(sids):
        status, h, body = c.response(sid)
        assert status == 200 and len(body) == 1000 * (i + 1), (status, h)
    c.close()


def test_the_backend_gets_http1_with_host_cookie_and_forwarding_headers(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    sid = c.request("GET", "/headers?x=1", headers=[("cookie", "a=1"), ("x-custom", "v"),
                                                    ("cookie", "b=2")])
    status, h, body = c.response(sid)
    assert status == 200
    got = json.loads(body)
    hs = [(k.lower(), v) for k, v in got["headers"]]
    assert got["request_line"] == "GET /headers?x=1 HTTP/1.1", got["request_line"]
    assert ("host", "a.test") in hs and ("cookie", "a=1; b=2") in hs, hs
    assert ("x-custom", "v") in hs and ("x-forwarded-proto", "https") in hs, hs
    assert ("x-forwarded-for", "127.0.0.1") in hs, hs
    # The response comes back without HTTP/1.1's connection headers.
    assert "connection" not in h and "transfer-encoding" not in h, h
    for path in ("/close", "/size/100?chunked=1"):  # Connection: close; Transfer-Encoding: chunked
        status, h, body = c.response(c.request("GET", path))
        assert status == 200 and "connection" not in h and "transfer-encoding" not in h, (path, h)
    c.close()


def test_a_request_body_with_content_length_reaches_the_backend(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    body = bytes(range(256)) * 1000  # more than a window: WINDOW_UPDATEs must follow
    sid = c.request("POST", "/sha256", headers=[("content-length", str(len(body)))], body=body)
    status, h, rbody = c.response(sid)
    assert status == 200, (status, rbody)
    got = json.loads(rbody)
    assert got["length"] == len(body) and got["sha256"] == __import__("hashlib").sha256(body).hexdigest()
    c.close()


def test_authority_and_host_that_disagree_are_refused(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    sid = c.request("GET", "/", headers=[("host", "evil.test")])
    r = c.response(sid)
    assert r[0] == "reset" and r[1] == 1, r  # PROTOCOL_ERROR
    sid = c.request("GET", "/")  # the connection carries on
    assert c.response(sid)[0] == 200
    assert b.request_lines() == ["GET / HTTP/1.1"]
    c.close()


def test_local_errors_answer_the_stream_not_the_connection(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    sid = c.request("GET", "/status/503")
    assert c.response(sid)[0] == 503
    sid = c.request("GET", "/")
    assert c.response(sid)[0] == 200
    c.close()


# Each is refused with a stream error and never reaches the backend (RFC 9113 8.2, 8.3; the
# h2 -> h1 desyncs of "HTTP/2: the sequel is always worse").
BAD_HEADS = [
    ("uppercase name", [("X-Upper", "1")]),
    ("CR in a value", [("x-a", "a\rb")]),
    ("LF in a value", [("x-a", "a\nGET /smuggled HTTP/1.1")]),
    ("NUL in a value", [("x-a", "a\0b")]),
    ("LF in a name", [("x-a\nb", "1")]),
    ("connection", [("connection", "close")]),
    ("keep-alive", [("keep-alive", "5")]),
    ("proxy-connection", [("proxy-connection", "close")]),
    ("transfer-encoding", [("transfer-encoding", "chunked")]),
    ("upgrade", [("upgrade", "websocket")]),
    ("te other than trailers", [("te", "gzip")]),
    ("pseudo after regular", [("x-a", "1"), (":foo", "x")]),
    ("unknown pseudo", [(":foo", "x")]),
]


def _raw_request(c, pseudo, regular, end=True):
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, pseudo + regular, end_stream=end)
    c.flush()
    return sid


def test_heads_that_would_desync_an_http1_backend_are_refused(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    base = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "a.test")]
    for what, extra in BAD_HEADS:
        sid = _raw_request(c, base, extra)
        r = c.response(sid)
        assert r[0] == "reset" and r[1] == 1, (what, r)
    for what, pseudo in [
        ("empty path", [(":method", "GET"), (":path", ""), (":scheme", "https"), (":authority", "a.test")]),
        ("path without /", [(":method", "GET"), (":path", "x"), (":scheme", "https"), (":authority", "a.test")]),
        ("space in path", [(":method", "GET"), (":path", "/a b"), (":scheme", "https"), (":authority", "a.test")]),
        ("space in method", [(":method", "GET /x"), (":path", "/"), (":scheme", "https"), (":authority", "a.test")]),
        ("repeated pseudo", [(":method", "GET"), (":method", "GET"), (":path", "/"), (":scheme", "https")]),
        ("no path", [(":method", "GET"), (":scheme", "https"), (":authority", "a.test")]),
    ]:
        sid = _raw_request(c, pseudo, [])
        r = c.response(sid)
        assert r[0] == "reset" and r[1] == 1, (what, r)
    sid = c.request("GET", "/")  # the connection is still good
    assert c.response(sid)[0] == 200
    assert b.request_lines() == ["GET / HTTP/1.1"], b.request_lines()
    c.close()


def test_a_content_length_that_disagrees_with_the_data_is_refused(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    for declared, sent in ((10, b"x" * 20), (20, b"x" * 10)):
        sid = c.request("POST", "/echo", headers=[("content-length", str(declared))], body=sent)
        r = c.response(sid)
        assert r[0] == "reset" and r[1] == 1, (declared, r)
    sid = c.request("GET", "/")
    assert c.response(sid)[0] == 200
    # What the backend got of a refused body never formed a request: its connections are closed.
    assert [l for l in b.request_lines() if l != "POST /echo HTTP/1.1"] == ["GET / HTTP/1.1"]
    c.close()


def _frames(sock):
    """The frames the server sends from here on, parsed with hyperframe (python-h2 stops at a GOAWAY)."""
    from hyperframe.frame import Frame
    data = b""
    while True:
        while len(data) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            frame.parse_body(memoryview(data[9:9 + length]))
            data = data[9 + length:]
            yield frame
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk


def test_sigterm_sends_goaway_and_lets_open_streams_finish(env):
    from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame
    s, port, ca, b = _start(env, timeouts={"shutdown": 10})
    c = H2Client(port)
    slow = c.request("GET", "/slow?delay=1")
    s.signal(__import__("signal").SIGTERM)
    goaway, status_seen, ended = None, False, False
    for f in _frames(c.sock):
        if isinstance(f, GoAwayFrame):
            goaway = f
        elif isinstance(f, HeadersFrame) and f.stream_id == slow:
            status_seen = True
        elif isinstance(f, DataFrame) and f.stream_id == slow and "END_STREAM" in f.flags:
            ended = True
    assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == slow, goaway
    assert status_seen and ended, "the open stream was not finished"
    assert s.wait_exit(10 * env.slow) == 0


def test_nghttp_gets_a_page_over_h2(env):
    import subprocess
    s, port, ca, b = _start(env)
    r = subprocess.run(["nghttp", "-nv", "https://127.0.0.1:%d/size/5000" % port],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ":status: 200" in r.stdout and "END_STREAM" in r.stdout, r.stdout


def test_a_request_body_of_unknown_length_goes_chunked(env):
    import hashlib
    s, port, ca, b = _start(env)
    c = H2Client(port)
    for body in (bytes(range(256)) * 800, b""):
        sid = c.request("POST", "/sha256", body=body)  # no content-length: HTTP/1.1 needs chunks
        status, h, rbody = c.response(sid)
        assert status == 200, (status, rbody)
        got = json.loads(rbody)
        assert got == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                       "chunked": True}, got
    # The backend's connection carries on after the last chunk: it was framed right.
    sid = c.request("GET", "/")
    assert c.response(sid)[0] == 200
    c.close()


def test_a_chunked_body_is_replayed_whole_on_another_server(env):
    a, b = env.backend("A"), env.backend("B")
    s, port, ca, _ = _start(env, backend=a, servers=[a, b],
                            pool={"retry": {"on": ["error"], "budget": 100}})
    c = H2Client(port)
    body = b"replay me " * 1000
    for i in range(4):
        sid = c.request("PUT", "/reset?send=0&fail_on=A&i=%d" % i, body=body)  # idempotent, no length
        status, h, rbody = c.response(sid)
        assert status == 200 and h["x-backend"] == "B" and rbody == body, (i, status, h, len(rbody))
    assert len(a.request_lines()) >= 1, "no attempt reached A: nothing was replayed"
    c.close()


def test_an_idle_connection_gets_goaway_and_is_closed(env):
    import time
    from hyperframe.frame import GoAwayFrame
    s, port, ca, b = _start(env, timeouts={"client_keepalive": 1})
    c = H2Client(port)
    sid = c.request("GET", "/")
    assert c.response(sid)[0] == 200
    t0 = time.monotonic()
    frames = list(_frames(c.sock))  # until sluice closes
    took = time.monotonic() - t0
    assert any(isinstance(f, GoAwayFrame) and f.error_code == 0 for f in frames), frames
    assert 0.5 <= took < 5 * env.slow, took


def test_the_access_log_and_the_hook_say_http2(env):
    ca = CA(env.dir)
    crt, key = ca.issue("a", ["a.test"])
    b = env.backend()
    port = free_port()
    log = env.path("access.log")
    cfg = env.config([b], listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web",
                                      "tls": {"certificates": [{"cert": crt, "key": key}]}}],
                     access_log=log, extra={"access_log_format": "json"})
    text = lua_config(cfg).replace("return {", """return {
  hook = function(r) return { set_headers = { ["X-Protocol"] = r.protocol } } end,""", 1)
    s = env.sluice(config_text=text, listeners=cfg["listeners"])
    c = H2Client(port)
    sid = c.request("GET", "/headers")
    status, h, body = c.response(sid)
    assert status == 200
    assert ["X-Protocol", "HTTP/2.0"] in json.loads(body)["headers"], body
    r = curl_https(port, "a.test", "/headers", cacert=ca.crt, extra=["--http1.1"])
    assert '["X-Protocol", "HTTP/1.1"]' in r.stdout, r.stdout
    def logged():
        with open(log) as f:
            return [json.loads(l) for l in f.read().splitlines()]
    lines = wait_until(lambda: len(logged()) >= 2 and logged(), 10 * env.slow, what="two access-log lines")
    assert [l["protocol"] for l in lines] == ["HTTP/2.0", "HTTP/1.1"], lines
    c.close()


def test_chromium_loads_a_page_over_h2(env):
    import os
    import subprocess
    from test_status_page import chromium
    ca = CA(env.dir)
    crt, key = ca.issue("a", ["a.test"])
    b = env.backend()
    port = free_port()
    cfg = env.config([b], listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web",
                                      "tls": {"certificates": [{"cert": crt, "key": key}]}}])
    # The page is sluice's own answer (the hook's); what its script fetches comes from the backend.
    page = ("<html><body><p id=nav></p><p id=sub></p><script>"
            "document.getElementById('nav').textContent = 'nav=' + performance.getEntries()[0].nextHopProtocol;"
            "fetch('/size/3000').then(r => r.text()).then(t => { const e = performance.getEntriesByType('resource')"
            ".find(e => e.name.includes('/size/3000')); document.getElementById('sub').textContent ="
            " 'sub=' + e.nextHopProtocol + ' ' + t.length; });</script></body></html>")
    text = lua_config(cfg).replace("return {", """return {
  hook = function(r)
    if r.path == "/" then return { status = 200, body = %s, headers = { ["Content-Type"] = "text/html" } } end
  end,""" % json.dumps(page), 1)
    env.sluice(config_text=text, listeners=cfg["listeners"])
    # The test CA trusted as a user would: in the NSS database of the browser's HOME.
    home = env.path("home")
    nssdb = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nssdb)
    for argv in (["certutil", "-d", "sql:" + nssdb, "-N", "--empty-password"],
                 ["certutil", "-d", "sql:" + nssdb, "-A", "-t", "C,,", "-n", "sluice-test", "-i", ca.crt]):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = home
    try:
        dom = chromium(env, "https://a.test:%d/" % port, "--dump-dom",
                       "--host-resolver-rules=MAP a.test 127.0.0.1")
    finally:
        os.environ["HOME"] = old_home or ""
    assert "nav=h2" in dom and "sub=h2 3000" in dom, dom[-2000:]


def test_an_early_answer_ends_the_stream_and_the_body_still_reaches_the_backend(env):
    s, port, ca, b = _start(env)
    c = H2Client(port)
    body = bytes(range(256)) * 4096  # 1 MiB: many windows
    sid = c.request("PUT", "/early", headers=[("content-length", str(len(body)))], body=body)
    status, h, rbody = c.response(sid)
    assert status == 200 and rbody == b"ok", (status, rbody)
    # Answered before its body was read: every byte still reached the backend ...
    wait_until(lambda: [l for l in b.request_lines() if "BODY" in l], 10 * env.slow, what="the whole body")
    assert [l for l in b.request_lines() if "BODY" in l] == ["BODY %d" % len(body)], b.request_lines()
    # ... and its connection, reused, carries the next request.
    sid = c.request("GET", "/")
    assert c.response(sid)[0] == 200
    assert len(b.connections_used()) == 1, b.connections_used()
    c.close()


def test_a_connection_that_reached_h2_max_requests_gets_goaway_and_its_streams_finish(env):
    from hyperframe.frame import DataFrame, GoAwayFrame
    s, port, ca, b = _start(env, limits={"h2_max_requests": 3})
    c = H2Client(port)
    sids = [c.request("GET", "/size/100?i=%d" % i) for i in range(5)]
    goaway, ended = None, set()
    for f in _frames(c.sock):
        if isinstance(f, GoAwayFrame):
            goaway = f
        elif isinstance(f, DataFrame) and "END_STREAM" in f.flags:
            ended.add(f.stream_id)
    assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == sids[2], goaway
    assert ended == set(sids[:3]), ended  # the first three answered; the rest never began
    assert len(b.request_lines()) == 3, b.request_lines()


def test_a_reload_that_changes_http2_settings_sends_goaway_and_one_that_does_not_keeps_connections(env):
    import signal
    from hyperframe.frame import GoAwayFrame
    ca = CA(env.dir)
    crt, key = ca.issue("a", ["a.test"])
    b = env.backend()
    port = free_port()
    listener = {"address": "127.0.0.1:%d" % port, "pool": "web",
                "tls": {"certificates": [{"cert": crt, "key": key}]}}

    def write(limits, timeouts):
        with open(s.config_path, "w") as f:
            f.write(lua_config(env.config([b], listeners=[dict(listener)], limits=limits, timeouts=timeouts)))

    s = env.sluice(config=env.config([b], listeners=[dict(listener)]))
    s.expected_exit = False
    c = H2Client(port)
    assert c.response(c.request("GET", "/"))[0] == 200
    # Another timeout only: the connection carries on.
    write(None, {"backend_response": 30})
    s.signal(signal.SIGHUP)
    wait_until(lambda: s.stderr_text().count("configuration reloaded") == 1, 10 * env.slow, what="a reload")
    assert c.response(c.request("GET", "/?after=1"))[0] == 200
    # Other HTTP/2 settings: GOAWAY, and the stream begun before it still finishes.
    slow = c.request("GET", "/slow?delay=1")
    write({"h2_max_concurrent_streams": 10}, {"backend_response": 30})
    s.signal(signal.SIGHUP)
    frames = list(_frames(c.sock))  # until sluice ends the connection
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == 0 and goaways[0].last_stream_id == slow, frames
    assert any(getattr(f, "stream_id", 0) == slow and "END_STREAM" in f.flags for f in frames), frames
