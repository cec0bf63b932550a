"""Routing by site (Host) and path prefix: proxy routes, fixed responses,
redirects, header rules, absolute-form targets, 404s, and the config errors of
`sites`, each with the line it names."""

from harness import RawClient


def respond(body, status=200, **extra):
    """A route action that answers by itself with body (a site's identity in these tests)."""
    r = {"status": status, "body": body}
    r.update(extra)
    return {"respond": r}


def route(path, **action):
    r = {"path": path}
    r.update(action)
    return r


def seen_headers(r):
    """[(name, value)] the backend's /headers endpoint says it received."""
    return [(n, v) for n, v in r.json()["headers"]]


def values(hdrs, name):
    return [v for n, v in hdrs if n.lower() == name.lower()]


# ---------------------------------------------------------------------------
# Hosts


def host_precedence_sluice(env, default=True):
    sites = [
        {"hosts": ["a.example.com"], "routes": [route("/", **respond("exact\n"))]},
        {"hosts": ["*.example.com"], "routes": [route("/", **respond("wild\n"))]},
        {"hosts": ["*.deep.example.com"], "routes": [route("/", **respond("deep\n"))]},
    ]
    if default:
        sites.append({"hosts": ["fallback.test"], "default": True,
                      "routes": [route("/", **respond("default\n"))]})
    w = env.backend("unused")
    return env.sluice(config=env.routed_config({"web": [w]}, sites))


def site_of(s, host, version="HTTP/1.1"):
    r = s.get("/", host=host, version=version)
    return r.body.decode().strip() if r.status == 200 else r.status


def test_exact_host_beats_wildcard_and_longest_wildcard_suffix_wins(env):
    s = host_precedence_sluice(env)
    assert site_of(s, "a.example.com") == "exact"
    assert site_of(s, "b.example.com") == "wild"
    assert site_of(s, "x.a.example.com") == "wild"
    assert site_of(s, "x.deep.example.com") == "deep"
    assert site_of(s, "a.b.deep.example.com") == "deep"
    # *.deep.example.com does not match deep.example.com; *.example.com does.
    assert site_of(s, "deep.example.com") == "wild"


def test_wildcard_does_not_match_the_bare_domain(env):
    s = host_precedence_sluice(env)
    assert site_of(s, "example.com") == "default"
    assert site_of(s, "notexample.com") == "default"


def test_host_matching_ignores_case_port_and_trailing_dot(env):
    s = host_precedence_sluice(env)
    assert site_of(s, "A.Example.COM") == "exact"
    assert site_of(s, "a.example.com:8080") == "exact"
    assert site_of(s, "a.example.com.") == "exact"
    assert site_of(s, "A.EXAMPLE.COM.:443") == "exact"
    assert site_of(s, "X.Deep.Example.Com:80") == "deep"
    assert site_of(s, "b.example.com.") == "wild"


def test_unknown_host_goes_to_the_default_site(env):
    s = host_precedence_sluice(env)
    assert site_of(s, "unknown.org") == "default"
    assert site_of(s, "fallback.test") == "default"
    # HTTP/1.0 without Host: the default site too.
    with s.connect() as c:
        c.send("GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == b"default\n", r


def test_unknown_host_without_default_site_is_404(env):
    s = host_precedence_sluice(env, default=False)
    assert site_of(s, "a.example.com") == "exact"
    r = s.get("/", host="unknown.org")
    assert r.status == 404, r
    with s.connect() as c:
        c.send("GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 404, r
    assert s.env.backends[0].request_lines() == []


def test_invalid_host_header_is_rejected_with_400(env):
    s = host_precedence_sluice(env)
    r = s.get("/", host="bad host.example.com")
    assert r.status == 400, r


# ---------------------------------------------------------------------------
# Paths


def test_site_pool_shorthand_proxies_by_host(env):
    a = env.backend("a")
    b = env.backend("b")
    sites = [{"hosts": ["a.test"], "pool": "pa"}, {"hosts": ["b.test"], "pool": "pb"}]
    s = env.sluice(config=env.routed_config({"pa": [a], "pb": [b]}, sites))
    for _ in range(2):
        r = s.get("/", host="a.test")
        assert r.status == 200 and r.header("X-Backend") == "a", r
        r = s.get("/some/deep/path?x=1", host="b.test")
        assert r.status == 404 and r.header("X-Backend") == "b", r  # the backend's own 404
    assert b.request_lines() == ["GET /some/deep/path?x=1 HTTP/1.1"] * 2


def test_longest_path_prefix_wins(env):
    web = env.backend("web")
    api = env.backend("api")
    v2 = env.backend("v2")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/api/", pool="api"),
        route("/", pool="web"),
        route("/api/v2/", pool="v2"),   # declared last: order must not matter
    ]}]
    s = env.sluice(config=env.routed_config({"web": [web], "api": [api], "v2": [v2]}, sites))
    cases = {
        "/": "web", "/index.html": "web", "/api": "web", "/apix/": "web",
        "/api/": "api", "/api/users": "api", "/api/v2": "api", "/api/v3/x": "api",
        "/api/v2/": "v2", "/api/v2/users/7": "v2",
    }
    for path, want in cases.items():
        r = s.get(path, host="example.com")
        assert r.header("X-Backend") == want, (path, r)


def test_shorthand_pool_is_the_root_route_and_longer_routes_win(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "pool": "web",
              "routes": [route("/status", **respond("up\n"))]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    r = s.get("/status", host="example.com")
    assert r.status == 200 and r.body == b"up\n" and r.header("X-Backend") is None, r
    r = s.get("/other", host="example.com")
    assert r.header("X-Backend") == "web", r


def test_query_is_ignored_when_matching_routes(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web"),
        route("/admin", **respond("admin\n", 403)),
    ]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    r = s.get("/admin?next=/public", host="example.com")
    assert r.status == 403 and r.body == b"admin\n", r
    r = s.get("/public?next=/admin", host="example.com")
    assert r.header("X-Backend") == "web", r
    r = s.get("/?/admin", host="example.com")
    assert r.header("X-Backend") == "web", r
    assert web.request_lines() == ["GET /public?next=/admin HTTP/1.1", "GET /?/admin HTTP/1.1"]


def test_path_without_a_matching_route_is_404(env):
    api = env.backend("api")
    sites = [{"hosts": ["example.com"], "routes": [route("/api/", pool="api")]}]
    s = env.sluice(config=env.routed_config({"api": [api]}, sites))
    for path in ("/", "/api", "/other/api/", "/API/x"):
        r = s.get(path, host="example.com")
        assert r.status == 404, (path, r)
        assert r.header("X-Backend") is None, (path, r)
    assert s.get("/api/x", host="example.com").header("X-Backend") == "api"
    assert api.request_lines() == ["GET /api/x HTTP/1.1"]


ADMIN_BYPASSES = [
    "/%61dmin", "/%61%64%6D%69%6E", "/%61%64%6d%69%6e/x", "//admin", "///admin//x",
    "/x/../admin", "/./admin", "/x/./../admin/", "/x/%2e%2e/admin", "/x/%2E%2E/admin",
    "/%2e/admin", "/../admin", "/../../admin/y", "/x/y/../../admin", "/public/..//admin",
    "/admin/../admin/x", "/%2e%2e/%61dmin?q=1",
]


def test_normalised_paths_cannot_bypass_the_admin_route(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web"),
        route("/admin", **respond("admin only\n", 403)),
    ]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    wrong = []
    for path in ADMIN_BYPASSES:
        r = s.get(path, host="example.com")
        if r.status != 403 or r.body != b"admin only\n":
            wrong.append((path, r.status, r.header("X-Backend")))
    assert not wrong, "reached the backend instead of the /admin route: %r" % wrong
    assert web.request_lines() == [], web.request_lines()


def test_path_normalisation_keeps_encoded_slash_and_case(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web"),
        route("/admin", **respond("admin only\n", 403)),
        route("/a/b/", **respond("a/b\n")),
    ]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    # %2F is not a slash (it is reserved), %41 is "A", not "a": both are other paths.
    for path in ("/%2Fadmin", "/Admin", "/%41dmin", "/a%2Fb/"):
        r = s.get(path, host="example.com")
        assert r.header("X-Backend") == "web", (path, r)
    # The backend gets the target as the client sent it.
    assert web.request_lines() == ["GET /%2Fadmin HTTP/1.1", "GET /Admin HTTP/1.1",
                                   "GET /%41dmin HTTP/1.1", "GET /a%2Fb/ HTTP/1.1"]
    # A trailing "." or "/" keeps the path a directory: /a/b/. matches the /a/b/ route.
    for path in ("/a/b/", "/a/b/.", "/a/./b/", "/a/b//", "/a/c/../b/x"):
        r = s.get(path, host="example.com")
        assert r.status == 200 and r.body == b"a/b\n", (path, r)


# ---------------------------------------------------------------------------
# Absolute-form targets


def absolute_form_sluice(env):
    web = env.backend("web")
    api = env.backend("api")
    sites = [{"hosts": ["web.example.com"], "pool": "web"},
             {"hosts": ["api.example.com"], "pool": "api"}]
    return env.sluice(config=env.routed_config({"web": [web], "api": [api]}, sites))


def test_absolute_form_target_routes_by_its_authority(env):
    s = absolute_form_sluice(env)
    r = s.get("http://api.example.com/headers?y=1", host="web.example.com")
    assert r.status == 200 and r.header("X-Backend") == "api", r
    j = r.json()
    assert j["target"] == "/headers?y=1", j
    assert j["request_line"] == "GET /headers?y=1 HTTP/1.1", j
    assert values(seen_headers(r), "host") == ["api.example.com"], j["headers"]
    # Authority with upper case and a port still names the api site.
    r = s.get("http://API.Example.com:8080/headers", host="web.example.com")
    assert r.status == 200 and r.header("X-Backend") == "api", r
    assert values(seen_headers(r), "host") == ["API.Example.com:8080"], r.json()["headers"]


def test_absolute_form_without_path_reaches_the_backend_as_root(env):
    s = absolute_form_sluice(env)
    r = s.get("http://api.example.com", host="web.example.com")
    assert r.status == 200 and r.header("X-Backend") == "api", r
    api = env.backends[1]
    assert api.request_lines() == ["GET / HTTP/1.1"], api.request_lines()


def test_absolute_form_with_only_a_query_reaches_the_backend_as_root(env):
    s = absolute_form_sluice(env)
    r = s.get("http://api.example.com?x=1", host="web.example.com")
    assert r.status == 200 and r.header("X-Backend") == "api", r
    api = env.backends[1]
    assert api.request_lines() == ["GET /?x=1 HTTP/1.1"], api.request_lines()


# ---------------------------------------------------------------------------
# Fixed responses and redirects


def fixed_sluice(env, **site_extra):
    web = env.backend("web")
    site = {"hosts": ["example.com"], "routes": [
        route("/", pool="web"),
        route("/ok", respond={"status": 200, "body": "ok\n",
                              "headers": {"Content-Type": "text/plain", "X-Custom": "yes"}}),
        route("/gone", respond={"status": 410}),
        route("/old/", redirect={"to": "https://new.example.com", "status": 301, "keep_path": True}),
        route("/moved", redirect={"to": "https://x.example/landing"}),
    ]}
    site.update(site_extra)
    return env.sluice(config=env.routed_config({"web": [web]}, [site]))


def test_fixed_response_has_its_status_headers_body_and_length(env):
    s = fixed_sluice(env)
    r = s.get("/ok", host="example.com")
    assert r.status == 200, r
    assert r.body == b"ok\n", r.body
    assert r.header("Content-Length") == "3", r
    assert r.header_all("Content-Type") == ["text/plain"], r
    assert r.header("X-Custom") == "yes", r
    assert r.header("X-Backend") is None, r
    r = s.get("/gone", host="example.com")
    assert r.status == 410 and r.body == b"" and r.header("Content-Length") == "0", r
    assert env.backends[0].request_lines() == []


def test_fixed_response_keeps_the_connection_alive_and_head_gets_no_body(env):
    s = fixed_sluice(env)
    with s.connect() as c:
        c.request("GET", "/ok", host="example.com")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok\n", r
        assert r.header("Connection") is None, r
        c.request("HEAD", "/ok", host="example.com")
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == "3", r
        # A body after the HEAD response would be read as the next status line.
        c.request("GET", "/gone", host="example.com")
        r = c.read_response()
        assert r.status == 410, r
        c.request("GET", "/moved", host="example.com")
        r = c.read_response()
        assert r.status == 302, r
        c.request("GET", "/proxied", host="example.com")
        r = c.read_response()
        assert r.status == 404 and r.header("X-Backend") == "web", r
        c.request("GET", "/ok", host="example.com")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok\n", r


def test_fixed_response_to_a_request_with_a_body_closes_the_connection(env):
    s = fixed_sluice(env)
    with s.connect() as c:
        c.request("POST", "/ok", host="example.com", body=b"x" * 1000)
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok\n", r
        assert r.header("Connection") == "close", r
        assert c.wait_closed(5 * env.slow), "connection kept open after an unread body"
    with s.connect() as c:
        c.request("POST", "/ok", host="example.com",
                  headers=[("Transfer-Encoding", "chunked")], body=b"5\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.header("Connection") == "close", r
        assert c.wait_closed(5 * env.slow), "connection kept open after an unread chunked body"


def test_fixed_response_to_http10_client(env):
    s = fixed_sluice(env)
    with s.connect() as c:
        c.request("GET", "/ok", host="example.com", version="HTTP/1.0")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok\n", r
        assert c.wait_closed(5 * env.slow), "HTTP/1.0 connection without keep-alive stayed open"
    with s.connect() as c:
        c.request("GET", "/ok", host="example.com", version="HTTP/1.0",
                  headers=[("Connection", "keep-alive")])
        r = c.read_response()
        assert r.status == 200 and r.header("Connection", "").lower() == "keep-alive", r
        c.request("GET", "/ok", host="example.com", version="HTTP/1.0",
                  headers=[("Connection", "keep-alive")])
        assert c.read_response().body == b"ok\n"


def test_fixed_204_response_has_no_body_and_keepalive_continues(env):
    # A 204 has no content (RFC 9110 15.3.5): a configured body must not reach
    # the wire, where it would be read as the start of the next response.
    # Refusing such a config is as good.
    sites_text = """\
    { hosts = { "example.com" }, routes = {
        { path = "/", respond = { status = 200, body = "root\\n" } },
        { path = "/empty", respond = { status = 204, body = "x" } },
    } },
"""
    p = env.check_config(SITES_HEAD + sites_text + SITES_TAIL, "nc.lua")
    if p.returncode != 0:
        assert "204" in p.stderr and p.stderr.startswith("nc.lua:11: "), p.stderr
        return
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", **respond("root\n")), route("/empty", **respond("x", 204))]}]
    w = env.backend("unused")
    s = env.sluice(config=env.routed_config({"web": [w]}, sites))
    with s.connect() as c:
        c.request("GET", "/empty", host="example.com")
        r = c.read_response()
        assert r.status == 204, r
        c.request("GET", "/", host="example.com")
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"root\n", r2
    assert r.header("Content-Length") is None, r  # RFC 9110 8.6: MUST NOT


def test_redirect_has_location_and_status(env):
    s = fixed_sluice(env)
    r = s.get("/moved?a=1", host="example.com")
    assert r.status == 302, r  # the default status
    assert r.header_all("Location") == ["https://x.example/landing"], r
    assert r.header("Content-Length") == "0" and r.body == b"", r


def test_redirect_with_keep_path_appends_the_path_and_query(env):
    s = fixed_sluice(env)
    r = s.get("/old/page.html?a=1&b=2", host="example.com")
    assert r.status == 301, r
    assert r.header_all("Location") == ["https://new.example.com/old/page.html?a=1&b=2"], r
    r = s.get("/old/", host="example.com")
    assert r.header("Location") == "https://new.example.com/old/", r
    # Absolute form: the path, not the authority, is kept.
    r = s.get("http://example.com/old/x?q", host="other.example")
    assert r.status == 301 and r.header("Location") == "https://new.example.com/old/x?q", r
    assert env.backends[0].request_lines() == []


# ---------------------------------------------------------------------------
# Header rules


def header_rules_sluice(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web"),
        route("/headers", pool="web",
              request_headers={"set": {"X-Set": "new"}, "add": {"X-Add": "two"},
                               "remove": ["X-Remove", "User-Agent"]},
              response_headers={"set": {"X-Backend": "masked"}, "add": {"X-Extra": "1",
                                                                        "X-Backend-Req": "extra"},
                                "remove": ["X-Backend-Conn"]}),
    ]}]
    return env.sluice(config=env.routed_config({"web": [web]}, sites))


def test_request_header_rules_are_applied_before_the_backend(env):
    s = header_rules_sluice(env)
    r = s.get("/headers", host="example.com", headers=[
        ("X-Set", "old"), ("x-set", "older"), ("X-Add", "one"),
        ("X-Remove", "gone"), ("x-remove", "gone too"), ("User-Agent", "test"), ("X-Keep", "k")])
    assert r.status == 200, r
    h = seen_headers(r)
    assert values(h, "x-set") == ["new"], h          # set replaces every header of the name
    assert values(h, "x-add") == ["one", "two"], h   # add keeps what was there
    assert values(h, "x-remove") == [], h
    assert values(h, "user-agent") == [], h
    assert values(h, "x-keep") == ["k"], h
    assert values(h, "host") == ["example.com"], h


def test_request_header_set_is_added_when_absent(env):
    s = header_rules_sluice(env)
    h = seen_headers(s.get("/headers", host="example.com"))
    assert values(h, "x-set") == ["new"] and values(h, "x-add") == ["two"], h


def test_request_header_set_replaces_the_forwarded_headers_sluice_adds(env):
    # Behind a TLS terminator the route says the scheme: one X-Forwarded-Proto, its value.
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web", request_headers={"set": {"X-Forwarded-Proto": "https"}})]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    h = seen_headers(s.get("/headers", host="example.com"))
    assert values(h, "x-forwarded-proto") == ["https"], h


def test_request_header_remove_removes_the_forwarded_headers_sluice_adds(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web", request_headers={"remove": ["X-Real-IP"]})]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    h = seen_headers(s.get("/headers", host="example.com", headers=[("X-Real-IP", "1.2.3.4")]))
    assert values(h, "x-real-ip") == [], h


def test_request_header_set_host_sends_one_host_even_for_absolute_form(env):
    web = env.backend("web")
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", pool="web", request_headers={"set": {"Host": "internal.test"}})]}]
    s = env.sluice(config=env.routed_config({"web": [web]}, sites))
    h = seen_headers(s.get("/headers", host="example.com"))
    assert values(h, "host") == ["internal.test"], h
    # More than one Host is a request any server must refuse (RFC 9112 3.2).
    h = seen_headers(s.get("http://example.com/headers", host="other.test"))
    assert values(h, "host") == ["internal.test"], h


def test_response_header_rules_are_applied_before_the_client(env):
    s = header_rules_sluice(env)
    r = s.get("/headers", host="example.com")
    assert r.status == 200, r
    assert r.header_all("X-Backend") == ["masked"], r.headers
    assert r.header_all("X-Extra") == ["1"], r.headers
    assert r.header_all("X-Backend-Conn") == [], r.headers
    assert r.header_all("X-Backend-Req") == ["1", "extra"], r.headers
    assert r.header("Content-Type") == "application/json", r.headers


def test_header_rules_apply_only_to_their_route(env):
    s = header_rules_sluice(env)
    r = s.get("/other", host="example.com", headers=[("X-Remove", "kept")])
    assert r.status == 404 and r.header("X-Backend") == "web", r
    assert r.header("X-Backend-Conn") is not None and r.header("X-Extra") is None, r
    r = s.get("/", host="example.com", headers=[("X-Remove", "kept")])
    assert r.header("X-Backend") == "web", r


def test_response_header_rules_apply_to_fixed_responses(env):
    sites = [{"hosts": ["example.com"], "routes": [
        route("/", respond={"body": "hi\n", "headers": {"Cache-Control": "max-age=60",
                                                         "X-Powered-By": "config"}},
              response_headers={"set": {"Cache-Control": "no-store"}, "add": {"X-Frame-Options": "DENY"},
                                "remove": ["X-Powered-By"]}),
    ]}]
    w = env.backend("unused")
    s = env.sluice(config=env.routed_config({"web": [w]}, sites))
    r = s.get("/", host="example.com")
    assert r.status == 200 and r.body == b"hi\n", r
    assert r.header_all("X-Frame-Options") == ["DENY"], r.headers
    assert r.header_all("Cache-Control") == ["no-store"], r.headers
    assert r.header_all("X-Powered-By") == [], r.headers


# ---------------------------------------------------------------------------
# Config errors: `sluice -t` names the file and the line


SITES_HEAD = """\
return {
  listeners = {
    { address = "127.0.0.1:8080" },
  },
  pools = {
    web = { servers = { "127.0.0.1:9001" } },
  },
  sites = {
"""
# Line 9 is the first line after SITES_HEAD.
SITES_TAIL = """\
  },
}
"""


def check_fails(env, sites_text, line, phrases, name="bad.lua"):
    text = SITES_HEAD + sites_text + SITES_TAIL
    p = env.check_config(text, name)
    assert p.returncode == 1, "exit %s, stdout %r stderr %r" % (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip().splitlines()
    assert err, "no error message"
    numbered = "\n".join("%3d %s" % (i, l) for i, l in enumerate(text.splitlines(), 1))
    prefix = "%s:%d: " % (name, line)
    assert err[0].startswith(prefix), "%r does not start with %r\n%s" % (err[0], prefix, numbered)
    for ph in phrases:
        assert ph in err[0], "%r not in %r" % (ph, err[0])
    return err[0]


def test_config_with_sites_passes_the_check(env):
    text = SITES_HEAD + """\
    {
      hosts = { "example.com", "*.example.com" },
      routes = {
        { path = "/", pool = "web",
          request_headers = { set = { ["X-A"] = "1" }, add = { ["X-B"] = "2" }, remove = { "X-C" } },
          response_headers = { set = { ["X-D"] = "4" } } },
        { path = "/ok", respond = { status = 200, body = "ok\\n",
                                    headers = { ["Content-Type"] = "text/plain" } } },
        { path = "/old/", redirect = { to = "https://x/y", status = 301, keep_path = true } },
      },
    },
    { hosts = { "other.test" }, default = true, pool = "web" },
""" + SITES_TAIL
    p = env.check_config(text, "good.lua")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "good.lua: ok", p.stdout


def test_config_error_unknown_route_key_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/a/", pool = "web",
          colour = "red" },
      },
    },
""", 14, ['site "example.com"', 'route "/a/"', 'unknown key "colour"'])


def test_config_error_route_with_two_actions_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/a/", pool = "web", redirect = { to = "/b/" } },
      },
    },
""", 13, ['route "/a/"', "exactly one of pool, respond or redirect"])


def test_config_error_route_without_action_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/a/" },
      },
    },
""", 13, ['route "/a/"', "exactly one of pool, respond or redirect"])


def test_config_error_route_to_unknown_pool_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/api/",
          pool = "api" },
      },
    },
""", 14, ['route "/api/"', 'unknown pool "api"'])


def test_config_error_site_shorthand_to_unknown_pool_names_its_line(env):
    check_fails(env, """\
    { hosts = { "a.test" }, pool = "web" },
    {
      hosts = { "b.test" },
      pool = "nope",
    },
""", 12, ['site "b.test"', 'unknown pool "nope"'])


def test_config_error_duplicate_host_across_sites_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "a.example.com", "*.example.com" },
      pool = "web",
    },
    {
      hosts = {
        "*.example.com",
        "b.example.com",
      },
      pool = "web",
    },
""", 15, ['site "*.example.com"', 'host "*.example.com" belongs to another site already'])


def test_config_error_invalid_host_names_its_line(env):
    for bad in ("Example.com", "a b.example.com", "example.com:80", "*.", "a*.example.com", ""):
        msg = check_fails(env, """\
    {
      hosts = {
        "%s",
      },
      pool = "web",
    },
""" % bad, 11, ['"%s" is not a host name' % bad])
        assert "site" in msg, msg


def test_config_error_in_a_later_host_of_a_site_names_that_hosts_line(env):
    # An invalid host that is not the first of its site, with another site after it.
    check_fails(env, """\
    {
      hosts = {
        "ok.example.com",
        "a b",
      },
      pool = "web",
    },
    {
      hosts = { "other.example.com" },
      pool = "web",
    },
""", 12, ['"a b" is not a host name'])
    # A duplicate host that is not the first of its site.
    check_fails(env, """\
    {
      hosts = { "a.example.com", "*.example.com" },
      pool = "web",
    },
    {
      hosts = {
        "b.example.com",
        "*.example.com",
      },
      pool = "web",
    },
""", 16, ['host "*.example.com" belongs to another site already'])


def test_config_error_bad_header_name_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web",
          request_headers = {
            set = { ["X-Ok"] = "1", },
            add = { ["X Bad"] = "2" },
          },
        },
      },
    },
""", 15, ['route "/"', "request_headers", '"X Bad" is not a valid header name'])


def test_config_error_bad_header_name_in_remove_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web",
          response_headers = {
            remove = { "X:Colon" },
          },
        },
      },
    },
""", 14, ['route "/"', "response_headers", "remove must list header names"])


def test_config_error_header_value_with_crlf_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/x", respond = { body = "x" },
          response_headers = {
            set = { ["X-Injected"] = "a\\r\\nSet-Cookie: evil=1" },
          },
        },
      },
    },
""", 15, ['route "/x"', 'header "X-Injected": value contains a control character'])


def test_config_error_respond_header_value_with_lf_names_its_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/x",
          respond = { headers = { ["X-Injected"] = "a\\nb" } } },
      },
    },
""", 13, ['route "/x"', 'header "X-Injected": value contains a control character'])


def test_config_error_route_given_twice_names_the_repeated_route_line(env):
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web" },
        { path = "/a/", pool = "web" },
        { path = "/b/", pool = "web" },
        { path = "/a/", respond = { body = "again" } },
      },
    },
""", 15, ['route "/a/" given twice'])


def test_config_error_routed_listener_without_sites_names_its_line(env):
    text = """\
return {
  listeners = {
    { address = "127.0.0.1:8080" },
  },
  pools = {
    web = { servers = { "127.0.0.1:9001" } },
  },
}
"""
    p = env.check_config(text, "nosites.lua")
    assert p.returncode == 1, p
    assert p.stderr.startswith("nosites.lua:3: "), p.stderr
    assert "no pool, and no sites to route by" in p.stderr, p.stderr


def test_config_error_header_sluice_owns_names_its_line(env):
    """Proxy-Connection is on the one list of headers sluice owns: a route may not set it."""
    check_fails(env, """\
    {
      hosts = { "example.com" },
      routes = {
        { path = "/", pool = "web",
          request_headers = {
            set = { ["Proxy-Connection"] = "keep-alive" },
          },
        },
      },
    },
""", 14, ['route "/"', "request_headers", '"Proxy-Connection" is managed by sluice'])
