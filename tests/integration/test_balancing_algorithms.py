"""Balancing algorithms of a pool (weighted, least_conn, random2, hash by
client/host/header/cookie) and server roles (backup, drain).  sluice runs one
worker, so a pool's picks are one deterministic sequence."""

import collections
import threading

from harness import ONE_WORKER, free_port, wait_until


def backend_of(r):
    assert r.status == 200, r
    return r.header("X-Backend")


def counts(s, n, path="/", **kw):
    return collections.Counter(backend_of(s.get(path, **kw)) for _ in range(n))


# ---------------------------------------------------------------------------
# weighted, least_conn, random2


def test_weighted_splits_requests_by_weight(env):
    a = env.backend("a")
    b = env.backend("b")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([{"address": a.addr, "weight": 3}, b], pool={"balance": "weighted"}, extra=ONE_WORKER)
    seq = [backend_of(s.get("/")) for _ in range(40)]
    assert collections.Counter(seq) == {"a": 30, "b": 10}, seq
    # Smooth: b's turns are spread out, never two in a row.
    assert all(not (x == y == "b") for x, y in zip(seq, seq[1:])), seq


def test_weighted_with_three_servers(env):
    bs = [env.backend(n) for n in ("a", "b", "c")]
    servers = [{"address": bs[0].addr, "weight": 5}, {"address": bs[1].addr, "weight": 2}, bs[2]]
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice(servers, pool={"balance": "weighted"}, extra=ONE_WORKER)
    assert counts(s, 40) == {"a": 25, "b": 10, "c": 5}


def test_round_robin_ignores_weights(env):
    a = env.backend("a")
    b = env.backend("b")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([{"address": a.addr, "weight": 3}, b], pool={"balance": "round_robin"}, extra=ONE_WORKER)
    assert counts(s, 20) == {"a": 10, "b": 10}


def test_least_conn_prefers_the_idle_server_over_one_with_a_request_in_flight(env):
    a = env.backend("a")
    b = env.backend("b")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, b], pool={"balance": "least_conn"}, extra=ONE_WORKER)
    slow = {}

    def slow_request():
        slow["r"] = s.get("/slow?delay=%g" % (3 * env.slow), timeout=30)

    t = threading.Thread(target=slow_request)
    t.start()
    try:
        # The slow request has reached a backend: that one now has one in flight.
        busy = wait_until(lambda: next((x for x in (a, b) if any(
            "/slow" in l for l in x.request_lines())), None), 10 * env.slow,
            what="the slow request to reach a backend")
        idle = b if busy is a else a
        seq = [backend_of(s.get("/")) for _ in range(6)]
        assert seq == [idle.name] * 6, "busy %s, picks %r" % (busy.name, seq)
    finally:
        t.join()
    assert slow["r"].status == 200 and slow["r"].header("X-Backend") == busy.name, slow
    # Both idle again: ties go round-robin, so both get requests.
    assert set(counts(s, 6)) == {"a", "b"}


def test_least_conn_weighs_in_flight_requests_by_weight(env):
    a = env.backend("a")
    b = env.backend("b")
    # Load is in-flight requests / weight.  The first slow request takes a (a tie,
    # 0/4 = 0/1), the second b (0/1 < 1/4); with one in flight on each, a's 1/4
    # is less than b's 1/1, so a gets what follows.
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([{"address": a.addr, "weight": 4}, b], pool={"balance": "least_conn"}, extra=ONE_WORKER)
    results = []

    def slow_request():
        results.append(s.get("/slow?delay=%g" % (3 * env.slow), timeout=30))

    threads = [threading.Thread(target=slow_request) for _ in range(2)]
    for t in threads:
        t.start()
        # One at a time, so that each pick sees the previous one in flight.
        n = len([t2 for t2 in threads if t2.ident])
        wait_until(lambda: sum(1 for x in (a, b) for l in x.request_lines() if "/slow" in l) >= n,
                   10 * env.slow, what="slow request %d to reach a backend" % n)
    try:
        slow_on = sorted(x.name for x in (a, b) for l in x.request_lines() if "/slow" in l)
        assert slow_on == ["a", "b"], slow_on
        seq = [backend_of(s.get("/")) for _ in range(4)]
        assert seq == ["a"] * 4, seq
    finally:
        for t in threads:
            t.join()
    assert [r.status for r in results] == [200, 200], results


def test_random2_uses_every_server(env):
    bs = [env.backend(n) for n in ("a", "b", "c")]
    s = env.sluice(bs, pool={"balance": "random2"})
    c = counts(s, 60)
    # Each server has a 1/3 chance per request: missing one in 60 is a 1e-10 event.
    assert set(c) == {"a", "b", "c"}, c
    assert all(v >= 5 for v in c.values()), c


# ---------------------------------------------------------------------------
# hash


def hash_sluice(env, by, n=3, **pool):
    bs = [env.backend(chr(ord("a") + i)) for i in range(n)]
    p = {"balance": "hash", "hash": by}
    p.update(pool)
    return bs, env.sluice(bs, pool=p)


def check_sticky_and_spread(pick, keys):
    """pick(key) -> backend name; each key three times.  Returns {key: backend}."""
    where = {}
    for rnd in range(3):
        for k in keys:
            b = pick(k)
            assert where.setdefault(k, b) == b, "key %r moved from %s to %s" % (k, where[k], b)
    spread = collections.Counter(where.values())
    assert len(spread) >= 2, "every key on one server: %r" % spread
    return where


def test_hash_by_header_keeps_a_key_on_its_server(env):
    bs, s = hash_sluice(env, "header:X-User")
    keys = ["user-%d" % i for i in range(48)]
    where = check_sticky_and_spread(
        lambda k: backend_of(s.get("/", headers=[("X-User", k)])), keys)
    # A server with none of 48 keys: a 1e-8 event for a fair ring.
    assert len(set(where.values())) == 3, where
    # The header name matches without regard to case.
    for k in keys[:5]:
        assert backend_of(s.get("/", headers=[("x-user", k)])) == where[k]


def test_hash_by_header_on_one_keepalive_connection(env):
    bs, s = hash_sluice(env, "header:X-User")
    first = {}
    with s.connect() as c:
        for rnd in range(2):
            for i in range(10):
                c.request("GET", "/", headers=[("X-User", "u%d" % i)])
                b = backend_of(c.read_response())
                assert first.setdefault(i, b) == b, (i, first[i], b)
    assert len(set(first.values())) >= 2, first


def test_hash_by_cookie_keeps_a_session_on_its_server(env):
    bs, s = hash_sluice(env, "cookie:session")

    def pick(k):
        return backend_of(s.get("/", headers=[("Cookie", "theme=dark; session=%s; lang=en" % k)]))

    where = check_sticky_and_spread(pick, ["s%03d" % i for i in range(20)])
    # The other cookies do not matter, nor where the session cookie is.
    for k in list(where)[:5]:
        assert backend_of(s.get("/", headers=[("Cookie", "session=%s" % k)])) == where[k]
        assert backend_of(s.get("/", headers=[("Cookie", "a=1"), ("Cookie", "x=2; session=%s" % k)])) \
            == where[k]


def test_hash_by_host_keeps_a_host_on_its_server(env):
    bs, s = hash_sluice(env, "host")
    where = check_sticky_and_spread(lambda k: backend_of(s.get("/", host=k)),
                                    ["site%d.example.com" % i for i in range(20)])
    # Hosts are compared in their lookup form: case, port and trailing dot do not matter.
    for k in list(where)[:5]:
        assert backend_of(s.get("/", host=k.upper() + ":8080")) == where[k]
        assert backend_of(s.get("/", host=k + ".")) == where[k]


def test_hash_by_client_keeps_a_client_address_on_its_server(env):
    bs, s = hash_sluice(env, "client")
    # All of 127/8 is loopback: each source address is another client.
    check_sticky_and_spread(lambda k: backend_of(s.get("/", source=k)),
                            ["127.0.0.%d" % i for i in range(1, 21)])


def test_hash_moves_only_the_keys_of_a_server_that_goes_down(env):
    bs, s = hash_sluice(env, "header:X-User", connect_backoff=60)
    keys = ["user-%d" % i for i in range(30)]
    where = check_sticky_and_spread(
        lambda k: backend_of(s.get("/", headers=[("X-User", k)])), keys)
    gone = where[keys[0]]
    next(b for b in bs if b.name == gone).stop()
    for k in keys:
        r = s.get("/", headers=[("X-User", k)])
        assert r.status == 200, (k, r)
        b = backend_of(r)
        if where[k] == gone:
            assert b != gone, (k, b)
        else:
            assert b == where[k], "key %r of a live server moved from %s to %s" % (k, where[k], b)


# ---------------------------------------------------------------------------
# backup and drain


def test_backup_gets_no_requests_while_a_primary_is_up(env):
    a = env.backend("a")
    b = env.backend("b")
    bk = env.backend("backup")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, {"address": bk.addr, "backup": True}, b], extra=ONE_WORKER)
    assert counts(s, 20) == {"a": 10, "b": 10}
    assert bk.request_lines() == []


def test_backup_serves_while_every_primary_is_down_and_primaries_win_again(env):
    port_a, port_b = free_port(), free_port()
    bk = env.backend("backup")
    servers = ["127.0.0.1:%d" % port_a, {"address": bk.addr, "backup": True},
               "127.0.0.1:%d" % port_b]
    s = env.sluice(servers, pool={"connect_backoff": 0.5})
    # Every primary refuses: every request is served, by the backup.
    assert counts(s, 10) == {"backup": 10}
    a = env.backend("a", port=port_a)
    # Once a's back-off has passed it is tried again, and then preferred.
    wait_until(lambda: s.get("/").header("X-Backend") == "a", 10 * env.slow, interval=0.05,
               what="the revived primary to get requests")
    before = len(bk.request_lines())
    c = counts(s, 10)
    assert c == {"a": 10}, c
    assert len(bk.request_lines()) == before
    assert a.request_lines()


def test_backup_takes_over_when_the_primary_stops(env):
    a = env.backend("a")
    bk = env.backend("backup")
    s = env.sluice([a, {"address": bk.addr, "backup": True}], pool={"connect_backoff": 30})
    with s.connect() as c:  # a pooled keep-alive connection to a, about to go stale
        c.request("GET", "/")
        assert backend_of(c.read_response()) == "a"
    assert counts(s, 4) == {"a": 4}
    a.stop()
    assert counts(s, 6) == {"backup": 6}


def test_several_backups_share_the_load(env):
    port = free_port()
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice(["127.0.0.1:%d" % port, {"address": b1.addr, "backup": True},
                    {"address": b2.addr, "backup": True}], pool={"connect_backoff": 30}, extra=ONE_WORKER)
    assert counts(s, 10) == {"b1": 5, "b2": 5}


def test_drained_server_gets_no_requests(env):
    a = env.backend("a")
    d = env.backend("drained")
    b = env.backend("b")
    for balance in ("round_robin", "weighted", "least_conn", "random2"):
        s = env.sluice([a, {"address": d.addr, "drain": True, "weight": 10}, b],
                       pool={"balance": balance})
        c = counts(s, 12)
        assert set(c) == {"a", "b"}, (balance, c)
        s.signal(15)
        s.wait_exit(10 * env.slow)
    assert d.request_lines() == []


def test_drained_server_gets_no_hashed_keys(env):
    a = env.backend("a")
    d = env.backend("drained")
    s = env.sluice([a, {"address": d.addr, "drain": True}],
                   pool={"balance": "hash", "hash": "header:X-User"})
    for i in range(20):
        assert backend_of(s.get("/", headers=[("X-User", "u%d" % i)])) == "a"
    assert d.request_lines() == []


def test_pool_of_only_drained_servers_answers_503(env):
    d = env.backend("drained")
    s = env.sluice([{"address": d.addr, "drain": True}])
    r = s.get("/")
    assert r.status == 503, r
    assert d.request_lines() == []
