"""CloudEvents 1.0 over HTTP → our envelope (pure): structured, binary and batched modes.

``id``, ``source``, ``type``, ``time`` and ``subject`` map one to one; ``data`` becomes the data
(a non-object value is wrapped as ``{"value": …}``, ``data_base64`` as ``{"data_base64": …}``);
``datacontenttype``, ``dataschema`` and every extension attribute go to the context. A W3C
``traceparent`` extension also sets the trace id, and ``correlationid`` / ``causationid``
extensions set the correlation and causation ids.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import orjson

from switchboard.envelope import EnvelopeError, parse_time

__all__ = [
    "BATCH",
    "STRUCTURED",
    "from_batch",
    "from_binary",
    "from_structured",
    "is_binary",
]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_REQUIRED = ("id", "source", "type")
_MAPPED = {"specversion", "id", "source", "type", "time", "subject", "data", "data_base64"}
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}(?!\n)$")


def _fail(path: str, message: str) -> EnvelopeError:
    return EnvelopeError([{"path": path, "message": message}])


def _data(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def from_structured(doc: Any, index: str = "") -> dict[str, Any]:
    """One CloudEvent in its JSON form → a native envelope; raises EnvelopeError."""
    if not isinstance(doc, dict):
        raise _fail(index or "/", "a CloudEvent is a JSON object")
    if doc.get("specversion") != "1.0":
        raise _fail(f"{index}/specversion", 'must be "1.0" (CloudEvents 1.0)')
    errors = [
        {"path": f"{index}/{name}", "message": "is required by CloudEvents 1.0"}
        for name in _REQUIRED
        if not isinstance(doc.get(name), str) or not doc[name]
    ]
    if errors:
        raise EnvelopeError(errors)
    if doc.get("time") is not None:  # checked here so a batch's answer names `/<i>/time`
        parse_time(doc["time"], f"{index}/time")
    if "data_base64" in doc and doc["data_base64"] is not None:
        data: dict[str, Any] = {"data_base64": doc["data_base64"]}
    else:
        data = _data(doc.get("data"))
    context = {k: v for k, v in doc.items() if k not in _MAPPED}
    native: dict[str, Any] = {
        "id": doc["id"],
        "source": doc["source"],
        "type": doc["type"],
        "data": data,
        "context": context,
    }
    for name in ("time", "subject"):
        if doc.get(name) is not None:
            native[name] = doc[name]
    found = _TRACEPARENT.match(str(context.get("traceparent", "")).strip().lower())
    if found:
        native["trace_id"] = found.group(1)
    for ext, field in (("correlationid", "correlation_id"), ("causationid", "causation_id")):
        if isinstance(context.get(ext), str) and context[ext]:
            native[field] = context[ext]
    return native


def from_batch(docs: Any) -> list[Any]:
    """A batch (a JSON array of structured events) → native envelopes, or the EnvelopeError of
    each broken one in its place, so results stay per event."""
    if not isinstance(docs, list):
        raise _fail("/", "a CloudEvents batch is a JSON array")
    out: list[Any] = []
    for i, doc in enumerate(docs):
        try:
            out.append(from_structured(doc, f"/{i}"))
        except EnvelopeError as exc:
            out.append(exc)
    return out


def is_binary(headers: Mapping[str, str]) -> bool:
    return "ce-specversion" in headers


def from_binary(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Binary mode: attributes in ``ce-*`` headers (percent-encoded), the body is the data."""
    attrs: dict[str, Any] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith("ce-") and len(lowered) > 3:
            attrs[lowered[3:]] = unquote(value)
    if "time" in attrs:
        parse_time(attrs["time"], "ce-time")
    ctype = headers.get("content-type")
    if ctype:
        attrs["datacontenttype"] = ctype
    media = (ctype or "application/json").split(";")[0].strip().lower()
    if body:
        if media == "application/json" or media.endswith("+json"):
            try:
                attrs["data"] = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise _fail("/data", "the body is not valid JSON") from None
        elif media == "application/octet-stream" and body.lstrip()[:1] in (b"{", b"["):
            # HTTP clients label raw bytes octet-stream when the sender set no datacontenttype
            try:
                attrs["data"] = orjson.loads(body)
            except orjson.JSONDecodeError:
                attrs["data_base64"] = base64.b64encode(body).decode("ascii")
        elif media.startswith("text/"):
            attrs["data"] = body.decode("utf-8", errors="replace")
        else:
            attrs["data_base64"] = base64.b64encode(body).decode("ascii")
    return from_structured(attrs)
