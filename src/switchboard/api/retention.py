"""How long the tenant's data is kept: `GET /v1/retention` (the policy in force) and
`PUT /v1/retention` (the tenant's default event retention). Typed endpoints (`api/contract.py`)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import Body, Model, decode_body, endpoint, respond, routes_of
from switchboard.errors import Unprocessable
from switchboard.retention import (
    MAX_DAYS,
    RetentionError,
    effective_days,
    parse_retention,
    type_retentions,
)
from switchboard.store import Scope
from switchboard.store import retention as sql

TAG = "tenants & keys"
Days = Annotated[int, Meta(ge=1)]


class RetentionIn(Body):
    default: Annotated[
        Annotated[
            str,
            Meta(
                max_length=40,
                description="A duration: `30 days`, `6 weeks`, `18 months`, `2 years`.",
            ),
        ]
        | Annotated[int, Meta(ge=1, le=MAX_DAYS, description="Days.")]
        | None,
        Meta(
            description="Null keeps events of types without their own retention forever; "
            "at most 100 years, and not under the operator's floor."
        ),
    ]


class TypeRetention(Model):
    days: Days | None
    effective_days: Days | None


class RetentionPolicy(Model):
    default_days: Annotated[
        Days | None, Meta(description="The tenant's default event retention, as set.")
    ]
    floor_days: Annotated[
        Days | None, Meta(description="The operator's floor (SWITCHBOARD_RETENTION_FLOOR_DAYS).")
    ]
    types: Annotated[
        dict[str, TypeRetention],
        Meta(description="Event types with a `retention` of their own in the catalog."),
    ]
    effective_default_days: Annotated[
        Days | None, Meta(description="The default raised to the floor.")
    ]
    attempts_days: Days | None
    inbound_requests_days: Days | None
    audit_log_days: Days | None


@endpoint(
    "GET /v1/retention",
    "getRetention",
    TAG,
    "How long data is kept",
    "The retention in force: the tenant's default, each event type's own, the floor, and the "
    "retention of attempts, inbound requests and the audit log (null: forever).",
    scope="read",
    ok={200: (RetentionPolicy, "OK")},
)
async def get_retention(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    return respond(await _policy(request, p.tenant()))


async def _policy(request: Request, tenant_id: str) -> RetentionPolicy:
    h = hub(request)
    s = h.settings
    floor = s.retention_floor_days
    default = await sql.get_tenant_retention(h.store, tenant_id)
    types = type_retentions(await h.store.list_types(("*", tenant_id)))
    return RetentionPolicy(
        default_days=default,
        floor_days=floor or None,
        types={
            name: TypeRetention(days=days, effective_days=effective_days(days, floor))
            for name, days in sorted(types.items())
        },
        effective_default_days=effective_days(default, floor),
        attempts_days=s.attempt_retention_days or None,
        inbound_requests_days=s.inbound_retention_days or None,
        audit_log_days=s.audit_retention_days or None,
    )


@endpoint(
    "PUT /v1/retention",
    "putRetention",
    TAG,
    "Set the tenant's default event retention",
    "`default` is a duration (`24 months`, `400 days`) or days, or null to keep events of "
    "types without their own retention forever; it may not be under the floor.",
    scope="manage",
    body=RetentionIn,
    ok={200: (RetentionPolicy, "OK")},
    errors=(422,),
)
async def put_retention(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await decode_body(request, RetentionIn, 65536)
    days = None
    if body.default is not None:
        try:  # the text's grammar, and its size in days, are the parser's
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
    return respond(await _policy(request, p.tenant()))


routes = routes_of(get_retention, put_retention)
