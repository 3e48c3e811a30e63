"""Recipients: `/v1/recipients/{id}` (profile), `/consents` (the ledger), `/preferences`."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard import unsubscribe
from switchboard.api.common import (
    JSONResponse,
    hub,
    principal,
    query_int,
    read_json,
    type_glob_problem,
)
from switchboard.api.models import CHANNEL_RE
from switchboard.api.purposes import check_declared
from switchboard.envelope import EnvelopeError, now_us, parse_time
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.people import (
    ACTIONS,
    CONSENT_FIELDS,
    MAX_VALUE,
    PROFILE_FIELDS,
    PURPOSE_RE,
    ConsentRecord,
    Preference,
    recipient_problem,
)
from switchboard.store import Scope
from switchboard.store.people import PeopleStore, record_consent, upsert_profile

BODY_LIMIT = 65536
MAX_ATTRIBUTES = 50  # keys of a recipient's attributes
MAX_ATTRIBUTES_BYTES = 8192  # their JSON size
MAX_PREFERENCES = 200  # per recipient
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_PHONE = re.compile(r"^\+?[0-9 ().\-]{4,40}$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
_CHANNEL = CHANNEL_RE


def _invalid(problems: list[tuple[str, str]]) -> Unprocessable:
    return Unprocessable(
        "; ".join(f"{path}: {message}" for path, message in problems),
        details=[{"path": path, "message": message} for path, message in problems],
    )


def _recipient_id(request: Request) -> str:
    rid: str = request.path_params["id"]
    if (problem := recipient_problem(rid)) is not None:
        raise BadRequest(problem, details=[{"path": "id", "message": problem}])
    return rid


def parse_profile(body: Any) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    """(contact fields present in the body, attributes or None when absent); problems are
    raised as one 422 naming every field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    problems: list[tuple[str, str]] = []
    for key in sorted(set(body) - {*PROFILE_FIELDS, "attributes", "id"}):
        problems.append((f"/{key}", "unknown field"))
    fields: dict[str, str | None] = {}
    checks = {
        "email": (_EMAIL, "an email address such as ana@example.com"),
        "phone": (_PHONE, "a phone number such as +55 31 99876-5432"),
        "locale": (_LOCALE, "a language tag such as pt-BR or en"),
    }
    for name in PROFILE_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if value is None:
            fields[name] = None
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
            problems.append((f"/{name}", f"a string of 1 to {MAX_VALUE} characters, or null"))
            continue
        if name in checks and not checks[name][0].match(value):
            problems.append((f"/{name}", checks[name][1]))
        if name == "timezone":
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: too long
                problems.append(("/timezone", "an IANA time zone such as America/Sao_Paulo"))
        fields[name] = value
    attributes = body.get("attributes")
    if attributes is not None:
        import orjson

        if not isinstance(attributes, dict) or len(attributes) > MAX_ATTRIBUTES:
            problems.append(("/attributes", f"an object of at most {MAX_ATTRIBUTES} keys"))
        elif len(orjson.dumps(attributes)) > MAX_ATTRIBUTES_BYTES:
            problems.append(("/attributes", f"at most {MAX_ATTRIBUTES_BYTES} bytes of JSON"))
    if problems:
        raise _invalid(problems)
    return fields, attributes


async def get_recipient(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    found = await PeopleStore(hub(request).store).get(p.tenant(), _recipient_id(request))
    if found is None:
        raise NotFound("no recipient with that id in this tenant")
    return JSONResponse(found)


async def put_recipient(request: Request) -> Response:
    """Replace the profile: fields absent from the body are cleared."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _recipient_id(request)
    fields, attributes = parse_profile(await read_json(request, BODY_LIMIT))
    people = PeopleStore(h.store)
    existed = await people.get(p.tenant(), rid) is not None
    await people.run(
        [
            upsert_profile(
                h.store.dialect,
                p.tenant(),
                rid,
                {k: v for k, v in fields.items() if v is not None},
                attributes or {},
                now_us(),
                replace=True,
            )
        ]
    )
    return JSONResponse(await people.get(p.tenant(), rid), status_code=200 if existed else 201)


async def patch_recipient(request: Request) -> Response:
    """Change the fields in the body (null clears one); attributes are merged key by key, a
    null value removing the key."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _recipient_id(request)
    fields, attributes = parse_profile(await read_json(request, BODY_LIMIT))
    people = PeopleStore(h.store)
    current = await people.get(p.tenant(), rid)
    if current is None:
        raise NotFound("no recipient with that id in this tenant; PUT creates one")
    merged = {f: current[f] for f in PROFILE_FIELDS if current[f] is not None}
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    attrs = dict(current["attributes"])
    for key, value in (attributes or {}).items():
        if value is None:
            attrs.pop(key, None)
        else:
            attrs[key] = value
    if len(attrs) > MAX_ATTRIBUTES:
        raise _invalid([("/attributes", f"at most {MAX_ATTRIBUTES} keys in all")])
    await people.run(
        [upsert_profile(h.store.dialect, p.tenant(), rid, merged, attrs, now_us(), replace=True)]
    )
    return JSONResponse(await people.get(p.tenant(), rid))


async def delete_recipient(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    if not await PeopleStore(hub(request).store).delete(p.tenant(), _recipient_id(request)):
        raise NotFound("no recipient with that id in this tenant")
    return Response(status_code=204)


async def list_consents(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await PeopleStore(hub(request).store).consents(p.tenant(), _recipient_id(request), limit)
    state: dict[str, str] = {}
    for r in rows:  # newest first: the first row of a purpose is its state
        state.setdefault(r["purpose"], "granted" if r["action"] == "grant" else "withdrawn")
    return JSONResponse({"state": state, "data": rows})


def parse_consent(body: Any, received_us: int) -> ConsentRecord:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    problems: list[tuple[str, str]] = []
    for key in sorted(set(body) - {"purpose", "action", "at", *CONSENT_FIELDS}):
        problems.append((f"/{key}", "unknown field"))
    purpose, action = body.get("purpose"), body.get("action")
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        problems.append(("/purpose", "a lowercase word such as 'marketing'"))
    if action not in ACTIONS:
        problems.append(("/action", "grant or withdraw"))
    at_us = received_us
    if body.get("at") is not None:
        try:
            at_us = parse_time(body["at"], "at")
        except EnvelopeError as exc:
            problems.append(("/at", exc.errors[0]["message"]))
    values: dict[str, str | None] = {}
    for name in CONSENT_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_VALUE):
            problems.append((f"/{name}", f"a string of at most {MAX_VALUE} characters"))
        values[name] = value
    if problems:
        raise _invalid(problems)
    return ConsentRecord(str(purpose), str(action), at_us, values)


async def add_consent(request: Request) -> Response:
    """Append a grant or a withdrawal; a withdrawal cancels what still waits to go out to the
    recipient through routes that require the purpose."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _recipient_id(request)
    now = now_us()
    record = parse_consent(await read_json(request, BODY_LIMIT), now)
    await check_declared(h.store, p.tenant(), [record.purpose], "/purpose")
    cancel: list[str] = []
    if record.action == "withdraw":
        h.routes.forget(p.tenant())  # the routes as they are now, not as cached
        routes = await h.routes.routes(p.tenant())
        cancel = [r.id for r in routes if record.purpose in r.requires_consent]
    people = PeopleStore(h.store)
    await people.run(record_consent(p.tenant(), rid, record, now, cancel_routes=cancel))
    latest = (await people.consents(p.tenant(), rid, 1))[0]
    return JSONResponse(latest, status_code=201)


def parse_preferences(body: Any) -> list[Preference]:
    if not isinstance(body, dict) or not isinstance(body.get("preferences"), list):
        raise BadRequest(
            'the body must be {"preferences": [{"topic": …, "channel": …, "enabled": …}]}',
            details=[{"path": "/preferences", "message": "a list"}],
        )
    raw = body["preferences"]
    if len(raw) > MAX_PREFERENCES:
        raise _invalid([("/preferences", f"at most {MAX_PREFERENCES} preferences")])
    problems: list[tuple[str, str]] = []
    out: dict[tuple[str, str], Preference] = {}
    for i, item in enumerate(raw):
        at = f"/preferences/{i}"
        if not isinstance(item, dict):
            problems.append((at, "an object with topic, channel and enabled"))
            continue
        for key in sorted(set(item) - {"topic", "channel", "enabled"}):
            problems.append((f"{at}/{key}", "unknown field"))
        topic, channel, enabled = item.get("topic"), item.get("channel", "*"), item.get("enabled")
        if (problem := type_glob_problem(topic)) is not None or len(str(topic)) > 200:
            problems.append((f"{at}/topic", problem or "at most 200 characters"))
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            problems.append((f"{at}/channel", "a channel kind such as email, or '*'"))
        if not isinstance(enabled, bool):
            problems.append((f"{at}/enabled", "true or false"))
        if not problems:
            out[(str(topic), str(channel))] = Preference(str(topic), str(channel), bool(enabled))
    if problems:
        raise _invalid(problems)
    return list(out.values())


_PAGE = """<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>{title}</title></head><body>
<p>{text}</p>{form}</body></html>"""


def _unsubscribe_target(request: Request) -> tuple[str, str, str, str]:
    found = unsubscribe.verify(
        hub(request).settings.unsubscribe_secret, request.path_params["token"]
    )
    if found is None:
        raise NotFound("this unsubscribe link is not valid")
    return found


async def unsubscribe_page(request: Request) -> Response:
    """A link followed in a browser (or prefetched by a mail scanner) changes nothing: it shows
    a button that POSTs, as RFC 8058 asks."""
    _unsubscribe_target(request)
    form = '<form method="post"><button type="submit">Cancelar inscrição</button></form>'
    body = _PAGE.format(title="Cancelar inscrição", text="Não quer mais receber?", form=form)
    return Response(body, media_type="text/html; charset=utf-8")


async def unsubscribe_now(request: Request) -> Response:
    """The one-click POST (`List-Unsubscribe=One-Click`) or the page's button: the recipient's
    preference for (topic, channel) becomes opted out. Idempotent; no API key, only the token."""
    tenant, recipient, topic, channel = _unsubscribe_target(request)
    await PeopleStore(hub(request).store).set_preference(
        tenant, recipient, Preference(topic, channel, False), now_us()
    )
    done = "Pronto: você não receberá mais estas mensagens por este canal."
    body = _PAGE.format(title="Inscrição cancelada", text=done, form="")
    return Response(body, media_type="text/html; charset=utf-8")


def _prefs_json(prefs: list[Preference]) -> dict[str, Any]:
    return {
        "preferences": [
            {"topic": p.topic, "channel": p.channel, "enabled": p.enabled} for p in prefs
        ]
    }


async def get_preferences(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    prefs = await PeopleStore(hub(request).store).preferences(p.tenant(), _recipient_id(request))
    return JSONResponse(_prefs_json(prefs))


async def put_preferences(request: Request) -> Response:
    """Replace the recipient's preferences."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _recipient_id(request)
    prefs = parse_preferences(await read_json(request, BODY_LIMIT))
    people = PeopleStore(h.store)
    await people.put_preferences(p.tenant(), rid, prefs, now_us())
    return JSONResponse(_prefs_json(await people.preferences(p.tenant(), rid)))


routes = [
    HttpRoute("/v1/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    HttpRoute("/v1/unsubscribe/{token}", unsubscribe_now, methods=["POST"]),
    HttpRoute("/v1/recipients/{id:path}/consents", list_consents, methods=["GET"], name="consents"),
    HttpRoute("/v1/recipients/{id:path}/consents", add_consent, methods=["POST"]),
    HttpRoute("/v1/recipients/{id:path}/preferences", get_preferences, methods=["GET"]),
    HttpRoute("/v1/recipients/{id:path}/preferences", put_preferences, methods=["PUT"]),
    HttpRoute("/v1/recipients/{id:path}", get_recipient, methods=["GET"]),
    HttpRoute("/v1/recipients/{id:path}", put_recipient, methods=["PUT"]),
    HttpRoute("/v1/recipients/{id:path}", patch_recipient, methods=["PATCH"]),
    HttpRoute("/v1/recipients/{id:path}", delete_recipient, methods=["DELETE"]),
]
