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
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import JSONResponse, hub, read_body, within
from switchboard.envelope import EnvelopeError, now_us
from switchboard.errors import ApiError, BadRequest, NotFound, Unauthorized
from switchboard.sources import segment
from switchboard.store import Scope

__all__ = ["routes"]

log = logging.getLogger("switchboard.segment")


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


def _endpoint(kind: str | None) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            return await within(hub(request).settings.ingest_timeout, _handle(request, kind))
        except ApiError as exc:
            return _segment_error(exc)

    return endpoint


def _segment_error(exc: ApiError) -> Response:
    """Segment's error shape ({success, code, message}, read by its libraries) plus ours."""
    body = {"success": False, "code": exc.code, "message": str(exc), **exc.body()}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


routes = [
    Route(f"/v1/{path}", _endpoint(kind), methods=["POST"])
    for path, kind in segment.PATH_TYPES.items()
] + [
    Route("/v1/batch", _endpoint(None), methods=["POST"]),
    Route("/v1/b", _endpoint(None), methods=["POST"]),  # analytics.js's batching delivery
]
