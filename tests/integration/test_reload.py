"""Reload: SIGHUP and `sluice -s reload` switch to a new config without failing a request."""

import os
import signal
import subprocess
import threading
import time

from harness import ONE_WORKER, lua_config, free_port, port_refuses, wait_until


def _routed(env, a, b, site_pool, port, keepalive_timeout=60, extra=None):
    return env.routed_config(
        pools={"a": {"servers": [a], "keepalive_timeout": keepalive_timeout},
               "b": {"servers": [b], "keepalive_timeout": keepalive_timeout}},
        sites=[{"hosts": ["example.com"], "pool": site_pool}],
        listeners=[{"address": "127.0.0.1:%d" % port}],
        extra=extra)


def _write(path, cfg):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(lua_config(cfg))
    os.replace(tmp, path)


def _backend_of(s):
    r = s.get("/", host="example.com")
    assert r.status == 200, r
    return r.header("X-Backend")


def test_reload_switches_routing(env):
    a, b = env.backend("A"), env.backend("B")
    port = free_port()
    s = env.sluice(config=_routed(env, a, b, "a", port))
    assert _backend_of(s) == "A"
    _write(s.config_path, _routed(env, a, b, "b", port))
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: _backend_of(s) == "B", 10 * env.slow, what="routing to follow the reload")
    # Workers switch as soon as the new config is posted to them, before the line is written.
    wait_until(lambda: "configuration reloaded" in s.stderr_text(), 5 * env.slow,
               what="the reload's log line")


def test_broken_config_on_reload_keeps_the_running_one(env):
    a, b = env.backend("A"), env.backend("B")
    port = free_port()
    s = env.sluice(config=_routed(env, a, b, "a", port))
    with open(s.config_path, "w") as f:
        f.write("return {\n  listeners = {},\n  pools = { a = { servers = { '127.0.0.1:99999' } } },\n}\n")
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: "reload failed" in s.stderr_text(), 10 * env.slow, what="the reload error")
    err = s.stderr_text()
    assert "%s:3:" % s.config_path in err, err
    assert "port out of range" in err, err
    assert _backend_of(s) == "A"


def test_signal_flag_reloads_through_the_pid_file(env):
    a, b = env.backend("A"), env.backend("B")
    port = free_port()
    pid_file = env.path("sluice.pid")
    s = env.sluice(config=_routed(env, a, b, "a", port, extra={"pid_file": pid_file}))
    wait_until(lambda: os.path.exists(pid_file), 5 * env.slow, what="the pid file")
    with open(pid_file) as f:
        assert int(f.read()) == s.pid
    _write(s.config_path, _routed(env, a, b, "b", port, extra={"pid_file": pid_file}))
    p = subprocess.run([env.sluice_path, "-s", "reload", "-c", s.config_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    wait_until(lambda: _backend_of(s) == "B", 10 * env.slow, what="routing to follow the reload")
    p = subprocess.run([env.sluice_path, "-s", "stop", "-p", pid_file],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    s.expected_exit = True
    assert s.wait_exit(10 * env.slow) == 0
    assert not os.path.exists(pid_file), "the pid file outlived sluice"


def test_reload_opens_added_and_closes_removed_listeners(env):
    a, b = env.backend("A"), env.backend("B")
    p1, p2 = free_port(), free_port()
    cfg = _routed(env, a, b, "a", p1)
    s = env.sluice(config=cfg)
    cfg2 = _routed(env, a, b, "a", p2)
    _write(s.config_path, cfg2)
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: not port_refuses("127.0.0.1", p2), 10 * env.slow, what="the new listener")
    wait_until(lambda: port_refuses("127.0.0.1", p1), 10 * env.slow, what="the old listener to close")


def test_100_reloads_under_load_fail_no_request(env):
    """Alternate two configs 100 times while clients keep sending: every request
    succeeds, routing follows each reload, the fd count returns to its baseline,
    and RSS after the 100th reload is within 10% of RSS after the first."""
    reloads_under_load(env)


def reloads_under_load(env, extra=None):
    """The test above; extra adds top-level config keys (test_workers: workers = 4)."""
    a, b = env.backend("A"), env.backend("B")
    port = free_port()
    cfgs = [_routed(env, a, b, pool, port, keepalive_timeout=0.3, extra=extra)
            for pool in ("a", "b")]
    s = env.sluice(config=cfgs[0])
    # Listening comes first; the workers' own fds exist once it says it started.
    wait_until(lambda: "started (pid" in s.stderr_text(), 10 * env.slow, what="start-up")
    baseline = s.fd_count()
    stop = threading.Event()
    failures, counts = [], {"requests": 0}
    lock = threading.Lock()

    def client(keepalive):
        while not stop.is_set():
            try:
                if keepalive:
                    with s.connect(timeout=10) as c:
                        for _ in range(20):
                            if stop.is_set():
                                break
                            c.request("GET", "/", host="example.com")
                            r = c.read_response()
                            with lock:
                                counts["requests"] += 1
                                if r.status != 200:
                                    failures.append(r.status)
                else:
                    r = s.get("/", host="example.com", timeout=10)
                    with lock:
                        counts["requests"] += 1
                        if r.status != 200:
                            failures.append(r.status)
            except Exception as e:  # noqa: BLE001 - any client error is a failed request
                with lock:
                    failures.append(repr(e))

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    rss = []
    try:
        # The load warms up first, so that the first sample holds the working set (buffers and
        # connections pooled), and what the reloads add is what the two samples differ by.
        wait_until(lambda: counts["requests"] >= 300, 20 * env.slow, what="300 requests of load")
        for i in range(100):
            want = "AB"[(i + 1) % 2]
            _write(s.config_path, cfgs[(i + 1) % 2])
            s.signal(signal.SIGHUP)
            s.expected_exit = False
            wait_until(lambda: _backend_of(s) == want, 10 * env.slow,
                       what="reload %d to route to %s" % (i + 1, want))
            if i in (0, 99):
                rss.append(s.rss_kb())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, "%d of %d requests failed: %r" % (len(failures), counts["requests"],
                                                           failures[:5])
    assert counts["requests"] > 200, counts
    assert s.stderr_text().count("configuration reloaded") == 100
    # Idle backend connections expire after 0.3 s; clients are gone.
    try:
        wait_until(lambda: s.fd_count() <= baseline, 10 * env.slow, what="fd count back")
    except AssertionError:
        raise AssertionError("fd count not back to %d: %s" % (baseline, " ".join(s.fds())))
    print("# RSS after the first reload %d kB, after the 100th %d kB (%d requests)"
          % (rss[0], rss[1], counts["requests"]))
    if not env.sanitized:  # a sanitizer's allocator holds freed memory back
        assert rss[1] <= rss[0] * 1.10, "RSS grew from %d to %d kB over 100 reloads" % tuple(rss)


def test_reload_closes_idle_connections_to_removed_servers_and_keeps_the_others(env):
    a, b = env.backend("A"), env.backend("B")
    port = free_port()
    # One worker: idle connections are kept per worker (README: workers).
    s = env.sluice(config=_routed(env, a, b, "a", port, extra=ONE_WORKER))
    both = _routed(env, a, b, "a", port, extra=ONE_WORKER)
    both["sites"].append({"hosts": ["b.example.com"], "pool": "b"})
    _write(s.config_path, both)
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: s.get("/", host="b.example.com").header("X-Backend") == "B", 10 * env.slow,
               what="the site of pool b")
    assert _backend_of(s) == "A"
    # One idle pooled connection to each backend now ("open" leaves out the stats request's own).
    wait_until(lambda: b.stats()["open"] == 1, 5 * env.slow, what="one connection to B")
    only_a = _routed(env, a, b, "a", port, extra=ONE_WORKER)
    del only_a["pools"]["b"]
    _write(s.config_path, only_a)
    s.signal(signal.SIGHUP)
    s.expected_exit = False
    wait_until(lambda: s.stderr_text().count("configuration reloaded") == 2, 10 * env.slow,
               what="the second reload")
    wait_until(lambda: b.stats()["open"] == 0, 5 * env.slow,
               what="sluice's idle connection to B to close")
    # The connection to A was kept: the next request reuses it.
    r = s.get("/", host="example.com")
    assert r.header("X-Backend") == "A" and r.header("X-Backend-Conn") == "1", r


def test_in_flight_request_keeps_the_timeouts_of_its_config(env):
    """A transaction runs on the config it started with, timeouts included: a
    reload that lengthens backend_response does not save a request already
    waiting under the old one, and new requests get the new one."""
    b = env.backend()
    port = free_port()
    listeners = [{"address": "127.0.0.1:%d" % port, "pool": "web"}]
    # The timeout counts against the server for every worker and generation: one is not enough.
    pool = {"max_fails": 2}
    short = env.config([b], timeouts={"backend_response": 1}, listeners=listeners, pool=pool)
    s = env.sluice(config=short)
    with s.connect(timeout=30) as c:
        c.request("GET", "/slow?delay=3&n=1")
        wait_until(lambda: any("/slow?delay=3&n=1" in l for l in b.request_lines()), 5 * env.slow,
                   what="the request to reach the backend")
        _write(s.config_path, env.config([b], timeouts={"backend_response": 20}, listeners=listeners,
                                           pool=pool))
        s.signal(signal.SIGHUP)
        s.expected_exit = False
        wait_until(lambda: "configuration reloaded" in s.stderr_text(), 5 * env.slow, what="the reload")
        r = c.read_response()
        assert r.status == 504, "the in-flight request took the new config's timeout: %r" % r
    r = s.get("/slow?delay=2&n=2", timeout=30)
    assert r.status == 200, r
