"""PostgreSQL's events by month (migration 0013) against the plain table before it: insert cost
and disk bytes per event, in the same run.

Two fresh databases, one migrated to 0012 (one events table, the unique index on it deciding
duplicates) and one to head (events partitioned by month, the dedup key in `event_keys`). The
same events go into both, through each schema's own statement of the store's group commit (the
batch as one JSON parameter; for 0012 the statement as it was, reading that parameter), BATCH
events per statement, alternating between the two databases statement by statement in ROUNDS
rounds, so that the machine's load falls on both alike. Per round and database: events/s (wall
clock) and the PostgreSQL backend's own CPU per event (utime + stime of its process, from /proc;
it does not count time spent waiting for the CPU, so it moves less with the load). Prints one
JSON line: the medians and their ratio (partitioned / plain), and the disk bytes per event of
each (the events table with every partition and index, plus `event_keys` with its index, after
VACUUM ANALYZE), and where those bytes are, relation by relation (`bytes_per_event_by_relation`).
A third database at head takes the same events into the months without any dedup key (the 0012
statement without ON CONFLICT, `event_keys` left empty): what the months cost by themselves.

Run: ``python -m benchmarks.partitions [EVENTS] [BATCH] [ROUNDS]`` (200000, 100, 10).
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

from benchmarks.events import stored
from benchmarks.harness import fresh_database
from switchboard.envelope import now_us
from switchboard.store.queries import INSERT_COLUMNS

# The statement of the store's group commit before migration 0013, for the plain table.
# The statement of the store's group commit before migration 0013, for the plain table, taking
# its batch as the store's statement does now: one JSON parameter (`batch_json`).
_PLAIN_INSERT = (
    "INSERT INTO events ({cols}) SELECT {selected} FROM ROWS FROM (json_to_recordset($1::json) "
    "AS ({record})) WITH ORDINALITY AS u({cols}, ord) ORDER BY ord "
    "ON CONFLICT (tenant_id, source, id) DO NOTHING RETURNING seq, tenant_id, source, id"
)


def _plain_insert(dedup: bool = True) -> str:
    """The statement before 0013; without `dedup`, the same without ON CONFLICT (for the
    partitioned table with no key table: what the months cost by themselves)."""
    from switchboard.store.postgres import _RECORD, _SELECTED

    sql = _PLAIN_INSERT.format(cols=INSERT_COLUMNS, selected=_SELECTED, record=_RECORD)
    return sql if dedup else sql.replace(" ON CONFLICT (tenant_id, source, id) DO NOTHING", "")


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


async def _size(conn: Any) -> int:
    """Bytes of events (every partition, every index) and of event_keys if there."""
    total = await conn.fetchval(
        "SELECT CASE WHEN relkind = 'p' THEN (SELECT sum(pg_total_relation_size(relid)) "
        "FROM pg_partition_tree('events')) ELSE pg_total_relation_size('events') END "
        "FROM pg_class WHERE oid = 'events'::regclass"
    )
    keys = await conn.fetchval("SELECT to_regclass('event_keys') IS NOT NULL")
    if keys:
        total += await conn.fetchval("SELECT pg_total_relation_size('event_keys')")
    return int(total)


async def _relations(conn: Any) -> dict[str, int]:
    """Bytes of each relation behind `_size`: the events table (heap with TOAST, free space
    and visibility maps, over every partition), each of its indexes (over every partition) and
    `event_keys` with its own indexes, as `pg_table_size` / `pg_relation_size` give them."""
    rows = await conn.fetch(
        # pg_partition_tree gives no rows for a plain table, and a partitioned parent is 0 bytes
        "SELECT 'events (table)', sum(pg_table_size(r)) FROM (SELECT relid FROM "
        "pg_partition_tree('events') UNION SELECT 'events'::regclass) t(r) "
        "UNION ALL SELECT c.relname, (SELECT sum(pg_relation_size(r)) FROM (SELECT relid "
        "FROM pg_partition_tree(c.oid) UNION SELECT c.oid::regclass) t(r)) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'events'::regclass "
        "UNION ALL SELECT 'event_keys (table)', pg_table_size(oid) FROM pg_class "
        "WHERE oid = to_regclass('event_keys') "
        "UNION ALL SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass('event_keys')"
    )
    return {str(r[0]): int(r[1]) for r in rows}


async def _run(
    plain_url: str, parted_url: str, bare_url: str, events: int, batch: int, rounds: int
) -> dict[str, Any]:
    import asyncpg

    from switchboard.store.postgres import _INSERT, batch_json

    statements = {
        "plain": _plain_insert(),
        "partitioned": _INSERT,
        "months_only": _plain_insert(dedup=False),
    }
    conns = {
        "plain": await asyncpg.connect(plain_url),
        "partitioned": await asyncpg.connect(parted_url),
        "months_only": await asyncpg.connect(bare_url),
    }
    try:
        pids = {k: await c.fetchval("SELECT pg_backend_pid()") for k, c in conns.items()}
        per_round = events // rounds // batch
        rates: dict[str, list[float]] = {k: [] for k in conns}
        cpu: dict[str, list[float]] = {k: [] for k in conns}
        n = 0
        received = now_us()
        for _ in range(rounds):
            wall = dict.fromkeys(conns, 0.0)
            used = dict.fromkeys(conns, 0.0)
            for _ in range(per_round):
                rows = [stored("bench", "p", n + i, received + n + i) for i in range(batch)]
                n += batch
                param = batch_json(rows)
                kinds = list(conns)
                for kind in kinds[n // batch % 3 :] + kinds[: n // batch % 3]:  # in turn first
                    conn = conns[kind]
                    c0, t0 = _cpu_seconds(pids[kind]), time.perf_counter()
                    async with conn.transaction():
                        assert len(await conn.fetch(statements[kind], param)) == batch
                    wall[kind] += time.perf_counter() - t0
                    used[kind] += _cpu_seconds(pids[kind]) - c0
            for kind in conns:
                rates[kind].append(per_round * batch / wall[kind])
                cpu[kind].append(used[kind] / (per_round * batch) * 1e6)
        sizes, parts = {}, {}
        for kind, conn in conns.items():
            await conn.execute("VACUUM ANALYZE")
            count = await conn.fetchval("SELECT count(*) FROM events")
            sizes[kind] = await _size(conn) / count
            parts[kind] = {k: round(v / count, 1) for k, v in (await _relations(conn)).items()}
            assert abs(sum(parts[kind].values()) - sizes[kind]) < 1, (parts[kind], sizes[kind])
        med = {k: statistics.median(v) for k, v in rates.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        return {
            "events": n,
            "batch": batch,
            "rounds": rounds,
            "events_per_s": med,
            "ingest_ratio": med["partitioned"] / med["plain"],
            "backend_cpu_us_per_event": med_cpu,
            "cpu_ratio": med_cpu["partitioned"] / med_cpu["plain"],
            "bytes_per_event": sizes,
            "disk_ratio": sizes["partitioned"] / sizes["plain"],
            "bytes_per_event_by_relation": parts,
            "months_only_cpu_ratio": med_cpu["months_only"] / med_cpu["plain"],
            "load_average": os.getloadavg(),
        }
    finally:
        for c in conns.values():
            await c.close()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    from alembic import command

    from switchboard.store.migrate import _config

    with (
        tempfile.TemporaryDirectory() as work,
        fresh_database("postgres", Path(work), "plain") as plain,
        fresh_database("postgres", Path(work), "parted") as parted,
        fresh_database("postgres", Path(work), "bare") as bare,
    ):
        command.upgrade(_config(plain), "0012")
        command.upgrade(_config(parted), "head")
        command.upgrade(_config(bare), "head")
        figure = asyncio.run(_run(plain, parted, bare, events, batch, rounds))
    print(json.dumps(figure))


if __name__ == "__main__":
    main()
