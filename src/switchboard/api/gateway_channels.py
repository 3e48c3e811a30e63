"""A WhatsApp destination's channel on the WPP Gateway (`provider: gateway`): create it, read its
connection state, fetch its QR code (JSON or PNG) and point its webhook at one of the tenant's
sources. The hub calls the gateway named by the destination (`channels/wpp_gateway.py`); the
tenant's key never reaches it, and the destination's secret is never in an answer."""

from __future__ import annotations

import base64
import logging
from typing import Annotated

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, principal
from switchboard.api.contract import (
    Body,
    Model,
    Raw,
    decode_body,
    decode_path,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.delivery_models import Ref, RefPath
from switchboard.channels import Destination as DestinationRecord
from switchboard.channels.registry import check_destination_egress
from switchboard.channels.wpp_gateway import (
    WEBHOOK_EVENTS,
    ConnectionStatus,
    Gateway,
    GatewayProblem,
    QrCode,
    check_channel_id,
)
from switchboard.errors import Conflict, NotFound, ProviderFailed, Unprocessable
from switchboard.hub import Hub
from switchboard.masking import mask_url
from switchboard.store import Scope
from switchboard.store import inbound as sql

__all__ = ["routes"]

TAG = "destinations & routes"
NO_DESTINATION = "no destination with that id or name in this tenant"
ERROR = {"$ref": "#/components/schemas/Error"}  # the API's error shape (openapi.py)
GATEWAY_FAILED = (
    Raw("application/json", ERROR),
    "The gateway failed: unreachable, too slow (the destination's timeout, at most 30 s), an "
    "error status, an answer over its bound or not JSON. The secret is never in the message.",
)
log = logging.getLogger("switchboard.channels")


class GatewayChannel(Model):
    """A destination's gateway channel, as the gateway reports it now."""

    destination: Annotated[str, Meta(description="The destination's name.")]
    channel: Annotated[str, Meta(description="The channel id (the destination's config.channel).")]
    status: Annotated[
        ConnectionStatus,
        Meta(
            description="connected (messages go out), connecting, qr_required (scan the QR "
            "code), disconnected, or unknown (a word the hub does not know: see gateway_status)."
        ),
    ]
    phone: Annotated[str | None, Meta(description="The connected number, when reported.")] = None
    gateway_status: Annotated[
        str | None, Meta(description="The gateway's own word, when status is unknown.")
    ] = None


class ChannelQr(Model):
    destination: str
    channel: str
    status: ConnectionStatus
    qr: Annotated[
        str | None,
        Meta(
            description="The code's text, what the phone scans (null: the gateway sent only "
            "an image)."
        ),
    ]
    png: Annotated[str, Meta(description="The code as a `data:image/png;base64,` URL.")]


class WebhookIn(Body):
    source: Annotated[
        Ref,
        Meta(description="The source (id or name, preset wpp_gateway) the gateway is to post to."),
    ]


class ChannelWebhook(Model):
    destination: str
    channel: str
    source: Annotated[str, Meta(description="The source's id.")]
    url: Annotated[str, Meta(description="The URL registered: the source's receiving URL.")]
    events: list[str]


async def _gateway(request: Request, scope: Scope) -> tuple[Hub, DestinationRecord, Gateway]:
    """The caller's destination and its gateway; 404 for another tenant's, 422 naming the
    field when it cannot have a gateway channel."""
    h = hub(request)
    p = await principal(request, scope)
    ref = decode_path(request, RefPath).ref
    d = await h.deliveries.get_destination(p.tenant(), ref)
    if d is None:
        raise NotFound(NO_DESTINATION)
    config = d.config
    problems: list[tuple[str, str]] = []
    if d.kind != "whatsapp" or config.get("provider") != "gateway":
        problems.append(("/config/provider", "only a whatsapp destination with provider gateway"))
    else:
        if why := check_channel_id(config.get("channel")):
            problems.append(("/config/channel", why))
        problems += [  # "config.base_url: …" → /config/base_url
            ("/" + problem.split(":")[0].replace(".", "/"), problem)
            for problem in check_destination_egress(config, h.egress)
        ]
        if not d.secrets or not d.secrets[0]:
            problems.append(
                ("/secrets", "the gateway secret (sent as X-Gateway-Secret) is missing")
            )
    if problems:
        raise Unprocessable(
            f"destination {d.name!r} has no usable gateway channel: {problems[0][1]}",
            details=[{"path": path, "message": message} for path, message in problems],
        )
    assert h.session is not None  # opened with the hub
    return h, d, Gateway(h.session, config["base_url"], d.secrets[0], d.timeout)


def _failed(d: DestinationRecord, exc: GatewayProblem) -> Exception:
    """The API's answer to a gateway problem."""
    where = mask_url(d.config["base_url"])
    if exc.kind == "egress_denied":
        message = f"config.base_url: {exc}"
        return Unprocessable(message, details=[{"path": "/config/base_url", "message": message}])
    if exc.status in (401, 403):
        message = f"the gateway at {where} refused the destination's secret ({exc})"
        return ProviderFailed(message, details=[{"path": "/secrets", "message": message}])
    return ProviderFailed(f"the gateway at {where}: {exc}")


def _channel_model(
    d: DestinationRecord, state: ConnectionStatus, **kw: str | None
) -> GatewayChannel:
    return GatewayChannel(destination=d.name, channel=d.config["channel"], status=state, **kw)


@endpoint(
    "POST /v1/destinations/{ref}/channel",
    "createGatewayChannel",
    TAG,
    "Create the destination's gateway channel",
    "For a whatsapp destination with provider gateway: creates config.channel on the gateway "
    "at config.base_url (201), or answers the existing one (200). Scan its QR code next.",
    scope="manage",
    path=RefPath,
    ok={
        201: (GatewayChannel, "Created on the gateway."),
        200: (GatewayChannel, "The gateway already had it."),
        502: GATEWAY_FAILED,
    },
    errors=(404, 422),
)
async def create_channel(request: Request) -> Response:
    _, d, gateway = await _gateway(request, Scope.MANAGE)
    channel = d.config["channel"]
    try:
        state = await gateway.channel(channel)
        created = state is None and await gateway.create(channel)
        if state is None:
            state = await gateway.channel(channel)
    except GatewayProblem as exc:
        raise _failed(d, exc) from None
    log.info(
        "gateway channel created" if created else "gateway channel exists",
        extra={
            "action": "gateway_channel_create",
            "destination_id": d.id,
            "channel_created": created,
        },
    )
    model = (
        _channel_model(d, state.status, phone=state.phone, gateway_status=state.raw_status)
        if state is not None
        else _channel_model(d, "unknown")
    )
    return respond(model, 201 if created else 200)


@endpoint(
    "GET /v1/destinations/{ref}/channel",
    "getGatewayChannel",
    TAG,
    "The destination's gateway channel status",
    "Asks the gateway now: connected, connecting, qr_required, disconnected (404 when the "
    "gateway has no such channel: create it first).",
    scope="read",
    path=RefPath,
    ok={200: (GatewayChannel, "OK"), 502: GATEWAY_FAILED},
    errors=(404, 422),
)
async def get_channel(request: Request) -> Response:
    _, d, gateway = await _gateway(request, Scope.READ)
    try:
        state = await gateway.channel(d.config["channel"])
    except GatewayProblem as exc:
        raise _failed(d, exc) from None
    if state is None:
        raise NotFound(
            f"the gateway has no channel {d.config['channel']!r}: "
            f"POST /v1/destinations/{d.name}/channel creates it"
        )
    return respond(
        _channel_model(d, state.status, phone=state.phone, gateway_status=state.raw_status)
    )


async def _qr(request: Request) -> tuple[DestinationRecord, QrCode, bytes]:
    _, d, gateway = await _gateway(request, Scope.MANAGE)
    try:
        code = await gateway.qr(d.config["channel"])
        png = code.image()
    except GatewayProblem as exc:
        raise _failed(d, exc) from None
    except ValueError as exc:  # segno: the text does not fit a QR code
        raise ProviderFailed(f"the gateway's QR text cannot be drawn: {exc}") from None
    if png is None:
        why = (
            "the channel is connected: there is no QR code to scan"
            if code.status == "connected"
            else f"the gateway has no QR code for it yet (status {code.status}); try again shortly"
        )
        raise Conflict(why)
    return d, code, png


QR_NOTE = (
    "Scanning it links the scanning phone's WhatsApp to the channel, so it needs the manage "
    "scope. 409 when the channel is connected (nothing to scan) or the gateway has no code yet."
)


@endpoint(
    "GET /v1/destinations/{ref}/channel/qr",
    "getGatewayChannelQr",
    TAG,
    "The channel's QR code, as JSON",
    "The code's text and a PNG of it (data URL), fetched from the gateway now. " + QR_NOTE,
    scope="manage",
    path=RefPath,
    ok={200: (ChannelQr, "OK"), 502: GATEWAY_FAILED},
    errors=(404, 409, 422),
)
async def get_qr(request: Request) -> Response:
    d, code, png = await _qr(request)
    return respond(
        ChannelQr(
            destination=d.name,
            channel=d.config["channel"],
            status=code.status,
            qr=code.text,
            png="data:image/png;base64," + base64.b64encode(png).decode(),
        )
    )


@endpoint(
    "GET /v1/destinations/{ref}/channel/qr.png",
    "getGatewayChannelQrPng",
    TAG,
    "The channel's QR code, as a PNG",
    "The same code as a PNG image, to show or print. " + QR_NOTE,
    scope="manage",
    path=RefPath,
    ok={
        200: (Raw("image/png", {"type": "string", "format": "binary"}), "The PNG."),
        502: GATEWAY_FAILED,
    },
    errors=(404, 409, 422),
)
async def get_qr_png(request: Request) -> Response:
    _, _, png = await _qr(request)
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


@endpoint(
    "POST /v1/destinations/{ref}/channel/webhook",
    "setGatewayChannelWebhook",
    TAG,
    "Point the channel's webhook at a source",
    "Registers the source's receiving URL (under SWITCHBOARD_PUBLIC_URL, else the address this "
    "request came to) as the channel's webhook for message, message.ack and connection.update. "
    "The source must be the tenant's, with preset wpp_gateway and the destination's secret among "
    "its secrets (the gateway authenticates with it), else 422 naming /source.",
    scope="manage",
    path=RefPath,
    body=WebhookIn,
    ok={200: (ChannelWebhook, "Registered."), 502: GATEWAY_FAILED},
    errors=(404, 422),
)
async def set_webhook(request: Request) -> Response:
    h, d, gateway = await _gateway(request, Scope.MANAGE)
    body = await decode_body(request, WebhookIn, 4096)
    tenant = d.tenant_id
    source = await sql.get_source(h.store, body.source, tenant)
    if source is None:
        source = next(
            (s for s in await sql.list_sources(h.store, tenant) if s.name == body.source), None
        )
    problem = None
    if source is None:
        problem = "no source with that id or name in this tenant"
    elif source.preset != "wpp_gateway":
        problem = f"the source's preset is {source.preset!r}, not wpp_gateway"
    elif d.secrets[0] not in source.secrets:
        problem = (
            "the source does not accept the destination's gateway secret, so the gateway's "
            "webhooks would be refused (401): add it to the source's secrets"
        )
    elif not source.enabled:
        problem = "the source is disabled"
    if problem is not None or source is None:
        raise Unprocessable(f"source: {problem}", details=[{"path": "/source", "message": problem}])
    base = h.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    url = f"{base}/v1/sources/{source.id}/webhook"
    try:
        await gateway.set_webhook(d.config["channel"], url)
    except GatewayProblem as exc:
        raise _failed(d, exc) from None
    log.info(
        "gateway channel webhook set",
        extra={"action": "gateway_channel_webhook", "destination_id": d.id, "source_id": source.id},
    )
    return respond(
        ChannelWebhook(
            destination=d.name,
            channel=d.config["channel"],
            source=source.id,
            url=url,
            events=list(WEBHOOK_EVENTS),
        )
    )


# literal paths (qr.png) need no ordering: `{ref}` never holds a '/'
routes = routes_of(create_channel, get_channel, get_qr, get_qr_png, set_webhook)
