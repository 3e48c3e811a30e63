"""The in-app inbox: a notification item stored for one recipient, read later by the app.

The item is written through `ChannelContext.inbox` (the store implements `InboxWriter`). It carries
the delivery id, which the store keeps unique, so a retried or replayed delivery never creates a
second item: the writer returns the existing item's id instead.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from switchboard import templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import (
    check_path,
    check_template,
    lookup,
    render_field,
    template_failure,
)

DEFAULT_TITLE = "{{ type }}"
TITLE_LIMIT = 200
BODY_LIMIT = 4000


@runtime_checkable
class InboxWriter(Protocol):
    async def add_inbox_item(self, tenant_id: str, recipient: str, item: dict[str, Any]) -> str:
        """Store the item for the recipient and return its id; the same delivery_id gives the
        same item (and id) back."""
        ...


class InboxChannel:
    kind = "inbox"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems = check_path(config, "recipient", "recipient_path")
        if config.get("recipient") not in (None, "") and not isinstance(config["recipient"], str):
            problems.append("config.recipient: must be a string (a user id)")
        for field in ("title_template", "body_template", "link_template"):
            problems += check_template(config, field)
        return problems

    def _recipient(self, config: dict[str, Any], event: dict[str, Any]) -> str | None:
        if config.get("recipient_path"):
            value = lookup(event, config["recipient_path"])
        else:
            value = config.get("recipient")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return (value.strip() or None) if isinstance(value, str) else None

    def _texts(self, config: dict[str, Any], event: dict[str, Any]) -> tuple[str, str, str]:
        """Title, body and link; raises TemplateProblem."""
        return (
            render_field(config, "title_template", event, default=DEFAULT_TITLE),
            render_field(config, "body_template", event, default=""),
            render_field(config, "link_template", event, default=""),
        )

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        config = destination.config
        recipient = self._recipient(config, out.event)
        if recipient is None:
            where = config.get("recipient_path") or "config.recipient"
            return SendResult(False, error="other", message=f"no recipient at {where}")
        try:
            title, body, link = await self.ctx.renderer.run(self._texts, config, out.event)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        item = {
            "delivery_id": out.delivery_id,
            "event_id": out.event.get("id"),
            "type": out.event.get("type"),
            "title": title.strip()[:TITLE_LIMIT],
            "body": body.strip()[:BODY_LIMIT],
            "link": link.strip() or None,
        }
        writer = self.ctx.inbox
        if not isinstance(writer, InboxWriter):
            return SendResult(False, error="other", message="no inbox store is configured")
        try:
            item_id = await writer.add_inbox_item(destination.tenant_id, recipient, item)
        except Exception as exc:  # any store failure is a failed attempt, to be retried
            return SendResult(
                False, error="other", message=f"inbox write failed: {type(exc).__name__}: {exc}"
            )
        # status 200 as well as ok: retry.decide reads success from a 2xx status
        return SendResult(True, status=200, provider_id=str(item_id))
