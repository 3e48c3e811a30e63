"""Leads from WhatsApp messages: the first message from a number nobody knows becomes
``lead.created``, later ones ``lead.updated`` — one lead per tenant and normalized phone.

A mapping opts in with a ``leads`` block (`mappings.LeadSpec`). Two stored facts make it durable
across restarts and safe under concurrent requests:

- the lead's claim on its phone, a business-dedup key (``dedup_keys``, type ``lead``, key
  ``phone:<digits>``) that never expires: claiming is one statement, so two first messages at once
  make one lead;
- the recipient profile of the sender (``recipients``, id = the message's subject), which gets the
  phone in E.164, the name, and the attributes ``lead_id``, ``last_message``,
  ``last_message_at`` that the next ``lead.updated`` reports as old values.

A number that already has a recipient profile (a patient or customer the tenant knows) makes no
lead. Only newly stored messages count: a provider retry (a duplicate) makes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as AbcMapping
from typing import Any

from switchboard.people import MAX_VALUE
from switchboard.sources.functions import normalize_phone
from switchboard.sources.mappings import LeadSpec
from switchboard.store import inbound as sql
from switchboard.store.people import PeopleStore, upsert_profile

__all__ = ["LEAD_KEY_TYPE", "LeadMaker", "e164", "lead_id_for"]

LEAD_KEY_TYPE = "lead"  # the dedup_keys event_type of lead claims


def e164(value: Any, international: bool = False) -> str | None:
    """``+`` and the digits of a phone number (Brazilian numbers canonical, see
    `normalize_phone`), or None when it is not a phone number. With `international` the number
    is read as carrying its country code even without a ``+`` (``14155550100`` is in the US, not
    a Brazilian DDD 14), as WhatsApp writes them."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    if international and not text.startswith("+"):
        text = "+" + text
    digits = normalize_phone(text)
    if not digits or not 8 <= len(digits) <= 15:
        return None
    return "+" + digits


def lead_id_for(tenant_id: str, phone: str, message_id: str) -> str:
    """The id of the lead a message would start: it does not spell out the phone number, and a
    lead started again after its subject was erased gets a new one."""
    digest = hashlib.sha256(f"{tenant_id}:{phone}:{message_id}".encode()).hexdigest()
    return "lead_" + digest[:24]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:MAX_VALUE] or None


class LeadMaker:
    """Turns newly stored message events into lead events; one instance per request."""

    def __init__(self, store: Any, tenant_id: str, now_us: int) -> None:
        self.store = store
        self.people = PeopleStore(store)
        self.tenant_id = tenant_id
        self.now_us = now_us

    async def lead_for(
        self, spec: LeadSpec, message: AbcMapping[str, Any]
    ) -> dict[str, Any] | None:
        """The lead event a stored message makes (not yet ingested), or None."""
        data = message.get("data")
        if not isinstance(data, dict):
            return None
        phone = e164(data.get(spec.phone), spec.international)
        if phone is None:
            return None
        digits = phone[1:]
        recipient = str(message.get("subject") or digits)
        lead_id = lead_id_for(self.tenant_id, phone, str(message.get("id")))
        holder = await sql.claim_dedup_key(
            self.store, self.tenant_id, LEAD_KEY_TYPE, f"phone:{digits}", lead_id, self.now_us, -1
        )
        name = _text(data.get(spec.name)) if spec.name else None
        text = _text(data.get(spec.message)) if spec.message else None
        when = message.get("time")
        base = {
            "subject": recipient,
            "context": {
                "lead_id": holder or lead_id,  # the number's lead, new or existing
                "message_event_id": message.get("id"),
                **{
                    k: v
                    for k, v in (message.get("context") or {}).items()
                    if k in ("mapping", "inbound_request_id")
                },
            },
        }
        if when is not None:
            base["time"] = when
        if message.get("actor"):
            base["actor"] = message["actor"]
        if holder is None:  # our claim: the first message from this number
            if await self._known(recipient, phone):
                await self.release(lead_id, phone)
                return None
            lead: dict[str, Any] = {"name": name or phone, "phone": phone, "source": spec.source}
            if text:
                lead["message"] = text
            return {**base, "id": lead_id, "type": spec.created, "data": lead}
        profile = await self.people.get(self.tenant_id, recipient) or {}
        attributes = profile.get("attributes") or {}
        changes: dict[str, dict[str, Any]] = {
            "last_message_at": {"old": attributes.get("last_message_at"), "new": when}
        }
        if text is not None:
            changes["message"] = {"old": attributes.get("last_message"), "new": text}
        if name and profile.get("name") and profile["name"] != name:
            changes["name"] = {"old": profile["name"], "new": name}
        return {
            **base,
            "id": f"{message.get('id')}:{spec.updated}",
            "type": spec.updated,
            "data": {"lead_id": holder, "changes": changes},
        }

    async def remember(
        self, spec: LeadSpec, message: AbcMapping[str, Any], lead: dict[str, Any]
    ) -> None:
        """Keep the sender's profile current once its lead event is stored."""
        data = message.get("data") or {}
        phone = e164(data.get(spec.phone), spec.international)
        if phone is None:
            return
        name = _text(data.get(spec.name)) if spec.name else None
        text = _text(data.get(spec.message)) if spec.message else None
        fields = {"phone": phone, **({"name": name} if name else {})}
        attributes: dict[str, Any] = {
            "lead_id": lead["context"]["lead_id"],
            "last_message_at": message.get("time"),
        }
        if text is not None:
            attributes["last_message"] = text
        await self.people.run(
            [
                upsert_profile(
                    self.store.dialect,
                    self.tenant_id,
                    str(lead["subject"]),
                    fields,
                    attributes,
                    self.now_us,
                )
            ]
        )

    async def release(self, lead_id: str, phone: str) -> None:
        """Give the phone back when its lead.created was not stored (the catalog refused it)."""
        await sql.release_dedup_keys(
            self.store, self.tenant_id, LEAD_KEY_TYPE, lead_id, (f"phone:{phone[1:]}",)
        )

    async def _known(self, recipient: str, phone: str) -> bool:
        """A recipient profile already has this number (as its id or its phone)."""
        digits = phone[1:]
        rows = await self.store.fetch(
            "SELECT 1 FROM recipients WHERE tenant_id = ? AND (id IN (?, ?, ?) OR phone IN (?, ?)) "
            "LIMIT 1",
            (self.tenant_id, recipient, digits, phone, digits, phone),
        )
        return bool(rows)
