"""Not a figure: the 1 event/request ingest figure's hub against its durable floor only (no
ceiling), for one or more source trees, in turns and over several rounds.

Each round runs, for each tree, its `switchboard serve` on a fresh database migrated and
provisioned by that tree's own code, then this tree's `bare_ingest` on a fresh database, each
driven by wrk exactly as `benchmarks.run` drives them (`ingest.lua`, 64 connections, a 1 s warm-up,
then the measured seconds; every acknowledged event must be stored). A round's ratio is the hub's
events/s over the floor's measured right after it, so a machine that slows down between rounds
moves both sides; the medians of the rounds' ratios are printed as one JSON line.

``python -m benchmarks.ingest_floor KIND [--rounds 5] [--seconds 5] [TREE ...]`` (KIND is sqlite
or postgres; a tree is a folder holding `.venv/`, e.g. an older commit unpacked with its own
virtualenv; default: this checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.config import Config
from benchmarks.ingest import bare_ingest
from benchmarks.ingest_cpu import _provision

_CONNECTIONS = 64


def hub_rate(tree: Path, kind: str, seconds: float, work: Path, tag: str) -> float:
    """One wrk run against `tree`'s hub on a fresh database; events/s (all of them stored)."""
    with h.fresh_database(kind, work, tag) as db:
        key = _provision(tree, db)
        admin = h.admin_key(db)
        port = h.free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [str(tree / ".venv/bin/switchboard"), "serve"]
        with h.running(tag, argv, work, h.hub_env(db, port), health=url + "/health"):
            h.run_wrk(url, key, batch=1, connections=_CONNECTIONS, duration=1, tag=f"w{tag}")
            before = _stored(url, admin)
            summary = h.run_wrk(
                url, key, batch=1, connections=_CONNECTIONS, duration=seconds, tag=tag
            )
            stored = _stored(url, admin) - before
    if summary["errors"] or summary["requests"] == 0:
        raise RuntimeError(f"{tag}: wrk saw errors or no request: {summary}")
    if stored < summary["events"]:
        raise RuntimeError(f"{tag}: {summary['events']} acknowledged, {stored} stored")
    return float(summary["events_per_s"])


def _stored(url: str, admin: str) -> int:
    _, body = h.http("GET", url + "/health/detailed", key=admin)
    return int(body["store"]["counts"]["events"])


def measure(kind: str, trees: list[Path], rounds: int, seconds: float) -> dict[str, Any]:
    cfg = Config.make(quick=False)
    cfg = Config(**{**vars(cfg), "duration": seconds, "connections": _CONNECTIONS})
    ratios: dict[str, list[float]] = {str(t): [] for t in trees}
    rates: dict[str, list[float]] = {str(t): [] for t in trees}
    floors: list[float] = []
    with h.workdir() as tmp:
        work = Path(tmp)
        for run in range(rounds):
            for i, tree in enumerate(trees):
                rate = hub_rate(tree, kind, seconds, work, f"hub{i}_{kind}_{run}")
                floor = bare_ingest(cfg, work, kind, run * len(trees) + i)["value"]
                floors.append(floor)
                rates[str(tree)].append(rate)
                ratios[str(tree)].append(rate / floor)
                h.say(f"round {run + 1}, {tree}: hub {rate:,.0f}/s, floor {floor:,.0f}/s, "
                      f"{rate / floor:.3f} (load {os.getloadavg()[0]:.1f})")  # fmt: skip
    return {
        "kind": kind,
        "seconds": seconds,
        "rounds": rounds,
        "trees": {
            t: {
                "of_floor_median": round(statistics.median(ratios[t]), 3),
                "of_floor": [round(r, 3) for r in ratios[t]],
                "events_per_s": [round(r) for r in rates[t]],
            }
            for t in ratios
        },
        "floor_events_per_s": [round(f) for f in floors],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("trees", type=Path, nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees] or [h.ROOT]
    print(json.dumps(measure(args.kind, trees, args.rounds, args.seconds)))


if __name__ == "__main__":
    main()
