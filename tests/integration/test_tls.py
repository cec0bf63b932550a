"""TLS termination: certificates by SNI, protocols, resumption, hostile handshakes, reload."""

import json
import os
import random
import signal
import socket
import ssl
import threading
import time

import hashlib

from harness import ONE_WORKER, free_port, lua_config, pattern_sha256, wait_until
from tlsutil import CA, TLSClient, client_hello, curl_https, peer_subject, s_client


def _tls_listener(port, certs, **tls):
    t = {"certificates": [{"cert": c, "key": k} for c, k in certs]}
    t.update(tls)
    return {"address": "127.0.0.1:%d" % port, "pool": "web", "tls": t}


def _start(env, certs, backend=None, port=None, timeouts=None, access_log=None, **tls):
    b = backend or env.backend()
    port = port or free_port()
    cfg = env.config([b], listeners=[_tls_listener(port, certs, **tls)], timeouts=timeouts,
                     access_log=access_log)
    return env.sluice(config=cfg), port, b


def test_sni_picks_each_names_certificate_and_the_first_for_others(env):
    ca = CA(env.dir)
    a = ca.issue("a", ["a.test", "*.a.test"])
    b = ca.issue("b", ["b.test", "www.b.test"])
    s, port, _ = _start(env, [a, b])
    for name in ("a.test", "b.test", "www.b.test", "x.a.test"):
        r = curl_https(port, name, "/", cacert=ca.crt)
        assert r.returncode == 0, (name, r.stderr)
    assert peer_subject(port, "b.test") == "b.test"
    assert peer_subject(port, "www.b.test") == "b.test"
    assert peer_subject(port, "x.a.test") == "a.test"
    # An unknown name, no SNI at all, and a wildcard two labels deep: the first certificate.
    assert peer_subject(port, "unknown.test") == "a.test"
    assert peer_subject(port, None) == "a.test"
    assert peer_subject(port, "y.x.b.test") == "a.test"
    r = curl_https(port, "y.x.a.test", "/", cacert=ca.crt)
    assert r.returncode == 60, "*.a.test must not cover y.x.a.test: %s" % r.stderr
    assert s.alive()


def test_ecdsa_and_rsa_certificates_side_by_side_for_one_name(env):
    ca = CA(env.dir)
    ec = ca.issue("a-ec", ["a.test"], kind="ec")
    rsa = ca.issue("a-rsa", ["a.test"], kind="rsa")
    s, port, _ = _start(env, [ec, rsa])
    rc, out = s_client(port, ["-servername", "a.test", "-tls1_3", "-sigalgs", "ECDSA+SHA256"])
    assert rc == 0 and "Server public key is 256 bit" in out, out
    rc, out = s_client(port, ["-servername", "a.test", "-tls1_3", "-sigalgs", "RSA-PSS+SHA256"])
    assert rc == 0 and "Server public key is 2048 bit" in out, out
    rc, out = s_client(port, ["-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
    assert rc == 0 and "Server public key is 2048 bit" in out, out
    rc, out = s_client(port, ["-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
    assert rc == 0 and "Server public key is 256 bit" in out, out


def test_protocols_alpn_and_no_renegotiation(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    rc, out = s_client(port, ["-tls1_1"])
    assert rc != 0 and "Cipher is (NONE)" in out, out
    for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(port, [flag, "-alpn", "h2,http/1.1"])
        assert rc == 0 and "New, %s" % proto in out, out
        assert "ALPN protocol: h2" in out, out
        rc, out = s_client(port, [flag, "-alpn", "http/1.1"])
        assert rc == 0 and "ALPN protocol: http/1.1" in out, out
    # A client that speaks none of what sluice does is told so.
    rc, out = s_client(port, ["-tls1_3", "-alpn", "spdy/3.1"])
    assert "no application protocol" in out, out
    # "R" asks s_client to renegotiate; the request after it must not be served.
    rc, out = s_client(port, ["-tls1_2"], input=b"R\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out
    assert "HTTP/1.1 200" not in out, out
    assert s.alive()


def test_http2_false_leaves_h2_out_of_alpn(env):
    ca = CA(env.dir)
    b = env.backend()
    port = free_port()
    listener = _tls_listener(port, [ca.issue("a", ["a.test"])])
    listener["http2"] = False
    env.sluice(config=env.config([b], listeners=[listener]))
    rc, out = s_client(port, ["-alpn", "h2,http/1.1"])
    assert rc == 0 and "ALPN protocol: http/1.1" in out, out
    rc, out = s_client(port, ["-alpn", "h2"])
    assert "no application protocol" in out, out


def test_protocols_key_limits_versions(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])], protocols=["TLSv1.3"])
    rc, out = s_client(port, ["-tls1_2"])
    assert rc != 0, out
    rc, out = s_client(port, ["-tls1_3"])
    assert rc == 0 and "New, TLSv1.3" in out, out


def _resumed(port, sess, args):
    # The request keeps the connection open long enough for a TLS 1.3 ticket to arrive.
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    rc, out = s_client(port, ["-sess_out", sess, "-ign_eof", *args], input=req)
    assert rc == 0 and "HTTP/1.1 200" in out, out
    rc, out = s_client(port, ["-sess_in", sess, "-ign_eof", "-msg", *args], input=req)
    assert rc == 0 and "HTTP/1.1 200" in out, out
    if "-tls1_3" in args:
        # A TLS 1.3 client uses a ticket once: a resumed session must bring the next one.
        assert "NewSessionTicket" in out, "no new ticket after a TLS 1.3 resumption:\n" + out
    return "Reused, " in out


def test_session_resumption_by_ticket_and_by_cache_and_across_reload(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    assert _resumed(port, env.path("t13"), ["-tls1_3"]), "TLS 1.3 ticket"
    assert _resumed(port, env.path("t12"), ["-tls1_2"]), "TLS 1.2 ticket"
    assert _resumed(port, env.path("c12"), ["-tls1_2", "-no_ticket"]), "TLS 1.2 session cache"
    # A ticket from before a reload (which rotates the key) still resumes after it.
    sess = env.path("before")
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    rc, out = s_client(port, ["-sess_out", sess, "-ign_eof", "-tls1_3"], input=req)
    assert rc == 0, out
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: "configuration reloaded" in s.stderr_text(), 10 * env.slow, what="the reload")
    rc, out = s_client(port, ["-sess_in", sess, "-ign_eof", "-tls1_3"], input=req)
    assert rc == 0 and "Reused, TLSv1.3" in out, out


def test_https_request_reaches_backend_with_forwarded_proto_and_is_logged(env):
    ca = CA(env.dir)
    log = env.path("access.log")
    s, port, b = _start(env, [ca.issue("a", ["a.test"])], access_log=log)
    r = curl_https(port, "a.test", "/headers", cacert=ca.crt,
                   extra=["-H", "X-Forwarded-Proto: http"])
    assert r.returncode == 0, r.stderr
    hdrs = [(n.lower(), v) for n, v in json.loads(r.stdout)["headers"]]
    assert ("x-forwarded-proto", "https") in hdrs and ("x-forwarded-proto", "http") not in hdrs, hdrs
    wait_until(lambda: any(l.endswith(" TLSv1.3 a.test HTTP/2.0") and " /headers " in l for l in s.access_lines()),
               10 * env.slow, what="the access log line with TLS and SNI")
    # Keep-alive over TLS, and a body bigger than a record.
    with TLSClient(port, "a.test", cafile=ca.crt) as c:
        for _ in range(3):
            status, h, body = c.get("/size/100000")
            assert status == 200 and len(body) == 100000
    assert len(b.connections_used()) <= 2


def test_handshake_timeout_cuts_a_stalled_client_while_others_are_served(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])],
                        timeouts={"tls_handshake": 1, "client_header": 30})
    stalled = socket.create_connection(("127.0.0.1", port), timeout=15)
    stalled.sendall(client_hello())
    silent = socket.create_connection(("127.0.0.1", port), timeout=15)
    t0 = time.monotonic()
    # Others are served meanwhile.
    for _ in range(5):
        with TLSClient(port, "a.test", cafile=ca.crt) as c:
            assert c.get("/")[0] == 200
    for sock in (stalled, silent):
        while True:
            try:
                if not sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        took = time.monotonic() - t0
        assert 0.8 <= took < 5 * env.slow, took
        sock.close()


def test_alpn_picks_the_front_and_a_client_without_alpn_gets_the_listeners(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    for alpn, settled in (("http/1.1", "http/1.1"), ("http/1.0", "http/1.0"), (None, None)):
        rc, out = s_client(port, ["-ign_eof"] + (["-alpn", alpn] if alpn else []), input=req)
        assert rc == 0 and "HTTP/1.1 200" in out, (alpn, out)
        assert ("ALPN protocol: %s" % settled if settled else "No ALPN negotiated") in out, out
    assert s.alive()


def test_a_stop_does_not_wait_for_a_handshake_under_way(env):
    ca = CA(env.dir)
    port = free_port()
    cfg = env.config([env.backend()], listeners=[_tls_listener(port, [ca.issue("a", ["a.test"])])],
                     timeouts={"tls_handshake": 30, "client_header": 30, "shutdown": 30},
                     extra=ONE_WORKER)
    s = env.sluice(config=cfg)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=15)
    stalled.sendall(client_hello()[:10])  # a ClientHello's first bytes, then nothing
    # One worker accepts in order: once a later client is served, the stalled one is a session.
    with TLSClient(port, "a.test", cafile=ca.crt) as c:
        assert c.get("/")[0] == 200
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    assert s.wait_exit(20 * env.slow) == 0
    assert time.monotonic() - t0 < 5 * env.slow, "a handshake held up the stop"
    assert stalled.recv(100) == b""
    stalled.close()


def test_plain_http_and_garbage_on_a_tls_port(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
    assert data.startswith(b"HTTP/1.1 400 ") and b"HTTPS" in data, data
    rnd = random.Random(7)
    for n in (1, 5, 100, 5000):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(bytes(rnd.randrange(256) for _ in range(n)))
            c.shutdown(socket.SHUT_WR)
            try:
                while c.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    assert s.alive()
    assert curl_https(port, "a.test", "/", cacert=ca.crt).returncode == 0


def test_1000_handshakes_aborted_at_random_points_leave_no_fd_behind(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    assert curl_https(port, "a.test", "/", cacert=ca.crt).returncode == 0
    baseline = s.fd_count()
    hello = client_hello()
    rnd = random.Random(11)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for i in range(1000):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        how = rnd.randrange(4)
        if how == 0:
            c.sendall(hello[:rnd.randrange(1, len(hello))])
        elif how == 1:
            c.sendall(hello)
            c.recv(rnd.randrange(1, 2000))  # part of the server's flight, then gone
        elif how == 2:
            tc = ctx.wrap_socket(c, server_hostname="a.test")
            c = tc  # the handshake is done; leave without a word
        if rnd.randrange(2):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    assert s.alive()
    wait_until(lambda: s.fd_count() <= baseline, 10 * env.slow,
               what="fds back at baseline (%d)" % baseline)
    assert curl_https(port, "a.test", "/", cacert=ca.crt).returncode == 0


def test_config_errors_name_the_file_and_line(env):
    ca = CA(env.dir)
    ca.issue("a", ["a.test"])
    ca.issue("b", ["b.test"])
    ca.issue("old", ["old.test"], expired=True)
    base = """return {
  listeners = { { address = "127.0.0.1:%d", pool = "p",
      tls = {
        certificates = {
          { cert = "%s", key = "%s" },
        },%s
      } } },
  pools = { p = { servers = { "127.0.0.1:1" } } },
}
"""
    port = free_port()
    r = env.check_config(base % (port, "a.crt", "a.key", ""))
    assert r.returncode == 0, r.stderr
    r = env.check_config(base % (port, "missing.crt", "a.key", ""))
    assert r.returncode == 1 and "sluice.lua:5:" in r.stderr and "missing.crt" in r.stderr, r.stderr
    r = env.check_config(base % (port, "a.crt", "b.key", ""))
    assert r.returncode == 1 and "sluice.lua:5:" in r.stderr and "does not match" in r.stderr, r.stderr
    r = env.check_config(base % (port, "a.crt", "nokey.key", ""))
    assert r.returncode == 1 and "nokey.key" in r.stderr, r.stderr
    with open(env.path("a.key")) as f:
        assert f.read()[-40:] not in r.stderr + r.stdout
    r = env.check_config(base % (port, "old.crt", "old.key", ""))
    assert r.returncode == 0, r.stderr
    assert "sluice.lua:5: warning:" in r.stderr and "expired" in r.stderr, r.stderr
    r = env.check_config(base % (port, "a.crt", "a.key", '\n        protocols = { "TLSv1.1" },'))
    assert r.returncode == 1 and "sluice.lua:7:" in r.stderr and "TLSv1.1" in r.stderr, r.stderr
    r = env.check_config(base % (port, "a.crt", "a.key", '\n        ciphers = "ALL",'))
    assert r.returncode == 1 and "unknown key" in r.stderr, r.stderr
    r = env.check_config(base % (port, "a.crt", "a.key", '\n        certificate_dir = "nodir",'))
    assert r.returncode == 1 and "sluice.lua:7:" in r.stderr and "nodir" in r.stderr, r.stderr


def test_certificate_dir_serves_every_pair_in_it(env):
    ca = CA(env.dir)
    d = os.path.join(env.dir, "certs")
    os.mkdir(d)
    for name in ("one.test", "two.test", "three.test"):
        crt, key = ca.issue(name, [name])
        os.rename(crt, os.path.join(d, name + ".crt"))
        os.rename(key, os.path.join(d, name + ".key"))
    # A .pem holding its key too.
    crt, key = ca.issue("four.test", ["four.test"])
    with open(os.path.join(d, "four.pem"), "w") as out:
        out.write(open(crt).read() + open(key).read())
    port = free_port()
    b = env.backend()
    cfg = env.config([b], listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web",
                                      "tls": {"certificate_dir": "certs"}}])
    s = env.sluice(config=cfg)
    for name in ("one.test", "two.test", "three.test", "four.test"):
        r = curl_https(port, name, "/", cacert=ca.crt)
        assert r.returncode == 0, (name, r.stderr)
    assert "(TLS, 4 certificate(s))" in s.stderr_text()


def test_reload_swaps_the_certificate_without_dropping_a_connection(env):
    ca = CA(env.dir)
    first = ca.issue("first", ["a.test"])
    port = free_port()
    b = env.backend()
    cfg = env.config([b], listeners=[_tls_listener(port, [first])])
    s = env.sluice(config=cfg)
    with open(first[0]) as f:
        first_pem = f.read()
    kept = TLSClient(port, "a.test", cafile=ca.crt)
    assert kept.get("/")[0] == 200
    second = ca.issue("second", ["a.test", "new.test"])
    with open(s.config_path, "w") as f:
        f.write(lua_config(env.config([b], listeners=[_tls_listener(port, [second])])))
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: "configuration reloaded" in s.stderr_text(), 10 * env.slow, what="the reload")
    r = curl_https(port, "new.test", "/", cacert=ca.crt)
    assert r.returncode == 0, r.stderr
    with TLSClient(port, "a.test", cafile=ca.crt) as c:
        pem = ssl.DER_cert_to_PEM_cert(c.sock.getpeercert(binary_form=True))
        assert pem.split()[2:5] != first_pem.split()[2:5]
        assert c.get("/")[0] == 200
    # The connection from before the reload still works, on its old certificate.
    assert kept.get("/")[0] == 200
    kept.close()


def test_200_mb_over_tls_to_a_slow_reader_with_bounded_rss(env):
    ca = CA(env.dir)
    s, port, _ = _start(env, [ca.issue("a", ["a.test"])])
    n = 200 << 20
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock = ssl.create_default_context(cafile=ca.crt).wrap_socket(raw, server_hostname="a.test")
    sock.sendall(b"GET /size/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % n)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        assert d, "closed before the head"
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % n in head, head
    h = hashlib.sha256(rest)
    got = len(rest)
    samples = []
    # Slow: ~2 s of small reads; sluice must hold the backend back, not buffer.
    t_end = time.monotonic() + 2
    while time.monotonic() < t_end:
        d = sock.recv(16384)
        assert d, "closed after %d bytes" % got
        got += len(d)
        h.update(d)
        samples.append(s.rss_kb())
        time.sleep(0.01)
    block = bytearray(1 << 20)
    mv = memoryview(block)
    next_sample = got
    while got < n:
        k = sock.recv_into(block, min(len(block), n - got))
        assert k, "closed after %d of %d bytes" % (got, n)
        h.update(mv[:k])
        got += k
        if got >= next_sample:
            samples.append(s.rss_kb())
            next_sample += 8 << 20
    sock.close()
    assert h.hexdigest() == pattern_sha256(n), "the body differs from what the backend sent"
    # OpenSSL takes and frees a record buffer per record: under ASan all of it sits in the
    # quarantine, so RSS says nothing there; the release build (make test) judges it.
    if not env.sanitized:
        assert max(samples) < 64 * 1024, "RSS peaked at %d KiB" % max(samples)


def test_handshakes_are_counted_in_metrics_ok_and_failed(env):
    from harness import metric, wait_port
    ca = CA(env.dir)
    b = env.backend()
    port = free_port()
    block, admin = env.admin_config()
    cfg = env.config([b], listeners=[_tls_listener(port, [ca.issue("a", ["a.test"])])],
                     extra={"admin": block})
    env.sluice(config=cfg)
    wait_port("127.0.0.1", admin.port, 10 * env.slow)

    def counts():
        m = admin.metrics()
        return (metric(m, "sluice_tls_handshakes_total", result="ok"),
                metric(m, "sluice_tls_handshakes_total", result="failed"))
    # The harness's readiness probe connected and left: that is a failed handshake already.
    probes = wait_until(lambda: counts()[1] >= 1 and counts(), 5 * env.slow, what="the probe")[1]
    for _ in range(3):
        assert curl_https(port, "a.test", "/", cacert=ca.crt).returncode == 0
    for _ in range(2):  # plain HTTP to the TLS port: no handshake completes
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            while c.recv(4096):
                pass
    wait_until(lambda: counts() == (3, probes + 2), 5 * env.slow,
               what="3 handshakes done and 2 more failed")
