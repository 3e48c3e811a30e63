"""The mappings a source can pin: the shipped ones and a tenant's own immutable versions. Typed
endpoints (`api/contract.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    Model,
    Params,
    decode_body,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.sources import (
    TAG,
    inbound,
)
from switchboard.envelope import now_us
from switchboard.errors import BadRequest, Conflict
from switchboard.sources.mappings import MappingError, parse_mapping
from switchboard.store import Scope
from switchboard.store import inbound as sql

__all__ = ["routes"]


MappingPart = Annotated[str, Meta(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(?!\n)$")]


class Mapping(Model):
    name: str
    version: str
    description: str
    origin: Annotated[
        Literal["shipped", "tenant"], Meta(description="Shipped with the hub, or the tenant's.")
    ]
    spec: Annotated[dict[str, Any], Meta(description="The mapping document.")]


class Mappings(Model):
    data: list[Mapping]


class MappingPath(Params):
    name: Annotated[
        MappingPart, Meta(description="Mapping name: letters, digits, '.', '_', '-' (at most 100).")
    ]
    version: Annotated[MappingPart, Meta(description="Mapping version: as the name (at most 100).")]


MappingDoc = Annotated[
    dict[str, Any],
    Meta(
        description="The mapping document (see docs/sources.md); its name and version are the "
        "URL's. At most 256 KiB."
    ),
]


def _mapping(spec: dict[str, Any], origin: Literal["shipped", "tenant"]) -> Mapping:
    return Mapping(
        name=str(spec.get("name")),
        version=str(spec.get("version")),
        description=str(spec.get("description", "")),
        origin=origin,
        spec=spec,
    )


@endpoint(
    "GET /v1/mappings",
    "listMappings",
    TAG,
    "List mappings",
    "The shipped mappings and the tenant's own versions.",
    scope="read",
    ok={200: (Mappings, "OK")},
)
async def list_mappings(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    shipped = [_mapping(m.spec, "shipped") for m in inbound(request).library.list()]
    own = [_mapping(s, "tenant") for s in await sql.tenant_mappings(hub(request).store, p.tenant())]
    return respond(Mappings(data=shipped + own))


@endpoint(
    "PUT /v1/mappings/{name}/{version}",
    "putMapping",
    TAG,
    "Store a mapping version",
    "A tenant's own mapping version; versions are immutable (409 if it exists, or if it is a "
    "shipped one). The document is checked by the mapping parser (400 naming every problem).",
    scope="manage",
    path=MappingPath,
    body=MappingDoc,
    ok={201: (Mapping, "Stored.")},
    errors=(409,),
)
async def put_mapping(request: Request) -> Response:
    """Store a tenant's own mapping version (immutable: a change is a new version)."""
    p = await principal(request, Scope.MANAGE)
    where = decode_path(request, MappingPath)
    name, version = where.name, where.version
    body = {**await decode_body(request, MappingDoc, 262_144), "name": name, "version": version}
    try:
        parse_mapping(body, f"{name}@{version}")
    except MappingError as exc:
        raise BadRequest(str(exc), details=exc.errors) from None
    if inbound(request).library.get(name, version) is not None:
        raise Conflict(f"{name}@{version} is a shipped mapping; choose another version")
    if not await sql.put_mapping(hub(request).store, p.tenant(), name, version, body, now_us()):
        raise Conflict(f"{name}@{version} exists; mapping versions are immutable")
    return respond(_mapping(body, "tenant"), 201)


routes = routes_of(
    list_mappings,
    put_mapping,
)
