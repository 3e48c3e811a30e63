"""The few counts the dashboard needs that the API's store functions do not give, as named SQL
in `?` placeholders (each store renders its own). Every query is bound to one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.store import Store

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


@dataclass(frozen=True)
class Open:
    """Open deliveries of one destination by status."""

    backlog: int = 0  # pending, retrying or being sent
    dead: int = 0


async def attempts_by_hour(
    store: Store, tenant_id: str, bucket_us: int, from_us: int
) -> dict[int, tuple[int, int]]:
    """{bucket start: (succeeded attempts, failed attempts)} since `from_us`."""
    rows = await store.fetch(ATTEMPTS_BY_HOUR, (bucket_us, bucket_us, tenant_id, from_us))
    return {int(r[0]): (int(r[1] or 0), int(r[2] or 0)) for r in rows}


async def open_deliveries(store: Store, tenant_id: str) -> dict[str, Open]:
    """{destination id: its open deliveries}."""
    out: dict[str, dict[str, Any]] = {}
    for dest, status, n in await store.fetch(OPEN_DELIVERIES, (tenant_id,)):
        counts = out.setdefault(dest, {"backlog": 0, "dead": 0})
        counts["dead" if status == "dead" else "backlog"] += int(n)
    return {dest: Open(**counts) for dest, counts in out.items()}
