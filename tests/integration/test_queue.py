"""max_connections per server and per pool; the queue in front of them."""

import threading
import time


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
    s = env.sluice([a, b], pool={"max_connections": 3})
    res = concurrently(s, ["/slow?delay=0.3&i=%d" % i for i in range(8)])
    assert [r[0] for r in res] == [200] * 8, res
    assert a.stats()["max_in_flight"] + b.stats()["max_in_flight"] <= 4  # each at most 2 of the 3
    assert max(r[1] for r in res) >= 0.85, res  # 8 requests, 3 at a time: three rounds


def test_a_request_waiting_longer_than_the_queue_timeout_gets_503_with_retry_after(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}],
                   pool={"queue": {"timeout": 0.3, "retry_after": 7}})
    res = concurrently(s, ["/slow?delay=1.5", "/"])
    slow, waited = sorted(res, key=lambda r: r[2].status)
    assert slow[0] == 200, res
    assert waited[0] == 503 and waited[2].header("Retry-After") == "7", res
    assert 0.25 <= waited[1] < 1.2, "503 after %.2f s, expected ~0.3 s" % waited[1]
    assert "waited in the pool's queue for too long" in s.stderr_text()
    assert b.stats()["requests"] == 2  # the slow one and /stats: the 503 never reached b


def test_a_full_queue_answers_503_at_once(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}], pool={"queue": {"size": 0}})
    with s.connect(timeout=10) as c:
        c.request("GET", "/slow?delay=1")
        time.sleep(0.1)  # the slow request is in flight (a measured head start, not a sync)
        t0 = time.monotonic()
        r = s.get("/")
        assert r.status == 503 and r.header("Retry-After") == "1", r
        assert time.monotonic() - t0 < 0.5
        assert c.read_response().status == 200
    assert "the pool's queue is full" in s.stderr_text()


def test_queued_requests_are_served_oldest_first(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}])
    results = {}

    def one(i):
        results[i] = s.get("/slow?delay=0.15&i=%d" % i, timeout=15).status

    threads = []
    for i in range(5):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # stagger arrivals so that their order is known
    for t in threads:
        t.join(20)
    assert results == {i: 200 for i in range(5)}, results
    order = [int(l.split("i=")[1].split()[0]) for l in b.request_lines() if "i=" in l]
    assert order == [0, 1, 2, 3, 4], order


def test_a_client_that_leaves_the_queue_gives_its_place_up(env):
    b = env.backend("b")
    s = env.sluice([{"address": b.addr, "max_connections": 1}])
    with s.connect(timeout=10) as busy:
        busy.request("GET", "/slow?delay=0.5")
        with s.connect(timeout=10) as leaver:
            leaver.request("GET", "/slow?delay=0.01&who=leaver")
            time.sleep(0.1)
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
