"""`sluice -t -c FILE` checks configs and names the line of a mistake;
`sluice --default-config` prints a config that passes the check."""

import os
import shutil
import subprocess

from harness import REPO

GOOD = """\
return {
  listeners = {
    { address = "127.0.0.1:8080", pool = "web" },
  },
  pools = {
    web = {
      servers = { "127.0.0.1:9001", "127.0.0.1:9002" },
      keepalive = 16,
    },
  },
  timeouts = {
    client_header = 2.5,
    backend_response = 0.75,
  },
  access_log = false,
  log_level = "warn",
}
"""


def _check_fails(env, text, line, phrases, name="bad.lua"):
    p = env.check_config(text, name)
    assert p.returncode == 1, "exit %s, stdout %r stderr %r" % (p.returncode, p.stdout, p.stderr)
    prefix = "%s:%d:" % (name, line)
    lines = [l for l in p.stderr.splitlines() if l.startswith(prefix)]
    assert lines, "no line starting with %r in stderr:\n%s" % (prefix, p.stderr)
    msg = lines[0]
    for ph in phrases:
        assert ph in msg, "%r not in %r" % (ph, msg)
    assert ": ok" not in p.stdout, p.stdout
    return msg


def test_check_good_config_exits_0_and_prints_ok(env):
    p = env.check_config(GOOD, "good.lua")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "good.lua: ok", p.stdout


def test_check_example_config_is_ok(env):
    src = os.path.join(REPO, "examples", "sluice.lua")
    shutil.copy(src, env.path("example.lua"))
    p = subprocess.run([env.sluice_path, "-t", "-c", "example.lua"], cwd=env.dir,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "example.lua: ok", p.stdout


def test_check_every_example_config_is_ok(env):
    for name in sorted(os.listdir(os.path.join(REPO, "examples"))):
        if not name.endswith(".lua"):
            continue
        shutil.copy(os.path.join(REPO, "examples", name), env.path(name))
        p = subprocess.run([env.sluice_path, "-t", "-c", name], cwd=env.dir,
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, (name, p.stderr)
        assert p.stdout.strip() == name + ": ok", p.stdout


def test_check_lua_syntax_error_names_line(env):
    text = GOOD.replace('{ address = "127.0.0.1:8080", pool = "web" },',
                        '{ address = "127.0.0.1:8080" pool = "web" },')
    _check_fails(env, text, 3, ["expected"])


def test_check_unterminated_string_names_line(env):
    text = GOOD.replace('log_level = "warn",', 'log_level = "warn,')
    _check_fails(env, text, 16, ["unfinished string"])


def test_check_unknown_pool_key_names_line(env):
    text = GOOD.replace('      keepalive = 16,', '      keepalive = 16,\n      srvers = { "127.0.0.1:9003" },')
    _check_fails(env, text, 9, ['unknown key "srvers"', 'pool "web"'])


def test_check_unknown_top_level_key_names_line(env):
    text = GOOD.replace("  listeners = {", "  listners = {")
    _check_fails(env, text, 2, ['unknown key "listners"'])


def test_check_unknown_timeouts_key_names_line(env):
    text = GOOD.replace("    backend_response = 0.75,", "    backend_response = 0.75,\n    foo = 1,")
    _check_fails(env, text, 14, ['timeouts', 'unknown key "foo"'])


def test_check_port_out_of_range_names_line(env):
    text = """\
return {
  listeners = {
    { address = "127.0.0.1:8080", pool = "api" },
  },
  pools = {
    api = {
      servers = {
        "127.0.0.1:9001",
        "10.0.0.1:99999",
      },
    },
  },
}
"""
    _check_fails(env, text, 9, ['pool "api"', '"10.0.0.1:99999"', "port out of range"])


def test_check_listener_with_unknown_pool_names_line(env):
    text = GOOD.replace('    { address = "127.0.0.1:8080", pool = "web" },',
                        '    { address = "127.0.0.1:8080", pool = "web" },\n'
                        '    { address = "127.0.0.1:8081", pool = "nope" },')
    _check_fails(env, text, 4, ['listener "127.0.0.1:8081"', 'unknown pool "nope"'])


def test_check_wrong_type_names_line(env):
    text = GOOD.replace("    client_header = 2.5,", '    client_header = "abc",')
    _check_fails(env, text, 12, ["timeouts", "client_header", "positive number", '"abc"'])


def test_check_negative_timeout_rejected(env):
    text = GOOD.replace("    client_header = 2.5,", "    client_header = -1,")
    _check_fails(env, text, 12, ["client_header", "positive number"])


def test_check_missing_file_fails(env):
    p = subprocess.run([env.sluice_path, "-t", "-c", "does-not-exist.lua"], cwd=env.dir,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p
    assert "does-not-exist.lua" in p.stderr, p.stderr


def test_check_config_not_returning_a_table_fails(env):
    p = env.check_config("return 42\n", "num.lua")
    assert p.returncode == 1, p
    assert "num.lua" in p.stderr, p.stderr


def test_default_config_passes_check(env):
    p = subprocess.run([env.sluice_path, "--default-config"], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert "return" in p.stdout and "listeners" in p.stdout, p.stdout[:500]
    with open(env.path("default.lua"), "w") as f:
        f.write(p.stdout)
    q = subprocess.run([env.sluice_path, "-t", "-c", "default.lua"], cwd=env.dir,
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert q.returncode == 0, q.stderr
    assert q.stdout.strip() == "default.lua: ok", q.stdout


def test_sluice_refuses_to_start_with_bad_config(env):
    text = GOOD.replace("  listeners = {", "  listners = {")
    with open(env.path("bad.lua"), "w") as f:
        f.write(text)
    p = subprocess.run([env.sluice_path, "-c", "bad.lua"], cwd=env.dir, capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode != 0, p
    assert "bad.lua:2:" in p.stderr, p.stderr


def test_check_reports_every_mistake_each_with_its_line(env):
    text = """\
return {
  listeners = { { address = "127.0.0.1:8080", pool = "web" } },
  pools = {
    web = { servers = { "127.0.0.1:9001" }, balance = "nope" },
    api = { servers = { "not an address" } },
  },
  timeouts = { idle = -1 },
  limits = { bogus = 1 },
}
"""
    p = env.check_config(text, "many.lua")
    assert p.returncode == 1, p
    want = [("many.lua:4:", "balance must be"), ("many.lua:5:", "expected host:port"),
            ("many.lua:7:", "idle must be a positive number"), ("many.lua:8:", 'unknown key "bogus"')]
    lines = p.stderr.splitlines()
    assert len(lines) == len(want), p.stderr
    for line, (prefix, phrase) in zip(lines, want):
        assert line.startswith(prefix) and phrase in line, (line, prefix, phrase)


def test_check_reports_at_most_50_mistakes_and_counts_the_rest(env):
    pools = "\n".join('    p%d = { servers = { "bad%d" } },' % (i, i) for i in range(70))
    text = ('return {\n  listeners = { { address = "127.0.0.1:8080", pool = "p0" } },\n'
            "  pools = {\n%s\n  },\n}\n" % pools)
    p = env.check_config(text, "lots.lua")
    assert p.returncode == 1, p
    lines = p.stderr.splitlines()
    assert len(lines) == 51, "%d lines:\n%s" % (len(lines), p.stderr)
    assert all(l.startswith("lots.lua:") and "expected host:port" in l for l in lines[:50]), lines
    assert lines[50] == "lots.lua: 20 more mistakes not shown (the first 50 are)", lines[50]
