"""Renders proxy-bench JSON lines into the proxy table of docs/BENCHMARKS.md (between markers)."""
import json
import platform
import subprocess
import sys
from pathlib import Path

results = [json.loads(l) for l in Path(sys.argv[1]).read_text().splitlines() if l.strip()]
doc = Path(sys.argv[2])
labels = []
for r in results:
    if r["label"] not in labels:
        labels.append(r["label"])


def get(label, mode, **kw):
    for r in results:
        if r["label"] == label and r["mode"] == mode and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


direct = get("direct", "throughput")
rows = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]


def row(title, fn):
    cells = []
    for label in labels:
        try:
            cells.append(fn(label))
        except (TypeError, KeyError, ZeroDivisionError):
            cells.append("–")
    rows.append(f"| {title} | " + " | ".join(cells) + " |")


def idle_cell(label, n):
    # Runs record how many tunnels actually opened; a peer that could not hold n shows its count.
    for r in results:
        if r["label"] == label and r["mode"] == "idle" and abs(r["tunnels"] - n) <= n // 100:
            return f"{r['kib_per_tunnel']:.2f}"
    got = [r["tunnels"] for r in results if r["label"] == label and r["mode"] == "idle"]
    return f"only {max(got):,} opened" if got else "–"


row("throughput, one tunnel (MB/s)", lambda l: f"{get(l, 'throughput')['mb_per_s']:,.0f}")
row("… ratio to direct", lambda l: f"{get(l, 'throughput')['mb_per_s'] / direct['mb_per_s']:.2f}")
for c in (1, 16, 64):
    row(f"tunnels/s, {c} client{'s' if c > 1 else ''}", lambda l, c=c: f"{get(l, 'tunnels', clients=c)['per_second']:,.0f}")
    row(f"… p50 / p99 latency (ms), {c}", lambda l, c=c: "{:.2f} / {:.2f}".format(
        get(l, 'tunnels', clients=c)['p50_ms'], get(l, 'tunnels', clients=c)['p99_ms']))
idle_counts = sorted({r["tunnels"] for r in results if r["mode"] == "idle" and r["tunnels"] > 2000} | {2000})
idle_wanted = sorted({2000} | {max(idle_counts)})
for n in idle_wanted:
    row(f"RSS per idle tunnel, {n:,} open (KiB)",
        lambda l, n=n: "–" if l == "direct" else idle_cell(l, n))
failures = sum(r.get("failures", 0) for r in results)

cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
table = "\n".join(rows)
block = f"""<!-- proxy-bench:begin -->
Measured with `scripts/bench.sh proxy` on {platform.node() and 'this machine'}: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores,
kernel {platform.release()}, all on loopback, peers from Debian's packages, one run.
Throughput: one tunnel, {direct['bytes'] / (1 << 30):.0f} GiB, client and sink in proxy-bench.
Tunnels/s: each client loops CONNECT, 64-byte echo, close. Idle: RSS of the proxy process after
opening N tunnels that each carried one 64-byte round trip, minus its RSS before, divided by N.
Failed tunnel attempts across all runs: {failures}.

{table}
<!-- proxy-bench:end -->"""
text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
if "<!-- proxy-bench:begin -->" in text:
    start = text.index("<!-- proxy-bench:begin -->")
    end = text.index("<!-- proxy-bench:end -->") + len("<!-- proxy-bench:end -->")
    text = text[:start] + block + text[end:]
else:
    text += "\n## dingbridge-proxy\n\n" + block + "\n"
doc.write_text(text)
print(table)
