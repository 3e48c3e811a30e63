"""Consent purposes declared per tenant: `/v1/consent-purposes` (list) and `/{name}` (declare,
describe, undeclare), and the check the consent, route and automation endpoints share: once a
tenant has declared a purpose, every purpose they name must be declared (a 422 naming the field).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard.api.common import JSONResponse, hub, principal, read_json
from switchboard.envelope import now_us
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.people import PURPOSE_RE
from switchboard.store import Scope, Store
from switchboard.store.people import PeopleStore

BODY_LIMIT = 8192
MAX_PURPOSES = 100  # declared by one tenant
MAX_DESCRIPTION = 1000  # characters


class PurposeBody(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /v1/consent-purposes/{name}`."""

    description: str = ""


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not PURPOSE_RE.match(name):
        problem = "a lowercase word such as 'marketing' (letters, digits, '_'; at most 40)"
        raise BadRequest(f"name: {problem}", details=[{"path": "name", "message": problem}])
    return name


def _where(exc: msgspec.ValidationError) -> str:
    """The JSON pointer of a msgspec validation error ("… - at `$.description`", or "… unknown
    field `x`")."""
    text = str(exc)
    if "unknown field `" in text:
        return "/" + text.split("unknown field `", 1)[1].split("`", 1)[0]
    if "at `$." in text:
        return "/" + text.split("at `$.", 1)[1].split("`", 1)[0].replace(".", "/")
    return "/"


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


async def list_purposes(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    return JSONResponse({"data": await PeopleStore(hub(request).store).purposes(p.tenant())})


async def put_purpose(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    name = _name(request)
    try:
        body = msgspec.convert(await read_json(request, BODY_LIMIT), PurposeBody)
    except msgspec.ValidationError as exc:
        raise Unprocessable(
            str(exc), details=[{"path": _where(exc), "message": str(exc)}]
        ) from None
    if len(body.description) > MAX_DESCRIPTION:
        problem = f"at most {MAX_DESCRIPTION} characters"
        raise Unprocessable(
            f"description: {problem}", details=[{"path": "/description", "message": problem}]
        )
    people = PeopleStore(hub(request).store)
    current = await people.purposes(p.tenant())
    if len(current) >= MAX_PURPOSES and name not in {c["name"] for c in current}:
        problem = f"a tenant declares at most {MAX_PURPOSES} purposes"
        raise Unprocessable(problem, details=[{"path": "name", "message": problem}])
    created = await people.put_purpose(p.tenant(), name, body.description, now_us())
    [declared] = [d for d in await people.purposes(p.tenant()) if d["name"] == name]
    return JSONResponse(declared, status_code=201 if created else 200)


async def delete_purpose(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    if not await PeopleStore(hub(request).store).delete_purpose(p.tenant(), _name(request)):
        raise NotFound("no consent purpose with that name in this tenant")
    return Response(status_code=204)


routes = [
    HttpRoute("/v1/consent-purposes", list_purposes, methods=["GET"]),
    HttpRoute("/v1/consent-purposes/{name}", put_purpose, methods=["PUT"]),
    HttpRoute("/v1/consent-purposes/{name}", delete_purpose, methods=["DELETE"]),
]
