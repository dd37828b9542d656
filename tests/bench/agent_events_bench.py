#!/usr/bin/env python3
"""Benchmark of `dingbridge-agent run` (not a test): event → change committed in the SQLite target,
through dingbridge-proxy, on a generated org (default 2,000 users). Prints:
  * latency p50/p99 of single changes, one at a time: the event's birth in the simulator
    (eventBornTime, the moment of the mutation) → the journal row marked done (target committed);
  * a burst of N changes (default 1,000): time until all are committed, API calls spent;
  * API calls per event; the month's calls for `--changes-per-day` under the defaults (weekly
    reconcile) next to the 30-minute full-sync timer.
Usage: DINGTALK_SIM=... DINGBRIDGE_PROXY=... DINGBRIDGE_AGENT=... tests/bench/agent_events_bench.py
"""
import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from agent_run_test import RunEnv  # noqa: E402


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--departments", type=int, default=80)
    ap.add_argument("--singles", type=int, default=100)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--burst-users", type=int, default=0, help="spread the burst over this many users (0 = all distinct)")
    ap.add_argument("--changes-per-day", type=int, default=50)
    a = ap.parse_args()
    env = RunEnv(generate=f"users={a.users},departments={a.departments},depth=4,seed=3",
                 qps=20, agent_qps=15)
    try:
        env.start_agent()
        env.wait(lambda: any(r["kind"] == "full" and r["status"] == "succeeded" for r in env.history()),
                 "first full sync", timeout=300)
        env.wait_connected()
        full = [r for r in env.history() if r["kind"] == "full"][0]
        full_calls = full["counts"]["requests"]
        users = [u["userid"] for u in env.sim.org()["users"]][: max(a.singles, a.burst)]
        db = env.state / "state.db"

        def done_rows(after_id):
            con = sqlite3.connect(str(db))
            try:
                return con.execute("SELECT id, born_ms, received_ms, done_ms FROM event_journal WHERE id>? AND "
                                   "status='done'", (after_id,)).fetchall()
            finally:
                con.close()

        def last_id():
            con = sqlite3.connect(str(db))
            try:
                return con.execute("SELECT COALESCE(MAX(id),0) FROM event_journal").fetchone()[0]
            finally:
                con.close()

        # Singles.
        env.sim.admin("POST", "/_sim/stats/reset")
        start_id = last_id()
        for i in range(a.singles):
            before = last_id()
            env.sim.admin("POST", "/_sim/user/update", {"userid": users[i], "title": f"single-{i}"})
            env.wait(lambda: len(done_rows(before)) >= 1, "single change", timeout=30)
        rows = done_rows(start_id)
        lat = [d - b for _, b, _, d in rows if b]
        inner = [d - r for _, _, r, d in rows]
        gets = env.sim.stats()["apis"]
        single_calls = sum(v["calls"] for k, v in gets.items() if k.startswith("/topapi"))
        print(f"singles: {len(lat)} events; event born → committed p50 {pct(lat, 50)} ms, p99 {pct(lat, 99)} ms; "
              f"journal → committed p50 {pct(inner, 50)} ms, p99 {pct(inner, 99)} ms; "
              f"{single_calls} topapi calls ({single_calls / max(1, len(lat)):.2f} per event)")

        # Burst.
        env.sim.admin("POST", "/_sim/stats/reset")
        before = last_id()
        t0 = time.time()
        for i in range(a.burst):
            env.sim.admin("POST", "/_sim/user/update", {"userid": users[i % (a.burst_users or len(users))],
                                                       "title": f"burst-{i}"})
        t_sent = time.time() - t0
        env.wait(lambda: len(done_rows(before)) >= a.burst, "the burst", timeout=600)
        t_all = time.time() - t0
        rows = done_rows(before)
        lat = [d - b for _, b, _, d in rows if b]
        stats = env.sim.stats()["apis"]
        burst_calls = sum(v["calls"] for k, v in stats.items() if k.startswith("/topapi"))
        print(f"burst over {a.burst_users or a.burst} users: {a.burst} changes sent in {t_sent:.1f} s, all committed after {t_all:.1f} s; "
              f"born → committed p50 {pct(lat, 50)} ms, p99 {pct(lat, 99)} ms; {burst_calls} topapi calls "
              f"({burst_calls / a.burst:.2f} per event)")

        per_event = single_calls / max(1, a.singles)
        month_events = a.changes_per_day * 30 * per_event
        month_reconcile = full_calls * 30 / 7
        tokens = 30 * 12  # at most one gettoken per 2 h token lifetime
        print(f"full sync of this org: {full_calls} calls")
        print(f"month, run mode: {month_events:.0f} (events) + {month_reconcile:.0f} (weekly reconcile) + "
              f"<= {tokens} (tokens) = {month_events + month_reconcile + tokens:.0f} calls; "
              f"30-minute timer: {full_calls * 48 * 30} calls")
    finally:
        env.stop()


if __name__ == "__main__":
    main()
