"""Worker threads: limits, health and logs that hold for the whole process, one
Lua state per worker, the kernel's spread of new connections, reload and stop."""

import os
import re
import signal
import threading
import time

from harness import free_port, wait_until

import test_reload

FOUR = {"workers": 4}


def concurrently(fn, n):
    """Runs fn(i) for i < n on n threads; returns their results in order."""
    results = [None] * n

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - a failed client is a result to report
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def stop(env, s):
    """SIGTERM, and the exit; returns {worker: connections accepted} (the
    harness's readiness probe is one of them)."""
    s.signal(signal.SIGTERM)
    assert s.wait_exit(20 * env.slow) == 0
    return s.worker_accepts()


def test_four_workers_hold_a_server_limit_of_two(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 2}], pool={"queue": {"size": 100}},
                   extra=FOUR)
    rs = concurrently(lambda i: s.get("/slow?delay=0.2&i=%d" % i, timeout=30), 20)
    assert all(not isinstance(r, Exception) and r.status == 200 for r in rs), rs
    st = b.stats()
    assert st["requests"] == 21 and st["max_in_flight"] <= 2, st  # 20 and /stats
    accepts = stop(env, s)
    assert len([n for n in accepts.values() if n]) >= 2, accepts  # more than one worker took part


def test_pool_limit_and_listener_limit_hold_across_workers(env):
    b = env.backend("b")
    port = free_port()
    s = env.sluice([b], pool={"max_connections": 3, "queue": {"size": 100}},
                   listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web",
                               "max_connections": 5}], extra=FOUR)
    rs = concurrently(lambda i: s.get("/slow?delay=0.2&i=%d" % i, timeout=30), 16)
    assert all(not isinstance(r, Exception) and r.status == 200 for r in rs), rs
    st = b.stats()
    assert st["requests"] == 17 and st["max_in_flight"] <= 3, st  # 16 and /stats
    # Five idle connections fill the listener whichever workers hold them; the sixth waits.
    held = [s.connect() for _ in range(5)]
    for c in held:
        c.request("GET", "/")
        assert c.read_response().status == 200
    with s.connect(timeout=10) as extra:
        extra.request("GET", "/")
        extra.assert_unanswered(0.5 * env.slow, "served beyond the listener's max_connections")
        held.pop().close()  # any worker's session ending lets whichever worker holds it in
        assert extra.read_response().status == 200
    for c in held:
        c.close()


def test_new_connections_are_spread_over_the_workers(env):
    b = env.backend("b")
    s = env.sluice([b], extra=FOUR)
    for i in range(1000):
        r = s.get("/?i=%d" % i, headers=[("Connection", "close")])
        assert r.status == 200, r
    accepts = stop(env, s)
    print("# 1000 connections over 4 workers: %s" % accepts)
    assert sorted(accepts) == [0, 1, 2, 3] and sum(accepts.values()) == 1001, accepts
    assert min(accepts.values()) >= 125, accepts  # none under half its fair share


def test_health_checks_run_once_per_server_for_the_whole_process(env):
    b = env.backend("b")
    s = env.sluice([b], pool={"health": {"interval": 0.2, "timeout": 0.1, "path": "/health-probe"}}, extra=FOUR)
    t0 = time.monotonic()
    wait_until(lambda: sum("/health-probe" in l for l in b.request_lines()) >= 10, 10 * env.slow,
               what="ten health checks")
    elapsed = time.monotonic() - t0
    checks = sum("/health-probe" in l for l in b.request_lines())
    # One checker: about one check per interval, not one per worker.
    assert checks <= elapsed / 0.2 + 3, "%d checks in %.2f s" % (checks, elapsed)
    assert elapsed >= 9 * 0.2 * 0.9, "%d checks in %.2f s: more than one checker" % (checks, elapsed)


def test_a_failure_seen_by_one_worker_takes_the_server_out_for_all(env):
    dead = "127.0.0.1:%d" % free_port()
    live = env.backend("live")
    s = env.sluice([dead, live], pool={"max_fails": 1, "connect_backoff": 30}, extra=FOUR)
    for i in range(200):
        r = s.get("/?i=%d" % i)
        assert r.status == 200 and r.header("X-Backend") == "live", r
    # Taken out once, by one worker, for all: no other worker tried it again.
    err = s.stderr_text()
    assert len(re.findall(r"w\d: server %s: .*taken out" % re.escape(dead), err)) == 1, err
    accepts = stop(env, s)
    assert len([n for n in accepts.values() if n]) >= 2, accepts


def test_sigkill_of_a_server_under_load_takes_it_out_of_every_worker(env):
    """Failover with 4 workers: POSTs keep coming; one server is killed; within a
    health interval every worker sends to the other; no POST reaches both."""
    a, b = env.backend("a"), env.backend("b")
    interval = 0.5
    s = env.sluice([a, b], pool={"health": {"interval": interval, "timeout": 0.3, "path": "/",
                                            "fall": 1},
                                 "connect_backoff": 30}, extra=FOUR)
    stop_load = threading.Event()
    outcomes, lock = [], threading.Lock()

    def client(k):
        n = 0
        while not stop_load.is_set():
            n += 1
            tag = "c%d-%d" % (k, n)
            try:
                r = s.get("/echo?tag=%s" % tag, method="POST", body=tag.encode(),
                          headers=[("Connection", "close")], timeout=10)
                with lock:
                    outcomes.append((time.monotonic(), tag, r.status, r.header("X-Backend")))
            except Exception as e:  # noqa: BLE001
                with lock:
                    outcomes.append((time.monotonic(), tag, repr(e), None))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(outcomes) > 100, 20 * env.slow, what="load")
        killed_at = time.monotonic()
        a.proc.kill()
        a.proc.wait(5)
        wait_until(lambda: "health check failed" in s.stderr_text(), 5 * env.slow,
                   what="the health check to take a out")
        out_at = time.monotonic()
        time.sleep(0.5)  # load goes on after the verdict
    finally:
        stop_load.set()
        for t in threads:
            t.join(30)
    assert out_at - killed_at <= interval + 0.3 + 0.5 * env.slow, out_at - killed_at
    after = [o for o in outcomes if o[0] > out_at + 0.05]
    assert len(after) >= 10, after
    assert all(o[2] == 200 and o[3] == "b" for o in after), [o for o in after if o[2] != 200][:5]
    seen_a = {l.split("tag=")[1].split()[0] for l in a.request_lines() if "tag=" in l}
    seen_b = {l.split("tag=")[1].split()[0] for l in b.request_lines() if "tag=" in l}
    assert not seen_a & seen_b, "POSTs sent to both servers: %r" % sorted(seen_a & seen_b)[:5]


def test_100_reloads_under_load_with_four_workers_fail_no_request(env):
    test_reload.reloads_under_load(env, extra=FOUR)


def test_sigterm_lets_every_workers_in_flight_requests_finish(env):
    b = env.backend("b")
    s = env.sluice([b], extra=FOUR)
    conns = [s.connect(timeout=30) for _ in range(12)]
    for i, c in enumerate(conns):
        c.request("GET", "/slow?delay=1&i=%d" % i)
    wait_until(lambda: len(b.request_lines()) == 12, 5 * env.slow, what="12 requests in flight")
    t0 = time.monotonic()
    s.signal(signal.SIGTERM)
    for c in conns:
        assert c.read_response().status == 200
        c.close()
    assert s.wait_exit(10 * env.slow) == 0
    assert time.monotonic() - t0 < 3 * env.slow  # not the 3 s shutdown deadline: when they finish
    accepts = s.worker_accepts()
    assert len(accepts) == 4 and sum(accepts.values()) == 13, accepts


def test_access_log_lines_stay_whole_across_workers(env):
    b = env.backend("b")
    log = env.path("access.log")
    s = env.sluice([b], access_log=log, extra=FOUR)
    pad = "x" * 3000  # lines long enough that a buffer holds few of them

    def client(k):
        with s.connect() as c:
            for n in range(100):
                c.request("GET", "/?k=%d&n=%d&pad=%s" % (k, n, pad))
                assert c.read_response().status == 200
            return True

    # Connections from several clients land on several workers.
    rs = concurrently(lambda k: [client(k * 4 + j) for j in range(4)], 8)
    assert all(r == [True] * 4 for r in rs), rs
    wait_until(lambda: len(s.access_lines()) >= 3200, 10 * env.slow, what="3200 access log lines")
    lines = s.access_lines()
    pattern = re.compile(r"^\S+ 127\.0\.0\.1:\d+ GET /\?k=\d+&n=\d+&pad=x{3000} 200 \d+ \S+ \d+ - - HTTP/1\.1$")
    bad = [l[:120] for l in lines if not pattern.match(l)]
    assert not bad and len(lines) == 3200, (len(lines), bad[:3])
    accepts = stop(env, s)
    assert len([n for n in accepts.values() if n]) >= 2, accepts


def test_error_log_lines_name_their_thread(env):
    b = env.backend("b")
    s = env.sluice([b], extra=FOUR)
    for _ in range(20):
        assert s.get("/status/404").status == 404
    stop(env, s)
    lines = [l for l in s.stderr_text().splitlines() if l.strip()]
    assert all(re.match(r"^\S+ \[\w+\] (main|w[0-3]): ", l) for l in lines), lines
    assert any(" main: SIGTERM received" in l for l in lines)
    assert len({m.group(1) for m in re.finditer(r"\] (w\d): stopped", "\n".join(lines))}) == 4


def test_each_worker_runs_the_hook_in_its_own_lua_state(env):
    b = env.backend("b")
    port = free_port()
    text = """
local served = 0   -- an upvalue: one per worker's Lua state
return {
  workers = 4,
  listeners = { { address = "127.0.0.1:%d", pool = "web" } },
  pools = { web = { servers = { "%s" } } },
  hook = function(r)
    served = served + 1
    return { status = 200, body = tostring(served) }
  end,
}
""" % (port, b.addr)
    s = env.sluice(config_text=text, listeners=[{"address": "127.0.0.1:%d" % port}])
    counts = []
    for i in range(200):
        r = s.get("/", headers=[("Connection", "close")])
        assert r.status == 200, r
        counts.append(int(r.body))
    # Each state counts its own requests from 1: several ones, and no count reaches 200.
    assert 2 <= counts.count(1) <= 4 and max(counts) < 200, counts
    stop(env, s)


def test_cpu_affinity_pins_each_worker_to_its_own_cpu(env):
    allowed = sorted(os.sched_getaffinity(0))
    b = env.backend("b")
    s = env.sluice([b], extra={"workers": 2, "cpu_affinity": True})
    wait_until(lambda: "started (pid" in s.stderr_text(), 10 * env.slow, what="start-up")
    pinned = {}
    for tid in os.listdir("/proc/%d/task" % s.pid):
        with open("/proc/%d/task/%s/comm" % (s.pid, tid)) as f:
            name = f.read().strip()
        with open("/proc/%d/task/%s/status" % (s.pid, tid)) as f:
            cpus = [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list")][0]
        pinned[name] = cpus
    assert pinned.get("sluice-w0") == str(allowed[0]), pinned
    assert pinned.get("sluice-w1") == str(allowed[1 % len(allowed)]), pinned


def test_workers_and_cpu_affinity_are_checked(env):
    base = 'return { %s listeners = {{ address = "127.0.0.1:1", pool = "p" }},' \
           ' pools = { p = { servers = { "127.0.0.1:2" } } } }'
    for bad, msg in (("workers = 0,", "workers must be an integer from 1 to 64"),
                     ("workers = 65,", "workers must be an integer from 1 to 64"),
                     ("workers = 1.5,", "workers must be an integer from 1 to 64"),
                     ("workers = 'many',", "workers must be an integer from 1 to 64"),
                     ("cpu_affinity = 'yes',", "cpu_affinity must be true or false")):
        r = env.check_config(base % bad)
        assert r.returncode == 1 and msg in r.stderr, (bad, r.stderr)
        assert "sluice.lua:1:" in r.stderr, r.stderr
    r = env.check_config(base % "workers = 3, cpu_affinity = true,")
    assert r.returncode == 0, r.stderr
