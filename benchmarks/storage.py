"""Figures 5 and 6: the replay dry-run scan over stored events beside a plain SELECT of the same
rows, and the disk bytes per stored event beside the event's raw JSON.

Events are bulk-loaded through `raw_insert` (the store's own INSERT, 5,000 rows per statement).
The dry run is `POST /v1/replays {"types", "filter", "destinations", "dry_run": true}` against a
hub on that database; the plain SELECT is the very query the replay scanner builds (same columns,
same WHERE), streamed through one cursor without turning rows into events.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import harness as h
from benchmarks.ingest import raw_insert

REPLAY = {
    "types": ["order.placed"],
    "filter": {"data": {"currency": ["BRL"]}},
    "destinations": ["sink"],
    "dry_run": True,
}


def load(work: Path, db: str, count: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = raw_insert(work, db, "bench", count, 5000, "scan", 900)
    if not db.startswith("sqlite"):
        # autovacuum analyzes a table this size soon after a load; without statistics the
        # planner's guesses would make the figure depend on when autovacuum ran
        asyncio.run(_analyze(db))
    h.say(f"loaded {result['rows']:,} events in {time.perf_counter() - t0:.1f} s")
    return result


async def _analyze(db: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


def _scan_sql(db: str) -> tuple[str, list[Any]]:
    """The replay scanner's own SELECT for REPLAY, without its paging."""
    from switchboard.config import Settings
    from switchboard.replay import _E, ReplaySpec, Scanner
    from switchboard.store.backends import open_store

    class _Hub:  # the scanner only reads `store.dialect` while building SQL
        store = open_store(Settings.from_env({}, database_url=db))

    spec = ReplaySpec("bench", None, None, ("order.placed",), REPLAY["filter"], (), ("x",))
    where, params = Scanner(_Hub(), spec)._where(0)  # type: ignore[arg-type]
    sql = f"SELECT {_E} FROM events e WHERE {where} ORDER BY e.seq"
    return (sql.replace("?j", "?") if db.startswith("sqlite") else sql), params


def plain_select(db: str) -> dict[str, Any]:
    sql, params = _scan_sql(db)
    t0 = time.perf_counter()
    rows = 0
    if db.startswith("sqlite:///"):
        conn = sqlite3.connect(db.removeprefix("sqlite:///"))
        cur = conn.execute(sql, params)
        while batch := cur.fetchmany(1000):
            rows += len(batch)
        conn.close()
    else:

        async def run() -> int:
            import asyncpg

            from switchboard.store.queries import render

            n = 0
            conn = await asyncpg.connect(db)
            try:
                async with conn.transaction():
                    async for _ in conn.cursor(render(sql), *params, prefetch=1000):
                        n += 1
            finally:
                await conn.close()
            return n

        rows = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    return {"value": rows / elapsed, "rows": rows, "seconds": elapsed}


def dry_run(url: str, key: str, within: float) -> dict[str, Any]:
    """The dry run's rate; raises TimeoutError if it takes longer than `within` seconds."""
    t0 = time.perf_counter()
    status, body = h.http("POST", url + "/v1/replays", REPLAY, key, timeout=within)
    elapsed = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"dry run: {status} {str(body)[:300]}")
    return {"value": body["events"] / elapsed, "events": body["events"], "seconds": elapsed}


def with_destination(url: str, key: str) -> None:
    status, body = h.http(
        "POST",
        url + "/v1/destinations",
        {"name": "sink", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
        key,
    )
    if status != 201:
        raise RuntimeError(f"creating the destination: {status} {body}")


def disk(db: str) -> dict[str, Any]:
    """The bytes of the events (every month, every index, and the dedup keys) / count(*),
    beside the mean size of the stored events as JSON (the envelope `GET /v1/events` returns)
    and as the client sent them."""
    from benchmarks.events import document
    from switchboard.store.queries import EVENT_COLUMNS, event_from_row

    async def run() -> dict[str, Any]:
        import asyncpg

        conn = await asyncpg.connect(db)
        try:
            await conn.execute("VACUUM (ANALYZE) events, event_keys")
            # events is partitioned by month (migration 0013): its size is its months', and the
            # dedup keys live in event_keys
            total, heap, indexes, count = await conn.fetchrow(
                "SELECT (sum(pg_total_relation_size(relid)) "
                "+ pg_total_relation_size('event_keys'))::bigint, "
                "(sum(pg_table_size(relid)) + pg_table_size('event_keys'))::bigint, "
                "(sum(pg_indexes_size(relid)) + pg_indexes_size('event_keys'))::bigint, "
                "(SELECT count(*) FROM events) FROM pg_partition_tree('events') WHERE isleaf"
            )
            index_sizes = await conn.fetch(
                "SELECT indexrelid::regclass::text, coalesce((SELECT sum(pg_relation_size(relid)) "
                "FROM pg_partition_tree(indexrelid)), pg_relation_size(indexrelid))::bigint "
                "FROM pg_index WHERE indrelid IN ('events'::regclass, 'event_keys'::regclass) "
                "ORDER BY 2 DESC"
            )
            sample = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq LIMIT 10000"
            )
        finally:
            await conn.close()
        envelope = statistics.fmean(len(orjson.dumps(event_from_row(r).to_json())) for r in sample)
        sent = statistics.fmean(
            len(orjson.dumps(document(str(r[2]), i))) for i, r in enumerate(sample)
        )
        per_event = total / count
        return {
            "value": per_event,
            "events": count,
            "total_bytes": total,
            "heap_bytes_per_event": heap / count,
            "index_bytes_per_event": indexes / count,
            "indexes": {name: size / count for name, size in index_sizes},
            "json_envelope_bytes": envelope,
            "json_sent_bytes": sent,
            "ratio": per_event / envelope,
        }

    return asyncio.run(run())
