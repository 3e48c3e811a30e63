"""How long the tenant's data is kept: `GET /v1/retention` (the policy in force) and
`PUT /v1/retention` (the tenant's default event retention)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import JSONResponse, hub, principal, read_body
from switchboard.errors import BadRequest, Unprocessable, UnsupportedMedia
from switchboard.retention import RetentionError, effective_days, parse_retention, type_retentions
from switchboard.store import Scope
from switchboard.store import retention as sql


class RetentionBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PUT /v1/retention."""

    default: str | int | None  # "24 months", days, or null: keep events until told otherwise


async def get_retention(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    return JSONResponse(await _policy(request, p.tenant()))


async def _policy(request: Request, tenant_id: str) -> dict[str, Any]:
    h = hub(request)
    s = h.settings
    floor = s.retention_floor_days
    default = await sql.get_tenant_retention(h.store, tenant_id)
    types = type_retentions(await h.store.list_types(("*", tenant_id)))
    return {
        "default_days": default,
        "floor_days": floor or None,
        "types": {
            name: {"days": days, "effective_days": effective_days(days, floor)}
            for name, days in sorted(types.items())
        },
        "effective_default_days": effective_days(default, floor),
        "attempts_days": s.attempt_retention_days or None,
        "inbound_requests_days": s.inbound_retention_days or None,
        "audit_log_days": s.audit_retention_days or None,
    }


async def put_retention(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMedia(f"Content-Type must be application/json, got {ctype or 'nothing'!r}")
    try:
        body = msgspec.json.decode(await read_body(request, 65536), type=RetentionBody)
    except msgspec.ValidationError as exc:
        raise BadRequest(
            f"invalid retention: {exc}", details=[{"path": "/default", "message": str(exc)}]
        ) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    days = None
    if body.default is not None:
        try:
            days = parse_retention(body.default)
        except RetentionError as exc:
            raise Unprocessable(
                f"default: {exc}", details=[{"path": "/default", "message": str(exc)}]
            ) from None
        floor = h.settings.retention_floor_days
        if days < floor:
            message = f"shorter than the operator's floor of {floor} days"
            raise Unprocessable(
                f"default: {body.default!r} is {message}",
                details=[{"path": "/default", "message": message}],
            )
    await sql.set_tenant_retention(h.store, p.tenant(), days)
    return JSONResponse(await _policy(request, p.tenant()))


routes = [
    Route("/v1/retention", get_retention, methods=["GET"]),
    Route("/v1/retention", put_retention, methods=["PUT"]),
]
