"""Routing and delivery state: destinations, routes, deliveries, attempts, inbox, replays.

Written once for both backends on the stores' generic SQL (`fetch`, `fetch_write`, `execute`,
`batch`, with `?` and `?j` placeholders). Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL; on
SQLite the single writer connection already serialises them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from switchboard.crypto import Vault
from switchboard.envelope import Event, new_id
from switchboard.errors import StoreError
from switchboard.records import Destination, NewDelivery
from switchboard.store.queries import (
    EVENT_COLUMNS,
    GroupWriter,
    Sql,
    bind,
    dumps,
    event_from_row,
    load_json,
    type_condition,
)

OPEN = ("pending", "retrying", "sending")
TERMINAL = (
    "succeeded",
    "delivered",
    "read",
    "dead",
    "cancelled",
    "archived",
    "suppressed",
    "failed",
)
# provider statuses only move forward: a late "delivered" never overwrites "read"
PROVIDER_RANK = {"succeeded": 0, "delivered": 1, "read": 2}
PROVIDER_RANK["failed"] = 1  # the provider gave up (SMS undelivered): only after "succeeded"

# A delivery holds a lease exactly while it is 'sending'. The index of leases is partial on
# `lease_until_us IS NOT NULL`, not on the status (migration 0004): a finish by id must not match
# its predicate, or PostgreSQL's planner may walk every delivery in flight instead of the key.
FINISH_DELIVERY = (
    "UPDATE deliveries SET status = ?, attempts = attempts + ?, next_attempt_us = ?, "
    "lease_until_us = NULL, last_error = ?, "
    "provider_id = COALESCE(?, provider_id), updated_us = ? "
    "WHERE id = ? AND status = 'sending'"
)
RECOVER_EXPIRED = (
    "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' "
    "ELSE 'retrying' END, lease_until_us = NULL, next_attempt_us = ?, updated_us = ? "
    "WHERE status = 'sending' AND lease_until_us < ?"
)


class Delivery(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    event_seq: int
    destination_id: str
    route_id: str | None
    status: str
    priority: int
    attempts: int
    next_attempt_us: int
    ordering_key: str | None
    replay_id: str | None
    provider_id: str | None
    last_error: str | None
    created_us: int
    updated_us: int
    # `attempts` counts every attempt ever made (numbering continues across manual and DLQ
    # retries); the retry schedule counts from `retry_base`, the count at the last such retry
    retry_base: int = 0

    def to_json(self) -> dict[str, Any]:
        from switchboard.envelope import format_us

        return {
            "id": self.id,
            "event_seq": self.event_seq,
            "destination_id": self.destination_id,
            "route_id": self.route_id,
            "status": self.status,
            "priority": ["high", "normal", "low"][self.priority],
            "attempts": self.attempts,
            "next_attempt_at": format_us(self.next_attempt_us)
            if self.status in ("pending", "retrying")
            else None,
            "ordering_key": self.ordering_key,
            "replay_id": self.replay_id,
            "provider_id": self.provider_id,
            "last_error": self.last_error,
            "created_at": format_us(self.created_us),
            "updated_at": format_us(self.updated_us),
        }


DELIVERY_COLUMNS = (
    "id, tenant_id, event_seq, destination_id, route_id, status, priority, attempts, "
    "next_attempt_us, ordering_key, replay_id, provider_id, last_error, created_us, updated_us, "
    "retry_base"
)
_D = ", ".join("d." + c.strip() for c in DELIVERY_COLUMNS.split(","))
_D_WIDTH = len(DELIVERY_COLUMNS.split(","))  # a claim row: the delivery's columns, then the event's
_E = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))


def pattern_fragment(pattern: Any, dialect: str, params: list[Any]) -> str:
    """A filter pattern as SQL over the events table aliased `e`, in `?` placeholders (the
    store numbers them); its parameters are appended to `params`."""
    from switchboard.patterns import to_sql

    frag = to_sql(pattern, "postgres" if dialect == "postgres" else "sqlite", table="e")
    sql = frag.sql
    if dialect == "postgres":
        numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
        if numbers != list(range(1, len(numbers) + 1)):
            # placeholders are reused or out of order: bind by position instead
            values = [frag.params[n - 1] for n in numbers]
            sql = re.sub(r"\$\d+", "?", sql)
            params.extend(values)
            return sql
        sql = re.sub(r"\$\d+", "?", sql)
    params.extend(frag.params)
    return sql


def delivery_from_row(r: Sequence[Any]) -> Delivery:
    return Delivery(*r[:_D_WIDTH])


def _read_event(r: Sequence[Any]) -> Event | str:
    """A claimed delivery's event, or why its stored row cannot be read."""
    try:
        return event_from_row(r)
    except Exception as exc:  # any bad stored value: the delivery is finished with the reason
        return f"the stored event cannot be read: {type(exc).__name__}: {exc}"


INSERT_DELIVERY = (
    f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, 'pending', ?, 0, ?, ?, ?, NULL, NULL, ?, ?, 0)"
)


def delivery_params(d: NewDelivery, now_us: int) -> tuple[Any, ...]:
    return (
        new_id(),
        d.tenant_id,
        d.event_seq,
        d.destination_id,
        d.route_id,
        d.priority,
        d.due_us,
        d.ordering_key,
        d.replay_id,
        now_us,
        now_us,
    )


class Attempt(msgspec.Struct, frozen=True):
    delivery_id: str
    n: int
    tenant_id: str
    started_us: int
    latency_ms: float
    ok: bool
    status_code: int | None
    error: str | None
    message: str | None
    response: str | None
    request_headers: dict[str, str] | None

    def to_json(self) -> dict[str, Any]:
        from switchboard.envelope import format_us

        return {
            "n": self.n,
            "started_at": format_us(self.started_us),
            "latency_ms": round(self.latency_ms, 2),
            "ok": bool(self.ok),
            "status_code": self.status_code,
            "error": self.error,
            "message": self.message,
            "response": self.response,
            "request_headers": self.request_headers,
        }


_DEST_COLUMNS = (
    "id, tenant_id, name, kind, config, secrets, settings, enabled, disabled_reason, "
    "failing_since_us, created_us, updated_us"
)


def destination_from_row(r: Sequence[Any], vault: Vault) -> tuple[Destination, int | None]:
    settings = load_json(r[6])
    schedule = settings.get("retry_schedule")
    return (
        Destination(
            id=r[0],
            tenant_id=r[1],
            name=r[2],
            kind=r[3],
            config=vault.open_json(load_json(r[4]), f"destinations.config:{r[0]}"),
            secrets=tuple(vault.open_json(load_json(r[5]), f"destinations.secrets:{r[0]}")),
            timeout=settings.get("timeout", 10.0),
            concurrency=settings.get("concurrency", 10),
            rate_per_second=settings.get("rate_per_second"),
            rate_per_minute=settings.get("rate_per_minute"),
            retry_schedule=tuple(schedule) if schedule else None,
            enabled=bool(r[7]),
            disabled_reason=r[8],
            created_us=r[10],
        ),
        r[9],
    )


def destination_settings(d: Destination) -> dict[str, Any]:
    return {
        "timeout": d.timeout,
        "concurrency": d.concurrency,
        "rate_per_second": d.rate_per_second,
        "rate_per_minute": d.rate_per_minute,
        "retry_schedule": list(d.retry_schedule) if d.retry_schedule else None,
    }


@functools.lru_cache(maxsize=64)
def claim_sql(pg: bool, skipped: int) -> str:
    """The claim: mark up to `?` due deliveries of one tenant `sending` under a lease, high
    priority first, oldest first, skipping any whose ordering key has an earlier open delivery to
    the same destination and any to the `skipped` destinations listed. On PostgreSQL the claimed
    rows come back joined with their events (one round trip); SQLite has no UPDATE in a WITH.

    On PostgreSQL the ids are picked into an array (``id = ANY(ARRAY(...))``), not ``id IN
    (...)``: as a prepared statement's generic plan, the IN form hash-joined the picked ids with a
    scan of the whole table, and the claimed rows with a scan of every event."""
    skip = f" AND d.destination_id NOT IN ({', '.join('?' * skipped)})" if skipped else ""
    pick = (
        "SELECT d.id FROM deliveries d "
        " WHERE d.tenant_id = ? AND d.status IN ('pending', 'retrying') "
        f" AND d.next_attempt_us <= ?{skip} AND (d.ordering_key IS NULL OR NOT EXISTS ("
        "  SELECT 1 FROM deliveries o WHERE o.destination_id = d.destination_id"
        "  AND o.ordering_key = d.ordering_key AND o.event_seq < d.event_seq"
        "  AND o.status IN ('pending', 'retrying', 'sending')))"
        " ORDER BY d.priority, d.next_attempt_us LIMIT ?"
    )
    update = "UPDATE deliveries SET status = 'sending', lease_until_us = ?, updated_us = ? "
    if not pg:
        return f"{update}WHERE id IN ({pick}) RETURNING {DELIVERY_COLUMNS}"
    return (
        f"WITH c AS ({update}WHERE id = ANY(ARRAY({pick} FOR UPDATE SKIP LOCKED)) "
        f"RETURNING {DELIVERY_COLUMNS}) "
        # LEFT: a delivery whose event is gone is claimed all the same, and must come back
        f"SELECT c.*, {_E} FROM c LEFT JOIN events e ON e.seq = c.event_seq"
    )


class DeliveryStore:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self.pg = sql.dialect == "postgres"
        self.writer = GroupWriter(sql)

    async def close(self) -> None:
        await self.writer.close()

    # -- destinations --------------------------------------------------------------------------

    async def put_destination(self, d: Destination, now_us: int) -> None:
        await self.sql.execute(
            f"INSERT INTO destinations ({_DEST_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?j, ?j, ?j, ?, ?, NULL, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, "
            "config = excluded.config, secrets = excluded.secrets, settings = excluded.settings, "
            "enabled = excluded.enabled, disabled_reason = excluded.disabled_reason, "
            "failing_since_us = NULL, updated_us = excluded.updated_us",
            (
                d.id,
                d.tenant_id,
                d.name,
                d.kind,
                # the config holds credentials too (auth headers, tokens in URLs)
                dumps(self.sql.vault.seal_json(d.config, f"destinations.config:{d.id}")),
                dumps(self.sql.vault.seal_json(list(d.secrets), f"destinations.secrets:{d.id}")),
                dumps(destination_settings(d)),
                d.enabled,
                d.disabled_reason,
                d.created_us or now_us,
                now_us,
            ),
        )

    async def get_destination(self, tenant_id: str | None, ref: str) -> Destination | None:
        """By id, or by name within a tenant."""
        if tenant_id is None:
            rows = await self.sql.fetch(
                f"SELECT {_DEST_COLUMNS} FROM destinations WHERE id = ?", (ref,)
            )
        else:
            rows = await self.sql.fetch(
                f"SELECT {_DEST_COLUMNS} FROM destinations "
                "WHERE tenant_id = ? AND (id = ? OR name = ?)",
                (tenant_id, ref, ref),
            )
        return destination_from_row(rows[0], self.sql.vault)[0] if rows else None

    async def destination_state(self, dest_id: str) -> tuple[Destination, int | None] | None:
        """A destination by id with the start of its failing streak (the worker's view)."""
        rows = await self.sql.fetch(
            f"SELECT {_DEST_COLUMNS} FROM destinations WHERE id = ?", (dest_id,)
        )
        return destination_from_row(rows[0], self.sql.vault) if rows else None

    async def list_destinations(self, tenant_id: str) -> list[Destination]:
        rows = await self.sql.fetch(
            f"SELECT {_DEST_COLUMNS} FROM destinations WHERE tenant_id = ? ORDER BY name",
            (tenant_id,),
        )
        return [destination_from_row(r, self.sql.vault)[0] for r in rows]

    async def delete_destination(self, tenant_id: str, dest_id: str) -> bool:
        return (
            await self.sql.execute(
                "DELETE FROM destinations WHERE tenant_id = ? AND id = ?", (tenant_id, dest_id)
            )
            > 0
        )

    async def disable_destination(self, dest_id: str, reason: str, now_us: int) -> bool:
        return (
            await self.sql.execute(
                "UPDATE destinations SET enabled = ?, disabled_reason = ?, updated_us = ? "
                "WHERE id = ? AND enabled = ?",
                (False, reason, now_us, dest_id, True),
            )
            > 0
        )

    # -- routes --------------------------------------------------------------------------------

    async def put_route(
        self, tenant_id: str, route_id: str, name: str, spec: dict[str, Any], now_us: int
    ) -> None:
        await self.sql.execute(
            "INSERT INTO routes (id, tenant_id, name, spec, enabled, created_us, updated_us) "
            "VALUES (?, ?, ?, ?j, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "spec = excluded.spec, enabled = excluded.enabled, updated_us = excluded.updated_us",
            (
                route_id,
                tenant_id,
                name,
                dumps(spec),
                bool(spec.get("enabled", True)),
                now_us,
                now_us,
            ),
        )

    async def list_routes(self, tenant_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.sql.fetch(
            "SELECT id, name, spec FROM routes WHERE tenant_id = ? ORDER BY created_us, name",
            (tenant_id,),
        )
        return [(r[0], r[1], load_json(r[2])) for r in rows]

    async def route_id_by_name(self, tenant_id: str, name: str) -> str | None:
        rows = await self.sql.fetch(
            "SELECT id FROM routes WHERE tenant_id = ? AND (name = ? OR id = ?)",
            (tenant_id, name, name),
        )
        return rows[0][0] if rows else None

    async def delete_route(self, tenant_id: str, route_id: str) -> bool:
        return (
            await self.sql.execute(
                "DELETE FROM routes WHERE tenant_id = ? AND id = ?", (tenant_id, route_id)
            )
            > 0
        )

    # -- the worker's side ---------------------------------------------------------------------

    async def tenants_with_due(self, now_us: int) -> list[str]:
        """Tenants that have due deliveries, by an index skip-scan (cheap with big backlogs)."""
        rows = await self.sql.fetch(
            "WITH RECURSIVE t(tenant_id) AS ("
            " SELECT min(tenant_id) FROM deliveries WHERE status IN ('pending', 'retrying')"
            " UNION ALL"
            " SELECT (SELECT min(d.tenant_id) FROM deliveries d"
            "  WHERE d.status IN ('pending', 'retrying') AND d.tenant_id > t.tenant_id)"
            " FROM t WHERE t.tenant_id IS NOT NULL"
            ") SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL",
            (),
        )
        return [r[0] for r in rows]

    async def claim(
        self,
        tenant_id: str,
        now_us: int,
        lease_until_us: int,
        limit: int,
        skip_destinations: Sequence[str] = (),
        unreadable: list[tuple[Delivery, str]] | None = None,
    ) -> list[tuple[Delivery, Event]]:
        """Take up to `limit` due deliveries of one tenant, high priority first, oldest first,
        skipping any whose ordering key has an earlier open delivery to the same destination,
        and any to `skip_destinations` (the worker already holds enough of theirs).

        A claimed delivery whose event cannot be read (a row this version cannot decode, or
        gone) is put in `unreadable` with the reason, for the caller to finish: it is claimed
        all the same, so it must not be left 'sending'. Without the list, such a row raises."""
        params = (lease_until_us, now_us, tenant_id, now_us, *skip_destinations, limit)
        # the claim need not reach the disk before the sends start: lost in a power cut, the
        # deliveries are due again when the store comes back (at-least-once, as a lease lost
        # with its worker); the next durable commit flushes it. One fsync less between a
        # trigger's commit and its send (4-15 ms on the shared disk measured), and the SQLite
        # writer, which the ingest commits wait for, spends none on claims.
        rows = await self.sql.fetch_write(
            claim_sql(self.pg, len(skip_destinations)), params, durable=False
        )
        events: dict[int, Event | str] = {}
        if self.pg:  # each row: the delivery's columns, then its event's
            deliveries = []
            for r in rows:
                d = delivery_from_row(r[:_D_WIDTH])
                deliveries.append(d)
                if d.event_seq not in events and r[_D_WIDTH] is not None:
                    events[d.event_seq] = _read_event(r[_D_WIDTH:])
        else:  # the events are read apart: SQLite's reads are local and cheap
            if not rows:
                return []
            deliveries = [delivery_from_row(r) for r in rows]
            seqs = sorted({d.event_seq for d in deliveries})
            marks = ", ".join("?" * len(seqs))
            for r in await self.sql.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({marks})", seqs
            ):
                events[r[0]] = _read_event(r)
        claimed: list[tuple[Delivery, Event]] = []
        for d in deliveries:
            e = events.get(d.event_seq, "the delivery's event is gone")
            if isinstance(e, Event):
                claimed.append((d, e))
            elif unreadable is None:
                raise StoreError(f"delivery {d.id}: {e}")
            else:
                unreadable.append((d, e))
        opened = await self.sql.subject_keys.open([e for _, e in claimed])
        return [(d, e) for (d, _), e in zip(claimed, opened, strict=True)]

    def finish_statements(
        self,
        delivery: Delivery,
        attempt: Attempt | None,
        status: str,
        next_attempt_us: int,
        error: str | None,
        provider_id: str | None,
        now_us: int,
        health: str | None = None,
    ) -> list[tuple[str, Sequence[Any]]]:
        """The statements that record an attempt and the delivery's new state, for the group
        writer (`self.writer.submit`), which commits them in one transaction with those of other
        deliveries finishing at the same moment. `health` "failing" or "ok" also records the
        destination starting or ending a failing streak."""
        if error and "\x00" in error:  # see the attempt's reply below
            error = error.replace("\x00", "\ufffd")
        statements: list[tuple[str, Sequence[Any]]] = [
            (
                FINISH_DELIVERY,
                (
                    status,
                    1 if attempt else 0,
                    next_attempt_us,
                    error,
                    provider_id,
                    now_us,
                    delivery.id,
                ),
            )
        ]
        if attempt is not None:
            response, message = attempt.response, attempt.message
            # PostgreSQL's text cannot hold NUL: a reply with one would fail the write every
            # time, and the delivery would be sent again at each lease's end
            if response and "\x00" in response:
                response = response.replace("\x00", "\ufffd")
            if message and "\x00" in message:
                message = message.replace("\x00", "\ufffd")
            statements.append(
                (
                    "INSERT INTO attempts (delivery_id, n, tenant_id, started_us, latency_ms, ok, "
                    "status_code, error, message, response, request_headers) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?j) "
                    "ON CONFLICT (delivery_id, n) DO NOTHING",
                    (
                        attempt.delivery_id,
                        attempt.n,
                        attempt.tenant_id,
                        attempt.started_us,
                        attempt.latency_ms,
                        attempt.ok,
                        attempt.status_code,
                        attempt.error,
                        message,
                        response,
                        dumps(attempt.request_headers or {}),
                    ),
                )
            )
        if health == "failing":
            statements.append(
                (
                    "UPDATE destinations SET failing_since_us = ? "
                    "WHERE id = ? AND failing_since_us IS NULL",
                    (now_us, delivery.destination_id),
                )
            )
        elif health == "ok":
            statements.append(
                (
                    "UPDATE destinations SET failing_since_us = NULL WHERE id = ?",
                    (delivery.destination_id,),
                )
            )
        return statements

    async def release(self, ids: list[str], now_us: int) -> None:
        """Give claimed deliveries back (graceful shutdown): due again at once."""
        if ids:
            marks = ", ".join("?" * len(ids))
            await self.sql.execute(
                "UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' "
                "ELSE 'retrying' END, lease_until_us = NULL, next_attempt_us = ?, updated_us = ? "
                f"WHERE status = 'sending' AND id IN ({marks})",
                (now_us, now_us, *ids),
            )

    async def recover_expired(self, now_us: int) -> int:
        """Leases of killed workers expire: those deliveries become due again."""
        return await self.sql.execute(RECOVER_EXPIRED, (now_us, now_us, now_us))

    async def next_due_us(self) -> int | None:
        rows = await self.sql.fetch(
            "SELECT min(next_attempt_us) FROM deliveries WHERE status IN ('pending', 'retrying')"
        )
        return rows[0][0] if rows else None

    async def insert(self, deliveries: list[NewDelivery], now_us: int) -> None:
        if deliveries:
            await self.sql.batch(
                [(INSERT_DELIVERY, delivery_params(d, now_us)) for d in deliveries]
            )

    # -- reading -------------------------------------------------------------------------------

    async def for_event(self, tenant_id: str, event_seq: int) -> list[Delivery]:
        rows = await self.sql.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = ? AND event_seq = ? "
            "ORDER BY created_us",
            (tenant_id, event_seq),
        )
        return [delivery_from_row(r) for r in rows]

    async def get(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        rows = await self.sql.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = ? AND id = ?",
            (tenant_id, delivery_id),
        )
        return delivery_from_row(rows[0]) if rows else None

    async def event_of(self, tenant_id: str, event_seq: int) -> Event | None:
        """The event a delivery carries (its `event_seq`), of this tenant only."""
        rows = await self.sql.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND seq = ?",
            (tenant_id, event_seq),
        )
        return (await self.sql.subject_keys.open([event_from_row(rows[0])]))[0] if rows else None

    async def attempts(self, tenant_id: str, delivery_id: str) -> list[Attempt]:
        rows = await self.sql.fetch(
            "SELECT delivery_id, n, tenant_id, started_us, latency_ms, ok, status_code, error, "
            "message, response, request_headers FROM attempts "
            "WHERE tenant_id = ? AND delivery_id = ? ORDER BY n",
            (tenant_id, delivery_id),
        )
        return [
            Attempt(
                r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8], r[9], load_json(r[10])
            )
            for r in rows
        ]

    async def listing(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        destination_id: str | None = None,
        types: tuple[str, ...] = (),
        from_us: int | None = None,
        to_us: int | None = None,
        pattern: Any = None,
        replay_id: str | None = None,
        before: tuple[int, str] | None = None,
        limit: int = 100,
    ) -> list[tuple[Delivery, Event]]:
        """Deliveries joined with their events, newest update first (the DLQ listing)."""
        where = ["d.tenant_id = ?", "e.seq = d.event_seq"]
        params: list[Any] = [tenant_id]
        if status is not None:
            where.append("d.status = ?")
            params.append(status)
        if destination_id is not None:
            where.append("d.destination_id = ?")
            params.append(destination_id)
        if replay_id is not None:
            where.append("d.replay_id = ?")
            params.append(replay_id)
        if types:
            where.append(type_condition(types, "e.type", bind(params)))
        if from_us is not None:
            where.append("d.updated_us >= ?")
            params.append(from_us)
        if to_us is not None:
            where.append("d.updated_us < ?")
            params.append(to_us)
        if before is not None:
            where.append("(d.updated_us, d.id) < (?, ?)")
            params.extend(before)
        sql = f"SELECT {_D}, {_E} FROM deliveries d, events e WHERE {' AND '.join(where)}"
        if pattern is not None:
            sql += f" AND ({pattern_fragment(pattern, self.sql.dialect, params)})"
        sql += " ORDER BY d.updated_us DESC, d.id DESC LIMIT ?"
        params.append(limit)
        rows = await self.sql.fetch(sql, params)
        events = await self.sql.subject_keys.open([event_from_row(r[_D_WIDTH:]) for r in rows])
        return [(delivery_from_row(r[:_D_WIDTH]), e) for r, e in zip(rows, events, strict=True)]

    async def dlq_stats(self, tenant_id: str, pattern: Any = None) -> list[tuple[str, str, int]]:
        params: list[Any] = [tenant_id]
        narrowed = ""
        if pattern is not None:
            narrowed = f"AND ({pattern_fragment(pattern, self.sql.dialect, params)}) "
        rows = await self.sql.fetch(
            "SELECT e.type, d.destination_id, count(*) FROM deliveries d, events e "
            f"WHERE d.tenant_id = ? AND d.status = 'dead' AND e.seq = d.event_seq {narrowed}"
            "GROUP BY e.type, d.destination_id ORDER BY 3 DESC",
            params,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def visible(self, tenant_id: str, ids: list[str], pattern: Any) -> list[str]:
        """Those of `ids` (deliveries of the tenant) whose events match `pattern`: what a key
        limited by constraints may see and act on."""
        if not ids:
            return []
        params: list[Any] = [tenant_id, *ids]
        marks = ", ".join("?" * len(ids))
        narrowed = pattern_fragment(pattern, self.sql.dialect, params)
        rows = await self.sql.fetch(
            "SELECT d.id FROM deliveries d, events e WHERE d.tenant_id = ? "
            f"AND d.id IN ({marks}) AND e.seq = d.event_seq AND ({narrowed})",
            params,
        )
        return [str(r[0]) for r in rows]

    async def requeue(self, tenant_id: str, ids: list[str], now_us: int) -> int:
        """Retry dead/cancelled deliveries: the retry schedule starts over, while the attempts
        already made are kept and the next one is numbered after them."""
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        return await self.sql.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_us = ?, updated_us = ?, "
            "retry_base = attempts, last_error = NULL "
            f"WHERE tenant_id = ? AND status IN ('dead', 'cancelled') AND id IN ({marks})",
            (now_us, now_us, tenant_id, *ids),
        )

    async def archive(self, tenant_id: str, ids: list[str], now_us: int) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        return await self.sql.execute(
            "UPDATE deliveries SET status = 'archived', updated_us = ? "
            f"WHERE tenant_id = ? AND status = 'dead' AND id IN ({marks})",
            (now_us, tenant_id, *ids),
        )

    async def provider_status(
        self, tenant_id: str, provider_id: str, status: str, now_us: int, error: str | None = None
    ) -> int:
        """A provider callback (e.g. a WhatsApp ack) moves a delivery forward, never back; a
        failure keeps the provider's `error` as the delivery's last error."""
        lower = [s for s, rank in PROVIDER_RANK.items() if rank < PROVIDER_RANK[status]]
        marks = ", ".join("?" * len(lower))
        return await self.sql.execute(
            "UPDATE deliveries SET status = ?, updated_us = ?, "
            "last_error = COALESCE(?, last_error) "
            f"WHERE tenant_id = ? AND provider_id = ? AND status IN ({marks})",
            (status, now_us, error, tenant_id, provider_id, *lower),
        )

    async def provider_failed(
        self, tenant_id: str, provider_id: str, error: str, now_us: int
    ) -> int:
        """The provider reports that a message it accepted never arrived (WhatsApp Cloud's
        ``failed``): a delivery still only `succeeded` becomes `dead` with the provider's error.
        One already delivered or read stays as it is (a late or forged failure moves nothing)."""
        return await self.sql.execute(
            "UPDATE deliveries SET status = 'dead', last_error = ?, updated_us = ? "
            "WHERE tenant_id = ? AND provider_id = ? AND status = 'succeeded'",
            (error[:500], now_us, tenant_id, provider_id),
        )

    async def by_provider_id(self, tenant_id: str, provider_id: str) -> Delivery | None:
        """The delivery that sent the provider's message `provider_id` (the newest, if several)."""
        rows = await self.sql.fetch(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = ? AND provider_id = ? "
            "ORDER BY created_us DESC LIMIT 1",
            (tenant_id, provider_id),
        )
        return delivery_from_row(rows[0]) if rows else None

    async def cancel(self, delivery: Delivery, reason: str, now_us: int) -> None:
        await self.sql.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = ?, lease_until_us = NULL, "
            "updated_us = ? WHERE id = ?",
            (reason, now_us, delivery.id),
        )

    # -- inbox ---------------------------------------------------------------------------------

    async def add_inbox_item(self, tenant_id: str, recipient: str, item: dict[str, Any]) -> str:
        from switchboard.envelope import now_us

        item_id = new_id()
        rows = await self.sql.fetch_write(
            "INSERT INTO inbox_items (id, tenant_id, recipient, delivery_id, item, created_us) "
            "VALUES (?, ?, ?, ?, ?j, ?) ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
            (item_id, tenant_id, recipient, item["delivery_id"], dumps(item), now_us()),
        )
        if rows:
            return str(rows[0][0])
        existing = await self.sql.fetch(
            "SELECT id FROM inbox_items WHERE delivery_id = ?", (item["delivery_id"],)
        )
        return str(existing[0][0])

    async def inbox(
        self,
        tenant_id: str,
        recipient: str,
        unread_only: bool,
        limit: int,
        pattern: Any = None,
    ) -> list[dict[str, Any]]:
        """A recipient's items, newest first; `pattern` keeps those whose events match it."""
        from switchboard.envelope import format_us

        params: list[Any] = [tenant_id, recipient]
        sql = (
            "SELECT i.id, i.item, i.created_us, i.read_us FROM inbox_items i "
            "WHERE i.tenant_id = ? AND i.recipient = ?"
        )
        if unread_only:
            sql += " AND i.read_us IS NULL"
        if pattern is not None:
            narrowed = pattern_fragment(pattern, self.sql.dialect, params)
            sql += (
                " AND EXISTS (SELECT 1 FROM deliveries d, events e WHERE d.id = i.delivery_id "
                f"AND e.seq = d.event_seq AND ({narrowed}))"
            )
        rows = await self.sql.fetch(sql + " ORDER BY i.created_us DESC LIMIT ?", (*params, limit))
        return [
            {
                "id": r[0],
                **load_json(r[1]),
                "created_at": format_us(r[2]),
                "read_at": format_us(r[3]) if r[3] else None,
            }
            for r in rows
        ]

    async def mark_read(self, tenant_id: str, recipient: str, ids: list[str], now_us: int) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        return await self.sql.execute(
            "UPDATE inbox_items SET read_us = ? WHERE tenant_id = ? AND recipient = ? "
            f"AND read_us IS NULL AND id IN ({marks})",
            (now_us, tenant_id, recipient, *ids),
        )
