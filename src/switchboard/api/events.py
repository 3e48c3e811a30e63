"""Event endpoints: ingest, lookups, listings, timelines, metrics, quarantine."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import (
    JSONResponse,
    hub,
    principal,
    query_choice,
    query_filter,
    query_int,
    query_time,
    query_types,
    read_body,
    read_json,
    within,
)
from switchboard.api.models import EVENT_STATUSES
from switchboard.auth import Principal, within_constraints
from switchboard.envelope import MAX_ID_LEN, EnvelopeError, format_us, now_us
from switchboard.errors import BadRequest, NotFound, PayloadTooLarge
from switchboard.hub import Hub
from switchboard.ingest import IngestResult
from switchboard.patterns import Pattern, both
from switchboard.sources import cloudevents
from switchboard.store import Cursor, EventQuery, Scope

GRANULARITY_US = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
# the range asked without `from`: a day of minutes, else a week
DEFAULT_RANGE_US = {"minute": 86_400_000_000, "hour": 7 * 86_400_000_000, "day": 7 * 86_400_000_000}
_idempotency_locks: dict[tuple[str, str], asyncio.Lock] = {}


async def ingest(request: Request) -> Response:
    """POST /v1/events, answered within SWITCHBOARD_INGEST_TIMEOUT: when the store cannot
    confirm the commit in time (a silent network partition, say) the client gets a 503 and
    retries with the same ids, which the store answers as duplicates if they did land."""
    h = hub(request)
    return await within(h.settings.ingest_timeout, _ingest_request(request, h))


async def _ingest_request(request: Request, h: Hub) -> Response:
    p = await principal(request, Scope.INGEST)
    tenant_id = p.tenant()
    tenant = await h.tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    idem_key = request.headers.get("idempotency-key")
    if idem_key is None:
        return await _ingest(request, h, p, tenant)
    if len(idem_key) > 255:
        raise BadRequest("the Idempotency-Key header is longer than 255 characters")
    # One request per key at a time in this process; the stored response answers the rest.
    lock = _idempotency_locks.setdefault((tenant_id, idem_key), asyncio.Lock())
    async with lock:
        try:
            stored = await h.store.get_idempotent(tenant_id, idem_key, now_us())
            if stored is not None:
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
            )
            return response
        finally:
            if not lock._waiters:
                _idempotency_locks.pop((tenant_id, idem_key), None)


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
    if not h.tracing.enabled:
        result = await _ingest_mapped(h, raws, tenant, source, constraint=p.constraint)
        return JSONResponse(result.body(), status_code=422 if result.all_rejected else 202)
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
    return JSONResponse(result.body(), status_code=422 if result.all_rejected else 202)


async def _read_events(request: Request, limit: int) -> list[Any]:
    """The submitted events: native JSON, or CloudEvents 1.0 in structured, batched or binary
    mode (mapped onto the envelope; a malformed one stays in place as its EnvelopeError)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
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
    body = await read_json(request, limit, checked=False)
    return body if isinstance(body, list) else [body]


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


async def _ingest_mapped(
    h: Any,
    raws: list[Any],
    tenant: Any,
    source: str,
    trace: tuple[str, str] | None = None,
    constraint: Pattern | None = None,
) -> IngestResult:
    """Ingest, answering events that failed to map with their errors at their own index."""
    failed = {i: r for i, r in enumerate(raws) if isinstance(r, EnvelopeError)}
    if not failed:
        result: IngestResult = await h.ingestor.ingest(
            raws, tenant, source, trace=trace, constraint=constraint
        )
        return result
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


def _event_query(request: Request, **fixed: Any) -> EventQuery:
    q = request.query_params
    types = query_types(request)
    pattern = query_filter(request)
    cursor = None
    if q.get("cursor"):
        try:
            cursor = Cursor.decode(q["cursor"])
        except ValueError as exc:
            raise BadRequest(f"query parameter 'cursor': {exc}") from None
    params: dict[str, Any] = {
        "types": types,
        "source": q.get("source"),
        "subject": q.get("subject"),
        "actor_id": q.get("actor"),
        "trace_id": q.get("trace_id"),
        "correlation_id": q.get("correlation_id"),
        "status": query_choice(request, "status", EVENT_STATUSES),
        "from_us": query_time(request, "from"),
        "to_us": query_time(request, "to"),
        "pattern": pattern,
        "cursor": cursor,
        "limit": query_int(request, "limit", 100, 1, 1000),
    }
    params.update(fixed)
    return EventQuery(**params)


async def _page(request: Request, query: EventQuery) -> Response:
    p = await principal(request, Scope.READ)
    if p.constraint is not None:  # a key limited inside its tenant reads only its part
        query = dataclasses.replace(query, pattern=both(query.pattern, p.constraint))
    events = await hub(request).store.list_events(p.tenant(), query)
    next_cursor = None
    if len(events) == query.limit:
        last = events[-1]
        next_cursor = Cursor(last.time_us, last.seq).encode()
    return JSONResponse({"data": [e.to_json() for e in events], "next_cursor": next_cursor})


async def list_events(request: Request) -> Response:
    return await _page(request, _event_query(request))


async def get_event(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    event_id = request.path_params["event_id"]
    event = await hub(request).store.get_event(
        p.tenant(), event_id, request.query_params.get("source")
    )
    if event is None or not within_constraints(p, event):
        raise NotFound(f"no event with id {event_id!r} in this tenant")
    return JSONResponse(event.to_json())


def _id_param(request: Request, name: str) -> str:
    """A path parameter naming a subject or an actor: at most MAX_ID_LEN, as stored."""
    value: str = request.path_params[name]
    if len(value) > MAX_ID_LEN:
        raise BadRequest(
            f"path parameter '{name}' is longer than {MAX_ID_LEN} characters",
            details=[{"path": name, "message": f"at most {MAX_ID_LEN} characters"}],
        )
    return value


async def subject_timeline(request: Request) -> Response:
    return await _page(request, _event_query(request, subject=_id_param(request, "subject")))


async def actor_timeline(request: Request) -> Response:
    return await _page(request, _event_query(request, actor_id=_id_param(request, "actor")))


async def metrics(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    granularity = request.query_params.get("granularity", "hour")
    if granularity not in GRANULARITY_US:
        raise BadRequest("query parameter 'granularity' must be 'minute', 'hour' or 'day'")
    bucket = GRANULARITY_US[granularity]
    to_us = query_time(request, "to") or now_us()
    from_us = query_time(request, "from") or (to_us - DEFAULT_RANGE_US[granularity])
    if from_us >= to_us:
        raise BadRequest("query parameter 'from' must be before 'to'")
    if (to_us - from_us) // bucket > 10_000:
        raise BadRequest("the range holds more than 10,000 buckets: widen the granularity")
    rows = await hub(request).store.metrics(p.tenant(), bucket, from_us, to_us, p.constraint)
    buckets: dict[int, dict[str, Any]] = {}
    for r in rows:
        b = buckets.setdefault(
            r.bucket_us, {"start": format_us(r.bucket_us), "total": 0, "by_type": {}}
        )
        t = b["by_type"].setdefault(r.type, {"total": 0, "by_outcome": {}})
        t["total"] += r.count
        t["by_outcome"][r.status] = t["by_outcome"].get(r.status, 0) + r.count
        b["total"] += r.count
    return JSONResponse(
        {
            "granularity": granularity,
            "from": format_us(from_us),
            "to": format_us(to_us),
            "buckets": [buckets[k] for k in sorted(buckets)],
        }
    )


async def list_quarantine(request: Request) -> Response:
    return await _page(request, _event_query(request, status="quarantined"))


async def resubmit(request: Request) -> Response:
    """Validate a quarantined event again against the current catalog (after a schema fix);
    if it passes now it becomes an accepted event. Stored payloads are immutable: to correct
    the data itself, send a corrected event with a new id."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    tenant = await h.tenant(p.tenant())
    assert tenant is not None
    event = await h.store.get_event(
        tenant.id, request.path_params["event_id"], request.query_params.get("source")
    )
    if event is None or event.status != "quarantined" or not within_constraints(p, event):
        raise NotFound("no quarantined event with that id in this tenant")
    verdict = await h.registry.validate(
        msgspec.structs.replace(event, version=None), tenant.unknown_types
    )
    if verdict.status in ("rejected", "quarantined"):
        return JSONResponse(
            {"id": event.id, "status": "quarantined", "errors": verdict.errors}, status_code=422
        )
    await h.store.set_event_status(
        tenant.id, event.seq, verdict.status, verdict.errors, verdict.version
    )
    return JSONResponse({"id": event.id, "status": verdict.status, "version": verdict.version})


routes = [
    Route("/v1/events", ingest, methods=["POST"]),
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{event_id}", get_event, methods=["GET"]),
    Route("/v1/subjects/{subject}/timeline", subject_timeline, methods=["GET"]),
    Route("/v1/actors/{actor}/timeline", actor_timeline, methods=["GET"]),
    Route("/v1/metrics/events", metrics, methods=["GET"]),
    Route("/v1/quarantine", list_quarantine, methods=["GET"]),
    Route("/v1/quarantine/{event_id}/resubmit", resubmit, methods=["POST"]),
]
