"""Shared pieces of the integration tests: temporary directories, certificates made with the
openssl CLI, the real dingbridge-proxy binary started on port 0, and small loopback servers.

Everything binds 127.0.0.1 / ::1 with port 0; nothing here ever contacts a non-loopback address.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import http.server
from pathlib import Path

PROXY_BIN = os.environ.get("DINGBRIDGE_PROXY", "dingbridge-proxy")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_ca_and_cert(directory, names=("localhost",), ips=("127.0.0.1", "::1")):
    """Creates a test CA and a server certificate signed by it; returns (ca.pem, cert.pem, key.pem)."""
    d = Path(directory)
    ca_key, ca = d / "ca.key", d / "ca.pem"
    key, csr, cert = d / "server.key", d / "server.csr", d / "server.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=dingbridge test CA"])
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", "/CN=" + names[0]])
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
    ext = d / "ext.cnf"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-out", str(cert), "-days", "2", "-extfile", str(ext)])
    return str(ca), str(cert), str(key)


def free_port(host="127.0.0.1"):
    """A TCP port that is free on `host` now (bound to port 0, read, released)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(ready, proc, what, timeout, log=lambda: "", interval=0.02):
    """Polls `ready()` until it is true; raises RuntimeError (with `log()`) when the process `proc`
    exits first or after `timeout` seconds."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log()}")
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not become ready in {timeout} s: {log()}")
        time.sleep(interval)


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds; returns False when SIGTERM was not enough."""
    if proc.poll() is not None:
        return True
    proc.terminate()
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def hash_password(password):
    out = subprocess.run([PROXY_BIN, "hash-password"], input=password + "\n", capture_output=True, text=True, check=True)
    return out.stdout.strip()


def read_rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proxy:
    """The real dingbridge-proxy binary with a YAML config written from a dict-like text."""

    def __init__(self, workdir, config_text, name="proxy", prefix=()):
        """`prefix`: a command the proxy runs under (e.g. unshare), which must exec it."""
        self.dir = Path(workdir)
        self.config = self.dir / f"{name}.yaml"
        self.config.write_text(config_text)
        self.ready = self.dir / f"{name}.ready"
        self.stdout = open(self.dir / f"{name}.stdout", "w+")
        self.stderr = open(self.dir / f"{name}.stderr", "w+")
        self.proc = subprocess.Popen(list(prefix) + [PROXY_BIN, "-c", str(self.config), "--ready-file", str(self.ready)],
                                     stdout=self.stdout, stderr=self.stderr)
        wait_until(self.ready.exists, self.proc, "proxy", 15, self.stderr_text)
        self.addresses = self.ready.read_text().split()
        host, port = self.addresses[0].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stderr_text(self):
        self.stderr.flush()
        return Path(self.stderr.name).read_text()

    def logs(self):
        """Everything the proxy wrote (access log and diagnostics), for checks that a secret is absent."""
        return Path(self.stdout.name).read_text() + Path(self.stderr.name).read_text()

    def access_log(self):
        """Access-log lines (stdout)."""
        self.stdout.flush()
        return Path(self.stdout.name).read_text().splitlines()

    def wait_for_log(self, predicate, timeout=5.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.access_log():
                if predicate(line):
                    return line
            time.sleep(0.02)
        raise AssertionError("no matching access-log line; log was:\n" + "\n".join(self.access_log()))

    def stop(self):
        """SIGTERM and wait; a proxy that does not exit 0 (or whose sanitizers reported anything)
        fails the test: under the sanitizer suite a leak found at exit aborts the process, which
        would otherwise go unseen here."""
        if self.stderr.closed:  # stopped already
            return
        was_running = self.proc.poll() is None
        ended = stop_process(self.proc)
        text = self.stderr_text()
        self.stdout.close()
        self.stderr.close()
        check_ended("proxy", self.proc.returncode, text, "SIGTERM" if was_running else None,
                    killed_after=None if ended else 10)


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print when they report.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def check_ended(what, returncode, output, stopped_by=None, killed_after=None):
    """Fails the test when `output` (what the process printed) holds a sanitizer report, when the
    process exited non-zero after the stop signal `stopped_by` (a name such as "SIGTERM"; None
    when it ended before the stop), or when it had to be killed `killed_after` seconds after that
    signal (a hang at shutdown)."""
    report = next((m for m in SANITIZER_MARKS if m in output), None)
    if killed_after is not None:
        raise AssertionError(f"{what} did not exit within {killed_after} s of {stopped_by or 'the stop signal'} "
                             f"and was killed{' (' + report + ')' if report else ''}: {output[-4000:]}")
    if report or (stopped_by and returncode != 0):
        how = f" on {stopped_by}" if stopped_by else ""
        raise AssertionError(f"{what} exited with {returncode}{how}"
                             f"{' (' + report + ')' if report else ''}: {output[-4000:]}")


class HttpsServer:
    """A threading HTTPS server on 127.0.0.1:0 serving `handler` (a BaseHTTPRequestHandler class)."""

    def __init__(self, handler, cert, key):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class TlsServer(HttpsServer):
    """An HTTPS server on 127.0.0.1 that answers GET / with a fixed body."""

    BODY = b"hello from the TLS upstream\n"

    def __init__(self, cert, key):
        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler, cert, key)


class TcpServer:
    """A plain TCP server on 127.0.0.1 running `handler(conn)` per connection in a thread."""

    def __init__(self, handler, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn)
        except Exception as e:  # recorded, asserted by tests that care
            self.errors.append(e)
        finally:
            conn.close()

    def stop(self):
        self.sock.close()


def echo(conn):
    """A TcpServer handler that sends back everything it receives."""
    while True:
        d = conn.recv(65536)
        if not d:
            return
        conn.sendall(d)


def connect_through(proxy, target, credentials=None, extra=b"", timeout=10):
    """Opens a raw socket to the proxy and sends a CONNECT head (+ extra bytes in the same send).
    Returns (socket, status, head bytes, bytes received after the head)."""
    s = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if credentials:
        import base64
        head += "Proxy-Authorization: Basic " + base64.b64encode(credentials.encode()).decode() + "\r\n"
    s.sendall(head.encode() + b"\r\n" + extra)
    status, response_head, rest = read_response_head(s)
    return s, status, response_head, rest


def read_response_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.") else None
    return status, head, rest


def recv_all(s):
    chunks = []
    while True:
        c = s.recv(65536)
        if not c:
            break
        chunks.append(c)
    return b"".join(chunks)


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="dingbridge-it-")

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def parse_json_lines(lines):
    return [json.loads(line) for line in lines if line.strip()]
