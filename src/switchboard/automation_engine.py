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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from switchboard.automation_runs import Env, Run, StepFailed, advance, effect_id, waiting_on
from switchboard.automations import (
    Automation,
    AutomationError,
    Correlation,
    Op,
    correlation_key,
    parse_automation,
)
from switchboard.envelope import Event, new_id, now_us
from switchboard.router import Route
from switchboard.shared import SharedLoads
from switchboard.store import CommitHook
from switchboard.store.automations import AutomationStore, RunStart, Wake, dedupe_key
from switchboard.store.deliveries import DELIVERY_COLUMNS

if TYPE_CHECKING:
    from switchboard.hub import Hub

log = logging.getLogger("switchboard.automations")
_TTL = 1.0  # seconds a tenant's automations are cached; a change reaches every node within it
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

    def __init__(self, store: AutomationStore, max_running: int = 100_000) -> None:
        self.store = store
        self.max_running = max_running
        self._current: dict[str, tuple[float, list[Automation]]] = {}
        self._loads: SharedLoads[str, list[Automation]] = SharedLoads()
        self._running: dict[str, tuple[float, int]] = {}  # tenant → (expires, running runs)
        self._routes: dict[str, list[Route]] = {}  # tenant → its send steps' transforms
        self._versions: dict[tuple[str, str, int], Automation | None] = {}

    async def _load(self, tenant_id: str) -> list[Automation]:
        self._routes[tenant_id] = await self._transform_routes(tenant_id)
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
            for op in auto.ops if auto is not None else ():
                if op.kind == "send" and op.transform:
                    out.append(
                        Route(
                            id=send_route_id(name, version, op.id),
                            tenant_id=tenant_id,
                            name=f"automation {name} v{version} step {op.id}",
                            types=(),
                            transform=op.transform,
                            enabled=False,
                        )
                    )
        return out

    async def running(self, tenant_id: str) -> int:
        """The tenant's running runs, counted at most every second."""
        now = time.monotonic()
        hit = self._running.get(tenant_id)
        if hit is None or hit[0] <= now:
            hit = (now + _TTL, await self.store.count_running(tenant_id))
            self._running[tenant_id] = hit
        return hit[1]

    async def plans(self, tenant_id: str, events: list[Event]) -> list[list[CommitHook]]:
        autos = await self.automations(tenant_id)
        if not autos:
            return [[] for _ in events]
        refused = None
        if (running := await self.running(tenant_id)) >= self.max_running:
            refused = (
                f"the tenant has {running} runs running; the limit is {self.max_running} "
                "(SWITCHBOARD_AUTOMATION_MAX_RUNNING)"
            )
        return [plan_event(autos, e, refused) for e in events]


def plan_event(
    automations: list[Automation], event: Event, refused: str | None = None
) -> list[CommitHook]:
    """The runs an event starts and the waiting runs it wakes, written in its commit."""
    if event.status == "quarantined" or event.context.get("duplicate_of") is not None:
        return []
    doc = event.match_doc()
    hooks: list[CommitHook] = []
    for auto in automations:
        if not auto.triggered_by(doc):
            continue
        dedupe = None
        if auto.dedupe_path is not None:
            dedupe = dedupe_key(doc, auto.dedupe_path, auto.dedupe_window_us, event.received_us)
        cancel = []
        for corr in auto.cancel_on:
            key = correlation_key(doc, corr.paths)
            if key is not None:
                cancel.append((corr.type, key))
        hooks.append(
            RunStart(
                new_id(), event.tenant_id, auto.name, auto.version, dedupe, tuple(cancel), refused
            )
        )
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for auto in automations:
        for corr in auto.awaited():
            if corr.type != event.type or (corr.type, corr.paths) in seen:
                continue
            seen.add((corr.type, corr.paths))
            key = correlation_key(doc, corr.paths)
            if key is not None:
                hooks.append(Wake(event.tenant_id, event.type, key))
    return hooks


class StoreEnv:
    """The interpreter's effects on the hub: look-backs and waits in the store, sends as
    ordinary deliveries, emits through ingest (the catalog validates them)."""

    def __init__(self, hub: Hub, automations: AutomationStore) -> None:
        self.hub = hub
        self.store = automations

    async def watch(self, run: Run, awaited: Correlation, key: str) -> None:
        await self.store.watch(run, awaited, key)

    async def find(self, run: Run, awaited: Correlation, key: str) -> dict[str, Any] | None:
        return await self.store.find(run.tenant_id, run.trigger_seq, awaited, key)

    async def send(self, run: Run, op: Op) -> str:
        assert op.destination is not None
        dest = await self.hub.deliveries.get_destination(run.tenant_id, op.destination)
        if dest is None:
            raise StepFailed(f"step {op.id}: no destination {op.destination!r} in this tenant")
        delivery_id = effect_id(run.id, op.id, "dlv")
        route_id = send_route_id(run.automation, run.version, op.id) if op.transform else None
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
        # unique per (run, step): a step run again after a crash finds its delivery made
        await self.hub.store.execute(_INSERT_SEND, params)
        self.hub._wake_worker()  # the hub's one wake-up for new deliveries
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


class Engine:
    """Claims due runs and advances them; one per `serve`/`worker` process."""

    def __init__(
        self,
        hub: Hub,
        automations: AutomationStore,
        cache: AutomationCache,
        clock: Any = None,
        *,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        batch: int = 100,
    ) -> None:
        self.store = automations
        self.cache = cache
        self.clock = clock or SystemClock()
        self.env: Env = StoreEnv(hub, automations)
        self.lease_us = int(lease_s * 1_000_000)
        self.poll_s = poll_s
        self.batch = batch
        self.wakeup = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        while not self._stopping:
            try:
                n = await self.tick()
            except Exception:
                log.exception("automation tick failed", extra={"action": "automation_tick"})
                n = 0
            if n:
                continue
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.poll_s)

    async def stop(self) -> None:
        self._stopping = True
        self.wakeup.set()

    async def tick(self) -> int:
        """Advance every run due now (a batch: one read, one write transaction); how many were
        claimed."""
        claimed = await self.store.claim(self.clock.now_us(), self.lease_us, self.batch)
        if not claimed:
            return 0
        runs = await self.store.load_many([run_id for run_id, _ in claimed])
        results: list[tuple[Run, int, bool, bool]] = []
        for run_id, rev in claimed:
            run = runs.get(run_id)
            if run is None or run.rev != rev:
                continue  # changed since the claim (cancelled, woken): whoever changed it decides
            try:
                results.append(await self.advance(run, rev))
            except Exception:  # a bug or an outage: the claim's lease brings the run back
                log.exception(
                    "automation run failed to advance",
                    extra={"action": "automation_error", "run_id": run_id},
                )
        saved = await self.store.save_many(results, self.clock.now_us())
        debug = log.isEnabledFor(logging.DEBUG)
        for (run, *_), ok in zip(results, saved, strict=True):
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
                        "event_id": run.trigger.get("id"),
                        "trace_id": run.trigger.get("trace_id"),
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
                        "trace_id": run.trigger.get("trace_id"),
                    },
                )
        return len(claimed)

    async def advance(self, run: Run, rev: int) -> tuple[Run, int, bool, bool]:
        """The run advanced on its pinned version: (run, claimed rev, waits for an event now,
        may have wait rows to delete)."""
        now = self.clock.now_us()
        auto = await self.cache.version(run.tenant_id, run.automation, run.version)
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
        # rows exist only for cancel_on and for a wait_for the run was (or now is) in
        had = bool(auto.cancel_on) or any(op.awaited is not None for op in auto.ops)
        return advanced, rev, waiting_on(auto, advanced) is not None, had
