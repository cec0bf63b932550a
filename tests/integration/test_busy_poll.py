"""limits.busy_poll: the loop polls instead of sleeping for a while after
each event, and sleeps again once events stop."""

import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def test_busy_poll_serves_and_sleeps_again_when_idle(env):
    b = env.backend()
    s = env.sluice([b], limits={"busy_poll": 0.01})
    with s.connect() as c:
        for i in range(200):
            c.request("GET", "/size/%d" % i)
            r = c.read_response()
            assert r.status == 200 and len(r.body) == i, (i, r.status)
    # Polling goes on for 10 ms after the last event, then the loop sleeps:
    # a second without traffic costs next to no CPU (a spinning loop: ~1 s).
    time.sleep(0.05)
    before = cpu_seconds(s.pid)
    t0 = time.monotonic()
    time.sleep(1.0)
    used = cpu_seconds(s.pid) - before
    assert used < 0.2 * (time.monotonic() - t0), "idle sluice used %.2f s of CPU in 1 s" % used
    assert s.get("/").status == 200

