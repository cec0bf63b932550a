"""Many clients at once."""

import asyncio
import time

from harness import pattern_bytes, raise_nofile, wait_until

N_CLIENTS = 1000
N_REQUESTS = 10


async def _client(port, i, opened, go, results, body_size):
    expected = pattern_bytes(body_size)
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
    except Exception as e:
        results.append(("connect", i, repr(e)))
        opened.append(False)
        return
    opened.append(True)
    try:
        await go.wait()
        for j in range(N_REQUESTS):
            w.write(b"GET /size/%d?c=%d&r=%d HTTP/1.1\r\nHost: load\r\n\r\n" % (body_size, i, j))
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            cl = None
            for l in lines[1:]:
                if l.lower().startswith("content-length:"):
                    cl = int(l.split(":", 1)[1])
            if status != 200 or cl is None:
                results.append(("status", i, lines[0]))
                return
            body = await asyncio.wait_for(r.readexactly(cl), 60)
            if body != expected:
                results.append(("body", i, j))
                return
            results.append(("ok", i, j))
    except Exception as e:
        results.append(("error", i, repr(e)))
    finally:
        w.close()
        try:
            await w.wait_closed()
        except Exception:
            pass


async def _load(port, body_size):
    opened, results = [], []
    go = asyncio.Event()
    tasks = [asyncio.create_task(_client(port, i, opened, go, results, body_size))
             for i in range(N_CLIENTS)]
    t_end = time.monotonic() + 90
    while len(opened) < N_CLIENTS and time.monotonic() < t_end:
        await asyncio.sleep(0.02)
    go.set()  # all connections are open at once before anyone sends
    await asyncio.wait_for(asyncio.gather(*tasks), 150)
    return opened, results


def test_1000_concurrent_clients_10_requests_each(env):
    limit = raise_nofile()
    assert limit >= 3 * N_CLIENTS, "RLIMIT_NOFILE %d too low for this test" % limit
    b = env.backend()
    s = env.sluice([b], pool={"keepalive": 64}, limits={"max_connections": 4 * N_CLIENTS})
    base_fds = s.fd_count()
    t0 = time.monotonic()
    opened, results = asyncio.run(_load(s.port, 200))
    dt = time.monotonic() - t0
    ok = sum(1 for r in results if r[0] == "ok")
    bad = [r for r in results if r[0] != "ok"]
    assert sum(opened) == N_CLIENTS, "%d of %d clients connected" % (sum(opened), N_CLIENTS)
    assert not bad, "%d failures (%.1fs), first: %r" % (len(bad), dt, bad[:5])
    assert ok == N_CLIENTS * N_REQUESTS, ok
    assert s.alive()
    # All clients are gone: sluice's descriptors drop back (pooled backend
    # connections kept idle are capped by keepalive = 64 here).
    wait_until(lambda: s.fd_count() <= base_fds + 64 + 4, 20 * env.slow,
               what="sluice fd count to drop to %d + 64 (now %d)" % (base_fds, s.fd_count()))
    assert s.get("/").status == 200


def test_many_concurrent_slow_requests_are_all_served(env):
    """100 clients waiting on a slow backend at the same time (backend
    connections beyond the keep-alive pool are opened as needed)."""
    b = env.backend()
    s = env.sluice([b], pool={"keepalive": 8})

    async def one(i):
        r, w = await asyncio.open_connection("127.0.0.1", s.port)
        w.write(b"GET /slow?delay=0.5&i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
        body = await asyncio.wait_for(r.readexactly(5), 30)
        w.close()
        return head.split(b" ")[1], body

    async def main():
        return await asyncio.gather(*(one(i) for i in range(100)))

    t0 = time.monotonic()
    res = asyncio.run(main())
    dt = time.monotonic() - t0
    assert all(st == b"200" and body == b"slow\n" for st, body in res), res[:5]
    # Served concurrently, not one after the other (100 x 0.5 s = 50 s).
    assert dt < 15 * env.slow, "100 concurrent slow requests took %.1fs" % dt
