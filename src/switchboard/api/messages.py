"""Message templates: `/v1/templates/{name}` (versioned documents) and `/preview`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard import messages
from switchboard.api.common import JSONResponse, hub, principal, query_int, read_json
from switchboard.envelope import format_us, now_us
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.people import recipient_problem
from switchboard.store import Scope
from switchboard.store.people import PeopleStore

BODY_LIMIT = 262_144  # a whole template document, every variant


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not messages.NAME_RE.match(name):
        problem = "a lowercase name such as 'client_welcome'"
        raise BadRequest(f"name: {problem}", details=[{"path": "name", "message": problem}])
    return name


def _invalid(exc: messages.MessageError) -> Unprocessable:
    return Unprocessable(
        f"invalid template: {exc}",
        details=[{"path": path, "message": message} for path, message in exc.problems],
    )


def _answer(name: str, version: int, spec: dict[str, Any], created_us: int) -> dict[str, Any]:
    return {**spec, "name": name, "version": version, "created_at": format_us(created_us)}


async def put_template(request: Request) -> Response:
    """Apply a template document: a new version if it changed, the same one if not."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    name = _name(request)
    body = await read_json(request, BODY_LIMIT)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("version", "created_at")}
    try:
        parsed = messages.parse_template(body, name)
    except messages.MessageError as exc:
        raise _invalid(exc) from None
    people = PeopleStore(h.store)
    now = now_us()
    version, changed = await people.put_template(p.tenant(), name, parsed.to_dict(), now)
    found = await people.template(p.tenant(), name, version)
    assert found is not None
    return JSONResponse(_answer(name, *found), status_code=201 if changed else 200)


async def get_template(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = _name(request)
    version = None
    if "version" in request.query_params:
        version = query_int(request, "version", 1, 1, 2**31 - 1)
    found = await PeopleStore(hub(request).store).template(p.tenant(), name, version)
    if found is None:
        raise NotFound("no template (or version) with that name in this tenant")
    return JSONResponse(_answer(name, *found))


async def list_templates(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    names = await PeopleStore(hub(request).store).template_names(p.tenant())
    return JSONResponse({"data": [{"name": n, "version": v} for n, v in names]})


async def preview_template(request: Request) -> Response:
    """Every channel's variant rendered for an event (and optionally a recipient, or a locale):
    the locale chosen by the fallback chain, the rendered fields, or the errors."""
    h = hub(request)
    p = await principal(request, Scope.READ)
    name = _name(request)
    body = await read_json(request, 65536)
    if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
        raise BadRequest(
            'the body must be {"event": {…}, "recipient": "id" or {…}, "locale": "pt-BR"}',
            details=[{"path": "/event", "message": "an event object"}],
        )
    people = PeopleStore(h.store)
    found = await people.template(p.tenant(), name)
    if found is None:
        raise NotFound("no template with that name in this tenant")
    template = messages.parse_template(found[1])
    event = {"data": {}, "context": {}, **body["event"]}
    recipient = body.get("recipient")
    if isinstance(recipient, str):
        if recipient_problem(recipient) is not None:
            raise BadRequest("recipient: an id of 1 to 200 characters")
        recipient = await people.get(p.tenant(), recipient)
        if recipient is None:
            raise NotFound("no recipient with that id in this tenant")
    if recipient is not None and not isinstance(recipient, dict):
        raise BadRequest("recipient: a recipient id or a profile object")
    if recipient is not None:
        event["recipient"] = recipient
    locale = body.get("locale")
    if locale is None and recipient is not None:
        locale = recipient.get("locale")
    if locale is None and isinstance(event.get("context"), dict):
        locale = event["context"].get("locale")
    if locale is not None and (not isinstance(locale, str) or not messages.LOCALE_RE.match(locale)):
        raise BadRequest("locale: a language tag such as pt-BR")
    return JSONResponse(
        {
            "name": name,
            "version": found[0],
            "locale": locale,
            "chain": messages.locale_chain(locale, template.default_locale),
            "variants": messages.preview(template, event, locale),
        }
    )


routes = [
    HttpRoute("/v1/templates", list_templates, methods=["GET"]),
    HttpRoute("/v1/templates/{name}/preview", preview_template, methods=["POST"]),
    HttpRoute("/v1/templates/{name}", get_template, methods=["GET"]),
    HttpRoute("/v1/templates/{name}", put_template, methods=["PUT"]),
]
