"""Message templates as code: one named, versioned document (`templates/NAME.yaml`) with variants
per channel and locale, the locale fallback chain, and the mapping of a variant onto a
destination's channel config. Rendering is the Jinja2 sandbox of ``templates.py``, under its
guards. Pure: the store keeps versions (``store/people.py``), the worker applies them (``gate.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from switchboard import templates

NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,62}(?!\n)$")
LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}(?!\n)$")
MAX_VARIANTS = 50
MAX_SOURCE = 20_000  # characters of one template field
MAX_BUTTONS = 3

# channel -> variant field -> the channel config key it fills
CHANNEL_FIELDS: dict[str, dict[str, str]] = {
    "email": {"subject": "subject_template", "html": "html_template", "text": "text_template"},
    "whatsapp": {"text": "template", "buttons": "buttons"},
    "slack": {"text": "template", "blocks": "blocks_template"},
    "discord": {"text": "template"},
    "sms": {"text": "template"},
    "inbox": {"title": "title_template", "body": "body_template", "link": "link_template"},
    # a webhook's body is not destination config: it takes the place of the route's transform
    "webhook": {"body": "transform"},
}
HTML_FIELDS = {"html"}  # rendered with autoescape
JSON_FIELDS = {("webhook", "body")}  # must render to JSON, as a route transform


class MessageError(ValueError):
    """A template document is invalid; `problems` are (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


@dataclass(frozen=True)
class Variant:
    channel: str
    locale: str
    fields: tuple[tuple[str, Any], ...]  # field -> source (buttons: a list of {id, text})


@dataclass(frozen=True)
class MessageTemplate:
    name: str
    description: str
    default_locale: str
    variants: tuple[Variant, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "default_locale": self.default_locale,
            "variants": [
                {"channel": v.channel, "locale": v.locale, **dict(v.fields)} for v in self.variants
            ],
        }


def _compile_problem(source: str) -> str | None:
    try:
        templates.check(source)
    except templates.TemplateProblem as exc:
        line = getattr(exc.__cause__, "lineno", None)
        return f"line {line}: {exc}" if line else str(exc)
    return None


def _source(value: Any, at: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, str) or len(value) > MAX_SOURCE:
        problems.append((at, f"a template string of at most {MAX_SOURCE} characters"))
    elif (problem := _compile_problem(value)) is not None:
        problems.append((at, problem))


def parse_template(doc: Any, name: str | None = None) -> MessageTemplate:
    """Check a template document; every problem is reported at once with its path."""
    if not isinstance(doc, Mapping):
        raise MessageError([("/", "a template must be a mapping")])
    problems: list[tuple[str, str]] = []
    for key in sorted(set(doc) - {"name", "description", "default_locale", "variants"}):
        problems.append((f"/{key}", "unknown field"))
    doc_name = doc.get("name", name)
    if not isinstance(doc_name, str) or not NAME_RE.match(doc_name):
        problems.append(("/name", "a lowercase name such as 'client_welcome'"))
    elif name is not None and doc_name != name:
        problems.append(("/name", f"must be {name!r}, the name in the URL"))
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.append(("/description", "a string"))
    raw = doc.get("variants")
    variants: list[Variant] = []
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_VARIANTS:
        problems.append(("/variants", f"a list of 1 to {MAX_VARIANTS} variants"))
        raw = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw):
        at = f"/variants/{i}"
        if not isinstance(item, Mapping):
            problems.append((at, "a mapping with channel, locale and the channel's fields"))
            continue
        channel, locale = item.get("channel"), item.get("locale")
        if not isinstance(channel, str) or channel not in CHANNEL_FIELDS:
            problems.append((f"{at}/channel", f"one of {', '.join(CHANNEL_FIELDS)}"))
            continue
        if not isinstance(locale, str) or not LOCALE_RE.match(locale):
            problems.append((f"{at}/locale", "a language tag such as pt-BR or en"))
            continue
        if (channel, locale.lower()) in seen:
            problems.append((at, f"a second {channel} variant for {locale}"))
        seen.add((channel, locale.lower()))
        allowed = CHANNEL_FIELDS[channel]
        fields: list[tuple[str, Any]] = []
        for key in sorted(set(item) - {"channel", "locale"}):
            if key not in allowed:
                problems.append((f"{at}/{key}", f"not a {channel} field ({', '.join(allowed)})"))
            elif key == "buttons":
                _buttons(item[key], f"{at}/buttons", problems)
                fields.append((key, item[key]))
            else:
                _source(item[key], f"{at}/{key}", problems)
                fields.append((key, item[key]))
        if not fields:
            problems.append((at, f"at least one of {', '.join(allowed)}"))
        variants.append(Variant(channel, locale, tuple(fields)))
    default = doc.get("default_locale", variants[0].locale if variants else "en")
    if not isinstance(default, str) or not LOCALE_RE.match(default):
        problems.append(("/default_locale", "a language tag such as pt-BR"))
    if problems:
        raise MessageError(problems)
    return MessageTemplate(str(doc_name), str(description), str(default), tuple(variants))


def _buttons(value: Any, at: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BUTTONS:
        problems.append((at, f"a list of 1 to {MAX_BUTTONS} {{id, text}} buttons"))
        return
    for j, button in enumerate(value):
        if not isinstance(button, Mapping) or set(button) != {"id", "text"}:
            problems.append((f"{at}/{j}", "an object with id and text"))
            continue
        for key in ("id", "text"):
            _source(button[key], f"{at}/{j}/{key}", problems)


def locale_chain(wanted: str | None, default: str) -> list[str]:
    """The locales to try, most wanted first: `pt-BR` → `pt` → the template's default."""
    chain: list[str] = []
    for loc in (wanted, wanted.split("-")[0] if wanted else None, default):
        if loc and loc.lower() not in chain:
            chain.append(loc.lower())
    return chain


def pick(template: MessageTemplate, channel: str, wanted: str | None) -> Variant | None:
    """The variant for `channel` in the first locale of the chain that has one (a language
    alone matches any of its regions: `pt` finds `pt-BR`); else the channel's first variant."""
    mine = [v for v in template.variants if v.channel == channel]
    for loc in locale_chain(wanted, template.default_locale):
        for v in mine:
            if v.locale.lower() == loc:
                return v
        for v in mine:
            if "-" not in loc and v.locale.lower().split("-")[0] == loc:
                return v
    return mine[0] if mine else None


def config_for(variant: Variant, config: Mapping[str, Any]) -> dict[str, Any]:
    """The destination's config with the variant's fields in place of its own templates (a
    webhook variant changes no config: see `body_of`)."""
    if variant.channel == "webhook":
        return dict(config)
    keys = CHANNEL_FIELDS[variant.channel]
    out = {k: v for k, v in config.items() if k not in keys.values()}
    for field, source in variant.fields:
        out[keys[field]] = source
    return out


def body_of(variant: Variant) -> str | None:
    """A webhook variant's body template (JSON out), used instead of the route's transform."""
    if variant.channel != "webhook":
        return None
    return next((str(source) for field, source in variant.fields if field == "body"), None)


def render_variant(variant: Variant, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every field of a variant rendered with `event` in scope, and the errors (by field)."""
    rendered: dict[str, Any] = {}
    errors: list[str] = []
    for field, source in variant.fields:
        try:
            if field == "buttons":
                rendered[field] = [
                    {k: templates.render(b[k], event) for k in ("id", "text")} for b in source
                ]
            elif (variant.channel, field) in JSON_FIELDS:
                rendered[field] = templates.render_json(source, event)
            else:
                rendered[field] = templates.render(source, event, html=field in HTML_FIELDS)
        except templates.TemplateProblem as exc:
            errors.append(f"{field}: {exc}")
    return rendered, errors


def preview(
    template: MessageTemplate, event: dict[str, Any], locale: str | None
) -> list[dict[str, Any]]:
    """Each channel's chosen variant for `locale`, rendered (or its errors)."""
    out = []
    for channel in dict.fromkeys(v.channel for v in template.variants):
        variant = pick(template, channel, locale)
        assert variant is not None
        rendered, errors = render_variant(variant, event)
        out.append(
            {"channel": channel, "locale": variant.locale, "rendered": rendered, "errors": errors}
        )
    return out
