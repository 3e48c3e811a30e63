"""The recipient layer, asked by the worker right before a send: may this delivery go out to
the event's subject (consent per purpose the route requires, preferences per topic × channel),
and where to (the profile's contact point, for routes with `to: recipient`)? A "no" is a reason
(`consent:<purpose>`, `preference`, `no_address`); the worker records the delivery `suppressed`
with it, never sends it and never drops it silently.

Asked at send time, not only at routing time, so that a withdrawal or an opt-out recorded while
a delivery waited (in its queue, or for a retry) stops it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from switchboard import engagement, messages, unsubscribe
from switchboard.channels import Destination
from switchboard.config import Settings
from switchboard.envelope import Event
from switchboard.people import preference_allows, quiet_until
from switchboard.registry import Registry
from switchboard.router import Route
from switchboard.store import Store
from switchboard.store.automations import AutomationStore
from switchboard.store.people import PeopleStore

AUTOMATION_ROUTE = "automation:"  # route ids of automation send steps (automation_engine.py)
_TEMPLATE_TTL = (
    5.0  # seconds a template version is trusted; a new version reaches workers within it
)
# destination kind -> (profile field, config key of a fixed address, config key of a path)
ADDRESSING = {
    "email": ("email", "to", "to_path"),
    "whatsapp": ("phone", "to", "to_path"),
    "sms": ("phone", "to", "to_path"),
    "inbox": ("id", "recipient", "recipient_path"),
}


@dataclass(frozen=True)
class Cleared:
    """What to send: the destination (its address pointed at the profile for `to: recipient`)
    and what the event's JSON gains (`recipient`, `unsubscribe_url`)."""

    destination: Destination
    extra: dict[str, Any]
    headers: dict[str, str]
    body_template: str | None = None  # a template's webhook body, in place of the transform


@dataclass(frozen=True)
class Wait:
    """Quiet hours: the delivery goes back to its queue, due at `until` (epoch seconds)."""

    until: float


class Gate:
    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.people = PeopleStore(store)
        self.automations = AutomationStore(store)
        self.registry = Registry(store)  # for a type's `critical` and `category`
        self.settings = settings
        self._templates: dict[tuple[str, str], tuple[float, messages.MessageTemplate | None]] = {}

    async def _template(self, tenant_id: str, name: str) -> messages.MessageTemplate | None:
        """The latest version of a tenant's template, re-read at most every few seconds."""
        now = time.monotonic()
        hit = self._templates.get((tenant_id, name))
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.people.template(tenant_id, name)
        template = messages.parse_template(found[1]) if found is not None else None
        if len(self._templates) > 10_000:
            self._templates.clear()
        self._templates[(tenant_id, name)] = (now + _TEMPLATE_TTL, template)
        return template

    async def clear(
        self, route: Route, destination: Destination, event: Event, now: float
    ) -> str | Wait | Cleared:
        """Why this delivery must not go out (a reason), until when it must wait (quiet hours),
        or how to send it. `now` is the worker's clock (epoch seconds)."""
        subject = event.subject
        tenant = event.tenant_id
        if route.requires_consent:
            state = (
                await self.people.consent_state(tenant, subject, route.requires_consent)
                if subject
                else {}
            )
            for purpose in route.requires_consent:
                if state.get(purpose) != "grant":
                    return f"consent:{purpose}"
        critical = False
        people = None
        if route.preferences or route.quiet_hours is not None:
            spec = await self.registry.lookup(tenant, event.type)
            people = spec.people if spec is not None else None
            critical = people is not None and people.critical
        if route.preferences and subject:
            prefs = await self.people.preferences(tenant, subject)
            if (prefs or (people is not None and people.defaults)) and not preference_allows(
                prefs, event.type, destination.kind, people
            ):
                return "preference"
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        body: str | None = None
        profile = None
        if subject and (route.to_recipient or route.template or route.quiet_hours is not None):
            profile = await self.people.get(tenant, subject)
            if profile is not None:
                extra["recipient"] = profile
        if route.quiet_hours is not None and not critical:
            tz = (profile or {}).get("timezone")
            until = quiet_until(route.quiet_hours, now, tz)
            if until is not None:
                return Wait(until)
        if route.to_recipient and destination.kind in ADDRESSING:
            field, fixed, path = ADDRESSING[destination.kind]
            if profile is None or not profile.get(field):
                return "no_address"
            config = {k: v for k, v in destination.config.items() if k != fixed}
            config[path] = f"recipient.{field}"
            destination = replace(destination, config=config)
        if route.template and destination.kind in messages.CHANNEL_FIELDS:
            template = await self._template(tenant, route.template)
            locale = (profile or {}).get("locale") or event.context.get("locale")
            variant = (
                messages.pick(template, destination.kind, str(locale) if locale else None)
                if template is not None
                else None
            )
            if variant is not None:  # else the destination's own templates are used
                config = messages.config_for(variant, destination.config)
                destination = replace(destination, config=config)
                body = messages.body_of(variant)
        if route.preferences and subject and not critical and self.settings is not None:
            url = unsubscribe.link(self.settings, tenant, subject, event.type, destination.kind)
            if url is not None:
                extra["unsubscribe_url"] = url
                if destination.kind == "email":  # RFC 8058 one-click
                    headers["List-Unsubscribe"] = f"<{url}>"
                    headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return Cleared(destination, extra, headers, body)

    async def stamp(
        self,
        destination: Destination,
        event: Event,
        delivery_id: str,
        event_seq: int,
        route: Route | None,
        now: float,
    ) -> engagement.Stamp | None:
        """How to track an email's opens and clicks (its destination's `config.tracking`), or
        None: not an email, not asked for, no SWITCHBOARD_TRACKING_SECRET, or no campaign."""
        s = self.settings
        if destination.kind != "email" or s is None or not s.tracking_secret:
            return None
        tracking, problems = engagement.parse_tracking(destination.config.get("tracking"))
        if tracking is None or problems or not tracking.on:
            return None
        automation = None
        route_name = route.name if route is not None else None
        if route is not None and route.id.startswith(AUTOMATION_ROUTE):
            automation, route_name = route.id.split(":")[1], None
        elif delivery_id.startswith("dlv_"):  # an automation's send step without a route
            found = await self.automations.sender_of_delivery(
                event.tenant_id, event_seq, delivery_id
            )
            automation = found[1] if found is not None else None
        campaign = engagement.campaign_of(event.to_json(), tracking, automation, route_name)
        if campaign is None:
            return None
        return engagement.Stamp(
            secret=s.tracking_secret,
            base=s.public_url.rstrip("/") or f"http://{s.host}:{s.port}",
            tenant_id=event.tenant_id,
            subject=event.subject or None,
            delivery_id=delivery_id,
            campaign_id=campaign,
            tracking=tracking,
            sent=int(now),
        )
