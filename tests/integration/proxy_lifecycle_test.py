"""Integration tests of dingbridge-proxy's process lifecycle (issue 14, defects 6, 7, 11): tunnels
cut at shutdown_grace are logged, a pending DNS lookup at exit is freed, the access log is
reopened on SIGHUP, a second instance on the same port is refused. Real binary, loopback only.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from proxy_production_test import admin_address, echo, metric, metrics_text, open_tunnel  # noqa: E402

PASSWORD = "life-pw-3Vb"
# One worker, the admin port, and a tenant without credentials whose one destination is a closed
# port (its tunnels answer 502).
OPEN_WITH_ADMIN = """
listeners: ["127.0.0.1:0"]
workers: 1
admin:
  address: "127.0.0.1:0"
tenants:
  - name: open
    allow_without_credentials: true
    source_networks: ["127.0.0.0/8"]
    destinations: ["127.0.0.1:1"]
    allow_internal_networks: ["127.0.0.0/8"]
"""


def config(echo_port, extra=""):
    return f"""
listeners:
  - address: "127.0.0.1:0"
workers: 2
limits:
  shutdown_grace: 1s
  dns_timeout: 20s
{extra}
tenants:
  - name: agent
    users: [{{name: agent, password_hash: "{HASH}"}}]
    destinations: ["127.0.0.1:{echo_port}", "*.invalid:443"]
    allow_internal_networks: ["127.0.0.0/8"]
"""


HASH = None


class WithEcho(unittest.TestCase):
    """Hashes PASSWORD once (config() reads HASH) and runs an echo server for the class."""

    @classmethod
    def setUpClass(cls):
        global HASH
        HASH = HASH or harness.hash_password(PASSWORD)
        cls.echo = harness.TcpServer(echo)

    @classmethod
    def tearDownClass(cls):
        cls.echo.stop()


class LoopbackDns:
    """A name server on loopback (UDP): names whose first label starts with "slow" are never
    answered, `answers` (name -> IPv4) get an A record, anything else an empty NOERROR."""

    def __init__(self, answers):
        import struct
        import threading
        self.struct, self.answers = struct, answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            labels, i = [], 12
            while i < len(data) and data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode("latin1").lower())
                i += data[i] + 1
            qtype = self.struct.unpack(">H", data[i + 1:i + 3])[0]
            if not labels or labels[0].startswith("slow"):
                continue
            ip = self.answers.get(".".join(labels))
            answer = (b"\xc0\x0c" + self.struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
                      if ip and qtype == 1 else b"")
            head = data[:2] + self.struct.pack(">HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0)
            self.sock.sendto(head + data[12:i + 5] + answer, peer)

    def stop(self):
        self.sock.close()


def proxy_with_name_server(work, config_text, dns_port):
    """A proxy whose /etc/resolv.conf names only 127.0.0.1:dns_port (a private mount namespace:
    unprivileged user namespaces), or None where that is not possible."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        return None
    resolv = Path(work.path) / "resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.1:{dns_port}\n")
    wrapper = Path(work.path) / "proxy-with-name-server"
    wrapper.write_text(f"#!/bin/sh\nmount --bind {resolv} /etc/resolv.conf && exec \"$@\"\n")
    wrapper.chmod(0o755)
    return harness.Proxy(work.path, config_text, prefix=["unshare", "-rm", str(wrapper)])


class DnsFairness(WithEcho):
    def test_one_tenants_unanswered_lookups_do_not_hold_up_another_tenants(self):
        # Before: libevent's 64 queries in flight (32 lookups) per worker were one queue for all
        # tenants; with a tenant keeping 300 names unanswered another tenant's lookup waited
        # behind them. Now one tenant holds at most 256 of 2,048 (then 503).
        work = harness.Workdir()
        dns = LoopbackDns({"fast.test": "127.0.0.1"})
        proxy = None
        held = []
        try:
            proxy = proxy_with_name_server(work, f"""
listeners: ["127.0.0.1:0"]
workers: 1
limits: {{dns_timeout: 5s, shutdown_grace: 1s}}
tenants:
  - name: noisy
    source_networks: ["127.0.2.0/24"]
    allow_without_credentials: true
    destinations: ["*.slow.test:443"]
  - name: victim
    source_networks: ["127.0.0.3/32"]
    allow_without_credentials: true
    destinations: ["fast.test:{self.echo.port}"]
    allow_internal_networks: ["127.0.0.0/8"]
""", dns.port)
            if proxy is None:
                self.skipTest("needs unprivileged user and mount namespaces (unshare -rm)")

            def connect(source, target):
                s = socket.socket()
                s.settimeout(15)
                s.bind((source, 0))
                s.connect((proxy.host, proxy.port))
                s.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
                return s

            for n in range(300):
                held.append(connect(f"127.0.2.{1 + n % 200}", f"slow{n}.slow.test:443"))  # under the per-source cap
            time.sleep(0.5)
            started = time.monotonic()
            s = connect("127.0.0.3", f"fast.test:{self.echo.port}")
            status, _, _ = harness.read_response_head(s)
            waited_s = time.monotonic() - started
            s.close()
            self.assertEqual(status, 200)
            # Its name server answers at once. Before: 4.5 s, behind the other tenant's lookups
            # until they timed out (a 504 with a longer queue).
            self.assertLess(waited_s, 2.5)
            busy = 0
            for h in held[256:]:
                try:
                    busy += harness.read_response_head(h)[0] == 503
                except OSError:
                    pass
            self.assertGreater(busy, 0, "the noisy tenant's lookups beyond its share are refused at once")
            proxy.wait_for_log(lambda line: "too many destination name lookups" in line)
        finally:
            for h in held:
                h.close()
            if proxy:
                proxy.stop()
            dns.stop()
            work.cleanup()


class Shutdown(WithEcho):

    def test_tunnels_cut_at_shutdown_grace_are_logged_and_pending_lookups_freed(self):
        work = harness.Workdir()
        silent_dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a name server that never answers
        silent_dns.bind(("127.0.0.1", 0))
        try:
            # Give the proxy that name server through a private mount namespace (unprivileged
            # user namespaces); without them the lookup may be answered at once and the pending
            # lookup part is not exercised.
            resolv = Path(work.path) / "resolv.conf"
            resolv.write_text(f"nameserver 127.0.0.1:{silent_dns.getsockname()[1]}\n")
            pending_lookup = subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
            if pending_lookup:
                wrapper = Path(work.path) / "proxy-with-silent-dns"
                wrapper.write_text(f"#!/bin/sh\nmount --bind {resolv} /etc/resolv.conf && exec \"$@\"\n")
                wrapper.chmod(0o755)
                proxy = harness.Proxy(work.path, config(self.echo.port), prefix=["unshare", "-rm", str(wrapper)])
            else:
                proxy = harness.Proxy(work.path, config(self.echo.port))
            live, status, _, _ = open_tunnel(proxy.host, proxy.port, f"127.0.0.1:{self.echo.port}", f"agent:{PASSWORD}")
            self.assertEqual(status, 200)
            live.sendall(b"x" * 1000)
            # A lookup that stays pending: the resolver of this machine never answers for
            # *.invalid within dns_timeout, or answers NXDOMAIN (then it is just refused).
            lookup = socket.create_connection((proxy.host, proxy.port), timeout=10)
            import base64
            lookup.sendall(b"CONNECT never.invalid:443 HTTP/1.1\r\nProxy-Authorization: Basic " +
                           base64.b64encode(f"agent:{PASSWORD}".encode()) + b"\r\n\r\n")
            time.sleep(0.5)
            proxy.proc.send_signal(signal.SIGTERM)
            self.assertEqual(proxy.proc.wait(20), 0)
            log = proxy.access_log()
            cut = [l for l in log if "shutdown" in l]
            self.assertTrue(any(f"dst=127.0.0.1:{self.echo.port}" in l and "status=200" in l and "up=1000" in l
                                for l in cut), "\n".join(log))
            err = proxy.stderr_text()
            if pending_lookup:
                self.assertTrue(any("dst=never.invalid:443" in l for l in cut), "\n".join(log))
            self.assertNotIn("LeakSanitizer", err)
            self.assertNotIn("ERROR: AddressSanitizer", err)
            live.close()
            lookup.close()
            proxy.stop()
        finally:
            silent_dns.close()
            work.cleanup()


class DescriptorBudget(unittest.TestCase):
    # A spliced tunnel backed up both ways holds 6 descriptors, a copied one 2: under ulimit -n 96
    # the first admits a dozen tunnels, the second about thirty.
    def test_small_descriptor_limit_refuses_new_clients_instead_of_killing_busy_spliced_tunnels(self):
        self.check_budget("splice", 16)

    def test_small_descriptor_limit_refuses_new_clients_instead_of_killing_busy_copied_tunnels(self):
        self.check_budget("copy", 40)

    def test_small_descriptor_limit_refuses_new_clients_instead_of_killing_busy_auto_relayed_tunnels(self):
        # relay: auto lends bulk directions pipes from a per-worker allowance (3 under ulimit -n 96)
        # and copies once it is used up, so 30-odd busy tunnels fit as with copy.
        self.check_budget("auto", 40)

    def check_budget(self, relay, attempts):
        global HASH
        HASH = HASH or harness.hash_password(PASSWORD)
        size = 512 * 1024
        results = []

        def push_then_read(conn):
            # Both directions backed up: we send without reading until the client starts reading.
            conn.sendall(b"d" * size)
            got = 0
            while got < size:
                d = conn.recv(65536)
                if not d:
                    break
                got += len(d)
            results.append(got)

        server = harness.TcpServer(push_then_read)
        work = harness.Workdir()
        try:
            proxy = harness.Proxy(work.path, f"""
listeners:
  - address: "127.0.0.1:0"
workers: 1
relay: {relay}
tenants:
  - name: agent
    users: [{{name: agent, password_hash: "{HASH}"}}]
    destinations: ["127.0.0.1:{server.port}"]
    allow_internal_networks: ["127.0.0.0/8"]
""", prefix=["prlimit", "--nofile=96:96"])
            tunnels, refused = [], 0
            for _ in range(attempts):
                s, status, _, rest = open_tunnel(proxy.host, proxy.port, f"127.0.0.1:{server.port}",
                                                 f"agent:{PASSWORD}", timeout=30)
                if status == 200:
                    s.setblocking(False)
                    try:
                        s.send(b"u" * size)  # as much as fits: the upload backs up too
                    except BlockingIOError:
                        pass
                    s.setblocking(True)
                    tunnels.append((s, len(rest)))
                else:
                    self.assertEqual(status, 503)
                    refused += 1
                    s.close()
            time.sleep(0.5)
            self.assertGreater(refused, 0, f"{attempts} busy tunnels under ulimit -n 96 were all admitted")
            self.assertGreater(len(tunnels), 0)
            for s, already in tunnels:
                got = already
                while got < size:
                    d = s.recv(65536)
                    self.assertTrue(d, "tunnel cut mid-transfer:\n" + "\n".join(proxy.access_log()))
                    got += len(d)
                s.close()
            log = "\n".join(proxy.access_log())
            self.assertNotIn("cannot create pipe", log)
            self.assertNotIn("out of memory", log)
            self.assertNotIn("connection error", log)
            proxy.stop()
        finally:
            server.stop()
            work.cleanup()


    def test_a_scraper_holding_the_admin_connections_cannot_fail_admitted_tunnels(self):
        """The admin port keeps up to 64 connections, and the default max_connections (derived
        from the descriptor limit) did not leave room for them: under ulimit -n 200, clients
        accepted below max_connections whose heads came after a scraper took those connections
        got 502 (socket(): Too many open files) for tunnels the proxy had admitted."""
        server = harness.TcpServer(lambda conn: conn.recv(1))  # holds each tunnel until it closes
        work = harness.Workdir()
        clients, admins = [], []
        try:
            proxy = harness.Proxy(work.path, OPEN_WITH_ADMIN.replace('"127.0.0.1:1"', f'"127.0.0.1:{server.port}"'),
                                  prefix=["prlimit", "--nofile=200:200"])
            limit = int(proxy.stderr_text().split("max_connections ")[1].split()[0])
            for i in range(limit):  # accepted, each from its own address, heads not sent yet
                s = socket.socket()
                s.settimeout(30)
                s.bind((f"127.0.{i // 200 + 1}.{i % 200 + 1}", 0))
                s.connect((proxy.host, proxy.port))
                clients.append(s)
            time.sleep(0.5)
            host, port = admin_address(proxy).rsplit(":", 1)
            for _ in range(64):
                admins.append(socket.create_connection((host, int(port)), timeout=10))
            time.sleep(0.5)
            for s in clients:
                s.sendall(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n\r\n".encode())
            statuses = [harness.read_response_head(s)[0] for s in clients]
            self.assertEqual(statuses, [200] * limit, f"max_connections {limit}, 64 admin connections held:\n" +
                             proxy.stderr_text()[-2000:])
            self.assertNotIn("Too many open files", proxy.stderr_text())
            for s in clients + admins:
                s.close()
            proxy.stop()
        finally:
            server.stop()
            work.cleanup()


class AdminConnectionLimit(unittest.TestCase):
    def test_idle_admin_connections_cannot_take_the_descriptors(self):
        """evhttp (libevent 2.1) has no connection limit: 300 idle connections to the admin port
        held 300 descriptors, each for as long as it sent a byte every few seconds (a share of the
        descriptors the tunnels' budget counted on). Now at most 64 are kept, and a new one closes
        the oldest, so health checks are answered at once all the same."""
        work = harness.Workdir()
        socks = []
        try:
            proxy = harness.Proxy(work.path, OPEN_WITH_ADMIN)
            pid = proxy.proc.pid
            admin = admin_address(proxy)
            host, port = admin.rsplit(":", 1)

            def healthz():
                started = time.monotonic()
                with urllib.request.urlopen(f"http://{admin}/healthz", timeout=10) as r:
                    return r.status, time.monotonic() - started

            # Connections that end are forgotten: many more requests than the limit, a connection
            # each (urllib closes it), all answered, and nothing closed for room.
            for _ in range(150):
                self.assertEqual(healthz()[0], 200)
            base = len(os.listdir(f"/proc/{pid}/fd"))
            # Idle ones, a byte of a request head now and then (each byte restarts evhttp's 10 s).
            for _ in range(300):
                s = socket.create_connection((host, int(port)), timeout=10)
                s.sendall(b"G")
                socks.append(s)
            time.sleep(1)
            held = len(os.listdir(f"/proc/{pid}/fd")) - base
            self.assertLessEqual(held, 64, f"{held} descriptors taken by 300 idle admin connections")
            self.assertGreaterEqual(held, 60, f"only {held} idle admin connections kept")
            status, took = healthz()
            self.assertEqual(status, 200)
            self.assertLess(took, 1.0, f"/healthz took {took:.2f} s behind 300 idle connections")
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    closed += s.recv(1) == b""
                except (BlockingIOError, ConnectionResetError):
                    pass  # still open, or reset rather than closed: not counted
            self.assertGreaterEqual(closed, 300 - 64, "the oldest idle connections were closed for room")
            log = proxy.stderr_text()
            self.assertEqual(log.count("admin: 64 connections open, the most kept; closing the oldest"), 1, log[-2000:])
            # Tunnels were never affected.
            s, status, _, _ = open_tunnel(proxy.host, proxy.port, "127.0.0.1:1", None, timeout=10)
            s.close()
            self.assertEqual(status, 502)
            # Stopping with admin connections open: their close callbacks run as evhttp frees them
            # (clean under the sanitizers).
            proxy.proc.send_signal(signal.SIGTERM)
            self.assertEqual(proxy.proc.wait(20), 0)
            err = proxy.stderr_text()
            self.assertNotIn("LeakSanitizer", err)
            self.assertNotIn("ERROR: AddressSanitizer", err)
            self.assertNotIn("runtime error", err)
            proxy.stop()
        finally:
            for s in socks:
                s.close()
            work.cleanup()


class OutOfDescriptors(unittest.TestCase):
    def test_listeners_pause_instead_of_spinning(self):
        """With its descriptors used up, accept fails and the connection stays in the backlog:
        evhttp's admin listener retried at once for ever (a core busy, 56 MB of warnings in 3 s),
        the tunnel listeners warned every 100 ms. Both now pause, warn once a minute, and serve
        again once descriptors are free."""
        import resource
        work = harness.Workdir()
        socks = []
        try:
            proxy = harness.Proxy(work.path, OPEN_WITH_ADMIN)
            pid = proxy.proc.pid
            fds_at_start = len(os.listdir(f"/proc/{pid}/fd"))
            admin_host, admin_port = admin_address(proxy).rsplit(":", 1)

            # One tunnel and one admin request first, while descriptors are free. Under UBSan (the
            # sanitizer suite) the first check of each object's dynamic type calls pipe(2) to probe
            # the vtable's memory; with no descriptor left that probe fails and UBSan reports a
            # valid Tunnel as "invalid vptr" and halts the proxy. The checks are cached once made.
            s, status, _, _ = open_tunnel(proxy.host, proxy.port, "127.0.0.1:1", None, timeout=10)
            s.close()
            self.assertEqual(status, 502, "a tunnel to a closed port before the descriptors run out")
            with urllib.request.urlopen(f"http://{admin_address(proxy)}/healthz", timeout=10) as r:
                self.assertEqual(r.status, 200)
            harness.wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) <= fds_at_start, proxy.proc,
                               "dingbridge-proxy (closing the warm-up's descriptors)", 10, proxy.stderr_text)

            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 4, hard))
            try:
                for _ in range(20):
                    socks.append(socket.create_connection((admin_host, int(admin_port)), timeout=10))
                    socks.append(socket.create_connection((proxy.host, proxy.port), timeout=10))
                time.sleep(0.5)
                cpu0, log0 = harness.cpu_seconds(pid), len(proxy.stderr_text())
                time.sleep(3)
                cpu, grown = harness.cpu_seconds(pid) - cpu0, len(proxy.stderr_text()) - log0
                self.assertLess(cpu, 1.0, f"the proxy used {cpu:.2f} s of CPU in 3 s with its descriptors gone")
                self.assertLess(grown, 1024, f"the log grew {grown} bytes in 3 s:\n{proxy.stderr_text()[-1000:]}")
                log = proxy.stderr_text()
                self.assertEqual(log.count("admin: accept failed (Too many open files); pausing"), 1, log[-2000:])
                self.assertEqual(log.count("warning accept failed (Too many open files); pausing"), 1, log[-2000:])
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            for s in socks:
                s.close()
            # Descriptors free again: both listeners serve.
            with urllib.request.urlopen(f"http://{admin_address(proxy)}/healthz", timeout=10) as r:
                self.assertEqual(r.status, 200)
            s, status, _, _ = open_tunnel(proxy.host, proxy.port, "127.0.0.1:1", None, timeout=10)
            s.close()
            self.assertEqual(status, 502, "a tunnel to a closed port after the pause")
            proxy.stop()
        finally:
            for s in socks:
                s.close()
            work.cleanup()


class Operators(WithEcho):

    def tunnel_once(self, proxy, target=None):
        s, status, _, _ = open_tunnel(proxy.host, proxy.port, target or f"127.0.0.1:{self.echo.port}", f"agent:{PASSWORD}")
        s.close()
        return status

    def wait_for(self, predicate, what, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def test_sighup_reopens_the_access_log_and_follows_a_changed_file(self):
        work = harness.Workdir()
        try:
            w = Path(work.path)
            log, rotated, other = w / "access.log", w / "access.log.1", w / "other.log"
            proxy = harness.Proxy(work.path, config(self.echo.port, f'access_log:\n  file: "{log}"'))
            self.assertEqual(self.tunnel_once(proxy), 200)
            self.wait_for(lambda: log.exists() and "status=200" in log.read_text(), "first line")
            log.rename(rotated)  # what logrotate does before `systemctl reload`
            proxy.proc.send_signal(signal.SIGHUP)
            # The file appears when the new sink is opened, a moment before lines go to it: a
            # tunnel in between is rightly logged to the rotated file. Wait for the reload's end.
            self.wait_for(lambda: "configuration reloaded" in proxy.stderr_text(), "the access log to be reopened")
            self.assertTrue(log.exists())
            self.assertEqual(self.tunnel_once(proxy, "127.0.0.1:1"), 403)
            self.wait_for(lambda: "status=403" in log.read_text(), "a line in the new file")
            self.assertNotIn("status=403", rotated.read_text())
            # A changed access_log.file is honoured on reload, not ignored.
            proxy.config.write_text(config(self.echo.port, f'access_log:\n  file: "{other}"'))
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: proxy.stderr_text().count("configuration reloaded") == 2, "the new access log file")
            self.assertTrue(other.exists())
            self.assertEqual(self.tunnel_once(proxy), 200)
            self.wait_for(lambda: "status=200" in other.read_text(), "a line in the changed file")
            self.assertEqual(log.read_text().count("\n"), 1)
            self.assertIn(f"access log now written to {other}", proxy.stderr_text())
            proxy.stop()
        finally:
            work.cleanup()

    def test_a_broken_file_on_sighup_still_reopens_both_log_files(self):
        # logrotate moves the files and sends SIGHUP whatever state the configuration is in. A
        # broken file reopened the access log but not the diagnostic log: the proxy went on
        # writing to the rotated file, and its "reload failed" went where nobody looks.
        work = harness.Workdir()
        try:
            w = Path(work.path)
            access, diag = w / "access.log", w / "proxy.log"
            proxy = harness.Proxy(work.path, config(self.echo.port,
                                                    f'access_log:\n  file: "{access}"\nlog:\n  file: "{diag}"'))
            self.assertEqual(self.tunnel_once(proxy), 200)
            self.wait_for(lambda: access.exists() and "status=200" in access.read_text(), "first access line")
            self.assertIn("dingbridge-proxy started", diag.read_text())
            access.rename(w / "access.log.1")
            diag.rename(w / "proxy.log.1")
            good = proxy.config.read_text()
            proxy.config.write_text(good + "listeners: [\n")
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: diag.exists() and "reload failed" in diag.read_text(), "the failure in the new log")
            self.assertNotIn("reload failed", (w / "proxy.log.1").read_text())
            self.assertTrue(access.exists())
            self.assertEqual(self.tunnel_once(proxy, "127.0.0.1:1"), 403)
            self.wait_for(lambda: "status=403" in access.read_text(), "a line in the new access log")
            # The next good reload writes to the same new file.
            proxy.config.write_text(good)
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: "configuration reloaded" in diag.read_text(), "the next reload")
            proxy.stop()
        finally:
            work.cleanup()

    def test_a_log_file_in_a_missing_directory_is_refused_not_created(self):
        # spdlog creates every missing directory on the way to a log file: a mistyped
        # directory appeared (as root at install time) and the lines went where nobody looks.
        work = harness.Workdir()
        try:
            w = Path(work.path)
            missing = w / "dingbrdige"  # the typo
            path = w / "check.yaml"
            for key, extra in (("access_log.file", f'access_log:\n  file: "{missing}/access.log"'),
                               ("log.file", f'log:\n  file: "{missing}/proxy.log"')):
                path.write_text(config(self.echo.port, extra))
                r = subprocess.run([harness.PROXY_BIN, "--check-config", "-c", str(path)], capture_output=True, text=True)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(f"{key} {missing}/", r.stderr)
                self.assertIn(f"directory {missing} does not exist", r.stderr)
                with self.assertRaises(RuntimeError) as caught:
                    harness.Proxy(work.path, config(self.echo.port, extra)).stop()
                self.assertIn("exited with 1:", str(caught.exception))
                self.assertIn(f"directory {missing} does not exist", str(caught.exception))
                self.assertFalse(missing.exists())
            # A file (not a directory) on the way is named as such.
            (w / "plain").write_text("")
            path.write_text(config(self.echo.port, f'access_log:\n  file: "{w}/plain/access.log"'))
            r = subprocess.run([harness.PROXY_BIN, "--check-config", "-c", str(path)], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"{w}/plain is not a directory", r.stderr)

            # A reload naming a missing directory keeps the running file, and creates nothing.
            log = w / "access.log"
            proxy = harness.Proxy(work.path, config(self.echo.port, f'access_log:\n  file: "{log}"'))
            proxy.config.write_text(config(self.echo.port, f'access_log:\n  file: "{missing}/access.log"'))
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: "reload failed" in proxy.stderr_text(), "the reload to fail")
            self.assertIn(f"cannot open access log file {missing}/access.log: directory {missing} does not exist",
                          proxy.stderr_text())
            self.assertFalse(missing.exists())
            self.assertEqual(self.tunnel_once(proxy), 200)
            self.wait_for(lambda: "status=200" in log.read_text(), "a line in the running file")
            # A diagnostic log that cannot be opened fails the reload as a whole: the rest of the
            # new file (here another access log) must not have been swapped in already.
            other = w / "other.log"
            proxy.config.write_text(config(self.echo.port,
                                           f'access_log:\n  file: "{other}"\nlog:\n  file: "{missing}/proxy.log"'))
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: proxy.stderr_text().count("reload failed") == 2, "the second reload to fail")
            self.assertIn(f"cannot open log file {missing}/proxy.log: directory {missing} does not exist",
                          proxy.stderr_text())
            self.assertEqual(self.tunnel_once(proxy, "127.0.0.1:1"), 403)
            self.wait_for(lambda: "status=403" in log.read_text(), "the line still in the running file")
            self.assertFalse(other.exists())
            self.assertFalse(missing.exists())
            proxy.stop()
        finally:
            work.cleanup()

    def test_second_instance_on_the_same_port_is_refused(self):
        work = harness.Workdir()
        try:
            port = harness.free_port()
            text = config(self.echo.port).replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"')
            first = harness.Proxy(work.path, text, name="first")
            with self.assertRaises(RuntimeError) as caught:
                second = harness.Proxy(work.path, text, name="second")
                second.stop()
            self.assertIn("address already in use", str(caught.exception))
            self.assertIn("exited with 1:", str(caught.exception))  # not a sanitizer's abort
            self.assertEqual(self.tunnel_once(first), 200)  # the first one keeps all clients
            first.stop()
        finally:
            work.cleanup()

    def test_busy_admin_port_fails_with_the_reason(self):
        work = harness.Workdir()
        busy = socket.socket()
        try:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            admin = f"127.0.0.1:{busy.getsockname()[1]}"
            with self.assertRaises(RuntimeError) as caught:
                p = harness.Proxy(work.path, config(self.echo.port, f'admin:\n  address: "{admin}"'))
                p.stop()
            self.assertIn(f"cannot listen on admin address {admin}: Address already in use", str(caught.exception))
            # Exit 1, not LeakSanitizer's abort: the admin server's event base was left behind
            # when its constructor threw (seen in the sanitizer suite).
            self.assertIn("exited with 1:", str(caught.exception))
        finally:
            busy.close()
            work.cleanup()

    def test_check_config_refuses_addresses_this_host_does_not_have(self):
        work = harness.Workdir()
        try:
            for extra, what in (("outgoing:\n  bind_address: \"192.0.2.1\"", "outgoing.bind_address 192.0.2.1"),
                                ("", "listen address 192.0.2.1:3128")):
                text = config(self.echo.port, extra)
                if not extra:
                    text = text.replace('"127.0.0.1:0"', '"192.0.2.1:3128"')
                path = Path(work.path) / "check.yaml"
                path.write_text(text)
                r = subprocess.run([harness.PROXY_BIN, "--check-config", "-c", str(path)], capture_output=True, text=True)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(what + " is not usable on this host", r.stderr)
            path.write_text(config(self.echo.port))
            r = subprocess.run([harness.PROXY_BIN, "--check-config", "-c", str(path)], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            # A reload is checked the same way. Before, it took the missing egress address, said
            # "configuration reloaded", and every tunnel after it failed with 502.
            proxy = harness.Proxy(work.path, config(self.echo.port))
            proxy.config.write_text(config(self.echo.port, "outgoing:\n  bind_address: \"192.0.2.1\""))
            proxy.proc.send_signal(signal.SIGHUP)
            self.wait_for(lambda: "reload failed" in proxy.stderr_text() or "reloaded" in proxy.stderr_text(),
                          "the reload's end")
            self.assertIn("reload failed, keeping the running configuration: outgoing.bind_address 192.0.2.1 is "
                          "not usable on this host", proxy.stderr_text())
            self.assertEqual(self.tunnel_once(proxy), 200)
            proxy.stop()
        finally:
            work.cleanup()

    def test_metrics_have_build_info_and_tenant_labelled_denials(self):
        work = harness.Workdir()
        try:
            proxy = harness.Proxy(work.path, config(self.echo.port, 'admin:\n  address: "127.0.0.1:0"'))
            self.assertEqual(self.tunnel_once(proxy, "127.0.0.1:1"), 403)
            text = metrics_text(proxy)
            r = subprocess.run([harness.PROXY_BIN, "--version"], capture_output=True, text=True)
            version = r.stdout.split()[-1]
            self.assertEqual(metric(text, "dingbridge_proxy_build_info", version=version), 1)
            self.assertEqual(metric(text, "dingbridge_proxy_tenant_denials_total", tenant="agent", reason="destination"), 1)
            proxy.stop()
        finally:
            work.cleanup()


if __name__ == "__main__":
    unittest.main()
