"""What the target benchmarks share (agent_ldap_bench.py, agent_scim_bench.py): their command
line, the generated org, and one timed `dingbridge-agent sync` (wall time, the agent's CPU time
and peak RSS from wait4, the run's status and counts). Loopback only.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import agent_env  # noqa: E402

# The agent's DingTalk limits in a benchmark; the simulator is unlimited (qps 0), so that the
# figures are the agent's and the target server's cost.
AGENT_LIMITS = {"qps": 0, "agent_qps": 1000, "concurrency": 8, "agent_qps_total": 10000}
# What packaging/systemd/dingbridge-agent-sync.service sets: malloc's heap in transparent huge
# pages (docs/BENCHMARKS.md, "Huge pages for malloc's heap"). The run unit sets nothing.
SYNC_UNIT_TUNABLES = "glibc.malloc.hugetlb=1"
GLIBC_TUNABLES = SYNC_UNIT_TUNABLES  # set from --glibc-tunables by arguments()


def add_glibc_tunables_argument(ap, default=SYNC_UNIT_TUNABLES):
    """--glibc-tunables, shared by the agent benchmarks."""
    what = "dingbridge-agent-sync.service sets" if default == SYNC_UNIT_TUNABLES else "the run unit sets (nothing)"
    ap.add_argument("--glibc-tunables", default=default,
                    help=f"GLIBC_TUNABLES of the agent; the default is what {what}, '' is glibc's own default")


def with_glibc_tunables(environment, tunables):
    """A copy of `environment` with GLIBC_TUNABLES set to `tunables`, or without it when empty."""
    out = {k: v for k, v in environment.items() if k != "GLIBC_TUNABLES"}
    if tunables:
        out["GLIBC_TUNABLES"] = tunables
    return out


def arguments(doc, users, departments, depth):
    """--users/--departments/--depth (defaults given) and the simulator's generate spec."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=users)
    ap.add_argument("--departments", type=int, default=departments)
    ap.add_argument("--depth", type=int, default=depth)
    add_glibc_tunables_argument(ap)
    a = ap.parse_args()
    global GLIBC_TUNABLES
    GLIBC_TUNABLES = a.glibc_tunables
    a.generate = f"users={a.users},departments={a.departments},depth={a.depth},seed=42"
    return a


def header(a):
    return {"users": a.users, "departments": a.departments, "glibc_tunables": a.glibc_tunables,
            "loadavg_at_start": round(os.getloadavg()[0], 2)}


def timed_sync(env):
    """One `sync` run; its output goes to bench-sync.log in the environment's directory."""
    with open(env.dir / "bench-sync.log", "a") as log:
        t0 = time.monotonic()
        p = subprocess.Popen([agent_env.AGENT_BIN, "-c", str(env.config), "sync"],
                             env=with_glibc_tunables(env.env, GLIBC_TUNABLES), stdout=log, stderr=log)
        _, _, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    run = env.history()[0]
    return {"status": run["status"], "wall_s": round(wall, 1), "agent_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "agent_peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "changes_applied": run["counts"]["changes_applied"],
            "items_failed": run["counts"]["items_failed"]}


def finish(result):
    result["loadavg_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
