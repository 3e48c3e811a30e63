"""Recipients: `/v1/recipients/{id}` (profile), `/consents` (the ledger), `/preferences`, and the
public one-click unsubscribe link. Typed endpoints (see `api/contract.py`)."""

from __future__ import annotations

import base64
import hashlib
import zoneinfo
from html import escape
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard import unsubscribe
from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    PUBLIC,
    Body,
    Model,
    Params,
    Raw,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.contract_extra import RecipientId, decode_invalid
from switchboard.api.models import CHANNEL_RE
from switchboard.api.purposes import PurposeName, check_declared
from switchboard.envelope import TYPE_GLOB_RE, EnvelopeError, now_us, parse_time
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.people import MAX_VALUE, PROFILE_FIELDS, ConsentRecord, Preference
from switchboard.store import Scope
from switchboard.store.people import PeopleStore, record_consent, upsert_profile

TAG = "recipients"
BODY_LIMIT = 65536
MAX_ATTRIBUTES = 50  # keys of a recipient's attributes
MAX_ATTRIBUTES_BYTES = 8192  # their JSON size
MAX_PREFERENCES = 200  # per recipient
MAX_TOKEN = 2048  # characters of an unsubscribe link's token


Email = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_VALUE,
        pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}(?!\n)$",
        description="Contact email.",
    ),
]
Phone = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_VALUE,
        pattern=r"^\+?[0-9 ().\-]{4,40}(?!\n)$",
        description="Phone / WhatsApp number.",
    ),
]
Locale = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_VALUE,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}(?!\n)$",
        description="Language tag, e.g. pt-BR.",
    ),
]
TimeZone = Annotated[
    str,
    Meta(min_length=1, max_length=MAX_VALUE, description="IANA time zone, e.g. America/Sao_Paulo."),
]
Name = Annotated[str, Meta(min_length=1, max_length=MAX_VALUE)]
Attributes = Annotated[
    dict[str, Any],
    Meta(
        max_length=MAX_ATTRIBUTES,
        description=f"Free-form attributes: at most {MAX_ATTRIBUTES} keys and "
        f"{MAX_ATTRIBUTES_BYTES} bytes of JSON. In a PATCH they merge key by key, null removing "
        "a key.",
    ),
]
ConsentText = Annotated[str, Meta(max_length=MAX_VALUE)]
Action = Literal["grant", "withdraw"]


class ProfileIn(Body):
    """A recipient's profile: in a PUT, absent fields are cleared; in a PATCH, absent fields
    stay and null clears one."""

    email: Email | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    locale: Locale | UnsetType | None = UNSET
    timezone: TimeZone | UnsetType | None = UNSET
    name: Name | UnsetType | None = UNSET
    attributes: Attributes | UnsetType | None = UNSET
    id: Annotated[str, Meta(description="Ignored: the URL names the recipient.")] | UnsetType = (
        UNSET
    )


class Recipient(Model):
    id: str
    email: str | None
    phone: str | None
    locale: str | None
    timezone: str | None
    name: str | None
    attributes: dict[str, Any]
    created_at: Annotated[str, Meta(description="ISO 8601.")]
    updated_at: Annotated[str, Meta(description="ISO 8601.")]


class RecipientPath(Params):
    id: RecipientId


class ConsentIn(Body):
    purpose: PurposeName
    action: Action
    at: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=64,
                description="When the person decided (default: now).",
                extra_json_schema={"format": "date-time"},
            ),
        ]
        | None
    ) = None
    terms_version: ConsentText | None = None
    legal_basis: ConsentText | None = None
    origin: ConsentText | None = None
    ip: ConsentText | None = None
    user_agent: ConsentText | None = None


class Consent(Model):
    id: str
    purpose: str
    action: Action
    at: str
    terms_version: str | None
    legal_basis: str | None
    origin: str | None
    ip: str | None
    user_agent: str | None
    event_id: Annotated[str | None, Meta(description="The event that recorded it, if any.")]
    recorded_at: str


class Consents(Model):
    state: Annotated[
        dict[str, Literal["granted", "withdrawn"]],
        Meta(description="Each purpose's current state."),
    ]
    data: Annotated[list[Consent], Meta(description="Every record, newest first.")]


class ConsentQuery(Params):
    limit: Annotated[int, Meta(ge=1, le=1000, description="Page size (default 100).")] = 100


class PreferenceItem(Body, kw_only=True):
    topic: Annotated[
        str,
        Meta(
            pattern=TYPE_GLOB_RE.pattern,
            max_length=200,
            description="An event type, a glob of types, or a catalog category.",
        ),
    ]
    channel: Annotated[
        str,
        Meta(
            pattern=CHANNEL_RE.pattern,
            description="A destination kind (email, whatsapp, inbox…) or *.",
        ),
    ] = "*"
    enabled: bool


class Preferences(Body):
    """A recipient's opt-ins and opt-outs (the body of the PUT and every answer)."""

    preferences: Annotated[list[PreferenceItem], Meta(max_length=MAX_PREFERENCES)]


class TokenPath(Params):
    token: Annotated[
        str,
        Meta(
            max_length=MAX_TOKEN,
            pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?!\n)$",
            description="The signed token of the link (base64url, a dot, base64url).",
        ),
    ]


def _invalid(path: str, message: str) -> Unprocessable:
    return Unprocessable(f"{path}: {message}", details=[{"path": path, "message": message}])


def _recipient(found: dict[str, Any] | None) -> Recipient:
    if found is None:
        raise NotFound("no recipient with that id in this tenant")
    return msgspec.convert(found, Recipient)


def _rid(request: Request) -> str:
    return decode_path(request, RecipientPath).id


def _profile(body: ProfileIn) -> tuple[dict[str, str | None], dict[str, Any] | None]:
    """(contact fields present in the body, attributes or None when absent or null), after the
    checks a schema cannot state."""
    fields: dict[str, str | None] = {}
    for name in PROFILE_FIELDS:
        value = getattr(body, name)
        if value is not UNSET:
            fields[name] = value
    if (zone := fields.get("timezone")) is not None:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a long name
            raise _invalid("/timezone", "an IANA time zone such as America/Sao_Paulo") from None
    attributes = body.attributes if isinstance(body.attributes, dict) else None
    if attributes is not None and len(orjson.dumps(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise _invalid("/attributes", f"at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
    return fields, attributes


@endpoint(
    "GET /v1/recipients/{id}",
    "getRecipient",
    TAG,
    "Get a recipient",
    "The profile: contact points, locale, time zone, attributes.",
    scope="read",
    path=RecipientPath,
    ok={200: (Recipient, "OK")},
    errors=(404,),
)
async def get_recipient(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    return respond(_recipient(await PeopleStore(hub(request).store).get(p.tenant(), _rid(request))))


@endpoint(
    "PUT /v1/recipients/{id}",
    "putRecipient",
    TAG,
    "Create or replace a recipient",
    "Fields absent from the body are cleared. Each text is 1 to 500 characters; `attributes` "
    f"at most {MAX_ATTRIBUTES} keys and {MAX_ATTRIBUTES_BYTES} bytes of JSON.",
    scope="manage",
    path=RecipientPath,
    body=ProfileIn,
    ok={200: (Recipient, "Replaced."), 201: (Recipient, "Created.")},
    errors=(404, 422),  # 404: an id no route matches (a line break)
)
async def put_recipient(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _rid(request)
    fields, attributes = _profile(await decode_invalid(request, ProfileIn, BODY_LIMIT))
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
    return respond(_recipient(await people.get(p.tenant(), rid)), 200 if existed else 201)


@endpoint(
    "PATCH /v1/recipients/{id}",
    "patchRecipient",
    TAG,
    "Change a recipient",
    "Only the fields in the body change; null clears one; attributes merge key by key (a null "
    f"value removes the key; at most {MAX_ATTRIBUTES} keys in all).",
    scope="manage",
    path=RecipientPath,
    body=ProfileIn,
    ok={200: (Recipient, "OK")},
    errors=(404, 422),
)
async def patch_recipient(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _rid(request)
    fields, attributes = _profile(await decode_invalid(request, ProfileIn, BODY_LIMIT))
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
        raise _invalid("/attributes", f"at most {MAX_ATTRIBUTES} keys in all")
    await people.run(
        [upsert_profile(h.store.dialect, p.tenant(), rid, merged, attrs, now_us(), replace=True)]
    )
    return respond(_recipient(await people.get(p.tenant(), rid)))


@endpoint(
    "DELETE /v1/recipients/{id}",
    "deleteRecipient",
    TAG,
    "Delete a recipient",
    "The profile and preferences are deleted; the consent ledger is kept as proof.",
    scope="manage",
    path=RecipientPath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_recipient(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    if not await PeopleStore(hub(request).store).delete(p.tenant(), _rid(request)):
        raise NotFound("no recipient with that id in this tenant")
    return Response(status_code=204)


@endpoint(
    "GET /v1/recipients/{id}/consents",
    "listConsents",
    TAG,
    "The consent ledger of a recipient",
    "Every grant and withdrawal, newest first, and the current state per purpose.",
    scope="read",
    path=RecipientPath,
    query=ConsentQuery,
    ok={200: (Consents, "OK")},
    errors=(404,),  # an id no route matches (a line break)
)
async def list_consents(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rid = _rid(request)
    limit = decode_query(request, ConsentQuery).limit
    rows = await PeopleStore(hub(request).store).consents(p.tenant(), rid, limit)
    state: dict[str, Literal["granted", "withdrawn"]] = {}
    for r in rows:  # newest first: the first row of a purpose is its state
        state.setdefault(r["purpose"], "granted" if r["action"] == "grant" else "withdrawn")
    return respond(Consents(state=state, data=msgspec.convert(rows, list[Consent])))


def consent_record(body: ConsentIn, received_us: int) -> ConsentRecord:
    at_us = received_us
    if body.at is not None:
        try:
            at_us = parse_time(body.at, "at")
        except EnvelopeError as exc:
            raise _invalid("/at", exc.errors[0]["message"]) from None
    values: dict[str, str | None] = {
        "terms_version": body.terms_version,
        "legal_basis": body.legal_basis,
        "origin": body.origin,
        "ip": body.ip,
        "user_agent": body.user_agent,
    }
    return ConsentRecord(body.purpose, body.action, at_us, values)


@endpoint(
    "POST /v1/recipients/{id}/consents",
    "addConsent",
    TAG,
    "Record a grant or a withdrawal",
    "Appended to the ledger. A withdrawal cancels the recipient's deliveries still "
    "waiting in routes that require the purpose (reason `consent:<purpose>`). Once the tenant "
    "declares consent purposes, `purpose` must be one of them (422).",
    scope="manage",
    path=RecipientPath,
    body=ConsentIn,
    ok={201: (Consent, "Recorded.")},
    errors=(404, 422),
)
async def add_consent(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _rid(request)
    now = now_us()
    record = consent_record(await decode_invalid(request, ConsentIn, BODY_LIMIT), now)
    await check_declared(h.store, p.tenant(), [record.purpose], "/purpose")
    cancel: list[str] = []
    if record.action == "withdraw":
        h.routes.forget(p.tenant())  # the routes as they are now, not as cached
        routes = await h.routes.routes(p.tenant())
        cancel = [r.id for r in routes if record.purpose in r.requires_consent]
    people = PeopleStore(h.store)
    await people.run(record_consent(p.tenant(), rid, record, now, cancel_routes=cancel))
    latest = (await people.consents(p.tenant(), rid, 1))[0]
    return respond(msgspec.convert(latest, Consent), 201)


HTML = Raw("text/html")
# The page a recipient reaches from an email's footer: one card, readable on a phone, in the
# seeds' language, with no script and nothing loaded from elsewhere (its CSP allows only this
# style, by hash, and a form posting back to itself).
_STYLE = """
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
background:#f3f4f6;color:#1f2937;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{background:#fff;max-width:28rem;margin:1rem;padding:2rem;border-radius:12px;
box-shadow:0 1px 3px rgba(0,0,0,.08),0 8px 24px rgba(0,0,0,.06)}
.from{margin:0 0 .25rem;color:#6b7280;font-size:.875rem}
h1{margin:0 0 1rem;font-size:1.375rem;line-height:1.3}
p{margin:0 0 1.25rem}
button{font:inherit;font-weight:600;color:#fff;background:#b91c1c;border:0;border-radius:8px;
padding:.75rem 1.25rem;cursor:pointer;width:100%}
button:hover{background:#991b1b}
button:focus-visible{outline:3px solid #fca5a5;outline-offset:2px}
small{display:block;margin-top:1rem;color:#6b7280}
"""
_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_CHANNELS = {
    "email": "e-mail",
    "whatsapp": "WhatsApp",
    "whatsapp_cloud": "WhatsApp",
    "sms": "SMS",
    "inbox": "notificações no aplicativo",
    "*": "todos os canais",
}


def _page(title: str, sender: str, heading: str, text: str, rest: str = "") -> Response:
    """An unsubscribe page: every tenant-given text escaped, `rest` is the page's own markup."""
    body = (
        '<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><main>"
        f'<p class="from">{escape(sender)}</p><h1>{escape(heading)}</h1><p>{escape(text)}</p>'
        f"{rest}</main></body></html>"
    )
    headers = {
        "Content-Security-Policy": _CSP,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def _what(request: Request, tenant_id: str, topic: str, channel: str) -> tuple[str, str]:
    """(who sends, what stops) in the recipient's words."""
    tenant = await hub(request).tenant(tenant_id)
    sender = tenant.name if tenant is not None and tenant.name else tenant_id
    topic_text = "todas as mensagens" if topic == "*" else f"as mensagens de “{topic}”"
    return sender, f"{topic_text} por {_CHANNELS.get(channel, channel)}"


def _unsubscribe_target(request: Request) -> tuple[str, str, str, str]:
    invalid = NotFound("this unsubscribe link is not valid")
    try:  # a truncated or mangled link is as invalid as a forged one: the same 404
        token = decode_path(request, TokenPath).token
    except BadRequest:
        raise invalid from None
    found = unsubscribe.verify(hub(request).settings.unsubscribe_secret, token)
    if found is None:
        raise invalid
    return found


@endpoint(
    "GET /v1/unsubscribe/{token}",
    "unsubscribePage",
    TAG,
    "Unsubscribe page",
    "A link followed in a browser: a page with a button that POSTs. Changes nothing "
    "(mail scanners prefetch links). No API key: the token is signed; one that is not valid "
    "(forged, altered, truncated) is a 404.",
    scope=PUBLIC,
    path=TokenPath,
    ok={200: (HTML, "An HTML page.")},
    errors=(404, 431),
)
async def unsubscribe_page(request: Request) -> Response:
    """A link followed in a browser (or prefetched by a mail scanner) changes nothing: it shows
    a button that POSTs, as RFC 8058 asks."""
    tenant, _, topic, channel = _unsubscribe_target(request)
    sender, what = await _what(request, tenant, topic, channel)
    form = '<form method="post"><button type="submit">Cancelar inscrição</button></form>'
    text = f"Você deixará de receber {what}."
    return _page("Cancelar inscrição", sender, "Não quer mais receber?", text, form)


@endpoint(
    "POST /v1/unsubscribe/{token}",
    "unsubscribe",
    TAG,
    "One-click unsubscribe (RFC 8058)",
    "Opts the recipient out of the link's topic on its channel. Idempotent. The body (a mail "
    "client's `List-Unsubscribe=One-Click`) is not read. No API key: the token is signed; one "
    "that is not valid is a 404.",
    scope=PUBLIC,
    path=TokenPath,
    ok={200: (HTML, "An HTML page.")},
    errors=(404, 431),
)
async def unsubscribe_now(request: Request) -> Response:
    """The one-click POST (`List-Unsubscribe=One-Click`) or the page's button: the recipient's
    preference for (topic, channel) becomes opted out. Idempotent; no API key, only the token."""
    tenant, recipient, topic, channel = _unsubscribe_target(request)
    await PeopleStore(hub(request).store).set_preference(
        tenant, recipient, Preference(topic, channel, False), now_us()
    )
    sender, what = await _what(request, tenant, topic, channel)
    text = f"Você não receberá mais {what}."
    note = "<small>Pode fechar esta página. Nada mais é preciso.</small>"
    return _page("Inscrição cancelada", sender, "Pronto, inscrição cancelada", text, note)


def _preferences(prefs: list[Preference]) -> Preferences:
    return Preferences(
        preferences=[
            PreferenceItem(topic=p.topic, channel=p.channel, enabled=p.enabled) for p in prefs
        ]
    )


@endpoint(
    "GET /v1/recipients/{id}/preferences",
    "getPreferences",
    TAG,
    "A recipient's preferences",
    "Opt-ins and opt-outs per topic and channel.",
    scope="read",
    path=RecipientPath,
    ok={200: (Preferences, "OK")},
    errors=(404,),  # an id no route matches (a stray "/", a line break)
)
async def get_preferences(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    prefs = await PeopleStore(hub(request).store).preferences(p.tenant(), _rid(request))
    return respond(_preferences(prefs))


@endpoint(
    "PUT /v1/recipients/{id}/preferences",
    "putPreferences",
    TAG,
    "Replace a recipient's preferences",
    "The most specific preference decides; types marked critical ignore opt-outs. At most "
    f"{MAX_PREFERENCES}; a (topic, channel) given twice keeps the last.",
    scope="manage",
    path=RecipientPath,
    body=Preferences,
    ok={200: (Preferences, "OK")},
    errors=(404, 422),
)
async def put_preferences(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    rid = _rid(request)
    body = await decode_invalid(request, Preferences, BODY_LIMIT)
    prefs = {
        (i.topic, i.channel): Preference(i.topic, i.channel, i.enabled) for i in body.preferences
    }
    people = PeopleStore(h.store)
    await people.put_preferences(p.tenant(), rid, list(prefs.values()), now_us())
    return respond(_preferences(await people.preferences(p.tenant(), rid)))


routes = routes_of(
    unsubscribe_page,
    unsubscribe_now,
    # the literal tails before the bare id, which takes "/" too
    list_consents,
    add_consent,
    get_preferences,
    put_preferences,
    get_recipient,
    put_recipient,
    patch_recipient,
    delete_recipient,
)
