"""Replies to the hub's own messages: an inbound message that names the message it answers (by
the provider's id) is tied to the delivery that sent it, and, when that delivery's destination
tracks replies (`config.tracking.replies`) and the message belonged to a campaign, it also
records `campaign_replied` (engagement.py) for the campaign's recipient.

Only the tenant's own deliveries are looked at: a provider id another tenant sent is no match.
"""

from __future__ import annotations

from typing import Any

from switchboard import engagement
from switchboard.gate import AUTOMATION_ROUTE
from switchboard.patterns import compile_pattern
from switchboard.router import RouteCache
from switchboard.store import EventQuery, Store
from switchboard.store.automations import AutomationStore
from switchboard.store.deliveries import Delivery, DeliveryStore

__all__ = ["REPLY_TYPES", "Replies"]

# event type → data field with the provider id of the message it answers: WhatsApp Cloud's
# `context.id` and the WPP gateway's `quotedMsgId` (whatsapp.message_received), Z-API's
# `referenceMessageId` (whatsapp.inbound)
REPLY_TYPES = {
    "whatsapp.message_received": "in_reply_to",
    "whatsapp.inbound": "in_reply_to",
    "sms.inbound": "in_reply_to",  # none in the payload: the last text we sent (below)
}
# An SMS names nothing it answers: an inbound text answers the newest message the hub sent to
# its sender from the number it was sent to, as the status callbacks (sms.status) recorded it,
# if one was sent within this window.
SMS_REPLY_WINDOW_US = 7 * 86400 * 1_000_000


class Replies:
    def __init__(
        self,
        store: Store,
        deliveries: DeliveryStore,
        automations: AutomationStore,
        routes: RouteCache,
        tenant_id: str,
        now_us: int,
    ) -> None:
        self.store = store
        self.now_us = now_us
        self.deliveries = deliveries
        self.automations = automations
        self.routes = routes
        self.tenant_id = tenant_id

    async def link(self, events: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """Mark each reply's context with the delivery (and automation run) it answers; answer
        (index of the reply, campaign event) for the replies that record one."""
        out: list[tuple[int, dict[str, Any]]] = []
        for index, event in enumerate(events):
            field_name = REPLY_TYPES.get(event["type"])
            data = event.get("data")
            if field_name is None or not isinstance(data, dict):
                continue
            answered = data.get(field_name)
            if event["type"] == "sms.inbound" and not answered:
                answered = await self._last_text_to(event)
            if not isinstance(answered, str) or not answered or len(answered) > 500:
                continue
            delivery = await self.deliveries.by_provider_id(self.tenant_id, answered)
            if delivery is None:
                continue
            event["context"]["in_reply_to_delivery"] = delivery.id
            event["context"]["in_reply_to_destination"] = delivery.destination_id
            automation = None
            if delivery.id.startswith("dlv_"):  # an automation's send step (effect_id)
                found = await self.automations.sender_of_delivery(
                    self.tenant_id, delivery.event_seq, delivery.id
                )
                if found is not None:
                    event["context"]["in_reply_to_run"] = found[0]
                    automation = found[1]
            campaign = await self._campaign(event, delivery, automation)
            if campaign is not None:
                out.append((index, campaign))
        return out

    async def _last_text_to(self, event: dict[str, Any]) -> str | None:
        """The message sid of the newest text the hub sent to this sender from the number it
        wrote to (an sms.status event of the same subject), within SMS_REPLY_WINDOW_US."""
        data = event["data"]
        ours, subject = data.get("to"), event.get("subject")
        if not isinstance(ours, str) or not isinstance(subject, str) or len(ours) > 40:
            return None
        query = EventQuery(
            types=("sms.status",),
            subject=subject,
            pattern=compile_pattern({"data": {"from": [ours]}}),
            from_us=self.now_us - SMS_REPLY_WINDOW_US,
            limit=1,
        )
        found = await self.store.list_events(self.tenant_id, query)
        sid = found[0].data.get("message_sid") if found else None
        return sid if isinstance(sid, str) else None

    async def _campaign(
        self, reply: dict[str, Any], delivery: Delivery, automation: str | None
    ) -> dict[str, Any] | None:
        destination = await self.deliveries.get_destination(self.tenant_id, delivery.destination_id)
        if destination is None:
            return None
        tracking, problems = engagement.parse_tracking(
            destination.config.get("tracking"), email=False
        )
        if tracking is None or problems or not tracking.replies:
            return None
        sent = await self.deliveries.event_of(self.tenant_id, delivery.event_seq)
        if sent is None:
            return None
        route_name = None
        if delivery.route_id and delivery.route_id.startswith(AUTOMATION_ROUTE):
            automation = automation or delivery.route_id.split(":")[1]
        elif delivery.route_id:
            for route in await self.routes.routes(self.tenant_id):
                if route.id == delivery.route_id:
                    route_name = route.name
        campaign = engagement.campaign_of(sent.to_json(), tracking, automation, route_name)
        if campaign is None:
            return None
        return engagement.reply_event(
            reply,
            delivery_id=delivery.id,
            campaign_id=campaign,
            replied_type=tracking.replied_type,
            channel=destination.kind,
            recipient=sent.subject or None,
        )
