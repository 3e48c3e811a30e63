"""Message templates: Jinja2 in a sandbox, with the event in scope.

Names available in a template: ``event`` (the public JSON of the event), ``data`` (its payload),
``subject``, ``type``, ``time``. Templates are compiled once and cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateProblem(ValueError):
    """A template failed to compile or render; the message says where."""


def _tojson(value: Any) -> str:
    return orjson.dumps(value).decode()


def _env(strict: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined if strict else Undefined, autoescape=False
    )
    env.filters["tojson"] = _tojson
    return env


_LENIENT = _env(False)
_HTML = ImmutableSandboxedEnvironment(autoescape=True)
_HTML.filters["tojson"] = _tojson


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool) -> Any:
    try:
        return (_HTML if html else _LENIENT).from_string(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not compile: {exc}") from exc


def check(source: str) -> None:
    """Raise TemplateProblem if the template does not compile."""
    _compile(source, False)


def scope(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": event,
        "data": event.get("data", {}),
        "subject": event.get("subject"),
        "type": event.get("type"),
        "time": event.get("time"),
    }


def render(source: str, event: dict[str, Any], *, html: bool = False) -> str:
    """Render a template with the event in scope (HTML templates autoescape)."""
    try:
        return str(_compile(source, html).render(scope(event)))
    except TemplateProblem:
        raise
    except Exception as exc:  # a template is user code: any error it raises is its own
        raise TemplateProblem(f"template failed: {type(exc).__name__}: {exc}") from exc


def render_json(source: str, event: dict[str, Any]) -> Any:
    """Render a transform template whose output must be JSON (a reshaped webhook body)."""
    text = render(source, event)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TemplateProblem(f"transform output is not JSON: {exc}") from exc
