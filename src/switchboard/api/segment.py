"""The Segment HTTP tracking API, so existing Segment clients can point at Switchboard.

The write key is one of our API keys with the ``ingest`` scope, sent as the Basic-auth username
(what every Segment library does), as a Bearer token, or as ``writeKey`` in the body. Bodies may
be gzipped. An accepted request answers ``200 {"success": true}`` like Segment, even when the
catalog rejects some of its events: those are reported per event in the logs.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated, Any, Literal

import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import JSONResponse, hub, read_body, within
from switchboard.api.contract import Handler, Model, endpoint, routes_of
from switchboard.api.event_shapes import Text, Time
from switchboard.api.models import ErrorDetail
from switchboard.envelope import EnvelopeError, now_us
from switchboard.errors import ApiError, BadRequest, NotFound, Unauthorized
from switchboard.sources import segment
from switchboard.store import Scope

__all__ = ["routes"]

log = logging.getLogger("switchboard.segment")
TAG = "segment"
# Segment's libraries send the write key as the Basic-auth username; a Bearer key or
# `writeKey` in the body does as well (so the last item: no header at all).
SECURITY: tuple[dict[str, list[str]], ...] = ({"segmentWriteKey": []}, {})
Object = dict[str, Any]


# The models publish what a Segment client may send. The handler stays as lenient as Segment
# itself (fields it does not name are kept or ignored, any message type in a batch is logged
# rather than refused), so it reads the JSON as it comes; what it refuses, the models say.
class SegmentMessage(Struct, kw_only=True):
    """A Segment message (at most 32 KB); fields it does not name are ignored."""

    type: (
        Annotated[
            Literal["track", "identify", "page", "screen", "group", "alias"],
            Meta(description="In a batch: the call. At a call's own URL the URL says it."),
        ]
        | None
    ) = None
    event: (
        Annotated[
            str,
            Meta(
                min_length=1,
                description="track: the event name, normalised into the event type "
                "(Order Completed → order_completed).",
            ),
        ]
        | None
    ) = None
    userId: Annotated[Text, Meta(description="The subject.")] | None = None
    anonymousId: (
        Annotated[Text, Meta(description="The subject when there is no userId.")] | None
    ) = None
    messageId: Annotated[Text, Meta(description="The event id: a retry is a duplicate.")] | None = (
        None
    )
    timestamp: Time | None = None
    originalTimestamp: (
        Annotated[Time, Meta(description="With sentAt: corrected for the client's clock.")] | None
    ) = None
    sentAt: Time | None = None
    properties: Annotated[Object, Meta(description="track, page, screen: the data.")] | None = None
    traits: Annotated[Object, Meta(description="identify, group: the data.")] | None = None
    context: Object | None = None
    integrations: Object | None = None
    groupId: Any = None
    previousId: Any = None
    name: Any = None
    category: Any = None
    writeKey: Annotated[str, Meta(description="The write key, if not in Authorization.")] | None = (
        None
    )


class SegmentTrack(SegmentMessage, kw_only=True):
    """A Segment track call: its event name is required."""

    event: Annotated[
        str,
        Meta(
            min_length=1,
            description="The event name, normalised into the event type "
            "(Order Completed → order_completed).",
        ),
    ]


class SegmentBatch(Struct, kw_only=True):
    """Many Segment messages at once; each carries its `type`."""

    batch: list[SegmentMessage]
    context: Annotated[Object, Meta(description="Merged into every message.")] | None = None
    integrations: Object | None = None
    writeKey: Annotated[str, Meta(description="The write key, if not in Authorization.")] | None = (
        None
    )


class SegmentOk(Model):
    success: Literal[True]


class SegmentErrorBody(Model):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class SegmentError(Model):
    """Segment's error shape ({success, code, message}, read by its libraries) and ours."""

    success: Literal[False]
    code: str
    message: str
    error: SegmentErrorBody


def _write_key(request: Request, body: Any) -> str:
    if isinstance(body, dict):
        for name, kind, what in (
            ("writeKey", str, "a string: the write key"),
            ("context", dict, "an object"),
            ("integrations", dict, "an object"),
        ):
            if body.get(name) is not None and not isinstance(body[name], kind):
                raise BadRequest(
                    f"{name} must be {what}", details=[{"path": f"/{name}", "message": what}]
                )
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value.strip():
        try:
            user = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("the Basic credentials are not base64") from None
        key = user.split(":", 1)[0]
        if key:
            return key
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str) and body["writeKey"]:
        return str(body["writeKey"])
    raise Unauthorized(
        "send the write key (an API key with the ingest scope) as the Basic-auth "
        "username or as writeKey in the body"
    )


async def _handle(request: Request, kind: str | None) -> Response:
    h = hub(request)
    limit = segment.MAX_BATCH_BYTES if kind is None else segment.MAX_MESSAGE_BYTES
    raw = await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    key = _write_key(request, body)
    p = await h.auth.authenticate("Bearer " + key, request.headers.get("x-switchboard-tenant"))
    p.require(Scope.INGEST)
    tenant = await h.tenant(p.tenant())
    if tenant is None:
        raise NotFound(f"tenant {p.tenant()!r} does not exist")
    if kind is None:
        messages = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            raise BadRequest('a batch body is {"batch": [message, …]}')
        shared = {k: body[k] for k in ("context", "integrations") if isinstance(body.get(k), dict)}
    else:
        messages, shared = [body], {}
    received = now_us()
    raws: list[Any] = []
    problems: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"/batch/{i}" if kind is None else ""
        if isinstance(msg, dict) and shared:
            msg = {
                **msg,
                **{
                    k: {**v, **msg[k]} if isinstance(msg.get(k), dict) else msg.get(k, v)
                    for k, v in shared.items()
                },
            }
        if kind is None and len(orjson.dumps(msg)) > segment.MAX_MESSAGE_BYTES:
            problems.append(
                {
                    "index": i,
                    "status": "rejected",
                    "errors": [
                        {"path": where, "message": "over Segment's 32 KB limit per message"}
                    ],
                }
            )
            continue
        try:
            raws.append(segment.to_native(msg, kind, received, where))
        except EnvelopeError as exc:
            if kind is not None:  # a single call the client can fix: say so (Segment: 400)
                raise BadRequest(str(exc), details=exc.errors) from None
            problems.append({"index": i, "status": "rejected", "errors": exc.errors})
    if raws:
        h.limiter.check(p.key.id, tenant.id, len(raws))
        result = await h.ingestor.ingest(
            raws,
            tenant,
            p.key.source or "segment",
            quarantine_rejected=True,
            constraint=p.constraint,
        )
        problems.extend(r for r in result.results if r["status"] == "rejected")
    if problems:
        log.warning(
            "segment events rejected",
            extra={
                "action": "segment_rejected",
                "tenant_id": tenant.id,
                "rejected": len(problems),
                "results": problems[:20],
            },
        )
    return JSONResponse({"success": True})


def _endpoint(path: str, kind: str | None) -> Handler:
    async def handler(request: Request) -> Response:
        try:
            return await within(hub(request).settings.ingest_timeout, _handle(request, kind))
        except ApiError as exc:
            return _segment_error(exc)

    auth = (
        " The write key is an API key with the `ingest` scope: Basic-auth username, Bearer "
        "token, or `writeKey` in the body."
    )
    errors: dict[int, tuple[Any, str]] = {
        400: (SegmentError, "Malformed JSON or message."),
        401: (SegmentError, "No write key, or an unknown one."),
        403: (SegmentError, "The key lacks the ingest scope."),
        404: (SegmentError, "The key's tenant does not exist."),
        413: (SegmentError, "Over the size limit."),
        429: (SegmentError, "Over the rate limit; wait Retry-After seconds."),
    }
    if kind is None:
        short = path == "b"
        spec = endpoint(
            f"POST /v1/{path}",
            "segmentBatchShort" if short else "segmentBatch",
            TAG,
            "Segment batch" + (" (analytics.js)" if short else ""),
            "Many Segment messages at once; rejected ones are logged, not answered. Body at "
            "most 500 KB (32 KB per message), gzip allowed." + auth,
            scope="ingest",
            body=SegmentBatch,
            ok={200: (SegmentOk, "Accepted."), **errors},
            security=SECURITY,
        )
    else:
        short = path != kind
        spec = endpoint(
            f"POST /v1/{path}",
            f"segment{kind.title()}" + ("Short" if short else ""),
            TAG,
            f"Segment {kind}" + (f" (analytics.js /v1/{path})" if short else ""),
            f"One Segment {kind} call, mapped onto an event; a message the catalog rejects is "
            "logged, the answer stays 200 like Segment's. Body at most 32 KB, gzip allowed." + auth,
            scope="ingest",
            body=SegmentTrack if kind == "track" else SegmentMessage,
            ok={200: (SegmentOk, "Accepted."), **errors},
            security=SECURITY,
        )
    handler.__qualname__ = handler.__name__ = f"segment_{path}"
    return spec(handler)


def _segment_error(exc: ApiError) -> Response:
    """Segment's error shape ({success, code, message}, read by its libraries) plus ours."""
    body = {"success": False, "code": exc.code, "message": str(exc), **exc.body()}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


# every call at its own URL and at analytics.js's one-letter one, then the batch at both
routes = routes_of(
    *(_endpoint(path, kind) for kind in segment.TYPES for path in (kind, kind[0])),
    _endpoint("batch", None),
    _endpoint("b", None),
)
