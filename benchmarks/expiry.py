"""Expiring a month of events: how long the retention job takes to delete N expired events, and
what ingest latency is while it runs.

A fresh database gets N events 13 months old and N/10 kept ones (the bulk loader of
`raw_insert.py`, their `time` and receipt moved back), and a tenant default retention of 12
months. On PostgreSQL the months they fall in are created first (store/partitions.py), so the
expired months are dropped whole; with `--mixed`, each of those months also holds a few events
of a tenant without retention, so no month can be dropped and the job deletes row by row (the
path SQLite always takes). A hub's own
ingest path (`Hub.ingestor`, in this process, on the same store) then sends one event per call
at a fixed rate: first for a few seconds alone (the baseline), then while `retention_job.run_once`
deletes the expired events in its chunks. Prints one JSON line: the rows deleted, the seconds
and rows/s of the expiry, and ingest p50/p99 (ms) alone and during the expiry.

Run: ``python -m benchmarks.expiry sqlite|postgres ROWS [RATE] [--mixed]`` (RATE: ingest
calls/s, 200).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.events import document, stored
from benchmarks.harness import fresh_database, provision
from benchmarks.raw_insert import insert_postgres, insert_sqlite
from switchboard.envelope import now_us
from switchboard.store.queries import insert_row

DAY_US = 86_400_000_000


def _old_rows(
    tenant: str, tag: str, rows: int, days_ago: int, sqlite: bool, batch: int = 1000
) -> Any:
    """Batches of stored events whose `time` lies `days_ago` days back, spread over four weeks:
    SQLite's rows as tuples, PostgreSQL's as the events (raw_insert's two loaders)."""
    base = now_us() - days_ago * DAY_US
    for start in range(0, rows, batch):
        out: list[Any] = []
        for n in range(start, min(rows, start + batch)):
            at = base - (n % 28) * DAY_US - n
            event = msgspec.structs.replace(stored(tenant, tag, n), time_us=at, received_us=at)
            out.append(insert_row(event) if sqlite else event)
        yield out


def _months(url: str, days: tuple[int, ...]) -> None:
    """PostgreSQL: the partitions of the months `days` ago (and the four weeks before each)."""
    from switchboard.config import Settings
    from switchboard.store.backends import open_store
    from switchboard.store.partitions import ensure_month, month, month_index

    async def run() -> None:
        store: Any = open_store(Settings.from_env({}, database_url=url))
        await store.open()
        try:
            async with store.connection() as conn:
                for d in days:
                    newest = month_index(now_us() - d * DAY_US)
                    oldest = month_index(now_us() - (d + 28) * DAY_US)
                    for index in range(oldest, newest + 1):
                        await ensure_month(conn, month(index))
        finally:
            await store.close()

    asyncio.run(run())


def _load(url: str, tenant: str, rows: int, mixed: bool) -> None:
    loads = [("old", tenant, rows, 400), ("kept", tenant, max(1, rows // 10), 100)]
    if mixed:  # a tenant without retention in the expired months: none can be dropped whole
        loads.append(("forever", "forever", 56, 400))
    if not url.startswith("sqlite:///"):
        _months(url, (400, 100))
    for tag, owner, count, days in loads:
        batches = _old_rows(owner, tag, count, days, url.startswith("sqlite:///"))
        if url.startswith("sqlite:///"):
            insert_sqlite(url.removeprefix("sqlite:///"), batches, float("inf"))
        else:
            asyncio.run(insert_postgres(url, batches, float("inf")))
    if not url.startswith("sqlite:///"):
        # months that old were analyzed long ago in a real hub; loaded in seconds here, they
        # would wait for autovacuum, and without statistics the planner reads a month by its
        # tenant index instead of by seq (the figure would depend on when autovacuum ran)
        asyncio.run(_analyze(url))


async def _analyze(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE event_keys")
    finally:
        await conn.close()


def _percentiles(samples: list[float]) -> dict[str, float]:
    if len(samples) < 2:
        return {"n": len(samples)}
    cuts = statistics.quantiles(samples, n=100)
    return {"n": len(samples), "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


async def _measure(url: str, tenant: str, rate: float, baseline_s: float) -> dict[str, Any]:
    from switchboard.config import Settings
    from switchboard.hub import Hub
    from switchboard.retention_job import run_once
    from switchboard.store import retention as sql

    hub = Hub(Settings.from_env({}, database_url=url, run_worker=0))
    await hub.open()
    try:
        await sql.set_tenant_retention(hub.store, tenant, 372)
        t = await hub.tenant(tenant)
        assert t is not None
        samples: dict[str, list[float]] = {"alone": [], "during": []}
        phase = "alone"
        stop = asyncio.Event()

        async def send() -> None:
            n = 0
            start = time.perf_counter()
            while not stop.is_set():
                due = start + n / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                t0 = time.perf_counter()
                result = await hub.ingestor.ingest([document(f"live-{n}", n)], t, "default")
                assert result.accepted == 1
                samples[phase].append(time.perf_counter() - t0)
                n += 1

        sender = asyncio.create_task(send())
        await asyncio.sleep(baseline_s)
        phase = "during"
        t0 = time.perf_counter()
        deleted = await run_once(hub, now_us())
        seconds = time.perf_counter() - t0
        stop.set()
        await sender
        return {
            "deleted": deleted["events"],
            "seconds": seconds,
            "rows_per_s": deleted["events"] / seconds,
            "chunk": hub.settings.retention_chunk,
            "ingest_alone": _percentiles(samples["alone"]),
            "ingest_during": _percentiles(samples["during"]),
        }
    finally:
        await hub.close()


def main() -> None:
    mixed = "--mixed" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--mixed"]
    kind, rows = args[0], int(args[1])
    rate = float(args[2]) if len(args) > 2 else 200.0
    with (
        tempfile.TemporaryDirectory() as work,
        fresh_database(kind, Path(work), "expiry") as url,
    ):
        provision(url)
        if mixed:
            provision(url, "forever")
        t0 = time.perf_counter()
        _load(url, "bench", rows, mixed)
        loaded = time.perf_counter() - t0
        figure = asyncio.run(_measure(url, "bench", rate, baseline_s=5.0))
    print(
        json.dumps(
            {
                "backend": kind,
                "rows": rows,
                "mixed": mixed,
                "load_seconds": loaded,
                **figure,
                "load_average": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
