"""Helpers every channel shares: reading a field of the event by a dotted path, checking and
rendering the templates in a destination's config, and the result of a failed template.

The channel modules and the registry of kinds both import from here; this module imports no
channel.
"""

from __future__ import annotations

from typing import Any

from switchboard import templates
from switchboard.channels import SendResult

_MISSING = object()


def lookup(event: dict[str, Any], path: str) -> Any:
    """The value at a dotted path in the event (``data.customer.email``), or None.

    A numeric segment indexes a list (``data.phones.0``). A missing key, a wrong type on the way
    or an out-of-range index all give None: a channel reports "no recipient", it never raises.
    """
    current: Any = event
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
        if current is _MISSING:
            return None
    return current


def check_path(config: dict[str, Any], fixed: str, path: str) -> list[str]:
    """Exactly one of `fixed` (a value in the config) or `path` (a dotted path) must be set."""
    has_fixed = config.get(fixed) not in (None, "", [])
    has_path = config.get(path) not in (None, "")
    if has_fixed and has_path:
        return [f"config.{fixed}: give either {fixed} or {path}, not both"]
    if not has_fixed and not has_path:
        return [f"config.{fixed}: required (or config.{path}, a dotted path into the event)"]
    if has_path:
        value = config[path]
        if not isinstance(value, str) or not all(value.split(".")):
            return [f"config.{path}: must be a dotted path such as data.email"]
    return []


def check_template(config: dict[str, Any], field: str, *, required: bool = False) -> list[str]:
    """Problems with a template field: missing when required, not a string, or not compiling."""
    source = config.get(field)
    if source is None:
        return [f"config.{field}: required, a Jinja2 template"] if required else []
    if not isinstance(source, str):
        return [f"config.{field}: must be a string (a Jinja2 template)"]
    try:
        templates.check(source)
    except templates.TemplateProblem as exc:
        return [f"config.{field}: {exc}"]
    return []


def render_field(
    config: dict[str, Any],
    field: str,
    event: dict[str, Any],
    *,
    default: str | None = None,
    html: bool = False,
) -> str:
    """Render the template in config[field] (or `default`); TemplateProblem names the field."""
    source = config.get(field, default)
    if not isinstance(source, str):
        raise templates.TemplateProblem(f"config.{field}: no template")
    try:
        return templates.render(source, event, html=html)
    except templates.TemplateProblem as exc:
        raise templates.TemplateProblem(f"config.{field}: {exc}") from exc
    except Exception as exc:  # `{{ 1 / 0 }}` and the like escape Jinja2's TemplateError
        raise templates.TemplateProblem(
            f"config.{field}: template failed: {type(exc).__name__}: {exc}"
        ) from exc


def render_transform(source: str, event: dict[str, Any]) -> dict[str, Any]:
    """A route transform's output, which must be a JSON object; raises TemplateProblem."""
    try:
        shaped = templates.render_json(source, event)
    except templates.TemplateProblem:
        raise
    except Exception as exc:  # as in render_field
        raise templates.TemplateProblem(f"transform failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(shaped, dict):
        raise templates.TemplateProblem("transform output must be a JSON object")
    return shaped


def template_failure(exc: templates.TemplateProblem) -> SendResult:
    """The result of a delivery whose template failed: `template_error`, never retried (the
    same template fails the same way on the same event)."""
    return SendResult(False, error="template_error", message=f"template_error: {exc}")
