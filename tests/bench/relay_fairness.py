#!/usr/bin/env python3
"""Benchmark (not a test): one tenant's bulk downloads against another tenant's small round trips
on the same proxy worker.

Tenant `bulk` downloads through N tunnels as fast as its clients read (a separate process); tenant
`interactive` sends 8-byte payloads through one tunnel to an echo server and times each round
trip. The same round trips straight to the echo server, under the same load, show what the host
itself adds. One worker, so every tunnel shares one event loop; for each relay and each N.

  python3 tests/bench/relay_fairness.py [--proxy build/proxy/dingbridge-proxy ...]
      [--relays copy splice buffered] [--tunnels 8 32] [--samples 200]

Several --proxy binaries are measured interleaved (to compare two builds in one run). Prints a
Markdown table. Loopback only.
"""
import argparse
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import harness  # noqa: E402
from proxy_test import AGENT_PASSWORD, BulkLoad, echo_round_trips, fairness_config  # noqa: E402


def pct(values, q):
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def measure(binary, relay, tunnels, samples, echo):
    harness.PROXY_BIN = binary
    work = harness.Workdir()
    proxy = harness.Proxy(work.path, fairness_config(relay, harness.hash_password(AGENT_PASSWORD), echo.port))
    try:
        via, status, _, _ = harness.connect_through(proxy, f"127.0.0.1:{echo.port}", f"interactive:{AGENT_PASSWORD}")
        assert status == 200, status
        direct = socket.create_connection(("127.0.0.1", echo.port))
        for s in (via, direct):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        idle = echo_round_trips(via, 50)
        with BulkLoad(proxy, f"bulk:{AGENT_PASSWORD}", tunnels) as load:
            loaded, control = [], []
            for _ in range(samples // 20):  # alternate, so both see the same moments of the load
                loaded += echo_round_trips(via, 20)
                control += echo_round_trips(direct, 20)
        via.close()
        direct.close()
    finally:
        proxy.stop()
        work.cleanup()
    loaded.sort()
    control.sort()
    return {"idle_p50": pct(idle, 0.5), "p50": pct(loaded, 0.5), "p99": pct(loaded, 0.99), "max": loaded[-1] * 1000,
            "direct_p50": pct(control, 0.5), "direct_p99": pct(control, 0.99), "mbps": load.megabytes_per_second}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", action="append", help="dingbridge-proxy binary (repeatable)")
    ap.add_argument("--relays", nargs="+", default=["copy", "splice", "buffered"])
    ap.add_argument("--tunnels", nargs="+", type=int, default=[8, 32])
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    binaries = args.proxy or [os.environ.get("DINGBRIDGE_PROXY", "build/proxy/dingbridge-proxy")]
    echo = harness.TcpServer(harness.echo)
    print(f"<!-- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} -->")
    print("| proxy | relay | bulk tunnels | echo p50 idle | echo p50 | echo p99 | echo max | direct p50 / p99 "
          "(same load) | bulk MB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for relay in args.relays:
        for tunnels in args.tunnels:
            for binary in binaries:
                r = measure(binary, relay, tunnels, args.samples, echo)
                print(f"| {binary} | {relay} | {tunnels} | {r['idle_p50']:.2f} ms | {r['p50']:.2f} ms | "
                      f"{r['p99']:.2f} ms | {r['max']:.2f} ms | {r['direct_p50']:.2f} / {r['direct_p99']:.2f} ms | "
                      f"{r['mbps']:.0f} |", flush=True)
    echo.stop()


if __name__ == "__main__":
    main()
