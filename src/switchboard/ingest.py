"""Accept a batch of submitted events: validate envelope and data, deduplicate, append durably,
and answer per event (accepted / duplicate / rejected)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson

from switchboard import logs
from switchboard.envelope import EnvelopeError, Event, build_event, format_us, now_us
from switchboard.metrics import OTHER
from switchboard.patterns import Pattern, match
from switchboard.people import PeopleSpec, consent_of, profile_of, recipient_problem
from switchboard.records import NewDelivery, Wake
from switchboard.registry import Registry, Verdict
from switchboard.router import Route, RouteCache, plan
from switchboard.store import Planned, Store, Tenant
from switchboard.store.automations import RunStart
from switchboard.store.people import Effect, record_consent, upsert_profile

if TYPE_CHECKING:
    from switchboard.metrics import Metrics
    from switchboard.tracing import Tracing

log = logging.getLogger("switchboard.ingest")


class AutomationPlans(Protocol):
    """The runs a batch starts and wakes, written in its commit (`automation_engine.AutomationCache`
    in the hub; declared here so ingest does not import the engine that runs above it)."""

    async def plans(self, tenant_id: str, events: list[Event]) -> list[list[Planned]]: ...

    def cached_plans(self, tenant_id: str, events: list[Event]) -> list[list[Planned]] | None:
        """`plans` from the cache alone, without a coroutine; None when it cannot answer, []
        when the events start and wake nothing."""
        ...

    def none_cached(self, tenant_id: str) -> bool:
        """Known (within the cache's expiry) to have no automation: nothing to plan."""
        ...


class IngestResult(msgspec.Struct, frozen=True):
    """A request's answer (a Struct: one is made per request, and a frozen dataclass's
    __init__ is Python)."""

    results: list[dict[str, Any]]
    accepted: int
    duplicates: int
    rejected: int

    @property
    def all_rejected(self) -> bool:
        return self.rejected == len(self.results) and self.rejected > 0

    def body(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }


def outside_constraints(constraint: Pattern) -> str:
    """Why an event of a constrained key is refused (the constraints are the tenant's own)."""
    spec = orjson.dumps(constraint.spec).decode()
    return f"the event does not satisfy this API key's constraints {spec}"


def routable(routes: list[Route], event: Event) -> list[NewDelivery]:
    """The deliveries an accepted event makes. Quarantined events and business duplicates
    (context.duplicate_of) are stored but never routed."""
    if event.status == "quarantined" or event.context.get("duplicate_of") is not None:
        return []
    return [
        NewDelivery(
            tenant_id=event.tenant_id,
            event_seq=0,  # set by the store once the event has its seq
            destination_id=p.destination_id,
            route_id=p.route_id,
            priority=p.priority,
            ordering_key=p.ordering_key,
            due_us=event.received_us,
        )
        for p in plan(routes, event)
    ]


def people_effects(
    dialect: str, spec: PeopleSpec, event: Event, routes: list[Route]
) -> list[Effect]:
    """The recipient writes an accepted event makes (profile fields, a consent record), run in
    its append transaction. The recipient is the event's subject; without one, nothing."""
    if not event.subject or recipient_problem(event.subject) is not None:
        return []
    doc = event.to_json()
    now = now_us()
    out: list[Effect] = []
    fields, attributes = profile_of(spec, doc)
    if fields or attributes:
        out.append(upsert_profile(dialect, event.tenant_id, event.subject, fields, attributes, now))
    record = consent_of(spec, doc, event.time_us)
    if record is not None:
        cancel = [r.id for r in routes if record.purpose in r.requires_consent]
        out += record_consent(
            event.tenant_id, event.subject, record, now, event_id=event.id, cancel_routes=cancel
        )
    return out


def wakes(plans: list[list[Planned]]) -> tuple[bool, bool]:
    """What a commit of these plans leaves to do: (deliveries for the worker, runs for the
    engine). A run ended in the commit itself (its program all leading sends) leaves nothing."""
    deliveries = runs = False
    for hooks in plans:
        for hook in hooks:
            if isinstance(hook, Wake):
                continue  # the store wakes the engine if the commit made a waiting run due
            if isinstance(hook, RunStart):
                deliveries = deliveries or hook.delivers
                runs = runs or not hook.ends
            else:
                deliveries = True
    return deliveries, runs


class Ingestor:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        routes: RouteCache | None = None,
        on_routed: Callable[[], None] | None = None,
        automations: AutomationPlans | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        on_woken: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.store = store
        self.registry = registry
        self.routes = routes
        self.on_routed = on_routed  # new deliveries were committed (the delivery worker looks)
        self.on_woken = on_woken  # runs were started that the engine has to advance
        self.automations = automations

    async def ingest(
        self,
        raws: list[Any],
        tenant: Tenant,
        default_source: str,
        quarantine_rejected: bool = False,
        trace: tuple[str, str] | None = None,
        constraint: Pattern | None = None,
    ) -> IngestResult:
        """Validate, deduplicate and append `raws`. With `quarantine_rejected`, an event the
        catalog refuses (unknown type or version, schema violation) is stored quarantined instead
        of answered as rejected: for senders that cannot read per-event results (Segment).
        `trace` is the ingest span's (trace id, traceparent) when tracing is on: events without
        a trace id take it, and keep the traceparent in their context for their attempts.
        With `constraint` (the sending key's), an event that does not match it is rejected."""
        received = now_us()
        results: list[dict[str, Any]] = [{} for _ in raws]
        to_store: list[tuple[int, Event]] = []
        feeds: dict[int, PeopleSpec] = {}  # position in to_store -> its type's people keys
        # (outcome, type label) -> events, for /metrics: only catalog types name their series
        counts: dict[tuple[str, str], int] = {}
        labels: list[str] = []  # the type label of each event in to_store
        for index, raw in enumerate(raws):
            try:
                event = build_event(
                    raw,
                    tenant_id=tenant.id,
                    default_source=default_source,
                    received_us=received,
                    default_trace_id=trace[0] if trace else None,
                )
                if trace and event.trace_id == trace[0] and "traceparent" not in event.context:
                    event = msgspec.structs.replace(
                        event, context={**event.context, "traceparent": trace[1]}
                    )
            except EnvelopeError as exc:
                results[index] = {"index": index, "status": "rejected", "errors": exc.errors}
                counts["rejected", OTHER] = counts.get(("rejected", OTHER), 0) + 1
                continue
            if constraint is not None and not match(constraint, event.match_doc()):
                results[index] = {
                    "index": index,
                    "status": "rejected",
                    "id": event.id,
                    "errors": [{"path": "", "message": outside_constraints(constraint)}],
                }
                continue
            verdict = await self.registry.validate(event, tenant.unknown_types)
            if verdict.status == "rejected" and quarantine_rejected:
                verdict = Verdict(
                    "quarantined", verdict.version, verdict.errors, catalogued=verdict.catalogued
                )
            label = event.type if verdict.catalogued else OTHER
            if verdict.status == "rejected":
                counts["rejected", label] = counts.get(("rejected", label), 0) + 1
                results[index] = {
                    "index": index,
                    "status": "rejected",
                    "id": event.id,
                    "errors": verdict.errors,
                }
                continue
            if verdict.people is not None and verdict.status != "quarantined":
                feeds[len(to_store)] = verdict.people
            labels.append(label)
            if verdict.status != "accepted" or verdict.errors or verdict.version != event.version:
                event = msgspec.structs.replace(
                    event, version=verdict.version, status=verdict.status, errors=verdict.errors
                )
            # (else the event is already what would be stored: accepted, as sent, no errors)
            to_store.append((index, event))
        plans: list[list[Planned]] | None = None
        routes: list[Route] = []
        if self.routes is not None and to_store:
            cached = self.routes.cached(tenant.id)
            routes = cached if cached is not None else await self.routes.routes(tenant.id)
            if routes:
                if self.tracing is not None and self.tracing.enabled:
                    with self.tracing.span("switchboard.route", routes=len(routes)) as span:
                        plans = [list(routable(routes, e)) for _, e in to_store]
                        span.set_attribute("deliveries", sum(len(p) for p in plans))
                else:
                    plans = [list(routable(routes, e)) for _, e in to_store]
        if feeds:  # only types that declare profile/consent pay for this
            plans = plans or [[] for _ in to_store]
            for pos, spec in feeds.items():
                plans[pos] += people_effects(self.store.dialect, spec, to_store[pos][1], routes)
        autos = self.automations
        events = [e for _, e in to_store]
        if autos is not None and events:
            # the runs the events start (and the runs they wake) commit with them, as routes do;
            # from the cache alone when it can answer ([] when they start and wake nothing)
            starts = autos.cached_plans(tenant.id, events)
            if starts is None:
                starts = await autos.plans(tenant.id, events)
            if starts:  # [] when the events start and wake nothing
                plans = (
                    starts
                    if plans is None
                    else [[*p, *s] for p, s in zip(plans, starts, strict=True)]
                )
        appended = await self.store.append(events, plans) if events else []
        if plans:
            # each wakes only for what it has to do: a commit that only woke waiting runs has
            # no delivery for the worker (the store wakes the engine itself when it made runs
            # due, store.on_woken), and one that only routed leaves no run to the engine
            deliveries, runs = wakes(plans)
            if deliveries and self.on_routed is not None:
                self.on_routed()
            if runs and self.on_woken is not None:
                self.on_woken()
        accepted = duplicates = 0
        for (index, event), res, label in zip(to_store, appended, labels, strict=True):
            outcome = event.status if res.status == "accepted" else "duplicate"
            counts[outcome, label] = counts.get((outcome, label), 0) + 1
            if res.status == "accepted":
                accepted += 1
                out: dict[str, Any] = {"index": index, "status": "accepted", "id": event.id}
                if event.status != "accepted":
                    out["validation"] = event.status
                    out["warnings"] = event.errors
            else:
                duplicates += 1
                out = {
                    "index": index,
                    "status": "duplicate",
                    "id": event.id,
                    "original_received_at": format_us(res.received_us),
                }
            results[index] = out
        rejected = len(raws) - accepted - duplicates
        if self.metrics is not None:
            self.metrics.ingested(tenant.id, counts)
        if len(to_store) == 1:  # the usual request: one event, no lists to sort and cut
            event_ids = [to_store[0][1].id]
            trace_ids = [to_store[0][1].trace_id]
        else:
            event_ids = [e.id for _, e in to_store][:50]
            trace_ids = sorted({e.trace_id for _, e in to_store})[:10]
        logs.info(
            log,
            "ingested",
            {
                "action": "ingest",
                "tenant_id": tenant.id,
                "accepted": accepted,
                "duplicates": duplicates,
                "rejected": rejected,
                "event_ids": event_ids,
                "trace_ids": trace_ids,
            },
        )
        return IngestResult(results, accepted, duplicates, rejected)
