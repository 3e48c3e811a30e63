"""Deliveries and attempts, provider receipts, the dead-letter queue, replays and the inbox:
typed endpoints (see `api/contract.py`) whose models are in `api/delivery_models.py`. `routes`
serves destinations and routes (`api/destinations.py`) too, so the area is one entry of the app."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from switchboard import replay
from switchboard.api import destinations, gateway_channels
from switchboard.api.common import (
    hub,
    principal,
    query_filter,
    query_time,
    query_types,
    sealed_filter,
)
from switchboard.api.contract import (
    convert,
    decode_body,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.delivery_models import (
    Archived,
    Attempt,
    Attempts,
    DeadQuery,
    DeadStats,
    Delivery,
    DeliveryPage,
    DeliveryPath,
    DeliveryQuery,
    EventDeliveries,
    EventDelivery,
    EventPath,
    EventQuery,
    EventSummary,
    Ids,
    InboxItem,
    InboxItems,
    InboxPath,
    InboxQuery,
    ListedDelivery,
    Marked,
    Receipt,
    Replay,
    ReplayDryRun,
    ReplayIn,
    ReplayPath,
    Requeued,
    Updated,
)
from switchboard.api.destinations import problem_pointer
from switchboard.auth import Principal, within_constraints
from switchboard.envelope import EnvelopeError, format_us, now_us, parse_time
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.hub import Hub
from switchboard.patterns import PatternError, both, check_queryable, compile_pattern
from switchboard.store import Scope
from switchboard.store.deliveries import Attempt as AttemptRecord
from switchboard.store.deliveries import Delivery as DeliveryRecord

T = TypeVar("T")


def _given(value: T | msgspec.UnsetType) -> T | None:
    """A query parameter's value, None when it was left out."""
    return None if isinstance(value, msgspec.UnsetType) else value


def _delivery_fields(d: DeliveryRecord) -> dict[str, Any]:
    return dict(
        id=d.id,
        event_seq=d.event_seq,
        destination_id=d.destination_id,
        route_id=d.route_id,
        status=d.status,
        priority=("high", "normal", "low")[d.priority],
        attempts=d.attempts,
        next_attempt_at=format_us(d.next_attempt_us)
        if d.status in ("pending", "retrying")
        else None,
        ordering_key=d.ordering_key,
        replay_id=d.replay_id,
        provider_id=d.provider_id,
        last_error=d.last_error,
        created_at=format_us(d.created_us),
        updated_at=format_us(d.updated_us),
    )


def delivery_model(d: DeliveryRecord) -> Delivery:
    return Delivery(**_delivery_fields(d))


def attempt_model(a: AttemptRecord) -> Attempt:
    return Attempt(
        n=a.n,
        started_at=format_us(a.started_us),
        latency_ms=round(a.latency_ms, 2),
        ok=bool(a.ok),
        status_code=a.status_code,
        error=a.error,
        message=a.message,
        response=a.response,
        request_headers=a.request_headers,
    )


@endpoint(
    "GET /v1/events/{event_id}/deliveries",
    "eventDeliveries",
    "deliveries",
    "An event's deliveries",
    "Where one event went, and how each delivery stands.",
    scope="read",
    path=EventPath,
    query=EventQuery,
    ok={200: (EventDeliveries, "OK")},
    errors=(404,),
)
async def event_deliveries(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    event_id = decode_path(request, EventPath).event_id
    source = decode_query(request, EventQuery).source
    event = await h.store.get_event(p.tenant(), event_id, _given(source))
    if event is None or not within_constraints(p, event):
        raise NotFound("no event with that id in this tenant")
    rows = await h.deliveries.for_event(p.tenant(), event.seq)
    data = [EventDelivery(**_delivery_fields(d), event_id=event.id) for d in rows]
    return respond(EventDeliveries(data=data))


async def _visible(h: Hub, p: Principal, ids: list[str]) -> list[str]:
    """The deliveries of `ids` the caller may see: all, unless its key has constraints."""
    if p.constraint is None:
        return ids
    return await h.deliveries.visible(p.tenant(), ids, p.constraint)


NO_DELIVERY = "no delivery with that id in this tenant"


@endpoint(
    "GET /v1/deliveries/{delivery_id}",
    "getDelivery",
    "deliveries",
    "Get a delivery",
    "One delivery and its status.",
    scope="read",
    path=DeliveryPath,
    ok={200: (Delivery, "OK")},
    errors=(404,),
)
async def get_delivery(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    d = await h.deliveries.get(p.tenant(), decode_path(request, DeliveryPath).delivery_id)
    if d is None or not await _visible(h, p, [d.id]):
        raise NotFound(NO_DELIVERY)
    return respond(delivery_model(d))


@endpoint(
    "GET /v1/deliveries/{delivery_id}/attempts",
    "deliveryAttempts",
    "deliveries",
    "A delivery's attempts",
    "Every attempt: status code, latency, error and the start of the answer.",
    scope="read",
    path=DeliveryPath,
    ok={200: (Attempts, "OK")},
    errors=(404,),
)
async def delivery_attempts(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    delivery_id = decode_path(request, DeliveryPath).delivery_id
    if await h.deliveries.get(p.tenant(), delivery_id) is None or not await _visible(
        h, p, [delivery_id]
    ):
        raise NotFound(NO_DELIVERY)
    rows = await h.deliveries.attempts(p.tenant(), delivery_id)
    return respond(Attempts(data=[attempt_model(a) for a in rows]))


def _cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        t, i = raw.split(":", 1)
        before = (int(t), i)
        if not 0 <= before[0] < 2**63:  # a stored microsecond time, as the stores keep it
            raise ValueError(t)
    except ValueError:
        raise BadRequest(
            "query parameter 'cursor': not one this API returned",
            details=[{"path": "?cursor", "message": "not one this API returned"}],
        ) from None
    return before


async def _listing(request: Request, q: DeadQuery, status: str | None) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    pattern = await sealed_filter(h, p.tenant(), query_filter(request), "?filter")
    dest_id = None
    if q.destination:
        d = await h.deliveries.get_destination(p.tenant(), q.destination)
        if d is None:
            raise BadRequest(
                "query parameter 'destination': no such destination",
                details=[{"path": "?destination", "message": "no such destination"}],
            )
        dest_id = d.id
    rows = await h.deliveries.listing(
        p.tenant(),
        status=status,
        destination_id=dest_id,
        types=query_types(request),
        from_us=query_time(request, "from"),
        to_us=query_time(request, "to"),
        pattern=both(pattern, p.constraint),
        replay_id=_given(q.replay),
        before=_cursor(_given(q.cursor)),
        limit=q.limit,
    )
    data = [
        ListedDelivery(
            **_delivery_fields(d),
            event=EventSummary(id=e.id, type=e.type, time=format_us(e.time_us), subject=e.subject),
        )
        for d, e in rows
    ]
    cursor = f"{rows[-1][0].updated_us}:{rows[-1][0].id}" if len(rows) == q.limit else None
    return respond(DeliveryPage(data=data, next_cursor=cursor))


@endpoint(
    "GET /v1/deliveries",
    "listDeliveries",
    "deliveries",
    "List deliveries",
    "Deliveries with a summary of their event, most recently updated first. `filter` is "
    "checked by its own parser, `cursor` must be one this API returned and `destination` one "
    "of the tenant's (400 naming the parameter). The query string counts toward "
    "SWITCHBOARD_MAX_HEADER_BYTES (431 over it).",
    scope="read",
    query=DeliveryQuery,
    ok={200: (DeliveryPage, "A page of deliveries.")},
    errors=(431,),
)
async def list_deliveries(request: Request) -> Response:
    q = decode_query(request, DeliveryQuery)
    return await _listing(request, q, _given(q.status))


@endpoint(
    "GET /v1/dlq",
    "listDead",
    "dlq",
    "List dead deliveries",
    "Deliveries that used up their retries, with a summary of their event. `filter` is "
    "checked by its own parser, `cursor` must be one this API returned and `destination` one "
    "of the tenant's (400 naming the parameter). The query string counts toward "
    "SWITCHBOARD_MAX_HEADER_BYTES (431 over it).",
    scope="read",
    query=DeadQuery,
    ok={200: (DeliveryPage, "A page of dead deliveries.")},
    errors=(431,),
)
async def list_dead(request: Request) -> Response:
    return await _listing(request, decode_query(request, DeadQuery), "dead")


@endpoint(
    "GET /v1/dlq/stats",
    "dlqStats",
    "dlq",
    "Count dead deliveries",
    "Totals by event type and by destination.",
    scope="read",
    ok={200: (DeadStats, "OK")},
)
async def dlq_stats(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).deliveries.dlq_stats(p.tenant(), p.constraint)
    by_type: dict[str, int] = {}
    by_dest: dict[str, int] = {}
    for etype, dest, n in rows:
        by_type[etype] = by_type.get(etype, 0) + n
        by_dest[dest] = by_dest.get(dest, 0) + n
    return respond(DeadStats(total=sum(by_type.values()), by_type=by_type, by_destination=by_dest))


async def _ids(request: Request) -> list[str]:
    return (await decode_body(request, Ids, 1_048_576)).ids


@endpoint(
    "POST /v1/dlq/retry",
    "retryDead",
    "dlq",
    "Retry dead deliveries",
    "Requeues the given dead deliveries (ids that are not dead are skipped).",
    scope="manage",
    body=Ids,
    ok={200: (Requeued, "OK")},
)
async def retry_dead(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ids = await _visible(h, p, await _ids(request))
    n = await h.deliveries.requeue(p.tenant(), ids, now_us())
    if h.worker is not None:
        h.worker.wakeup.set()
    return respond(Requeued(requeued=n))


@endpoint(
    "POST /v1/deliveries/{delivery_id}/retry",
    "retryDelivery",
    "deliveries",
    "Retry a delivery",
    "Requeues a dead or cancelled delivery now.",
    scope="manage",
    path=DeliveryPath,
    ok={200: (Requeued, "OK")},
    errors=(404,),
)
async def retry_one(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ids = await _visible(h, p, [decode_path(request, DeliveryPath).delivery_id])
    n = await h.deliveries.requeue(p.tenant(), ids, now_us())
    if n == 0:
        raise NotFound("no dead or cancelled delivery with that id in this tenant")
    if h.worker is not None:
        h.worker.wakeup.set()
    return respond(Requeued(requeued=n))


@endpoint(
    "POST /v1/dlq/archive",
    "archiveDead",
    "dlq",
    "Archive dead deliveries",
    "Takes them out of the dead-letter listing for good.",
    scope="manage",
    body=Ids,
    ok={200: (Archived, "OK")},
)
async def archive_dead(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    n = await h.deliveries.archive(p.tenant(), await _visible(h, p, await _ids(request)), now_us())
    return respond(Archived(archived=n))


@endpoint(
    "POST /v1/deliveries/provider-status",
    "providerStatus",
    "deliveries",
    "Report a provider receipt",
    "A provider's delivery receipt (e.g. the WhatsApp gateway's message.ack) moves the "
    "matching delivery to delivered or read, or a succeeded one to failed; forward only.",
    scope="ingest",
    body=Receipt,
    ok={200: (Updated, "OK")},
)
async def provider_status(request: Request) -> Response:
    p = await principal(request, Scope.INGEST)
    body = await decode_body(request, Receipt, 65536)
    n = await hub(request).deliveries.provider_status(
        p.tenant(),
        body.provider_id,
        body.status,
        now_us(),
        error=f"provider: {body.error}" if body.status == "failed" and body.error else None,
    )
    return respond(Updated(updated=n))


def _replay_spec(
    body: ReplayIn | dict[str, Any], tenant_id: str, names: dict[str, str], routes: dict[str, str]
) -> tuple[replay.ReplaySpec, bool]:
    """The replay a body asks for, after what its model cannot say: times, the filter, and
    the routes and destinations named (a 422 naming each). The dashboard's form sends a dict."""
    spec = body if isinstance(body, ReplayIn) else convert(body, ReplayIn)
    problems: list[str] = []
    times: dict[str, int | None] = {}
    for f, value in (("from", spec.from_), ("to", spec.to)):
        times[f] = None
        if value is not None:
            try:
                times[f] = parse_time(value, f)
            except EnvelopeError as exc:
                problems.append(f"{f}: {exc.errors[0]['message']}")
    if spec.filter is not None:
        try:
            check_queryable(compile_pattern(spec.filter))
        except (PatternError, TypeError) as exc:
            problems.append(f"filter: {exc}")
    dest_ids = []
    for i, d in enumerate(spec.destinations):
        if d not in names:
            problems.append(f"destinations[{i}]: no destination {d!r} in this tenant")
        else:
            dest_ids.append(names[d])
    route_ids = []
    for i, r in enumerate(spec.routes):
        if r not in routes:
            problems.append(f"routes[{i}]: no route {r!r} in this tenant")
        else:
            route_ids.append(routes[r])
    if problems:
        raise Unprocessable(
            "invalid replay: " + "; ".join(problems),
            details=[{"path": problem_pointer(p), "message": p} for p in problems],
        )
    types = [spec.types] if isinstance(spec.types, str) else spec.types
    return (
        replay.ReplaySpec(
            tenant_id,
            times["from"],
            times["to"],
            tuple(types),
            spec.filter,
            tuple(route_ids),
            tuple(dest_ids),
        ),
        spec.dry_run,
    )


@endpoint(
    "POST /v1/replays",
    "createReplay",
    "replays",
    "Start a replay",
    "Creates low-priority deliveries for stored events by time, type and filter; "
    "`dry_run` answers with the count and a sample instead. The filter, the times and the "
    "routes and destinations named are checked by the hub (422 naming the field).",
    scope="manage",
    body=ReplayIn,
    ok={202: (Replay, "Started."), 200: (ReplayDryRun, "The dry run's answer.")},
    errors=(422,),
)
async def create_replay(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    tenant = p.tenant()
    body = await decode_body(request, ReplayIn, 262144)
    names: dict[str, str] = {}
    for d in await h.deliveries.list_destinations(tenant):
        names[d.name] = names[d.id] = d.id
    routes: dict[str, str] = {}
    for rid, name, _ in await h.deliveries.list_routes(tenant):
        routes[name] = routes[rid] = rid
    spec, dry = _replay_spec(body, tenant, names, routes)
    if spec.pattern is not None:  # kept with the replay: only blind tags, never the values
        blinded = await sealed_filter(
            h, tenant, compile_pattern(spec.pattern, None), "/filter", keep_plain=False
        )
        spec = dataclasses.replace(spec, pattern=dict(blinded.spec) if blinded else None)
    if p.constraint is not None:  # a constrained key replays only the events it may see
        mine = both(compile_pattern(spec.pattern, None) if spec.pattern else None, p.constraint)
        spec = dataclasses.replace(spec, pattern=dict(mine.spec) if mine else None)
    if dry:
        return respond(msgspec.convert(await replay.dry_run(h, spec), ReplayDryRun))
    return respond(msgspec.convert(await replay.start(h, spec), Replay), 202)


@endpoint(
    "GET /v1/replays/{replay_id}",
    "getReplay",
    "replays",
    "Get a replay",
    "Its progress: scanned, events matched, deliveries created.",
    scope="read",
    path=ReplayPath,
    ok={200: (Replay, "OK")},
    errors=(404,),
)
async def get_replay(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    replay_id = decode_path(request, ReplayPath).replay_id
    r = await replay.get(hub(request), p.tenant(), replay_id)
    if r is None:
        raise NotFound("no replay with that id in this tenant")
    return respond(msgspec.convert(r, Replay))


@endpoint(
    "GET /v1/inbox/{recipient}",
    "listInbox",
    "inbox",
    "A recipient's inbox",
    "Items the inbox channel delivered, newest first.",
    scope="read",
    path=InboxPath,
    query=InboxQuery,
    ok={200: (InboxItems, "OK")},
)
async def inbox_list(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    recipient = decode_path(request, InboxPath).recipient
    q = decode_query(request, InboxQuery)
    items = await hub(request).deliveries.inbox(
        p.tenant(), recipient, q.unread == "true", q.limit, p.constraint
    )
    return respond(InboxItems(data=[msgspec.convert(i, InboxItem) for i in items]))


@endpoint(
    "POST /v1/inbox/{recipient}/read",
    "markInboxRead",
    "inbox",
    "Mark inbox items read",
    "Marks the given unread items of this recipient.",
    scope="manage",
    path=InboxPath,
    body=Ids,
    ok={200: (Marked, "OK")},
)
async def inbox_read(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    recipient = decode_path(request, InboxPath).recipient
    n = await hub(request).deliveries.mark_read(
        p.tenant(), recipient, await _ids(request), now_us()
    )
    return respond(Marked(marked=n))


# literal paths before the `{param}` ones they would otherwise match
routes = [
    *destinations.routes,
    *gateway_channels.routes,
    *routes_of(
        event_deliveries,
        list_deliveries,
        provider_status,  # before /v1/deliveries/{delivery_id}
        get_delivery,
        delivery_attempts,
        retry_one,
        list_dead,
        dlq_stats,
        retry_dead,
        archive_dead,
        create_replay,
        get_replay,
        inbox_list,
        inbox_read,
    ),
]
