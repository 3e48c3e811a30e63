"""Slack: a message POSTed to an incoming-webhook URL.

The body is ``{"text": …}`` from ``config.template``, plus ``blocks`` when
``config.blocks_template`` (Jinja2 producing a JSON list of Block Kit blocks) is set. A route
transform, when present, produces the whole JSON body instead. Slack answers 200 ``ok``, and 429
with Retry-After when throttled.
"""

from __future__ import annotations

from typing import Any

import orjson

from switchboard import templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import (
    check_template,
    render_field,
    render_transform,
    template_failure,
)
from switchboard.channels.webhook import check_url, post

DEFAULT_TEMPLATE = "*{{ type }}* {{ subject or '' }}\n```{{ data|tojson }}```"
TEXT_LIMIT = 40_000  # Slack truncates longer texts itself; we cut first so the log shows it


class SlackChannel:
    kind = "slack"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        return (
            check_url(config.get("url"))
            + check_template(config, "template")
            + check_template(config, "blocks_template")
        )

    def payload(self, config: dict[str, Any], out: Outbound) -> dict[str, Any]:
        """The JSON body for one message; raises TemplateProblem."""
        if out.body_template:
            return render_transform(out.body_template, out.event)
        text = render_field(config, "template", out.event, default=DEFAULT_TEMPLATE)
        body: dict[str, Any] = {"text": text[:TEXT_LIMIT]}
        if config.get("blocks_template"):
            blocks_text = render_field(config, "blocks_template", out.event)
            try:
                blocks = orjson.loads(blocks_text)
            except orjson.JSONDecodeError as exc:
                raise templates.TemplateProblem(
                    f"config.blocks_template: output is not JSON: {exc}"
                ) from exc
            if isinstance(blocks, dict) and isinstance(blocks.get("blocks"), list):
                blocks = blocks["blocks"]
            if not isinstance(blocks, list):
                raise templates.TemplateProblem(
                    "config.blocks_template: output must be a JSON list of blocks"
                )
            body["blocks"] = blocks
        return body

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        try:
            body = await self.ctx.renderer.run(self.payload, destination.config, out)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        headers = {"content-type": "application/json", "user-agent": "Switchboard/0.1"}
        return await post(
            self.ctx.session,
            destination.config["url"],
            orjson.dumps(body),
            headers,
            destination.timeout,
        )
