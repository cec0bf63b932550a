"""Failover: a server dies under steady load, then comes back; a server flaps."""

import re
import threading
import time

from harness import wait_until


class Load:
    """Client threads sending requests in a loop until stopped; every third a POST
    when posts is set. Counts answers by backend, and failures."""

    def __init__(self, s, clients=4, posts=True):
        self.s = s
        self.posts = posts
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.by = {}
        self.posted = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, i):
        n = 0
        while not self.stop_event.is_set():
            n += 1
            post = self.posts and n % 3 == 0
            tag = "%d-%d" % (i, n)
            try:
                if post:
                    r = self.s.get("/echo?id=" + tag, method="POST", body=b"x" * 100, timeout=10)
                else:
                    r = self.s.get("/slow?delay=0.02&id=" + tag, timeout=10)
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                        name = r.header("X-Backend")
                        self.by[name] = self.by.get(name, 0) + 1
                    else:
                        self.failed += 1
                    if post:
                        self.posted.append(tag)
            except Exception:  # noqa: BLE001 - a dropped connection is a failed request
                with self.lock:
                    self.failed += 1

    def count(self, name):
        with self.lock:
            return self.by.get(name, 0)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(20)


def test_killing_one_of_three_servers_under_load_fails_at_most_its_in_flight_requests(env):
    bs = [env.backend(n) for n in ("A", "B", "C")]
    s = env.sluice(bs, pool={"health": {"interval": 0.2, "timeout": 0.15, "rise": 2, "fall": 2},
                             "connect_backoff": 0.5})
    load = Load(s)
    try:
        wait_until(lambda: all(load.count(n) >= 10 for n in "ABC"), 20 * env.slow,
                   what="load on all three servers")
        before = dict(load.by)
        b = bs[1]
        port = b.port
        b.proc.kill()          # abruptly: in-flight requests on B are lost
        b.proc.wait()
        wait_until(lambda: "server %s: health check failed" % b.addr in s.stderr_text(),
                   10 * env.slow, what="B's health check to take it out")
        failed_at_kill = load.failed
        b_at_kill = load.count("B")
        time.sleep(0.5)        # steady load while B is out (a measured interval, not a sync)
        assert load.count("B") == b_at_kill, "B got traffic while dead"
        env.backend("B", port=port)
        wait_until(lambda: "server %s: health check passed 2 times in a row; back in" % b.addr
                   in s.stderr_text(), 10 * env.slow, what="B to come back")
        wait_until(lambda: load.count("B") > b_at_kill + 5, 10 * env.slow,
                   what="B to receive traffic again")
    finally:
        load.stop()
    # Only requests in flight on B when it died may fail: at most one per client thread.
    assert load.failed <= len(load.threads), (load.failed, load.by)
    assert load.failed == failed_at_kill, "failures after B was taken out: %r" % load.failed
    # No POST was sent to two servers (never retried once it reached one).
    seen = {}
    logs = {be.log_path: be for be in env.backends}  # the restarted B appends to B's log
    for be in logs.values():
        for line in be.request_lines():
            if line.startswith("POST /echo?id="):
                tag = line.split("id=")[1].split()[0]
                seen[tag] = seen.get(tag, 0) + 1
    assert all(v == 1 for v in seen.values()), [t for t, v in seen.items() if v > 1]
    print("# failover: %d requests ok, %d failed when B was killed (4 clients); before: %r, "
          "after: %r" % (load.ok, load.failed, before, load.by))


def test_flapping_server_under_get_load_fails_no_request_with_retries(env):
    bs = [env.backend(n) for n in ("A", "B", "C")]
    s = env.sluice(bs, pool={"retry": {"on": ["error", "timeout"]},
                             "connect_backoff": 0.2, "max_backoff": 1})
    load = Load(s, posts=False)
    b = bs[1]
    taken_out = lambda: len(re.findall(r"server %s: [^\n]*; taken out" % re.escape(b.addr),
                                       s.stderr_text()))
    try:
        wait_until(lambda: all(load.count(n) >= 10 for n in "ABC"), 20 * env.slow,
                   what="load on all three servers")
        for flap in range(3):
            before = taken_out()
            b.proc.kill()
            b.proc.wait()
            wait_until(lambda: taken_out() > before, 10 * env.slow, what="B to be taken out")
            # Down for a while: requests probing it after each cool-down are refused.
            time.sleep(0.8)  # several cool-downs under load (a measured interval, not a sync)
            at_restart = load.count("B")
            b = env.backend("B", port=b.port)
            wait_until(lambda: load.count("B") > at_restart + 5, 10 * env.slow,
                       what="B to receive traffic again after flap %d" % flap)
    finally:
        load.stop()
    err = s.stderr_text()
    # The cool-down grew while B stayed down, and started over after it answered.
    grew = re.findall(r"server %s: [^;\n]*; taken out for (\d+) ms \(outage (\d+)\)"
                      % re.escape(b.addr), err)
    assert ("200", "1") in grew and ("400", "2") in grew, grew
    assert [n for ms, n in grew].count("1") == 3, grew  # one fresh start per flap
    assert "server %s: answering again" % b.addr in err
    assert load.failed == 0, "%d requests failed: %r" % (load.failed, load.by)
    print("# flapping: B killed and restarted 3 times under 4 clients: %d requests ok, %d failed; "
          "cool-downs %s" % (load.ok, load.failed, [int(ms) for ms, n in grew]))
