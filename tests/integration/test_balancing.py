"""Round-robin over servers, skipping servers that are down."""

from harness import ONE_WORKER, free_port


def test_round_robin_alternates_between_two_backends(env):
    a = env.backend("a")
    b = env.backend("b")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, b], extra=ONE_WORKER)
    seq = []
    for i in range(10):
        r = s.get("/")
        assert r.status == 200, r
        seq.append(r.header("X-Backend"))
    assert seq.count("a") == 5 and seq.count("b") == 5, seq
    assert all(x != y for x, y in zip(seq, seq[1:])), "not alternating: %r" % seq


def test_round_robin_on_one_keepalive_client_connection(env):
    a = env.backend("a")
    b = env.backend("b")
    s = env.sluice([a, b])
    seq = []
    with s.connect() as c:
        for i in range(10):
            c.request("GET", "/")
            r = c.read_response()
            assert r.status == 200, r
            seq.append(r.header("X-Backend"))
    assert seq.count("a") == 5 and seq.count("b") == 5, seq
    assert all(x != y for x, y in zip(seq, seq[1:])), "not alternating: %r" % seq


def test_round_robin_over_three_backends(env):
    bs = [env.backend(n) for n in ("a", "b", "c")]
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice(bs, extra=ONE_WORKER)
    seq = [s.get("/").header("X-Backend") for _ in range(9)]
    assert sorted(seq) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3, seq
    assert all(seq[i] == seq[i + 3] for i in range(6)), "not a cycle: %r" % seq


def test_down_server_is_skipped(env):
    dead = "127.0.0.1:%d" % free_port()
    live = env.backend("live")
    s = env.sluice([dead, live], pool={"connect_backoff": 30})
    statuses = []
    for i in range(20):
        r = s.get("/?i=%d" % i)
        statuses.append(r.status)
        if r.status == 200:
            assert r.header("X-Backend") == "live"
    assert all(st == 200 for st in statuses[1:]), statuses
    assert statuses[0] in (200, 502), statuses


def test_down_server_is_skipped_with_live_server_first(env):
    live = env.backend("live")
    dead = "127.0.0.1:%d" % free_port()
    s = env.sluice([live, dead], pool={"connect_backoff": 30})
    statuses = [s.get("/?i=%d" % i).status for i in range(20)]
    bad = [i for i, st in enumerate(statuses) if st != 200]
    assert len(bad) <= 1, statuses


def test_server_that_comes_back_is_used_again(env):
    from harness import wait_until
    port = free_port()
    live = env.backend("live")
    s = env.sluice(["127.0.0.1:%d" % port, live], pool={"connect_backoff": 0.5})
    for i in range(4):
        s.get("/")
    env.backend("back", port=port)
    # After the backoff expires, round-robin reaches the revived server again.
    wait_until(lambda: s.get("/").header("X-Backend") == "back", 10 * env.slow, interval=0.1,
               what="revived server to get requests")
