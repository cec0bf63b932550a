"""How many idle backend connections are kept: as many as recent concurrency
needed (no cap unless `keepalive` is set), the surplus closed gradually."""

import asyncio
import time

from harness import ONE_WORKER, raise_nofile, wait_until

N_CLIENTS = 500


async def _get(r, w, path):
    w.write(b"GET %s HTTP/1.1\r\nHost: pool\r\n\r\n" % path)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await asyncio.wait_for(r.readexactly(length), 30)
    return int(head.split(b" ", 2)[1])


async def _clients(port, n, path, seconds, on_warm):
    """n keep-alive clients: one request each, all at once (the warm-up), then
    on_warm(), then requests back to back for `seconds`. Returns the statuses
    after the warm-up."""
    conns = [await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
             for _ in range(n)]
    warm = await asyncio.gather(*(_get(r, w, path) for r, w in conns))
    assert warm == [200] * n, warm
    on_warm()
    end = time.monotonic() + seconds
    statuses = []

    async def loop(r, w):
        while time.monotonic() < end:
            statuses.append(await _get(r, w, path))

    await asyncio.gather(*(loop(r, w) for r, w in conns))
    for _, w in conns:
        w.close()
    return statuses


def test_500_keepalive_clients_reuse_backend_connections(env):
    limit = raise_nofile()
    assert limit >= 4 * N_CLIENTS, "RLIMIT_NOFILE %d too low for this test" % limit
    b = env.backend()
    s = env.sluice([b], limits={"max_connections": 4 * N_CLIENTS})
    accepted = {}

    def mark():
        accepted["warm"] = b.stats()["accepted"]

    # The backend takes 20 ms per answer, so that all 500 are in flight at
    # once: far more than any fixed number of idle connections kept.
    statuses = asyncio.run(_clients(s.port, N_CLIENTS, b"/slow?delay=0.02", 3 * env.slow, mark))
    # Each /stats call is a connection of its own: take it off.
    opened = b.stats()["accepted"] - accepted["warm"] - 1
    assert statuses and set(statuses) == {200}, set(statuses)
    assert len(statuses) >= 2000, "only %d requests in the measured seconds" % len(statuses)
    per_1000 = 1000.0 * opened / len(statuses)
    assert per_1000 < 10, "%d new backend connections for %d requests (%.1f per 1,000)" % (
        opened, len(statuses), per_1000)
    assert s.alive()


def _burst(port, n):
    async def main():
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
        st = await asyncio.gather(*(_get(r, w, b"/slow?delay=0.2") for r, w in conns))
        for _, w in conns:
            w.close()
        return st
    return asyncio.run(main())


def test_idle_surplus_closes_gradually_after_a_burst(env):
    b = env.backend()
    s = env.sluice([b], pool={"keepalive_purge": 1})
    assert _burst(s.port, 100) == [200] * 100
    burst_end = time.monotonic()
    # Kept for at least one whole purge period after they were needed ...
    assert b.stats()["open"] == 100
    time.sleep(max(0.0, burst_end + 0.5 - time.monotonic()))  # a point inside that period
    assert b.stats()["open"] == 100
    # ... then halved period by period, not all at once, down to none.
    seen = set()

    def drained():
        seen.add(b.stats()["open"])
        return 0 in seen
    wait_until(drained, 20 * env.slow, interval=0.05,
               what="idle backend connections to be closed")
    steps = sorted(seen - {0, 100}, reverse=True)
    assert steps and steps[0] >= 25, "went from 100 to 0 in too few steps: %r" % sorted(seen)
    assert s.get("/").status == 200


def test_keepalive_caps_idle_connections_when_set(env):
    b = env.backend()
    # One worker: idle connections are kept per worker (README: workers).
    s = env.sluice([b], pool={"keepalive": 8}, extra=ONE_WORKER)
    assert _burst(s.port, 40) == [200] * 40
    wait_until(lambda: b.stats()["open"] <= 8, 10 * env.slow,
               what="idle backend connections to drop to keepalive = 8")
    assert b.stats()["open"] == 8
    # The 8 kept are reused: sequential requests open no new connection.
    before = b.stats()["accepted"]
    for _ in range(20):
        assert s.get("/").status == 200
    assert b.stats()["accepted"] == before + 1  # the /stats connection alone
