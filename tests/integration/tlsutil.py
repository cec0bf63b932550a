"""A test CA and certificates made with the openssl CLI, and TLS clients (curl, s_client, ssl)."""

import os
import socket
import ssl
import subprocess

OPENSSL = "openssl"


def run(argv, cwd=None, input=None, timeout=30):
    return subprocess.run(argv, cwd=cwd, input=input, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def _check(p, what):
    if p.returncode != 0:
        raise AssertionError("%s failed: %s" % (what, p.stderr.decode(errors="replace")))


class CA:
    """A certificate authority in dir/name*, issuing leaf certificates for DNS names."""

    def __init__(self, dir, name="ca", cn="sluice test CA"):
        self.dir = dir
        self.name = name
        self.key = os.path.join(dir, name + ".key")
        self.crt = os.path.join(dir, name + ".crt")
        self.serial = 0
        _check(run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", self.key, "-out", self.crt, "-days", "30", "-subj",
                    "/CN=" + cn]), "CA")
        # `openssl ca` can back-date a certificate (an expired one); it wants its files.
        self.db = os.path.join(dir, name + ".db")
        open(self.db + ".index", "w").close()
        with open(self.db + ".cnf", "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s.index\nnew_certs_dir = %s\n"
                    "serial = %s.serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                    "copy_extensions = copy\n[p]\ncommonName = supplied\n" % (self.db, dir, self.db))

    def issue(self, file, names, kind="ec", expired=False, client=False):
        """Writes file.crt and file.key (in the CA's dir) for names; returns their paths."""
        self.serial += 1
        crt = os.path.join(self.dir, file + ".crt")
        key = os.path.join(self.dir, file + ".key")
        csr = os.path.join(self.dir, file + ".csr")
        ext = os.path.join(self.dir, file + ".ext")
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
            ["-newkey", "rsa:2048"]
        _check(run([OPENSSL, "req", *newkey, "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=" + names[0]]), "key for " + file)
        with open(ext, "w") as f:
            if client:
                f.write("extendedKeyUsage=clientAuth\n")
            else:
                f.write("subjectAltName=" + ",".join(("IP:" if n[0].isdigit() else "DNS:") + n
                                                     for n in names) + "\n")
                f.write("extendedKeyUsage=serverAuth\n")
        if expired:
            with open(self.db + ".serial", "w") as f:
                f.write("%04X\n" % (0x1000 + self.serial))
            _check(run([OPENSSL, "ca", "-batch", "-config", self.db + ".cnf", "-cert", self.crt,
                        "-keyfile", self.key, "-in", csr, "-out", crt, "-extfile", ext,
                        "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext"]),
                   "expired certificate " + file)
        else:
            _check(run([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key,
                        "-set_serial", str(1000 + self.serial), "-out", crt, "-days", "30",
                        "-extfile", ext]), "certificate " + file)
        return crt, key


def curl_https(port, name, path="/", cacert=None, extra=(), timeout=15):
    """curl https://name:port/path resolved to 127.0.0.1; returns CompletedProcess (text)."""
    argv = ["curl", "-sS", "--max-time", str(timeout), "--resolve", "%s:%d:127.0.0.1" % (name, port)]
    argv += ["--cacert", cacert] if cacert else ["-k"]
    argv += list(extra) + ["https://%s:%d%s" % (name, port, path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5,
                          stdin=subprocess.DEVNULL)


def s_client(port, args=(), input=b"", timeout=15):
    """openssl s_client to 127.0.0.1:port with args; returns (returncode, output text)."""
    p = run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, *args], input=input,
            timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def peer_subject(port, name, **ctx_kw):
    """The CN of the certificate sluice shows a client sending SNI name (None: no SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            der = s.getpeercert(binary_form=True)
    p = run([OPENSSL, "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253"], input=der)
    _check(p, "reading the peer certificate")
    return p.stdout.decode().strip().split("CN=", 1)[1]


def client_hello(name="a.test"):
    """The bytes of a TLS ClientHello for name, as a client would send first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class TLSClient:
    """A keep-alive HTTPS connection: requests with raw bytes over Python's ssl."""

    def __init__(self, port, name, cafile=None, timeout=15):
        ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not cafile:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=name)
        self.name = name
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def get(self, path, headers=()):
        """Sends a GET; returns (status, headers dict lower-cased, body)."""
        req = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (path, self.name)
        req += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._more()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def _more(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d
