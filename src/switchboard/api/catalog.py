"""Catalog endpoints: list, read and put event types (with compatibility checks)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard import catalog as cat
from switchboard.api.common import hub, principal, read_json
from switchboard.api.contract import (
    Model,
    Params,
    convert,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.people import MAX_DEFAULTS, MAX_PROFILE_KEYS
from switchboard.registry import SHARED
from switchboard.store import Scope, StoredType

TAG = "catalog"
MAX_TEXT = 10_000  # a type's description
TypeName = Annotated[
    str,
    Meta(
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(?!\n)$",
        max_length=200,
        description="A lowercase dotted name.",
        examples=["billing.payment_received"],
    ),
]
DataPath = Annotated[str, Meta(max_length=200, description="A dotted data path.")]
Mode = Literal["enforce", "warn", "quarantine"]
PiiClassName = Literal[  # pii.PiiClass (tests/unit/test_event_shapes.py)
    "email", "phone", "cpf", "cnpj", "name", "ip", "free_text"
]


class TypeVersion(Struct, kw_only=True, forbid_unknown_fields=True):
    version: Annotated[
        str,
        Meta(pattern=r"^\d+\.\d+(\.\d+)?(?!\n)$", description="MAJOR.MINOR or MAJOR.MINOR.PATCH."),
    ]
    schema: Annotated[dict[str, Any], Meta(description="A JSON Schema (2020-12) for `data`.")]
    examples: list[dict[str, Any]] | None = None


class _TypeFields(Struct, kw_only=True):
    """What a type document holds (docs/catalog.md), in the API as in a catalog folder."""

    description: Annotated[str, Meta(max_length=MAX_TEXT)] | None = None
    owner: Annotated[str, Meta(max_length=200)] | None = None
    mode: Mode = "enforce"
    pii: list[DataPath] | None = None
    pii_classes: (
        Annotated[
            # the class is checked by the catalog's parser, whose answer names the path
            dict[str, Annotated[str, Meta(max_length=40)]],
            Meta(
                description="A pii path → its masking class (email, phone, cpf, cnpj, name, ip or "
                "free_text), where the path's name does not say it."
            ),
        ]
        | None
    ) = None
    index: list[DataPath] | None = None
    profile: (
        Annotated[
            dict[str, Annotated[str, Meta(max_length=200)]],
            Meta(max_length=MAX_PROFILE_KEYS, description="A profile field → its path."),
        ]
        | None
    ) = None
    consent: (
        Annotated[
            dict[str, Annotated[str, Meta(max_length=200)]],
            Meta(
                description="purpose and action (grant | withdraw) or field, and paths of "
                "terms_version, legal_basis, origin, ip, user_agent."
            ),
        ]
        | None
    ) = None
    critical: bool | None = None
    category: Annotated[str, Meta(max_length=200)] | None = None
    preferences: (
        Annotated[
            dict[str, bool],
            Meta(max_length=MAX_DEFAULTS, description="A channel kind (or '*') → on or off."),
        ]
        | None
    ) = None
    retention: (
        Annotated[
            str, Meta(max_length=200, description='How long its events are kept: "18 months".')
        ]
        | None
    ) = None


class EventTypeIn(_TypeFields, forbid_unknown_fields=True):
    """An event type to create or extend. The read-only fields a GET answers (`scope`,
    `indexed`, `updated_at`) are taken and ignored, so a GET's answer can be PUT back."""

    versions: Annotated[list[TypeVersion], Meta(min_length=1)]
    name: TypeName | None = None  # the URL's when absent
    catalog: (
        Annotated[str, Meta(max_length=200, description="The catalog it belongs to (default api).")]
        | None
    ) = None
    scope: Any = None
    indexed: Any = None
    updated_at: Any = None


class EventType(Struct, kw_only=True):
    """An event type of the catalog: the tenant's own, or the shared one every tenant sees.
    The optional fields are there when the type declares them."""

    name: TypeName
    description: str
    owner: str | None
    mode: Mode
    pii: list[str]
    pii_classes: dict[str, PiiClassName] | UnsetType = UNSET
    index: list[str]
    versions: list[TypeVersion]
    profile: dict[str, str] | UnsetType = UNSET
    consent: dict[str, str] | UnsetType = UNSET
    critical: bool | UnsetType = UNSET
    category: str | UnsetType = UNSET
    preferences: dict[str, bool] | UnsetType = UNSET
    retention: str | UnsetType = UNSET
    scope: Literal["shared", "tenant"]
    catalog: str
    indexed: (
        Annotated[list[str], Meta(description="On PUT: the index paths built now.")] | UnsetType
    ) = UNSET


class EventTypes(Model):
    data: list[EventType]


class TypePath(Params):
    name: Annotated[
        str,
        Meta(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,199}(?!\n)$", description="The event type name."),
    ]


class PutQuery(Params):
    shared: Annotated[bool, Meta(description="Write the shared catalog (an admin key).")] = False


def _public(t: StoredType, indexed: list[str] | UnsetType = UNSET) -> EventType:
    doc = {**t.spec, "scope": "shared" if t.scope == SHARED else "tenant", "catalog": t.catalog}
    return msgspec.convert({**doc, "indexed": indexed} if indexed is not UNSET else doc, EventType)


@endpoint(
    "GET /v1/event-types",
    "listEventTypes",
    TAG,
    "List event types",
    "The tenant's types and the shared catalog's.",
    scope="read",
    ok={200: (EventTypes, "OK")},
)
async def list_types(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).registry.list(p.tenant())
    return respond(EventTypes(data=[_public(t) for t in rows]))


@endpoint(
    "GET /v1/event-types/{name}",
    "getEventType",
    TAG,
    "Get an event type",
    "The tenant's type of that name, else the shared one.",
    scope="read",
    path=TypePath,
    ok={200: (EventType, "OK")},
    errors=(404,),
)
async def get_type(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = decode_path(request, TypePath).name
    store = hub(request).store
    row = await store.get_type(p.tenant(), name) or await store.get_type(SHARED, name)
    if row is None:
        raise NotFound(f"no event type {name!r} in this tenant's catalog")
    return respond(_public(row))


@endpoint(
    "PUT /v1/event-types/{name}",
    "putEventType",
    TAG,
    "Create or extend an event type",
    "Stored versions must not change incompatibly (409). `?shared=true` writes the shared "
    "catalog and needs the `admin` scope. A body that breaks the type's rules is a 422 "
    "naming each problem.",
    scope="manage",
    path=TypePath,
    query=PutQuery,
    body=EventTypeIn,
    ok={200: (EventType, "Stored.")},
    errors=(409, 422),
)
async def put_type(request: Request) -> Response:
    """Create or extend a type in the tenant's own catalog (`?shared=true` with an admin key
    writes the shared catalog)."""
    h = hub(request)
    shared = decode_query(request, PutQuery).shared
    p = await principal(request, Scope.ADMIN if shared else Scope.MANAGE)
    name = decode_path(request, TypePath).name
    body = await read_json(request, h.settings.max_body_bytes)
    # the catalog's own answer to a document that breaks its rules is a 422, as below
    typed = convert(body, EventTypeIn, Unprocessable)
    if typed.name is not None and typed.name != name:
        raise BadRequest(f"the body's name {typed.name!r} differs from the URL's {name!r}")
    try:
        spec = cat.parse_event_type({**body, "name": name}, where="body")
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
        typed.catalog or "api",
        max_indexes=None if admin else h.settings.tenant_max_indexes,
    )
    row = await h.store.get_type(scope, name)
    assert row is not None
    return respond(_public(row, indexed))


routes = routes_of(list_types, get_type, put_type)
