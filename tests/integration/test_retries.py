"""Retries after a request reached a backend: when, how often, and never when unsafe.

Backends named in ?fail_on= misbehave on that URL; the others answer it as
/echo, so the X-Backend header of a 200 says where a retry went, and each
backend's request log says who received what.
"""

import contextlib
import hashlib
import re
import socket
import time

import pytest

from harness import ONE_WORKER, ConnectionClosed, h1_only, wait_until

# About HTTP semantics: each runs once per front protocol (tests/conftest.py).
pytestmark = pytest.mark.fronts

RETRY = {"on": ["error", "timeout"], "budget": 100}


@contextlib.contextmanager
def blackholed_server():
    """The "host:port" of a listener whose accept queue is full: it drops SYNs, so
    connects to it time out."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    filler = socket.create_connection(ls.getsockname())
    try:
        yield "127.0.0.1:%d" % ls.getsockname()[1]
    finally:
        filler.close()
        ls.close()


def received(backend, needle):
    return [l for l in backend.request_lines() if needle in l]


def test_get_to_a_server_that_resets_before_answering_is_retried_elsewhere(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY})
    for i in range(4):
        r = s.get("/reset?send=0&fail_on=A&i=%d" % i)
        assert r.status == 200 and r.header("X-Backend") == "B", r
    # A got the first request and was taken out by its reset (max_fails = 1).
    assert len(received(a, "/reset")) == 1, a.request_lines()
    assert len(received(b, "/reset")) == 4, b.request_lines()
    err = s.stderr_text()
    assert "server %s: backend reset the connection; taken out" % a.addr in err, err
    assert "backend reset the connection server %s; trying again" % a.addr in err, err


def test_post_that_reached_a_server_is_never_sent_to_another(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY})
    r = s.get("/reset?send=0&fail_on=A", method="POST", body=b"pay once")
    assert r.status == 502, r
    assert len(received(a, "POST /reset")) == 1
    assert received(b, "POST") == [], b.request_lines()


def test_without_retry_configured_a_get_that_reached_a_server_is_not_retried(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b])
    r = s.get("/reset?send=0&fail_on=A")
    assert r.status == 502, r
    assert received(b, "/reset") == [], b.request_lines()


def test_hanging_server_times_out_is_taken_out_and_the_get_is_retried(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], timeouts={"backend_response": 0.5}, pool={"retry": RETRY})
    t0 = time.monotonic()
    r = s.get("/hang?fail_on=A")
    dt = time.monotonic() - t0
    assert r.status == 200 and r.header("X-Backend") == "B", r
    assert dt >= 0.45, "answered after %.2f s, before A's response timeout" % dt
    assert "server %s: backend sent no response head in time; taken out" % a.addr in s.stderr_text()
    # A is out: the next requests go straight to B, without waiting.
    t0 = time.monotonic()
    for _ in range(3):
        assert s.get("/hang?fail_on=A").header("X-Backend") == "B"
    assert time.monotonic() - t0 < 0.45 * 3
    assert len(received(a, "/hang")) == 1


def test_timeout_retry_is_off_unless_named(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], timeouts={"backend_response": 0.5},
                   pool={"retry": {"on": ["error"]}})
    r = s.get("/hang?fail_on=A")
    assert r.status == 504, r
    assert received(b, "/hang") == []


def test_a_half_sent_response_head_is_retried_for_a_get(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY})
    r = s.get("/reset?send=-1&fail_on=A")
    assert r.status == 200 and r.header("X-Backend") == "B", r


def test_reset_after_response_bytes_reached_the_client_is_never_retried(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY, "max_fails": 5})
    with s.connect(timeout=10) as c:
        c.request("GET", "/reset?send=5000&size=100000&fail_on=A")
        try:
            r = c.read_response()
        except ConnectionClosed:
            pass  # expected: part of the body, then the close
        else:
            raise AssertionError("a truncated response delivered as complete: %r" % r)
    assert received(b, "/reset") == [], b.request_lines()
    assert ("server %s: backend reset the connection in the middle of the response" % a.addr
            in s.stderr_text())


def test_retry_on_a_status_replaces_the_answer_and_takes_the_server_out(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": {"on": [503]}})
    r = s.get("/status/503?fail_on=A")
    assert r.status == 200 and r.header("X-Backend") == "B", r
    assert "server %s: backend answered with a status that retry.on names; taken out" % a.addr \
        in s.stderr_text()
    # A status not named is passed on as the backend sent it.
    r = s.get("/status/500?fail_on=B")
    assert r.status == 500 and r.body == b"status 500\n", r


def test_a_status_answer_is_passed_on_when_no_server_is_left(env):
    a = env.backend("A")
    s = env.sluice([a], pool={"retry": {"on": [503]}})
    r = s.get("/status/503")
    assert r.status == 503 and r.body == b"status 503\n" and r.header("X-Backend") == "A", r
    # Not retried, but counted all the same: A is out, and says so with Retry-After.
    assert "server %s: backend answered with a status that retry.on names; taken out" % a.addr \
        in s.stderr_text()
    r = s.get("/")
    assert r.status == 503 and r.header("Retry-After") == "1" and r.header("X-Backend") is None, r


def test_put_body_is_replayed_whole_from_the_retry_buffer(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY})
    body = bytes(range(256)) * 200  # 51,200 bytes: more than one I/O buffer
    r = s.get("/reset?send=0&fail_on=A", method="PUT", body=body)
    assert r.status == 200 and r.header("X-Backend") == "B", r
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(body).hexdigest()
    assert len(received(a, "PUT /reset")) == 1


def test_chunked_put_body_is_replayed_whole(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": RETRY})
    parts = [b"alpha" * 1000, b"beta" * 3000, b"gamma"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    r = s.get("/reset?send=0&fail_on=A", method="PUT", body=chunked,
              headers=[("Transfer-Encoding", "chunked")])
    assert r.status == 200 and r.header("X-Backend") == "B", r
    assert r.body == b"".join(parts)


def test_body_larger_than_the_retry_buffer_is_not_replayed(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": dict(RETRY, buffer=1000), "max_fails": 100})
    r = s.get("/reset?send=0&fail_on=A", method="PUT", body=b"x" * 5000)
    assert r.status == 502, r
    assert received(b, "PUT") == [], b.request_lines()
    # A body that fits is replayed.
    r = s.get("/reset?send=0&fail_on=B", method="PUT", body=b"y" * 900)
    assert r.status == 200 and r.body == b"y" * 900, r


def test_tries_bounds_the_attempts_of_one_request(env):
    bs = [env.backend(n) for n in "ABC"]
    s = env.sluice(bs, pool={"retry": dict(RETRY, tries=2)})
    r = s.get("/reset?send=0&fail_on=A,B,C")
    assert r.status == 502, r
    assert sum(len(received(b, "/reset")) for b in bs) == 2


def test_retry_budget_stops_retries_when_spent(env):
    a, b = env.backend("A"), env.backend("B")
    # No share of requests and no minimum: no retry at all may be made.
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, b], pool={"retry": dict(RETRY, budget=0, budget_min=0), "max_fails": 100}, extra=ONE_WORKER)
    statuses = [s.get("/reset?send=0&fail_on=A&i=%d" % i).status for i in range(6)]
    # Round robin: every other request lands on A first, fails, and stays failed.
    assert sorted(statuses) == [200] * 3 + [502] * 3, statuses
    assert len(received(b, "/reset")) == 3
    assert "retry budget spent" in s.stderr_text()


def test_retry_budget_allows_its_share(env):
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": dict(RETRY, budget=50, budget_min=0), "max_fails": 100})
    statuses = [s.get("/reset?send=0&fail_on=A&i=%d" % i).status for i in range(20)]
    on_a = len(received(a, "/reset"))
    retried = len(received(b, "/reset")) - (20 - on_a)
    # Retries stay within half the requests seen: some of A's failures are retried, not all.
    assert 0 < retried < on_a and retried <= 10, (statuses, on_a, retried)
    assert statuses.count(200) == 20 - on_a + retried


def test_blackholed_single_server_gives_503_quickly_after_the_first_timeout(env):
    with blackholed_server() as addr:
        s = env.sluice([addr], timeouts={"backend_connect": 0.3},
                       pool={"connect_backoff": 5, "queue": {"retry_after": 5}})
        t0 = time.monotonic()
        r = s.get("/")
        assert r.status == 504, r
        assert time.monotonic() - t0 >= 0.25
        for _ in range(3):
            t0 = time.monotonic()
            r = s.get("/")
            dt = time.monotonic() - t0
            assert r.status == 503 and r.header("Retry-After") == "5", r
            assert dt < 0.25, "503 after %.2f s: waited for a connect" % dt


def test_connect_timeout_is_retried_on_another_server_for_any_method(env):
    with blackholed_server() as addr:
        b = env.backend("B")
        s = env.sluice([addr, b], timeouts={"backend_connect": 0.3})
        r = s.get("/echo", method="POST", body=b"once")
        assert r.status == 200 and r.body == b"once" and r.header("X-Backend") == "B", r


def test_slow_server_within_the_timeout_is_not_counted_or_retried(env):
    a, b = env.backend("A"), env.backend("B")
    # One worker: a balancing algorithm's turns are per worker (README: workers).
    s = env.sluice([a, b], timeouts={"backend_response": 2}, pool={"retry": RETRY}, extra=ONE_WORKER)
    for i in range(2):
        r = s.get("/slow?delay=0.3&i=%d" % i)
        assert r.status == 200 and r.body == b"slow\n", r
    assert "taken out" not in s.stderr_text()
    assert len(received(a, "/slow")) == 1 and len(received(b, "/slow")) == 1


def test_replayed_body_goes_out_whole_when_the_next_server_answers_early(env):
    # The client leaves once answered, while sluice still holds body bytes for B: HTTP/1.1's
    # connection carries them on; over HTTP/2 a closed connection cancels its streams.
    h1_only(env, "a closed HTTP/2 connection cancels its streams")
    a, b = env.backend("A"), env.backend("B")
    s = env.sluice([a, b], pool={"retry": dict(RETRY, buffer=8 << 20)})
    body = bytes(range(256)) * (6 * 4096)  # 6 MiB: more than the sockets hold at once
    r = s.get("/reset?send=0&fail_on=A&else=/early", method="PUT", body=body, timeout=30)
    assert r.status == 200 and r.body == b"ok" and r.header("X-Backend") == "B", r
    # B answered before it had read the replay; every byte still reached it, and its
    # connection, reused, carries the next request intact.
    wait_until(lambda: received(b, "BODY"), 10 * env.slow, what="B to read the whole body")
    assert received(b, "BODY") == ["BODY %d" % len(body)], b.request_lines()
    r = s.get("/?next=1")
    assert r.status == 200 and r.body == b"hello from B\n", r
