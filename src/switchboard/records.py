"""Records several layers share: a destination (the store keeps it, channels send to it, the API
shows it) and a delivery about to be made (routing plans it, the store inserts it).

They live below all of those layers, so the store never imports a channel nor a channel the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Destination:
    id: str
    tenant_id: str
    name: str
    kind: str  # webhook | slack | discord | email | whatsapp | inbox
    config: dict[str, Any]
    secrets: tuple[str, ...] = ()  # signing secrets / tokens; two are active during rotation
    timeout: float = 10.0  # seconds for one attempt
    concurrency: int = 10  # most attempts in flight at once
    rate_per_second: float | None = None
    rate_per_minute: float | None = None
    retry_schedule: tuple[float, ...] | None = None  # None: the default schedule
    enabled: bool = True
    disabled_reason: str | None = None
    created_us: int = 0


@dataclass(frozen=True)
class NewDelivery:
    tenant_id: str
    event_seq: int
    destination_id: str
    route_id: str | None
    priority: int
    ordering_key: str | None
    due_us: int
    replay_id: str | None = None
