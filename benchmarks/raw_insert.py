"""The batched-ingest ceiling, and the bulk loader of the scan and disk figures: the rows the hub
would store, inserted with the store's own SQL and nothing else (no HTTP, no validation, no
routing): SQLite's ``INSERT … ON CONFLICT DO NOTHING`` through ``executemany`` (as the store
does) with the store's pragmas, PostgreSQL's one-statement ``INSERT`` whose batch is one JSON
parameter (``batch_json``, encoded in the timed loop as the store does per commit) through
asyncpg. One transaction per batch, as one ingest request is at least one transaction in the hub.

Run: ``python -m benchmarks.raw_insert DATABASE_URL TENANT ROWS BATCH TAG [SECONDS]``; prints a
JSON line ``{"rows", "seconds", "rows_per_s"}``. Rows are built before the clock starts, unless
ROWS is over 250,000 (a bulk load: built batch by batch, and the figure is not a ceiling).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.events import stored
from switchboard.envelope import Event, now_us
from switchboard.store.queries import insert_row

_PREBUILD_LIMIT = 250_000


def _same(event: Event) -> Event:
    return event


def _batches(
    tenant: str, tag: str, rows: int, batch: int, row: Callable[[Event], Any]
) -> Callable[[], Iterator[list[Any]]]:
    def make(start: int) -> list[Any]:
        received = now_us()
        return [
            row(stored(tenant, tag, n, received)) for n in range(start, min(rows, start + batch))
        ]

    if rows <= _PREBUILD_LIMIT:
        built = [make(s) for s in range(0, rows, batch)]
        return lambda: iter(built)
    return lambda: (make(s) for s in range(0, rows, batch))


def insert_sqlite(path: str, batches: Iterator[list[tuple[Any, ...]]], until: float) -> int:
    from switchboard.store.sqlite import _INSERT

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the hub's default
    done = 0
    for rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        done += len(rows)
        if time.perf_counter() > until:
            break
    conn.close()
    return done


async def insert_postgres(url: str, batches: Iterator[list[Event]], until: float) -> int:
    import asyncpg

    from switchboard.store.postgres import _INSERT, batch_json

    conn = await asyncpg.connect(url)
    done = 0
    try:
        for rows in batches:
            async with conn.transaction():
                await conn.fetch(_INSERT, batch_json(rows))
            done += len(rows)
            if time.perf_counter() > until:
                break
    finally:
        await conn.close()
    return done


def main() -> None:
    url, tenant, rows, batch, tag = sys.argv[1:6]
    seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 1e9
    sqlite = url.startswith("sqlite:///")
    # SQLite's executemany takes the rows' tuples; PostgreSQL's statement the events themselves
    batches = _batches(tenant, tag, int(rows), int(batch), insert_row if sqlite else _same)
    it = batches()
    t0 = time.perf_counter()
    until = t0 + seconds
    if sqlite:
        done = insert_sqlite(url.removeprefix("sqlite:///"), it, until)
    else:
        done = asyncio.run(insert_postgres(url, it, until))
    elapsed = time.perf_counter() - t0
    print(json.dumps({"rows": done, "seconds": elapsed, "rows_per_s": done / elapsed}))


if __name__ == "__main__":
    main()
