"""Inbound sources: their configuration, the public receiving URL, the request log, reprocessing,
and the mappings they can pin. Typed endpoints (see `api/contract.py`), described from these
models."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import UNSET, Meta, UnsetType, field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from switchboard.api.common import hub, principal, read_body, within
from switchboard.api.contract import (
    PUBLIC,
    Body,
    Model,
    Params,
    Raw,
    decode_body,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.models import INBOUND_STATUSES
from switchboard.envelope import EnvelopeError, now_us, parse_time
from switchboard.errors import BadRequest, Conflict, Forbidden, NotFound
from switchboard.hub import Hub
from switchboard.sources import (
    MAX_SECRETS,
    NAME_RE,
    PRESET_NAMES,
    mask_secret,
    new_secret_for,
    new_source_id,
    parse_source,
    public_preset_config,
)
from switchboard.sources import Source as SourceRecord
from switchboard.sources.inbound import Inbound
from switchboard.sources.mappings import (
    MappingError,
    MappingLibrary,
    load_mapping_dir,
    parse_mapping,
    shipped_dir,
)
from switchboard.sources.whatsapp_cloud import HandshakeRefused, answer_handshake
from switchboard.store import Scope
from switchboard.store import inbound as sql

__all__ = ["inbound", "routes"]

T = TypeVar("T")

TAG = "sources"
ERROR = {"$ref": "#/components/schemas/Error"}  # the API's error shape (openapi.py)
MAX_TEXT = 200  # a mapping's name or version, an event source: as the event envelope's ids
MAX_SECRET = 1024  # a provider's secret or token (Meta's app secret is 32 characters)
MAX_CIDR = 100  # an IPv6 network with its prefix is at most 49 characters
MAX_ALLOWLIST = 100
MAX_DEDUP_WINDOW = 90 * 86400
ID_PATTERN = r"^[A-Za-z0-9_\-]+$"  # source and request ids: no text a store cannot compare

PresetName = Literal[
    "standard",
    "svix",
    "stripe",
    "github",
    "hmac",
    "token",
    "asaas",
    "wpp_gateway",
    "zapi",
    "whatsapp_cloud",
    "pagarme",
    "twilio",
    "none",
]
InboundStatus = Literal[
    "processed",
    "partial",
    "rejected",
    "ignored",
    "invalid",
    "failed_verification",
    "forbidden",
    "disabled",
    "error",
]
# one vocabulary each: the models above publish the tuples the code checks against
assert get_args(PresetName) == PRESET_NAMES
assert get_args(InboundStatus) == INBOUND_STATUSES

Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
SourceName = Annotated[
    str,
    Meta(
        pattern=NAME_RE.pattern,
        description="Unique in the tenant: lowercase letters, digits, '.', '_' or '-' "
        "(at most 63).",
    ),
]
Preset = Annotated[
    PresetName,
    Meta(
        description="How requests are verified (docs/sources.md); `none` only on trusted networks."
    ),
]
PresetConfig = Annotated[
    dict[str, Any],
    Meta(
        description="Per preset: `hmac` the HMAC fields (header, algorithm, encoding, prefix, "
        'signed, timestamp_header); `token` `{"headers": [...]}`; `whatsapp_cloud` '
        "`verify_token` (8 to 200 printable ASCII characters, masked in answers); `twilio` `url`; "
        "`tolerance` (seconds, 1 to 86400, default 300) for `standard`, `svix` and `stripe`."
    ),
]
Secret = Annotated[str, Meta(min_length=1, max_length=MAX_SECRET)]
Secrets = Annotated[
    list[Secret],
    Meta(
        max_length=MAX_SECRETS,
        description="Up to two active secrets (the current one and the one being rotated out); "
        "omitted, one is generated and shown once in `secret`.",
    ),
]
IpAllowlist = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=MAX_CIDR)]],
    Meta(
        max_length=MAX_ALLOWLIST,
        description="CIDRs allowed to call the receiving URL (others get 403); empty: any address.",
    ),
]
MappingName = Annotated[Text, Meta(description="The mapping that turns payloads into events.")]
MappingVersion = Annotated[Text, Meta(description="The pinned version; null: the newest.")]
EventSource = Annotated[Text, Meta(description="The `source` of the events it produces.")]
DedupWindow = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_DEDUP_WINDOW,
        description="Seconds (at most 90 days); overrides the mapping's business-dedup windows, "
        "0 turns business dedup off.",
    ),
]


class SourceIn(Body):
    name: SourceName
    preset: Preset
    preset_config: PresetConfig | UnsetType | None = UNSET
    secrets: Secrets | UnsetType = UNSET
    ip_allowlist: IpAllowlist | UnsetType = UNSET
    mapping: MappingName | UnsetType | None = UNSET
    mapping_version: MappingVersion | UnsetType | None = UNSET
    event_source: Annotated[
        EventSource | UnsetType, Meta(description="Default: the mapping's name, else `webhook`.")
    ] = UNSET
    dedup_window: DedupWindow | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


class SourcePatch(Body):
    """Only the fields sent change."""

    name: SourceName | UnsetType = UNSET
    preset: Preset | UnsetType = UNSET
    preset_config: PresetConfig | UnsetType | None = UNSET
    secrets: Secrets | UnsetType = UNSET
    ip_allowlist: IpAllowlist | UnsetType = UNSET
    mapping: MappingName | UnsetType | None = UNSET
    mapping_version: MappingVersion | UnsetType | None = UNSET
    event_source: EventSource | UnsetType = UNSET
    dedup_window: DedupWindow | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


Count = Annotated[int, Meta(ge=0)]


class SourceCounters(Model):
    received: Annotated[Count, Meta(description="Every request that reached the URL.")]
    verified: Annotated[Count, Meta(description="Requests whose checks passed.")]
    failed_verification: Annotated[Count, Meta(description="Answered 401 or 403.")]
    events_produced: Annotated[Count, Meta(description="Events stored from this source.")]


class Source(Model):
    id: Annotated[str, Meta(examples=["src_…"])]
    name: str
    preset: PresetName
    preset_config: dict[str, Any]
    secrets: Annotated[list[str], Meta(description="Masked: only their kind and last characters.")]
    ip_allowlist: list[str]
    mapping: str | None
    mapping_version: str | None
    event_source: str
    dedup_window: int | None
    enabled: bool
    url: Annotated[str, Meta(description="The public receiving URL.")]
    counters: SourceCounters
    created_us: int
    updated_us: int
    secret: Annotated[str | UnsetType, Meta(description="A generated secret: shown once, now.")] = (
        UNSET
    )


class Sources(Model):
    data: list[Source]


class SourcePath(Params):
    source_id: Annotated[
        str, Meta(max_length=100, pattern=ID_PATTERN, description="The source id (src_…).")
    ]


class SourceSecretIn(Body):
    secret: (
        Annotated[Secret, Meta(description="The new secret; omitted: one is generated.")] | None
    ) = None


def _source(s: SourceRecord, request: Request, secret: str | None = None) -> Source:
    return Source(
        id=s.id,
        name=s.name,
        preset=s.preset,  # type: ignore[arg-type]
        preset_config=public_preset_config(s.preset_config),
        secrets=[mask_secret(x) for x in s.secrets],
        ip_allowlist=list(s.ip_allowlist),
        mapping=s.mapping,
        mapping_version=s.mapping_version,
        event_source=s.event_source,
        dedup_window=s.dedup_window,
        enabled=s.enabled,
        url=f"{str(request.base_url).rstrip('/')}/v1/sources/{s.id}/webhook",
        counters=_counters(s),
        created_us=s.created_us,
        updated_us=s.updated_us,
        secret=secret if secret else UNSET,
    )


def _counters(s: SourceRecord) -> SourceCounters:
    c = s.counters
    return SourceCounters(
        received=c.received,
        verified=c.verified,
        failed_verification=c.failed_verification,
        events_produced=c.events_produced,
    )


def inbound(request: Request) -> Inbound:
    """The app's inbound pipeline, built on first use (shipped mappings are read once)."""
    state = request.app.state
    found: Inbound | None = getattr(state, "inbound", None)
    if found is None:
        folder = shipped_dir()
        library = MappingLibrary(load_mapping_dir(folder) if folder.is_dir() else {})
        found = state.inbound = Inbound(hub(request), library)
    return found


async def _own_source(request: Request, scope: Scope) -> SourceRecord:
    p = await principal(request, scope)
    source_id = decode_path(request, SourcePath).source_id
    source = await sql.get_source(hub(request).store, source_id, p.tenant())
    if source is None:
        raise NotFound("no source with that id in this tenant")
    return source


async def _source_body(request: Request, model: type[T]) -> T:
    try:
        return await decode_body(request, model, 65536)
    except BadRequest as exc:
        if exc.details and exc.details[0]["path"] == "/preset":
            # the vocabulary, and that `none` is asked for on purpose, say more than the model's
            message = (
                f"must be one of {', '.join(PRESET_NAMES)} ('none' only for trusted internal "
                "networks)"
            )
            raise BadRequest(
                f"preset: {message}", details=[{"path": "/preset", "message": message}]
            ) from None
        raise


def _sent(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a body carries (an update changes only those), as `parse_source` reads them."""
    return {f: value for f in body.__struct_fields__ if (value := getattr(body, f)) is not UNSET}


async def _check_mapping(
    request: Request, tenant_id: str, fields: dict[str, Any], current: SourceRecord | None
) -> None:
    name = fields.get("mapping", current.mapping if current else None)
    version = fields.get("mapping_version", current.mapping_version if current else None)
    if name is None:
        if version is not None:
            raise BadRequest(
                "mapping_version needs a mapping name",
                details=[{"path": "/mapping", "message": "is required"}],
            )
        return
    if await inbound(request).mapping(tenant_id, name, version) is None:
        pin = f"{name}@{version}" if version else name
        raise BadRequest(
            f"mapping {pin} does not exist (see GET /v1/mappings)",
            details=[
                {
                    "path": "/mapping_version" if version else "/mapping",
                    "message": "unknown mapping",
                }
            ],
        )


@endpoint(
    "POST /v1/sources",
    "createSource",
    TAG,
    "Create a source",
    "A receiving endpoint for a provider's webhooks; a secret is generated (and shown once) "
    "if none is sent. The preset's config, the CIDRs and the mapping (which must exist) are "
    "checked by their own parsers (400 naming the field).",
    scope="manage",
    body=SourceIn,
    ok={201: (Source, "Created; `url` is the receiving URL.")},
    errors=(409,),
)
async def create_source(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    fields = parse_source(_sent(await _source_body(request, SourceIn)))
    tenant_id = p.tenant()
    await _check_mapping(request, tenant_id, fields, None)
    generated = None
    if "secrets" not in fields:
        generated = new_secret_for(fields["preset"])
        fields["secrets"] = (generated,) if generated else ()
    elif fields["preset"] != "none" and not fields["secrets"]:
        raise BadRequest(
            f"preset {fields['preset']!r} needs a secret",
            details=[{"path": "/secrets", "message": "empty"}],
        )
    stamp = now_us()
    source = SourceRecord(
        id=new_source_id(),
        tenant_id=tenant_id,
        created_us=stamp,
        updated_us=stamp,
        **{"event_source": fields.get("mapping") or "webhook", **fields},
    )
    if any(s.name == source.name for s in await sql.list_sources(h.store, tenant_id)):
        raise Conflict(f"a source named {source.name!r} exists in this tenant")
    await sql.insert_source(h.store, source)
    return respond(_source(source, request, generated), 201)  # a generated secret: shown once


@endpoint(
    "GET /v1/sources",
    "listSources",
    TAG,
    "List sources",
    "Every source of the tenant, with counters.",
    scope="read",
    ok={200: (Sources, "OK")},
)
async def list_sources(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    found = await sql.list_sources(hub(request).store, p.tenant())
    return respond(Sources(data=[_source(s, request) for s in found]))


@endpoint(
    "GET /v1/sources/{source_id}",
    "getSource",
    TAG,
    "Get a source",
    "One source, secrets masked, with counters.",
    scope="read",
    path=SourcePath,
    ok={200: (Source, "OK")},
    errors=(404,),
)
async def get_source(request: Request) -> Response:
    return respond(_source(await _own_source(request, Scope.READ), request))


@endpoint(
    "PATCH /v1/sources/{source_id}",
    "updateSource",
    TAG,
    "Change a source",
    "Only the fields sent change (e.g. pin another mapping_version).",
    scope="manage",
    path=SourcePath,
    body=SourcePatch,
    ok={200: (Source, "OK")},
    errors=(404,),
)
async def update_source(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    fields = parse_source(_sent(await _source_body(request, SourcePatch)), source)
    await _check_mapping(request, source.tenant_id, fields, source)
    updated = replace(source, updated_us=now_us(), **fields)
    if updated.preset != "none" and not updated.secrets:
        raise BadRequest(
            f"preset {updated.preset!r} needs a secret",
            details=[{"path": "/secrets", "message": "empty"}],
        )
    await sql.update_source(hub(request).store, updated)
    return respond(_source(updated, request))


@endpoint(
    "DELETE /v1/sources/{source_id}",
    "deleteSource",
    TAG,
    "Delete a source",
    "Its receiving URL answers 404 afterwards.",
    scope="manage",
    path=SourcePath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_source(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    await sql.delete_source(hub(request).store, source.tenant_id, source.id)
    return Response(status_code=204)


@endpoint(
    "POST /v1/sources/{source_id}/secrets",
    "rotateSourceSecret",
    TAG,
    "Rotate a source's secret",
    "Adds a secret (given or generated) as the newest; the previous one stays valid until the "
    "next rotation. The body may be empty. A source with preset `none` takes no secret (400).",
    scope="manage",
    path=SourcePath,
    body=SourceSecretIn,
    body_required=False,
    ok={200: (Source, "Rotated; a generated secret is in `secret`.")},
    errors=(404,),
)
async def rotate_secret(request: Request) -> Response:
    """Add a secret (given, or generated) as the newest; the previous one stays active until
    the next rotation, so the provider can be switched over without losing requests."""
    source = await _own_source(request, Scope.MANAGE)
    sent = request.headers.get("content-length", "0") != "0"
    secret = (await decode_body(request, SourceSecretIn, 65536)).secret if sent else None
    generated = None
    if secret is None:
        secret = generated = new_secret_for(source.preset)
        if secret is None:
            raise BadRequest(
                "preset 'none' takes no secret",
                details=[{"path": "/secret", "message": "the source's preset takes none"}],
            )
    secrets = (secret, *source.secrets)[:MAX_SECRETS]
    updated = replace(source, secrets=secrets, updated_us=now_us())
    await sql.update_source(hub(request).store, updated)
    return respond(_source(updated, request, generated))


# --- the public receiving URL -------------------------------------------------------------------


Header = str | UnsetType  # bounded by SWITCHBOARD_MAX_HEADER_BYTES, as every header (431)


class ProviderHeaders(Params):
    """The headers the presets read a signature or token from (docs/sources.md). The checks
    are the preset's own (401 when they fail, and the request is logged); a source with preset
    `hmac` or `token` names its own headers in `preset_config`."""

    webhook_id: Annotated[Header, Meta(description="standard: the message id.")] = field(
        name="webhook-id", default=UNSET
    )
    webhook_timestamp: Annotated[Header, Meta(description="standard: Unix seconds.")] = field(
        name="webhook-timestamp", default=UNSET
    )
    webhook_signature: Annotated[Header, Meta(description="standard: `v1,<base64>` …")] = field(
        name="webhook-signature", default=UNSET
    )
    svix_id: Annotated[Header, Meta(description="svix: the message id.")] = field(
        name="svix-id", default=UNSET
    )
    svix_timestamp: Annotated[Header, Meta(description="svix: Unix seconds.")] = field(
        name="svix-timestamp", default=UNSET
    )
    svix_signature: Annotated[Header, Meta(description="svix: `v1,<base64>` …")] = field(
        name="svix-signature", default=UNSET
    )
    stripe_signature: Annotated[Header, Meta(description="stripe: `t=…,v1=<hex>`.")] = field(
        name="Stripe-Signature", default=UNSET
    )
    x_hub_signature_256: Annotated[
        Header, Meta(description="github, whatsapp_cloud: `sha256=<hex>` of the body.")
    ] = field(name="X-Hub-Signature-256", default=UNSET)
    x_hub_signature: Annotated[Header, Meta(description="pagarme: `sha1=<hex>` of the body.")] = (
        field(name="X-Hub-Signature", default=UNSET)
    )
    asaas_access_token: Annotated[Header, Meta(description="asaas: the token.")] = field(
        name="asaas-access-token", default=UNSET
    )
    x_asaas_access_token: Annotated[Header, Meta(description="asaas: the token.")] = field(
        name="X-Asaas-Access-Token", default=UNSET
    )
    x_gateway_secret: Annotated[Header, Meta(description="wpp_gateway: the token.")] = field(
        name="X-Gateway-Secret", default=UNSET
    )
    client_token: Annotated[Header, Meta(description="zapi: the token.")] = field(
        name="Client-Token", default=UNSET
    )
    x_twilio_signature: Annotated[
        Header, Meta(description="twilio: base64 HMAC-SHA1 of the URL and the form's fields.")
    ] = field(name="X-Twilio-Signature", default=UNSET)
    content_encoding: Annotated[
        Header, Meta(description="`gzip`: the body is gunzipped, within the same size limit.")
    ] = field(name="Content-Encoding", default=UNSET)


class WebhookError(Model):
    code: str
    message: str


class WebhookReply(Model):
    """The answer to a provider: what became of its request (logged under `request_id`)."""

    request_id: str | UnsetType = UNSET
    status: InboundStatus | UnsetType = UNSET
    events: Annotated[
        list[dict[str, Any]] | UnsetType,
        Meta(description="Per event produced: id, type, status, duplicate_of?"),
    ] = UNSET
    errors: Annotated[
        list[dict[str, Any]] | UnsetType, Meta(description="Mapping problems: path, message.")
    ] = UNSET
    error: WebhookError | UnsetType = UNSET


WEBHOOK_BODY = (
    Raw("application/json", {"description": "The provider's JSON, as it sends it."}),
    Raw(
        "application/x-www-form-urlencoded",
        {"type": "object", "description": "A form (Twilio): the last of a repeated field wins."},
    ),
)


@endpoint(
    "POST /v1/sources/{source_id}/webhook",
    "receiveWebhook",
    TAG,
    "Receive a provider webhook",
    "The public receiving URL: no API key; the source's preset (signature, token, IP "
    "allowlist) authenticates it. JSON or form bodies, gzip allowed, at most 1 MiB "
    "(SWITCHBOARD_MAX_BODY_BYTES). Every request is logged. Answered within "
    "SWITCHBOARD_INGEST_TIMEOUT (503 after it: providers retry).",
    scope=PUBLIC,
    path=SourcePath,
    headers=ProviderHeaders,
    body=WEBHOOK_BODY,
    ok={
        200: (WebhookReply, "Processed, partial or ignored."),
        400: (WebhookReply, "The body is neither JSON nor a form."),
        401: (WebhookReply, "Bad or missing signature or token."),
        403: (WebhookReply, "The address is not in the allowlist."),
        404: (WebhookReply, "No such source, or it is disabled."),
        422: (WebhookReply, "Every event it produced was rejected, or the mapping is missing."),
    },
    errors=(413, 429, 503),
)
async def receive_webhook(request: Request) -> Response:
    """The public receiving URL: no API key; the source's preset authenticates the request.
    Answered within SWITCHBOARD_INGEST_TIMEOUT (503 after it: providers retry)."""
    h = hub(request)
    source_id = decode_path(request, SourcePath).source_id
    return await within(h.settings.ingest_timeout, _receive_webhook(request, h, source_id))


async def _receive_webhook(request: Request, h: Hub, source_id: str) -> Response:
    # the client address is the TCP peer, or what a trusted proxy says (server.server_config)
    remote = request.client.host if request.client else None
    h.limiter.check_source(source_id, remote)  # before any work
    body = await read_body(request, h.settings.max_body_bytes)
    # the preset reads the headers it needs (`hmac` and `token` name their own), and every
    # header is logged: the pipeline takes them all, ProviderHeaders documents the presets'
    reply = await inbound(request).receive(
        source_id, dict(request.headers), body, remote, url=_called(request)
    )
    return respond(msgspec.convert(reply.body, WebhookReply), reply.status_code)


class HandshakeQuery(Params):
    mode: Annotated[Literal["subscribe"], Meta(description="subscribe")] = field(name="hub.mode")
    verify_token: Annotated[
        str, Meta(max_length=200, description="The verify token set in the Meta app.")
    ] = field(name="hub.verify_token")
    challenge: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._\-]{1,200}$",
            description="Echoed back: 1 to 200 letters, digits, '.', '_' or '-'.",
        ),
    ] = field(name="hub.challenge")


@endpoint(
    "GET /v1/sources/{source_id}/webhook",
    "verifyWebhookSubscription",
    TAG,
    "Answer Meta's subscription handshake",
    "For a source with preset whatsapp_cloud: echoes hub.challenge (as text) when hub.mode is "
    "subscribe and hub.verify_token is the source's preset_config.verify_token. No API key.",
    scope=PUBLIC,
    path=SourcePath,
    query=HandshakeQuery,
    ok={
        200: (Raw("text/plain"), "The challenge, as the body."),
        400: (Raw("application/json", ERROR), "hub.mode or hub.challenge is malformed."),
        403: (Raw("application/json", ERROR), "hub.verify_token does not match."),
        404: (Raw("application/json", ERROR), "No enabled whatsapp_cloud source with this id."),
    },
    errors=(429,),
)
async def webhook_handshake(request: Request) -> Response:
    """The WhatsApp Cloud API's GET verification of the receiving URL: echo hub.challenge when
    hub.verify_token is the source's verify token."""
    h = hub(request)
    source_id = decode_path(request, SourcePath).source_id
    h.limiter.check_source(source_id, request.client.host if request.client else None)
    q = decode_query(request, HandshakeQuery)
    params = {"hub.mode": q.mode, "hub.verify_token": q.verify_token, "hub.challenge": q.challenge}
    try:
        challenge = answer_handshake(await sql.get_source(h.store, source_id), params)
    except HandshakeRefused as exc:
        raise {400: BadRequest, 403: Forbidden, 404: NotFound}[exc.status](str(exc)) from None
    return PlainTextResponse(challenge, headers={"x-content-type-options": "nosniff"})


def _called(request: Request) -> str:
    """The URL the provider called (Twilio signs it): under SWITCHBOARD_PUBLIC_URL when set (the
    hub behind a proxy sees another address), else as this request arrived."""
    public = hub(request).settings.public_url.rstrip("/")
    if not public:
        return str(request.url)
    query = request.url.query
    return public + request.url.path + (f"?{query}" if query else "")


# --- the request log and reprocessing ---------------------------------------------------------


class InboundRequest(Model):
    id: str
    source_id: str
    received_us: int
    remote_ip: str | None
    headers: Annotated[dict[str, str], Meta(description="Credentials masked.")]
    content_type: str | None
    verified: bool
    verification_error: str | None
    status: InboundStatus
    mapping: Annotated[str | None, Meta(description="name@version")]
    event_ids: list[str]
    error: str | None
    size: Annotated[int, Meta(ge=0, description="The body's size in bytes.")]
    body_sha256: Annotated[
        str | UnsetType, Meta(description="An unverified request's: only its first KiB is kept.")
    ] = UNSET
    body_truncated: bool | UnsetType = UNSET
    body: Annotated[Any | UnsetType, Meta(description="The parsed JSON, or the text.")] = UNSET


class InboundRequests(Model):
    data: list[InboundRequest]
    next_cursor: Annotated[str | None, Meta(description="Pass as `cursor` for the next page.")]
    counters: SourceCounters


class RequestsQuery(Params):
    status: Annotated[InboundStatus | UnsetType, Meta(description="Outcome.")] = UNSET
    verified: Annotated[bool | UnsetType, Meta(description="Verification passed.")] = UNSET
    body: Annotated[bool, Meta(description="Include bodies (default true).")] = True
    cursor: (
        Annotated[
            str,
            Meta(max_length=100, pattern=ID_PATTERN, description="The next_cursor of a page."),
        ]
        | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=500, description="Page size (default 50).")] = 50


class RequestPath(SourcePath):
    request_id: Annotated[
        str, Meta(max_length=100, pattern=ID_PATTERN, description="The request id.")
    ]


@endpoint(
    "GET /v1/sources/{source_id}/requests",
    "listSourceRequests",
    TAG,
    "A source's request log",
    "Received requests, newest first, with the source's counters.",
    scope="read",
    path=SourcePath,
    query=RequestsQuery,
    ok={200: (InboundRequests, "OK")},
    errors=(400, 404),
)
async def list_requests(request: Request) -> Response:
    source = await _own_source(request, Scope.READ)
    q = decode_query(request, RequestsQuery)
    found = await sql.list_requests(
        hub(request).store,
        source.tenant_id,
        source.id,
        status=None if q.status is UNSET else q.status,
        verified=None if q.verified is UNSET else q.verified,
        before_id=None if q.cursor is UNSET else q.cursor,
        limit=q.limit,
    )
    return respond(
        InboundRequests(
            data=[msgspec.convert(r.public(q.body), InboundRequest) for r in found],
            next_cursor=found[-1].id if len(found) == q.limit else None,
            counters=_counters(source),
        )
    )


@endpoint(
    "GET /v1/sources/{source_id}/requests/{request_id}",
    "getSourceRequest",
    TAG,
    "Get a logged request",
    "One received request with headers (secrets masked) and body.",
    scope="read",
    path=RequestPath,
    ok={200: (InboundRequest, "OK")},
    errors=(404,),
)
async def get_request(request: Request) -> Response:
    source = await _own_source(request, Scope.READ)
    request_id = decode_path(request, RequestPath).request_id
    found = await sql.get_request(hub(request).store, source.tenant_id, request_id)
    if found is None or found.source_id != source.id:
        raise NotFound("no request with that id on this source")
    return respond(msgspec.convert(found.public(), InboundRequest))


Time = Annotated[
    str,
    Meta(max_length=64, extra_json_schema={"format": "date-time"}),
]


class ReprocessIn(Body):
    mapping: Annotated[Text | None, Meta(description="Default: the source's mapping.")] = None
    mapping_version: Annotated[Text | None, Meta(description="Default: the newest.")] = None
    from_: Annotated[Time | None, Meta(description="Requests received at or after (ISO 8601).")] = (
        field(name="from", default=None)
    )
    to: Annotated[Time | None, Meta(description="Requests received before (ISO 8601).")] = None
    dry_run: Annotated[bool, Meta(description="Count and sample, store nothing.")] = True
    limit: Annotated[int, Meta(ge=1, le=100_000, description="Requests at most.")] = 10_000


class ReprocessSample(Model):
    request_id: str
    result: dict[str, Any]
    event: dict[str, Any]


class ReprocessResult(Model):
    mapping: Annotated[str, Meta(description="name@version")]
    dry_run: bool
    counts: dict[str, Annotated[int, Meta(ge=0)]]
    samples: list[ReprocessSample]


@endpoint(
    "POST /v1/sources/{source_id}/reprocess",
    "reprocessSource",
    TAG,
    "Reprocess logged requests",
    "Runs stored verified requests through a mapping version (dry run by default): counts and "
    "sample events. The mapping (the body's or the source's) must exist (404).",
    scope="manage",
    path=SourcePath,
    body=ReprocessIn,
    ok={200: (ReprocessResult, "OK")},
    errors=(404,),
)
async def reprocess(request: Request) -> Response:
    source = await _own_source(request, Scope.MANAGE)
    body = await decode_body(request, ReprocessIn, 65536)
    name = body.mapping or source.mapping
    if name is None:
        raise BadRequest(
            "the source has no mapping: name one",
            details=[{"path": "/mapping", "message": "is required: the source has none"}],
        )
    bounds: dict[str, int | None] = {}
    for key, raw in (("from", body.from_), ("to", body.to)):
        try:
            bounds[key] = None if raw is None else parse_time(raw, f"/{key}")
        except EnvelopeError as exc:
            raise BadRequest(f"{key}: {exc.errors[0]['message']}", details=exc.errors) from None
    pipeline = inbound(request)
    mapping = await pipeline.mapping(source.tenant_id, name, body.mapping_version)
    if mapping is None:
        raise NotFound(f"mapping {name}@{body.mapping_version or 'latest'} does not exist")
    tenant = await hub(request).tenant(source.tenant_id)
    assert tenant is not None  # the source belongs to the caller's tenant
    result = await pipeline.reprocess(
        source,
        tenant,
        mapping,
        from_us=bounds["from"],
        to_us=bounds["to"],
        dry_run=body.dry_run,
        limit=body.limit,
    )
    return respond(msgspec.convert(result, ReprocessResult))


# --- mappings ----------------------------------------------------------------------------------

MappingPart = Annotated[str, Meta(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


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
    create_source,
    list_sources,
    get_source,
    update_source,
    delete_source,
    rotate_secret,
    receive_webhook,
    webhook_handshake,
    list_requests,
    get_request,
    reprocess,
    list_mappings,
    put_mapping,
)
