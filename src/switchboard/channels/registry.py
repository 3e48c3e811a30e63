"""The channel kinds by name, config checks usable without a session, and helpers they share.

Channel modules import `lookup`, `check_template` and `render_field` from here; this module imports
the channel modules only inside functions, so either side can be imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from switchboard import masking, templates
from switchboard.channels import Channel, ChannelContext, SendResult

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp

    from switchboard.egress import Policy

__all__ = [
    "KINDS",
    "build_channels",
    "check_destination_config",
    "check_destination_egress",
    "check_path",
    "check_template",
    "lookup",
    "public_config",
    "render_field",
    "render_transform",
    "template_failure",
]

KINDS = ("webhook", "slack", "discord", "email", "whatsapp", "inbox")

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


def _classes() -> dict[str, Callable[[ChannelContext], Channel]]:
    # Imported here, not at the top: the channel modules import helpers from this module.
    from switchboard.channels.discord import DiscordChannel
    from switchboard.channels.email import EmailChannel
    from switchboard.channels.inbox import InboxChannel
    from switchboard.channels.slack import SlackChannel
    from switchboard.channels.webhook import WebhookChannel
    from switchboard.channels.whatsapp import WhatsAppChannel

    return {
        "webhook": WebhookChannel,
        "slack": SlackChannel,
        "discord": DiscordChannel,
        "email": EmailChannel,
        "whatsapp": WhatsAppChannel,
        "inbox": InboxChannel,
    }


def build_channels(ctx: ChannelContext) -> dict[str, Channel]:
    """One instance of every channel kind, sharing the context's session and inbox."""
    return {kind: make(ctx) for kind, make in _classes().items()}


# Config checks never touch the session or the inbox, so a context without them is enough; this
# lets the API and the CLI validate a destination before any session exists.
_NO_SESSION = ChannelContext(session=cast("aiohttp.ClientSession", None))


def check_destination_config(kind: str, config: dict[str, Any]) -> list[str]:
    """Problems with a destination's config, each naming the field (empty: fine)."""
    make = _classes().get(kind)
    if make is None:
        return [f"kind: must be one of {', '.join(KINDS)}, got {kind!r}"]
    if not isinstance(config, dict):
        return ["config: must be an object"]
    return make(_NO_SESSION).check_config(config)


# The config fields a channel connects to: URLs (webhook, slack, discord `url`; whatsapp
# `base_url`) and the SMTP `host`.
_URL_FIELDS = ("url", "base_url")


def check_destination_egress(config: dict[str, Any], policy: Policy) -> list[str]:
    """A destination naming a denied literal address or host name, refused when it is saved;
    a name that resolves into a denied range is refused when the attempt connects."""
    problems = []
    for field in _URL_FIELDS:
        if isinstance(config.get(field), str):
            why = policy.url_problem(config[field])
            if why:
                problems.append(f"config.{field}: {why}")
    if isinstance(config.get("host"), str) and config["host"]:
        why = policy.host_problem(config["host"])
        if why:
            problems.append(f"config.host: {why}")
    return problems


def public_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as API answers show it: credentials in it masked (write-only). The custom
    `headers` of a webhook are all taken for credentials, since their names say nothing sure."""
    shown = dict(config)
    for field in _URL_FIELDS:
        if isinstance(shown.get(field), str):
            # a Slack or Discord webhook URL ends in its token
            last = kind in ("slack", "discord") and field == "url"
            shown[field] = masking.mask_url(shown[field], last_segment=last)
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = {
            k: masking.mask_value(v) if isinstance(v, str) else v
            for k, v in shown["headers"].items()
        }
    if isinstance(shown.get("client_token"), str):
        shown["client_token"] = masking.mask_value(shown["client_token"])
    return shown
