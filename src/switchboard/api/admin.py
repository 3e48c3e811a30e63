"""Tenants and API keys."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import JSONResponse, hub, principal, read_json
from switchboard.auth import check_constraints, mint_key
from switchboard.envelope import now_us
from switchboard.errors import BadRequest, Conflict, Forbidden, NotFound, StoreError
from switchboard.store import Scope, Tenant

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")


def _tenant_json(t: Tenant) -> dict[str, object]:
    return {"id": t.id, "name": t.name, "unknown_types": t.unknown_types}


async def create_tenant(request: Request) -> Response:
    h = hub(request)
    await principal(request, Scope.ADMIN)
    body = await read_json(request, 65536)
    if not isinstance(body, dict):
        raise BadRequest("the body must be an object {id, name}")
    tid = body.get("id")
    if not isinstance(tid, str) or not TENANT_ID_RE.match(tid):
        raise BadRequest(
            "id must be lowercase letters, digits, '-' or '_' (at most 63)",
            details=[{"path": "/id", "message": "invalid tenant id"}],
        )
    policy = body.get("unknown_types", "reject")
    if policy not in ("reject", "accept"):
        raise BadRequest("unknown_types must be 'reject' or 'accept'")
    try:
        tenant = await h.store.create_tenant(
            Tenant(tid, str(body.get("name") or tid), policy, now_us())
        )
    except StoreError as exc:
        raise Conflict(str(exc)) from None
    return JSONResponse(_tenant_json(tenant), status_code=201)


async def list_tenants(request: Request) -> Response:
    await principal(request, Scope.ADMIN)
    return JSONResponse(
        {"data": [_tenant_json(t) for t in await hub(request).store.list_tenants()]}
    )


async def get_tenant(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    tid = request.path_params["tenant_id"]
    if Scope.ADMIN not in p.key.scopes and tid != p.tenant():
        raise NotFound(f"no tenant {tid!r}")
    tenant = await hub(request).store.get_tenant(tid)
    if tenant is None:
        raise NotFound(f"no tenant {tid!r}")
    return JSONResponse(_tenant_json(tenant))


async def create_key(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    body = await read_json(request, 65536)
    if not isinstance(body, dict):
        raise BadRequest("the body must be an object {name, scopes}")
    scopes = body.get("scopes", ["ingest"])
    if not isinstance(scopes, list) or not all(s in Scope._value2member_map_ for s in scopes):
        raise BadRequest(
            "scopes must be a list of ingest, read, manage",
            details=[{"path": "/scopes", "message": "unknown scope"}],
        )
    if "admin" in scopes:
        raise Forbidden("admin keys are created with the CLI: `switchboard keys create --admin`")
    tenant_id = p.tenant()
    constraints = _constraints(body.get("constraints"))
    if p.key.constraints is not None:
        # a key limited inside its tenant makes keys limited the same way, never wider ones
        if constraints not in (None, p.key.constraints):
            raise Forbidden(
                "this key is limited by constraints: the keys it makes carry the same ones",
                details=[{"path": "/constraints", "message": "must be this key's constraints"}],
            )
        constraints = p.key.constraints
    secret, record = mint_key(
        tenant_id, str(body.get("name") or "key"), scopes, body.get("source"), constraints
    )
    await h.store.create_key(record)
    return JSONResponse({**record.public(), "key": secret}, status_code=201)


def _constraints(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    try:
        return check_constraints(spec)
    except ValueError as exc:
        raise BadRequest(
            str(exc), details=[{"path": "/constraints", "message": str(exc)}]
        ) from None


async def list_keys(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    keys = await hub(request).store.list_keys(p.tenant())
    return JSONResponse({"data": [k.public() for k in keys]})


async def revoke_key(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    key_id = request.path_params["key_id"]
    if key_id == p.key.id and request.query_params.get("self") != "true":
        # a client revoking the key it calls with locks itself out: only on purpose
        raise Conflict(
            "this is the key making the request; add ?self=true to revoke it anyway",
            details=[{"path": "key_id", "message": "the calling key"}],
        )
    if not await h.store.revoke_key(p.tenant(), key_id, now_us()):
        raise NotFound("no active key with that id in this tenant")
    h.auth.forget()
    return Response(status_code=204)


routes = [
    Route("/v1/tenants", create_tenant, methods=["POST"]),
    Route("/v1/tenants", list_tenants, methods=["GET"]),
    Route("/v1/tenants/{tenant_id}", get_tenant, methods=["GET"]),
    Route("/v1/keys", create_key, methods=["POST"]),
    Route("/v1/keys", list_keys, methods=["GET"]),
    Route("/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
