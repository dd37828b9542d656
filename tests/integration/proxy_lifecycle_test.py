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
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from proxy_production_test import echo, open_tunnel  # noqa: E402

PASSWORD = "life-pw-3Vb"


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


class Shutdown(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global HASH
        HASH = HASH or harness.hash_password(PASSWORD)
        cls.echo = harness.TcpServer(echo)

    @classmethod
    def tearDownClass(cls):
        cls.echo.stop()

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
    def test_small_descriptor_limit_refuses_new_clients_instead_of_killing_busy_tunnels(self):
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
tenants:
  - name: agent
    users: [{{name: agent, password_hash: "{HASH}"}}]
    destinations: ["127.0.0.1:{server.port}"]
    allow_internal_networks: ["127.0.0.0/8"]
""", prefix=["prlimit", "--nofile=96:96"])
            tunnels, refused = [], 0
            for _ in range(16):
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
            self.assertGreater(refused, 0, "16 busy tunnels under ulimit -n 96 were all admitted")
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
            self.assertNotIn("connection error", log)
            proxy.stop()
        finally:
            server.stop()
            work.cleanup()


if __name__ == "__main__":
    unittest.main()
