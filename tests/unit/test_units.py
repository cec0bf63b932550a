"""The unit test binaries (tests/unit/<layer>/test_<module>.c, built into
--unit-dir), and the fuzz targets built to replay their corpora
(tests/fuzz/): each is run once, and each line it prints, "PASS name" or
"FAIL name: where: what", is a test here. A binary that crashes, times out
or exits non-zero without a FAIL line is one failed test."""

import os
import subprocess

import pytest

TIMEOUT = 120
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binaries(unit_dir):
    if not unit_dir or not os.path.isdir(unit_dir):
        return []
    unit_dir = os.path.abspath(unit_dir)
    return [os.path.join(unit_dir, n) for n in sorted(os.listdir(unit_dir))
            if n.startswith(("test_", "fuzz_")) and os.access(os.path.join(unit_dir, n), os.X_OK)]


def _cases(path):
    """[(id, failure or None)] of one binary's run."""
    name = os.path.basename(path)
    try:
        p = subprocess.run([path], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TIMEOUT, cwd=REPO)
        rc, stdout, stderr = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", e.stdout or b"", e.stderr or b""
    stdout = stdout.decode(errors="replace")
    stderr = stderr.decode(errors="replace")
    cases = []
    for line in stdout.splitlines():
        if line.startswith("PASS "):
            cases.append(("%s::%s" % (name, line[5:].strip()), None))
        elif line.startswith("FAIL "):
            test, _, why = line[5:].partition(": ")
            cases.append(("%s::%s" % (name, test), why + "\n" + stderr[-3000:]))
    if rc != 0 and not any(why for _, why in cases):
        why = ("timed out after %ds" % TIMEOUT if rc == "timeout" else
               "killed by signal %d" % -rc if isinstance(rc, int) and rc < 0 else
               "exit status %s" % rc)
        cases.append(("%s::exit" % name, "%s without a FAIL line\n%s%s"
                      % (why, stdout[-2000:], stderr[-3000:])))
    return cases


def pytest_generate_tests(metafunc):
    if "unit_case" in metafunc.fixturenames:
        cases = [c for b in _binaries(metafunc.config.getoption("--unit-dir")) for c in _cases(b)]
        metafunc.parametrize("unit_case", cases, ids=[c[0] for c in cases])


def test_unit(unit_case):
    name, failure = unit_case
    if failure:
        pytest.fail(failure, pytrace=False)
