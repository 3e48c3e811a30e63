"""Masking every answer for keys without the `pii` scope.

Each handler authenticates through `common.principal`, which notes the caller in the request's
state; `redact_answers` wraps the app's `send` and, when the caller lacks `pii`, rewrites the
JSON answer before it leaves: event `data` by its catalog type's PII classes, then every string
by the raw values those events (and the events the answer refers to: a delivery's, a source
request's) hold, and by the email, phone, CPF and CNPJ detectors of `pii.mask_text`. Doing it
on the way out, rather than in each handler, covers every read endpoint, present and future,
and costs nothing on the ingest path or for `pii` and admin keys.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.auth import Principal
from switchboard.hub import Hub
from switchboard.pii import PiiClass, Redactor, classify
from switchboard.store import Scope as KeyScope
from switchboard.store.queries import EVENT_COLUMNS, event_from_row

STATE_KEY = "switchboard.principal"
_MAX_REFERRED = 500  # events an answer refers to that are read to learn their raw values
# answers about a person: their profile and consent fields are PII whatever the catalog says
_PEOPLE_PATHS = re.compile(r"^/v1/(recipients|inbox|subjects)/")
_PEOPLE_KEYS = {"email", "phone", "name", "ip", "user_agent"}
_DELIVERY_PATH = re.compile(r"^/v1/deliveries/([^/]+)(?:/attempts)?(?!\n)$")
# answers that are the tenant's configuration, not data about people: shown as stored, so a
# GET → edit → PUT round trip never writes a mask back (an email destination's `from`)
_CONFIGURATION = re.compile(
    r"^/v1/(destinations|routes|mappings|templates|event-types|keys|tenants)(/|$)"
    r"|^/v1/sources(/[^/]+)?/?$|^/v1/sources/[^/]+/secrets$"
    r"|^/v1/automations(/[^/]+)?/?$"
)


def sees_pii(p: Principal) -> bool:
    return KeyScope.PII in p.key.scopes or KeyScope.ADMIN in p.key.scopes


def redact_answers(app: ASGIApp, hub: Hub) -> ASGIApp:
    """`app` with the JSON answers to keys lacking `pii` masked."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def masking_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                p = scope.get("state", {}).get(STATE_KEY)
                if (
                    p is None
                    or sees_pii(p)
                    or not _is_json(message)
                    or _CONFIGURATION.match(scope.get("path", ""))
                ):
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            p = scope["state"][STATE_KEY]
            masked = await _mask_body(hub, p, scope.get("path", ""), body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(masked)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": masked})

        await app(scope, receive, masking_send)

    return wrapped


def _is_json(start: Message) -> bool:
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"application/json")
    return False


async def _mask_body(hub: Hub, p: Principal, path: str, body: bytes) -> bytes:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if p.tenant_id is None:
        return body
    return orjson.dumps(await mask_answer(hub, p.tenant_id, path, doc))


async def mask_answer(hub: Hub, tenant_id: str, path: str, doc: Any) -> Any:
    """`doc` (an answer to `path` in `tenant_id`) as a key without `pii` may see it."""
    redactor = Redactor()
    classes: dict[str, dict[str, PiiClass]] = {}

    async def classes_of(type_name: str) -> dict[str, PiiClass]:
        if type_name not in classes:
            spec = await hub.registry.lookup(tenant_id, type_name)
            classes[type_name] = spec.pii_fields() if spec else {}
        return classes[type_name]

    # the events the answer only refers to: their raw values are masked wherever they appear
    holders, ids, seqs = _scan(doc)
    match = _DELIVERY_PATH.match(path)
    if match:
        d = await hub.deliveries.get(tenant_id, match[1])
        if d is not None:
            seqs.add(d.event_seq)
    for event in await _referred_events(hub, tenant_id, ids, seqs):
        redactor.learn(event.data, await classes_of(event.type))
    for holder in holders:
        holder["data"] = redactor.data(holder["data"], await classes_of(holder["type"]))
    if _PEOPLE_PATHS.match(path):
        _mask_people(doc, redactor)
    return redactor.strings(doc)


def _scan(doc: Any) -> tuple[list[dict[str, Any]], set[str], set[int]]:
    """One walk of the answer: the objects shaped like an event (a string `type` and an object
    `data`), and the ids and sequence numbers of the events it refers to."""
    holders: list[dict[str, Any]] = []
    ids: set[str] = set()
    seqs: set[int] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and isinstance(node.get("data"), dict):
                holders.append(node)
            for key, value in node.items():
                if isinstance(value, dict | list):
                    stack.append(value)
                elif key == "event_id" and isinstance(value, str):
                    ids.add(value)
                elif key == "event_seq" and isinstance(value, int):
                    seqs.add(value)
            found = node.get("event_ids")
            if isinstance(found, list):
                ids.update(v for v in found if isinstance(v, str))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return holders, ids, seqs


async def _referred_events(hub: Hub, tenant_id: str, ids: set[str], seqs: set[int]) -> list[Any]:
    if not ids and not seqs:
        return []
    found = []
    for column, values in (("id", sorted(ids)), ("seq", sorted(seqs))):
        values = values[:_MAX_REFERRED]
        if not values:
            continue
        marks = ", ".join("?" * len(values))
        where, params = f"{column} IN ({marks})", [tenant_id, *values]
        if column == "id" and hub.store.dialect == "postgres":
            # events are partitioned by month there (migration 0013): their keys find them
            where = (
                "(seq, received_us) IN (SELECT seq, received_us FROM event_keys "
                f"WHERE tenant_id = ? AND id IN ({marks}))"
            )
            params = [tenant_id, *params]
        rows = await hub.store.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND {where}", params
        )
        found += await hub.store.subject_keys.open([event_from_row(r) for r in rows])
    return found


def _mask_people(doc: Any, redactor: Redactor) -> None:
    """Profile and consent fields, in place (the profile's columns are PII by definition)."""
    if isinstance(doc, dict):
        for key, value in list(doc.items()):
            if key in _PEOPLE_KEYS and isinstance(value, str):
                doc[key] = redactor.data({key: value}, {key: classify(key)})[key]
            else:
                _mask_people(value, redactor)
    elif isinstance(doc, list):
        for value in doc:
            _mask_people(value, redactor)
