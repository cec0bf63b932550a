#!/usr/bin/env python3
"""What many certificates cost sluice: load time and memory per certificate.

    python3 bench/cert_load.py --sluice build/sluice --make-certs build/make_certs [--count 10000]

Makes COUNT certificates (each its own P-256 key, for siteI.test and
*.siteI.test) with make_certs, then for a listener with certificate_dir on
them, and for one with a single certificate: the time of `sluice -t` (the
config loaded and checked, every certificate read), and sluice's VmRSS once
it listens. Memory per certificate = the difference / (COUNT - 1). A few
names are then asked for by SNI to check that each gets its own certificate.
Loopback only; stdlib only.
"""

import argparse
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def config(port, certs):
    return f"""return {{
  listeners = {{ {{ address = "127.0.0.1:{port}", pool = "p", tls = {{ {certs} }} }} }},
  pools = {{ p = {{ servers = {{ "127.0.0.1:1" }} }} }},
  log_level = "warn",
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(sluice, path, port):
    """(seconds for sluice -t, KiB of RSS once listening, the running process)."""
    t0 = time.monotonic()
    p = subprocess.run([sluice, "-t", "-c", path], capture_output=True, text=True)
    took = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"cert_load: sluice -t failed: {p.stderr}")
    proc = subprocess.Popen([sluice, "-c", path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"cert_load: sluice did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
    return took, rss_kib(proc.pid), proc


def subject_for(port, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            der = s.getpeercert(binary_form=True)
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                       capture_output=True)
    return p.stdout.decode().strip().rsplit("=", 1)[-1].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default="build/sluice")
    ap.add_argument("--make-certs", default="build/make_certs")
    ap.add_argument("--count", type=int, default=10000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sluice-certs-")
    procs = []
    try:
        certs = os.path.join(tmp, "certs")
        t0 = time.monotonic()
        subprocess.run([a.make_certs, certs, str(a.count)], check=True)
        print(f"made {a.count} certificates in {time.monotonic() - t0:.1f} s", flush=True)
        one, many = free_port(), free_port()
        with open(os.path.join(tmp, "one.lua"), "w") as f:
            f.write(config(one, 'certificates = { { cert = "certs/site0.crt", key = "certs/site0.key" } }'))
        with open(os.path.join(tmp, "many.lua"), "w") as f:
            f.write(config(many, 'certificate_dir = "certs"'))
        t1, rss1, p1 = measure(a.sluice, os.path.join(tmp, "one.lua"), one)
        procs.append(p1)
        tn, rssn, pn = measure(a.sluice, os.path.join(tmp, "many.lua"), many)
        procs.append(pn)
        rnd = random.Random(1)
        for i in [0, a.count - 1] + [rnd.randrange(a.count) for _ in range(8)]:
            for name in (f"site{i}.test", f"www.site{i}.test"):
                got = subject_for(many, name)
                if got != f"site{i}.test":
                    sys.exit(f"cert_load: {name} got the certificate of {got}")
        per = (rssn - rss1) / max(a.count - 1, 1)
        print(f"sluice -t, 1 certificate:        {t1:.2f} s, RSS listening {rss1} KiB")
        print(f"sluice -t, {a.count} certificates: {tn:.2f} s, RSS listening {rssn} KiB")
        print(f"per certificate: {per:.2f} KiB of RSS, {(tn - t1) / max(a.count - 1, 1) * 1e6:.0f} µs "
              "to load; SNI picked the right one for 20 names")
        return 0
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
