"""Client certificates: verify_client per listener and per site, X-Client-*, 421 on SNI/Host mismatch."""

import json
import signal

from harness import RawClient, free_port, lua_config, wait_until
from tlsutil import CA, curl_https


def _headers(r):
    assert r.returncode == 0, r.stderr
    return {n.lower(): v for n, v in json.loads(r.stdout)["headers"]}


def _cert_args(pair):
    return ["--cert", pair[0], "--key", pair[1]]


def _listener(port, server_pair, ca_file, verify, **extra):
    tls = {"certificates": [{"cert": server_pair[0], "key": server_pair[1]}],
           "client_ca": ca_file, "verify_client": verify}
    l = {"address": "127.0.0.1:%d" % port, "tls": tls}
    l.update(extra)
    return l


def _two_cas(env):
    """A CA with a server certificate for a.test and a client alice; another CA's client mallory."""
    ca, other = CA(env.dir), CA(env.dir, name="other", cn="another CA")
    server = ca.issue("server", ["a.test"])
    alice = ca.issue("alice", ["alice"], client=True)
    mallory = other.issue("mallory", ["mallory"], client=True)
    return ca, other, server, alice, mallory


def test_required_client_certificate(env):
    ca, other, server, alice, mallory = _two_cas(env)
    port = free_port()
    b = env.backend()
    cfg = env.config([b], listeners=[_listener(port, server, ca.crt, "required", pool="web")])
    s = env.sluice(config=cfg)
    r = curl_https(port, "a.test", "/headers", cacert=ca.crt)
    assert r.returncode != 0, "no certificate must be refused: %s" % r.stdout
    r = curl_https(port, "a.test", "/headers", cacert=ca.crt, extra=_cert_args(mallory))
    assert r.returncode != 0, "a certificate of another CA must be refused: %s" % r.stdout
    r = curl_https(port, "a.test", "/headers", cacert=ca.crt,
                   extra=_cert_args(alice) + ["-H", "X-Client-Verify: FORGED", "-H", "X-Client-Subject: CN=root"])
    h = _headers(r)
    assert h["x-client-verify"] == "SUCCESS", h
    assert h["x-client-subject"] == "CN=alice", h
    assert h["x-client-issuer"] == "CN=sluice test CA", h
    assert h["x-client-serial"] == "03EA", h  # 1002, in whole bytes as nginx writes it
    assert len(h["x-client-fingerprint"]) == 64, h
    assert list(json.loads(r.stdout)["headers"]).count(["X-Client-Verify", "FORGED"]) == 0
    # A reload to another CA: its clients get in, the first CA's no longer do.
    cfg2 = env.config([b], listeners=[_listener(port, server, other.crt, "required", pool="web")])
    with open(s.config_path, "w") as f:
        f.write(lua_config(cfg2))
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: "configuration reloaded" in s.stderr_text(), 10 * env.slow, what="the reload")
    assert curl_https(port, "a.test", "/", cacert=ca.crt, extra=_cert_args(mallory)).returncode == 0
    assert curl_https(port, "a.test", "/", cacert=ca.crt, extra=_cert_args(alice)).returncode != 0


def test_optional_client_certificate_tells_the_backend_what_it_got(env):
    ca, other, server, alice, mallory = _two_cas(env)
    port = free_port()
    b = env.backend()
    s = env.sluice(config=env.config([b], listeners=[_listener(port, server, ca.crt, "optional", pool="web")]))
    h = _headers(curl_https(port, "a.test", "/headers", cacert=ca.crt, extra=["-H", "X-Client-Subject: x"]))
    assert h["x-client-verify"] == "NONE" and "x-client-subject" not in h, h
    h = _headers(curl_https(port, "a.test", "/headers", cacert=ca.crt, extra=_cert_args(mallory)))
    assert h["x-client-verify"] == "FAILED" and h["x-client-subject"] == "CN=mallory", h
    h = _headers(curl_https(port, "a.test", "/headers", cacert=ca.crt, extra=_cert_args(alice)))
    assert h["x-client-verify"] == "SUCCESS", h
    assert s.alive()


def test_plain_listener_strips_client_cert_headers(env):
    b = env.backend()
    s = env.sluice([b])
    r = s.get("/headers", headers=[("X-Client-Verify", "SUCCESS"), ("X-Client-Fingerprint", "ab")])
    names = [n.lower() for n, _ in r.json()["headers"]]
    assert "x-client-verify" not in names and "x-client-fingerprint" not in names, names


def _two_sites(env, b, tls_port, plain_port, ca, server, force_https=None):
    admin = {"hosts": ["admin.test"], "pool": "p", "tls": {"verify_client": "required"}}
    if force_https is not None:
        admin["force_https"] = force_https
    return env.routed_config(
        pools={"p": [b]},
        sites=[admin, {"hosts": ["www.test"], "pool": "p"}],
        listeners=[_listener(tls_port, server, ca.crt, "off"),
                   {"address": "127.0.0.1:%d" % plain_port}])


def test_per_site_required_certificate_and_421_for_a_host_that_differs_from_sni(env):
    ca = CA(env.dir)
    server = ca.issue("server", ["admin.test", "www.test"])
    alice = ca.issue("alice", ["alice"], client=True)
    b = env.backend()
    tls_port, plain_port = free_port(), free_port()
    s = env.sluice(config=_two_sites(env, b, tls_port, plain_port, ca, server))
    # www.test asks for no certificate.
    assert curl_https(tls_port, "www.test", "/", cacert=ca.crt).returncode == 0
    # admin.test requires one.
    assert curl_https(tls_port, "admin.test", "/", cacert=ca.crt).returncode != 0
    h = _headers(curl_https(tls_port, "admin.test", "/headers", cacert=ca.crt, extra=_cert_args(alice)))
    assert h["x-client-verify"] == "SUCCESS", h
    # Domain fronting: TLS to www.test (no certificate asked), Host admin.test.
    r = curl_https(tls_port, "www.test", "/headers", cacert=ca.crt,
                   extra=["-H", "Host: admin.test", "-o", "/dev/null", "-w", "%{http_code}"])
    assert r.stdout == "421", r
    # ... and the other way round: a client-certificate handshake does not lend itself to www.test.
    r = curl_https(tls_port, "admin.test", "/", cacert=ca.crt,
                   extra=_cert_args(alice) + ["-H", "Host: www.test", "-o", "/dev/null", "-w", "%{http_code}"])
    assert r.stdout == "421", r
    # Plain HTTP cannot carry a certificate: the site refuses it.
    for host, status in (("admin.test", 403), ("www.test", 200)):
        with RawClient(plain_port) as c:
            c.request("GET", "/", host=host)
            assert c.read_response().status == status, host
    assert not [l for l in b.request_lines() if "admin" in l]


def test_force_https_redirects_plain_requests(env):
    ca = CA(env.dir)
    server = ca.issue("server", ["admin.test", "www.test"])
    b = env.backend()
    tls_port, plain_port = free_port(), free_port()
    env.sluice(config=_two_sites(env, b, tls_port, plain_port, ca, server, force_https=tls_port))
    with RawClient(plain_port) as c:
        c.request("GET", "/x/y?z=1", host="admin.test")
        r = c.read_response()
        assert r.status == 301 and r.header("Location") == "https://admin.test:%d/x/y?z=1" % tls_port, r
        c.request("POST", "/form", host="admin.test", body=b"")
        r = c.read_response()
        assert r.status == 308, r
    assert b.request_lines() == []


def test_hook_sees_the_tls_fields(env):
    ca = CA(env.dir)
    server = ca.issue("server", ["a.test"])
    alice = ca.issue("alice", ["alice"], client=True)
    port = free_port()
    b = env.backend()
    cfg = env.config([b], listeners=[_listener(port, server, ca.crt, "optional", pool="web")])
    text = lua_config(cfg).rstrip()
    assert text.endswith("}")
    text = text[:-1].rstrip().rstrip(",") + """,
  hook = function(r)
    if not r.tls then return { status = 200, body = "plain" } end
    return { status = 200, body = table.concat({ r.tls.sni, r.tls.protocol, r.tls.cipher,
      r.tls.client_verify, r.tls.client_subject or "-", r.tls.client_issuer or "-",
      tostring(r.tls.client_serial), tostring(#(r.tls.client_fingerprint or "")) }, "|") }
  end,
}
"""
    env.sluice(config_text=text, listeners=cfg["listeners"])
    r = curl_https(port, "a.test", "/", cacert=ca.crt, extra=_cert_args(alice))
    assert r.returncode == 0, r.stderr
    sni, proto, cipher, verify, subject, issuer, serial, fplen = r.stdout.split("|")
    assert (sni, verify, subject, issuer, fplen) == ("a.test", "SUCCESS", "CN=alice", "CN=sluice test CA", "64"), r.stdout
    assert proto == "TLSv1.3" and cipher.startswith("TLS_"), r.stdout
    r = curl_https(port, "a.test", "/", cacert=ca.crt)
    assert r.stdout.split("|")[3:6] == ["NONE", "-", "-"], r.stdout


def test_config_checks_client_certificate_settings(env):
    ca = CA(env.dir)
    ca.issue("a", ["a.test"])
    base = """return {
  listeners = { { address = "127.0.0.1:%d",
      tls = { certificates = { { cert = "a.crt", key = "a.key" } },%s
      } } },
  pools = { p = { servers = { "127.0.0.1:1" } } },
  sites = { { hosts = { "a.test" }, pool = "p"%s } },
}
"""
    port = free_port()
    r = env.check_config(base % (port, '\n        verify_client = "required",', ""))
    assert r.returncode == 1 and "sluice.lua:4:" in r.stderr and "client_ca" in r.stderr, r.stderr
    r = env.check_config(base % (port, '\n        client_ca = "ca.crt", verify_client = "sometimes",', ""))
    assert r.returncode == 1 and "verify_client" in r.stderr, r.stderr
    r = env.check_config(base % (port, '\n        client_ca = "nothere.crt",', ""))
    assert r.returncode == 1 and "nothere.crt" in r.stderr, r.stderr
    r = env.check_config(base % (port, "", ', tls = { verify_client = "required" }'))
    assert r.returncode == 1 and "client_ca" in r.stderr and "a.test" in r.stderr, r.stderr
    r = env.check_config(base % (port, '\n        client_ca = "ca.crt",', ', tls = { verify_client = "required" }'))
    assert r.returncode == 0, r.stderr
    r = env.check_config(base % (port, '\n        client_ca = "ca.crt",', ', force_https = "yes"'))
    assert r.returncode == 1 and "force_https" in r.stderr, r.stderr
