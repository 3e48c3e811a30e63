"""Not a figure: instructions per ingested event with and without runs waiting on its type,
counted by valgrind (callgrind), side by side, so the cost waiting runs add to ingest can be
found and compared between trees on a busy machine (the `ingest` figure of
benchmarks/automations.py is a ratio of rates, which other engineers' load moves by tens of
per cent from one round to the next).

A child process under ``valgrind --tool=callgrind --instr-atstart=no`` (the tree's own
`switchboard` package; this file is run as a script) opens a hub on a fresh database (no delivery
worker, no engine: as `benchmarks.automations.ingest`) with two tenants: `plain`, without
automations, and `waiting`, whose automation `waiter` has W runs waiting (`wait_for` with
`match: data.k`) on the type ingested, written as `benchmarks.automations` writes them. Then, in
turns, single-event `Ingestor.ingest` calls, 64 concurrent, of E events to each tenant (keys
that match no waiting run, as in the figure); instrumentation is on only while they run, and a
dump splits the phases. Every thread of the process is counted (the event loop, SQLite's writer
and readers), not PostgreSQL's server.

The caches' time to live (routes, automations, catalog types, tenants) is raised to 120 s in the
child: under valgrind a one-second expiry comes every few dozen events, and its reloads would
dominate the count (at speed they are one query per second among thousands of events).

``python -m benchmarks.waiting_instructions TREE KIND [EVENTS] [WAITING]`` (TREE: a folder whose
`src/` holds the package to measure, e.g. this checkout or an older commit from `git archive`;
KIND: sqlite or postgres; 2,000 events, 100,000 waiting runs by default). Prints one JSON line;
`--keep DIR` keeps the dumps for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WAITER = {
    "name": "waiter",
    "on": "bench.start",
    "steps": [{"wait_for": {"type": "bench.reply", "match": "data.k", "within": "30d"}}],
}
_RUN = (
    "INSERT INTO automation_runs (id, tenant_id, automation, version, trigger_seq, status, "
    "reason, state, dedupe_key, rev, due_us, created_us, updated_us, ended_us) "
    "VALUES (?, ?, ?, 1, ?, 'running', NULL, ?j, NULL, 0, ?, ?, ?, NULL)"
)
_WAIT = (
    "INSERT INTO automation_waits (run_id, slot, tenant_id, type, match_key) "
    "VALUES (?, 'step', ?, 'bench.reply', ?)"
)
PHASES = ("plain", "waiting")
CONCURRENCY = 64


async def _child(url: str, events: int, waiting: int) -> None:
    """Runs under valgrind: set up, then each phase between two lines from the driver."""
    from switchboard import automation_engine, registry, router
    from switchboard import hub as hub_module
    from switchboard.config import Settings
    from switchboard.envelope import new_id, now_us
    from switchboard.hub import Hub
    from switchboard.store import Tenant
    from switchboard.store.queries import dumps

    for module, name in (
        (automation_engine, "_TTL"),
        (router, "_TTL"),
        (registry, "_TTL"),
        (hub_module, "_TENANT_TTL"),
    ):
        if hasattr(module, name):  # an older tree may not have one of them
            setattr(module, name, 120.0)

    def turn(said: str) -> None:
        print(said, flush=True)
        sys.stdin.readline()

    settings = Settings(database_url=url, key_rate=0, tenant_rate=0, internal_events="")
    hub = Hub(settings)
    await hub.open(worker=False)
    try:
        tenants = {}
        for name in PHASES:
            await hub.store.create_tenant(Tenant(name, name, "accept", now_us()))
            tenants[name] = await hub.store.get_tenant(name)
        await hub.ingestor.ingest(
            [{"id": "trigger", "type": "bench.start", "data": {"k": -1}}],
            tenants["waiting"],
            "bench",
        )
        seq = (await hub.store.fetch("SELECT seq FROM events WHERE id = 'trigger'", ()))[0][0]
        await hub.automations.put("waiting", "waiter", WAITER, now_us())
        hub.automation_cache.forget("waiting")
        later = now_us() + 86_400_000_000
        state = dumps({"pc": 0, "deadline_us": later, "matched": {}, "history": []})
        ids = [new_id() for _ in range(waiting)]
        created = now_us()
        for start in range(0, waiting, 5000):
            chunk = ids[start : start + 5000]
            await hub.store.batch_many(
                [
                    (
                        _RUN,
                        [
                            (i, "waiting", "waiter", seq, state, later, created, created)
                            for i in chunk
                        ],
                    ),
                    (_WAIT, [(i, "waiting", f"[{start + n}]") for n, i in enumerate(chunk)]),
                ]
            )

        async def ingest(tenant: str, prefix: str, n: int) -> None:
            t = tenants[tenant]
            queue = iter(range(n))

            async def client() -> None:
                for k in queue:
                    await hub.ingestor.ingest(
                        [
                            {
                                "id": f"{prefix}-{k}",
                                "type": "bench.reply",
                                "data": {"k": k + 10_000_000},
                            }
                        ],
                        t,
                        "b",
                    )

            await asyncio.gather(*(client() for _ in range(CONCURRENCY)))

        for name in PHASES:  # warm-up: caches loaded, statements prepared
            await ingest(name, "warm", 200)
        for name in PHASES:
            turn("ready")
            await ingest(name, "counted", events)
            turn(f"{name} {events}")
    finally:
        await hub.close()


def measure(
    tree: Path, kind: str, events: int, waiting: int, keep: Path | None = None
) -> dict[str, Any]:
    from benchmarks import harness as h
    from benchmarks.timer_instructions import control, dumped

    with h.workdir() as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        with h.fresh_database(kind, work, "waiting_instructions") as db:
            argv = [
                *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
                f"--callgrind-out-file={out}",
                *(sys.executable, __file__, "--child", db, str(events), str(waiting)),
            ]
            env = {**os.environ, "PYTHONPATH": str(tree / "src")}
            errors = (work / "child.log").open("w")
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            assert proc.stdin is not None and proc.stdout is not None
            counted: dict[str, int] = {}
            try:
                # on once: dumps split the phases (as timer_instructions.py does)
                for n_phase in range(len(PHASES)):
                    if proc.stdout.readline().strip() != "ready":
                        errors.flush()
                        tail = (work / "child.log").read_text()[-2000:]
                        raise RuntimeError(f"the child did not get ready:\n{tail}")
                    control("--instr=on" if n_phase == 0 else "--dump", proc.pid)
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                    phase, done = proc.stdout.readline().split()
                    control("--dump", proc.pid)  # writes the counts since the last dump
                    counted[phase] = int(done)
                    proc.stdin.write("\n")
                    proc.stdin.flush()
                control("--instr=off", proc.pid)
                proc.wait(600)
            finally:
                if proc.poll() is None:
                    proc.kill()
            time.sleep(0.1)
            dumps = sorted(work.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
            plain, with_waits = dumped(dumps[0]), dumped(dumps[2])  # dumps[1]: between
            if keep is not None:  # for callgrind_annotate
                keep.mkdir(parents=True, exist_ok=True)
                for name, p in zip(PHASES, (dumps[0], dumps[2]), strict=True):
                    shutil.copy(p, keep / f"{kind}-{name}.callgrind")
    per_plain = plain / counted["plain"]
    per_waiting = with_waits / counted["waiting"]
    return {
        "tree": str(tree),
        "kind": kind,
        "events": events,
        "waiting_runs": waiting,
        "plain_instructions_per_event": round(per_plain),
        "waiting_instructions_per_event": round(per_waiting),
        "difference": round(per_waiting - per_plain),
        "ratio": round(per_plain / per_waiting, 3),
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("events", type=int, nargs="?", default=2000)
    parser.add_argument("waiting", type=int, nargs="?", default=100_000)
    parser.add_argument("--keep", type=Path, help="copy the two callgrind dumps to this folder")
    args = parser.parse_args()
    print(json.dumps(measure(args.tree.resolve(), args.kind, args.events, args.waiting, args.keep)))


if __name__ == "__main__":
    main()
