#!/usr/bin/env python3
"""Interleaved throughput of several CONNECT proxies (or relay settings) against direct loopback.

Uses the independent harness's client and sink (../shared/bench/connect_bench.c, built into
BUILD_DIR as run_peers.sh does), but only its throughput mode, with every proxy started once and
the runs interleaved (direct, then each proxy, for each tunnel count, REPS times), so that
drifts of the host fall on all of them alike. Prints medians, each run and the proxy's CPU %.

  python3 tests/bench/relay_throughput.py --reps 5 \\
      'auto=18994:build/proxy/dingbridge-proxy -c /tmp/bench-proxy.yaml' \\
      'copy=18993:build/proxy/dingbridge-proxy -c /tmp/bench-proxy-copy.yaml'

Each proxy: NAME=PORT:COMMAND (COMMAND stays in the foreground, listens on 127.0.0.1:PORT and
allows CONNECT to 127.0.0.1:29901). Loopback only.
"""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED_BENCH = HERE.parents[2] / "shared" / "bench"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("proxies", nargs="+", help="NAME=PORT:COMMAND")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tunnels", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--bytes", default="2G")
    ap.add_argument("--build-dir", default=os.environ.get("BUILD_DIR", "/tmp/connect-bench"))
    args = ap.parse_args()

    client = Path(args.build_dir) / "connect_bench"
    Path(args.build_dir).mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-s", "-C", str(SHARED_BENCH), str(client), f"B={client}"], check=True)

    sink = subprocess.Popen([str(client), "sink", "--discard", "127.0.0.1:29901", "--echo", "127.0.0.1:29902",
                             "--max-seconds", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs, names, ports = {}, ["direct"], {"direct": None}
    results = {}
    try:
        for spec in args.proxies:
            name, rest = spec.split("=", 1)
            port, command = rest.split(":", 1)
            procs[name] = subprocess.Popen(shlex.split(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            names.append(name)
            ports[name] = port
        time.sleep(1)
        for name, p in procs.items():
            if p.poll() is not None:
                sys.exit(f"{name} exited at start ({p.returncode})")
        for _ in range(args.reps):
            for tunnels in args.tunnels:
                for name in names:
                    cmd = [str(client), "throughput", "--target", "127.0.0.1:29901", "--bytes", args.bytes,
                           "--tunnels", str(tunnels), "--sink-pid", str(sink.pid), "--max-seconds", "120"]
                    if ports[name] is None:
                        cmd.append("--direct")
                    else:
                        cmd += ["--proxy", f"127.0.0.1:{ports[name]}", "--pid", str(procs[name].pid)]
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
                    rate = re.search(r"MBps=([\d.]+)", out)
                    cpu = re.search(r"proxy_cpu_pct=(\d+)", out)
                    if rate is None:
                        sys.exit(f"{name}: no result:\n{out}")
                    results.setdefault((name, tunnels), []).append((float(rate.group(1)), cpu.group(1) if cpu else "-"))
    finally:
        for p in procs.values():
            p.terminate()
        sink.terminate()

    print("| relay | tunnels | MB/s (median) | × direct | runs | proxy CPU % |")
    print("|---|---|---|---|---|---|")
    for tunnels in args.tunnels:
        direct = statistics.median(v for v, _ in results[("direct", tunnels)])
        for name in names:
            runs = results[(name, tunnels)]
            median = statistics.median(v for v, _ in runs)
            print(f"| {name} | {tunnels} | {median:.0f} | {median / direct:.2f} | "
                  f"{' '.join('%.0f' % v for v, _ in runs)} | {' '.join(c for _, c in runs)} |")


if __name__ == "__main__":
    main()
