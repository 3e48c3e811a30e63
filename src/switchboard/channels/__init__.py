"""Channels: where deliveries go. One module per kind, each with one ``send``.

A channel turns (destination, event, delivery id, attempt) into one outbound call and reports
what happened as a ``SendResult``; it never raises for transport problems and never decides about
retries (``retry.decide`` does). Driver exceptions (aiohttp, SMTP) stay inside ``channels/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp
import msgspec

from switchboard.egress import Policy
from switchboard.engagement import Stamp
from switchboard.records import Destination
from switchboard.templates import Renderer

__all__ = [
    "Channel",
    "ChannelContext",
    "Destination",
    "Outbound",
    "SendResult",
    "truncate",
]


class SendResult(msgspec.Struct, frozen=True):
    ok: bool
    status: int | None = None  # HTTP status (or an SMTP reply code), None without a reply
    # egress_denied: the guard refused the address; nothing was sent and it is not retried
    # template_error: a template failed or went over its budget; never retried
    error: Literal["timeout", "connection", "egress_denied", "other", "template_error"] | None = (
        None
    )
    message: str | None = None  # what went wrong, for the attempt log
    retry_after: str | None = None  # the raw Retry-After header, if any
    response: str = ""  # the reply body, truncated to 2 KiB
    provider_id: str | None = None  # the provider's id for the message (for status callbacks)
    request_headers: dict[str, str] = msgspec.field(default_factory=dict)  # secrets masked


class Outbound(msgspec.Struct, frozen=True):
    """One attempt to make: the delivery's identity and the event it carries."""

    delivery_id: str  # also the `webhook-id`: the same on every attempt
    attempt: int  # 1 for the first try
    event: dict[str, Any]  # the event's public JSON
    body_template: str | None = None  # a route transform (Jinja2 producing JSON), if any
    replay: bool = False
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # List-Unsubscribe (email)
    traceparent: str | None = None  # the attempt's span, when OpenTelemetry tracing is on
    stamp: Stamp | None = None  # email opens and clicks to track (engagement.py), if any


class Channel(Protocol):
    kind: str

    def check_config(self, config: dict[str, Any]) -> list[str]:
        """Problems with a destination's config, each naming the field (empty: fine)."""
        ...

    async def send(self, destination: Destination, out: Outbound) -> SendResult: ...


@dataclass
class ChannelContext:
    """Shared resources handed to every channel."""

    session: aiohttp.ClientSession  # built on egress.connector: it refuses denied addresses
    inbox: Any = None  # the store, for the inbox channel
    egress: Policy = field(default_factory=Policy)  # for channels that connect themselves (SMTP)
    renderer: Renderer = field(default_factory=Renderer)  # templates run off the event loop


RESPONSE_LIMIT = 2048


def truncate(text: str) -> str:
    return text if len(text) <= RESPONSE_LIMIT else text[:RESPONSE_LIMIT] + "…"
