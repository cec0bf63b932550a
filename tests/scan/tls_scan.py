#!/usr/bin/env python3
"""`make test-tls-scan`: testssl.sh (Debian's) against a sluice TLS listener.

    python3 tests/scan/tls_scan.py --sluice build/sluice

The listener serves an ECDSA and an RSA certificate for one name, as a
site would. testssl.sh checks its protocols, cipher suites and their order,
forward secrecy and the known vulnerabilities (Heartbleed, ROBOT, CRIME,
POODLE, SWEET32, renegotiation, ...); the certificate itself is a test
CA's, so its trust and lifetime are not judged. Any finding of severity
MEDIUM or above fails the run. Ends with "N passed, N failed" like make test.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Env, free_port  # noqa: E402
from tlsutil import CA  # noqa: E402

BAD = ("MEDIUM", "HIGH", "CRITICAL")
CHECKS = ["--protocols", "--server-preference", "--std", "--fs", "--vulnerable"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the scan's files")
    a = ap.parse_args()
    env = Env(a.sluice)
    try:
        ca = CA(env.dir)
        ec = ca.issue("ec", ["scan.test"])
        rsa = ca.issue("rsa", ["scan.test"], kind="rsa")
        port = free_port()
        cfg = env.routed_config(
            pools={"p": ["127.0.0.1:1"]},
            sites=[{"hosts": ["scan.test"], "default": True,
                    "routes": [{"path": "/", "respond": {"status": 200, "body": "ok\n"}}]}],
            listeners=[{"address": "127.0.0.1:%d" % port,
                        "tls": {"certificates": [{"cert": c, "key": k} for c, k in (ec, rsa)]}}])
        s = env.sluice(config=cfg)
        report = env.path("testssl.json")
        argv = ["testssl", "--quiet", "--color", "0", "--warnings", "off",
                "--jsonfile-pretty", report, *CHECKS, "127.0.0.1:%d" % port]
        print(" ".join(argv), flush=True)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
        print(p.stdout, end="")
        if not os.path.exists(report):
            print(p.stderr)
            print("FAIL testssl.sh wrote no report (exit %d)" % p.returncode)
            print("0 passed, 1 failed")
            return 1
        with open(report) as f:
            results = json.load(f)["scanResult"][0]
        findings = [(section, f) for section, items in results.items() if isinstance(items, list)
                    for f in items if f.get("severity") in BAD]
        checked = sum(len(items) for items in results.values() if isinstance(items, list))
        for section, f in findings:
            print("FAIL %s %s %s: %s" % (section, f["severity"], f["id"], f["finding"]))
        if not s.alive():
            print("FAIL sluice died during the scan")
            findings.append(("sluice", None))
        print("%d checks, %d findings of severity MEDIUM or above" % (checked, len(findings)))
        print("%d passed, %d failed" % (0 if findings else 1, 1 if findings else 0))
        return 1 if findings else 0
    finally:
        problems = env.close()
        for p in problems:
            print("FAIL " + p)
        if not a.keep:
            shutil.rmtree(env.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
