"""The audit log: every change a `manage` or `admin` key makes, recorded by one wrapper around
the app (so a new endpoint cannot forget it), and `GET /v1/audit` to read it.

`principal()` marks a request that a manage/admin key makes with a method that changes things;
`record` holds back the answer, and once the handler is done writes who (key), when, from where
(the client address, as the trusted-proxy rules in server.py give it), what (the action and
path), the resource before (read through its own GET route, where it has one) and the answer
after, both with credentials masked, then sends the answer on.

The entry is written in the change's own transaction (store/audit.py `audited`): the handler runs
inside a unit of the store that a manage/admin change joins, the entry is inserted last and the
whole commits before the answer leaves. A change whose entry cannot be written is rolled back
and answered 503; an acknowledged change always has its entry, even if the process dies at once.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import orjson
from msgspec import UNSET, Meta, UnsetType, field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.api.common import AUDIT_MARK, AUDIT_PEEK, hub, principal
from switchboard.api.contract import Model, Params, decode_query, endpoint, respond, routes_of
from switchboard.api.observe import TimeParam, query_time_of
from switchboard.audit import action_name, mask_document
from switchboard.auth import Principal
from switchboard.envelope import format_us, new_id, now_us
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
    answered = False
    try:
        async with sql.audited(the_hub.store, joined=False) as change:
            status, messages = await _collect(app, scope, receive)
            answered = True
            p: Principal | None = scope.get(AUDIT_MARK)
            if p is not None:
                path_template = _template(routes, scope) or scope["path"]
                client = scope.get("client")
                change.entry = AuditEntry(
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
    except Exception:
        if not answered:  # the handler failed: its writes are rolled back, uvicorn says 500
            raise
        # the entry (or the COMMIT) failed: the change is rolled back with it, never unaudited
        log.error(
            "audit entry not written; the change is rolled back",
            extra={"action": "audit_write_failed", "method": method, "path": scope["path"]},
            exc_info=True,
        )
        messages = _not_committed()
    for message in messages:
        await send(message)


def _not_committed() -> list[Message]:
    body = orjson.dumps(
        {
            "error": {
                "code": "audit_failed",
                "message": "the change could not be committed with its audit log entry, so it "
                "was not made; retry",
            }
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"5"),
    ]
    return [
        {"type": "http.response.start", "status": 503, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


class AuditQuery(Params):
    from_: Annotated[TimeParam, Meta(description="Entries at or after.")] | UnsetType = field(
        name="from", default=UNSET
    )
    to: Annotated[TimeParam, Meta(description="Entries before.")] | UnsetType = UNSET
    action: (
        Annotated[
            str,
            Meta(
                pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(?!\n)$",
                description="An action (`keys.create`) or a resource (`keys`, `event-types`).",
            ),
        ]
        | UnsetType
    ) = UNSET
    cursor: (
        Annotated[
            str,
            Meta(min_length=1, max_length=100, description="The next_cursor of the previous page."),
        ]
        | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000, description="Page size (default 100).")] = 100


class AuditLogEntry(Model):
    id: Annotated[str, Meta(description="Time-ordered id; the listing's cursor.")]
    tenant_id: Annotated[
        str | None, Meta(description="The tenant; null for operator actions such as tenants.")
    ]
    at: Annotated[
        str,
        Meta(description="When the change was made.", extra_json_schema={"format": "date-time"}),
    ]
    key_id: Annotated[str, Meta(description="The key that made it.")]
    key_name: str | None
    ip: Annotated[
        str | None, Meta(description="The client address (a trusted proxy's X-Forwarded-For).")
    ]
    action: Annotated[
        str, Meta(description="`<resource>.<verb>` such as `destinations.update`, `dlq.retry`.")
    ]
    method: str
    path: str
    status: Annotated[
        int, Meta(description="The answer's status code (a refused change is recorded too).")
    ]
    before: Annotated[Any, Meta(description="The resource before, credentials masked; or null.")]
    after: Annotated[Any, Meta(description="The answer, credentials masked; or null.")]


class AuditLog(Model):
    data: list[AuditLogEntry]
    next_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the next page; null on the last.")
    ]


def _entry(e: AuditEntry) -> AuditLogEntry:
    return AuditLogEntry(
        id=e.id,
        tenant_id=e.tenant_id or None,
        at=format_us(e.at_us),
        key_id=e.key_id,
        key_name=e.key_name,
        ip=e.ip,
        action=e.action,
        method=e.method,
        path=e.path,
        status=e.status,
        before=e.before,
        after=e.after,
    )


@endpoint(
    "GET /v1/audit",
    "listAudit",
    "tenants & keys",
    "Read the audit log",
    "Every change a manage or admin key made in the tenant, newest first. An admin key "
    "without the tenant header reads the operator's own actions (creating tenants).",
    scope="manage",
    query=AuditQuery,
    ok={200: (AuditLog, "OK")},
)
async def list_audit(request: Request) -> Response:
    """A tenant's audit log, newest first (manage; an admin key names the tenant with the
    tenant header, or without it reads the operator's own actions such as creating tenants)."""
    p = await principal(request, KeyScope.MANAGE)
    q = decode_query(request, AuditQuery)
    found = await sql.list_entries(
        hub(request).store,
        p.tenant_id or "",
        from_us=query_time_of(q.from_, "from"),
        to_us=query_time_of(q.to, "to"),
        action=q.action or None,
        before_id=q.cursor or None,
        limit=q.limit,
    )
    return respond(
        AuditLog(
            data=[_entry(e) for e in found],
            next_cursor=found[-1].id if len(found) == q.limit else None,
        )
    )


routes = routes_of(list_audit)
