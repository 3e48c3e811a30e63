"""Event endpoints: ingest, lookups, listings, timelines, metrics, quarantine."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import msgspec
import orjson
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import (
    MAX_TYPE_GLOBS,
    IngestAnswer,
    filter_of,
    hub,
    media_type,
    principal,
    read_body,
    read_json,
    read_raw,
    sealed_filter,
    type_glob_problem,
    within,
)
from switchboard.api.contract import (
    Raw,
    decode_headers,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.contract_extra import SubjectPath
from switchboard.api.event_shapes import (
    CLINIC,
    LEGAL,
    MAX_BATCH,
    NATIVE,
    ActorPath,
    Bucket,
    CloudEvent,
    CloudEventBatch,
    EventBatch,
    EventPage,
    EventPath,
    EventsQuery,
    IngestHeaders,
    IngestResponse,
    Listing,
    Metrics,
    MetricsQuery,
    QuarantineQuery,
    Resubmitted,
    SourceQuery,
    StillQuarantined,
    StoredEvent,
    TimelineQuery,
    TypeCount,
    error_detail,
    stored_event,
)
from switchboard.auth import Principal, within_constraints
from switchboard.envelope import EnvelopeError, format_us, now_us, parse_time
from switchboard.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from switchboard.hub import Hub
from switchboard.ingest import IngestResult
from switchboard.patterns import Pattern, both
from switchboard.sources import cloudevents
from switchboard.store import Cursor, EventQuery, Scope

TAG = "events"
GRANULARITY_US = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
# the range asked without `from`: a day of minutes, else a week
DEFAULT_RANGE_US = {"minute": 86_400_000_000, "hour": 7 * 86_400_000_000, "day": 7 * 86_400_000_000}
T = TypeVar("T")
_idempotency_locks: dict[tuple[str, str], asyncio.Lock] = {}
_INGEST = Scope.INGEST  # (a StrEnum member read off its class is a descriptor call in 3.11)


def _opt(value: T | UnsetType) -> T | None:
    return None if isinstance(value, UnsetType) else value


# --- ingest ---------------------------------------------------------------------------------------


@endpoint(
    "POST /v1/events",
    "ingestEvents",
    TAG,
    "Send events",
    f"Accept one event or a batch (at most {MAX_BATCH} events, 1 MiB): native envelopes, the "
    "legacy BaseEvent/emitEvent shapes, or CloudEvents (structured, batch or binary mode). "
    "Each event is answered at its index; 422 when every one is rejected. CloudEvents binary "
    "mode: a `ce-specversion: 1.0` header, the other attributes as `ce-*` headers "
    "(percent-encoded; ce-id, ce-source and ce-type required), the body (any media type, or "
    "none) the event's data.",
    scope="ingest",
    headers=IngestHeaders,
    body={
        "application/json": (NATIVE, LEGAL, CLINIC, EventBatch),
        cloudevents.STRUCTURED: CloudEvent,
        cloudevents.BATCH: CloudEventBatch,
        "*/*": Raw("*/*", {"description": "CloudEvents binary mode: the data, with ce-* headers."}),
    },
    ok={
        202: (
            IngestResponse,
            "Processed; see each result. A stored response for a repeated Idempotency-Key "
            "carries the header `Idempotent-Replayed: true`; the same key with another request "
            "(body, media type or ce-* headers) within its time to live is a 409.",
        ),
        422: (IngestResponse, "Every event was rejected; see each result."),
    },
    errors=(400, 404, 409, 413, 415, 429),
)
async def ingest(request: Request) -> Response:
    """POST /v1/events, answered within SWITCHBOARD_INGEST_TIMEOUT: when the store cannot
    confirm the commit in time (a silent network partition, say) the client gets a 503 and
    retries with the same ids, which the store answers as duplicates if they did land."""
    h = hub(request)
    return await within(h.settings.ingest_timeout, ingest_request(request, h))


async def ingest_request(request: Request, h: Hub) -> Response:
    """POST /v1/events' work (`ingest` and the app's fast path each time it)."""
    p = await principal(request, _INGEST)
    tenant_id = p.tenant()
    tenant = await h.tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    if "idempotency-key" not in request.headers:
        return await _ingest(request, h, p, tenant)  # the fast path: no header to decode
    idem_key = _opt(decode_headers(request, IngestHeaders).idempotency_key)
    assert idem_key is not None  # the header is there
    # One request per key at a time in this process; the stored response answers the rest.
    lock = _idempotency_locks.setdefault((tenant_id, idem_key), asyncio.Lock())
    async with lock:
        try:
            fingerprint = await _fingerprint(request, h.settings.max_body_bytes)
            stored = await h.store.get_idempotent(tenant_id, idem_key, now_us())
            if stored is not None:
                if stored[2] is not None and stored[2] != fingerprint:
                    raise Conflict(
                        "this Idempotency-Key was used for a different request within "
                        f"{h.settings.idempotency_ttl} s: send this one with a new key",
                        details=[
                            {
                                "path": "Idempotency-Key",
                                "message": "used before with another body or other ce-* headers",
                            }
                        ],
                    )
                return Response(
                    stored[1],
                    status_code=stored[0],
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
            response = await _ingest(request, h, p, tenant)
            await h.store.put_idempotent(
                tenant_id,
                idem_key,
                response.status_code,
                bytes(response.body),
                now_us() + h.settings.idempotency_ttl * 1_000_000,
                fingerprint,
            )
            return response
        finally:
            if not lock._waiters:
                _idempotency_locks.pop((tenant_id, idem_key), None)


async def _fingerprint(request: Request, limit: int) -> str:
    """What makes two requests the same request: the media type, the encoding, the CloudEvents
    `ce-*` headers (binary mode's attributes) and the body as sent. Reads the body once; the
    ingest after it reads the same bytes again."""
    digest = hashlib.sha256()
    for name in ("content-type", "content-encoding"):
        digest.update(request.headers.get(name, "").encode("latin-1") + b"\n")
    for name, value in sorted(request.scope["headers"]):
        if name.startswith(b"ce-"):
            digest.update(name + b":" + value + b"\n")
    digest.update(await read_raw(request, limit))
    return digest.hexdigest()


async def _ingest(request: Request, h: Any, p: Principal, tenant: Any) -> Response:
    raws = await _read_events(request, h.settings.max_body_bytes)
    if not raws:
        raise BadRequest("the body is an empty array: send at least one event")
    if len(raws) > h.settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(raws)} events in one request; the limit is {h.settings.max_batch_events}"
        )
    h.limiter.check(p.key.id, tenant.id, len(raws))
    source = p.key.source or "default"
    # The answer is IngestResponse's shape; the result dicts are encoded as they are (the hot
    # path), and tests/unit/test_event_shapes.py holds them to the model.
    if not h.tracing.enabled:
        result = await _ingest_mapped(h, raws, tenant, source, constraint=p.constraint)
        return IngestAnswer(result.body(), 422 if result.all_rejected else 202)
    with h.tracing.ingest(request.headers, tenant.id) as span:
        trace_id = h.tracing.trace_id(span)
        ctx = span.get_span_context()
        trace = (trace_id, f"00-{trace_id}-{ctx.span_id:016x}-01")
        result = await _ingest_mapped(h, raws, tenant, source, trace, p.constraint)
        span.set_attributes(
            {
                "switchboard.accepted": result.accepted,
                "switchboard.duplicates": result.duplicates,
                "switchboard.rejected": result.rejected,
            }
        )
    return IngestAnswer(result.body(), 422 if result.all_rejected else 202)


async def _read_events(request: Request, limit: int) -> list[Any]:
    """The submitted events: native JSON, or CloudEvents 1.0 in structured, batched or binary
    mode (mapped onto the envelope; a malformed one stays in place as its EnvelopeError)."""
    media = media_type(request)
    if media == cloudevents.STRUCTURED:
        doc = await read_json(request, limit, (media,), checked=False)
        return [_mapped(lambda: cloudevents.from_structured(doc))]
    if media == cloudevents.BATCH:
        try:
            return cloudevents.from_batch(await read_json(request, limit, (media,), checked=False))
        except EnvelopeError as exc:  # not an array at all: no event to answer for
            raise BadRequest(exc.errors[0]["message"], details=exc.errors) from None
    if cloudevents.is_binary(request.headers):
        body = await _read_binary_body(request, limit)
        return [_mapped(lambda: cloudevents.from_binary(request.headers, body))]
    if media != "application/json":  # `read_json`'s refusal, with its message
        body = await read_json(request, limit, checked=False, media=media)
        return body if isinstance(body, list) else [body]
    # `read_json(request, limit, checked=False, media=media)` inline: one coroutine less for
    # the request nearly every event comes in
    raw = await read_body(request, limit)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    return doc if isinstance(doc, list) else [doc]


async def _read_binary_body(request: Request, limit: int) -> bytes:
    """A binary-mode event's body. Its `ce-*` headers become attributes and context, so they
    count toward the event size limit with the body (413 naming the largest header)."""
    sizes = {
        name.decode("latin-1"): len(name) + len(value)
        for name, value in request.scope["headers"]
        if name.startswith(b"ce-")
    }
    headers = sum(sizes.values())
    largest = max(sizes, key=lambda n: sizes[n])  # ce-specversion at least is there
    problem = (
        f"the ce-* headers ({headers} bytes, the largest {largest}) and the body together are "
        f"over the event size limit of {limit} bytes"
    )
    details = [{"path": largest, "message": f"{sizes[largest]} bytes"}]
    if headers >= limit:
        raise PayloadTooLarge(problem, details=details)
    try:
        return await read_body(request, limit - headers)
    except PayloadTooLarge:
        raise PayloadTooLarge(problem, details=details) from None


def _mapped(convert: Any) -> Any:
    try:
        return convert()
    except EnvelopeError as exc:
        return exc


def _ingest_mapped(
    h: Any,
    raws: list[Any],
    tenant: Any,
    source: str,
    trace: tuple[str, str] | None = None,
    constraint: Pattern | None = None,
) -> Awaitable[IngestResult]:
    """Ingest, answering events that failed to map with their errors at their own index. (Not
    a coroutine itself: the usual request, every event mapped, awaits the ingest directly.)"""
    for raw in raws:
        if isinstance(raw, EnvelopeError):
            return _ingest_partly(h, raws, tenant, source, trace, constraint)
    ingested: Awaitable[IngestResult] = h.ingestor.ingest(
        raws, tenant, source, trace=trace, constraint=constraint
    )
    return ingested


async def _ingest_partly(
    h: Any,
    raws: list[Any],
    tenant: Any,
    source: str,
    trace: tuple[str, str] | None,
    constraint: Pattern | None,
) -> IngestResult:
    """`_ingest_mapped` when some events failed to map."""
    failed = {i: r for i, r in enumerate(raws) if isinstance(r, EnvelopeError)}
    kept = [i for i in range(len(raws)) if i not in failed]
    inner = (
        await h.ingestor.ingest(
            [raws[i] for i in kept], tenant, source, trace=trace, constraint=constraint
        )
        if kept
        else None
    )
    results: list[dict[str, Any]] = [
        {"index": i, "status": "rejected", "errors": exc.errors} for i, exc in failed.items()
    ]
    for index, res in zip(kept, inner.results if inner else [], strict=True):
        results.append({**res, "index": index})
    results.sort(key=lambda r: int(r["index"]))
    return IngestResult(
        results,
        inner.accepted if inner else 0,
        inner.duplicates if inner else 0,
        len(failed) + (inner.rejected if inner else 0),
    )


# --- reads ----------------------------------------------------------------------------------------


def _types(values: list[str]) -> tuple[str, ...]:
    """`?type=`, repeated or comma-separated: each an event type or a glob of one."""
    types = tuple(t for raw in values for t in raw.split(",") if t)
    if len(types) > MAX_TYPE_GLOBS:
        _bad("type", f"{len(types)} types or globs; at most {MAX_TYPE_GLOBS}")
    for t in types:
        if (problem := type_glob_problem(t)) is not None:
            _bad("type", problem)
    return types


def _bad(name: str, message: str) -> None:
    raise BadRequest(
        f"query parameter {name!r}: {message}", details=[{"path": f"?{name}", "message": message}]
    )


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value.replace(" ", "+"), name)  # a `+` unescaped in the URL
    except EnvelopeError as exc:
        _bad(name, exc.errors[0]["message"])
        raise  # unreachable: _bad raises


def _event_query(q: Listing, **fixed: Any) -> EventQuery:
    cursor = None
    if q.cursor:
        try:
            cursor = Cursor.decode(str(q.cursor))
        except ValueError as exc:
            _bad("cursor", str(exc))
    params: dict[str, Any] = {
        "types": _types(q.type),
        "source": _opt(q.source),
        "subject": _opt(getattr(q, "subject", UNSET)),
        "actor_id": _opt(getattr(q, "actor", UNSET)),
        "trace_id": _opt(q.trace_id),
        "correlation_id": _opt(q.correlation_id),
        "status": _opt(getattr(q, "status", UNSET)),
        "from_us": _time(_opt(q.from_), "from"),
        "to_us": _time(_opt(q.to), "to"),
        "pattern": filter_of(_opt(q.filter)),
        "cursor": cursor,
        "limit": q.limit,
    }
    params.update(fixed)
    return EventQuery(**params)


async def _page(request: Request, p: Principal, query: EventQuery) -> Response:
    if query.pattern is not None:  # equality on a PII field compares blind tags
        blinded = await sealed_filter(hub(request), p.tenant(), query.pattern, "?filter")
        query = dataclasses.replace(query, pattern=blinded)
    if p.constraint is not None:  # a key limited inside its tenant reads only its part
        query = dataclasses.replace(query, pattern=both(query.pattern, p.constraint))
    events = await hub(request).store.list_events(p.tenant(), query)
    next_cursor = None
    if len(events) == query.limit:
        last = events[-1]
        next_cursor = Cursor(last.time_us, last.seq).encode()
    return respond(EventPage(data=[stored_event(e) for e in events], next_cursor=next_cursor))


PAGE = (EventPage, "A page of events, newest first.")
# each parameter is bounded, but together they can make a request line over
# SWITCHBOARD_MAX_HEADER_BYTES, which the edge answers with a 431
LONG_QUERY = (431,)


@endpoint(
    "GET /v1/events",
    "listEvents",
    TAG,
    "List events",
    "Stored events matching every given filter, newest first.",
    scope="read",
    query=EventsQuery,
    ok={200: PAGE},
    errors=LONG_QUERY,
)
async def list_events(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    return await _page(request, p, _event_query(decode_query(request, EventsQuery)))


@endpoint(
    "GET /v1/events/{event_id}",
    "getEvent",
    TAG,
    "Get an event",
    "One stored event with its validation status.",
    scope="read",
    path=EventPath,
    query=SourceQuery,
    ok={200: (StoredEvent, "OK")},
    errors=(404,),
)
async def get_event(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    event_id = decode_path(request, EventPath).event_id
    source = _opt(decode_query(request, SourceQuery).source)
    event = await hub(request).store.get_event(p.tenant(), event_id, source)
    if event is None or not within_constraints(p, event):
        raise NotFound(f"no event with id {event_id!r} in this tenant")
    return respond(stored_event(event))


@endpoint(
    "GET /v1/subjects/{subject}/timeline",
    "subjectTimeline",
    TAG,
    "A subject's timeline",
    "Every event about one subject (e.g. a customer), newest first.",
    scope="read",
    path=SubjectPath,
    query=TimelineQuery,
    ok={200: PAGE},
    errors=LONG_QUERY,
)
async def subject_timeline(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    subject = decode_path(request, SubjectPath).subject
    query = _event_query(decode_query(request, TimelineQuery), subject=subject)
    return await _page(request, p, query)


@endpoint(
    "GET /v1/actors/{actor}/timeline",
    "actorTimeline",
    TAG,
    "An actor's timeline",
    "Every event one actor caused, newest first.",
    scope="read",
    path=ActorPath,
    query=TimelineQuery,
    ok={200: PAGE},
    errors=LONG_QUERY,
)
async def actor_timeline(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    actor = decode_path(request, ActorPath).actor
    query = _event_query(decode_query(request, TimelineQuery), actor_id=actor)
    return await _page(request, p, query)


@endpoint(
    "GET /v1/metrics/events",
    "eventMetrics",
    TAG,
    "Event counts",
    "Counts per time bucket, type and outcome (default: the last 7 days by hour; at most "
    "10,000 buckets).",
    scope="read",
    query=MetricsQuery,
    ok={200: (Metrics, "OK")},
)
async def metrics(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    q = decode_query(request, MetricsQuery)
    bucket = GRANULARITY_US[q.granularity]
    to_us = _time(_opt(q.to), "to") or now_us()
    from_us = _time(_opt(q.from_), "from") or (to_us - DEFAULT_RANGE_US[q.granularity])
    if from_us >= to_us:
        _bad("from", "must be before 'to'")
    if (to_us - from_us) // bucket > 10_000:
        raise BadRequest("the range holds more than 10,000 buckets: widen the granularity")
    rows = await hub(request).store.metrics(p.tenant(), bucket, from_us, to_us, p.constraint)
    buckets: dict[int, Bucket] = {}
    for r in rows:
        b = buckets.get(r.bucket_us)
        if b is None:
            b = buckets[r.bucket_us] = Bucket(start=format_us(r.bucket_us), total=0, by_type={})
        t = b.by_type.get(r.type)
        if t is None:
            t = b.by_type[r.type] = TypeCount(total=0, by_outcome={})
        t.total += r.count
        t.by_outcome[r.status] = t.by_outcome.get(r.status, 0) + r.count
        b.total += r.count
    return respond(
        Metrics(
            granularity=q.granularity,
            from_=format_us(from_us),
            to=format_us(to_us),
            buckets=[buckets[k] for k in sorted(buckets)],
        )
    )


@endpoint(
    "GET /v1/quarantine",
    "listQuarantine",
    TAG,
    "List quarantined events",
    "Events stored but not routed because they failed a quarantine-mode type.",
    scope="read",
    query=QuarantineQuery,
    ok={200: PAGE},
    errors=LONG_QUERY,
)
async def list_quarantine(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    query = _event_query(decode_query(request, QuarantineQuery), status="quarantined")
    return await _page(request, p, query)


@endpoint(
    "POST /v1/quarantine/{event_id}/resubmit",
    "resubmitQuarantined",
    TAG,
    "Validate a quarantined event again",
    "After a schema fix: if the event passes now it becomes accepted (stored payloads are "
    "immutable; send a corrected event with a new id to change data).",
    scope="manage",
    path=EventPath,
    query=SourceQuery,
    ok={
        200: (Resubmitted, "Accepted now."),
        422: (StillQuarantined, "Still invalid; stays quarantined."),
    },
    errors=(404,),
)
async def resubmit(request: Request) -> Response:
    """Validate a quarantined event again against the current catalog (after a schema fix);
    if it passes now it becomes an accepted event. Stored payloads are immutable: to correct
    the data itself, send a corrected event with a new id."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    event_id = decode_path(request, EventPath).event_id
    source = _opt(decode_query(request, SourceQuery).source)
    tenant = await h.tenant(p.tenant())
    assert tenant is not None
    event = await h.store.get_event(tenant.id, event_id, source)
    if event is None or event.status != "quarantined" or not within_constraints(p, event):
        raise NotFound("no quarantined event with that id in this tenant")
    verdict = await h.registry.validate(
        msgspec.structs.replace(event, version=None), tenant.unknown_types
    )
    if verdict.status in ("rejected", "quarantined"):
        errors = [error_detail(d) for d in verdict.errors]
        return respond(StillQuarantined(id=event.id, status="quarantined", errors=errors), 422)
    await h.store.set_event_status(
        tenant.id, event.seq, verdict.status, verdict.errors, verdict.version
    )
    status: Literal["accepted", "warned"] = "warned" if verdict.status == "warned" else "accepted"
    return respond(Resubmitted(id=event.id, status=status, version=verdict.version))


routes = routes_of(
    ingest,
    list_events,
    get_event,
    subject_timeline,
    actor_timeline,
    metrics,
    list_quarantine,
    resubmit,
)
