"""Replays: re-route stored events (by filter, type and time) through routes or straight to
destinations — including destinations created after the events arrived.

A dry run scans and answers with the exact count and a sample. A real replay is a job: it scans
in `seq` order, creates low-priority deliveries marked with the replay id, and saves its cursor in
the same transaction as the deliveries it created, so a restarted process resumes exactly where
the last one stopped. Its pace is limited by SWITCHBOARD_REPLAY_RATE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from switchboard import patterns
from switchboard.envelope import Event, new_id, now_us
from switchboard.router import Route, plan
from switchboard.store.deliveries import (
    INSERT_DELIVERY,
    NewDelivery,
    delivery_params,
    pattern_fragment,
)
from switchboard.store.queries import EVENT_COLUMNS, bind, event_from_row, type_condition

if TYPE_CHECKING:
    from switchboard.hub import Hub

log = logging.getLogger("switchboard.replay")
LOW = 2  # replays run on the low-priority lane
_BATCH = 1000
_E = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))


class ReplayError(ValueError):
    """A replay request is invalid; `problems` name the fields."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ReplaySpec:
    tenant_id: str
    from_us: int | None
    to_us: int | None
    types: tuple[str, ...]
    pattern: dict[str, Any] | None
    route_ids: tuple[str, ...]  # empty: every enabled route (unless destinations are direct)
    destination_ids: tuple[str, ...]  # restrict to these; with no routes: send directly

    def to_json(self) -> dict[str, Any]:
        return {
            "from_us": self.from_us,
            "to_us": self.to_us,
            "types": list(self.types),
            "filter": self.pattern,
            "route_ids": list(self.route_ids),
            "destination_ids": list(self.destination_ids),
        }

    @classmethod
    def from_json(cls, tenant_id: str, d: dict[str, Any]) -> ReplaySpec:
        return cls(
            tenant_id,
            d.get("from_us"),
            d.get("to_us"),
            tuple(d.get("types", ())),
            d.get("filter"),
            tuple(d.get("route_ids", ())),
            tuple(d.get("destination_ids", ())),
        )


class Scanner:
    """Reads the events a replay covers, in seq order, and plans their deliveries."""

    def __init__(self, hub: Hub, spec: ReplaySpec) -> None:
        self.hub = hub
        self.spec = spec
        self.compiled = patterns.compile_pattern(spec.pattern) if spec.pattern else None
        self.routes: list[Route] = []

    async def prepare(self) -> None:
        every = await self.hub.load_routes(self.spec.tenant_id)
        if self.spec.route_ids:
            self.routes = [r for r in every if r.id in self.spec.route_ids]
        elif not self.spec.destination_ids:
            self.routes = [r for r in every if r.enabled]
        else:
            self.routes = []  # destinations given without routes: direct

    def _where(self, after_seq: int) -> tuple[str, list[Any]]:
        s = self.spec
        # SQLite would pick the (tenant, time) index and sort every remaining row per page; the
        # unary + makes it walk the primary key from the cursor instead
        tenant = "+e.tenant_id" if self.hub.store.dialect == "sqlite" else "e.tenant_id"
        where = [f"{tenant} = ?", "e.seq > ?", "e.status IN ('accepted', 'warned')"]
        params: list[Any] = [s.tenant_id, after_seq]
        if s.from_us is not None:
            where.append("e.time_us >= ?")
            params.append(s.from_us)
        if s.to_us is not None:
            where.append("e.time_us < ?")
            params.append(s.to_us)
        if s.types:
            where.append(type_condition(s.types, "e.type", bind(params)))
        if self.compiled is not None:
            where.append(
                "(" + pattern_fragment(self.compiled, self.hub.store.dialect, params) + ")"
            )
        return " AND ".join(where), params

    async def page(self, after_seq: int) -> list[Event]:
        where, params = self._where(after_seq)
        rows = await self.hub.store.fetch(
            f"SELECT {_E} FROM events e WHERE {where} ORDER BY e.seq LIMIT ?", [*params, _BATCH]
        )
        return [event_from_row(r) for r in rows]

    async def count(self) -> int:
        where, params = self._where(0)
        rows = await self.hub.store.fetch(f"SELECT count(*) FROM events e WHERE {where}", params)
        return int(rows[0][0])

    def deliveries(self, event: Event, replay_id: str | None, due_us: int) -> list[NewDelivery]:
        if event.context.get("duplicate_of") is not None:
            return []
        only = set(self.spec.destination_ids) or None
        if self.routes:
            planned = [
                (p.destination_id, p.route_id, p.ordering_key)
                for p in plan(self.routes, event, only)
            ]
        else:
            planned = [(d, None, None) for d in self.spec.destination_ids]
        return [
            NewDelivery(event.tenant_id, event.seq, d, r, LOW, k, due_us, replay_id)
            for d, r, k in planned
        ]


async def dry_run(hub: Hub, spec: ReplaySpec, sample_size: int = 10) -> dict[str, Any]:
    scanner = Scanner(hub, spec)
    await scanner.prepare()
    matched = deliveries = 0
    sample: list[dict[str, Any]] = []
    after = 0
    while True:
        events = await scanner.page(after)
        if not events:
            break
        for e in events:
            planned = scanner.deliveries(e, None, 0)
            if planned:
                matched += 1
                deliveries += len(planned)
                for d in planned:
                    if len(sample) < sample_size:
                        sample.append(
                            {
                                "event_id": e.id,
                                "type": e.type,
                                "time": e.to_json()["time"],
                                "destination_id": d.destination_id,
                                "route_id": d.route_id,
                            }
                        )
        after = events[-1].seq
    return {"dry_run": True, "events": matched, "deliveries": deliveries, "sample": sample}


async def start(hub: Hub, spec: ReplaySpec) -> dict[str, Any]:
    replay_id = "rpl_" + new_id()
    now = now_us()
    total = await Scanner(hub, spec).count()
    body = {**spec.to_json(), "total": total}
    await hub.store.execute(
        "INSERT INTO replays (id, tenant_id, spec, status, cursor_seq, scanned, matched, created, "
        "error, created_us, updated_us) VALUES (?, ?, ?j, 'running', 0, 0, 0, 0, NULL, ?, ?)",
        (replay_id, spec.tenant_id, orjson.dumps(body).decode(), now, now),
    )
    hub.spawn(run(hub, replay_id))
    return await get(hub, spec.tenant_id, replay_id) or {}


async def get(hub: Hub, tenant_id: str, replay_id: str) -> dict[str, Any] | None:
    rows = await hub.store.fetch(
        "SELECT id, spec, status, cursor_seq, scanned, matched, created, error, created_us, "
        "updated_us FROM replays WHERE tenant_id = ? AND id = ?",
        (tenant_id, replay_id),
    )
    if not rows:
        return None
    r = rows[0]
    spec = r[1] if isinstance(r[1], dict) else orjson.loads(r[1])
    return {
        "id": r[0],
        "status": r[2],
        "total": spec.get("total"),
        "scanned": r[4],
        "events": r[5],
        "deliveries": r[6],
        "error": r[7],
        "spec": {k: v for k, v in spec.items() if k != "total"},
    }


async def run(hub: Hub, replay_id: str) -> None:
    rows = await hub.store.fetch(
        "SELECT tenant_id, spec, cursor_seq, scanned, matched, created FROM replays WHERE id = ?",
        (replay_id,),
    )
    tenant_id, raw, cursor, scanned, matched, created = rows[0]
    spec = ReplaySpec.from_json(tenant_id, raw if isinstance(raw, dict) else orjson.loads(raw))
    scanner = Scanner(hub, spec)
    rate = max(1.0, hub.settings.replay_rate)
    hub.running_replays.add(replay_id)
    try:
        await scanner.prepare()
        while True:
            events = await scanner.page(cursor)
            if not events:
                break
            for chunk_start in range(0, len(events), 100):
                chunk = events[chunk_start : chunk_start + 100]
                t0 = time.monotonic()
                now = now_us()
                new: list[NewDelivery] = []
                for e in chunk:
                    planned = scanner.deliveries(e, replay_id, now)
                    matched += bool(planned)
                    new += planned
                scanned += len(chunk)
                cursor = chunk[-1].seq
                statements: list[tuple[str, Any]] = [
                    (INSERT_DELIVERY, delivery_params(d, now)) for d in new
                ]
                created += len(new)
                statements.append(
                    (
                        "UPDATE replays SET cursor_seq = ?, scanned = ?, matched = ?, created = ?, "
                        "updated_us = ? WHERE id = ?",
                        (cursor, scanned, matched, created, now, replay_id),
                    )
                )
                await hub.store.batch(statements)
                if new and hub.worker is not None:
                    hub.worker.wakeup.set()
                pause = len(chunk) / rate - (time.monotonic() - t0)
                if pause > 0:
                    await asyncio.sleep(pause)
        await hub.store.execute(
            "UPDATE replays SET status = 'done', updated_us = ? WHERE id = ?", (now_us(), replay_id)
        )
        log.info(
            "replay done",
            extra={
                "action": "replay_done",
                "replay_id": replay_id,
                "events": matched,
                "deliveries": created,
            },
        )
    except asyncio.CancelledError:
        raise  # shutdown: the job resumes from its cursor at the next start
    except Exception as exc:
        log.exception("replay failed", extra={"action": "replay_failed", "replay_id": replay_id})
        await hub.store.execute(
            "UPDATE replays SET status = 'failed', error = ?, updated_us = ? WHERE id = ?",
            (str(exc)[:500], now_us(), replay_id),
        )
    finally:
        hub.running_replays.discard(replay_id)


async def resume_replays(hub: Hub, every: float = 30.0) -> None:
    """Continue replays whose process stopped: a running replay whose progress has not moved
    for `every` seconds is taken over — by exactly one process, since the take-over is one
    conditional UPDATE. Runs for the life of the hub."""
    while True:
        try:
            stale = now_us() - int(every * 1_000_000)
            rows = await hub.store.fetch(
                "SELECT id FROM replays WHERE status = 'running' AND updated_us < ?", (stale,)
            )
            for (replay_id,) in rows:
                if replay_id in hub.running_replays:
                    continue
                taken = await hub.store.execute(
                    "UPDATE replays SET updated_us = ? "
                    "WHERE id = ? AND status = 'running' AND updated_us < ?",
                    (now_us(), replay_id, stale),
                )
                if taken:
                    log.info(
                        "replay resumed", extra={"action": "replay_resumed", "replay_id": replay_id}
                    )
                    hub.spawn(run(hub, replay_id))
        except Exception:
            log.exception("could not resume replays", extra={"action": "replay_resume_failed"})
        await asyncio.sleep(every)
