"""Not a figure: instructions per fired timer, counted by valgrind (callgrind), so two trees can
be compared on a busy machine (the `timers` figure of benchmarks/automations.py is a ratio of
rates, which the other engineers' load moves by ±50 % from one round to the next).

A child process under ``valgrind --tool=callgrind --instr-atstart=no`` (the tree's own Python
and `switchboard` package; this file is run as a script, so it needs nothing else of the tree)
opens a hub on a fresh database and writes N due runs of a one-`wait` automation, as
`benchmarks.automations.timers` does. Instrumentation is switched on (``callgrind_control -i
on``) only while the engine's `tick` fires them all, 500 a tick, and then again while the raw
baseline claims the same rows made due again and completes them (the store's claim statement,
then one UPDATE per row in one transaction). Every thread of the process is counted (the event
loop, SQLite's writer and readers), not PostgreSQL's server.

``python -m benchmarks.timer_instructions TREE KIND [N]`` (a tree is a folder whose `src/` holds
the `switchboard` package to measure, e.g. this checkout or an older commit from `git archive`;
it runs with this checkout's virtualenv and PYTHONPATH=TREE/src; KIND is sqlite or postgres).
Prints one JSON line; `--keep DIR` keeps the two dumps (engine, raw) for callgrind_annotate.
About a minute per 2,000 timers.
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

TIMER = {"name": "timer", "on": "bench.timer", "steps": [{"wait": "1s"}]}
_RUN = (
    "INSERT INTO automation_runs (id, tenant_id, automation, version, trigger_seq, status, "
    "reason, state, dedupe_key, rev, due_us, created_us, updated_us, ended_us) "
    "VALUES (?, ?, ?, 1, ?, 'running', NULL, ?j, NULL, 0, ?, ?, ?, NULL)"
)
_RAW = (
    "UPDATE automation_runs SET status = 'completed', due_us = NULL, rev = rev + 1 "
    "WHERE id = ? AND rev = ?"
)


async def _child(url: str, n: int) -> None:
    """Runs under valgrind: set up, then each phase between two lines from the driver."""
    from switchboard.automation_engine import FakeClock
    from switchboard.config import Settings
    from switchboard.envelope import new_id, now_us
    from switchboard.hub import Hub
    from switchboard.store import Tenant
    from switchboard.store.queries import dumps

    def turn(said: str) -> None:
        print(said, flush=True)
        sys.stdin.readline()

    settings = Settings(database_url=url, key_rate=0, tenant_rate=0, internal_events="")
    hub = Hub(settings)
    await hub.open(worker=False)
    try:
        await hub.store.create_tenant(Tenant("timers", "timers", "accept", now_us()))
        tenant = await hub.store.get_tenant("timers")
        assert tenant is not None
        await hub.ingestor.ingest([{"id": "t", "type": "bench.timer", "data": {}}], tenant, "b")
        seq = (await hub.store.fetch("SELECT seq FROM events WHERE id = 't'", ()))[0][0]
        await hub.automations.put("timers", "timer", TIMER, now_us())
        hub.automation_cache.forget("timers")
        past = now_us() - 10_000_000
        state = dumps({"pc": 0, "until_us": past, "matched": {}, "history": []})
        rows = [(new_id(), "timers", "timer", seq, state, past, past, past) for _ in range(n)]
        await hub.store.batch_many([(_RUN, rows)])
        engine = hub.engine
        engine.clock = FakeClock(now_us())
        engine.batch = 500
        await engine.tick()  # the first tick loads and caches the automation: not counted
        turn("ready")
        fired = 0
        while claimed := await engine.tick():
            fired += claimed
        turn(f"engine {fired}")
        await hub.store.execute(
            "UPDATE automation_runs SET status = 'running', due_us = ?, ended_us = NULL "
            "WHERE tenant_id = 'timers'",
            (now_us() - 1_000_000,),
        )
        turn("ready")
        raw = 0
        while claimed_rows := await hub.automations.claim(now_us(), 60_000_000, 500):
            await hub.store.batch([(_RAW, (i, rev)) for i, rev in claimed_rows])
            raw += len(claimed_rows)
        turn(f"raw {raw}")
    finally:
        await hub.close()


def dumped(path: Path) -> int:
    """The instructions one dump counts (its `totals:` line)."""
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{path} has no totals line")


def control(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True)


def measure(tree: Path, kind: str, n: int, keep: Path | None = None) -> dict[str, Any]:
    from benchmarks import harness as h

    with h.workdir() as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        with h.fresh_database(kind, work, "timer_instructions") as db:
            argv = [
                *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
                f"--callgrind-out-file={out}",
                *(sys.executable, __file__, "--child", db, str(n)),
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
                # on once: dumps split the phases (each dump zeroes the counts; toggling off and
                # on between them made callgrind's later summaries wrap around)
                for n_phase in range(2):
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
                proc.wait(300)
            finally:
                if proc.poll() is None:
                    proc.kill()
            time.sleep(0.1)
            dumps = sorted(work.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
            engine, raw = dumped(dumps[0]), dumped(dumps[2])  # dumps[1]: between them
            if keep is not None:  # for callgrind_annotate
                for p in (dumps[0], dumps[2]):
                    shutil.copy(p, keep / f"{kind}-{p.name}")
    return {
        "tree": str(tree),
        "kind": kind,
        "timers": n,
        "fired": counted,
        "engine_instructions_per_timer": round(engine / counted["engine"]),
        "raw_instructions_per_timer": round(raw / counted["raw"]),
        "ratio": round((raw / counted["raw"]) / (engine / counted["engine"]), 3),
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(_child(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("timers", type=int, nargs="?", default=2000)
    parser.add_argument("--keep", type=Path, help="copy the two callgrind dumps to this folder")
    args = parser.parse_args()
    print(json.dumps(measure(args.tree.resolve(), args.kind, args.timers, args.keep)))


if __name__ == "__main__":
    main()
