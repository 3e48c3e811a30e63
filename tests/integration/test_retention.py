"""Retention on both stores: per type, the tenant default, the floor, the kept work, the logs,
and the worker's job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import Settings
from switchboard.envelope import format_us, now_us
from switchboard.retention import DAY_US
from switchboard.retention_job import run_once
from switchboard.store import retention as sql
from tests.conftest import LOOPBACK, Api, fresh_database, serve
from tests.integration.conftest import worker_for


@pytest.fixture(params=["sqlite", "postgres"])
async def small_chunks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A hub without a worker whose retention deletes 2 rows at a time (every expiry below
    takes several chunks) under a floor of 20 days."""
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            run_worker=0,
            egress_allow=LOOPBACK,
            retention_chunk=2,
            retention_floor_days=20,
        )
        async with serve(settings) as a:
            yield a


def ago(days: float) -> str:
    return format_us(now_us() - int(days * DAY_US))


def ev(event_id: str, type_: str, days_ago: float) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "time": ago(days_ago), "data": {}}


async def ids(api: Api, key: str) -> set[str]:
    found: set[str] = set()
    cursor = ""
    while True:
        status, page, _ = await api.call("GET", f"/v1/events?limit=1000{cursor}", key)
        assert status == 200
        found |= {e["id"] for e in page["data"] if not e["type"].startswith("switchboard.")}
        if not page["next_cursor"]:
            return found
        cursor = f"&cursor={page['next_cursor']}"


async def test_events_expire_per_type_then_by_the_tenant_default(small_chunks: Api) -> None:
    api = small_chunks
    _, key = await api.tenant()
    short = {"retention": "10 days", "versions": [{"version": "1.0", "schema": {}}]}
    status, body, _ = await api.call("PUT", "/v1/event-types/short.lived", key, short)
    assert status == 200, body
    status, body, _ = await api.call("PUT", "/v1/retention", key, {"default": "60 days"})
    assert status == 200, body
    assert body["types"] == {"short.lived": {"days": 10, "effective_days": 20}}  # the floor
    assert body["default_days"] == 60 and body["floor_days"] == 20
    # an inbox destination gets the `done.*` events: they have a delivery, attempts, an item
    inbox = {"name": "bell", "kind": "inbox", "config": {"recipient": "ops"}}
    assert (await api.call("POST", "/v1/destinations", key, inbox))[0] == 201
    route = {"name": "r", "types": ["done.*"], "destinations": ["bell"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    events = [
        *(ev(f"short-old-{i}", "short.lived", 25) for i in range(5)),  # past the floor: go
        ev("short-floor", "short.lived", 15),  # past its own 10 days, not the floor's 20: kept
        *(ev(f"other-old-{i}", "other.kind", 70) for i in range(5)),  # past the default: go
        ev("other-new", "other.kind", 50),
        *(ev(f"done-old-{i}", "done.x", 70) for i in range(3)),
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, events)
    assert status == 202 and body["accepted"] == len(events), body
    await worker_for(api).drain()
    status, body, _ = await api.call("POST", "/v1/events", key, [ev("waiting", "done.x", 70)])
    assert status == 202  # its delivery is still pending (nothing drains it): it is kept
    _, dl, _ = await api.call("GET", "/v1/deliveries", key)
    assert len(dl["data"]) == 4
    attempts_before = await api.hub.store.fetch("SELECT count(*) FROM attempts")

    deleted = await run_once(api.hub, now_us())

    assert deleted["events"] == 13
    assert await ids(api, key) == {"short-floor", "other-new", "waiting"}
    _, dl, _ = await api.call("GET", "/v1/deliveries", key)
    assert [d["event"]["id"] for d in dl["data"]] == ["waiting"]
    assert (await api.hub.store.fetch("SELECT count(*) FROM deliveries"))[0][0] == 1
    assert attempts_before[0][0] == 3
    assert (await api.hub.store.fetch("SELECT count(*) FROM attempts"))[0][0] == 0
    assert (await api.hub.store.fetch("SELECT count(*) FROM inbox_items"))[0][0] == 0
    assert (await run_once(api.hub, now_us()))["events"] == 0  # nothing more to do


async def test_without_any_retention_events_are_kept(small_chunks: Api) -> None:
    api = small_chunks
    _, key = await api.tenant()
    await api.call("POST", "/v1/events", key, [ev("ancient", "a.b", 3000)])
    assert (await run_once(api.hub, now_us()))["events"] == 0
    assert await ids(api, key) == {"ancient"}


async def test_tenants_keep_their_own_retention(small_chunks: Api) -> None:
    api = small_chunks
    _, short = await api.tenant()
    _, forever = await api.tenant()
    await api.call("PUT", "/v1/retention", short, {"default": 30})
    for key in (short, forever):
        await api.call("POST", "/v1/events", key, [ev("old", "a.b", 40)])
    await run_once(api.hub, now_us())
    assert await ids(api, short) == set()
    assert await ids(api, forever) == {"old"}


async def test_the_retention_api_checks_what_it_is_given(small_chunks: Api) -> None:
    api = small_chunks
    _, key = await api.tenant()
    _, read = await api.tenant(scopes=("read",))
    for body, status_, field in (
        ({"default": "10 days"}, 422, "floor"),
        ({"default": "soon"}, 422, "duration"),
        ({"default": [1]}, 400, "default"),
        ({"default": 30, "extra": 1}, 400, "extra"),
    ):
        status, answer, _ = await api.call("PUT", "/v1/retention", key, body)
        assert status == status_, answer
        assert field in answer["error"]["message"], answer
    assert (await api.call("PUT", "/v1/retention", read, {"default": 30}))[0] == 403
    status, answer, _ = await api.call("PUT", "/v1/retention", key, {"default": None})
    assert status == 200 and answer["default_days"] is None
    status, answer, _ = await api.call("GET", "/v1/retention", key)
    assert answer["attempts_days"] == 30 and answer["inbound_requests_days"] == 30


async def test_logs_expire_by_their_own_age(small_chunks: Api) -> None:
    api = small_chunks
    _, key = await api.tenant()
    inbox = {"name": "bell", "kind": "inbox", "config": {"recipient": "ops"}}
    await api.call("POST", "/v1/destinations", key, inbox)
    await api.call(
        "POST", "/v1/routes", key, {"name": "r", "types": ["a.*"], "destinations": ["bell"]}
    )
    await api.call("POST", "/v1/events", key, [ev(f"e{i}", "a.b", 0) for i in range(5)])
    await worker_for(api).drain()
    store = api.hub.store
    assert await sql.expire_attempts(store, now_us() - DAY_US, 100) == 0  # all are recent
    assert await sql.expire_attempts(store, now_us() + 1, 3) == 3  # one chunk
    assert await sql.expire_attempts(store, now_us() + 1, 3) == 2
    assert await sql.expire_inbound(store, now_us() + 1, 3) == 0


async def test_the_worker_runs_the_retention_job(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        key_rate=0,
        tenant_rate=0,
        egress_allow=LOOPBACK,
        retention_interval=0.05,
    )
    async with serve(settings) as api:
        _, key = await api.tenant()
        await api.call("PUT", "/v1/retention", key, {"default": 30})
        await api.call("POST", "/v1/events", key, [ev("old", "a.b", 40), ev("new", "a.b", 1)])
        deadline = time.monotonic() + 60
        while await ids(api, key) != {"new"}:
            assert time.monotonic() < deadline, "the retention job did not run"
            await asyncio.sleep(0.05)


@pytest.fixture(params=["postgres", "sqlite"])
async def busy_hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            run_worker=0,
            egress_allow=LOOPBACK,
            retention_chunk=50,
        )
        async with serve(settings) as a:
            yield a


async def test_a_month_expires_while_ingest_goes_on_and_nothing_kept_is_lost(
    busy_hub: Api,
) -> None:
    """A month of events 13 months old is dropped while clients keep sending: every event
    acknowledged with a 202, and every event inside the kept range, is still there after."""
    api = busy_hub
    _, key = await api.tenant()
    await api.call("PUT", "/v1/retention", key, {"default": "12 months"})
    expired = [ev(f"old-{i}", "a.b", 400 + i % 28) for i in range(600)]
    kept = [ev(f"kept-{i}", "a.b", 100 + i % 200) for i in range(300)]
    for batch in (expired[:300], expired[300:], kept):
        status, body, _ = await api.call("POST", "/v1/events", key, batch)
        assert status == 202 and body["accepted"] == len(batch)
    acknowledged: set[str] = set()
    done = asyncio.Event()

    async def keep_sending() -> None:
        n = 0
        while not done.is_set() or n < 5:
            # new events, and late ones whose time falls inside the kept range
            batch = [ev(f"live-{n}-{i}", "a.b", (i % 3) * 150) for i in range(20)]
            status, body, _ = await api.call("POST", "/v1/events", key, batch)
            if status == 202:
                acknowledged.update(r["id"] for r in body["results"] if r["status"] == "accepted")
            n += 1

    sender = asyncio.create_task(keep_sending())
    try:
        deleted = await run_once(api.hub, now_us())
    finally:
        done.set()
        await sender
    assert deleted["events"] == 600
    left = await ids(api, key)
    assert not any(i.startswith("old-") for i in left)
    assert {e["id"] for e in kept} <= left
    assert acknowledged and acknowledged <= left
