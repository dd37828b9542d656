#!/usr/bin/env python3
"""Benchmark (not a test): one tenant's bulk downloads against another tenant's small round trips
on the same proxy worker.

Tenant `bulk` downloads through N tunnels as fast as its clients read (a separate process); tenant
`interactive` sends 8-byte payloads through one tunnel to an echo server and times each round
trip. The same round trips straight to the echo server, under the same load, show what the host
itself adds. One worker, so every tunnel shares one event loop; for each relay and each N.

  python3 tests/bench/relay_fairness.py [--proxy build/proxy/dingbridge-proxy ...]
      [--relays auto copy splice buffered] [--tunnels 8 32] [--samples 200]

Several --proxy binaries are measured interleaved (to compare two builds in one run). Prints a
Markdown table. Loopback only.

  python3 tests/bench/relay_fairness.py --chatter [--proxy ...] [--relays copy splice]

The other way round: one download of tenant `bulk` alone, then while tenant `interactive` keeps
the worker busy with 64 tunnels that each send 200-byte messages as fast as the proxy takes them
(one client process, which saturates a core itself): the download's rate in both, so that a
scheduling that puts small transfers first is seen to starve downloads.
"""
import argparse
import os
import socket
import subprocess
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


# Run in its own process: `n` tunnels through the proxy to the echo server, each sending 200-byte
# messages and reading back what comes, round-robin without waiting, for `seconds`; prints the
# messages sent.
CHATTER = r"""
import base64, socket, sys, time
host, port, credentials, target, n, seconds = sys.argv[1:7]
auth = base64.b64encode(credentials.encode()).decode()
tunnels = []
for _ in range(int(n)):
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 200 " in head, head
    s.setblocking(False)
    tunnels.append(s)
print("ready", flush=True)
message, sent, end = b"m" * 200, 0, time.monotonic() + float(seconds)
while time.monotonic() < end:
    for s in tunnels:
        try:
            s.send(message)
            sent += 1
        except BlockingIOError:
            pass
        try:
            s.recv(1 << 16)
        except BlockingIOError:
            pass
print(sent, flush=True)
"""


def measure_chatter(binary, relay, echo, seconds=4, tunnels=64):
    harness.PROXY_BIN = binary
    work = harness.Workdir()
    proxy = harness.Proxy(work.path, fairness_config(relay, harness.hash_password(AGENT_PASSWORD), echo.port))
    try:
        with BulkLoad(proxy, f"bulk:{AGENT_PASSWORD}", 1) as load:
            time.sleep(seconds - 1)
        alone = load.megabytes_per_second
        chatter = subprocess.Popen([sys.executable, "-c", CHATTER, proxy.host, str(proxy.port),
                                    f"interactive:{AGENT_PASSWORD}", f"127.0.0.1:{echo.port}", str(tunnels),
                                    str(seconds + 2)], stdout=subprocess.PIPE, text=True)
        try:
            assert chatter.stdout.readline().strip() == "ready"
            time.sleep(0.5)
            with BulkLoad(proxy, f"bulk:{AGENT_PASSWORD}", 1) as load:
                time.sleep(seconds - 1)
            messages = int(chatter.stdout.readline() or 0)
        finally:
            if chatter.poll() is None:
                chatter.kill()
            chatter.wait()
    finally:
        proxy.stop()
        work.cleanup()
    return alone, load.megabytes_per_second, messages / (seconds + 2)


def main_chatter(binaries, relays):
    echo = harness.TcpServer(harness.echo)
    print("| proxy | relay | download alone MB/s | download under chatter MB/s | ratio | chatter messages/s |")
    print("|---|---|---|---|---|---|")
    for relay in relays:
        for binary in binaries:
            alone, loaded, rate = measure_chatter(binary, relay, echo)
            print(f"| {binary} | {relay} | {alone:.0f} | {loaded:.0f} | {loaded / alone:.2f} | {rate:.0f} |", flush=True)
    echo.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", action="append", help="dingbridge-proxy binary (repeatable)")
    ap.add_argument("--relays", nargs="+", default=["auto", "copy", "splice", "buffered"])
    ap.add_argument("--tunnels", nargs="+", type=int, default=[8, 32])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--chatter", action="store_true", help="a download's rate under another tenant's chatter")
    args = ap.parse_args()
    binaries = args.proxy or [os.environ.get("DINGBRIDGE_PROXY", "build/proxy/dingbridge-proxy")]
    if args.chatter:
        main_chatter(binaries, [r for r in args.relays if r != "buffered"] if args.relays else ["copy"])
        return
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
