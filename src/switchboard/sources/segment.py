"""The Segment HTTP tracking API's messages → our envelope (pure).

``track`` becomes an event whose type is the normalized ``event`` name; ``identify``, ``page``,
``screen``, ``group`` and ``alias`` become ``segment.identify`` … ``segment.alias``. The
``messageId`` is the event id, so a client's retry is a duplicate; ``userId`` (else
``anonymousId``) is the subject; ``context`` is kept as the context. The rules are in
docs/sources.md.
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.envelope import (
    MAX_TIME_US,
    MIN_TIME_US,
    TIME_RANGE,
    EnvelopeError,
    format_us,
    parse_time,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "PATH_TYPES",
    "normalize_event_name",
    "to_native",
]

MAX_MESSAGE_BYTES = 32 * 1024  # Segment's limit per call / per message of a batch
MAX_BATCH_BYTES = 500 * 1024  # Segment's limit per batch request
TYPES = ("track", "identify", "page", "screen", "group", "alias")
# the path a message arrives on → its type; the one-letter forms are analytics.js's (it posts
# each call to api.segment.io/v1/<first letter of the type>)
PATH_TYPES = {
    **{t: t for t in TYPES},
    **{t[0]: t for t in TYPES},
}
_INVALID = re.compile(r"[^a-z0-9_.\-]+")


def normalize_event_name(name: str) -> str:
    """``"Order Completed"`` → ``order_completed``: lowercase, runs of anything other than
    letters, digits, ``.``, ``_`` or ``-`` become one ``_``; ``_ . -`` at the ends are dropped."""
    text = _INVALID.sub("_", name.strip().lower()).strip("_.-")
    return text[:200]


def _when(msg: dict[str, Any], received_us: int, index: str) -> str | None:
    """Segment's own rule: ``timestamp`` if given; else ``originalTimestamp`` corrected for the
    client's clock skew with ``sentAt`` (receivedAt − (sentAt − originalTimestamp)). Each is
    checked where it is read, so a bad one is refused under its own name; so is a skew that
    moves the time out of the representable range."""
    if msg.get("timestamp"):
        return format_us(parse_time(msg["timestamp"], f"{index}/timestamp"))
    original, sent = msg.get("originalTimestamp"), msg.get("sentAt")
    if not original:
        return None
    at = parse_time(original, f"{index}/originalTimestamp")
    if sent:
        at = received_us - (parse_time(sent, f"{index}/sentAt") - at)
        if not MIN_TIME_US <= at <= MAX_TIME_US:
            raise EnvelopeError(
                [
                    {
                        "path": f"{index}/sentAt",
                        "message": "corrected by sentAt, originalTimestamp is outside the "
                        f"representable range {TIME_RANGE} in UTC",
                    }
                ]
            )
    return format_us(at)


def _object(msg: dict[str, Any], key: str, index: str) -> dict[str, Any]:
    value = msg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EnvelopeError([{"path": f"{index}/{key}", "message": "must be an object"}])
    return value


def to_native(msg: Any, kind: str | None, received_us: int, index: str = "") -> dict[str, Any]:
    """One Segment message → a native envelope. `kind` is the type the path implies (None for
    batch items, which carry their own ``type``). Raises EnvelopeError with the field path."""
    if not isinstance(msg, dict):
        raise EnvelopeError([{"path": index or "/", "message": "a message is a JSON object"}])
    mtype = kind or msg.get("type")
    if mtype not in TYPES:
        raise EnvelopeError(
            [{"path": f"{index}/type", "message": f"must be one of {', '.join(TYPES)}"}]
        )
    context = dict(_object(msg, "context", index))
    if msg.get("anonymousId") is not None:
        context["anonymous_id"] = str(msg["anonymousId"])
    if isinstance(msg.get("integrations"), dict) and msg["integrations"]:
        context["integrations"] = msg["integrations"]
    data: dict[str, Any]
    if mtype == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not normalize_event_name(name):
            raise EnvelopeError(
                [{"path": f"{index}/event", "message": "a track call needs an event name"}]
            )
        etype = normalize_event_name(name)
        if etype != name:
            context["segment_event"] = name
        data = dict(_object(msg, "properties", index))
    elif mtype == "identify":
        etype, data = "segment.identify", dict(_object(msg, "traits", index))
    elif mtype in ("page", "screen"):
        etype, data = f"segment.{mtype}", dict(_object(msg, "properties", index))
        for key in ("name", "category"):
            if msg.get(key) is not None and key not in data:
                data[key] = msg[key]
    elif mtype == "group":
        etype = "segment.group"
        data = {"group_id": msg.get("groupId"), "traits": _object(msg, "traits", index)}
    else:
        etype = "segment.alias"
        data = {"previous_id": msg.get("previousId"), "user_id": msg.get("userId")}
    subject = msg.get("userId") if msg.get("userId") is not None else msg.get("anonymousId")
    native: dict[str, Any] = {
        "id": msg.get("messageId"),
        "type": etype,
        "data": data,
        "context": context,
        "time": _when(msg, received_us, index),
    }
    if subject is not None:
        native["subject"] = str(subject)
    return native
