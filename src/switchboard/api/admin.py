"""Tenants and API keys: typed endpoints (see `api/contract.py`), described from these models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, field
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import TENANT_ID_RE, hub, principal
from switchboard.api.contract import (
    Body,
    Model,
    Params,
    decode_body,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.auth import check_constraints, mint_key
from switchboard.envelope import format_us, now_us
from switchboard.errors import BadRequest, Conflict, Forbidden, NotFound, StoreError
from switchboard.store import ApiKey as KeyRecord
from switchboard.store import Scope
from switchboard.store import Tenant as TenantRecord

TAG = "tenants & keys"
MAX_KEY_TEXT = 200  # a key's name and bound source, as the event envelope's ids
TenantId = Annotated[
    str,
    Meta(
        pattern=TENANT_ID_RE.pattern,
        description="The tenant id: lowercase letters, digits, - and _.",
    ),
]
UnknownTypes = Annotated[
    Literal["reject", "accept"],
    Meta(description="What happens to events whose type is not in the tenant's catalog."),
]


class TenantIn(Body):
    id: TenantId
    name: Annotated[str, Meta(max_length=200)] | None = None
    unknown_types: UnknownTypes = "reject"


class Tenant(Model):
    id: str
    name: str
    unknown_types: UnknownTypes


class Tenants(Model):
    data: list[Tenant]


class TenantPath(Params):
    tenant_id: TenantId


class KeyIn(Body):
    name: Annotated[str, Meta(max_length=MAX_KEY_TEXT)] | None = None
    scopes: Annotated[
        list[Literal["ingest", "read", "manage", "pii", "admin"]],
        Meta(min_length=1, description="`admin` is refused here: admin keys come from the CLI."),
    ] = field(default_factory=lambda: ["ingest"])
    source: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=MAX_KEY_TEXT,
                description="Default source of the events sent with it.",
            ),
        ]
        | None
    ) = None
    constraints: (
        Annotated[
            dict[str, Any],
            Meta(
                min_length=1,
                description="A filter-language pattern every event the key sends must match, "
                "added to every read it makes (docs/privacy.md).",
            ),
        ]
        | None
    ) = None


class ApiKey(Model):
    id: str
    tenant_id: str | None
    name: str
    prefix: Annotated[str, Meta(description="The first characters, to recognise the key.")]
    scopes: list[str]
    source: str | None
    created_at: Annotated[str, Meta(description="When the key was created (ISO 8601).")]
    revoked: bool
    constraints: dict[str, Any] | None


class NewApiKey(ApiKey):
    key: Annotated[str, Meta(description="The secret: shown once, now.")]


class ApiKeys(Model):
    data: list[ApiKey]


class KeyPath(Params):
    key_id: Annotated[str, Meta(max_length=MAX_KEY_TEXT, description="The key id.")]


class RevokeQuery(Params):
    self_: Annotated[
        Literal["true", "false"],
        Meta(description="`true` to revoke the key that makes this request."),
    ] = field(name="self", default="false")


def _tenant(t: TenantRecord) -> Tenant:
    return Tenant(id=t.id, name=t.name, unknown_types=t.unknown_types)  # type: ignore[arg-type]


def _key(k: KeyRecord, secret: str | None = None) -> ApiKey:
    if secret is not None:
        return NewApiKey(key=secret, **_key_fields(k))
    return ApiKey(**_key_fields(k))


def _key_fields(k: KeyRecord) -> dict[str, Any]:
    return dict(
        id=k.id,
        tenant_id=k.tenant_id,
        name=k.name,
        prefix=k.prefix,
        scopes=list(k.scopes),
        source=k.source,
        created_at=format_us(k.created_us),
        revoked=k.revoked_us is not None,
        constraints=k.constraints,
    )


@endpoint(
    "POST /v1/tenants",
    "createTenant",
    TAG,
    "Create a tenant",
    "A new tenant; `unknown_types` says what happens to types not in its catalog.",
    scope="admin",
    body=TenantIn,
    ok={201: (Tenant, "Created.")},
    errors=(409,),
)
async def create_tenant(request: Request) -> Response:
    h = hub(request)
    await principal(request, Scope.ADMIN)
    body = await decode_body(request, TenantIn, 65536)
    try:
        tenant = await h.store.create_tenant(
            TenantRecord(body.id, body.name or body.id, body.unknown_types, now_us())
        )
    except StoreError as exc:
        raise Conflict(str(exc)) from None
    return respond(_tenant(tenant), 201)


@endpoint(
    "GET /v1/tenants",
    "listTenants",
    TAG,
    "List tenants",
    "Every tenant.",
    scope="admin",
    ok={200: (Tenants, "OK")},
)
async def list_tenants(request: Request) -> Response:
    await principal(request, Scope.ADMIN)
    return respond(Tenants(data=[_tenant(t) for t in await hub(request).store.list_tenants()]))


@endpoint(
    "GET /v1/tenants/{tenant_id}",
    "getTenant",
    TAG,
    "Get a tenant",
    "A key sees its own tenant; an admin key sees any.",
    scope="read",
    path=TenantPath,
    ok={200: (Tenant, "OK")},
    errors=(404,),
)
async def get_tenant(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    tid = decode_path(request, TenantPath).tenant_id
    if Scope.ADMIN not in p.key.scopes and tid != p.tenant():
        raise NotFound(f"no tenant {tid!r}")
    tenant = await hub(request).store.get_tenant(tid)
    if tenant is None:
        raise NotFound(f"no tenant {tid!r}")
    return respond(_tenant(tenant))


@endpoint(
    "POST /v1/keys",
    "createKey",
    TAG,
    "Create an API key",
    "A key for this tenant; the secret is in the response once. Admin keys are made "
    "with the CLI (403 here).",
    scope="manage",
    body=KeyIn,
    ok={201: (NewApiKey, "Created; `key` is shown only now.")},
    errors=(404,),
)
async def create_key(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await decode_body(request, KeyIn, 65536)
    if "admin" in body.scopes:
        raise Forbidden("admin keys are created with the CLI: `switchboard keys create --admin`")
    if Scope.PII in body.scopes:
        # a key sees personal data only if whoever mints it does: `manage` alone cannot
        # grant itself `pii` through a second key
        p.require(Scope.PII)
    tenant_id = p.tenant()
    if Scope.ADMIN in p.key.scopes and await h.store.get_tenant(tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    constraints = _constraints(body.constraints)
    if p.key.constraints is not None:
        # a key limited inside its tenant makes keys limited the same way, never wider ones
        if constraints not in (None, p.key.constraints):
            raise Forbidden(
                "this key is limited by constraints: the keys it makes carry the same ones",
                details=[{"path": "/constraints", "message": "must be this key's constraints"}],
            )
        constraints = p.key.constraints
    secret, record = mint_key(tenant_id, body.name or "key", body.scopes, body.source, constraints)
    await h.store.create_key(record)
    return respond(_key(record, secret), 201)


def _constraints(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    try:
        return check_constraints(spec)
    except ValueError as exc:
        raise BadRequest(
            str(exc), details=[{"path": "/constraints", "message": str(exc)}]
        ) from None


@endpoint(
    "GET /v1/keys",
    "listKeys",
    TAG,
    "List API keys",
    "The tenant's keys (prefixes only).",
    scope="manage",
    ok={200: (ApiKeys, "OK")},
)
async def list_keys(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    keys = await hub(request).store.list_keys(p.tenant())
    return respond(ApiKeys(data=[_key(k) for k in keys]))


@endpoint(
    "DELETE /v1/keys/{key_id}",
    "revokeKey",
    TAG,
    "Revoke an API key",
    "Stops working on every node within 5 seconds. The key making the request revokes itself "
    "only with `self=true` (else 409), so no client locks itself out by accident.",
    scope="manage",
    path=KeyPath,
    query=RevokeQuery,
    ok={204: (None, "Done; no body.")},
    errors=(404, 409),
)
async def revoke_key(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    key_id = decode_path(request, KeyPath).key_id
    on_purpose = decode_query(request, RevokeQuery).self_ == "true"
    if key_id == p.key.id and not on_purpose:
        # a client revoking the key it calls with locks itself out: only on purpose
        raise Conflict(
            "this is the key making the request; add ?self=true to revoke it anyway",
            details=[{"path": "key_id", "message": "the calling key"}],
        )
    if not await h.store.revoke_key(p.tenant(), key_id, now_us()):
        raise NotFound("no active key with that id in this tenant")
    h.auth.forget()
    return Response(status_code=204)


HANDLERS = (create_tenant, list_tenants, get_tenant, create_key, list_keys, revoke_key)
routes = routes_of(*HANDLERS)
