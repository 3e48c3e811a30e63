"""The recipient layer's "whether", asked by the worker right before a send: has the event's
subject granted the purposes the route requires, and do their preferences let this topic out on
this channel? A "no" is a reason (`consent:<purpose>`, `preference`); the worker records the
delivery `suppressed` with it, never sends it and never drops it silently.

Asked at send time, not only at routing time, so that a withdrawal recorded while a delivery
waited (in its queue, or for a retry) stops it.
"""

from __future__ import annotations

from switchboard.channels import Destination
from switchboard.envelope import Event
from switchboard.people import preference_allows
from switchboard.registry import Registry
from switchboard.router import Route
from switchboard.store import Store
from switchboard.store.people import PeopleStore


class Gate:
    def __init__(self, store: Store) -> None:
        self.people = PeopleStore(store)
        self.registry = Registry(store)  # for a type's `critical` and `category`

    async def refusal(self, route: Route, destination: Destination, event: Event) -> str | None:
        """Why this delivery must not go out, or None to send it."""
        subject = event.subject
        if route.requires_consent:
            state = (
                await self.people.consent_state(event.tenant_id, subject, route.requires_consent)
                if subject
                else {}
            )
            for purpose in route.requires_consent:
                if state.get(purpose) != "grant":
                    return f"consent:{purpose}"
        if route.preferences and subject:
            prefs = await self.people.preferences(event.tenant_id, subject)
            if prefs:
                spec = await self.registry.lookup(event.tenant_id, event.type)
                people = spec.people if spec is not None else None
                if not preference_allows(prefs, event.type, destination.kind, people):
                    return "preference"
        return None
