"""What an operator looks at: `/metrics` (Prometheus), `/status` (each component, 200 or 503),
one trace's timeline and delivery statistics over a window."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType, field
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    Model,
    Params,
    Raw,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.auth import Principal, within_constraints
from switchboard.envelope import EnvelopeError, format_us, now_us, parse_time
from switchboard.errors import BadRequest, NotFound
from switchboard.hub import Hub
from switchboard.metrics import CONTENT_TYPE, Snapshot, gauges
from switchboard.store import Scope
from switchboard.store.observe import Trace as TraceRecord

_WINDOW_MAX_US = 31 * 86_400_000_000  # delivery statistics cover at most 31 days
TRACE_ID_MAX = 255
_OPERATOR = "An admin key or SWITCHBOARD_METRICS_TOKEN as a bearer token."
DateTime = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Count = Annotated[int, Meta(ge=0)]


# a query parameter holding an ISO 8601 time (read by `query_time_of`)
TimeParam = Annotated[str, Meta(max_length=64, extra_json_schema={"format": "date-time"})]


def query_time_of(value: str | UnsetType, name: str) -> int | None:
    """A time query parameter in microseconds (a `+` of its offset may arrive as a space)."""
    if isinstance(value, UnsetType):
        return None
    try:
        return parse_time(value.replace(" ", "+"), name)
    except EnvelopeError as exc:
        message = exc.errors[0]["message"]
        raise BadRequest(
            f"query parameter '{name}' {message}",
            details=[{"path": f"?{name}", "message": message}],
        ) from None


# --- /status ---------------------------------------------------------------------------------


class StoreState(Model):
    ok: bool
    backend: str | UnsetType = UNSET
    error: Annotated[str, Meta(description="Why the store could not be read.")] | UnsetType = UNSET


class WorkersState(Model):
    ok: bool
    alive: Annotated[Count, Meta(description="Workers with a recent heartbeat.")]


class BacklogState(Model):
    ok: bool
    due: Count
    oldest_due_seconds: float
    max_age_seconds: float


class DlqState(Model):
    ok: bool
    size: Count
    growth: Annotated[Count, Meta(description="Dead-lettered within the window.")]
    window_seconds: float


class DestinationsState(Model):
    ok: Annotated[bool, Meta(description="Always true: a disabled destination is the tenant's.")]
    disabled: Count


class BreakersState(Model):
    ok: bool
    open: Count


class Components(Model):
    """Each component's state; without a store, only the store's."""

    store: StoreState
    workers: WorkersState | UnsetType = UNSET
    backlog: BacklogState | UnsetType = UNSET
    dlq: DlqState | UnsetType = UNSET
    destinations: DestinationsState | UnsetType = UNSET
    breakers: BreakersState | UnsetType = UNSET


class HubStatus(Model):
    status: Literal["ok", "failing"]
    components: Components


# --- traces ----------------------------------------------------------------------------------

# The event, delivery and attempt shapes are the events and deliveries areas' own components.
StoredEventJson = Annotated[
    dict[str, Any], Meta(extra_json_schema={"$ref": "#/components/schemas/StoredEvent"})
]
DeliveryJson = Annotated[
    dict[str, Any], Meta(extra_json_schema={"$ref": "#/components/schemas/Delivery"})
]
AttemptJson = Annotated[
    dict[str, Any], Meta(extra_json_schema={"$ref": "#/components/schemas/Attempt"})
]


class TracePath(Params):
    trace_id: Annotated[
        str, Meta(min_length=1, max_length=TRACE_ID_MAX, description="The trace id.")
    ]


class TracedEvent(Model, tag_field="kind", tag="event"):
    at: DateTime
    event: StoredEventJson


class TracedDelivery(Model, tag_field="kind", tag="delivery"):
    at: DateTime
    event_id: str
    delivery: DeliveryJson


class TracedAttempt(Model, tag_field="kind", tag="attempt"):
    at: DateTime
    delivery_id: str
    destination_id: str
    attempt: AttemptJson


class TracedRun(Model):
    id: str
    automation: str
    version: int
    status: str
    reason: str | None
    event_id: Annotated[str, Meta(description="The event that started it.")]
    ended_at: DateTime | None


class TracedAutomationRun(Model, tag_field="kind", tag="automation_run"):
    at: DateTime
    run: TracedRun


TimelineItem = TracedEvent | TracedDelivery | TracedAttempt | TracedAutomationRun


class Trace(Model):
    trace_id: str
    events: Count
    deliveries: Count
    attempts: Count
    automation_runs: Count
    truncated: Annotated[bool, Meta(description="More events than one trace shows.")]
    timeline: list[TimelineItem]


# --- delivery statistics ---------------------------------------------------------------------


class DeliveryMetricsQuery(Params):
    from_: (
        Annotated[
            TimeParam, Meta(description="Attempts at or after (default: 24 hours before `to`).")
        ]
        | UnsetType
    ) = field(name="from", default=UNSET)
    to: Annotated[TimeParam, Meta(description="Attempts before (default: now).")] | UnsetType = (
        UNSET
    )
    destination_id: (
        Annotated[str, Meta(min_length=1, max_length=200, description="Only this destination.")]
        | UnsetType
    ) = UNSET


class Latency(Model):
    p50: float
    p95: float
    mean: float


class DeliveryStats(Model):
    destination_id: str
    type: str
    deliveries: Count
    attempts: Count
    succeeded: Count
    failed: Count
    success_rate: Annotated[float, Meta(ge=0, le=1)]
    retries: Annotated[Count, Meta(description="Attempts after a delivery's first.")]
    latency_ms: Latency


class DeliveryMetrics(Model):
    from_: DateTime = field(name="from")
    to: DateTime
    truncated: bool
    data: list[DeliveryStats]


async def _operator(request: Request) -> None:
    """`/metrics` and `/status` span every tenant: an admin key, or the metrics token."""
    token = hub(request).settings.metrics_token
    header = request.headers.get("authorization", "")
    if (
        token
        and header.startswith("Bearer ")
        and hmac.compare_digest(header[7:].strip().encode(), token.encode())
    ):
        return
    await principal(request, Scope.ADMIN)


async def snapshot(h: Hub) -> Snapshot:
    s = h.settings
    return await h.observe.snapshot(
        now_us(), int(s.alert_window * 1e6), int(3 * s.heartbeat_seconds * 1e6)
    )


@endpoint(
    "GET /metrics",
    "prometheusMetrics",
    "health",
    "Prometheus metrics",
    "Counters and histograms of this process (of every local process with "
    f"PROMETHEUS_MULTIPROC_DIR) and gauges read from the store. {_OPERATOR}",
    scope="admin",
    ok={200: (Raw("text/plain; version=0.0.4"), "The Prometheus text format.")},
)
async def metrics_page(request: Request) -> Response:
    await _operator(request)
    h = hub(request)
    snap = await snapshot(h)
    body = h.metrics.exposition(gauges(snap, h.metrics.tenant_labels))
    return Response(body, media_type=CONTENT_TYPE)


def components(h: Hub, snap: Snapshot | None, error: str | None) -> Components:
    """Each component's state for `/status`; `ok` False makes the answer 503."""
    if snap is None:
        return Components(store=StoreState(ok=False, error=error or "unknown"))
    s = h.settings
    age = snap.backlog_age()
    growth = sum(snap.dead_recent.values())
    return Components(
        store=StoreState(ok=True, backend=h.store.backend),
        workers=WorkersState(ok=snap.workers_alive > 0, alive=snap.workers_alive),
        backlog=BacklogState(
            ok=age <= s.status_max_backlog_age,
            due=sum(snap.due.values()),
            oldest_due_seconds=round(age, 3),
            max_age_seconds=s.status_max_backlog_age,
        ),
        dlq=DlqState(
            ok=growth < s.alert_dlq_growth,
            size=sum(snap.dead.values()),
            growth=growth,
            window_seconds=s.alert_window,
        ),
        # a disabled destination is the tenant's to fix: reported, never a 503
        destinations=DestinationsState(ok=True, disabled=sum(snap.disabled.values())),
        breakers=BreakersState(ok=True, open=snap.open_breakers),
    )


@endpoint(
    "GET /status",
    "status",
    "health",
    "Component status",
    "The store, live workers (by heartbeat), the due backlog, DLQ growth, disabled "
    f"destinations and open breakers; 503 when any is failing. {_OPERATOR}",
    scope="admin",
    ok={
        200: (HubStatus, "Every component is ok."),
        503: (HubStatus, "At least one component is failing."),
    },
)
async def status(request: Request) -> Response:
    await _operator(request)
    h = hub(request)
    snap: Snapshot | None = None
    error = None
    try:
        snap = await snapshot(h)
    except Exception as exc:  # any store failure is the store component's state
        error = f"{type(exc).__name__}: {exc}"[:300]
    parts = components(h, snap, error)
    states = (getattr(parts, f) for f in parts.__struct_fields__)
    ok = all(state.ok for state in states if state is not UNSET)
    return respond(
        HubStatus(status="ok" if ok else "failing", components=parts), 200 if ok else 503
    )


@endpoint(
    "GET /v1/traces/{trace_id}",
    "getTrace",
    "events",
    "A trace's timeline",
    "The events of one trace (the hub's own delivery events included), their deliveries, "
    "attempts and the automation runs they started, in time order (each item names its kind).",
    scope="read",
    path=TracePath,
    ok={200: (Trace, "OK")},
    errors=(404,),
)
async def trace(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    trace_id = decode_path(request, TracePath).trace_id
    t = narrowed(await hub(request).observe.trace(p.tenant(), trace_id), p)
    if not t.events:
        raise NotFound(f"no event with trace_id {trace_id!r} in this tenant")
    return respond(
        Trace(
            trace_id=trace_id,
            events=len(t.events),
            deliveries=len(t.deliveries),
            attempts=len(t.attempts),
            automation_runs=len(t.runs),
            truncated=t.truncated,
            timeline=timeline(t),
        )
    )


def narrowed(t: TraceRecord, p: Principal) -> TraceRecord:
    """The part of a trace a key may see: the events its constraints match, and the
    deliveries, attempts and runs of those events (the whole trace for a key without)."""
    if p.constraint is None:
        return t
    events = [e for e in t.events if within_constraints(p, e)]
    seqs = {e.seq for e in events}
    deliveries = [d for d in t.deliveries if d.event_seq in seqs]
    ids = {d.id for d in deliveries}
    return TraceRecord(
        events,
        deliveries,
        [a for a in t.attempts if a.delivery_id in ids],
        [r for r in t.runs if r["trigger_seq"] in seqs],
        t.truncated,
    )


def timeline(t: TraceRecord) -> list[TimelineItem]:
    """The trace's events, deliveries, attempts and automation runs as one list in time order,
    each item naming its kind (the answer of `GET /v1/traces/{trace_id}`, and the dashboard's
    trace page)."""
    by_seq = {e.seq: e for e in t.events}
    by_id = {d.id: d for d in t.deliveries}
    items: list[tuple[int, int, TimelineItem]] = []
    for e in t.events:
        items.append(
            (e.received_us, 0, TracedEvent(at=format_us(e.received_us), event=e.to_json()))
        )
    for d in t.deliveries:
        item = TracedDelivery(
            at=format_us(d.created_us), event_id=by_seq[d.event_seq].id, delivery=d.to_json()
        )
        items.append((d.created_us, 1, item))
    for a in t.attempts:
        attempt = TracedAttempt(
            at=format_us(a.started_us),
            delivery_id=a.delivery_id,
            destination_id=by_id[a.delivery_id].destination_id,
            attempt=a.to_json(),
        )
        items.append((a.started_us, 2, attempt))
    for r in t.runs:
        run = TracedRun(
            id=r["id"],
            automation=r["automation"],
            version=r["version"],
            status=r["status"],
            reason=r["reason"],
            event_id=by_seq[r["trigger_seq"]].id,
            ended_at=format_us(r["ended_us"]) if r["ended_us"] is not None else None,
        )
        items.append(
            (r["created_us"], 3, TracedAutomationRun(at=format_us(r["created_us"]), run=run))
        )
    items.sort(key=lambda i: (i[0], i[1]))
    return [i[2] for i in items]


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-1) by the nearest-rank method; the list is sorted."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def delivery_stats(rows: list[Any]) -> list[DeliveryStats]:
    """Per (destination, event type): attempts, successes, success rate, retries (attempts
    after a delivery's first), deliveries, p50/p95/mean latency in milliseconds."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.destination_id, r.type), []).append(r)
    out = []
    for (dest, etype), rs in sorted(groups.items()):
        lat = sorted(r.latency_ms for r in rs)
        ok = sum(1 for r in rs if r.ok)
        out.append(
            DeliveryStats(
                destination_id=dest,
                type=etype,
                deliveries=len({r.delivery_id for r in rs}),
                attempts=len(rs),
                succeeded=ok,
                failed=len(rs) - ok,
                success_rate=round(ok / len(rs), 4),
                retries=sum(1 for r in rs if r.n > 1),
                latency_ms=Latency(
                    p50=round(percentile(lat, 0.5), 2),
                    p95=round(percentile(lat, 0.95), 2),
                    mean=round(sum(lat) / len(lat), 2),
                ),
            )
        )
    return out


@endpoint(
    "GET /v1/metrics/deliveries",
    "deliveryMetrics",
    "deliveries",
    "Delivery statistics",
    "Attempts per destination and event type over a window (default: the last 24 hours, at "
    "most 31 days): success rate, retries, p50/p95/mean latency.",
    scope="read",
    query=DeliveryMetricsQuery,
    ok={200: (DeliveryMetrics, "OK")},
)
async def deliveries_metrics(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    q = decode_query(request, DeliveryMetricsQuery)
    to_us = query_time_of(q.to, "to") or now_us()
    from_us = query_time_of(q.from_, "from") or (to_us - 86_400_000_000)
    if from_us >= to_us:
        raise BadRequest(
            "query parameter 'from' must be before 'to'",
            details=[{"path": "?from", "message": "must be before 'to'"}],
        )
    if to_us - from_us > _WINDOW_MAX_US:
        raise BadRequest(
            "query parameters 'from' and 'to' span more than 31 days",
            details=[{"path": "?from", "message": "more than 31 days before 'to'"}],
        )
    rows, truncated = await hub(request).observe.attempt_rows(
        p.tenant(), from_us, to_us, q.destination_id or None
    )
    return respond(
        DeliveryMetrics(
            from_=format_us(from_us),
            to=format_us(to_us),
            truncated=truncated,
            data=delivery_stats(rows),
        )
    )


routes = routes_of(metrics_page, status, trace, deliveries_metrics)
