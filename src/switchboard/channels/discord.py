"""Discord: a message POSTed to a channel webhook URL.

The body is ``{"content": …}`` (at most 2000 characters, cut with an ellipsis), with the optional
``username`` and ``avatar_url``; mentions are disabled so event data can never ping ``@everyone``.
A route transform, when present, produces the whole JSON body instead. Discord answers 204, and 429
with a Retry-After header and a JSON ``retry_after`` in seconds.
"""

from __future__ import annotations

from typing import Any

import orjson
from msgspec.structs import replace

from switchboard import templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import (
    check_template,
    render_field,
    render_transform,
    template_failure,
)
from switchboard.channels.webhook import check_url, post

DEFAULT_TEMPLATE = "**{{ type }}** {{ subject or '' }}\n```json\n{{ data|tojson }}\n```"
CONTENT_LIMIT = 2000


def cut(text: str, limit: int = CONTENT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after_from_body(response: str) -> str | None:
    """Discord's JSON ``retry_after`` (seconds, maybe fractional) as a Retry-After value."""
    try:
        parsed = orjson.loads(response)
    except orjson.JSONDecodeError:
        return None
    value = parsed.get("retry_after") if isinstance(parsed, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return f"{value:g}"
    return None


class DiscordChannel:
    kind = "discord"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems = check_url(config.get("url")) + check_template(config, "template")
        for field in ("username", "avatar_url"):
            if field in config and not isinstance(config[field], str):
                problems.append(f"config.{field}: must be a string")
        if isinstance(config.get("username"), str) and not 1 <= len(config["username"]) <= 80:
            problems.append("config.username: must be 1 to 80 characters")
        return problems

    def payload(self, config: dict[str, Any], out: Outbound) -> dict[str, Any]:
        """The JSON body for one message; raises TemplateProblem."""
        if out.body_template:
            return render_transform(out.body_template, out.event)
        text = render_field(config, "template", out.event, default=DEFAULT_TEMPLATE)
        body: dict[str, Any] = {"content": cut(text), "allowed_mentions": {"parse": []}}
        for field in ("username", "avatar_url"):
            if config.get(field):
                body[field] = config[field]
        return body

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        try:
            body = await self.ctx.renderer.run(self.payload, destination.config, out)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        headers = {"content-type": "application/json", "user-agent": "Switchboard/0.1"}
        result = await post(
            self.ctx.session,
            destination.config["url"],
            orjson.dumps(body),
            headers,
            destination.timeout,
        )
        if result.status == 429 and result.retry_after is None:
            result = replace(result, retry_after=retry_after_from_body(result.response))
        return result
