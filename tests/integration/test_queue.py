"""max_connections per server and per pool; the queue in front of them."""

import os
import signal
import threading
import time

from harness import ONE_WORKER, wait_until


def concurrently(s, targets, timeout=15):
    """Sends each target on its own connection at once; returns (status, seconds, response)."""
    out = [None] * len(targets)
    t0 = time.monotonic()

    def one(i):
        r = s.get(targets[i], timeout=timeout)
        out[i] = (r.status, time.monotonic() - t0, r)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return out


def test_server_max_connections_queues_the_excess_and_serves_it_in_turn(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 2}])
    res = concurrently(s, ["/slow?delay=0.3&i=%d" % i for i in range(6)])
    assert [r[0] for r in res] == [200] * 6, res
    assert b.stats()["max_in_flight"] == 2
    # Three rounds of two: the last answer comes after ~0.9 s, not ~0.3 s.
    assert max(r[1] for r in res) >= 0.85, res


def test_pool_max_connections_caps_the_pool_whatever_its_servers_allow(env):
    a, b = env.backend("A"), env.backend("B")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, b], pool={"max_connections": 3}, extra=ONE_WORKER)
    res = concurrently(s, ["/slow?delay=0.3&i=%d" % i for i in range(8)])
    assert [r[0] for r in res] == [200] * 8, res
    assert a.stats()["max_in_flight"] + b.stats()["max_in_flight"] <= 4  # each at most 2 of the 3
    assert max(r[1] for r in res) >= 0.85, res  # 8 requests, 3 at a time: three rounds


def slow_request_in_flight(env, s, b, delay):
    """A connection whose request to /slow is being served by b (the one slot)."""
    c = s.connect(timeout=10)
    c.request("GET", "/slow?delay=%s" % delay)
    wait_until(lambda: any("/slow" in l for l in b.request_lines()), 10 * env.slow,
               what="the slow request to reach the backend")
    return c


def test_a_request_waiting_longer_than_the_queue_timeout_gets_503_with_retry_after(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}],
                   pool={"queue": {"timeout": 0.3, "retry_after": 7}})
    with slow_request_in_flight(env, s, b, 1.5) as busy:
        t0 = time.monotonic()
        r = s.get("/")
        dt = time.monotonic() - t0
        assert r.status == 503 and r.header("Retry-After") == "7", r
        assert 0.25 <= dt < 1.2, "503 after %.2f s, expected ~0.3 s" % dt
        assert busy.read_response().status == 200
    assert "waited in the pool's queue for too long" in s.stderr_text()
    assert b.stats()["requests"] == 2  # the slow one and /stats: the 503 never reached b


def test_a_full_queue_answers_503_at_once(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}], pool={"queue": {"size": 0}})
    with slow_request_in_flight(env, s, b, 1) as c:
        t0 = time.monotonic()
        r = s.get("/")
        assert r.status == 503 and r.header("Retry-After") == "1", r
        assert time.monotonic() - t0 < 0.5
        assert c.read_response().status == 200
    assert "the pool's queue is full" in s.stderr_text()


def test_queued_requests_are_served_oldest_first(env):
    b = env.backend("b")
    # One worker: the queue is oldest first within a worker (README: workers).
    s = env.sluice([{"address": b.addr, "max_connections": 1}], log_level="debug", extra=ONE_WORKER)
    results = {}

    def one(i):
        # The first holds the slot while the others queue up behind it.
        results[i] = s.get("/slow?delay=%s&i=%d" % ("1" if i == 0 else "0.05", i), timeout=15).status

    threads = []
    for i in range(5):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        # Each arrives once the one before is served or queued: their order is known.
        if i == 0:
            wait_until(lambda: b.request_lines(), 10 * env.slow, what="the first request")
        else:
            wait_until(lambda: "i=%d: queued" % i in s.stderr_text(), 10 * env.slow,
                       what="request %d to be queued" % i)
    for t in threads:
        t.join(20)
    assert results == {i: 200 for i in range(5)}, results
    order = [int(l.split("i=")[1].split()[0]) for l in b.request_lines() if "i=" in l]
    assert order == [0, 1, 2, 3, 4], order


def test_a_client_that_leaves_the_queue_gives_its_place_up(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}], log_level="debug")
    with slow_request_in_flight(env, s, b, 0.5) as busy:
        with s.connect(timeout=10) as leaver:
            leaver.request("GET", "/slow?delay=0.01&who=leaver")
            wait_until(lambda: 'who=leaver: queued for pool "web"' in s.stderr_text(),
                       10 * env.slow, what="the request to be queued")
            leaver.abort()
        # The slot still goes round: a later request is served after the slow one.
        r = s.get("/?who=later")
        assert r.status == 200, r
        assert busy.read_response().status == 200
    assert s.alive()
    assert s.get("/").status == 200


def test_backups_take_no_overflow_from_busy_primaries(env):
    p, backup = env.backend("P"), env.backend("BK")
    s = env.sluice([{"address": p.addr, "max_connections": 1},
                    {"address": backup.addr, "backup": True}])
    res = concurrently(s, ["/slow?delay=0.2&i=%d" % i for i in range(3)])
    assert [r[0] for r in res] == [200] * 3, res
    assert {r[2].header("X-Backend") for r in res} == {"P"}, res


def test_a_newcomer_is_not_held_behind_a_retry_waiting_for_another_server(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([{"address": a.addr, "max_connections": 1},
                    {"address": b.addr, "max_connections": 1}],
                   pool={"retry": {"on": ["error"]}, "max_fails": 100}, log_level="debug")
    with slow_request_in_flight(env, s, a, 1.5) as busy:
        # The retry of a request B reset may only go to A, which is busy: it waits.
        with s.connect(timeout=10) as retried:
            retried.request("GET", "/reset?send=0&fail_on=B&r=1")
            wait_until(lambda: "r=1: queued" in s.stderr_text(), 10 * env.slow,
                       what="the retry to be queued")
            # B is free: a new request is served there at once.
            t0 = time.monotonic()
            r = s.get("/?r=2")
            assert r.status == 200 and r.header("X-Backend") == "B", r
            assert time.monotonic() - t0 < 1, "waited %.2f s behind the retry" % (time.monotonic() - t0)
            assert busy.read_response().status == 200
            r = retried.read_response()
            assert r.status == 200 and r.header("X-Backend") == "A", r


def test_a_slot_granted_as_the_queue_timer_fires_is_handled(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}], pool={"queue": {"timeout": 2}},
                   timeouts={"idle": 1}, log_level="debug")
    with slow_request_in_flight(env, s, b, 0.5) as busy:
        with s.connect(timeout=15) as waiting:
            waiting.request("GET", "/?r=1")
            wait_until(lambda: "r=1: queued" in s.stderr_text(), 10 * env.slow,
                       what="the request to be queued")
            # Stopped, sluice misses the slow answer and the queue deadline: on waking,
            # the freed slot and the expired timer come in the same loop turn.
            os.kill(s.pid, signal.SIGSTOP)
            try:
                time.sleep(2.5)
            finally:
                os.kill(s.pid, signal.SIGCONT)
            assert busy.read_response().status == 200
            r = waiting.read_response()
            assert r.status in (200, 503), r
    assert s.alive()
    assert s.get("/").status == 200
