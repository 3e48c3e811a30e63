"""The audit log: every change a `manage` or `admin` key makes, recorded by one wrapper around
the app (so a new endpoint cannot forget it), and `GET /v1/audit` to read it.

`principal()` marks a request that a manage/admin key makes with a method that changes things;
`record` holds back the answer, and once the handler is done writes who (key), when, from where
(the client address, as the trusted-proxy rules in server.py give it), what (the action and
path), the resource before (read through its own GET route, where it has one) and the answer
after, both with credentials masked, then sends the answer on.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.api.common import (
    AUDIT_MARK,
    AUDIT_PEEK,
    JSONResponse,
    hub,
    principal,
    query_int,
    query_time,
)
from switchboard.audit import action_name, mask_document
from switchboard.auth import Principal
from switchboard.envelope import new_id, now_us
from switchboard.errors import BadRequest
from switchboard.hub import Hub
from switchboard.store import Scope as KeyScope
from switchboard.store import audit as sql
from switchboard.store.audit import AuditEntry

log = logging.getLogger("switchboard.audit")

_MAX_DOCUMENT = 262_144  # bytes of an answer kept as `after` (larger: only its size)


def _template(routes: list[Any], scope: Scope) -> str | None:
    for route in routes:
        if isinstance(route, Route):
            found, _ = route.matches(scope)
            if found == Match.FULL:
                return route.path
    return None


def _document(body: bytes, content_type: str) -> Any:
    if not body or "json" not in content_type:
        return None
    if len(body) > _MAX_DOCUMENT:
        return {"truncated": True, "bytes": len(body)}
    try:
        return mask_document(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


async def _collect(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[Message]]:
    status, messages = 500, []

    async def keep(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        messages.append(message)

    await app(scope, receive, keep)
    return status, messages


def _body(messages: list[Message]) -> tuple[bytes, str]:
    ctype = ""
    for m in messages:
        if m["type"] == "http.response.start":
            for name, value in m.get("headers", []):
                if name.lower() == b"content-type":
                    ctype = value.decode("latin-1")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return body, ctype


async def _before(app: ASGIApp, routes: list[Any], scope: Scope) -> Any:
    """The resource as its GET route shows it, read with the caller's key before the change."""
    inner = {k: v for k, v in scope.items() if k not in (AUDIT_MARK, "path_params", "endpoint")}
    inner.update(method="GET", query_string=b"", **{AUDIT_PEEK: True})
    if _template(routes, inner) is None:
        return None

    async def empty() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    try:
        status, messages = await _collect(app, inner, empty)
    except Exception:  # the change must not fail because its `before` could not be read
        log.warning("audit could not read the resource before a change", exc_info=True)
        return None
    return _document(*_body(messages)) if status == 200 else None


async def record(
    app: ASGIApp, routes: list[Any], the_hub: Hub, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve a request that may change something; audit it when a manage/admin key changed
    something, or tried to (the entry keeps the answer's status), before the answer leaves."""
    method = scope["method"]
    before = None
    if method in ("PUT", "PATCH", "DELETE") and any(
        name == b"authorization" for name, _ in scope.get("headers", [])
    ):
        before = await _before(app, routes, scope)
    status, messages = await _collect(app, scope, receive)
    p: Principal | None = scope.get(AUDIT_MARK)
    if p is not None:
        path_template = _template(routes, scope) or scope["path"]
        client = scope.get("client")
        entry = AuditEntry(
            id=new_id(),
            tenant_id=p.tenant_id or "",
            at_us=now_us(),
            key_id=p.key.id,
            key_name=p.key.name,
            ip=client[0] if client else None,
            action=action_name(method, path_template),
            method=method,
            path=scope["path"],
            status=status,
            before=before,
            after=_document(*_body(messages)),
        )
        try:
            await sql.append(the_hub.store, entry)
        except Exception:  # the change is committed: its answer must still go out
            log.error(
                "audit entry not written",
                extra={"action": "audit_write_failed", "audit_action": entry.action},
                exc_info=True,
            )
    for message in messages:
        await send(message)


async def list_audit(request: Request) -> Response:
    """A tenant's audit log, newest first (manage; an admin key names the tenant with the
    tenant header, or without it reads the operator's own actions such as creating tenants)."""
    p = await principal(request, KeyScope.MANAGE)
    tenant_id = p.tenant_id or ""
    action = request.query_params.get("action")
    if action is not None and not action.replace(".", "").replace("_", "").isalnum():
        raise BadRequest(
            "query parameter 'action' must be an action name such as keys.create, or a resource",
            details=[{"path": "?action", "message": "not an action name"}],
        )
    limit = query_int(request, "limit", 100, 1, 1000)
    found = await sql.list_entries(
        hub(request).store,
        tenant_id,
        from_us=query_time(request, "from"),
        to_us=query_time(request, "to"),
        action=action,
        before_id=request.query_params.get("cursor"),
        limit=limit,
    )
    return JSONResponse(
        {
            "data": [e.public() for e in found],
            "next_cursor": found[-1].id if len(found) == limit else None,
        }
    )


routes = [Route("/v1/audit", list_audit, methods=["GET"])]
