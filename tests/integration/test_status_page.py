"""The admin listener's status page, loaded in a real browser (Debian's
chromium, headless) while traffic runs: what it shows must be what
/api/status says. A screenshot is kept next to the binary under test
(build/status-page.png) for a person to look at."""

import html
import json
import os
import re
import shutil
import subprocess
import threading

from harness import wait_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def chromium(env, url, *args):
    profile = env.path("chromium-profile-%d" % len(os.listdir(env.dir)))
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--user-data-dir=" + profile, "--hide-scrollbars",
            "--virtual-time-budget=4000", *args, url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "chromium failed (%d):\n%s" % (p.returncode, p.stderr[-3000:])
    return p.stdout


def traffic(s, stop, counts):
    """Requests on one keep-alive connection until told to stop (50,000 at most): 1 in 5 a 503."""
    with s.connect() as c:
        for i in range(50000):
            if stop.is_set():
                break
            path = "/status/503" if i % 5 == 4 else "/size/100"
            c.request("GET", path)
            counts.append(c.read_response().status)


def text_of(dom, pattern):
    m = re.search(pattern, dom, re.S)
    assert m, "not in the page: %s" % pattern
    return html.unescape(m.group(1)).strip()


def number(text):
    return float(text.replace(",", ""))


def close(shown, want, what):
    assert abs(number(shown) - want) <= 0.0051, "%s: the page shows %s, its JSON says %s" % (what, shown, want)


def test_status_page_shows_what_the_api_says_while_traffic_runs(env):
    a, b = env.backend("a"), env.backend("b")
    block, admin = env.admin_config()
    s = env.sluice([a, b], extra={"admin": block})
    wait_port("127.0.0.1", admin.port, 10 * env.slow)
    stop, counts = threading.Event(), []
    t = threading.Thread(target=traffic, args=(s, stop, counts))
    t.start()
    try:
        before = admin.get_json("/api/status")
        url = "http://127.0.0.1:%d/#token=%s" % (admin.port, admin.token)
        shot = os.path.join(os.path.dirname(env.sluice_path), "status-page.png")
        dom = chromium(env, url, "--dump-dom")
        chromium(env, url, "--window-size=1280,720", "--screenshot=" + shot)
        after = admin.get_json("/api/status")
    finally:
        stop.set()
        t.join()
    assert os.path.getsize(shot) > 5000, "the screenshot is empty"
    print("# screenshot: %s; %d requests during the test" % (shot, len(counts)))

    shown = json.loads(text_of(dom, r'<pre id="raw"[^>]*>(.*?)</pre>'))
    # The page's data is a real answer of /api/status, taken while the load ran ...
    assert before["requests"] < shown["requests"] < after["requests"], \
        (before["requests"], shown["requests"], after["requests"])
    assert [p["name"] for p in shown["pools"]] == ["web"]
    assert sorted(x["address"] for x in shown["pools"][0]["servers"]) == sorted([a.addr, b.addr])
    # ... and every number on it is that answer's.
    assert text_of(dom, r'id="requests">([^<]*)<') == "{:,}".format(shown["requests"])
    assert text_of(dom, r'id="generation">([^<]*)<') == str(shown["generation"])
    assert text_of(dom, r'id="workers">([^<]*)<') == str(shown["workers"])
    assert text_of(dom, r'id="version">([^<]*)<') == shown["version"]
    pool = shown["pools"][0]
    sec = text_of(dom, r'<section data-pool="web">(.*?)</section>')
    assert text_of(sec, r'data-v="requests">([^<]*)<') == "{:,}".format(pool["requests"])
    assert text_of(sec, r'data-v="5xx">([^<]*)<') == "{:,}".format(pool["errors"])
    for q in ("p50", "p90", "p99"):
        close(text_of(sec, r'data-v="%s ms">([^<]*)<' % q), pool["latency_ms"][q], "pool " + q)
    close(text_of(sec, r'data-v="added p99 ms">([^<]*)<'), pool["added_ms"]["p99"], "added p99")
    assert pool["errors"] > 0 and pool["responses"]["2xx"] > 0, pool
    for srv in pool["servers"]:
        row = text_of(dom, r'<tr data-server="%s">(.*?)</tr>' % re.escape(srv["address"]))
        assert text_of(row, r'class="state (\w+)"') == srv["state"] == "up"
        assert text_of(row, r'data-c="requests">([^<]*)<') == "{:,}".format(srv["requests"])
        assert text_of(row, r'data-c="errors">([^<]*)<') == "{:,}".format(srv["errors"])
        assert text_of(row, r'data-c="weight">([^<]*)<') == str(srv["weight"])
        for q in ("p50", "p90", "p99"):
            close(text_of(row, r'data-c="%s">([^<]*)<' % q), srv["latency_ms"][q], srv["address"] + " " + q)
    # It had a second snapshot to compute rates from: updating every second works.
    rate = text_of(dom, r'id="rate">([^<]*)<')
    assert rate != "-" and number(rate) >= 0, rate


def test_status_page_without_a_token_asks_for_one(env):
    b = env.backend()
    block, admin = env.admin_config()
    env.sluice([b], extra={"admin": block})
    wait_port("127.0.0.1", admin.port, 10 * env.slow)
    dom = chromium(env, "http://127.0.0.1:%d/" % admin.port, "--dump-dom")
    assert re.search(r'<form id="login">', dom), "the token form is shown"
    assert text_of(dom, r'id="requests">([^<]*)<') == "-"
    dom = chromium(env, "http://127.0.0.1:%d/#token=not-the-token" % admin.port, "--dump-dom")
    assert "Authorization" in text_of(dom, r'<div id="msg">([^<]*)<'), "the API's refusal is shown"
