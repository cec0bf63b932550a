"""sluice's tests under pytest (Debian's python3-pytest and python3-pytest-forked).

    make test                                   every test, as CI runs them
    /usr/bin/python3 -m pytest tests -k NAME    the tests whose name holds NAME

Options: --sluice BINARY (default build/sluice), --unit-dir DIR (the unit
test binaries, default build/tests; each PASS/FAIL line they print is a test
here), --test-timeout SECONDS (per integration test, default 120).

Each integration test runs in a process of its own (forked) with its own
sluice, backends and temporary directory (tests/integration/harness.py's
Env, the `env` fixture); whatever it started is stopped by PID, even if the
test's process had to be killed. A failed test shows the tail of every
sluice's stderr. Lines a test prints starting with "# " (figures) are shown
under its name. The last line of a run is "N passed, N failed".

Tests about HTTP semantics (framing, headers, errors, retries, bodies) are
marked `fronts`: they run once per protocol in FRONTS, and `env.front` says
which one the test's client speaks.
"""

import os
import re
import shutil
import signal
import sys
import tempfile

import pytest

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "integration"))

import harness  # noqa: E402

# The protocols clients speak to sluice, for the tests marked `fronts`.
FRONTS = ["http/1.1", "h2"]


def pytest_addoption(parser):
    parser.addoption("--sluice", default=os.path.join(REPO, "build", "sluice"),
                     help="the sluice binary under test")
    parser.addoption("--unit-dir", default=os.path.join(REPO, "build", "tests"),
                     help="directory of the unit test binaries")
    parser.addoption("--test-timeout", type=int, default=120,
                     help="time limit of one integration test, in seconds")


def pytest_configure(config):
    config.addinivalue_line("markers", "fronts: runs once per front protocol (env.front)")
    # Made before any test process forks, so that the runner finds what each left behind.
    config.sluice_workdirs = tempfile.mkdtemp(prefix="sluice-tests-")


def _workdir(config, nodeid):
    return os.path.join(config.sluice_workdirs, re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid))


def pytest_generate_tests(metafunc):
    if "env" in metafunc.fixturenames and metafunc.definition.get_closest_marker("fronts"):
        metafunc.parametrize("env", FRONTS, indirect=True, ids=FRONTS)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.forked)


class TestTimeout(BaseException):
    """Not an Exception: a test's own `except Exception` must not swallow it."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.sluice_failed = report.failed


@pytest.fixture
def env(request):
    wd = _workdir(request.config, request.node.nodeid)
    os.makedirs(wd, exist_ok=True)
    e = harness.Env(request.config.getoption("--sluice"), workdir=wd,
                    pidfile=os.path.join(wd, "pids"))
    e.front = getattr(request, "param", FRONTS[0])
    limit = request.config.getoption("--test-timeout")

    def expired(signum, frame):
        raise TestTimeout("the test ran past its time limit of %ds" % limit)
    # In the test's own process: the test stops, and what it started is stopped below.
    signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    yield e
    signal.alarm(0)
    problems = e.close()
    if getattr(request.node, "sluice_failed", False) and e.sluices:
        print(e.stderr_tails())
    if problems:
        pytest.fail("\n".join("sluice problem: " + p for p in problems) + "\n"
                    + e.stderr_tails(), pytrace=False)


def pytest_runtest_logreport(report):
    """Figures a passing test printed ("# ..." lines) go under its name."""
    if report.when != "call" or not report.passed:
        return
    tr = _reporter()
    for title, text in report.sections:
        if title == "Captured stdout call" and tr:
            for line in text.splitlines():
                if line.startswith("# "):
                    tr.write_line("    " + line)


def pytest_runtest_logfinish(nodeid, location):
    """In the runner, after a test's process is gone: whatever it left running goes."""
    wd = _workdir(_config, nodeid)
    harness.kill_recorded(os.path.join(wd, "pids"))
    tr = _reporter()
    failed = tr and any(r.nodeid == nodeid for key in ("failed", "error")
                        for r in tr.stats.get(key, []))
    if failed:
        if os.path.isdir(wd):
            tr.write_line("    (files of this test kept in %s)" % wd)
    else:
        shutil.rmtree(wd, ignore_errors=True)


_config = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    global _config
    _config = session.config


def _reporter():
    return _config.pluginmanager.get_plugin("terminalreporter") if _config else None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed = len([r for r in stats.get("passed", []) if r.when == "call"])
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    config.sluice_counts = (passed, failed)


def pytest_unconfigure(config):
    try:
        os.rmdir(config.sluice_workdirs)  # only when no test kept its files
    except OSError:
        pass
    counts = getattr(config, "sluice_counts", None)
    if counts:
        # Last, after pytest's own summary (flushed first: stdout is a pipe in CI): the line CI
        # and people look for.
        sys.stdout.flush()
        os.write(1, ("%d passed, %d failed\n" % counts).encode())
