"""Scale-out across processes on PostgreSQL (issue 21): ingest with `switchboard serve
--processes N` and deliveries with N `switchboard worker` processes, N = 1 and 2, in turns with
their ceilings, and what each event costs PostgreSQL.

Each round, on fresh databases:

- ingest: the ceiling app (one uvicorn process answering 202 after parsing), then the hub with
  `SWITCHBOARD_PROCESSES=1`, then with 2 (its worker off), each under wrk with `ingest.lua`
  (1 event per request, 64 connections, 1 thread) after a 1 s warm-up; every acknowledged event
  must be stored;
- deliveries: the raw aiohttp client, then N = 1 and 2 `switchboard worker` processes draining a
  queue of the same size. The queue is filled while no worker runs and pushed an hour into the
  future; the N workers start, and once every one says it runs, one UPDATE makes the queue due and
  a NOTIFY wakes them, so no worker's start-up is inside the measured stretch.

Around each measured stretch the tool reads, from `/proc`, the CPU of the hub's processes and of
the PostgreSQL backends connected to the run's database, and from PostgreSQL its
`pg_stat_database` row (commits, rows written), `pg_stat_wal` and the WAL position. The WAL
figures are the whole server's (other databases on a shared server write too): they are upper
bounds, with the share of the server's commits that were the run's beside them.

``python -m benchmarks.scaleout [--rounds 2] [--seconds 5] [--deliveries 20000]`` prints one JSON
object; ``make bench`` runs it through `benchmarks/run.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.delivery import _NO_INTERNAL, _preload, _rate, _wire
from switchboard.signing import generate_secret

_TICK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 64
CONCURRENCY = 64  # the destination's concurrency, as in the delivery figure
PROCESSES = (1, 2)
HOUR_US = 3_600_000_000


# -- what things cost ------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    """User + system CPU seconds of one process (every thread); 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(root: int) -> list[int]:
    """`root` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _pg_background() -> list[int]:
    """The server's own processes (WAL writer, checkpointer, background writer): shared by every
    database on it."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes()
            if cmd.startswith(b"postgres:") and any(
                w in cmd for w in (b"walwriter", b"checkpointer", b"background writer")
            ):
                out.append(int(entry.name))
    return out


async def _pg_stats(db: str) -> dict[str, Any]:
    """The database's counters, the server's WAL counters, and the database's backends."""
    import asyncpg

    name = db.rsplit("/", 1)[1]
    conn = await asyncpg.connect(h.PG_ADMIN_URL)  # another database: its reads count there
    try:
        mine = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written "
            "FROM pg_stat_database WHERE datname = $1",
            name,
        )
        wal = await conn.fetchrow("SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal")
        pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await conn.close()
    return {
        "commits": int(mine["xact_commit"]),
        "written": int(mine["written"]),
        "wal_records": int(wal["wal_records"]),
        "wal_bytes": int(wal["wal_bytes"]),
        "wal_syncs": int(wal["wal_sync"]),
        "backends": [int(r["pid"]) for r in pids],
    }


class Counters:
    """The database's commits and rows written between two moments at which none of its
    processes runs: a backend sends its counts to `pg_stat_database` at most once a second
    while it works, and at once when it exits, so reading them with the hub running would miss
    up to a second of them."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.before = asyncio.run(_pg_stats(db))

    def per(self, count: int) -> dict[str, float]:
        after = asyncio.run(_pg_stats(self.db))
        return {
            "commits": (after["commits"] - self.before["commits"]) / max(1, count),
            "rows_written": (after["written"] - self.before["written"]) / max(1, count),
        }


class Meter:
    """Between `start()` and `stop()`: the CPU of some processes (and their children) and of
    the database's backends, from `/proc`, and the server's WAL (every database's)."""

    def __init__(self, db: str, roots: list[int]) -> None:
        self.db = db
        self.roots = roots

    def _cpu_now(self, stats: dict[str, Any]) -> tuple[dict[int, float], dict[int, float]]:
        own = {p: _cpu(p) for root in self.roots for p in _tree(root)}
        pg = {p: _cpu(p) for p in stats["backends"]}
        return own, pg

    def start(self) -> None:
        self.stats0 = asyncio.run(_pg_stats(self.db))
        self.cpu0 = self._cpu_now(self.stats0)
        self.bg0 = {p: _cpu(p) for p in _pg_background()}
        self.t0 = time.monotonic()

    def stop(self, count: int) -> dict[str, float]:
        """Per event (or delivery) of `count`: µs of CPU, the server's WAL."""
        seconds = time.monotonic() - self.t0
        stats = asyncio.run(_pg_stats(self.db))
        own1, pg1 = self._cpu_now(stats)
        bg = sum(max(0.0, _cpu(p) - t) for p, t in self.bg0.items())
        own0, pg0 = self.cpu0
        own = sum(max(0.0, t - own0.get(p, 0.0)) for p, t in own1.items())
        pg = sum(max(0.0, t - pg0.get(p, 0.0)) for p, t in pg1.items())
        per = 1 / max(1, count)
        return {
            "seconds": seconds,
            "hub_cpu_us": own * per * 1e6,
            "pg_cpu_us": pg * per * 1e6,
            "hub_cores": own / seconds,
            "pg_cores": pg / seconds,
            # the whole server's: other databases on it count too (upper bounds)
            "pg_background_cpu_us": bg * per * 1e6,
            "server_wal_bytes": (stats["wal_bytes"] - self.stats0["wal_bytes"]) * per,
            "server_wal_records": (stats["wal_records"] - self.stats0["wal_records"]) * per,
            "server_wal_syncs_per_s": (stats["wal_syncs"] - self.stats0["wal_syncs"]) / seconds,
        }


async def _count(db: str, sql: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


# -- ingest ----------------------------------------------------------------------------------


def ceiling(seconds: float, work: Path, tag: str) -> float:
    with h.ceiling_app(work) as (url, _):
        h.run_wrk(url, "x", batch=1, connections=CONNECTIONS, duration=1, tag=f"w{tag}")
        s = h.run_wrk(url, "x", batch=1, connections=CONNECTIONS, duration=seconds, tag=tag)
    if s["errors"] or not s["requests"]:
        raise RuntimeError(f"ceiling {tag}: {s}")
    return float(s["events_per_s"])


def ingest(n: int, seconds: float, work: Path, tag: str) -> dict[str, Any]:
    """`serve` with SWITCHBOARD_PROCESSES=n (its worker off) under wrk on a fresh database."""
    with h.provisioned("postgres", work, tag) as (db, key):
        counters = Counters(db)
        extra = {"SWITCHBOARD_PROCESSES": str(n), "SWITCHBOARD_RUN_WORKER": "0"}
        with h.hub(work, db, name=f"hub-{tag}", **extra) as (url, proc):
            if n > 1:
                _wait_children(proc, n)
            h.run_wrk(url, key, batch=1, connections=CONNECTIONS, duration=1, tag=f"w{tag}")
            before = asyncio.run(_count(db, "SELECT count(*) FROM events"))
            meter = Meter(db, [proc.pid])
            meter.start()
            s = h.run_wrk(url, key, batch=1, connections=CONNECTIONS, duration=seconds, tag=tag)
            cost = meter.stop(s["requests"])
            total = asyncio.run(_count(db, "SELECT count(*) FROM events"))
        cost.update(counters.per(total))  # every event stored, the warm-up's too
    stored = total - before
    if s["errors"] or not s["requests"]:
        raise RuntimeError(f"{tag}: wrk saw errors: {s}")
    if stored < s["events"]:
        raise RuntimeError(f"{tag}: {s['events']} acknowledged, {stored} stored")
    return {"value": float(s["events_per_s"]), "p99_ms": s["p99_us"] / 1000, **cost}


def _wait_children(proc: h.Proc, n: int, within: float = 60) -> None:
    """Until `serve --processes n` has started its n API processes and each answers."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.tail(100_000).count('"action":"process_started"') >= n:
            time.sleep(1.0)  # each child's start-up: the harness saw /health from one of them
            return
        time.sleep(0.1)
    raise RuntimeError(f"serve --processes {n} did not start its children: {proc.tail()}")


# -- deliveries -------------------------------------------------------------------------------


async def _sql(db: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        async with conn.transaction():
            for sql in statements:
                await conn.execute(sql)
    finally:
        await conn.close()


def _worker_ready(proc: h.Proc) -> bool:
    return "worker running" in proc.tail(100_000)


def raw(count: int, work: Path) -> float:
    with h.receiver(work) as (receiver, _):
        args = (receiver + "/hook", str(count), str(CONCURRENCY), generate_secret())
        sender = h.run_module("benchmarks.raw_sender", *args, timeout=300)
        stats = h.wait_count(receiver, count, within=30)
    if sender["failures"]:
        raise RuntimeError(f"raw sender: {sender}")
    return _rate(stats)


def deliveries(n: int, count: int, work: Path, tag: str) -> dict[str, Any]:
    """n `switchboard worker` processes draining `count` due deliveries, all started first."""
    with contextlib.ExitStack() as stack:
        db, key = stack.enter_context(h.provisioned("postgres", work, tag))
        receiver, _ = stack.enter_context(h.receiver(work))
        with h.hub(work, db, name=f"hub-{tag}", **_NO_INTERNAL) as (url, _):
            _wire(url, key, receiver, CONCURRENCY, generate_secret())
            _preload(url, key, count, tag)
        asyncio.run(
            _sql(db, f"UPDATE deliveries SET next_attempt_us = next_attempt_us + {HOUR_US}")
        )
        h.http("POST", receiver + "/_reset")
        env = h.hub_env(db, 0, **_NO_INTERNAL)
        argv = [str(h.BIN / "switchboard"), "worker"]
        counters = Counters(db)
        workers = [h.start(f"w{i}-{tag}", argv, work, env) for i in range(n)]
        for w in workers:
            stack.callback(w.stop)
        deadline = time.monotonic() + 60
        while not all(_worker_ready(w) for w in workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tag}: workers did not start: {workers[0].tail()}")
            time.sleep(0.1)
        time.sleep(1.0)  # their first (empty) claims and LISTEN are done
        meter = Meter(db, [w.pid for w in workers])
        meter.start()
        asyncio.run(
            _sql(
                db,
                f"UPDATE deliveries SET next_attempt_us = next_attempt_us - {HOUR_US}",
                "NOTIFY switchboard_deliveries",
            )
        )
        stats = h.wait_count(receiver, count, within=300)
        cost = meter.stop(count)
        for w in workers:
            w.stop()
        cost.update(counters.per(count))
    return {"value": _rate(stats), **cost}


# -- the rounds -------------------------------------------------------------------------------


def measure(rounds: int, seconds: float, count: int, work: Path) -> dict[str, Any]:
    """Ceiling, N=1, N=2 in turns, `rounds` times, for ingest then for deliveries."""
    out: dict[str, Any] = {"ingest": [], "deliveries": []}
    for r in range(rounds):
        row: dict[Any, Any] = {"ceiling": ceiling(seconds, work, f"c{r}")}
        for n in PROCESSES:
            row[n] = ingest(n, seconds, work, f"so_in{n}_{r}")
            h.say(
                f"scale-out ingest, round {r + 1}, {n} process(es): {row[n]['value']:,.0f}/s "
                f"(ceiling {row['ceiling']:,.0f}/s), hub {row[n]['hub_cpu_us']:.0f} µs + "
                f"PostgreSQL {row[n]['pg_cpu_us']:.0f} µs CPU, {row[n]['commits']:.3f} commits "
                "per event"
            )
        out["ingest"].append(row)
    for r in range(rounds):
        row = {"ceiling": raw(count, work)}
        for n in PROCESSES:
            row[n] = deliveries(n, count, work, f"so_dl{n}_{r}")
            h.say(
                f"scale-out deliveries, round {r + 1}, {n} worker(s): {row[n]['value']:,.0f}/s "
                f"(raw client {row['ceiling']:,.0f}/s), workers {row[n]['hub_cpu_us']:.0f} µs + "
                f"PostgreSQL {row[n]['pg_cpu_us']:.0f} µs CPU, {row[n]['commits']:.3f} commits "
                "per delivery"
            )
        out["deliveries"].append(row)
    return out


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Medians over the rounds, per figure and process count."""
    out: dict[str, Any] = {}
    for what, rows in result.items():
        fig: dict[str, Any] = {"ceiling": statistics.median(r["ceiling"] for r in rows)}
        for n in PROCESSES:
            keys = rows[0][n].keys()
            fig[str(n)] = {k: statistics.median(r[n][k] for r in rows) for k in keys}
            fig[str(n)]["ratio"] = statistics.median(r[n]["value"] / r["ceiling"] for r in rows)
        fig["speedup"] = statistics.median(r[2]["value"] / r[1]["value"] for r in rows)
        out[what] = fig
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--deliveries", type=int, default=20_000)
    args = parser.parse_args()
    if not h.pg_available():
        sys.exit(f"no PostgreSQL at {h.PG_ADMIN_URL}")
    rounds = max(1, min(args.rounds, 5))
    with h.workdir() as tmp:
        result = measure(rounds, args.seconds, args.deliveries, Path(tmp))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    runs = {k: [{str(n): v for n, v in row.items()} for row in rows] for k, rows in result.items()}
    print(json.dumps({"summary": summary(result), "runs": runs, "load": load}))


if __name__ == "__main__":
    main()
