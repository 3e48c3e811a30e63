"""Catalog endpoints: list, read and put event types (with compatibility checks)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard import catalog as cat
from switchboard.api.common import JSONResponse, hub, principal, read_json
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.registry import SHARED
from switchboard.store import Scope, StoredType


def _public(t: StoredType) -> dict[str, object]:
    return {**t.spec, "scope": "shared" if t.scope == SHARED else "tenant", "catalog": t.catalog}


async def list_types(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).registry.list(p.tenant())
    return JSONResponse({"data": [_public(t) for t in rows]})


async def get_type(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = request.path_params["name"]
    store = hub(request).store
    row = await store.get_type(p.tenant(), name) or await store.get_type(SHARED, name)
    if row is None:
        raise NotFound(f"no event type {name!r} in this tenant's catalog")
    return JSONResponse(_public(row))


async def put_type(request: Request) -> Response:
    """Create or extend a type in the tenant's own catalog (`?shared=true` with an admin key
    writes the shared catalog)."""
    h = hub(request)
    shared = request.query_params.get("shared") == "true"
    p = await principal(request, Scope.ADMIN if shared else Scope.MANAGE)
    body = await read_json(request, h.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("the body must be an event type object")
    name = request.path_params["name"]
    body.setdefault("name", name)
    if body["name"] != name:
        raise BadRequest(f"the body's name {body['name']!r} differs from the URL's {name!r}")
    try:
        spec = cat.parse_event_type(body, where="body")
    except cat.CatalogError as exc:
        raise Unprocessable(
            str(exc), details=[{"path": "/", "message": m} for m in exc.problems]
        ) from None
    scope = SHARED if shared else p.tenant()
    # a tenant's key may declare a few indexes; the operator's admin key is not limited
    admin = Scope.ADMIN in p.key.scopes
    indexed = await h.registry.put(
        scope,
        spec,
        str(body.get("catalog") or "api"),
        max_indexes=None if admin else h.settings.tenant_max_indexes,
    )
    row = await h.store.get_type(scope, name)
    assert row is not None
    return JSONResponse({**_public(row), "indexed": indexed})


routes = [
    Route("/v1/event-types", list_types, methods=["GET"]),
    Route("/v1/event-types/{name}", get_type, methods=["GET"]),
    Route("/v1/event-types/{name}", put_type, methods=["PUT"]),
]
