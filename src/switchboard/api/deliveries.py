"""Destinations, routes, deliveries and attempts, the dead-letter queue, replays, the inbox."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard import replay, retry
from switchboard.api.common import (
    MAX_TYPE_GLOBS,
    JSONResponse,
    hub,
    principal,
    query_bool,
    query_choice,
    query_filter,
    query_int,
    query_time,
    query_types,
    read_json,
    type_glob_problem,
)
from switchboard.api.contract import Body, Model, decode_body, endpoint, respond, routes_of
from switchboard.api.models import DELIVERY_STATUSES
from switchboard.api.purposes import check_declared
from switchboard.auth import Principal, within_constraints
from switchboard.channels import Destination
from switchboard.channels.registry import (
    check_destination_config,
    check_destination_egress,
    public_config,
)
from switchboard.config import Settings
from switchboard.egress import Policy
from switchboard.envelope import format_us, new_id, now_us
from switchboard.errors import BadRequest, Conflict, NotFound, Unprocessable
from switchboard.hub import Hub
from switchboard.masking import mask_secret, restore_masked
from switchboard.patterns import both, compile_pattern
from switchboard.router import RouteError, parse_route
from switchboard.signing import generate_secret
from switchboard.store import Scope

KINDS_WITH_SIGNING = {"webhook"}
MAX_NAME = 200  # a destination's name, as the event envelope's ids
DESTINATION_FIELDS = {
    "name",
    "kind",
    "config",
    "secrets",
    "timeout",
    "concurrency",
    "rate_per_second",
    "rate_per_minute",
    "retry_schedule",
    "enabled",
}


def destination_json(d: Destination, reveal: bool = False) -> dict[str, Any]:
    """The API shape: credentials masked (write-only); `reveal` only for secrets the hub has
    just generated, shown once in the answer that created them."""
    return {
        "id": d.id,
        "name": d.name,
        "kind": d.kind,
        "config": public_config(d.kind, d.config),
        "secrets": list(d.secrets) if reveal else [mask_secret(s) for s in d.secrets],
        "timeout": d.timeout,
        "concurrency": d.concurrency,
        "rate_per_second": d.rate_per_second,
        "rate_per_minute": d.rate_per_minute,
        "retry_schedule": list(d.retry_schedule) if d.retry_schedule else None,
        "enabled": d.enabled,
        "disabled_reason": d.disabled_reason,
    }


def parse_destination(
    body: Any,
    tenant_id: str,
    existing: Destination | None,
    egress: Policy,
    max_timeout: float = 300,
    max_concurrency: int = 1000,
) -> Destination:
    """Validate a destination body; every problem names its field. `timeout` and `concurrency`
    are bounded by the operator's maxima (SWITCHBOARD_MAX_DESTINATION_*)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a destination object")
    problems: list[str] = [f"{k}: unknown field" for k in body if k not in DESTINATION_FIELDS]
    name = body.get("name", existing.name if existing else None)
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        problems.append(f"name: required, at most {MAX_NAME} characters")
    kind = body.get("kind", existing.kind if existing else None)
    if not isinstance(kind, str):  # a list or object is no channel name (and is unhashable)
        kind = str(kind)
    config = body.get("config", existing.config if existing else {})
    if not isinstance(config, dict):
        problems.append("config: must be an object")
        config = {}
    elif existing is not None:  # masked values sent back as shown keep what is stored
        config = restore_masked(
            config, existing.config, public_config(existing.kind, existing.config)
        )
    problems += check_destination_config(str(kind), config)
    problems += check_destination_egress(config, egress)
    secrets = body.get("secrets")
    if secrets is None:
        secrets = (
            list(existing.secrets)
            if existing
            else ([generate_secret()] if kind in KINDS_WITH_SIGNING else [])
        )
    if (
        not isinstance(secrets, list)
        or not all(isinstance(s, str) for s in secrets)
        or len(secrets) > 2
    ):
        problems.append("secrets: a list of at most two strings (two during rotation)")
        secrets = []
    elif existing is not None:
        kept = list(existing.secrets)
        secrets = [
            kept[i] if i < len(kept) and s == mask_secret(kept[i]) and s != kept[i] else s
            for i, s in enumerate(secrets)
        ]

    def num(field: str, default: Any, lo: float, hi: float) -> Any:
        value = body.get(field, getattr(existing, field) if existing else default)
        if value is None:
            return None
        if field not in body and isinstance(value, int | float) and value > hi:
            return hi  # kept from before a lower maximum: the worker applies the maximum too
        if not isinstance(value, int | float) or isinstance(value, bool) or not lo <= value <= hi:
            problems.append(f"{field}: a number between {lo} and {hi}")
            return default
        return value

    timeout = num("timeout", min(10.0, max_timeout), 0.1, max_timeout)
    concurrency = num("concurrency", min(10, max_concurrency), 1, max_concurrency)
    rps = num("rate_per_second", None, 0.001, 100000)
    rpm = num("rate_per_minute", None, 0.001, 1000000)
    schedule = existing.retry_schedule if existing else None
    if "retry_schedule" in body:
        try:
            schedule = (
                retry.schedule_from_spec(body["retry_schedule"])
                if body["retry_schedule"] is not None
                else None
            )
        except retry.ScheduleError as exc:
            at = "" if exc.index is None else f"[{exc.index}]"
            problems.append(f"retry_schedule{at}: {exc.problem}")
    enabled = body.get("enabled", existing.enabled if existing else True)
    if not isinstance(enabled, bool):
        problems.append("enabled: true or false")
    if problems:
        raise Unprocessable(
            "invalid destination: " + "; ".join(problems),
            details=[
                {"path": "/" + p.split(":")[0].replace(".", "/"), "message": p} for p in problems
            ],
        )
    return Destination(
        id=existing.id if existing else "dst_" + new_id(),
        tenant_id=tenant_id,
        name=str(name),
        kind=str(kind),
        config=config,
        secrets=tuple(secrets),
        timeout=float(timeout),
        concurrency=int(concurrency),
        rate_per_second=rps,
        rate_per_minute=rpm,
        retry_schedule=schedule,
        enabled=bool(enabled),
        disabled_reason=None if enabled else (existing.disabled_reason if existing else None),
        created_us=existing.created_us if existing else now_us(),
    )


def _maxima(settings: Settings) -> tuple[float, int]:
    return settings.max_destination_timeout, settings.max_destination_concurrency


async def create_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await read_json(request, 65536)
    dest = parse_destination(body, p.tenant(), None, h.egress, *_maxima(h.settings))
    if await h.deliveries.get_destination(p.tenant(), dest.name) is not None:
        raise Unprocessable(f"a destination named {dest.name!r} exists; PATCH it instead")
    await h.deliveries.put_destination(dest, now_us())
    # a generated signing secret is shown this once; secrets the client sent it already has
    generated = "secrets" not in body if isinstance(body, dict) else False
    return JSONResponse(destination_json(dest, reveal=generated), status_code=201)


async def update_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    existing = await h.deliveries.get_destination(p.tenant(), request.path_params["ref"])
    if existing is None:
        raise NotFound("no destination with that id or name in this tenant")
    dest = parse_destination(
        await read_json(request, 65536), p.tenant(), existing, h.egress, *_maxima(h.settings)
    )
    if dest.name != existing.name:
        other = await h.deliveries.get_destination(p.tenant(), dest.name)
        if other is not None and other.id != existing.id:
            raise Conflict(
                f"a destination named {dest.name!r} exists",
                details=[{"path": "/name", "message": "the name of another destination"}],
            )
    await h.deliveries.put_destination(dest, now_us())
    return JSONResponse(destination_json(dest))


async def list_destinations(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    dests = await hub(request).deliveries.list_destinations(p.tenant())
    return JSONResponse({"data": [destination_json(d) for d in dests]})


async def get_destination(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    d = await hub(request).deliveries.get_destination(p.tenant(), request.path_params["ref"])
    if d is None:
        raise NotFound("no destination with that id or name in this tenant")
    return JSONResponse(destination_json(d))


async def delete_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    d = await h.deliveries.get_destination(p.tenant(), request.path_params["ref"])
    if d is None or not await h.deliveries.delete_destination(p.tenant(), d.id):
        raise NotFound("no destination with that id or name in this tenant")
    return Response(status_code=204)


async def put_route(h: Any, tenant_id: str, spec: Any) -> dict[str, Any]:
    """Validate and store one route (by name: a second PUT of the same name replaces it)."""
    if not isinstance(spec, dict):
        raise BadRequest("a route must be an object")
    names: dict[str, str] = {}
    for d in await h.deliveries.list_destinations(tenant_id):
        names[d.name] = d.id
        names[d.id] = d.id
    route_id = (await h.deliveries.route_id_by_name(tenant_id, str(spec.get("name")))) or (
        "rte_" + new_id()
    )
    try:
        route = parse_route(spec, route_id=route_id, tenant_id=tenant_id, destination_ids=names)
    except RouteError as exc:
        raise Unprocessable(
            f"invalid route: {exc}",
            details=[
                {"path": "/" + p.split(":")[0].split(".")[0], "message": p} for p in exc.problems
            ],
        ) from None
    await check_declared(h.store, tenant_id, route.requires_consent, "/requires_consent")
    stored = {**spec, "destination_ids": list(route.destinations)}
    await h.deliveries.put_route(tenant_id, route_id, route.name, stored, now_us())
    h.routes.forget(tenant_id)
    return {"id": route_id, **spec}


async def create_route(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await read_json(request, 262144)
    if isinstance(body, dict) and "routes" in body:  # a whole routes file, applied at once
        if not isinstance(body["routes"], list):
            raise BadRequest("routes: must be a list")
        out = [await put_route(h, p.tenant(), r) for r in body["routes"]]
        return JSONResponse({"data": out}, status_code=200)
    return JSONResponse(await put_route(h, p.tenant(), body), status_code=201)


async def list_routes(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).deliveries.list_routes(p.tenant())
    return JSONResponse({"data": [{"id": i, **spec} for i, _, spec in rows]})


async def delete_route(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    route_id = await h.deliveries.route_id_by_name(p.tenant(), request.path_params["ref"])
    if route_id is None or not await h.deliveries.delete_route(p.tenant(), route_id):
        raise NotFound("no route with that id or name in this tenant")
    h.routes.forget(p.tenant())
    return Response(status_code=204)


async def event_deliveries(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    event = await h.store.get_event(
        p.tenant(), request.path_params["event_id"], request.query_params.get("source")
    )
    if event is None or not within_constraints(p, event):
        raise NotFound("no event with that id in this tenant")
    rows = await h.deliveries.for_event(p.tenant(), event.seq)
    return JSONResponse({"data": [{**d.to_json(), "event_id": event.id} for d in rows]})


async def _visible(h: Hub, p: Principal, ids: list[str]) -> list[str]:
    """The deliveries of `ids` the caller may see: all, unless its key has constraints."""
    if p.constraint is None:
        return ids
    return await h.deliveries.visible(p.tenant(), ids, p.constraint)


async def get_delivery(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    d = await h.deliveries.get(p.tenant(), request.path_params["delivery_id"])
    if d is None or not await _visible(h, p, [d.id]):
        raise NotFound("no delivery with that id in this tenant")
    return JSONResponse(d.to_json())


async def delivery_attempts(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    delivery_id = request.path_params["delivery_id"]
    if await h.deliveries.get(p.tenant(), delivery_id) is None or not await _visible(
        h, p, [delivery_id]
    ):
        raise NotFound("no delivery with that id in this tenant")
    rows = await h.deliveries.attempts(p.tenant(), delivery_id)
    return JSONResponse({"data": [a.to_json() for a in rows]})


async def _listing(request: Request, status: str | None) -> Response:
    h = hub(request)
    p = await principal(request, Scope.READ)
    q = request.query_params
    pattern = query_filter(request)
    dest_id = None
    if q.get("destination"):
        d = await h.deliveries.get_destination(p.tenant(), q["destination"])
        if d is None:
            raise BadRequest("query parameter 'destination': no such destination")
        dest_id = d.id
    before = None
    if q.get("cursor"):
        try:
            t, i = q["cursor"].split(":", 1)
            before = (int(t), i)
            if not 0 <= before[0] < 2**63:  # a stored microsecond time, as the stores keep it
                raise ValueError(t)
        except ValueError:
            raise BadRequest("query parameter 'cursor': not one this API returned") from None
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await h.deliveries.listing(
        p.tenant(),
        status=status or query_choice(request, "status", DELIVERY_STATUSES),
        destination_id=dest_id,
        types=query_types(request),
        from_us=query_time(request, "from"),
        to_us=query_time(request, "to"),
        pattern=both(pattern, p.constraint),
        replay_id=q.get("replay"),
        before=before,
        limit=limit,
    )
    data = [
        {
            **d.to_json(),
            "event": {
                "id": e.id,
                "type": e.type,
                "time": format_us(e.time_us),
                "subject": e.subject,
            },
        }
        for d, e in rows
    ]
    cursor = f"{rows[-1][0].updated_us}:{rows[-1][0].id}" if len(rows) == limit else None
    return JSONResponse({"data": data, "next_cursor": cursor})


async def list_deliveries(request: Request) -> Response:
    return await _listing(request, None)


async def list_dead(request: Request) -> Response:
    return await _listing(request, "dead")


async def dlq_stats(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).deliveries.dlq_stats(p.tenant(), p.constraint)
    by_type: dict[str, int] = {}
    by_dest: dict[str, int] = {}
    for etype, dest, n in rows:
        by_type[etype] = by_type.get(etype, 0) + n
        by_dest[dest] = by_dest.get(dest, 0) + n
    return JSONResponse(
        {"total": sum(by_type.values()), "by_type": by_type, "by_destination": by_dest}
    )


async def _ids(request: Request) -> list[str]:
    body = await read_json(request, 1_048_576)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 10000:
        raise BadRequest('the body must be {"ids": [delivery ids]} (at most 10,000)')
    return ids


async def retry_dead(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ids = await _visible(h, p, await _ids(request))
    n = await h.deliveries.requeue(p.tenant(), ids, now_us())
    if h.worker is not None:
        h.worker.wakeup.set()
    return JSONResponse({"requeued": n})


async def retry_one(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ids = await _visible(h, p, [request.path_params["delivery_id"]])
    n = await h.deliveries.requeue(p.tenant(), ids, now_us())
    if n == 0:
        raise NotFound("no dead or cancelled delivery with that id in this tenant")
    if h.worker is not None:
        h.worker.wakeup.set()
    return JSONResponse({"requeued": n})


async def archive_dead(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    n = await h.deliveries.archive(p.tenant(), await _visible(h, p, await _ids(request)), now_us())
    return JSONResponse({"archived": n})


class Receipt(Body):
    provider_id: Annotated[
        str, Meta(min_length=1, max_length=200, description="The provider's message id.")
    ]
    status: Literal["delivered", "read", "failed"]
    error: (
        Annotated[
            str,
            Meta(
                max_length=500,
                description="With failed: the provider's reason, kept as the "
                "delivery's last error.",
            ),
        ]
        | None
    ) = None


class Updated(Model):
    updated: Annotated[int, Meta(ge=0, description="Deliveries changed.")]


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
    body: Any, tenant_id: str, names: dict[str, str], routes: dict[str, str]
) -> tuple[replay.ReplaySpec, bool]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a replay object")
    problems: list[str] = []
    from switchboard.envelope import EnvelopeError, parse_time

    times: dict[str, int | None] = {}
    for f in ("from", "to"):
        times[f] = None
        if body.get(f) is not None:
            try:
                times[f] = parse_time(body[f], f)
            except EnvelopeError as exc:
                problems.append(f"{f}: {exc.errors[0]['message']}")
    pattern = body.get("filter")
    if pattern is not None:
        from switchboard.patterns import PatternError, check_queryable, compile_pattern

        try:
            check_queryable(compile_pattern(pattern))
        except (PatternError, TypeError) as exc:
            problems.append(f"filter: {exc}")
    types = body.get("types", [])
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or len(types) > MAX_TYPE_GLOBS:
        problems.append(f"types: a list of at most {MAX_TYPE_GLOBS} event types or globs")
        types = []
    for i, t in enumerate(types):
        if (problem := type_glob_problem(t)) is not None:
            problems.append(f"types[{i}]: {problem}")
    dest_ids = []
    dests = body.get("destinations", [])
    if not isinstance(dests, list):
        problems.append("destinations: a list of destination names or ids")
        dests = []
    for i, d in enumerate(dests):
        if not isinstance(d, str) or d not in names:
            problems.append(f"destinations[{i}]: no destination {d!r} in this tenant")
        else:
            dest_ids.append(names[d])
    route_ids = []
    route_refs = body.get("routes", [])
    if not isinstance(route_refs, list):
        problems.append("routes: a list of route names or ids")
        route_refs = []
    for i, r in enumerate(route_refs):
        if not isinstance(r, str) or r not in routes:
            problems.append(f"routes[{i}]: no route {r!r} in this tenant")
        else:
            route_ids.append(routes[r])
    dry = body.get("dry_run", False)
    if not isinstance(dry, bool):
        problems.append("dry_run: true or false")
    if problems:
        raise Unprocessable(
            "invalid replay: " + "; ".join(problems),
            details=[{"path": "/" + p.split(":")[0].split("[")[0], "message": p} for p in problems],
        )
    return (
        replay.ReplaySpec(
            tenant_id,
            times["from"],
            times["to"],
            tuple(types),
            pattern,
            tuple(route_ids),
            tuple(dest_ids),
        ),
        dry,
    )


async def create_replay(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    tenant = p.tenant()
    names: dict[str, str] = {}
    for d in await h.deliveries.list_destinations(tenant):
        names[d.name] = names[d.id] = d.id
    routes: dict[str, str] = {}
    for rid, name, _ in await h.deliveries.list_routes(tenant):
        routes[name] = routes[rid] = rid
    spec, dry = _replay_spec(await read_json(request, 65536), tenant, names, routes)
    if p.constraint is not None:  # a constrained key replays only the events it may see
        mine = both(compile_pattern(spec.pattern, None) if spec.pattern else None, p.constraint)
        spec = dataclasses.replace(spec, pattern=dict(mine.spec) if mine else None)
    if dry:
        return JSONResponse(await replay.dry_run(h, spec))
    return JSONResponse(await replay.start(h, spec), status_code=202)


async def get_replay(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    r = await replay.get(hub(request), p.tenant(), request.path_params["replay_id"])
    if r is None:
        raise NotFound("no replay with that id in this tenant")
    return JSONResponse(r)


async def inbox_list(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    items = await hub(request).deliveries.inbox(
        p.tenant(),
        request.path_params["recipient"],
        query_bool(request, "unread") is True,
        query_int(request, "limit", 50, 1, 500),
        p.constraint,
    )
    return JSONResponse({"data": items})


async def inbox_read(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    n = await hub(request).deliveries.mark_read(
        p.tenant(), request.path_params["recipient"], await _ids(request), now_us()
    )
    return JSONResponse({"marked": n})


routes = [
    HttpRoute("/v1/destinations", create_destination, methods=["POST"]),
    HttpRoute("/v1/destinations", list_destinations, methods=["GET"]),
    HttpRoute("/v1/destinations/{ref}", get_destination, methods=["GET"]),
    HttpRoute("/v1/destinations/{ref}", update_destination, methods=["PATCH"]),
    HttpRoute("/v1/destinations/{ref}", delete_destination, methods=["DELETE"]),
    HttpRoute("/v1/routes", create_route, methods=["POST"]),
    HttpRoute("/v1/routes", list_routes, methods=["GET"]),
    HttpRoute("/v1/routes/{ref}", delete_route, methods=["DELETE"]),
    HttpRoute("/v1/events/{event_id}/deliveries", event_deliveries, methods=["GET"]),
    HttpRoute("/v1/deliveries", list_deliveries, methods=["GET"]),
    *routes_of(provider_status),  # before /v1/deliveries/{delivery_id}
    HttpRoute("/v1/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    HttpRoute("/v1/deliveries/{delivery_id}/attempts", delivery_attempts, methods=["GET"]),
    HttpRoute("/v1/deliveries/{delivery_id}/retry", retry_one, methods=["POST"]),
    HttpRoute("/v1/dlq", list_dead, methods=["GET"]),
    HttpRoute("/v1/dlq/stats", dlq_stats, methods=["GET"]),
    HttpRoute("/v1/dlq/retry", retry_dead, methods=["POST"]),
    HttpRoute("/v1/dlq/archive", archive_dead, methods=["POST"]),
    HttpRoute("/v1/replays", create_replay, methods=["POST"]),
    HttpRoute("/v1/replays/{replay_id}", get_replay, methods=["GET"]),
    HttpRoute("/v1/inbox/{recipient}", inbox_list, methods=["GET"]),
    HttpRoute("/v1/inbox/{recipient}/read", inbox_read, methods=["POST"]),
]
