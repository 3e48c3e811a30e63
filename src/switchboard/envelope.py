"""The event envelope: the stored record and the wire shapes that map onto it.

Accepted shapes (each mapped onto the native envelope before validation):

* native — ``{"type", "data", "id"?, "version"?, "time"?, "source"?, "subject"?, "actor"?, ...}``
* the legal-practice plan's ``BaseEvent`` — camelCase ``eventId``, ``eventType``,
  ``eventVersion``, ``timestamp``, ``actor``, ``actorType``, ``organizationId``, ``payload``,
  ``metadata``
* the clinic checklist's ``emitEvent`` arguments — ``eventType``, ``actor``, ``clinicId``,
  ``customerId``, ``timestamp``, ``eventId``, ``metadata``
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import uuid_utils

MAX_ID_LEN = 200
TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,199}(?!\n)$")
# A type or a glob of types (`billing.*`, `lead.?`), as listings and replays take them. Types are
# lowercase, so anything else could match only by accident (SQLite's LIKE ignores case).
TYPE_GLOB_RE = re.compile(r"^[a-z0-9_.*?\-]{1,200}(?!\n)$")
_TEXT_FIELDS = ("subject", "trace_id", "correlation_id", "causation_id")
_ENVELOPE_TEXTS = ("id", "source", "version", *_TEXT_FIELDS)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event. ``seq`` is the store's time-ordered key (0 before it is stored)."""

    tenant_id: str
    id: str
    type: str
    version: str | None
    time_us: int
    received_us: int
    source: str
    subject: str | None
    actor_id: str | None
    actor_type: str | None
    trace_id: str
    correlation_id: str | None
    causation_id: str | None
    context: dict[str, Any]
    data: dict[str, Any]
    status: str = "accepted"  # accepted | warned | quarantined
    errors: list[dict[str, str]] = msgspec.field(default_factory=list)
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of a stored event."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "time": format_us(self.time_us),
            "received_at": format_us(self.received_us),
            "source": self.source,
            "subject": self.subject,
            "actor": {"id": self.actor_id, "type": self.actor_type}
            if (self.actor_id or self.actor_type)
            else None,
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "context": self.context,
            "data": self.data,
            "status": self.status,
        }
        if self.errors:
            out["validation_errors"] = self.errors
        return out

    def match_doc(self) -> dict[str, Any]:
        """The dict that filter patterns match against (the envelope without hub fields)."""
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "source": self.source,
            "subject": self.subject,
            "time": format_us(self.time_us),
            "actor": {"id": self.actor_id, "type": self.actor_type},
            "trace_id": self.trace_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "context": self.context,
            "data": self.data,
        }


class EnvelopeError(Exception):
    """An envelope field is missing or malformed; ``errors`` holds ``{path, message}`` items."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))
        self.errors = errors


def new_id() -> str:
    """A time-ordered UUIDv7 string."""
    return str(uuid_utils.uuid7())


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


# The instants `datetime` can name in UTC (years 1 to 9999). Ingest refuses times outside them;
# a row stored before that check is still rendered (`format_us` falls back to `_civil_second`).
MIN_TIME_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_TIME_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
TIME_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"


def format_us(us: int) -> str:
    """Microseconds since the epoch → ISO 8601 in UTC (`2026-11-23T21:59:00.123456Z`; no
    fraction when it is zero, as `datetime.isoformat` writes it). Exact integer arithmetic; the
    calendar part is computed once per second (each delivery formats two of these). Never
    raises: an instant outside years 1–9999 is written with an expanded ISO 8601 year
    (`+10000-01-01T11:59:59Z`), so no stored row can make a read fail."""
    seconds, fraction = divmod(us, 1_000_000)
    in_range = MIN_TIME_US <= us <= MAX_TIME_US
    second = utc_second(seconds) if in_range else _civil_second(seconds)
    if fraction:
        return f"{second}.{fraction:06d}Z"
    return f"{second}Z"


def _civil_second(seconds: int) -> str:
    """Seconds since the epoch → proleptic Gregorian date and time for any integer, with an
    ISO 8601 expanded year (sign and at least 5 digits) outside 0001–9999 (Howard Hinnant's
    `civil_from_days`)."""
    days, rem = divmod(seconds, 86_400)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    text_year = f"{year:04d}" if 1 <= year <= 9999 else f"{year:+05d}"
    hour, rem = divmod(rem, 3600)
    minute, second = divmod(rem, 60)
    return f"{text_year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


@functools.lru_cache(maxsize=4096)
def utc_second(seconds: int) -> str:
    """Seconds since the epoch → `2026-11-23T21:59:00` (UTC, no zone), cached: timestamps of
    the same second share it (envelopes here, log lines in `logs`)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").removesuffix("+00:00")


def parse_time(value: Any, path: str) -> int:
    """ISO 8601 with a timezone → microseconds since the epoch."""
    if not isinstance(value, str):
        raise EnvelopeError([{"path": path, "message": "must be an ISO 8601 string"}])
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise EnvelopeError(
            [{"path": path, "message": f"not an ISO 8601 date-time: {value[:40]!r}"}]
        ) from None
    if dt.tzinfo is None:
        raise EnvelopeError([{"path": path, "message": "needs a timezone (e.g. 'Z' or '-03:00')"}])
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not MIN_TIME_US <= us <= MAX_TIME_US:
        # `9999-12-31T23:59:59-12:00` parses, but its UTC form is in year 10000
        raise EnvelopeError(
            [{"path": path, "message": f"is outside the representable range {TIME_RANGE} in UTC"}]
        )
    return us


def _from_base_event(doc: dict[str, Any]) -> dict[str, Any]:
    """The legal-practice plan's camelCase BaseEvent → native."""
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise EnvelopeError([{"path": "/metadata", "message": "must be an object"}])
    context = {
        {"ipAddress": "ip", "userAgent": "user_agent", "requestId": "request_id"}.get(k, k): v
        for k, v in meta.items()
        if k != "source"
    }
    if doc.get("organizationId") is not None:
        context["organization_id"] = doc["organizationId"]
    native: dict[str, Any] = {
        "id": doc.get("eventId"),
        "type": doc.get("eventType"),
        "version": doc.get("eventVersion"),
        "time": doc.get("timestamp"),
        "source": doc.get("source") or meta.get("source"),
        "subject": doc.get("organizationId"),
        "data": doc.get("payload"),
        "context": context,
    }
    if doc.get("actor") is not None or doc.get("actorType") is not None:
        native["actor"] = {"id": doc.get("actor"), "type": doc.get("actorType")}
    for key in _TEXT_FIELDS[1:]:
        native[key] = doc.get(key)
    return native


def _from_emit_event(doc: dict[str, Any]) -> dict[str, Any]:
    """The clinic checklist's emitEvent({...}) arguments → native."""
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise EnvelopeError([{"path": "/context", "message": "must be an object"}])
    context = dict(context)
    if doc.get("clinicId") is not None:
        errors: list[dict[str, str]] = []
        context["clinic_id"] = _text(doc, "clinicId", errors)
        if errors:
            raise EnvelopeError(errors)
    actor_type = doc.get("actor")
    actor = None
    if actor_type is not None:
        # The clinic's EventActor is a kind (clinic|system|customer|ai); the concrete actor is
        # the clinic or the customer when the kind says so.
        actor_id = {"clinic": doc.get("clinicId"), "customer": doc.get("customerId")}.get(
            str(actor_type)
        )
        actor = {"id": actor_id, "type": actor_type}
    return {
        "id": doc.get("eventId"),
        "type": doc.get("eventType"),
        "version": doc.get("version"),
        "time": doc.get("timestamp"),
        "source": doc.get("source"),
        "subject": doc.get("customerId"),
        "actor": actor,
        "data": doc.get("metadata") if doc.get("metadata") is not None else {},
        "context": context,
        "trace_id": doc.get("trace_id"),
        "correlation_id": doc.get("correlation_id"),
        "causation_id": doc.get("causation_id"),
    }


def to_native(doc: Any) -> dict[str, Any]:
    """Detect the shape of one submitted event and map it onto the native envelope."""
    if not isinstance(doc, dict):
        raise EnvelopeError([{"path": "", "message": "an event must be a JSON object"}])
    if "type" in doc or "eventType" not in doc:
        return doc
    if "payload" in doc:
        return _from_base_event(doc)
    return _from_emit_event(doc)


def find_nul(value: Any, path: str) -> str | None:
    """The JSON path of the first string holding a NUL character (PostgreSQL cannot store
    one, so it is refused on every store alike), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                return f"{path}/{k!r}"
            if isinstance(v, str | dict | list) and (found := find_nul(v, f"{path}/{k}")):
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, str | dict | list) and (found := find_nul(v, f"{path}/{i}")):
                return found
    return None


def _text(doc: dict[str, Any], key: str, errors: list[dict[str, str]], at: str = "") -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN or "\x00" in value:
        errors.append(
            {
                "path": f"{at}/{key}",
                "message": f"must be a non-empty string of at most {MAX_ID_LEN}",
            }
        )
        return None
    return value


def build_event(
    raw: Any,
    *,
    tenant_id: str,
    default_source: str,
    received_us: int,
    default_trace_id: str | None = None,
) -> Event:
    """Validate the envelope of one submitted event (any accepted shape) into an Event.

    Raises EnvelopeError with every problem found, each with its JSON path.
    """
    doc = to_native(raw)
    errors: list[dict[str, str]] = []
    etype = doc.get("type")
    if etype is None:
        errors.append({"path": "/type", "message": "is required"})
    elif not isinstance(etype, str) or not TYPE_RE.match(etype):
        errors.append(
            {
                "path": "/type",
                "message": "must be a lowercase name of letters, digits, '.', '_' or '-'",
            }
        )
    data = doc.get("data")
    if data is None:
        errors.append({"path": "/data", "message": "is required"})
    elif not isinstance(data, dict):
        errors.append({"path": "/data", "message": "must be an object"})
    context = doc.get("context")
    if context is None:
        context = {}
    elif not isinstance(context, dict):
        errors.append({"path": "/context", "message": "must be an object"})
    texts: dict[str, str | None] = {}
    for key in _ENVELOPE_TEXTS:
        value = doc.get(key)
        if value is None or (
            value.__class__ is str and 0 < len(value) <= MAX_ID_LEN and "\x00" not in value
        ):
            texts[key] = value  # the common case, checked inline (9 calls per event add up)
        else:
            texts[key] = _text(doc, key, errors)  # numbers become text; the rest is an error
    event_id = texts["id"]
    source = texts["source"] or default_source
    version = texts["version"]
    actor = doc.get("actor")
    actor_id = actor_type = None
    if isinstance(actor, dict):
        actor_id = _text(actor, "id", errors, "/actor")
        actor_type = _text(actor, "type", errors, "/actor")
    elif isinstance(actor, str):
        actor_id = _text(doc, "actor", errors)  # an id: bounded like every other
    elif actor is not None:
        errors.append({"path": "/actor", "message": "must be an object {id, type}"})
    time_us = received_us
    if doc.get("time") is not None:
        try:
            time_us = parse_time(doc["time"], "/time")
        except EnvelopeError as exc:
            errors.extend(exc.errors)
    for name, part in (("data", data), ("context", context)):
        if not isinstance(part, dict) or not part:
            continue
        # orjson's C serialiser spots an escaped NUL far faster than a walk; walk only on a hit
        try:
            encoded = orjson.dumps(part)
        except TypeError:  # nested past orjson's 254 levels, which no store could encode either
            errors.append({"path": f"/{name}", "message": "nested too deeply (over 250 levels)"})
            continue
        if b"\\u0000" in encoded and (where := find_nul(part, f"/{name}")):
            errors.append({"path": where, "message": "must not contain NUL (\\u0000) characters"})
    if errors:
        raise EnvelopeError(errors)
    event_id = event_id or new_id()
    return Event(
        tenant_id=tenant_id,
        id=event_id,
        type=etype,  # type: ignore[arg-type]  # checked above
        version=version,
        time_us=time_us,
        received_us=received_us,
        source=source,
        subject=texts["subject"],
        actor_id=actor_id,
        actor_type=actor_type,
        trace_id=texts["trace_id"] or default_trace_id or uuid_utils.uuid4().hex,
        correlation_id=texts["correlation_id"] or event_id,
        causation_id=texts["causation_id"],
        context=context,
        data=data,  # type: ignore[arg-type]  # checked above
    )
