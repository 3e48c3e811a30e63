"""How a running delivery worker learns of new deliveries: the in-process wake-up after an ingest
commit (never lost to a claim under way), and on PostgreSQL the NOTIFY that reaches a worker in
another process, for a route's deliveries and an automation's first send alike.

The workers here poll once an hour: a delivery that arrives within the test's seconds was
claimed because the worker was woken, not because it polled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_delivery import send, setup_route

HOUR = 3600.0


async def _arrived(rcv: Any, count: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while len(rcv.received) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return len(rcv.received) >= count


async def test_a_commit_during_a_claim_is_claimed_at_once_not_at_the_next_poll(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    worker = worker_for(api, worker_poll=HOUR)
    real = worker.deliveries.tenants_with_due
    raced = asyncio.Event()

    async def look(now_us: int) -> list[str]:
        found = await real(now_us)  # nothing due yet
        if not raced.is_set():
            raced.set()
            # committed (and the worker woken) after the look, before this claim ends
            await send(api, key, [{"id": "during", "type": "a.b", "data": {}}])
        return found

    worker.deliveries.tenants_with_due = look  # type: ignore[method-assign]
    running, api.hub.worker = api.hub.worker, worker  # the hub's wake-up reaches this worker
    task = asyncio.create_task(worker.run())
    try:
        assert await _arrived(rcv, 1)
        assert [r["json"]["id"] for r in rcv.received] == ["during"]
    finally:
        await worker.stop(grace=1)
        task.cancel()
        api.hub.worker = running


async def _listening(api: Api, looks: list[int]) -> None:
    """Until the worker's LISTEN connection is up and the claim its first notification
    started (the one `listen` makes on connecting) has ended: from here on, only a
    notification wakes the worker."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = await api.hub.store.fetch(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%'",
            (),
        )
        if rows[0][0] and len(looks) >= 2:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never listened")


@pytest.mark.parametrize("via", ["route", "automation"])
async def test_a_worker_in_another_process_is_notified_of_new_deliveries(
    hub_api: Api, receivers: Any, via: str
) -> None:
    api = hub_api
    if api.hub.store.dialect != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite runs one process's worker")
    _, key = await api.tenant()
    rcv = await receivers()
    if via == "route":
        await setup_route(api, key, rcv.url)
    else:
        status, body, _ = await api.call(
            "POST",
            "/v1/destinations",
            key,
            {"name": "hook", "kind": "webhook", "config": {"url": rcv.url}},
        )
        assert status == 201, body
        automation = {"name": "at-once", "on": "a.b", "steps": [{"send": {"destination": "hook"}}]}
        status, body, _ = await api.call("PUT", "/v1/automations/at-once", key, automation)
        assert status in (200, 201), body
    # not the hub's worker: the ingest's in-process wake-up does not reach it, as it would not
    # reach a `switchboard worker` process
    worker = worker_for(api, worker_poll=HOUR)
    real = worker.deliveries.tenants_with_due
    looks: list[int] = []

    async def look(now_us: int) -> list[str]:
        found = await real(now_us)
        looks.append(len(found))
        return found

    worker.deliveries.tenants_with_due = look  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        await _listening(api, looks)
        await send(api, key, [{"id": "notified", "type": "a.b", "data": {}}])
        assert await _arrived(rcv, 1)
        assert [r["json"]["id"] for r in rcv.received] == ["notified"]
    finally:
        await worker.stop(grace=1)
        task.cancel()
