"""Not a figure: instructions per webhook delivery, counted by valgrind (callgrind) in a tree's
`switchboard worker`, so two trees can be compared on a busy machine.

A tree's own `switchboard serve` (worker off) provisions a fresh database, a webhook destination
to a local receiver and a route for every type. The tree's `switchboard worker` then runs under
``valgrind --tool=callgrind --instr-atstart=no``; W warm-up events go through it first (start-up,
connections and caches are not the hot path), then instrumentation is switched on
(``callgrind_control -i on``), the worker is paused (SIGSTOP) while exactly N events are
stored, so it drains a full queue as `make bench` has it do, and instrumentation is switched off
once the receiver has every one. The count covers every thread of the worker (its event loop,
the SQLite writer), not PostgreSQL or the receiver.

``python -m benchmarks.delivery_instructions TREE KIND [N]`` (a tree is a folder holding
`.venv/`, e.g. this checkout or an older commit checked out with its own virtualenv; KIND is
sqlite or postgres). Prints one JSON line. Needs `valgrind`. Several minutes per 1,000.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

from benchmarks import harness as h
from benchmarks.delivery import _NO_INTERNAL, _preload, _wire
from benchmarks.ingest_cpu import _provision
from benchmarks.ingest_instructions import _callgrind, callgrind_total
from switchboard.signing import generate_secret

_WARM = 200
_CONCURRENCY = 16


def measure(tree: Path, kind: str, deliveries: int) -> dict[str, object]:
    switchboard = str(tree / ".venv/bin/switchboard")
    with h.workdir() as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        with (
            h.fresh_database(kind, work, "dinstructions") as db,
            h.receiver(work) as (receiver, _),
        ):
            key = _provision(tree, db)
            port = h.free_port()
            url = f"http://127.0.0.1:{port}"
            env = h.hub_env(db, port, **_NO_INTERNAL)
            with h.running("hub", [switchboard, "serve"], work, env, health=url + "/health"):
                _wire(url, key, receiver, _CONCURRENCY, generate_secret())
                argv = [
                    *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
                    f"--callgrind-out-file={out}",
                    *(str(tree / ".venv/bin/python"), switchboard, "worker"),
                ]
                worker_env = h.hub_env(db, 0, **_NO_INTERNAL)
                with h.running("worker", argv, work, worker_env) as worker:
                    _preload(url, key, _WARM, "warm", batch=100)
                    h.wait_count(receiver, _WARM, within=900)  # valgrind starts Python slowly
                    time.sleep(2)  # let the worker go idle again
                    _callgrind("on", worker.pid)
                    os.kill(worker.pid, signal.SIGSTOP)  # the queue fills while it is stopped
                    try:
                        _preload(url, key, deliveries, "run", batch=100)
                    finally:
                        os.kill(worker.pid, signal.SIGCONT)
                    h.wait_count(receiver, _WARM + deliveries, within=1800)
                    _callgrind("off", worker.pid)
                    worker.stop(grace=600)  # callgrind writes its file as the process exits
        total = callgrind_total(out)
    return {
        "tree": str(tree),
        "kind": kind,
        "deliveries": deliveries,
        "instructions_per_delivery": round(total / deliveries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("deliveries", type=int, nargs="?", default=1000)
    args = parser.parse_args()
    print(json.dumps(measure(args.tree.resolve(), args.kind, args.deliveries)))


if __name__ == "__main__":
    main()
