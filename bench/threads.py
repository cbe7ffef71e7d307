"""Where a proxy's CPU goes at a fixed request rate, thread by thread: CPU time, user and system time,
and voluntary and involuntary context switches, each per request.

bench.py gives a proxy's CPU per request as one figure. At a low rate that figure is mostly what each
request pays on its own (wake-ups, a store transaction run on cold caches), so the split between
threads says what to work on: the relay's runtime worker against its SQLite store thread, checkpointer
and log writer, against nginx's single worker.

Same layout as bench.py (the proxy alone on core 0; oha, the JSON upstream and this script on core 1),
each target started fresh, warmed with one run at the rate, then measured ROUNDS times. Figures come
from /proc/<pid>/task/<tid>/{schedstat,stat,status}: schedstat's run time in nanoseconds, stat's user
and system time in clock ticks (coarse: 10 ms each), status's switch counts.

Run: taskset -c 1 python3 bench/threads.py [TARGETS] [RATE] [SECONDS] [ROUNDS]
  TARGETS: comma-separated, of nginx, relay (SQLite, the default store), relay-memory, and
  the same with @baseline for RELAY_BASELINE_BIN; default nginx,relay,relay-memory. The access log is
  on for every target (the default configuration); THREADS_ACCESS_LOG=0 turns it off.
  RATE: requests per second (default 1000). SECONDS: per round (default 10). ROUNDS: default 2.
  RELAY_BIN / RELAY_BASELINE_BIN: the binaries (default target/release/relayapi). Needs nginx and oha
  (bench/run.sh installs them).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import bench  # noqa: E402  (the sibling driver, found through the path set just above)


@dataclass
class ThreadSample:
    """One thread's counters at one instant."""

    name: str
    run_ns: int
    user_ticks: int
    system_ticks: int
    voluntary: int
    involuntary: int


def parse_thread(comm: str, schedstat: str, stat: str, status: str) -> ThreadSample:
    """A thread's counters from the text of its /proc files. `stat`'s second field is the name in
    parentheses, which may itself hold spaces and parentheses: the fields are counted from the last ')'."""
    fields = stat.rsplit(")", 1)[1].split()
    switches = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[key] = int(value)
    return ThreadSample(
        name=comm.strip(),
        run_ns=int(schedstat.split(maxsplit=1)[0]),
        # utime and stime: fields 14 and 15 of stat, 12th and 13th after the name.
        user_ticks=int(fields[11]),
        system_ticks=int(fields[12]),
        voluntary=switches["voluntary_ctxt_switches"],
        involuntary=switches["nonvoluntary_ctxt_switches"],
    )


def sample(pids: list[int]) -> dict[tuple[int, int], ThreadSample]:
    """Every thread of `pids`, keyed by (pid, tid). A thread that ends while being read is left out."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                texts = [Path(f"{base}/{f}").read_text() for f in ("comm", "schedstat", "stat", "status")]
            except (FileNotFoundError, ProcessLookupError):
                continue
            out[(pid, int(tid))] = parse_thread(*texts)
    return out


def per_request(
    before: dict[tuple[int, int], ThreadSample], after: dict[tuple[int, int], ThreadSample], requests: int
) -> dict[str, dict[str, float]]:
    """Each thread name's counters over the run, per request (threads of one name summed: nginx's
    workers, tokio's blocking pool). Times in microseconds. A thread born during the run counts from 0."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0] * 5)
    for key, a in after.items():
        b = before.get(key, ThreadSample(a.name, 0, 0, 0, 0, 0))
        t = totals[a.name]
        t[0] += a.run_ns - b.run_ns
        t[1] += a.user_ticks - b.user_ticks
        t[2] += a.system_ticks - b.system_ticks
        t[3] += a.voluntary - b.voluntary
        t[4] += a.involuntary - b.involuntary
    tick_us = 1e6 / bench.CLK_TCK
    return {
        name: {
            "cpu_us": t[0] / 1e3 / requests,
            "user_us": t[1] * tick_us / requests,
            "system_us": t[2] * tick_us / requests,
            "voluntary": t[3] / requests,
            "involuntary": t[4] / requests,
        }
        for name, t in totals.items()
        if requests and t[0] > 0
    }


def report(kind: str, rnd: int, o: bench.OhaResult, threads: dict[str, dict[str, float]]) -> list[str]:
    total = sum(t["cpu_us"] for t in threads.values())
    head = f"{kind} round {rnd + 1}: {o.requests} requests, p50 {o.p50_us:.0f} µs, p99 {o.p99_us:.0f} µs"
    lines = [f"{head}, CPU {total:.1f} µs/request"]
    lines.append(f"  {'thread':<18} {'CPU µs':>8} {'user µs':>8} {'sys µs':>8} {'vol sw':>7} {'invol sw':>8}")
    for name, t in sorted(threads.items(), key=lambda kv: -kv[1]["cpu_us"]):
        lines.append(
            f"  {name:<18} {t['cpu_us']:8.2f} {t['user_us']:8.1f} {t['system_us']:8.1f} "
            f"{t['voluntary']:7.2f} {t['involuntary']:8.2f}"
        )
    return lines


def main() -> int:
    args = sys.argv[1:]
    kinds = (args[0] if args else "nginx,relay,relay-memory").split(",")
    rate = int(args[1]) if len(args) > 1 else 1000
    seconds = int(args[2]) if len(args) > 2 else 10
    rounds = int(args[3]) if len(args) > 3 else 2
    s = bench.Settings.from_env(os.environ)
    s.latency_duration = seconds
    access_log = bench.switched_on(os.environ.get("THREADS_ACCESS_LOG", "1"))
    b = bench.Bench(s)
    try:
        b.start_upstreams()
        b.make_tokens()
        for kind in kinds:
            srv = b.start_proxy(kind, access_log=access_log)
            try:
                b.preflight(kind, srv.port)
                url = b.json_url(kind, srv.port)
                b.oha(url, rate, s.latency_connections)
                for rnd in range(rounds):
                    before = sample(srv.pids())
                    o = b.oha(url, rate, s.latency_connections)
                    after = sample(srv.pids())
                    print("\n".join(report(kind, rnd, o, per_request(before, after, o.requests))), flush=True)
            finally:
                b.stop(srv)
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
