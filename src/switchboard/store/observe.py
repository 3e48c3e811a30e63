"""What the operator looks at: the store's figures for `/metrics` and `/status`, delivery
statistics over a window, one trace's timeline, worker heartbeats and alert episodes.

Written once for both backends on the stores' generic SQL, like `store/deliveries.py`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from switchboard.envelope import Event
from switchboard.metrics import Snapshot
from switchboard.store import Store
from switchboard.store.deliveries import DELIVERY_COLUMNS, Attempt, Delivery, delivery_from_row
from switchboard.store.queries import (
    EVENT_COLUMNS,
    bind,
    dumps,
    event_from_row,
    load_json,
    trace_condition,
)

# Delivery statistics read at most this many attempts of a window; past it the answer says
# `truncated` (percentiles are computed here, since SQLite has no percentile function).
STATS_MAX_ATTEMPTS = 200_000
# One trace's timeline shows at most this many events (a trace is one business flow).
TRACE_MAX_EVENTS = 1000


@dataclass(frozen=True)
class AttemptRow:
    destination_id: str
    type: str
    delivery_id: str
    n: int
    ok: bool
    latency_ms: float


@dataclass(frozen=True)
class Trace:
    events: list[Event]
    deliveries: list[Delivery]
    attempts: list[Attempt]
    runs: list[dict[str, Any]]
    truncated: bool


def _group(rows: list[Any]) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in rows}


class ObserveStore:
    def __init__(self, store: Store) -> None:
        self.sql = store

    # -- the figures of /metrics and /status -----------------------------------------------

    async def snapshot(self, now_us: int, window_us: int, alive_us: int) -> Snapshot:
        """Every store figure at `now_us`: `window_us` is the DLQ growth window, `alive_us` how
        recent a heartbeat must be for its worker to count as alive."""
        snap = Snapshot(now_us=now_us)
        # ix_deliveries_due (tenant_id, priority, next_attempt_us) WHERE pending or retrying
        for tenant, n, oldest in await self.sql.fetch(
            "SELECT tenant_id, count(*), min(next_attempt_us) FROM deliveries "
            "WHERE status IN ('pending', 'retrying') AND next_attempt_us <= ? GROUP BY tenant_id",
            (now_us,),
        ):
            snap.due[tenant] = int(n)
            snap.oldest_due_us[tenant] = int(oldest)
        # ix_deliveries_tenant_status (tenant_id, status, updated_us)
        snap.dead = _group(
            await self.sql.fetch(
                "SELECT tenant_id, count(*) FROM deliveries WHERE status = 'dead' "
                "GROUP BY tenant_id"
            )
        )
        snap.dead_recent = await self.dead_since(now_us - window_us)
        snap.disabled = _group(
            await self.sql.fetch(
                "SELECT tenant_id, count(*) FROM destinations WHERE enabled = ? GROUP BY tenant_id",
                (False,),
            )
        )
        snap.replays = [
            (r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]))
            for r in await self.sql.fetch(
                "SELECT id, tenant_id, status, scanned, matched, created FROM replays "
                "WHERE status = 'running' ORDER BY created_us"
            )
        ]
        # ix_automation_runs_status (tenant_id, status)
        snap.runs = {
            (r[0], r[1]): int(r[2])
            for r in await self.sql.fetch(
                "SELECT tenant_id, status, count(*) FROM automation_runs GROUP BY tenant_id, status"
            )
        }
        for tenant, n, oldest in await self.sql.fetch(
            "SELECT tenant_id, count(*), min(due_us) FROM automation_runs "
            "WHERE due_us IS NOT NULL GROUP BY tenant_id"
        ):
            snap.timers[tenant] = int(n)
            if oldest is not None and int(oldest) <= now_us:
                snap.oldest_timer_us[tenant] = int(oldest)
        for (stats,) in await self.sql.fetch(
            "SELECT stats FROM worker_heartbeats WHERE seen_us >= ?", (now_us - alive_us,)
        ):
            snap.workers_alive += 1
            snap.open_breakers += int((load_json(stats) or {}).get("open_breakers", 0))
        return snap

    async def backlog(self, now_us: int) -> tuple[int, int | None]:
        """(due deliveries, due time of the oldest) over every tenant (ix_deliveries_due)."""
        rows = await self.sql.fetch(
            "SELECT count(*), min(next_attempt_us) FROM deliveries "
            "WHERE status IN ('pending', 'retrying') AND next_attempt_us <= ?",
            (now_us,),
        )
        return int(rows[0][0]), None if rows[0][1] is None else int(rows[0][1])

    async def dead_since(self, since_us: int) -> dict[str, int]:
        """Deliveries gone dead since `since_us`, per tenant (a dead delivery is not touched
        again until it is retried or archived, so its `updated_us` is when it died)."""
        return _group(
            await self.sql.fetch(
                "SELECT tenant_id, count(*) FROM deliveries WHERE status = 'dead' "
                "AND updated_us >= ? GROUP BY tenant_id",
                (since_us,),
            )
        )

    async def attempt_outcomes(self, since_us: int) -> dict[str, tuple[int, int]]:
        """(attempts, failed attempts) per tenant since `since_us` (ix_attempts_tenant_started)."""
        rows = await self.sql.fetch(
            "SELECT tenant_id, count(*), sum(CASE WHEN ok THEN 0 ELSE 1 END) FROM attempts "
            "WHERE started_us >= ? GROUP BY tenant_id",
            (since_us,),
        )
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    # -- delivery statistics ---------------------------------------------------------------

    async def attempt_rows(
        self, tenant_id: str, from_us: int, to_us: int, destination_id: str | None
    ) -> tuple[list[AttemptRow], bool]:
        """The window's attempts with their destination and event type; True if cut short."""
        where = "a.tenant_id = ? AND a.started_us >= ? AND a.started_us < ?"
        params: list[Any] = [tenant_id, from_us, to_us]
        if destination_id is not None:
            where += " AND d.destination_id = ?"
            params.append(destination_id)
        rows = await self.sql.fetch(
            "SELECT d.destination_id, e.type, a.delivery_id, a.n, a.ok, a.latency_ms "
            "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
            "JOIN events e ON e.tenant_id = d.tenant_id AND e.seq = d.event_seq "
            f"WHERE {where} ORDER BY a.started_us LIMIT ?",
            (*params, STATS_MAX_ATTEMPTS + 1),
        )
        out = [AttemptRow(r[0], r[1], r[2], int(r[3]), bool(r[4]), float(r[5])) for r in rows]
        return out[:STATS_MAX_ATTEMPTS], len(out) > STATS_MAX_ATTEMPTS

    # -- one trace -------------------------------------------------------------------------

    async def trace(self, tenant_id: str, trace_id: str) -> Trace:
        """Everything of one trace in the tenant: its events (ix_events_tenant_trace), their
        deliveries (ix_deliveries_event), attempts and the automation runs they started."""
        params: list[Any] = [tenant_id]
        where = trace_condition(self.sql.dialect, bind(params), trace_id)
        rows = await self.sql.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND {where} "
            "ORDER BY received_us, seq LIMIT ?",
            (*params, TRACE_MAX_EVENTS + 1),
        )
        events = await self.sql.subject_keys.open(
            [event_from_row(r) for r in rows[:TRACE_MAX_EVENTS]]
        )
        seqs = [e.seq for e in events]
        if not seqs:
            return Trace([], [], [], [], False)
        marks = ", ".join("?" for _ in seqs)
        deliveries = [
            delivery_from_row(r)
            for r in await self.sql.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
                f"WHERE tenant_id = ? AND event_seq IN ({marks}) ORDER BY created_us, id",
                (tenant_id, *seqs),
            )
        ]
        attempts: list[Attempt] = []
        ids = [d.id for d in deliveries]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            attempts += [
                Attempt(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    bool(r[5]),
                    r[6],
                    r[7],
                    r[8],
                    None,
                    load_json(r[9]),
                )
                for r in await self.sql.fetch(
                    "SELECT delivery_id, n, tenant_id, started_us, latency_ms, ok, status_code, "
                    "error, message, request_headers FROM attempts WHERE tenant_id = ? AND "
                    f"delivery_id IN ({', '.join('?' for _ in chunk)})",
                    (tenant_id, *chunk),
                )
            ]
        runs = [
            {
                "id": r[0],
                "automation": r[1],
                "version": int(r[2]),
                "trigger_seq": int(r[3]),
                "status": r[4],
                "reason": r[5],
                "created_us": int(r[6]),
                "ended_us": None if r[7] is None else int(r[7]),
            }
            for r in await self.sql.fetch(
                "SELECT id, automation, version, trigger_seq, status, reason, created_us, "
                f"ended_us FROM automation_runs WHERE tenant_id = ? AND trigger_seq IN ({marks}) "
                "ORDER BY created_us",
                (tenant_id, *seqs),
            )
        ]
        return Trace(events, deliveries, attempts, runs, len(rows) > TRACE_MAX_EVENTS)

    # -- worker heartbeats -----------------------------------------------------------------

    async def beat(
        self, worker_id: str, started_us: int, now_us: int, stats: dict[str, Any]
    ) -> None:
        await self.sql.execute(
            "INSERT INTO worker_heartbeats (id, host, pid, started_us, seen_us, stats) "
            "VALUES (?, ?, ?, ?, ?, ?j) ON CONFLICT (id) DO UPDATE SET "
            "seen_us = excluded.seen_us, stats = excluded.stats",
            (worker_id, socket.gethostname(), os.getpid(), started_us, now_us, dumps(stats)),
        )

    async def forget(self, worker_id: str, before_us: int) -> None:
        """Remove a stopping worker's row, and rows of workers silent since `before_us`."""
        await self.sql.execute(
            "DELETE FROM worker_heartbeats WHERE id = ? OR seen_us < ?", (worker_id, before_us)
        )

    async def workers(self) -> list[dict[str, Any]]:
        rows = await self.sql.fetch(
            "SELECT id, host, pid, started_us, seen_us, stats FROM worker_heartbeats "
            "ORDER BY started_us"
        )
        return [
            {
                "id": r[0],
                "host": r[1],
                "pid": int(r[2]),
                "started_us": int(r[3]),
                "seen_us": int(r[4]),
                "stats": load_json(r[5]) or {},
            }
            for r in rows
        ]

    # -- alert episodes --------------------------------------------------------------------

    async def open_episode(
        self, tenant_id: str, alert: str, now_us: int, value: float, event_id: str
    ) -> bool:
        """Open an episode unless one is open: True when this call opened it (several
        processes may check at once; exactly one wins)."""
        opened = await self.sql.execute(
            "INSERT INTO alert_episodes (tenant_id, alert, opened_us, value, event_id) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, alert) DO NOTHING",
            (tenant_id, alert, now_us, value, event_id),
        )
        return opened == 1

    async def close_episode(self, tenant_id: str, alert: str) -> tuple[int, str] | None:
        """Close an open episode: (when it opened, its alert event's id) if this call closed it."""
        rows = await self.sql.fetch_write(
            "DELETE FROM alert_episodes WHERE tenant_id = ? AND alert = ? "
            "RETURNING opened_us, event_id",
            (tenant_id, alert),
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    async def open_episodes(self) -> dict[tuple[str, str], float]:
        rows = await self.sql.fetch("SELECT tenant_id, alert, value FROM alert_episodes")
        return {(r[0], r[1]): float(r[2]) for r in rows}
