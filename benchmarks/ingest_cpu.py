"""Not a figure: the server's CPU per request at one event per request, for one or more source
trees in turns (this one and, say, an older commit unpacked with its own virtualenv).

Each round, for each tree and each backend: a fresh database migrated and provisioned by that
tree's own code, its `switchboard serve` (rate limits off, as in the ingest figure), a 1 s
warm-up with wrk, then wrk for the measured stretch while the server's `/proc` CPU counters
(every thread: the event loop and the SQLite writer) are read before and after. CPU per
request depends much less on what else runs on the machine than events/s does, so trees can be
compared on a shared machine. The ceiling app is run each round too, for its events/s.

``python -m benchmarks.ingest_cpu [--rounds 3] [--seconds 5] [--kinds sqlite,postgres]
[--profile DIR] TREE [TREE ...]`` (a tree is a folder holding `.venv/` and `benchmarks/`).
With ``--profile``, py-spy (200 Hz, `--threads`) records each measured stretch (it adds its own
CPU to the server's, so take CPU figures from runs without it) and its summary is written there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.profiling import Profiler

_TICK = os.sysconf("SC_CLK_TCK")
_CONNECTIONS = 64


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _provision(tree: Path, database_url: str) -> str:
    """Migrate and provision with the tree's own code (its schema may differ from this one's)."""
    code = "import sys; from benchmarks.harness import provision; print(provision(sys.argv[1]))"
    out = subprocess.run(
        [str(tree / ".venv/bin/python"), "-c", code, database_url],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


def measure(
    tree: Path, kind: str, seconds: float, work: Path, tag: str, profiler: Profiler | None
) -> dict[str, Any]:
    with h.fresh_database(kind, work, tag) as db:
        key = _provision(tree, db)
        port = h.free_port()
        argv = [str(tree / ".venv/bin/switchboard"), "serve"]
        url = f"http://127.0.0.1:{port}"
        env = h.hub_env(db, port)
        with h.running(f"hub-{tag}", argv, work, env, health=url + "/health") as proc:
            h.run_wrk(url, key, batch=1, connections=_CONNECTIONS, duration=1, tag=f"w{tag}")
            if profiler is not None:
                profiler.start(proc.pid, f"{tag}", seconds)
            before = _cpu(proc.pid)
            summary = h.run_wrk(
                url, key, batch=1, connections=_CONNECTIONS, duration=seconds, tag=tag
            )
            cpu = _cpu(proc.pid) - before
            if profiler is not None:
                profiler.stop()
    if summary["errors"] or not summary["requests"]:
        raise RuntimeError(f"{tag}: {summary}")
    return {
        "events_per_s": summary["events_per_s"],
        "cpu_us_per_request": cpu / summary["requests"] * 1e6,
        "server_cores": cpu / summary["seconds"],
    }


def ceiling(seconds: float, work: Path, tag: str) -> float:
    with h.ceiling_app(work) as (url, _):
        h.run_wrk(url, "x", batch=1, connections=_CONNECTIONS, duration=1, tag=f"w{tag}")
        summary = h.run_wrk(url, "x", batch=1, connections=_CONNECTIONS, duration=seconds, tag=tag)
    return float(summary["events_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kinds", default="sqlite,postgres")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k != "postgres" or h.pg_available()]
    rows: list[dict[str, Any]] = []
    with h.workdir() as tmp:
        work = Path(tmp)
        profiler = None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(args.profile, work)
        for rnd in range(args.rounds):
            for kind in kinds:
                top = ceiling(args.seconds, work, f"c{rnd}{kind}")
                for t, tree in enumerate(args.trees):
                    tag = f"{kind}_{t}_{rnd}"
                    r = measure(tree.resolve(), kind, args.seconds, work, tag, profiler)
                    r.update(tree=str(tree), kind=kind, round=rnd, ceiling=top)
                    r["ratio"] = r["events_per_s"] / top
                    rows.append(r)
                    h.say(
                        f"{kind} {tree}: {r['events_per_s']:,.0f} events/s "
                        f"(ceiling {top:,.0f}, ratio {r['ratio']:.3f}), "
                        f"{r['cpu_us_per_request']:.1f} µs CPU/request, "
                        f"{r['server_cores']:.2f} cores"
                    )
    for kind in kinds:
        for tree in args.trees:
            mine = [r for r in rows if r["kind"] == kind and r["tree"] == str(tree)]
            cpu = statistics.median(r["cpu_us_per_request"] for r in mine)
            ratio = statistics.median(r["ratio"] for r in mine)
            h.say(f"median {kind} {tree}: {cpu:.1f} µs CPU/request, ratio {ratio:.3f}")
    print(json.dumps(rows), file=sys.stdout)


if __name__ == "__main__":
    main()
