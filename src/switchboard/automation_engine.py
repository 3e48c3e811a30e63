"""The automation engine: which runs an event starts or wakes (planned into its group commit), and
the loop that claims due runs and advances them with the shared interpreter.

The loop runs beside the delivery worker (`Hub.open`). Its clock is injected: tests and the
simulator pass a `FakeClock`, so a two-hour wait takes no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from switchboard import patterns
from switchboard.automation_runs import (
    Env,
    Run,
    StepFailed,
    advance,
    effect_id,
    replace,
    waiting_on,
    with_trigger,
)
from switchboard.automations import (
    SCHEDULE_EVENT_TYPE,
    Automation,
    AutomationError,
    Correlation,
    Op,
    correlation_key,
    parse_automation,
)
from switchboard.envelope import Event, format_us, new_id, now_us
from switchboard.records import Wake
from switchboard.router import Route
from switchboard.shared import SharedLoads
from switchboard.store import Planned
from switchboard.store.automations import (
    AutomationStore,
    RunStart,
    dedupe_key,
    held_key,
)
from switchboard.store.deliveries import DELIVERY_COLUMNS

if TYPE_CHECKING:
    from switchboard.ingest import Ingestor
    from switchboard.store import Store, Tenant
    from switchboard.store.deliveries import DeliveryStore

log = logging.getLogger("switchboard.automations")
_NO_NAMES: dict[str, str] = {}
_TTL = 1.0  # seconds a tenant's automations are cached; a change reaches every node within it
SCHEDULE_CHECK_US = 1_000_000  # the engine looks for due schedules at most once a second
ROUTE_PREFIX = "automation:"  # route ids of send steps' transforms (see `send_route_id`)
# A send step's delivery: an ordinary pending delivery, made only while the run is still the one
# the engine claimed (a cancel committed first makes nothing), at most once per (run, step).
# The casts type the selected parameters for PostgreSQL.
_INSERT_SEND = (
    f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) SELECT ?, ?, CAST(? AS BIGINT), ?, ?, "
    "'pending', CAST(? AS INTEGER), 0, CAST(? AS BIGINT), NULL, NULL, NULL, NULL, "
    "CAST(? AS BIGINT), CAST(? AS BIGINT), 0 WHERE EXISTS (SELECT 1 FROM automation_runs "
    "WHERE id = ? AND rev = ? AND status = 'running') ON CONFLICT (id) DO NOTHING"
)


class SystemClock:
    def now_us(self) -> int:
        return now_us()


@dataclass
class FakeClock:
    """A clock that moves only when told (tests, the simulator)."""

    us: int

    def now_us(self) -> int:
        return self.us

    def advance(self, seconds: float) -> None:
        self.us += int(seconds * 1_000_000)


def send_route_id(name: str, version: int, op_id: str) -> str:
    return f"{ROUTE_PREFIX}{name}:{version}:{op_id}"


class AutomationCache:
    """Each tenant's current automations (re-read at most every second) and every version a
    run pinned (immutable, so cached without expiry)."""

    def __init__(
        self, store: AutomationStore, max_running: int = 100_000, deliveries: Any = None
    ) -> None:
        self.store = store
        self.deliveries = deliveries  # the delivery store: destination ids for leading sends
        self.max_running = max_running
        self._current: dict[str, tuple[float, list[Automation]]] = {}
        self._loads: SharedLoads[str, list[Automation]] = SharedLoads()
        self._running: dict[str, tuple[float, int]] = {}  # tenant → (expires, running runs)
        self._counts: SharedLoads[str, int] = SharedLoads()
        self._routes: dict[str, list[Route]] = {}  # tenant → its send steps' transforms
        self._destinations: dict[str, dict[str, str]] = {}  # tenant → destination name → id
        self._versions: dict[tuple[str, str, int], Automation | None] = {}
        self._planners: dict[str, Planner] = {}

    async def _load(self, tenant_id: str) -> list[Automation]:
        self._routes[tenant_id] = await self._transform_routes(tenant_id)
        self._destinations[tenant_id] = {
            d.name: d.id for d in await self.store_destinations(tenant_id)
        }
        out = []
        for name, version, spec, _ in await self.store.current(tenant_id):
            try:
                out.append(parse_automation(spec, name=name, version=version))
            except AutomationError as exc:  # stored valid; a later limit may refuse it
                log.warning(
                    "stored automation no longer valid",
                    extra={
                        "action": "automation_invalid",
                        "tenant_id": tenant_id,
                        "automation": name,
                        "error": str(exc),
                    },
                )
        return out

    async def automations(self, tenant_id: str) -> list[Automation]:
        now = time.monotonic()
        hit = self._current.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        autos = await self._loads.get(tenant_id, lambda: self._load(tenant_id))
        self._current[tenant_id] = (now + _TTL, autos)
        return autos

    def none_cached(self, tenant_id: str) -> bool:
        """Whether the cache holds, unexpired, that the tenant has no automations: ingest then
        skips planning (no awaits, no per-event lists). It expires and is forgotten exactly as
        `automations` is, so an automation saved here is seen by the next ingest, and one saved
        on another node within the second."""
        hit = self._current.get(tenant_id)
        return hit is not None and not hit[1] and hit[0] > time.monotonic()

    def forget(self, tenant_id: str) -> None:
        self._current.pop(tenant_id, None)
        self._running.pop(tenant_id, None)
        self._loads.forget(tenant_id)
        self._counts.forget(tenant_id)

    async def version(self, tenant_id: str, name: str, version: int) -> Automation | None:
        key = (tenant_id, name, version)
        if key not in self._versions:
            got = await self.store.get(tenant_id, name, version)
            parsed = None
            if got is not None:
                with contextlib.suppress(AutomationError):
                    parsed = parse_automation(got[1], name=name, version=version)
            if len(self._versions) > 10_000:
                self._versions.clear()
            self._versions[key] = parsed
        return self._versions[key]

    async def routes(self, tenant_id: str) -> list[Route]:
        """Disabled routes that only carry the transforms of send steps (the delivery worker
        finds a delivery's transform by its route id): one per step with a transform, of every
        version (a run on an older version sends with that version's transform). Loaded and
        cached with the tenant's automations."""
        await self.automations(tenant_id)
        return self._routes.get(tenant_id, [])

    async def _transform_routes(self, tenant_id: str) -> list[Route]:
        out = []
        for name, version, spec in await self.store.versions(tenant_id):
            key = (tenant_id, name, version)
            if key not in self._versions:
                parsed = None
                with contextlib.suppress(AutomationError):
                    parsed = parse_automation(spec, name=name, version=version)
                self._versions[key] = parsed
            auto = self._versions[key]
            if auto is None:
                continue
            for op in auto.ops:
                if op.kind == "send" and (op.transform or auto.requires_consent):
                    out.append(
                        Route(
                            id=send_route_id(name, version, op.id),
                            tenant_id=tenant_id,
                            name=f"automation {name} v{version} step {op.id}",
                            types=(),
                            transform=op.transform,
                            enabled=False,
                            requires_consent=auto.requires_consent,
                        )
                    )
        return out

    async def running(self, tenant_id: str) -> int:
        """The tenant's running runs, counted at most every second, by one query however many
        ingests find the count expired together (the count reads every running run's index
        entry: with 100,000 waiting, 64 concurrent counts took most of ingest's time)."""
        now = time.monotonic()
        hit = self._running.get(tenant_id)
        if hit is None or hit[0] <= now:
            count = await self._counts.get(tenant_id, lambda: self.store.count_running(tenant_id))
            hit = (time.monotonic() + _TTL, count)
            self._running[tenant_id] = hit
        return hit[1]

    def planner(self, tenant_id: str, autos: list[Automation]) -> Planner:
        """The planner of the tenant's current automations (rebuilt when they are reloaded)."""
        planner = self._planners.get(tenant_id)
        if planner is None or planner.automations is not autos:
            planner = self._planners[tenant_id] = Planner(autos)
        return planner

    async def plans(self, tenant_id: str, events: list[Event]) -> list[list[Planned]]:
        hit = self._current.get(tenant_id)  # `automations`, without a coroutine when cached
        autos = hit[1] if hit is not None and hit[0] > time.monotonic() else None
        if autos is None:
            autos = await self.automations(tenant_id)
        if not autos:
            return [[] for _ in events]
        names = self._destinations.get(tenant_id, {})
        planner = self.planner(tenant_id, autos)
        planned = [planner.plan(e, None, names) for e in events]
        # the running-runs limit only matters to events that start runs: an event that only
        # wakes waiting runs (or starts nothing) does not wait for the count
        starts = any(isinstance(h, RunStart) for hooks in planned for h in hooks)
        if starts and (running := await self.running(tenant_id)) >= self.max_running:
            refused = (
                f"the tenant has {running} runs running; the limit is {self.max_running} "
                "(SWITCHBOARD_AUTOMATION_MAX_RUNNING)"
            )
            planned = [planner.plan(e, refused, names) for e in events]
        return planned

    def cached_plans(self, tenant_id: str, events: list[Event]) -> list[list[Planned]] | None:
        """`plans` without a coroutine or a query, when the cache can answer: the tenant's
        automations are cached (an empty list: it has none), and if any event's type starts
        runs, the running-runs count is cached too and under the limit. None otherwise: call
        `plans`, which loads what is missing (and plans refused runs over the limit). [] when
        the events start and wake nothing (the tenant has no automation, or none of theirs)."""
        hit = self._current.get(tenant_id)
        if hit is None:
            return None
        now = time.monotonic()
        if hit[0] <= now:
            return None
        autos = hit[1]
        if not autos:
            return []
        planner = self._planners.get(tenant_id)
        if planner is None or planner.automations is not autos:
            planner = self.planner(tenant_id, autos)
        names = self._destinations.get(tenant_id, _NO_NAMES)
        types = planner.types
        out = []
        counted = anything = False
        for e in events:
            of_type = types.get(e.type)
            if of_type is None:
                of_type = planner.of_type(e.type)
            if of_type[0] and not counted:  # a type that starts runs: the limit applies
                running = self._running.get(tenant_id)
                if running is None or running[0] <= now or running[1] >= self.max_running:
                    return None
                counted = True
            hooks = planner.plan(e, None, names, of_type)
            if hooks:
                anything = True
            out.append(hooks)
        return out if anything else []

    async def store_destinations(self, tenant_id: str) -> list[Any]:
        """The tenant's destinations (their ids, for send steps planned at ingest)."""
        if self.deliveries is None:
            return []
        return list(await self.deliveries.list_destinations(tenant_id))


def leading_sends(
    auto: Automation, run_id: str, destinations: dict[str, str]
) -> tuple[tuple[str, str, str, str, str | None], ...]:
    """The send steps a program starts with (before any wait, branch or emit), to be made in
    the trigger's commit: what "`lead.created` → WhatsApp at once" needs, with no engine
    round trip in between. A destination the cache does not know stops the list (the engine
    then runs that step, and fails the run with the reason if it is really gone)."""
    out = []
    for op in auto.ops:
        if op.kind != "send" or op.destination not in destinations:
            break
        # a route carries the step's transform and the consent the worker checks before sending
        routed = op.transform or auto.requires_consent
        route_id = send_route_id(auto.name, auto.version, op.id) if routed else None
        out.append(
            (
                op.id,
                effect_id(run_id, op.id, "dlv"),
                op.destination,
                destinations[op.destination],
                route_id,
            )
        )
    return tuple(out)


# the fields of match_doc() that are the event's attributes unchanged (it formats `time` and
# builds `actor`)
_DIRECT = frozenset(
    [
        "id",
        "type",
        "version",
        "source",
        "subject",
        "trace_id",
        "correlation_id",
        "causation_id",
        "context",
        "data",
    ]
)
# a correlation's paths as (envelope field, the keys below it), read off the event directly
_Direct = tuple[tuple[str, tuple[str, ...]], ...]
_Plan = tuple[tuple[Automation, ...], tuple[tuple[str, ...], ...], tuple[_Direct, ...] | None]


class Planner:
    """A tenant's automations indexed by event type: which start on a type, and which
    correlations of it runs may wait on. An event of a type no automation starts on or waits
    for costs a look-up; one that only wakes runs costs its correlation keys."""

    MAX_TYPES = 1_000  # event types remembered (types are tenant input): beyond, start afresh

    def __init__(self, automations: list[Automation]) -> None:
        self.automations = automations
        self.types: dict[str, _Plan] = {}

    def of_type(self, etype: str) -> _Plan:
        """(automations an event of this type starts if it passes their filters, the distinct
        correlation paths runs may wait on this type with, and those paths split into envelope
        field and keys when every field they read is one match_doc() passes through unchanged,
        else None)."""
        hit = self.types.get(etype)
        if hit is None:
            starts = tuple(a for a in self.automations if a.triggered_by_type(etype))
            awaited = tuple(
                dict.fromkeys(
                    c.paths for a in self.automations for c in a.awaited() if c.type == etype
                )
            )
            direct = tuple(
                tuple((parts[0], tuple(parts[1:])) for parts in (p.split(".") for p in paths))
                for paths in awaited
            )
            roots = {root for paths in direct for root, _ in paths}
            hit = (starts, awaited, direct if roots <= _DIRECT else None)
            if len(self.types) >= self.MAX_TYPES:
                self.types.clear()
            self.types[etype] = hit
        return hit

    def plan(
        self,
        event: Event,
        refused: str | None = None,
        destinations: dict[str, str] | None = None,
        hit: _Plan | None = None,
    ) -> list[Planned]:
        """The runs an event starts (with their leading sends) and the waiting runs it wakes,
        written in its commit (`hit`: its type's `of_type`, when the caller has it)."""
        if hit is None:
            hit = self.types.get(event.type)
            if hit is None:
                hit = self.of_type(event.type)
        starts, awaited, direct = hit
        if not starts and not awaited:
            return []
        if event.status == "quarantined" or event.context.get("duplicate_of") is not None:
            return []
        if not starts and direct is not None:  # only wakes: its keys read off the event
            # `correlation_key(event.match_doc(), paths)` for paths whose first part is an
            # envelope field match_doc() passes through unchanged, without building the
            # document; written out here, not called, as this runs for every such event
            woken: list[Planned] = []
            for split in direct:
                values = []
                for root, keys in split:
                    node = getattr(event, root)
                    for part in keys:
                        node = node.get(part) if isinstance(node, dict) else None
                    if node is None or isinstance(node, _CONTAINERS):
                        break
                    values.append(node)
                else:
                    # tuple.__new__: a NamedTuple's own __new__ is a Python function
                    woken.append(
                        _new_tuple(Wake, (event.tenant_id, event.type, _dumps(values).decode()))
                    )
            return woken
        doc = event.match_doc()
        hooks: list[Planned] = []
        for auto in starts:
            if auto.filter is not None and not patterns.match(auto.filter, doc):
                continue
            hooks.append(run_start(auto, event, doc, refused, destinations))
        for paths in awaited:
            key = correlation_key(doc, paths)
            if key is not None:
                hooks.append(Wake(event.tenant_id, event.type, key))
        return hooks


_new_tuple = tuple.__new__
_dumps = orjson.dumps
_CONTAINERS = (dict, list)


def run_start(
    auto: Automation,
    event: Event,
    doc: dict[str, Any],
    refused: str | None,
    destinations: dict[str, str] | None,
) -> RunStart:
    """The run of `auto` that `event` (`doc` its match_doc()) starts."""
    dedupe, digest_limit, debounce = None, 0, None
    if auto.dedupe_path is not None:
        dedupe = dedupe_key(doc, auto.dedupe_path, auto.dedupe_window_us, event.received_us)
    elif (digest := auto.digest) is not None:
        dedupe = held_key(doc, digest.key_path)
        digest_limit = digest.max_events
    elif auto.debounce is not None:
        dedupe = held_key(doc, auto.debounce.path)
        debounce = (auto.debounce.period_us, auto.debounce.max_wait_us)
    cancel = []
    for corr in auto.cancel_on:
        key = correlation_key(doc, corr.paths)
        if key is not None:
            cancel.append((corr.type, key))
    run_id = new_id()
    sends: tuple[tuple[str, str, str, str, str | None], ...] = ()
    if destinations and debounce is None and not digest_limit and refused is None:
        sends = leading_sends(auto, run_id, destinations)
    # "`lead.created` → WhatsApp at once": the whole program is made in the commit
    completes = bool(sends) and len(sends) == len(auto.ops) and not auto.cancel_on
    return RunStart(
        run_id,
        event.tenant_id,
        auto.name,
        auto.version,
        dedupe,
        tuple(cancel),
        refused,
        digest_limit,
        debounce,
        sends,
        completes,
    )


class Host(Protocol):
    """What the engine's effects use of the running hub (`hub.Hub`, which builds the engine and
    so sits above it)."""

    store: Store
    deliveries: DeliveryStore
    ingestor: Ingestor
    automation_cache: AutomationCache

    async def tenant(self, tenant_id: str) -> Tenant | None: ...

    def _wake_worker(self) -> None: ...


class StoreEnv:
    """The interpreter's effects on the hub: look-backs and waits in the store, sends as
    ordinary deliveries, emits through ingest (the catalog validates them)."""

    def __init__(self, hub: Host, automations: AutomationStore) -> None:
        self.hub = hub
        self.store = automations
        # send steps' delivery rows, written by the engine in the transaction that saves their
        # run (one write per tick, not one per send)
        self.pending: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        self._destinations: dict[tuple[str, str], tuple[float, Any]] = {}

    async def watch(self, run: Run, awaited: Correlation, key: str) -> None:
        await self.store.watch(run, awaited, key)

    async def find(self, run: Run, awaited: Correlation, key: str) -> dict[str, Any] | None:
        return await self.store.find(run.tenant_id, run.trigger_seq, awaited, key)

    async def send(self, run: Run, op: Op) -> str:
        assert op.destination is not None
        key = (run.tenant_id, op.destination)
        hit = self._destinations.get(key)
        if hit is None or hit[0] < time.monotonic():
            found = await self.hub.deliveries.get_destination(run.tenant_id, op.destination)
            if len(self._destinations) > 10_000:
                self._destinations.clear()
            hit = (time.monotonic() + _TTL, found)
            self._destinations[key] = hit
        dest = hit[1]
        if dest is None:
            raise StepFailed(f"step {op.id}: no destination {op.destination!r} in this tenant")
        delivery_id = effect_id(run.id, op.id, "dlv")
        auto = await self.hub.automation_cache.version(run.tenant_id, run.automation, run.version)
        # a route carries the step's transform and the consent the worker checks before sending
        routed = op.transform or (auto is not None and auto.requires_consent)
        route_id = send_route_id(run.automation, run.version, op.id) if routed else None
        at = now_us()  # deliveries run on the wall clock, whatever the engine's clock says
        params = (
            delivery_id,
            run.tenant_id,
            run.trigger_seq,
            dest.id,
            route_id,
            1,
            at,
            at,
            at,
            run.id,
            run.rev,
        )
        # unique per (run, step): a step run again after a crash finds its delivery made; the
        # row is written with the run's save, and only if the run is still the claimed one
        self.pending.setdefault(run.id, []).append((_INSERT_SEND, params))
        return delivery_id

    async def emit(self, run: Run, op: Op, event: dict[str, Any]) -> str:
        tenant = await self.hub.tenant(run.tenant_id)
        if tenant is None:
            raise StepFailed("the tenant no longer exists")
        result = await self.hub.ingestor.ingest([event], tenant, "automations")
        out = result.results[0]
        if out["status"] == "rejected":
            errors = "; ".join(f"{e['path']}: {e['message']}" for e in out.get("errors", []))
            raise StepFailed(f"step {op.id}: the emitted {op.emit_type} was rejected: {errors}")
        return str(out["id"])

    async def delivery_status(self, run: Run, delivery_id: str) -> str | None:
        rows = await self.hub.store.fetch(
            "SELECT status FROM deliveries WHERE id = ? AND tenant_id = ?",
            (delivery_id, run.tenant_id),
        )
        return str(rows[0][0]) if rows else None

    async def release(self, run: Run) -> bool:
        return await self.store.release(run)

    async def digest(self, run: Run, op: Op) -> tuple[list[dict[str, Any]], bool]:
        return await self.store.digest(run, op.max_events)


class Engine:
    """Claims due runs and advances them; one per `serve`/`worker` process."""

    def __init__(
        self,
        hub: Host,
        automations: AutomationStore,
        cache: AutomationCache,
        clock: Any = None,
        *,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        batch: int = 100,
    ) -> None:
        self.hub = hub
        self.store = automations
        self.cache = cache
        self.clock = clock or SystemClock()
        self.env: Env = StoreEnv(hub, automations)
        self.lease_us = int(lease_s * 1_000_000)
        self.poll_s = poll_s
        self.batch = batch
        self.wakeup = asyncio.Event()
        self._stopping = False
        self._schedules_checked_us = 0

    async def run(self) -> None:
        while not self._stopping:
            # cleared before the tick, never after: a commit that starts or wakes runs while
            # the claim is under way leaves it set, and the wait below returns at once
            self.wakeup.clear()
            try:
                n = await self.tick()
            except Exception:
                log.exception("automation tick failed", extra={"action": "automation_tick"})
                n = 0
            if n >= self.batch:  # a full batch: more may be due already
                continue
            pause = self.poll_s
            with contextlib.suppress(Exception):  # an outage: poll as usual
                # sleep until the next timer rather than a whole poll: lateness stays small
                if (due := await self.store.next_due_us()) is not None:
                    pause = min(pause, max(0.005, (due - self.clock.now_us()) / 1_000_000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), pause)

    async def stop(self) -> None:
        self._stopping = True
        self.wakeup.set()

    async def fire_schedules(self) -> int:
        """Start a run of each scheduled automation whose fire time has passed: a
        `switchboard.schedule` event, stored with its run in one commit, whose id is derived
        from (tenant, automation, fire time) so a fire made twice (two engines, a crash before
        the schedule moved on) starts one run. The schedule then moves to its next fire after
        now: fires missed while the hub was down make one run, not one each. How many fired."""
        now = self.clock.now_us()
        fired = 0
        for tenant_id, name, fire_us in await self.store.due_schedules(now, self.batch):
            auto = next(
                (a for a in await self.cache.automations(tenant_id) if a.name == name), None
            )
            if auto is None or auto.schedule is None:  # deleted or changed since: recompute
                got = await self.store.get(tenant_id, name)
                spec = got[1] if got is not None else {}
                await self.store.set_schedule(tenant_id, name, spec, now)
                continue
            event = schedule_event(tenant_id, auto, fire_us, now)
            start = RunStart(new_id(), tenant_id, name, auto.version, None, ())
            await self.hub.store.append([event], [[start]])
            await self.store.schedule_fired(
                tenant_id, name, fire_us, auto.schedule.next_after(max(now, fire_us)), now
            )
            fired += 1
        return fired

    async def tick(self) -> int:
        """Fire due schedules, then advance every run due now (a batch: one read, one write
        transaction); how many runs were claimed (and schedules fired)."""
        fired = 0
        now = self.clock.now_us()
        if now - self._schedules_checked_us >= SCHEDULE_CHECK_US:  # fires are minutes apart
            self._schedules_checked_us = now
            fired = await self.fire_schedules()
        return fired + await self.advance_due()

    async def advance_due(self) -> int:
        """Claim a batch of due runs (returned whole by the claim), load the trigger events of
        those whose pinned version reads them, advance each, and save them all in one write
        transaction; how many were claimed."""
        debug = log.isEnabledFor(logging.DEBUG)
        logged = log.isEnabledFor(logging.INFO)
        claimed = await self.store.claim_runs(
            self.clock.now_us(), self.lease_us, self.batch, trace=logged
        )
        if not claimed:
            return 0
        pending = self.env.pending if isinstance(self.env, StoreEnv) else {}
        pending.clear()
        pinned: dict[tuple[str, str, int], Automation | None] = {}  # this batch's versions
        versions = []
        wanted = set()
        for run, _ in claimed:
            key = (run.tenant_id, run.automation, run.version)
            if key in pinned:
                auto = pinned[key]
            else:
                auto = pinned[key] = await self.cache.version(*key)
            versions.append(auto)
            if auto is not None and auto.reads_trigger:
                wanted.add(run.trigger_seq)
        triggers = await self.store.triggers(sorted(wanted)) if wanted else {}
        results: list[tuple[Run, int, bool, bool]] = []
        holds: list[bool] = []  # each result's automation may hold a key (unknown: it may)
        traces: list[tuple[str, str] | None] = []
        now = self.clock.now_us()  # the batch's time, as its claim had one
        env = self.env
        for (run, trace), auto in zip(claimed, versions, strict=True):
            if run.status != "running":  # ended with a timer left (never made so): leave it be
                continue
            if auto is None:  # `advance_on` says why
                results.append(await self.advance_on(auto, run))
                holds.append(True)
                traces.append(trace)
                continue
            if auto.reads_trigger:
                trigger = triggers.get(run.trigger_seq)
                if trigger is None:  # the trigger event is gone (retention): as before, no run
                    continue
                run = with_trigger(run, trigger)
            try:
                # `advance_on`, inlined: one coroutine less per run of the engine's hot loop
                try:
                    advanced = await advance(auto, run, now, env)
                except StepFailed as exc:  # a failure outside a step (the cancel look-back)
                    advanced = replace(
                        run, status="failed", reason=str(exc), due_us=None, ended_us=now
                    )
                had = auto.keeps_wait_rows
                waits = had and waiting_on(auto, advanced) is not None
                results.append((advanced, run.rev, waits, had))
                holds.append(auto.holds_key)
                traces.append(trace)
            except Exception:  # a bug or an outage: the claim's lease brings the run back
                log.exception(
                    "automation run failed to advance",
                    extra={"action": "automation_error", "run_id": run.id},
                )
        sends = [pending.pop(run.id, []) for run, *_ in results] if pending else None
        saved = await self.store.save_many(results, self.clock.now_us(), sends, holds)
        if sends and any(sends):
            self.hub._wake_worker()  # the hub's one wake-up for new deliveries
        if logged:
            for (run, *_), ok, trace in zip(results, saved, traces, strict=True):
                event_id, trace_id = trace or (None, None)
                if debug:
                    log.debug(
                        "automation run advanced",
                        extra={
                            "action": "automation_step",
                            "run_id": run.id,
                            "tenant_id": run.tenant_id,
                            "automation": run.automation,
                            "status": run.status,
                            "saved": ok,
                            "event_id": event_id,
                            "trace_id": trace_id,
                        },
                    )
                if run.ended and ok:
                    log.info(
                        "automation run ended",
                        extra={
                            "action": "automation_end",
                            "run_id": run.id,
                            "tenant_id": run.tenant_id,
                            "automation": run.automation,
                            "status": run.status,
                            "reason": run.reason,
                            "trace_id": trace_id,
                        },
                    )
        return len(claimed)

    async def advance(self, run: Run, rev: int) -> tuple[Run, int, bool, bool]:
        """The run advanced on its pinned version: (run, claimed rev, waits for an event now,
        may have wait rows to delete)."""
        auto = await self.cache.version(run.tenant_id, run.automation, run.version)
        return await self.advance_on(auto, run, rev)

    async def advance_on(
        self, auto: Automation | None, run: Run, rev: int | None = None
    ) -> tuple[Run, int, bool, bool]:
        """`advance` with the pinned version at hand (None: it cannot be read); `rev` defaults
        to the run's own (the one its claim gave it)."""
        now = self.clock.now_us()
        if rev is None:
            rev = run.rev
        if auto is None:
            failed = f"version {run.version} cannot be read"
            return (
                replace(run, status="failed", reason=failed, due_us=None, ended_us=now),
                rev,
                False,
                True,
            )
        try:
            advanced = await advance(auto, run, now, self.env)
        except StepFailed as exc:  # a failure outside a step (the cancel look-back)
            advanced = replace(run, status="failed", reason=str(exc), due_us=None, ended_us=now)
        # rows exist only for cancel_on, a wait_for the run was (or now is) in, and a digest
        had = auto.keeps_wait_rows
        return advanced, rev, had and waiting_on(auto, advanced) is not None, had


def schedule_event(tenant_id: str, auto: Automation, fire_us: int, now: int) -> Event:
    """The event a schedule's fire stores as its run's trigger (id derived from the fire)."""
    assert auto.schedule is not None
    digest = effect_id(f"{tenant_id}\x00{auto.name}", str(fire_us), "sched")
    return Event(
        tenant_id=tenant_id,
        id=digest,
        type=SCHEDULE_EVENT_TYPE,
        version=None,
        time_us=fire_us,
        received_us=now_us(),
        source="switchboard",
        subject=auto.name,
        actor_id=f"automation:{auto.name}",
        actor_type="system",
        trace_id=new_id().replace("-", ""),
        correlation_id=None,
        causation_id=None,
        context={"automation": auto.name},
        data={
            "automation": auto.name,
            "scheduled_at": format_us(fire_us),
            "fired_at": format_us(now),
            "schedule": auto.schedule.cron,
            "timezone": auto.schedule.timezone,
        },
    )
