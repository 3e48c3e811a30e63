"""Records several layers share: a destination (the store keeps it, channels send to it, the API
shows it), a delivery about to be made (routing plans it, the store inserts it) and a wake-up of
waiting automation runs (the automation planner makes it, the store writes it).

They live below all of those layers, so the store never imports a channel nor a channel the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


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


class Wake(NamedTuple):
    """Make the runs waiting on (tenant, type, key) due now, if the event is stored as new. The
    store writes the wake-ups of a whole group commit together (store/automations.py). A tuple:
    one is made per ingested event of an awaited type, and a frozen dataclass costs more to make
    than the planning of the event."""

    tenant_id: str
    type: str
    key: str  # the event's values at the awaited correlation paths (`correlation_key`)
