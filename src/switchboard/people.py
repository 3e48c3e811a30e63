"""People: what a catalog type says about the person an event is about (profile fields, consent
it records, whether it is critical), and the pure decisions about sending to that person
(consent state, preferences). The store side is ``store/people.py``; the API ``api/recipients.py``.

The recipient of an event is its envelope ``subject``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROFILE_FIELDS = ("email", "phone", "locale", "timezone", "name")  # columns of a recipient
CONSENT_FIELDS = ("terms_version", "legal_basis", "origin", "ip", "user_agent")
ACTIONS = ("grant", "withdraw")
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}(?!\n)$")
RECIPIENT_ID_MAX = 200  # characters of a recipient id (an event subject)
_PATH = re.compile(r"^(subject|(data|context)(\.[^\W\d]\w*)+)(?!\n)$")
MAX_PROFILE_KEYS = 20
MAX_VALUE = 500  # characters kept of one profile or consent value taken from an event
_PEOPLE_KEYS = {"profile", "consent", "critical", "category", "preferences"}
_CHANNEL_RE = re.compile(r"^(\*|[a-z][a-z0-9_]{0,39})(?!\n)$")  # a destination kind, or '*'
MAX_DEFAULTS = 20  # channels of a type's default preferences
_TRUE = {True, "true", "sim", "yes", "1"}  # 1 == True in a set
_FALSE = {False, "false", "nao", "não", "no", "0"}


@dataclass(frozen=True)
class ConsentRule:
    """How a type's events feed the consent ledger: a fixed `action`, or the truth of `field`."""

    purpose: str
    action: str | None  # grant | withdraw; None: read `field`
    field: str | None  # a path whose boolean value grants (true) or withdraws (false)
    values: tuple[tuple[str, str], ...] = ()  # CONSENT_FIELDS name -> path


@dataclass(frozen=True)
class PeopleSpec:
    """The people-related keys of a catalog type."""

    profile: tuple[tuple[str, str], ...] = ()  # recipient field (or attribute) -> path
    consent: ConsentRule | None = None
    critical: bool = False  # bypasses opt-outs (password resets, security notices)
    category: str | None = None  # a topic preferences can name
    # the type's default preference per channel ('*' for any), when the recipient has none
    defaults: tuple[tuple[str, bool], ...] = ()

    @property
    def feeds(self) -> bool:
        """Accepted events of this type write to the people tables."""
        return bool(self.profile) or self.consent is not None


@dataclass(frozen=True)
class ConsentRecord:
    purpose: str
    action: str
    at_us: int
    values: dict[str, str | None] = field(default_factory=dict)  # CONSENT_FIELDS


def _path_problem(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 200 and _PATH.match(value):
        return None
    return f"{value!r} is not a path such as 'data.email', 'context.locale' or 'subject'"


def parse_people(doc: Mapping[str, Any], problems: list[str]) -> PeopleSpec | None:
    """The people keys of a type document (None when it has none); problems name the field."""
    if not _PEOPLE_KEYS & set(doc):
        return None
    profile: list[tuple[str, str]] = []
    raw = doc.get("profile")
    if raw is not None:
        if not isinstance(raw, Mapping) or len(raw) > MAX_PROFILE_KEYS:
            problems.append(f"profile: a mapping of at most {MAX_PROFILE_KEYS} fields to paths")
        else:
            for key, path in raw.items():
                if not isinstance(key, str) or not PURPOSE_RE.match(key):
                    problems.append(f"profile.{key}: a lowercase field name")
                elif (p := _path_problem(path)) is not None:
                    problems.append(f"profile.{key}: {p}")
                else:
                    profile.append((key, path))
    consent = None
    raw = doc.get("consent")
    if raw is not None:
        consent = _parse_consent(raw, problems)
    critical = doc.get("critical", False)
    if not isinstance(critical, bool):
        problems.append("critical: true or false")
        critical = False
    category = doc.get("category")
    if category is not None and (not isinstance(category, str) or not PURPOSE_RE.match(category)):
        problems.append("category: a lowercase word such as 'billing'")
        category = None
    defaults: list[tuple[str, bool]] = []
    raw = doc.get("preferences")
    if raw is not None:
        if not isinstance(raw, Mapping) or not 0 < len(raw) <= MAX_DEFAULTS:
            problems.append(
                f"preferences: a mapping of 1 to {MAX_DEFAULTS} channels (email, '*', …) "
                "to true or false"
            )
        else:
            for channel, enabled in raw.items():
                if not isinstance(channel, str) or not _CHANNEL_RE.match(channel):
                    problems.append(f"preferences.{channel}: a channel kind such as email, or '*'")
                elif not isinstance(enabled, bool):
                    problems.append(f"preferences.{channel}: true or false")
                else:
                    defaults.append((channel, enabled))
    return PeopleSpec(tuple(profile), consent, critical, category, tuple(sorted(defaults)))


def _parse_consent(raw: Any, problems: list[str]) -> ConsentRule | None:
    if not isinstance(raw, Mapping):
        problems.append("consent: a mapping with purpose and action (or field)")
        return None
    unknown = set(raw) - {"purpose", "action", "field", *CONSENT_FIELDS}
    for key in sorted(unknown, key=str):
        problems.append(f"consent.{key}: unknown field")
    purpose = raw.get("purpose")
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        problems.append("consent.purpose: a lowercase word such as 'marketing'")
    action, field_ = raw.get("action"), raw.get("field")
    if (action is None) == (field_ is None):
        problems.append("consent: exactly one of action (grant | withdraw) or field (a path)")
    if action is not None and action not in ACTIONS:
        problems.append("consent.action: grant or withdraw")
    if field_ is not None and (p := _path_problem(field_)) is not None:
        problems.append(f"consent.field: {p}")
    values = []
    for name in CONSENT_FIELDS:
        if name in raw:
            if (p := _path_problem(raw[name])) is not None:
                problems.append(f"consent.{name}: {p}")
            else:
                values.append((name, raw[name]))
    if unknown or not isinstance(purpose, str):
        return None
    return ConsentRule(purpose, action, field_, tuple(values))


def people_to_dict(spec: PeopleSpec | None) -> dict[str, Any]:
    """The keys `parse_people` reads back (empty when there are none)."""
    if spec is None:
        return {}
    out: dict[str, Any] = {}
    if spec.profile:
        out["profile"] = dict(spec.profile)
    if spec.consent is not None:
        c = spec.consent
        out["consent"] = {
            "purpose": c.purpose,
            **({"action": c.action} if c.action else {"field": c.field}),
            **dict(c.values),
        }
    if spec.critical:
        out["critical"] = True
    if spec.category:
        out["category"] = spec.category
    if spec.defaults:
        out["preferences"] = dict(spec.defaults)
    return out


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:MAX_VALUE]


def profile_of(spec: PeopleSpec, doc: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(contact fields, attributes) an event sets; absent values set nothing."""
    fields: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    for key, path in spec.profile:
        value = _text(lookup(doc, path))
        if value is None:
            continue
        if key in PROFILE_FIELDS:
            fields[key] = value
        else:
            attributes[key] = value
    return fields, attributes


def consent_of(spec: PeopleSpec, doc: Mapping[str, Any], time_us: int) -> ConsentRecord | None:
    """The ledger record an event makes, if any (a `field` that is absent makes none)."""
    rule = spec.consent
    if rule is None:
        return None
    action = rule.action
    if action is None:
        assert rule.field is not None
        value = lookup(doc, rule.field)
        value = value.strip().lower() if isinstance(value, str) else value
        if value in _TRUE:
            action = "grant"
        elif value in _FALSE:
            action = "withdraw"
        else:
            return None
    values = {name: _text(lookup(doc, path)) for name, path in rule.values}
    return ConsentRecord(rule.purpose, action, time_us, values)


def recipient_problem(recipient_id: Any) -> str | None:
    if isinstance(recipient_id, str) and 0 < len(recipient_id) <= RECIPIENT_ID_MAX:
        return None
    return f"a recipient id is a string of 1 to {RECIPIENT_ID_MAX} characters"


@dataclass(frozen=True)
class Preference:
    topic: str  # an event type, a glob of types, or a catalog category
    channel: str  # a destination kind (email, whatsapp, inbox, …) or '*'
    enabled: bool


def topic_matches(topic: str, event_type: str, category: str | None) -> bool:
    return topic in (event_type, category) or fnmatch.fnmatchcase(event_type, topic)


def preference_allows(
    prefs: Iterable[Preference], event_type: str, channel: str, spec: PeopleSpec | None
) -> bool:
    """Whether a recipient's preferences let an event of `event_type` out on `channel`.

    The most specific matching preference decides: an exact channel beats '*', an exact type
    beats a category, a category beats a glob (longer globs beat shorter ones). No matching
    preference: the type's catalog default for the channel (else for '*'), else allowed. A
    critical type is always allowed."""
    if spec is not None and spec.critical:
        return True
    category = spec.category if spec is not None else None
    best: tuple[int, int, int] | None = None
    allowed = default_allows(spec, channel)
    for p in prefs:
        if p.channel not in (channel, "*") or not topic_matches(p.topic, event_type, category):
            continue
        kind = 2 if p.topic == event_type else 1 if p.topic == category else 0
        rank = (int(p.channel == channel), kind, len(p.topic))
        if best is None or rank > best:
            best, allowed = rank, p.enabled
    return allowed


def default_allows(spec: PeopleSpec | None, channel: str) -> bool:
    """The catalog's default for a type on a channel: its exact channel, else '*', else on."""
    defaults = dict(spec.defaults) if spec is not None else {}
    return defaults.get(channel, defaults.get("*", True))


@dataclass(frozen=True)
class QuietHours:
    """A daily window (local time of the recipient, else `timezone`) when non-critical messages
    wait; `start` > `end` spans midnight (21:00–08:00)."""

    start: int  # minutes after local midnight
    end: int
    timezone: str


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?!\n)$")


def parse_quiet_hours(raw: Any) -> QuietHours:
    """From a route's `quiet_hours: {start: "21:00", end: "08:00", timezone: "…"}`."""
    import zoneinfo

    if not isinstance(raw, Mapping) or set(raw) - {"start", "end", "timezone"}:
        raise ValueError("an object with start, end (HH:MM) and timezone")
    minutes = []
    for key in ("start", "end"):
        m = _HHMM.match(str(raw.get(key, "")))
        if m is None:
            raise ValueError(f"{key}: a local time such as 21:00")
        minutes.append(int(m.group(1)) * 60 + int(m.group(2)))
    tz = raw.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise ValueError("timezone: an IANA time zone such as America/Sao_Paulo") from None
    if minutes[0] == minutes[1]:
        raise ValueError("start and end must differ")
    return QuietHours(minutes[0], minutes[1], str(tz))


def quiet_until(quiet: QuietHours, now: float, timezone: str | None) -> float | None:
    """When the window that `now` (epoch seconds) falls in ends, or None outside it."""
    import zoneinfo
    from datetime import UTC, datetime, timedelta

    try:
        tz = zoneinfo.ZoneInfo(timezone or quiet.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        tz = zoneinfo.ZoneInfo(quiet.timezone)
    local = datetime.fromtimestamp(now, UTC).astimezone(tz)
    minute = local.hour * 60 + local.minute
    start, end = quiet.start, quiet.end
    inside = start <= minute < end if start < end else minute >= start or minute < end
    if not inside:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    wake = datetime(day.year, day.month, day.day, end // 60, end % 60, tzinfo=tz)
    return wake.timestamp()
