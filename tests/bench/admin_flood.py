#!/usr/bin/env python3
"""Benchmark (not a test): dingbridge-proxy's admin port under a flood of new connections.

Four threads open connections to the admin port as fast as they can, each sending a request, a
partial head, garbage or nothing, holding a random number of them and closing them (half with a
reset). Meanwhile a health checker asks GET /healthz every 50 ms. Prints the flood's rate, how
many health checks failed and their latency, and the proxy's exit status and whether a
sanitizer report appeared (run it with an ASan build for that).

  DINGBRIDGE_PROXY=... python3 tests/bench/admin_flood.py [--seconds 12] [--threads 4]

Loopback only; the proxy is stopped at the end.
"""
import argparse
import os
import random
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import harness  # noqa: E402
from proxy_lifecycle_test import OPEN_WITH_ADMIN  # noqa: E402
from proxy_production_test import admin_address  # noqa: E402

LINGER_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # struct linger {1, 0}: close sends RST


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    work = harness.Workdir()
    proxy = harness.Proxy(work.path, OPEN_WITH_ADMIN)
    try:
        host, port = admin_address(proxy).rsplit(":", 1)
        port = int(port)
        stop = time.time() + args.seconds
        opened = [0] * args.threads

        def flood(index):
            r = random.Random(index)
            held = []
            while time.time() < stop:
                try:
                    s = socket.create_connection((host, port), timeout=5)
                    opened[index] += 1
                    k = r.random()
                    if k < 0.3:
                        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    elif k < 0.5:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
                    elif k < 0.6:
                        s.sendall(b"\x00\xff garbage\r\n\r\n")
                    held.append(s)
                    if len(held) > r.randint(5, 60):
                        for x in held[: r.randint(1, len(held))]:
                            if r.random() < 0.5:
                                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                            x.close()
                        held = [x for x in held if x.fileno() != -1]
                except OSError:
                    pass
            for x in held:
                x.close()

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        latencies, failed = [], 0
        while time.time() < stop:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as r:
                    r.read()
            except OSError:
                failed += 1
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        for t in threads:
            t.join()
        latencies.sort()
        proxy.proc.send_signal(15)
        status = proxy.proc.wait(20)
        err = proxy.stderr_text()
        report = "Sanitizer" in err or "runtime error" in err
        print(f"flood: {sum(opened) / args.seconds:.0f} new connections/s; health checks: {len(latencies)}, "
              f"failed {failed}, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms; proxy exit {status}, sanitizer report: {'YES' if report else 'no'}")
        return 1 if report or status != 0 else 0
    finally:
        proxy.stop()
        work.cleanup()


if __name__ == "__main__":
    sys.exit(main())
