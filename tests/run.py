#!/usr/bin/env python3
"""The sluice test runner (Python 3.11 standard library only).

    python3 tests/run.py --sluice build/sluice [--unit-dir build/tests]
                         [-k SUBSTRING] [--no-unit] [--timeout SECONDS] [--list]

1. Unit tests: every executable file in --unit-dir is run; it prints one line
   per test, "PASS name" or "FAIL name: reason", and exits non-zero on failure.
   A binary that crashes or exits non-zero without a FAIL line counts as one
   failure.
2. Integration tests: every test_* function in tests/integration/test_*.py,
   each in its own Python process with its own fresh sluice and backends
   (tests/integration/harness.py), under a hard time limit.

Prints "PASS name (1.2s)" or "FAIL name" + details per test and, alone on the
last line, "N passed, N failed".  Exit status 0 only if something ran and
nothing failed.
"""

import argparse
import importlib.util
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(HERE, "integration")


def out(*a):
    print(*a, flush=True)


def indent(text, pad="    "):
    return "\n".join(pad + l for l in text.rstrip("\n").splitlines())


# ---------------------------------------------------------------------------
# Unit tests


def run_unit(unit_dir, ksub, timeout):
    passed = failed = 0
    if not os.path.isdir(unit_dir):
        out("FAIL unit-dir: %s is not a directory" % unit_dir)
        return 0, 1
    for name in sorted(os.listdir(unit_dir)):
        path = os.path.join(unit_dir, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        if ksub and ksub not in name:
            continue
        t0 = time.monotonic()
        try:
            p = subprocess.run([path], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, cwd=os.path.dirname(HERE))
            rc, stdout, stderr = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, stdout, stderr = "timeout", e.stdout or b"", e.stderr or b""
        stdout = stdout.decode(errors="replace")
        stderr = stderr.decode(errors="replace")
        nfail = 0
        for line in stdout.splitlines():
            if line.startswith("PASS "):
                passed += 1
                out(line)
            elif line.startswith("FAIL "):
                failed += 1
                nfail += 1
                out(line)
        if rc != 0 and nfail == 0:
            failed += 1
            why = "timed out after %ds" % timeout if rc == "timeout" else (
                "killed by signal %d" % -rc if isinstance(rc, int) and rc < 0 else "exit status %s" % rc)
            out("FAIL %s: %s without a FAIL line (%.1fs)" % (name, why, time.monotonic() - t0))
            tail = (stdout[-2000:] + stderr[-3000:]).strip()
            if tail:
                out(indent(tail))
        elif nfail:
            if stderr.strip():
                out(indent(stderr[-3000:]))
    return passed, failed


# ---------------------------------------------------------------------------
# Integration tests


def load_module(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def discover(ksub):
    """[(file, func_name)] in file order, then definition order."""
    if INTEGRATION not in sys.path:
        sys.path.insert(0, INTEGRATION)
    tests = []
    for fn in sorted(os.listdir(INTEGRATION)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        path = os.path.join(INTEGRATION, fn)
        mod = load_module(path)
        funcs = [(f.__code__.co_firstlineno, n) for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod.__name__]
        for _, n in sorted(funcs):
            full = "%s::%s" % (fn[:-3], n)
            if ksub and ksub not in n and ksub not in full:
                continue
            tests.append((path, n))
    return tests


class TestTimeout(BaseException):
    pass


def child_main(args):
    """Runs one test in this process; exit 0 on pass."""
    path, name = args.run_one.split("::")
    sys.path.insert(0, INTEGRATION)
    import harness

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its time limit of %ds" % args.timeout)

    def on_term(signum, frame):
        raise TestTimeout("test process terminated by the runner")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(args.timeout)
    env = harness.Env(args.sluice, workdir=args.workdir, pidfile=args.pidfile)
    ok = True
    try:
        mod = load_module(path)
        getattr(mod, name)(env)
    except BaseException:
        ok = False
        sys.stdout.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        try:
            problems = env.close()
        except BaseException:
            problems = ["cleanup failed:\n" + traceback.format_exc()]
        for p in problems:
            ok = False
            sys.stdout.write("sluice problem: %s\n" % p)
        if not ok and env.sluices:
            sys.stdout.write(env.stderr_tails() + "\n")
        sys.stdout.flush()
    os._exit(0 if ok else 1)


def run_integration(args, tests):
    passed = failed = 0
    base = tempfile.mkdtemp(prefix="sluice-tests-")
    for i, (path, name) in enumerate(tests):
        wd = os.path.join(base, "%03d" % i)
        os.makedirs(wd)
        pidfile = os.path.join(wd, "pids")
        cmd = [sys.executable, os.path.abspath(__file__), "--sluice", args.sluice,
               "--timeout", str(args.timeout), "--run-one", "%s::%s" % (path, name),
               "--workdir", wd, "--pidfile", pidfile]
        t0 = time.monotonic()
        logf = open(os.path.join(wd, "output.txt"), "w+b")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        note = ""
        try:
            rc = p.wait(timeout=args.timeout + 30)
        except subprocess.TimeoutExpired:
            note = "hard time limit (%ds) exceeded; test process killed\n" % (args.timeout + 30)
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
        # Whatever the test left behind (by PID, command line checked) goes.
        from harness import kill_recorded
        kill_recorded(pidfile)
        dt = time.monotonic() - t0
        logf.seek(0)
        output = logf.read().decode(errors="replace")
        logf.close()
        if rc == 0 and not note:
            passed += 1
            out("PASS %s (%.1fs)" % (name, dt))
            # A test reports figures on lines starting with "# " (failover counts and the like).
            for line in output.splitlines():
                if line.startswith("# "):
                    out("    " + line)
            shutil.rmtree(wd, ignore_errors=True)
        else:
            failed += 1
            out("FAIL %s (%.1fs)" % (name, dt))
            text = note + output + "(files of this test kept in %s)\n" % wd
            out(indent(text[-12000:]))
    try:
        os.rmdir(base)  # only if every test passed
    except OSError:
        pass
    return passed, failed


def main():
    ap = argparse.ArgumentParser(description="sluice test runner")
    ap.add_argument("--sluice", default="build/sluice", help="path of the sluice binary")
    ap.add_argument("--unit-dir", default=None, help="directory of unit test executables")
    ap.add_argument("-k", dest="k", default=None, help="only tests whose name contains this")
    ap.add_argument("--no-unit", action="store_true", help="skip unit tests")
    ap.add_argument("--timeout", type=int, default=120, help="per-test time limit (s)")
    ap.add_argument("--list", action="store_true", help="list the integration tests and exit")
    ap.add_argument("--run-one", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--pidfile", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run_one:
        child_main(args)
        return

    passed = failed = 0
    if args.unit_dir and not args.no_unit:
        p, f = run_unit(args.unit_dir, args.k, args.timeout)
        passed += p
        failed += f

    try:
        tests = discover(args.k)
    except Exception:
        out("FAIL discovery")
        out(indent(traceback.format_exc()))
        tests = []
        failed += 1
    if args.list:
        for path, name in tests:
            out("%s::%s" % (os.path.basename(path)[:-3], name))
        return
    if tests:
        if not os.path.isfile(args.sluice) or not os.access(args.sluice, os.X_OK):
            out("FAIL integration: sluice binary %r not found or not executable" % args.sluice)
            failed += 1
        else:
            p, f = run_integration(args, tests)
            passed += p
            failed += f

    out("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or passed + failed == 0 else 0)


if __name__ == "__main__":
    main()
