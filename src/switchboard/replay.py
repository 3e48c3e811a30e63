"""Replays: re-route stored events (by filter, type and time) through routes or straight to
destinations — including destinations created after the events arrived.

A dry run answers with the exact counts and a sample without decoding the events: the routes'
conditions (types, sources, filter, the internal-type rule) are rendered as SQL and the database
counts, with one aggregate per window of `seq`, the events that match and the deliveries they
would make (per destination, the events matching any route that names it). The sample is planned
in Python from the first few matching events only. Routes the SQL cannot express exactly (a
`cidr` or `time` filter, a `[…]` type glob) make the dry run fall back to planning every event in
Python, window by window too.

Windows (`Pace`, `windows`): no statement of a dry run, or of the count a replay starts with,
scans the whole table. A big tenant's count as one statement outlived PostgreSQL's 10 s statement
timeout on a loaded machine (a 503); a window covers a range of `seq` sized from how long the
previous one took, aiming at a 20th of that timeout, and each takes a pooled connection only for
its own statement. The windows end at the newest event stored when the count began, so events
arriving meanwhile are not counted (each window reads its own snapshot).

A real replay is a job: it scans in `seq` order, plans each event in Python, creates low-priority
deliveries marked with the replay id, and saves its cursor in the same transaction as the
deliveries it created, so a restarted process resumes exactly where the last one stopped. Its
pace is limited by SWITCHBOARD_REPLAY_RATE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from switchboard import patterns
from switchboard.envelope import Event, new_id, now_us
from switchboard.records import NewDelivery
from switchboard.router import INTERNAL_PREFIX, Route, plan
from switchboard.store.deliveries import INSERT_DELIVERY, delivery_params, pattern_fragment
from switchboard.store.queries import EVENT_COLUMNS, bind, event_from_row, type_condition

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from switchboard.config import Settings
    from switchboard.delivery import Worker
    from switchboard.registry import Registry
    from switchboard.store import Store


class Hub(Protocol):
    """What a replay uses of the running hub (`hub.Hub`, which resumes replays on start and so
    sits above this module)."""

    settings: Settings
    store: Store
    worker: Worker | None
    running_replays: set[str]  # the replay jobs this process is running
    registry: Registry  # which fields the store seals

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    async def load_routes(self, tenant_id: str) -> list[Route]: ...


log = logging.getLogger("switchboard.replay")
LOW = 2  # replays run on the low-priority lane
_BATCH = 1000
_E = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))


@dataclass(frozen=True)
class Pace:
    """How a count is cut into windows of `seq`: the first window's width, the narrowest and
    widest, and the seconds one window's statements should take (the next window's width is
    scaled to it, at most doubling)."""

    first: int = 20_000
    least: int = 500
    most: int = 5_000_000
    seconds: float = 0.5  # a 20th of PostgreSQL's COMMAND_TIMEOUT (store/postgres.py)


PACE = Pace()


async def windows(store: Store, pace: Pace, step: Callable[[int, int], Awaitable[None]]) -> None:
    """Call `step(lo, hi)` for consecutive windows `lo < seq <= hi` that cover every event stored
    now, in order. Each window's width is the previous one's scaled by how far its step's time
    was from `pace.seconds` (at most doubled, within least..most)."""
    rows = await store.fetch("SELECT min(seq), max(seq) FROM events")
    if not rows or rows[0][0] is None:
        return
    lo, last = int(rows[0][0]) - 1, int(rows[0][1])
    width = max(1, pace.first)
    while lo < last:
        hi = min(last, lo + width)
        t0 = time.monotonic()
        await step(lo, hi)
        took = time.monotonic() - t0
        scale = 2.0 if took <= 0 else min(2.0, pace.seconds / took)
        width = max(max(1, pace.least), min(pace.most, int((hi - lo) * scale)))
        lo = hi


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


@dataclass(frozen=True)
class Condition:
    """A boolean SQL expression over the events table aliased `e`, with its `?` parameters."""

    sql: str
    params: list[Any]


def any_of(conditions: list[Condition]) -> Condition:
    return Condition(
        "(" + " OR ".join(c.sql for c in conditions) + ")",
        [p for c in conditions for p in c.params],
    )


class Scanner:
    """Reads the events a replay covers, in seq order, and plans their deliveries."""

    def __init__(self, hub: Hub, spec: ReplaySpec) -> None:
        self.hub = hub
        self.spec = spec
        # the filter passed the size limits when the replay was created
        self.compiled = patterns.compile_pattern(spec.pattern, None) if spec.pattern else None
        self.routes: list[Route] = []
        self.sealed: frozenset[str] = frozenset()  # PII paths the store seals (dotted)

    async def prepare(self) -> None:
        if self.hub.store.subject_keys.enabled:
            self.sealed = frozenset(await self.hub.registry.tenant_pii(self.spec.tenant_id))
        every = await self.hub.load_routes(self.spec.tenant_id)
        if self.spec.route_ids:
            self.routes = [r for r in every if r.id in self.spec.route_ids]
        elif not self.spec.destination_ids:
            self.routes = [r for r in every if r.enabled]
        else:
            self.routes = []  # destinations given without routes: direct

    def _where(self, after_seq: int, upto: int | None = None) -> tuple[str, list[Any]]:
        s = self.spec
        # SQLite would pick the (tenant, time) index and sort every remaining row per page; the
        # unary + makes it walk the primary key from the cursor instead
        tenant = "+e.tenant_id" if self.hub.store.dialect == "sqlite" else "e.tenant_id"
        where = [f"{tenant} = ?", "e.seq > ?"]
        params: list[Any] = [s.tenant_id, after_seq]
        if upto is not None:
            where.append("e.seq <= ?")
            params.append(upto)
        where.append("e.status IN ('accepted', 'warned')")
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

    async def page(
        self,
        after_seq: int,
        also: Condition | None = None,
        limit: int = _BATCH,
        upto: int | None = None,
    ) -> list[Event]:
        """The next events in scope after `after_seq` (up to seq `upto`); `also` narrows them
        further."""
        where, params = self._where(after_seq, upto)
        if also is not None:
            where += f" AND {also.sql}"
            params += also.params
        rows = await self.hub.store.fetch(
            f"SELECT {_E} FROM events e WHERE {where} ORDER BY e.seq LIMIT ?", [*params, limit]
        )
        return await self.hub.store.subject_keys.open([event_from_row(r) for r in rows])

    async def count(self, pace: Pace = PACE) -> int:
        """The events in scope, counted window by window (`windows`)."""
        total = 0

        async def step(lo: int, hi: int) -> None:
            nonlocal total
            where, params = self._where(lo, hi)
            rows = await self.hub.store.fetch(
                f"SELECT count(*) FROM events e WHERE {where}", params
            )
            total += int(rows[0][0])

        await windows(self.hub.store, pace, step)
        return total

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


def touches(pattern: patterns.Pattern, paths: frozenset[str]) -> bool:
    """Whether `pattern` tests a field at one of `paths` (dotted)."""
    if not paths:
        return False

    def walk(node: patterns.AllOf) -> bool:
        for c in node.conditions:
            if isinstance(c, patterns.Leaf):
                if ".".join(c.path) in paths:
                    return True
            elif any(walk(b) for b in c.branches):
                return True
        return False

    return walk(pattern.root)


def route_condition(route: Route, dialect: str) -> Condition | None:
    """SQL that holds exactly when the enabled `route` matches an event (`Route.matches`), or
    None when SQL cannot say it exactly: a filter `to_sql` refuses (cidr, time, …) or a type
    glob with a `[…]` class or capitals (LIKE has no classes and, on SQLite, ignores case)."""
    if any("[" in t or (t != t.lower() and ("*" in t or "?" in t)) for t in route.types):
        return None
    params: list[Any] = []
    parts = [type_condition(route.types, "e.type", bind(params)) if route.types else "FALSE"]
    if not any(t.startswith(INTERNAL_PREFIX) for t in route.types):
        # internal events reach only routes that name an internal type
        parts.append(f"substr(e.type, 1, {len(INTERNAL_PREFIX)}) <> ?")
        params.append(INTERNAL_PREFIX)
    if route.sources:
        parts.append(f"e.source IN ({', '.join('?' * len(route.sources))})")
        params += route.sources
    if route.filter is not None:
        try:
            parts.append("(" + pattern_fragment(route.filter, dialect, params) + ")")
        except patterns.PatternError:
            return None
    return Condition("(" + " AND ".join(parts) + ")", params)


def not_duplicate(dialect: str) -> Condition:
    """`Scanner.deliveries` routes nothing for an event whose context.duplicate_of is set."""
    if dialect == "postgres":
        return Condition("e.context ->> 'duplicate_of' IS NULL", [])
    return Condition("json_extract(e.context, '$.duplicate_of') IS NULL", [])


@dataclass(frozen=True)
class DryRunSql:
    """`counts`: one aggregate query whose row is (events, deliveries to each destination …);
    `matching`: the events that make at least one delivery (for the sample); `empty`: nothing
    can be delivered, so there is nothing to count."""

    counts: Condition
    matching: Condition
    empty: bool = False


_NOTHING = DryRunSql(Condition("SELECT 0", []), Condition("FALSE", []), empty=True)


def dry_run_sql(scanner: Scanner, window: tuple[int, int] | None = None) -> DryRunSql | None:
    """The dry run's SQL for a prepared scanner, counting the events of `window` (`lo < seq <=
    hi`; None: all of them); None when a route has no exact SQL form."""
    dialect = scanner.hub.store.dialect
    where, params = scanner._where(*(window or (0, None)))
    duplicate = not_duplicate(dialect)
    only = scanner.spec.destination_ids
    if not scanner.routes:  # direct: every event in scope, once per destination id
        if not only:
            return _NOTHING
        sql = (
            f"SELECT count(*), count(*) * {len(only)} FROM events e "
            f"WHERE {where} AND {duplicate.sql}"
        )
        return DryRunSql(Condition(sql, params), duplicate)
    conditions: list[Condition] = []  # one per route that can deliver
    naming: dict[str, list[int]] = {}  # destination → the routes (indexes) that name it
    for route in scanner.routes:
        dests = [d for d in route.destinations if not only or d in only]
        if not route.enabled or not dests:
            continue
        if route.filter is not None and touches(route.filter, scanner.sealed):
            return None  # SQL sees the sealed text there: plan those events in Python
        condition = route_condition(route, dialect)
        if condition is None:
            return None
        for d in dests:
            naming.setdefault(d, []).append(len(conditions))
        conditions.append(condition)
    if not conditions:
        return _NOTHING
    # each route's condition is a flag computed once per row in the inner SELECT; a destination
    # every route names is delivered to by every counted event
    flags = ", ".join(f"{c.sql} AS m{i}" for i, c in enumerate(conditions))
    per_destination = [
        "count(*)"
        if len(routes) == len(conditions)
        else "count(*) FILTER (WHERE " + " OR ".join(f"m{i}" for i in routes) + ")"
        for routes in naming.values()
    ]
    fence = ""
    if any(c != "count(*)" for c in per_destination):
        # flags read more than once: OFFSET 0 (LIMIT -1 on SQLite) keeps the planner from
        # inlining the conditions into every column that reads them
        fence = " OFFSET 0" if dialect == "postgres" else " LIMIT -1"
    any_route = any_of(conditions)
    sql = (
        f"SELECT count(*), {', '.join(per_destination)} "
        f"FROM (SELECT {flags} FROM events e WHERE {where} AND {duplicate.sql}{fence}) AS m "
        f"WHERE {' OR '.join(f'm{i}' for i in range(len(conditions)))}"
    )
    return DryRunSql(
        Condition(sql, any_route.params + params),
        Condition(f"{duplicate.sql} AND {any_route.sql}", any_route.params),
    )


def _sample_entry(e: Event, d: NewDelivery) -> dict[str, Any]:
    return {
        "event_id": e.id,
        "type": e.type,
        "time": e.to_json()["time"],
        "destination_id": d.destination_id,
        "route_id": d.route_id,
    }


async def dry_run(
    hub: Hub, spec: ReplaySpec, sample_size: int = 10, pace: Pace = PACE
) -> dict[str, Any]:
    scanner = Scanner(hub, spec)
    await scanner.prepare()
    query = dry_run_sql(scanner)
    if query is None:
        return await _dry_run_in_python(scanner, sample_size, pace)
    matched = deliveries = 0
    sample: list[dict[str, Any]] = []

    async def step(lo: int, hi: int) -> None:
        nonlocal matched, deliveries
        counts = dry_run_sql(scanner, (lo, hi))
        assert counts is not None  # the same routes as `query`, which had a SQL form
        row = (await hub.store.fetch(counts.counts.sql, counts.counts.params))[0]
        found = int(row[0])
        matched += found
        deliveries += sum(int(n) for n in row[1:])
        after = lo
        while found and len(sample) < sample_size:  # plan the first matching events only
            events = await scanner.page(after, counts.matching, sample_size, upto=hi)
            for e in events:
                for d in scanner.deliveries(e, None, 0):
                    if len(sample) < sample_size:
                        sample.append(_sample_entry(e, d))
            if len(events) < sample_size:
                break
            after = events[-1].seq

    if not query.empty:
        await windows(hub.store, pace, step)
    return {"dry_run": True, "events": matched, "deliveries": deliveries, "sample": sample}


async def _dry_run_in_python(scanner: Scanner, sample_size: int, pace: Pace) -> dict[str, Any]:
    """The dry run by planning every event in scope (for routes SQL cannot express)."""
    matched = deliveries = 0
    sample: list[dict[str, Any]] = []

    async def step(lo: int, hi: int) -> None:
        nonlocal matched, deliveries
        after = lo
        while events := await scanner.page(after, upto=hi):
            for e in events:
                planned = scanner.deliveries(e, None, 0)
                if planned:
                    matched += 1
                    deliveries += len(planned)
                    for d in planned:
                        if len(sample) < sample_size:
                            sample.append(_sample_entry(e, d))
            after = events[-1].seq

    await windows(scanner.hub.store, pace, step)
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
