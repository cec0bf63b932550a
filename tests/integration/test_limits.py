"""Limits: requests per backend connection, connections per listener."""


from harness import free_port


def test_backend_connection_is_replaced_after_max_requests(env):
    b = env.backend("b")
    s = env.sluice([b], pool={"max_requests": 3})
    conns = []
    with s.connect() as c:
        for _ in range(9):
            c.request("GET", "/")
            r = c.read_response()
            assert r.status == 200, r
            conns.append(r.header("X-Backend-Conn"))
    assert [conns.count(x) for x in dict.fromkeys(conns)] == [3, 3, 3], conns


def test_listener_max_connections_holds_the_excess_in_the_backlog(env):
    b = env.backend("b")
    port = free_port()
    s = env.sluice([b], listeners=[{"address": "127.0.0.1:%d" % port, "pool": "web",
                                    "max_connections": 2}])
    c1, c2 = s.connect(), s.connect()
    for c in (c1, c2):
        c.request("GET", "/")
        assert c.read_response().status == 200
    with s.connect(timeout=10) as c3:
        c3.request("GET", "/")
        # Connected (the kernel's backlog took it) but not served while two are open.
        c3.assert_unanswered(0.5 * env.slow, "served beyond max_connections")
        c1.close()
        r = c3.read_response()
        assert r.status == 200, r
    c2.close()
    assert s.alive()
