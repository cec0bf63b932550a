"""TLS to backends: verification, the name checked and sent, mTLS, keep-alive, resumption, health checks."""

import json

from harness import ONE_WORKER, wait_until
from tlsutil import CA


def _pool(b, **tls):
    return {"tls": tls, "connect_backoff": 5}


def test_backend_certificate_from_the_pools_ca(env):
    ca = CA(env.dir)
    b = env.backend(tls=ca.issue("api", ["api.internal"]))
    # One worker: idle connections are kept per worker (README: workers).
    s = env.sluice([b], pool={"tls": {"ca": ca.crt, "name": "api.internal"}}, extra=ONE_WORKER)
    r = s.get("/headers")
    assert r.status == 200, r
    j = r.json()
    assert j["client_cert"] is None
    # Keep-alive over TLS: one backend connection for 100 requests.
    with s.connect() as c:
        for i in range(100):
            c.request("GET", "/size/%d" % (i * 100))
            r = c.read_response()
            assert r.status == 200 and len(r.body) == i * 100
    assert len(b.connections_used()) == 1, b.connections_used()


def test_backend_address_is_the_name_checked_without_one(env):
    ca = CA(env.dir)
    b = env.backend(tls=ca.issue("api", ["127.0.0.1"]))
    s = env.sluice([b], pool={"tls": {"ca": ca.crt}})
    assert s.get("/").status == 200


def _failure(env, b, tls, reason):
    log = env.path("access.log")
    s = env.sluice([b], pool=dict(_pool(b), tls=tls), access_log=log)
    r = s.get("/")
    assert r.status == 502, r
    wait_until(lambda: "TLS handshake failed" in s.stderr_text(), 10 * env.slow, what="the log line")
    err = s.stderr_text()
    assert reason in err and b.addr in err, err
    # Counted by passive health: the server is out, the next request is not even tried.
    r = s.get("/")
    assert r.status == 503, r
    assert b.request_lines() == []


def test_wrong_name_is_502_with_the_reason_logged(env):
    ca = CA(env.dir)
    b = env.backend(tls=ca.issue("api", ["api.internal"]))
    _failure(env, b, {"ca": ca.crt, "name": "other.internal"}, "hostname mismatch")


def test_untrusted_ca_is_502_with_the_reason_logged(env):
    ca, other = CA(env.dir), CA(env.dir, name="other", cn="another CA")
    b = env.backend(tls=other.issue("api", ["api.internal"]))
    _failure(env, b, {"ca": ca.crt, "name": "api.internal"}, "unable to get local issuer certificate")


def test_verify_false_takes_any_certificate_with_a_warning(env):
    other = CA(env.dir, name="other", cn="another CA")
    b = env.backend(tls=other.issue("api", ["whatever"]))
    s = env.sluice([b], pool={"tls": {"verify": False}})
    assert s.get("/").status == 200
    assert "verify = false" in s.stderr_text()


def test_client_certificate_to_the_backend(env):
    ca = CA(env.dir)
    crt, key = ca.issue("api", ["api.internal"])
    b = env.backend(tls=(crt, key, ca.crt))
    me = ca.issue("sluice-client", ["sluice-client"], client=True)
    s = env.sluice([b], pool={"tls": {"ca": ca.crt, "name": "api.internal", "cert": me[0], "key": me[1]}})
    r = s.get("/headers")
    assert r.status == 200, r
    assert r.json()["client_cert"] == "sluice-client"


def test_client_certificate_missing_is_refused_by_the_backend(env):
    ca = CA(env.dir)
    crt, key = ca.issue("api", ["api.internal"])
    b = env.backend(tls=(crt, key, ca.crt))
    s = env.sluice([b], pool={"tls": {"ca": ca.crt, "name": "api.internal"}})
    assert s.get("/").status == 502


def test_sessions_to_the_backend_are_resumed(env):
    ca = CA(env.dir)
    b = env.backend(tls=ca.issue("api", ["api.internal"]))
    # One request per connection: every request is a new handshake.
    # One worker: each worker keeps its own sessions to resume (README: workers).
    s = env.sluice([b], pool={"tls": {"ca": ca.crt, "name": "api.internal"}, "max_requests": 1}, extra=ONE_WORKER)
    resumed = []
    for _ in range(4):
        r = s.get("/headers")
        assert r.status == 200, r
        resumed.append(r.json()["tls_resumed"])
    assert len(b.connections_used()) == 4
    assert resumed[0] is False and all(resumed[1:]), resumed


def test_health_checks_speak_tls(env):
    ca = CA(env.dir)
    b = env.backend(tls=ca.issue("api", ["api.internal"]))
    s = env.sluice([b], pool={"tls": {"ca": ca.crt, "name": "api.internal"},
                              "health": {"type": "http", "path": "/healthz", "interval": 0.2,
                                         "timeout": 0.1, "status": "200-499"}})
    wait_until(lambda: any("/healthz" in l for l in b.request_lines()), 10 * env.slow,
               what="a health check request over TLS")
    assert s.get("/").status == 200


def test_config_errors_for_pool_tls(env):
    ca = CA(env.dir)
    ca.issue("me", ["me"], client=True)
    base = """return {
  listeners = { { address = "127.0.0.1:1", pool = "p" } },
  pools = { p = { servers = { "127.0.0.1:2" },
    tls = { %s } } },
}
"""
    r = env.check_config(base % 'ca = "ca.crt", name = "api.internal"')
    assert r.returncode == 0, r.stderr
    for tls, what in (('ca = "nope.crt"', "nope.crt"), ('cert = "me.crt", key = "ca.key"', "does not match"),
                      ('name = "not a name"', "name"), ('verify = "yes"', "verify"),
                      ('key = "me.key"', "key without cert"), ('sni = "x"', "unknown key")):
        r = env.check_config(base % tls)
        assert r.returncode == 1 and "sluice.lua:4:" in r.stderr and what in r.stderr, (tls, r.stderr)
