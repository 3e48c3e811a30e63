"""Retention's SQL, written once for both backends on the stores' generic SQL: the tenants'
default retention, and chunked deletes of expired events (with their deliveries, attempts
and inbox items), attempts, and inbound requests.

Each chunk is one short transaction of at most `chunk` rows per table, so on SQLite it holds
the single writer for a few milliseconds and ingest goes on between chunks; on PostgreSQL it
takes row locks on the chunk only.
"""

from __future__ import annotations

from typing import Any

from switchboard.store.queries import Sql

# Events still waiting for a delivery, or that a running automation was started by, are kept
# until that work ends: the worker and the engine read them.
_ACTIVE_DELIVERY = (
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = events.tenant_id "
    "AND d.event_seq = events.seq AND d.status IN ('pending', 'retrying', 'sending'))"
)
_MOST_PROTECTED = 1000  # running automations whose triggers one pass keeps by listing them


async def tenant_retentions(sql: Sql) -> list[tuple[str, int | None]]:
    """(tenant id, default event retention in days or None) of every tenant."""
    rows = await sql.fetch("SELECT id, retention_days FROM tenants ORDER BY id")
    return [(str(r[0]), None if r[1] is None else int(r[1])) for r in rows]


async def get_tenant_retention(sql: Sql, tenant_id: str) -> int | None:
    rows = await sql.fetch("SELECT retention_days FROM tenants WHERE id = ?", (tenant_id,))
    return None if not rows or rows[0][0] is None else int(rows[0][0])


async def set_tenant_retention(sql: Sql, tenant_id: str, days: int | None) -> None:
    await sql.execute("UPDATE tenants SET retention_days = ? WHERE id = ?", (days, tenant_id))


async def expire_events(
    sql: Sql,
    tenant_id: str,
    cutoff_us: int,
    chunk: int,
    *,
    type_: str | None = None,
    except_types: tuple[str, ...] = (),
) -> int:
    """Delete up to `chunk` of the tenant's events that happened before `cutoff_us` (of one
    type, or of every type but `except_types`), oldest first, with their deliveries, attempts
    and inbox items; the number of events deleted."""
    protected = await sql.fetch(
        "SELECT DISTINCT trigger_seq FROM automation_runs WHERE tenant_id = ? "
        "AND ended_us IS NULL LIMIT ?",
        (tenant_id, _MOST_PROTECTED + 1),
    )
    if len(protected) > _MOST_PROTECTED:
        return 0  # too many runs in flight to list: try again at the next pass
    where = ["tenant_id = ?", "time_us < ?", _ACTIVE_DELIVERY]
    params: list[Any] = [tenant_id, cutoff_us]
    if type_ is not None:
        where.append("type = ?")
        params.append(type_)
    if except_types:
        where.append(f"type NOT IN ({', '.join('?' * len(except_types))})")
        params.extend(except_types)
    if protected:
        where.append(f"seq NOT IN ({', '.join('?' * len(protected))})")
        params.extend(int(r[0]) for r in protected)
    # PostgreSQL keeps the dedup keys apart from the partitioned events (migration 0013)
    columns = "seq, id, source" if sql.dialect == "postgres" else "seq"
    rows = await sql.fetch(
        f"SELECT {columns} FROM events WHERE {' AND '.join(where)} ORDER BY time_us, seq LIMIT ?",
        (*params, chunk),
    )
    seqs = [int(r[0]) for r in rows]
    if not seqs:
        return 0
    marks = ", ".join("?" * len(seqs))
    of_events = f"SELECT id FROM deliveries WHERE tenant_id = ? AND event_seq IN ({marks})"
    keys: list[tuple[str, tuple[Any, ...]]] = []
    if sql.dialect == "postgres":
        keys.append(
            (
                "DELETE FROM event_keys x USING unnest(?::text[], ?::text[], ?::bigint[]) "
                "AS k(id, source, seq) WHERE x.tenant_id = ? AND x.id = k.id "
                "AND x.source = k.source AND x.seq = k.seq",
                ([r[1] for r in rows], [r[2] for r in rows], seqs, tenant_id),
            )
        )
    counts = await sql.batch(
        [
            *keys,
            (f"DELETE FROM attempts WHERE delivery_id IN ({of_events})", (tenant_id, *seqs)),
            (f"DELETE FROM inbox_items WHERE delivery_id IN ({of_events})", (tenant_id, *seqs)),
            (
                f"DELETE FROM deliveries WHERE tenant_id = ? AND event_seq IN ({marks})",
                (tenant_id, *seqs),
            ),
            (f"DELETE FROM events WHERE tenant_id = ? AND seq IN ({marks})", (tenant_id, *seqs)),
        ]
    )
    return counts[-1]


async def expire_attempts(sql: Sql, cutoff_us: int, chunk: int) -> int:
    """Delete up to `chunk` delivery attempts started before `cutoff_us`, oldest first."""
    return await sql.execute(
        "DELETE FROM attempts WHERE (delivery_id, n) IN (SELECT delivery_id, n FROM attempts "
        "WHERE started_us < ? ORDER BY started_us LIMIT ?)",
        (cutoff_us, chunk),
    )


async def expire_inbound(sql: Sql, cutoff_us: int, chunk: int) -> int:
    """Delete up to `chunk` logged inbound requests received before `cutoff_us`."""
    return await sql.execute(
        "DELETE FROM inbound_requests WHERE id IN (SELECT id FROM inbound_requests "
        "WHERE received_us < ? ORDER BY received_us LIMIT ?)",
        (cutoff_us, chunk),
    )
