"""The benchmark event, in Python: the same document `ingest.lua` sends, and the stored rows the
hub would make of it (for the raw-insert ceiling and the bulk loads)."""

from __future__ import annotations

from typing import Any

from switchboard.envelope import Event, build_event, now_us


def document(event_id: str, n: int) -> dict[str, Any]:
    """The JSON object `ingest.lua` sends for counter value `n`."""
    return {
        "id": event_id,
        "type": "order.placed",
        "subject": f"cust_{n % 5000}",
        "actor": {"id": f"user_{n % 50}", "type": "user"},
        "data": {
            "order_id": f"ord_{event_id}",
            "amount": 129.9,
            "currency": "BRL",
            "items": [
                {"sku": "SKU-1", "qty": 2, "price": 39.95},
                {"sku": "SKU-2", "qty": 1, "price": 50.0},
            ],
            "customer": {"email": "ana.souza@example.com", "name": "Ana Souza"},
            "channel": "web",
        },
        "context": {"ip": "127.0.0.1", "user_agent": "wrk", "locale": "pt-BR"},
    }


def stored(tenant_id: str, tag: str, n: int, received_us: int | None = None) -> Event:
    """The Event the hub stores for document `n` (accepted, unknown type, default source)."""
    doc = document(f"{tag}-{n}", n)
    return build_event(
        doc,
        tenant_id=tenant_id,
        default_source="default",
        received_us=received_us or now_us(),
    )
