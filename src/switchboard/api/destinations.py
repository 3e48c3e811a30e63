"""Destinations and routes: where events go and which go there. Typed endpoints (see
`api/contract.py`) whose models are in `api/delivery_models.py`; `api/deliveries.py` serves them
with the rest of the area."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from switchboard import retry
from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    convert,
    decode_body,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.delivery_models import (
    Destination,
    DestinationChange,
    Destinations,
    NewDestination,
    NewRoute,
    RefPath,
    Route,
    Routes,
    RoutesIn,
)
from switchboard.api.purposes import check_declared
from switchboard.channels import Destination as DestinationRecord
from switchboard.channels.registry import (
    check_destination_config,
    check_destination_egress,
    public_config,
)
from switchboard.config import Settings
from switchboard.egress import Policy
from switchboard.envelope import new_id, now_us
from switchboard.errors import BadRequest, Conflict, NotFound, Unprocessable
from switchboard.hub import Hub
from switchboard.masking import mask_secret, restore_masked
from switchboard.router import RouteError, parse_route
from switchboard.signing import generate_secret
from switchboard.store import Scope

KINDS_WITH_SIGNING = {"webhook"}
DESTINATIONS = "destinations & routes"
T = TypeVar("T")


def sent_fields(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a request set (those left UNSET were not sent), as JSON values."""
    doc: dict[str, Any] = msgspec.to_builtins(body)
    return doc


_WHERE = re.compile(r"([a-z_]+)(?:\[(\d+)\])?")


def problem_pointer(problem: str) -> str:
    """The JSON pointer of a checker's "field[i]: …" problem: `/field/i`."""
    where = _WHERE.match(problem)
    if where is None:
        return "/"
    return f"/{where[1]}/{where[2]}" if where[2] else f"/{where[1]}"


def destination_model(d: DestinationRecord, reveal: bool = False) -> Destination:
    """The API shape: credentials masked (write-only); `reveal` only for secrets the hub has
    just generated, shown once in the answer that created them."""
    return Destination(
        id=d.id,
        name=d.name,
        kind=d.kind,
        config=public_config(d.kind, d.config),
        secrets=list(d.secrets) if reveal else [mask_secret(s) for s in d.secrets],
        timeout=d.timeout,
        concurrency=d.concurrency,
        rate_per_second=d.rate_per_second,
        rate_per_minute=d.rate_per_minute,
        retry_schedule=list(d.retry_schedule) if d.retry_schedule else None,
        enabled=d.enabled,
        disabled_reason=d.disabled_reason,
    )


def parse_destination(
    body: DestinationChange,
    tenant_id: str,
    existing: DestinationRecord | None,
    egress: Policy,
    max_timeout: float = 300,
    max_concurrency: int = 1000,
) -> DestinationRecord:
    """Check a decoded destination body against what its model cannot say: the kind's config,
    the egress policy, the retry schedule's durations and the operator's maxima for `timeout`
    and `concurrency` (SWITCHBOARD_MAX_DESTINATION_*). Every problem is a 422 naming its field."""
    sent = sent_fields(body)
    problems: list[str] = []
    name = sent.get("name", existing.name if existing else "")
    kind = sent.get("kind", existing.kind if existing else "")
    config = sent.get("config", existing.config if existing else {})
    if existing is not None and "config" in sent:  # masked values sent back keep what is stored
        config = restore_masked(
            config, existing.config, public_config(existing.kind, existing.config)
        )
    problems += check_destination_config(kind, config)
    problems += check_destination_egress(config, egress)
    secrets = sent.get("secrets")
    if secrets is None:
        secrets = (
            list(existing.secrets)
            if existing
            else ([generate_secret()] if kind in KINDS_WITH_SIGNING else [])
        )
    elif existing is not None:
        kept = list(existing.secrets)
        secrets = [
            kept[i] if i < len(kept) and s == mask_secret(kept[i]) and s != kept[i] else s
            for i, s in enumerate(secrets)
        ]

    def most(field: str, default: Any, lo: float, hi: float) -> Any:
        if field not in sent:
            value = getattr(existing, field) if existing else default
            return min(value, hi)  # kept from before a lower maximum: the worker applies it too
        if sent[field] > hi:
            problems.append(f"{field}: a number between {lo} and {hi}")
        return sent[field]

    timeout = most("timeout", min(10.0, max_timeout), 0.1, max_timeout)
    concurrency = most("concurrency", min(10, max_concurrency), 1, max_concurrency)
    schedule = existing.retry_schedule if existing else None
    if sent.get("retry_schedule") is not None:
        try:
            schedule = retry.schedule_from_spec(sent["retry_schedule"])
        except retry.ScheduleError as exc:
            at = "" if exc.index is None else f".{exc.index}"
            problems.append(f"retry_schedule{at}: {exc.problem}")
    elif "retry_schedule" in sent:
        schedule = None
    enabled = sent.get("enabled", existing.enabled if existing else True)
    if problems:
        raise Unprocessable(
            "invalid destination: " + "; ".join(problems),
            details=[
                {"path": "/" + p.split(":")[0].replace(".", "/"), "message": p} for p in problems
            ],
        )

    def rate(field: str) -> float | None:
        value = sent[field] if field in sent else getattr(existing, field, None)
        return None if value is None else float(value)

    return DestinationRecord(
        id=existing.id if existing else "dst_" + new_id(),
        tenant_id=tenant_id,
        name=name,
        kind=kind,
        config=config,
        secrets=tuple(secrets),
        timeout=float(timeout),
        concurrency=int(concurrency),
        rate_per_second=rate("rate_per_second"),
        rate_per_minute=rate("rate_per_minute"),
        retry_schedule=schedule,
        enabled=enabled,
        disabled_reason=None if enabled else (existing.disabled_reason if existing else None),
        created_us=existing.created_us if existing else now_us(),
    )


def _maxima(settings: Settings) -> tuple[float, int]:
    return settings.max_destination_timeout, settings.max_destination_concurrency


NO_DESTINATION = "no destination with that id or name in this tenant"


@endpoint(
    "POST /v1/destinations",
    "createDestination",
    DESTINATIONS,
    "Create a destination",
    "A webhook is given a signing secret if none is sent; it is shown unmasked in this "
    "answer only. Credentials sent are write-only: every answer masks them. The `config` of "
    "each kind is checked by its channel (422 naming `config.<field>`).",
    scope="manage",
    body=NewDestination,
    ok={201: (Destination, "Created.")},
    errors=(422,),
)
async def create_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await decode_body(request, NewDestination, 65536)
    dest = parse_destination(body, p.tenant(), None, h.egress, *_maxima(h.settings))
    if await h.deliveries.get_destination(p.tenant(), dest.name) is not None:
        raise Unprocessable(
            f"a destination named {dest.name!r} exists; PATCH it instead",
            details=[{"path": "/name", "message": "the name of another destination"}],
        )
    await h.deliveries.put_destination(dest, now_us())
    # a generated signing secret is shown this once; secrets the client sent it already has
    generated = body.secrets is None or isinstance(body.secrets, msgspec.UnsetType)
    return respond(destination_model(dest, reveal=generated), 201)


@endpoint(
    "PATCH /v1/destinations/{ref}",
    "updateDestination",
    DESTINATIONS,
    "Change a destination",
    "Only the fields sent change (re-enable with enabled: true). Credentials are "
    "write-only: answers mask them, and a masked value sent back keeps the stored one.",
    scope="manage",
    path=RefPath,
    body=DestinationChange,
    ok={200: (Destination, "OK")},
    errors=(404, 409, 422),
)
async def update_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ref = decode_path(request, RefPath).ref
    existing = await h.deliveries.get_destination(p.tenant(), ref)
    if existing is None:
        raise NotFound(NO_DESTINATION)
    body = await decode_body(request, DestinationChange, 65536)
    dest = parse_destination(body, p.tenant(), existing, h.egress, *_maxima(h.settings))
    if dest.name != existing.name:
        other = await h.deliveries.get_destination(p.tenant(), dest.name)
        if other is not None and other.id != existing.id:
            raise Conflict(
                f"a destination named {dest.name!r} exists",
                details=[{"path": "/name", "message": "the name of another destination"}],
            )
    await h.deliveries.put_destination(dest, now_us())
    return respond(destination_model(dest))


@endpoint(
    "GET /v1/destinations",
    "listDestinations",
    DESTINATIONS,
    "List destinations",
    "Every destination of the tenant, secrets masked.",
    scope="read",
    ok={200: (Destinations, "OK")},
)
async def list_destinations(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    dests = await hub(request).deliveries.list_destinations(p.tenant())
    return respond(Destinations(data=[destination_model(d) for d in dests]))


@endpoint(
    "GET /v1/destinations/{ref}",
    "getDestination",
    DESTINATIONS,
    "Get a destination",
    "By id or name, secrets masked.",
    scope="read",
    path=RefPath,
    ok={200: (Destination, "OK")},
    errors=(404,),
)
async def get_destination(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    ref = decode_path(request, RefPath).ref
    d = await hub(request).deliveries.get_destination(p.tenant(), ref)
    if d is None:
        raise NotFound(NO_DESTINATION)
    return respond(destination_model(d))


@endpoint(
    "DELETE /v1/destinations/{ref}",
    "deleteDestination",
    DESTINATIONS,
    "Delete a destination",
    "Removes it by id or name.",
    scope="manage",
    path=RefPath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_destination(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ref = decode_path(request, RefPath).ref
    d = await h.deliveries.get_destination(p.tenant(), ref)
    if d is None or not await h.deliveries.delete_destination(p.tenant(), d.id):
        raise NotFound(NO_DESTINATION)
    return Response(status_code=204)


def route_model(route_id: str, spec: dict[str, Any]) -> Route:
    """A stored route as sent (with `destination_ids` once stored)."""
    return msgspec.convert({**spec, "id": route_id}, type=Route)


async def put_route(h: Hub, tenant_id: str, route: NewRoute) -> Route:
    """Check and store one route (by name: a second PUT of the same name replaces it)."""
    spec = sent_fields(route)
    names: dict[str, str] = {}
    for d in await h.deliveries.list_destinations(tenant_id):
        names[d.name] = d.id
        names[d.id] = d.id
    route_id = (await h.deliveries.route_id_by_name(tenant_id, route.name)) or ("rte_" + new_id())
    try:
        parsed = parse_route(spec, route_id=route_id, tenant_id=tenant_id, destination_ids=names)
    except RouteError as exc:
        raise Unprocessable(
            f"invalid route: {exc}",
            details=[{"path": problem_pointer(p), "message": p} for p in exc.problems],
        ) from None
    await check_declared(h.store, tenant_id, parsed.requires_consent, "/requires_consent")
    stored = {**spec, "destination_ids": list(parsed.destinations)}
    await h.deliveries.put_route(tenant_id, route_id, parsed.name, stored, now_us())
    h.routes.forget(tenant_id)
    return route_model(route_id, spec)


@endpoint(
    "POST /v1/routes",
    "putRoutes",
    DESTINATIONS,
    "Create or replace routes",
    "One route (201; same name replaces it), or a routes file {routes: [...]} "
    "applied at once (200). Filters, transforms, quiet hours and the destinations and consent "
    "purposes named are checked by their own parsers (422 naming the field).",
    scope="manage",
    body=RoutesIn,
    ok={201: (Route, "Stored."), 200: (Routes, "Every route of the file stored.")},
    errors=(422,),
)
async def create_route(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await decode_body(request, RoutesIn, 262144)
    sent = sent_fields(body)
    if isinstance(body.routes, list):  # a whole routes file, applied at once
        if extra := sorted(set(sent) - {"routes"}):
            message = "a routes file has only `routes`"
            raise BadRequest(
                f"/{extra[0]}: {message}", details=[{"path": f"/{extra[0]}", "message": message}]
            )
        return respond(Routes(data=[await put_route(h, p.tenant(), r) for r in body.routes]))
    return respond(await put_route(h, p.tenant(), convert(sent, NewRoute)), 201)


@endpoint(
    "GET /v1/routes",
    "listRoutes",
    DESTINATIONS,
    "List routes",
    "Every route of the tenant.",
    scope="read",
    ok={200: (Routes, "OK")},
)
async def list_routes(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).deliveries.list_routes(p.tenant())
    return respond(Routes(data=[route_model(i, spec) for i, _, spec in rows]))


@endpoint(
    "DELETE /v1/routes/{ref}",
    "deleteRoute",
    DESTINATIONS,
    "Delete a route",
    "By id or name; new events stop matching it.",
    scope="manage",
    path=RefPath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_route(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ref = decode_path(request, RefPath).ref
    route_id = await h.deliveries.route_id_by_name(p.tenant(), ref)
    if route_id is None or not await h.deliveries.delete_route(p.tenant(), route_id):
        raise NotFound("no route with that id or name in this tenant")
    h.routes.forget(p.tenant())
    return Response(status_code=204)


routes = routes_of(
    create_destination,
    list_destinations,
    get_destination,
    update_destination,
    delete_destination,
    create_route,
    list_routes,
    delete_route,
)
