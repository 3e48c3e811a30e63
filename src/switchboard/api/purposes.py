"""Consent purposes declared per tenant: `/v1/consent-purposes` (list) and `/{name}` (declare,
describe, undeclare), and the check the consent, route and automation endpoints share: once a
tenant has declared a purpose, every purpose they name must be declared (a 422 naming the field).
Typed endpoints (see `api/contract.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    Body,
    Model,
    Params,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.contract_extra import decode_invalid
from switchboard.envelope import now_us
from switchboard.errors import NotFound, Unprocessable
from switchboard.people import PURPOSE_RE
from switchboard.store import Scope, Store
from switchboard.store.people import PeopleStore

TAG = "recipients"
BODY_LIMIT = 8192
MAX_PURPOSES = 100  # declared by one tenant
MAX_DESCRIPTION = 1000  # characters

PurposeName = Annotated[
    str,
    Meta(
        pattern=PURPOSE_RE.pattern,
        description="A consent purpose: a lowercase word such as marketing (letters, digits, "
        "'_'; at most 40).",
    ),
]


class PurposeIn(Body):
    """`PUT /v1/consent-purposes/{name}`."""

    description: Annotated[str, Meta(max_length=MAX_DESCRIPTION)] = ""


class Purpose(Model):
    name: str
    description: str
    created_at: Annotated[str, Meta(description="ISO 8601.")]
    updated_at: Annotated[str, Meta(description="ISO 8601.")]


class Purposes(Model):
    data: list[Purpose]


class PurposePath(Params):
    name: PurposeName


async def check_declared(store: Store, tenant_id: str, purposes: Sequence[str], path: str) -> None:
    """A 422 naming each purpose (`{path}/{i}`, or `path` alone for a single value) the tenant
    has not declared, when it has declared any."""
    missing = await PeopleStore(store).undeclared(tenant_id, purposes)
    if not missing:
        return
    single = path.endswith("purpose")
    details = [
        {
            "path": path if single else f"{path}/{list(purposes).index(p)}",
            "message": f"{p!r} is not a consent purpose of this tenant "
            "(declare it with PUT /v1/consent-purposes/{name})",
        }
        for p in missing
    ]
    raise Unprocessable("; ".join(d["message"] for d in details), details=details)


@endpoint(
    "GET /v1/consent-purposes",
    "listConsentPurposes",
    TAG,
    "The tenant's consent purposes",
    "Empty while the tenant has declared none: then any purpose is accepted.",
    scope="read",
    ok={200: (Purposes, "OK")},
)
async def list_purposes(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    found = await PeopleStore(hub(request).store).purposes(p.tenant())
    return respond(Purposes(data=msgspec.convert(found, list[Purpose])))


@endpoint(
    "PUT /v1/consent-purposes/{name}",
    "putConsentPurpose",
    TAG,
    "Declare or describe a consent purpose",
    "Once a tenant declares any purpose, consents, routes and automations may name only "
    f"declared ones (422 naming the field). At most {MAX_PURPOSES} per tenant; a description "
    f"of at most {MAX_DESCRIPTION} characters.",
    scope="manage",
    path=PurposePath,
    body=PurposeIn,
    ok={200: (Purpose, "Described again."), 201: (Purpose, "Declared.")},
    errors=(422,),
)
async def put_purpose(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    name = decode_path(request, PurposePath).name
    body = await decode_invalid(request, PurposeIn, BODY_LIMIT)
    people = PeopleStore(hub(request).store)
    current = await people.purposes(p.tenant())
    if len(current) >= MAX_PURPOSES and name not in {c["name"] for c in current}:
        problem = f"a tenant declares at most {MAX_PURPOSES} purposes"
        raise Unprocessable(problem, details=[{"path": "name", "message": problem}])
    created = await people.put_purpose(p.tenant(), name, body.description, now_us())
    [declared] = [d for d in await people.purposes(p.tenant()) if d["name"] == name]
    return respond(msgspec.convert(declared, Purpose), 201 if created else 200)


@endpoint(
    "DELETE /v1/consent-purposes/{name}",
    "deleteConsentPurpose",
    TAG,
    "Undeclare a consent purpose",
    "The ledger keeps its records of the purpose.",
    scope="manage",
    path=PurposePath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_purpose(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    name = decode_path(request, PurposePath).name
    if not await PeopleStore(hub(request).store).delete_purpose(p.tenant(), name):
        raise NotFound("no consent purpose with that name in this tenant")
    return Response(status_code=204)


routes = routes_of(list_purposes, put_purpose, delete_purpose)
