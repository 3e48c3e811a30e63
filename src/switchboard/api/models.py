"""The API's shared vocabularies: one definition each, read by the handlers that check requests
and by `openapi.py` that publishes them, so the document cannot say what the code refuses."""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

import msgspec

# a channel kind (email, whatsapp, …) or "*" in a recipient's preferences
CHANNEL_RE = re.compile(r"^(\*|[a-z][a-z0-9_]{0,39})(?!\n)$")

EventStatus = Literal["accepted", "warned", "quarantined"]  # an event's validation outcome
EVENT_STATUSES: tuple[str, ...] = get_args(EventStatus)
DeliveryStatus = Literal[
    "pending",
    "retrying",
    "sending",
    "succeeded",
    "delivered",
    "read",
    "dead",
    "cancelled",
    "archived",
    "suppressed",
    "failed",  # the provider reported it undelivered after accepting it (SMS)
]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
InboundStatus = Literal[  # what became of a request to a source's public URL
    "processed",
    "partial",
    "rejected",
    "ignored",
    "invalid",
    "failed_verification",
    "forbidden",
    "disabled",
    "error",
]
INBOUND_STATUSES: tuple[str, ...] = get_args(InboundStatus)


class ErrorDetail(msgspec.Struct, kw_only=True):
    """One problem of a request or an event."""

    path: Annotated[
        str, msgspec.Meta(description="A JSON pointer, or ?param.", examples=["/data/email"])
    ]
    message: str
