"""The SDK against a real hub: batching, idempotent retries, rejections counted, never raising."""

from __future__ import annotations

import asyncio

from switchboard.client import AsyncClient, Client
from tests.conftest import Api


async def test_async_client_delivers_every_event_once(api: Api) -> None:
    _, key = await api.tenant()
    async with AsyncClient(api.url, key, batch_size=50, flush_interval=0.01) as sb:
        ids = [sb.emit("order.paid", {"n": i}, subject=f"cust-{i % 3}") for i in range(230)]
        sb.emit("order.paid", {"n": "dup"}, id=ids[0])  # a repeat of an id is a duplicate
        await sb.flush()
        stats = sb.stats
    assert stats.sent == 231 and stats.failed == 0 and stats.rejected == 0
    status, page, _ = await api.call("GET", "/v1/events?limit=1000", key)
    assert status == 200 and len(page["data"]) == 230
    assert {e["id"] for e in page["data"]} == set(ids)


async def test_rejected_events_are_counted_not_raised(api: Api) -> None:
    _, key = await api.tenant(unknown_types="reject")
    async with AsyncClient(api.url, key, flush_interval=0.01) as sb:
        sb.emit("never.declared", {})
        await sb.flush()
        assert sb.stats.rejected == 1 and sb.stats.sent == 0


async def test_sync_client_from_a_plain_thread(api: Api) -> None:
    _, key = await api.tenant()

    def work() -> int:
        with Client(api.url, key, flush_interval=0.01) as sb:
            for i in range(20):
                sb.emit("lead.created", {"i": i})
            sb.flush(10)
            return sb.stats.sent

    assert await asyncio.to_thread(work) == 20
    _, page, _ = await api.call("GET", "/v1/events?type=lead.*", key)
    assert len(page["data"]) == 20


async def test_a_wrong_key_fails_quietly(api: Api) -> None:
    async with AsyncClient(api.url, "sb_wrongwrongwrong", flush_interval=0.01) as sb:
        sb.emit("a.b", {})
        await sb.flush()
        assert sb.stats.failed == 1
