"""Versioned mappings from a provider's webhook payload to canonical events (pure).

A mapping is a YAML document (shipped ones live in ``mappings/`` at the repository root, and
inside the package once installed)::

    name: stripe
    version: "1"
    timezone: "Z"                 # for provider times without an offset
    rules:
      - when: {type: [payment_intent.succeeded]}      # a switchboard.patterns pattern
        type: billing.payment_received
        id: id                                          # the provider's own id -> event id
        subject: data.object.customer
        time: created                                   # epoch seconds/ms or ISO 8601
        actor: {type: "'webhook'", id: "'stripe'"}
        data: {paymentIntentId: data.object.id, amount: data.object.amount}
    dedup:                                              # business keys, see sources/dedup.py
      - {type: lead.created, keys: {phone: phone, email: email}, window: 24h}

Every value under ``id``, ``subject``, ``time``, ``actor``, ``data``, ``context`` and ``each`` is a
JMESPath expression over the payload (``'text'`` is a literal). Each rule whose ``when`` matches
produces one event (or one per element of ``each``); fields that evaluate to null are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
import yaml
from jmespath.parser import ParsedResult

from switchboard.patterns import Pattern, PatternError, compile_pattern, match
from switchboard.resources import shipped
from switchboard.sources.functions import OPTIONS, normalize_phone, normalize_time, parse_offset

__all__ = [
    "DedupSpec",
    "LeadSpec",
    "MapResult",
    "Mapping",
    "MappingError",
    "MappingLibrary",
    "Rule",
    "apply_mapping",
    "load_mapping_dir",
    "normalize_phone",
    "normalize_time",
    "parse_duration",
    "parse_mapping",
    "shipped_dir",
]

_RULE_KEYS = {
    "when",
    "type",
    "id",
    "subject",
    "time",
    "actor",
    "data",
    "context",
    "each",
    "schema_version",
}
_NORMALIZERS = ("phone", "email", "lower", "exact")


class MappingError(ValueError):
    """A mapping document is invalid; ``errors`` holds ``{path, message}`` items."""

    def __init__(self, where: str, errors: list[dict[str, str]]) -> None:
        super().__init__(f"{where}: " + "; ".join(f"{e['path']}: {e['message']}" for e in errors))
        self.where = where
        self.errors = errors


# --- the compiled form ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    source: str
    compiled: ParsedResult

    def __call__(self, doc: Any) -> Any:
        return self.compiled.search(doc, options=OPTIONS)


Template = dict[str, "Expr | Template"]


@dataclass(frozen=True)
class Rule:
    index: int
    type: str
    when: Pattern | None
    id: Expr | None
    subject: Expr | None
    time: Expr | None
    each: Expr | None
    actor: Template
    data: Template
    context: Template
    schema_version: str | None


@dataclass(frozen=True)
class DedupSpec:
    """Business deduplication of one event type: any equal normalized key within `window`."""

    type: str
    keys: tuple[tuple[str, str], ...]  # (data field, normalizer: phone|email|lower|exact)
    window: int  # seconds


@dataclass(frozen=True)
class LeadSpec:
    """Leads from messages: the first event of `type` from a phone number nobody knows becomes
    `created`, later ones `updated` (see sources/leads.py). Fields name data fields of `type`."""

    type: str  # the message event type, e.g. whatsapp.inbound
    phone: str  # data field with the sender's number
    name: str | None = None  # data field with the sender's display name
    message: str | None = None  # data field with the message text
    created: str = "lead.created"
    updated: str = "lead.updated"
    source: str = "whatsapp"  # the lead's `source` field
    international: bool = True  # numbers carry their country code (WhatsApp's always do)


_LEAD_KEYS = {"type", "phone", "name", "message", "created", "updated", "source"}


@dataclass(frozen=True)
class Mapping:
    name: str
    version: str
    rules: tuple[Rule, ...]
    dedup: dict[str, DedupSpec] = field(default_factory=dict)
    description: str = ""
    timezone: str = "Z"
    spec: dict[str, Any] = field(default_factory=dict)  # the validated source document
    leads: LeadSpec | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def parse_duration(value: Any) -> int:
    """Seconds from an int or a string like ``90s``, ``30m``, ``24h``, ``7d``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and len(value) > 1 and value[:-1].isdigit():
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(value[-1])
        if unit:
            return int(value[:-1]) * unit
    raise ValueError(f"a duration like 24h, 30m, 7d or a number of seconds, got {value!r}")


class _Parser:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def expr(self, value: Any, path: str) -> Expr | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, "must be a JMESPath expression (a string)")
            return None
        text = str(value)
        try:
            return Expr(text, jmespath.compile(text))
        except jmespath.exceptions.ParseError as exc:
            self.fail(path, f"not a JMESPath expression: {exc}")
            return None

    def template(self, value: Any, path: str) -> Template:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping of field: expression")
            return {}
        out: Template = {}
        for key, sub in value.items():
            if isinstance(sub, dict):
                out[str(key)] = self.template(sub, f"{path}/{key}")
            elif (compiled := self.expr(sub, f"{path}/{key}")) is not None:
                out[str(key)] = compiled
        return out

    def rule(self, index: int, doc: Any) -> Rule | None:
        path = f"/rules/{index}"
        if not isinstance(doc, dict):
            self.fail(path, "must be a mapping")
            return None
        for key in sorted(set(doc) - _RULE_KEYS):
            self.fail(f"{path}/{key}", f"unknown key (known: {', '.join(sorted(_RULE_KEYS))})")
        etype = doc.get("type")
        if not isinstance(etype, str) or not etype:
            self.fail(f"{path}/type", "the target event type is required")
            etype = ""
        when = None
        if doc.get("when") is not None:
            if not isinstance(doc["when"], dict):
                self.fail(f"{path}/when", "must be a pattern (a mapping)")
            else:
                try:
                    when = compile_pattern(doc["when"])
                except PatternError as exc:
                    self.fail(f"{path}/when", str(exc))
        if "data" not in doc:
            self.fail(f"{path}/data", "is required (use {} for an event without data)")
        version = doc.get("schema_version")
        return Rule(
            index=index,
            type=etype,
            when=when,
            id=self.expr(doc.get("id"), f"{path}/id"),
            subject=self.expr(doc.get("subject"), f"{path}/subject"),
            time=self.expr(doc.get("time"), f"{path}/time"),
            each=self.expr(doc.get("each"), f"{path}/each"),
            actor=self.template(doc.get("actor"), f"{path}/actor"),
            data=self.template(doc.get("data"), f"{path}/data"),
            context=self.template(doc.get("context"), f"{path}/context"),
            schema_version=None if version is None else str(version),
        )

    def dedup(self, index: int, doc: Any) -> DedupSpec | None:
        path = f"/dedup/{index}"
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            self.fail(path, "must be {type, keys: {field: normalizer}, window}")
            return None
        keys = doc.get("keys")
        if not isinstance(keys, dict) or not keys:
            self.fail(f"{path}/keys", "a mapping of data field: phone|email|lower|exact")
            return None
        for name, norm in keys.items():
            if norm not in _NORMALIZERS:
                self.fail(f"{path}/keys/{name}", f"normalizer must be one of {_NORMALIZERS}")
        try:
            window = parse_duration(doc.get("window", "24h"))
        except ValueError as exc:
            self.fail(f"{path}/window", str(exc))
            window = 0
        return DedupSpec(doc["type"], tuple((str(k), str(v)) for k, v in keys.items()), window)

    def leads(self, doc: Any) -> LeadSpec | None:
        if doc is None:
            return None
        if not isinstance(doc, dict):
            self.fail(
                "/leads", "must be {type, phone, name?, message?, created?, updated?, source?}"
            )
            return None
        known = _LEAD_KEYS | {"international"}
        for key in sorted(set(doc) - known):
            self.fail(f"/leads/{key}", f"unknown key (known: {', '.join(sorted(known))})")
        international = doc.get("international", True)
        if not isinstance(international, bool):
            self.fail("/leads/international", "must be true or false")
        values: dict[str, str] = {}
        for key in sorted(_LEAD_KEYS & set(doc)):
            value = doc[key]
            if not isinstance(value, str) or not value or len(value) > 100:
                self.fail(f"/leads/{key}", "must be a non-empty string of at most 100 characters")
            else:
                values[key] = value
        for key in ("type", "phone"):
            if key not in doc:
                self.fail(f"/leads/{key}", "is required")
        if "type" not in values or "phone" not in values:
            return None
        return LeadSpec(**values, international=international is not False)


def parse_mapping(doc: Any, where: str = "mapping") -> Mapping:
    """Validate a mapping document; raises MappingError listing every problem."""
    p = _Parser()
    if not isinstance(doc, dict):
        raise MappingError(where, [{"path": "", "message": "a mapping document is an object"}])
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name:
        p.fail("/name", "is required")
    if not isinstance(version, str | int) or isinstance(version, bool) or str(version) == "":
        p.fail("/version", 'is required (quote it: version: "2")')
    tz = str(doc.get("timezone", "Z"))
    try:
        parse_offset(tz)
    except ValueError as exc:
        p.fail("/timezone", str(exc))
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        p.fail("/rules", "a non-empty list of rules")
        raw_rules = []
    rules = [r for i, d in enumerate(raw_rules) if (r := p.rule(i, d)) is not None]
    raw_dedup = doc.get("dedup") or []
    if not isinstance(raw_dedup, list):
        p.fail("/dedup", "must be a list")
        raw_dedup = []
    dedup = {d.type: d for i, raw in enumerate(raw_dedup) if (d := p.dedup(i, raw)) is not None}
    leads = p.leads(doc.get("leads"))
    if p.errors:
        raise MappingError(where, p.errors)
    return Mapping(
        str(name),
        str(version),
        tuple(rules),
        dedup,
        str(doc.get("description", "")),
        tz,
        doc,
        leads,
    )


def load_mapping_dir(path: Path) -> dict[tuple[str, str], Mapping]:
    """Every ``*.yaml`` under `path`, keyed by (name, version); errors of all files together."""
    found: dict[tuple[str, str], Mapping] = {}
    errors: list[dict[str, str]] = []
    for file in sorted(path.rglob("*.yaml")):
        rel = str(file.relative_to(path))
        try:
            mapping = parse_mapping(yaml.safe_load(file.read_text("utf-8")), rel)
        except MappingError as exc:
            errors.extend(
                {"path": f"{rel}{e['path']}", "message": e["message"]} for e in exc.errors
            )
            continue
        except yaml.YAMLError as exc:
            errors.append({"path": rel, "message": f"not YAML: {exc}"})
            continue
        if (mapping.name, mapping.version) in found:
            errors.append({"path": rel, "message": f"{mapping.ref} is defined twice"})
        found[(mapping.name, mapping.version)] = mapping
    if errors:
        raise MappingError(str(path), errors)
    return found


def shipped_dir() -> Path:
    """The shipped mappings: ``mappings/`` at the repository root, or its copy inside an
    installed package (`switchboard.resources`)."""
    return shipped("mappings")


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.split("."))


class MappingLibrary:
    """The shipped mappings plus extra ones (a tenant's own, from the store)."""

    def __init__(self, mappings: AbcMapping[tuple[str, str], Mapping]) -> None:
        self.mappings = dict(mappings)

    def get(
        self, name: str, version: str | None = None, extra: Iterable[Mapping] = ()
    ) -> Mapping | None:
        """The named version, or the newest one when `version` is None."""
        pool = {**self.mappings, **{(m.name, m.version): m for m in extra}}
        if version is not None:
            return pool.get((name, version))
        versions = [v for (n, v) in pool if n == name]
        return pool[(name, max(versions, key=_version_key))] if versions else None

    def list(self) -> list[Mapping]:
        return [self.mappings[k] for k in sorted(self.mappings)]


# --- applying a mapping ----------------------------------------------------------------------


@dataclass(frozen=True)
class MapResult:
    events: list[dict[str, Any]]  # native envelopes, ready for ingest
    errors: list[dict[str, str]]  # {rule, path, message} of rules that matched but failed
    matched: int  # how many rules matched


def _render(template: Template, doc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, node in template.items():
        value = _render(node, doc) if isinstance(node, dict) else node(doc)
        if value is not None and value != {}:
            out[key] = value
    return out


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else str(value)


def _one(rule: Rule, mapping: Mapping, doc: Any, fallback_id: str) -> dict[str, Any]:
    event: dict[str, Any] = {"type": rule.type, "data": _render(rule.data, doc)}
    event_id = _text(rule.id(doc)) if rule.id else None
    event["id"] = event_id or fallback_id
    if rule.subject and (subject := _text(rule.subject(doc))):
        event["subject"] = subject
    if rule.time:
        event["time"] = normalize_time(rule.time(doc), mapping.timezone)
    if rule.actor and (actor := _render(rule.actor, doc)):
        event["actor"] = {k: _text(v) for k, v in actor.items()}
    event["context"] = {**_render(rule.context, doc), "mapping": mapping.ref}
    if rule.schema_version:
        event["version"] = rule.schema_version
    return event


def apply_mapping(mapping: Mapping, payload: Any, body_digest: str) -> MapResult:
    """The events `payload` produces under `mapping`.

    Every matching rule produces an event (one per element of its ``each``). An event whose id
    expression is null gets an id derived from the body digest, so an identical retry still
    deduplicates; two events of one payload never share an id (the later gets ``:<type>``).
    """
    docs = payload if isinstance(payload, list) else [payload]
    events: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    matched = 0
    seen: set[str] = set()
    for doc_index, doc in enumerate(docs):
        subject_doc = doc if isinstance(doc, dict) else {"value": doc}
        for rule in mapping.rules:
            if rule.when is not None and not match(rule.when, subject_doc):
                continue
            matched += 1
            items: list[Any] = [subject_doc]
            try:
                if rule.each is not None:
                    found = rule.each(subject_doc)
                    items = [
                        {**item, "_root": subject_doc}
                        if isinstance(item, dict)
                        else {"_item": item, "_root": subject_doc}
                        for item in (found if isinstance(found, list) else [])
                    ]
                for item_index, item in enumerate(items):
                    fallback = (
                        "h_"
                        + hashlib.sha256(
                            f"{body_digest}:{doc_index}:{rule.index}:{item_index}".encode()
                        ).hexdigest()[:32]
                    )
                    event = _one(rule, mapping, item, fallback)
                    if event["id"] in seen:
                        event["id"] = f"{event['id']}:{rule.type}"
                    seen.add(event["id"])
                    events.append(event)
            except (ValueError, TypeError, jmespath.exceptions.JMESPathError) as exc:
                errors.append(
                    {
                        "rule": str(rule.index),
                        "path": f"/rules/{rule.index}",
                        "message": f"{rule.type}: {exc}",
                    }
                )
    return MapResult(events, errors, matched)
