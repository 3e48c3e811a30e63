"""The few counts (and the one look-up: a delivery's event) the dashboard needs that the API's
store functions do not give, as named SQL in `?` placeholders (each store renders its own).
Every query is bound to one tenant, and a key limited by constraints counts only the deliveries
of the events it may see (a join with their events, narrowed by the constraints' SQL as the DLQ
listing is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.envelope import Event
from switchboard.patterns import Pattern
from switchboard.store import Store
from switchboard.store.deliveries import pattern_fragment
from switchboard.store.queries import EVENT_COLUMNS, event_from_row

# Attempts per hour bucket, split by outcome: the overview's delivery success chart.
ATTEMPTS_BY_HOUR = (
    "SELECT (started_us / ?) * ?, "
    "SUM(CASE WHEN ok THEN 1 ELSE 0 END), SUM(CASE WHEN ok THEN 0 ELSE 1 END) "
    "FROM attempts WHERE tenant_id = ? AND started_us >= ? GROUP BY 1"
)
# Deliveries still to send or given up on, per destination and status: backlog, DLQ, health.
OPEN_DELIVERIES = (
    "SELECT destination_id, status, count(*) FROM deliveries "
    "WHERE tenant_id = ? AND status IN ('pending', 'retrying', 'sending', 'dead') "
    "GROUP BY destination_id, status"
)


# The same two, over the deliveries of the events a pattern matches (`{narrowed}`: its SQL).
ATTEMPTS_BY_HOUR_NARROWED = (
    "SELECT (a.started_us / ?) * ?, "
    "SUM(CASE WHEN a.ok THEN 1 ELSE 0 END), SUM(CASE WHEN a.ok THEN 0 ELSE 1 END) "
    "FROM attempts a, deliveries d, events e WHERE a.tenant_id = ? AND a.started_us >= ? "
    "AND d.id = a.delivery_id AND e.seq = d.event_seq AND ({narrowed}) GROUP BY 1"
)
OPEN_DELIVERIES_NARROWED = (
    "SELECT d.destination_id, d.status, count(*) FROM deliveries d, events e "
    "WHERE d.tenant_id = ? AND d.status IN ('pending', 'retrying', 'sending', 'dead') "
    "AND e.seq = d.event_seq AND ({narrowed}) GROUP BY d.destination_id, d.status"
)


@dataclass(frozen=True)
class Open:
    """Open deliveries of one destination by status."""

    backlog: int = 0  # pending, retrying or being sent
    dead: int = 0


def _narrowed(store: Store, sql: str, params: list[Any], pattern: Pattern) -> str:
    return sql.format(narrowed=pattern_fragment(pattern, store.dialect, params))


async def attempts_by_hour(
    store: Store, tenant_id: str, bucket_us: int, from_us: int, pattern: Pattern | None = None
) -> dict[int, tuple[int, int]]:
    """{bucket start: (succeeded attempts, failed attempts)} since `from_us`, of the events
    `pattern` matches (None: all)."""
    params: list[Any] = [bucket_us, bucket_us, tenant_id, from_us]
    sql = ATTEMPTS_BY_HOUR
    if pattern is not None:
        sql = _narrowed(store, ATTEMPTS_BY_HOUR_NARROWED, params, pattern)
    rows = await store.fetch(sql, params)
    return {int(r[0]): (int(r[1] or 0), int(r[2] or 0)) for r in rows}


async def open_deliveries(
    store: Store, tenant_id: str, pattern: Pattern | None = None
) -> dict[str, Open]:
    """{destination id: its open deliveries}, of the events `pattern` matches (None: all)."""
    params: list[Any] = [tenant_id]
    sql = OPEN_DELIVERIES
    if pattern is not None:
        sql = _narrowed(store, OPEN_DELIVERIES_NARROWED, params, pattern)
    out: dict[str, dict[str, Any]] = {}
    for dest, status, n in await store.fetch(sql, params):
        counts = out.setdefault(dest, {"backlog": 0, "dead": 0})
        counts["dead" if status == "dead" else "backlog"] += int(n)
    return {dest: Open(**counts) for dest, counts in out.items()}


# One event by its position (a delivery's `event_seq`): the events table's key.
EVENT_BY_SEQ = f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND seq = ?"


async def event_by_seq(store: Store, tenant_id: str, seq: int) -> Event | None:
    rows = await store.fetch(EVENT_BY_SEQ, [tenant_id, seq])
    return (await store.subject_keys.open([event_from_row(rows[0])]))[0] if rows else None
