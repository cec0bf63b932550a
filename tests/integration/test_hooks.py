"""The per-request Lua hook: pool pick, header changes, direct answers, errors, runaways."""

from harness import free_port

HOOK_CONFIG = """\
return {{
  listeners = {{ {{ address = "127.0.0.1:{port}" }} }},
  pools = {{
    a = {{ servers = {{ "{a}" }} }},
    b = {{ servers = {{ "{b}", "{b2}" }} }},
  }},
  sites = {{ {{ hosts = {{ "example.com" }}, pool = "a" }} }},
  limits = {{ hook_instructions = 100000 }},
  hook = function(r)
    if r.path == "/deny" then
      return {{ status = 403, body = "denied " .. r.client .. " " .. r.method .. "\\n",
               headers = {{ ["X-Why"] = "hook" }} }}
    end
    if r.path == "/error" then error("boom in the hook") end
    if r.path == "/runaway" then while true do end end
    if r.path == "/bad-return" then return 42 end
    if r.path == "/framing" then return {{ set_headers = {{ ["Content-Length"] = "0" }} }} end
    if r.path == "/proxy-connection" then return {{ set_headers = {{ ["Proxy-Connection"] = "keep-alive" }} }} end
    if r.path == "/remove-te" then return {{ remove_headers = {{ "TE" }} }} end
    if r.path == "/metatable" then
      return setmetatable({{}}, {{ __index = function() error("read me raw") end }})
    end
    if r.path == "/control" then return {{ status = 200, headers = {{ ["X-A"] = "a\bb" }} }} end
    if r.path == "/unknown-pool" then return {{ pool = "nope" }} end
    if r.header("x-pool") then
      return {{ pool = r.header("x-pool"), server = r.header("x-server"),
               set_headers = {{ ["X-Hooked"] = r.method .. " " .. r.host .. " " .. (r.query or "-") }},
               remove_headers = {{ "X-Secret" }} }}
    end
    if r.headers()["x-tag"] then return {{ set_headers = {{ ["X-Tag-Seen"] = r.headers()["x-tag"] }} }} end
  end,
}}
"""


def hooked(env):
    a, b, b2 = env.backend("A"), env.backend("B"), env.backend("B2")
    port = free_port()
    text = HOOK_CONFIG.format(port=port, a=a.addr, b=b.addr, b2=b2.addr)
    return env.sluice(config_text=text, listeners=[{"address": "127.0.0.1:%d" % port}])


def test_hook_picks_the_pool_and_edits_request_headers(env):
    s = hooked(env)
    r = s.get("/headers?q=1", host="example.com", headers=[("X-Pool", "b"), ("X-Secret", "s")])
    assert r.status == 200 and r.header("X-Backend") in ("B", "B2"), r
    got = dict((k.lower(), v) for k, v in r.json()["headers"])
    assert got["x-hooked"] == "GET example.com q=1", got
    assert "x-secret" not in got, got
    # Without the header the hook returns nothing: the site's route applies.
    assert s.get("/", host="example.com").header("X-Backend") == "A"


def test_hook_picks_the_server(env):
    s = hooked(env)
    b2 = env.backends[2]
    for _ in range(6):
        r = s.get("/", host="example.com", headers=[("X-Pool", "b"), ("X-Server", b2.addr)])
        assert r.header("X-Backend") == "B2", r


def test_hook_sees_all_headers(env):
    s = hooked(env)
    r = s.get("/headers", host="example.com", headers=[("X-Tag", "t1")])
    got = dict((k.lower(), v) for k, v in r.json()["headers"])
    assert got.get("x-tag-seen") == "t1", got


def test_hook_answers_directly_and_keepalive_continues(env):
    s = hooked(env)
    with s.connect() as c:
        c.request("GET", "/deny", host="example.com")
        r = c.read_response()
        assert r.status == 403, r
        assert r.header("X-Why") == "hook"
        assert r.body == b"denied 127.0.0.1 GET\n", r.body
        c.request("GET", "/", host="example.com")
        assert c.read_response().status == 200
    assert not env.backends[0].request_lines() or "/deny" not in " ".join(env.backends[0].request_lines())


def test_hook_error_gives_500_with_traceback_and_others_are_served(env):
    s = hooked(env)
    r = s.get("/error", host="example.com")
    assert r.status == 500, r
    err = s.stderr_text()
    assert "boom in the hook" in err and "stack traceback" in err, err
    assert s.get("/", host="example.com").status == 200
    assert s.alive()


def test_runaway_hook_is_stopped_with_500(env):
    s = hooked(env)
    r = s.get("/runaway", host="example.com", timeout=20)
    assert r.status == 500, r
    assert "instruction budget" in s.stderr_text()
    assert s.get("/", host="example.com").status == 200


def test_hook_bad_results_give_500(env):
    s = hooked(env)
    for path, msg in (("/bad-return", "must return nothing or a table"),
                      ("/framing", "not framing"),
                      # The one list of headers sluice owns covers hooks too.
                      ("/proxy-connection", "not framing"),
                      ("/remove-te", "remove_headers must list"),
                      # A value with a control character in it is refused, as CR and LF are.
                      ("/control", "no control characters"),
                      ("/unknown-pool", 'pool "nope"')):
        r = s.get(path, host="example.com")
        assert r.status == 500, (path, r)
        assert msg in s.stderr_text(), (path, s.stderr_text())
    assert s.get("/", host="example.com").status == 200


def test_hook_answer_is_read_raw_so_a_failing_metamethod_cannot_crash(env):
    """The answer is read without its metamethods: an __index that raises would
    otherwise run outside the hook's protected call and abort sluice."""
    s = hooked(env)
    r = s.get("/metatable", host="example.com")
    assert r.status == 404 and r.header("X-Backend") == "A", r  # routed as usual
    assert s.alive()


def test_hook_must_be_a_function(env):
    p = env.check_config("return {\n  listeners = {{ address = '127.0.0.1:1', pool = 'a' }},\n"
                         "  pools = { a = { servers = { '127.0.0.1:2' } } },\n"
                         "  hook = 'nope',\n}\n", "hook.lua")
    assert p.returncode == 1, p
    assert p.stderr.startswith("hook.lua:4: hook must be a function"), p.stderr
