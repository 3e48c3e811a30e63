"""A source's public receiving URL: provider webhooks (no API key: the source's preset verifies
them) and the WhatsApp Cloud API's subscription handshake. Typed endpoints (`api/contract.py`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType, field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from switchboard.api.common import hub, read_body, within
from switchboard.api.contract import (
    PUBLIC,
    Model,
    Params,
    Raw,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.sources import (
    TAG,
    InboundStatus,
    SourcePath,
    inbound,
)
from switchboard.errors import BadRequest, Forbidden, NotFound
from switchboard.hub import Hub
from switchboard.sources.whatsapp_cloud import HandshakeRefused, answer_handshake
from switchboard.store import inbound as sql

__all__ = ["routes"]

ERROR = {"$ref": "#/components/schemas/Error"}  # the API's error shape (openapi.py)


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
    # Python's `$` (msgspec's pattern) also passes a trailing newline: answer_handshake's
    # fullmatch is what refuses "42\n", so nothing but the plain challenge is echoed
    challenge: Annotated[
        str,
        Meta(
            pattern=r"^[A-Za-z0-9._\-]{1,200}(?!\n)$",
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
        400: (Raw("application/json", ERROR), "A hub parameter is missing or malformed."),
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


routes = routes_of(
    receive_webhook,
    webhook_handshake,
)
