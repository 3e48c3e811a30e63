"""PostgreSQL's events by month: the retention job's upkeep of the monthly partitions.

Migration 0013 partitions `events` by RANGE of `received_us` (the hub's clock when it took the
event in), one partition per calendar month in UTC, plus a DEFAULT partition for rows outside
every month created. Receipt time, not the event's own `time`, decides the month: it is always
the hub's present, so ingest writes one partition at a time and a client's `time` (any date from
year 1 to 9999) never lands in a partition that was dropped or not yet created.

Each pass of the retention job (`upkeep`):

1. creates the current month and the next AHEAD months if missing (an empty table attached
   under SHARE UPDATE EXCLUSIVE, which ingest does not wait for; rows of that month that went to
   the DEFAULT partition meanwhile are moved into it in the same transaction, which locks that
   partition, so the whole step waits at most LOCK_TIMEOUT_MS for its locks, else the next pass
   tries again);
2. for each month that ended more than a day ago, drops it whole when every row in it is past
   its retention: for every (tenant, type) with rows in the month, the newest `time` there is
   before that tenant and type's cutoff, and no row is still waited for (a delivery pending,
   retrying or sending, an automation run still running). Before the DROP it deletes, in
   chunks, what refers to those events (deliveries, their attempts and inbox items) and their
   dedup keys (`event_keys`), pausing after each chunk as long as it took. A month that fails
   the rule (a tenant or type kept longer, an event whose `time` lies in the future, work still
   waiting) stays, and the job's chunked deletes take its expired rows out one by one as before.

DROP TABLE takes an ACCESS EXCLUSIVE lock on `events` for a moment (DETACH … CONCURRENTLY is
refused while a DEFAULT partition exists), so it is tried under a short lock timeout, a few
times, and otherwise at the next pass: ingest waits at most LOCK_TIMEOUT_MS for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from switchboard.retention import DAY_US, Cutoffs

log = logging.getLogger("switchboard.retention")

AHEAD = 2  # months created ahead of the current one
SETTLE_US = DAY_US  # a month is considered for dropping a day after it ended (clock skew)
LOCK_TIMEOUT_MS = 100  # the longest ingest waits behind a partition's DROP
DROP_ATTEMPTS = 10
KEY_CHUNK = 2000  # rows of a dropped month whose keys and deliveries one transaction deletes
_ADVISORY = 0x5B_E7E7  # one process at a time changes the partitions
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_ACTIVE = ("pending", "retrying", "sending")


class Connected(Protocol):
    """The PostgreSQL store (`PostgresStore.connection`)."""

    def connection(self) -> AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True)
class Month:
    name: str
    start_us: int
    end_us: int


def month_index(us: int) -> int:
    """Months since 1970-01 (UTC) of the instant `us`."""
    dt = datetime.fromtimestamp(us / 10**6, tz=UTC)
    return (dt.year - 1970) * 12 + dt.month - 1


def month(index: int) -> Month:
    def start(i: int) -> int:
        return int(datetime(1970 + i // 12, i % 12 + 1, 1, tzinfo=UTC).timestamp()) * 10**6

    name = f"events_p{1970 + index // 12:04d}{index % 12 + 1:02d}"
    return Month(name, start(index), start(index + 1))


async def months(conn: Any) -> list[Month]:
    """The attached monthly partitions, oldest first (not the DEFAULT one)."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    )
    found = []
    for name, bound in rows:
        if m := _BOUND.search(bound or ""):
            found.append(Month(str(name), int(m.group(1)), int(m.group(2))))
    return sorted(found, key=lambda m: m.start_us)


async def ensure_month(conn: Any, m: Month) -> bool:
    """Create and attach the partition of month `m` unless it exists; True if it was made."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        if any(p.name == m.name for p in await months(conn)):
            return False
        await conn.execute(
            f"CREATE TABLE {m.name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        # the bound as a constraint lets ATTACH skip its scan of the new table
        await conn.execute(
            f"ALTER TABLE {m.name} ADD CONSTRAINT {m.name}_bound "
            f"CHECK (received_us >= {m.start_us} AND received_us < {m.end_us})"
        )
        # rows of this month that arrived while it did not exist went to the DEFAULT partition
        moved = await conn.execute(
            f"WITH moved AS (DELETE FROM events_default WHERE received_us >= {m.start_us} "
            f"AND received_us < {m.end_us} RETURNING *) INSERT INTO {m.name} SELECT * FROM moved"
        )
        await conn.execute(
            f"ALTER TABLE events ATTACH PARTITION {m.name} "
            f"FOR VALUES FROM ({m.start_us}) TO ({m.end_us})"
        )
        await conn.execute(f"ALTER TABLE {m.name} DROP CONSTRAINT {m.name}_bound")
        log.info(
            "partition created",
            extra={"action": "partition_created", "partition": m.name, "moved": moved},
        )
        return True


async def _pairs(conn: Any, m: Month) -> list[tuple[str, str, int]]:
    """(tenant, type, newest time_us) of every tenant and type with rows in month `m`: a walk
    of the month's (tenant_id, type, time_us) index, one step per pair."""
    rows = await conn.fetch(
        "WITH RECURSIVE pairs AS ("
        f"(SELECT tenant_id, type FROM {m.name} ORDER BY tenant_id, type LIMIT 1) "
        "UNION ALL SELECT n.tenant_id, n.type FROM pairs p, LATERAL ("
        f"SELECT tenant_id, type FROM {m.name} WHERE (tenant_id, type) > (p.tenant_id, p.type) "
        "ORDER BY tenant_id, type LIMIT 1) n) "
        "SELECT p.tenant_id, p.type, "
        f"(SELECT max(time_us) FROM {m.name} e WHERE e.tenant_id = p.tenant_id "
        "AND e.type = p.type) FROM pairs p"
    )
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def _waited_for(conn: Any, m: Month) -> bool:
    """Whether a delivery or a running automation still needs an event of month `m`."""
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM deliveries d "
        f"JOIN {m.name} e ON e.tenant_id = d.tenant_id AND e.seq = d.event_seq "
        "WHERE d.status = ANY($1::text[])) OR EXISTS (SELECT 1 FROM automation_runs r "
        f"JOIN {m.name} e ON e.tenant_id = r.tenant_id AND e.seq = r.trigger_seq "
        "WHERE r.ended_us IS NULL)",
        list(_ACTIVE),
    )
    return bool(found)


def expired(pairs: list[tuple[str, str, int]], rules: Mapping[str, Cutoffs]) -> bool:
    """Whether every row of a month is past its retention: for each (tenant, type, newest
    time), the tenant has a rule and the newest time is before that type's cutoff."""
    for tenant_id, type_, newest in pairs:
        cutoffs = rules.get(tenant_id)
        if cutoffs is None:
            return False
        cutoff = cutoffs.by_type.get(type_, cutoffs.default_us)
        if cutoff is None or newest >= cutoff:
            return False
    return True


_DEPENDENTS = (
    "SELECT d.id FROM deliveries d JOIN unnest($1::text[], $2::bigint[]) AS k(t, q) "
    "ON d.tenant_id = k.t AND d.event_seq = k.q"
)


async def _forget_keys(conn: Any, m: Month) -> tuple[int, int]:
    """Delete, KEY_CHUNK events at a time, the dedup keys of month `m`'s events and their
    deliveries with attempts and inbox items; the events gone through, and the last seq."""
    after, total = -(2**63), 0
    while True:
        started = time.perf_counter()
        rows = await conn.fetch(
            f"SELECT seq, tenant_id, id, source FROM {m.name} WHERE seq > $1 ORDER BY seq LIMIT $2",
            after,
            KEY_CHUNK,
        )
        if not rows:
            return total, after
        seqs = [r[0] for r in rows]
        tenants = [r[1] for r in rows]
        async with conn.transaction():
            await conn.execute(
                f"DELETE FROM attempts WHERE delivery_id IN ({_DEPENDENTS})", tenants, seqs
            )
            await conn.execute(
                f"DELETE FROM inbox_items WHERE delivery_id IN ({_DEPENDENTS})", tenants, seqs
            )
            await conn.execute(
                "DELETE FROM deliveries d USING unnest($1::text[], $2::bigint[]) AS k(t, q) "
                "WHERE d.tenant_id = k.t AND d.event_seq = k.q",
                tenants,
                seqs,
            )
            await conn.execute(
                "DELETE FROM event_keys x USING unnest($1::text[], $2::text[], $3::text[], "
                "$4::bigint[]) AS k(t, i, s, q) "
                "WHERE x.tenant_id = k.t AND x.id = k.i AND x.source = k.s AND x.seq = k.q",
                tenants,
                [r[2] for r in rows],
                [r[3] for r in rows],
                seqs,
            )
        total += len(rows)
        after = seqs[-1]
        # as long again for the others: ingest keeps the database at least half the time
        await asyncio.sleep(min(time.perf_counter() - started, 1.0))


async def drop_month(conn: Any, m: Month) -> int | None:
    """Drop month `m` whole after deleting what refers to its events; the events dropped, or
    None when the DROP did not get its lock or the month changed meanwhile (the next pass
    tries again)."""
    gone, last = await _forget_keys(conn, m)
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                await conn.execute(f"LOCK TABLE {m.name} IN ACCESS EXCLUSIVE MODE")
                # a row written since (only a hub whose clock is a day behind could): look again
                # at the next pass. A primary key lookup: the lock is held for no scan.
                if await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {m.name} WHERE seq > $1)", last
                ):
                    return None
                await conn.execute(f"DROP TABLE {m.name}")
        except asyncpg.LockNotAvailableError:  # readers or ingest held it: wait a little
            await asyncio.sleep(0.05 * attempt)
            continue
        log.info(
            "partition dropped",
            extra={"action": "partition_dropped", "partition": m.name, "events": gone},
        )
        return gone
    return None


async def upkeep(
    store: Connected, now_us: int, rules: Mapping[str, Cutoffs], ahead: int = AHEAD
) -> int:
    """One pass: the months ahead created, the expired months dropped; the events dropped."""
    dropped = 0
    async with store.connection() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _ADVISORY):
            return 0  # another worker is at it
        try:
            current = month_index(now_us)
            for index in range(current, current + ahead + 1):
                try:
                    await ensure_month(conn, month(index))
                except asyncpg.LockNotAvailableError:  # readers held the default partition
                    log.info("partition not created yet", extra={"action": "partition_wait"})
            for m in await months(conn):
                if m.end_us > now_us - SETTLE_US:
                    break
                if not expired(await _pairs(conn, m), rules) or await _waited_for(conn, m):
                    continue
                dropped += await drop_month(conn, m) or 0
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY)
    return dropped
