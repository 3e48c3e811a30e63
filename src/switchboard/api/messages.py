"""Message templates: `/v1/templates/{name}` (versioned documents) and `/preview`. Typed
endpoints (see `api/contract.py`); `messages.parse_template` checks what a schema cannot (each
field compiles, fields belong to their channel, one variant per channel and locale)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard import messages
from switchboard.api.common import hub, principal
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
from switchboard.api.contract_extra import RecipientId, decode_invalid
from switchboard.envelope import format_us, now_us
from switchboard.errors import BadRequest, NotFound, Unprocessable
from switchboard.store import Scope
from switchboard.store.people import PeopleStore

TAG = "templates"
BODY_LIMIT = 262_144  # a whole template document, every variant
PREVIEW_LIMIT = 65536
MAX_DESCRIPTION = 1000  # characters of a template's description

TemplateName = Annotated[
    str,
    Meta(
        pattern=messages.NAME_RE.pattern,
        description="A lowercase name such as client_welcome.",
    ),
]
Locale = Annotated[
    str, Meta(pattern=messages.LOCALE_RE.pattern, description="A language tag: pt-BR, en, es…")
]
Source = Annotated[
    str,
    Meta(
        max_length=messages.MAX_SOURCE,
        description=f"A Jinja2 template of at most {messages.MAX_SOURCE} characters.",
    ),
]
Channel = Literal["email", "whatsapp", "slack", "discord", "inbox", "webhook", "sms"]


class Button(Body):
    id: Source
    text: Source


class Variant(Body, omit_defaults=True):
    """Jinja2 templates per channel field: email subject/html/text, whatsapp text/buttons, slack
    text/blocks, discord and sms text, inbox title/body/link, webhook body (JSON out, sent
    instead of the route's transform). A field of another channel is a 422."""

    channel: Channel
    locale: Locale
    subject: Source | UnsetType = UNSET
    html: Source | UnsetType = UNSET
    text: Source | UnsetType = UNSET
    blocks: Source | UnsetType = UNSET
    title: Source | UnsetType = UNSET
    body: Source | UnsetType = UNSET
    link: Source | UnsetType = UNSET
    buttons: (
        Annotated[list[Button], Meta(min_length=1, max_length=messages.MAX_BUTTONS)] | UnsetType
    ) = UNSET


Variants = Annotated[list[Variant], Meta(min_length=1, max_length=messages.MAX_VARIANTS)]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION)]


class TemplateIn(Body, kw_only=True, omit_defaults=True):
    """A template document; `version` and `created_at` are ignored, so a GET's answer can be
    applied again as is."""

    name: (
        Annotated[TemplateName, Meta(description="The name in the URL (the default).")] | UnsetType
    ) = UNSET
    description: Description | UnsetType = UNSET
    default_locale: (
        Annotated[Locale, Meta(description="The end of the locale fallback chain.")] | UnsetType
    ) = UNSET
    variants: Variants
    version: Annotated[int, Meta(description="Ignored.")] | UnsetType = UNSET
    created_at: Annotated[str, Meta(description="Ignored.")] | UnsetType = UNSET


class Template(Model):
    name: str
    description: str
    default_locale: Annotated[str, Meta(description="The end of the locale fallback chain.")]
    variants: list[Variant]
    version: Annotated[int, Meta(description="Applied versions count up from 1.")]
    created_at: Annotated[str, Meta(description="ISO 8601.")]


class TemplateVersion(Model):
    name: str
    version: Annotated[int, Meta(description="The latest version.")]


class TemplateList(Model):
    data: list[TemplateVersion]


class TemplatePath(Params):
    name: TemplateName


class VersionQuery(Params):
    version: Annotated[int, Meta(ge=1, le=2**31 - 1, description="A version number.")] | None = None


class PreviewIn(Body):
    event: Annotated[
        dict[str, Any],
        Meta(description="The event to render for (`data` and `context` default to {})."),
    ]
    recipient: (
        Annotated[
            RecipientId | dict[str, Any],
            Meta(description="A recipient id (its stored profile) or a profile object."),
        ]
        | None
    ) = None
    locale: Locale | None = None


class Rendered(Model):
    channel: str
    locale: Annotated[str, Meta(description="The variant the chain chose.")]
    rendered: dict[str, Any]
    errors: list[str]


class Preview(Model):
    name: str
    version: int
    locale: str | None
    chain: Annotated[list[str], Meta(description="The locales tried, most wanted first.")]
    variants: list[Rendered]


def _invalid(exc: messages.MessageError) -> Unprocessable:
    return Unprocessable(
        f"invalid template: {exc}",
        details=[{"path": path, "message": message} for path, message in exc.problems],
    )


def _template(name: str, version: int, spec: dict[str, Any], created_us: int) -> Template:
    doc = {**spec, "name": name, "version": version, "created_at": format_us(created_us)}
    return msgspec.convert(doc, Template)


@endpoint(
    "PUT /v1/templates/{name}",
    "putTemplate",
    TAG,
    "Apply a template",
    "Stored as a new version when it changed (201), answered as is when not (200). "
    "Every field must compile; problems name their path and line.",
    scope="manage",
    path=TemplatePath,
    body=TemplateIn,
    ok={201: (Template, "A new version."), 200: (Template, "Unchanged.")},
    errors=(422,),
)
async def put_template(request: Request) -> Response:
    """Apply a template document: a new version if it changed, the same one if not."""
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    name = decode_path(request, TemplatePath).name
    body = await decode_invalid(request, TemplateIn, BODY_LIMIT)
    doc = msgspec.to_builtins(msgspec.structs.replace(body, version=UNSET, created_at=UNSET))
    try:
        parsed = messages.parse_template(doc, name)
    except messages.MessageError as exc:
        raise _invalid(exc) from None
    people = PeopleStore(h.store)
    version, changed = await people.put_template(p.tenant(), name, parsed.to_dict(), now_us())
    found = await people.template(p.tenant(), name, version)
    assert found is not None
    return respond(_template(name, *found), 201 if changed else 200)


@endpoint(
    "GET /v1/templates/{name}",
    "getTemplate",
    TAG,
    "Get a template",
    "The latest version, or `?version=N`.",
    scope="read",
    path=TemplatePath,
    query=VersionQuery,
    ok={200: (Template, "OK")},
    errors=(404,),
)
async def get_template(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = decode_path(request, TemplatePath).name
    version = decode_query(request, VersionQuery).version
    found = await PeopleStore(hub(request).store).template(p.tenant(), name, version)
    if found is None:
        raise NotFound("no template (or version) with that name in this tenant")
    return respond(_template(name, *found))


@endpoint(
    "GET /v1/templates",
    "listTemplates",
    TAG,
    "List templates",
    "Every template of the tenant with its latest version.",
    scope="read",
    ok={200: (TemplateList, "OK")},
)
async def list_templates(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    names = await PeopleStore(hub(request).store).template_names(p.tenant())
    return respond(TemplateList(data=[TemplateVersion(name=n, version=v) for n, v in names]))


@endpoint(
    "POST /v1/templates/{name}/preview",
    "previewTemplate",
    TAG,
    "Preview a template",
    "Every channel's variant, chosen by the locale chain (the body's locale, else the "
    "recipient's, else the event's context.locale), rendered for the event.",
    scope="read",
    path=TemplatePath,
    body=PreviewIn,
    ok={200: (Preview, "OK")},
    errors=(404,),
)
async def preview_template(request: Request) -> Response:
    """Every channel's variant rendered for an event (and optionally a recipient, or a locale):
    the locale chosen by the fallback chain, the rendered fields, or the errors."""
    h = hub(request)
    p = await principal(request, Scope.READ)
    name = decode_path(request, TemplatePath).name
    body = await decode_body(request, PreviewIn, PREVIEW_LIMIT)
    people = PeopleStore(h.store)
    found = await people.template(p.tenant(), name)
    if found is None:
        raise NotFound("no template with that name in this tenant")
    template = messages.parse_template(found[1])
    event = {"data": {}, "context": {}, **body.event}
    recipient = body.recipient
    if isinstance(recipient, str):
        recipient = await people.get(p.tenant(), recipient)
        if recipient is None:
            raise NotFound("no recipient with that id in this tenant")
    if recipient is not None:
        event["recipient"] = recipient
    locale: Any = body.locale
    where = "/locale"
    if locale is None and recipient is not None:
        locale, where = recipient.get("locale"), "/recipient/locale"
    if locale is None and isinstance(event.get("context"), dict):
        locale, where = event["context"].get("locale"), "/event/context/locale"
    if locale is not None and (not isinstance(locale, str) or not messages.LOCALE_RE.match(locale)):
        problem = "a language tag such as pt-BR"
        raise BadRequest(f"locale: {problem}", details=[{"path": where, "message": problem}])
    answer = Preview(
        name=name,
        version=found[0],
        locale=locale,
        chain=messages.locale_chain(locale, template.default_locale),
        variants=msgspec.convert(messages.preview(template, event, locale), list[Rendered]),
    )
    return respond(answer)


routes = routes_of(list_templates, preview_template, get_template, put_template)
