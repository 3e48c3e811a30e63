"""Routing and delivery against real receivers on 127.0.0.1, driven with a fake clock."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from switchboard import delivery
from switchboard.errors import StoreError
from tests.conftest import Api
from tests.integration.conftest import Clock, worker_for


async def setup_route(
    api: Api,
    key: str,
    url: str,
    *,
    name: str = "hook",
    route: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **dest: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {"url": url, **({"headers": headers} if headers else {})}
    status, d, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": name, "kind": "webhook", "config": config, **dest}
    )
    assert status == 201, d
    r = {"name": f"to-{name}", "types": ["*"], "destinations": [name], **(route or {})}
    status, body, _ = await api.call("POST", "/v1/routes", key, r)
    assert status == 201, body
    return d


async def send(api: Api, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    status, body, _ = await api.call("POST", "/v1/events", key, events)
    assert status == 202, body
    return body


async def two_tenants(api: Api, receivers: Any) -> tuple[str, Any, str, Any]:
    """Two tenants, each with a route of every event to a receiver of its own."""
    _, first = await api.tenant()
    _, second = await api.tenant()
    rcv_first = await receivers()
    rcv_second = await receivers()
    await setup_route(api, first, rcv_first.url)
    await setup_route(api, second, rcv_second.url)
    return first, rcv_first, second, rcv_second


async def test_webhook_is_signed_and_every_hop_is_visible(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    dest = await setup_route(api, key, rcv.url, headers={"X-Custom": "yes"})
    await send(
        api,
        key,
        [
            {
                "id": "ev-1",
                "type": "billing.paid",
                "data": {"amount": 5},
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "correlation_id": "corr-1",
            }
        ],
    )
    await worker_for(api).drain()
    assert len(rcv.received) == 1
    req = rcv.received[0]
    headers = {k.lower(): v for k, v in req["headers"].items()}
    Webhook(dest["secrets"][0]).verify(req["body"], headers)  # raises if the signature is wrong
    assert req["json"]["id"] == "ev-1" and req["json"]["data"] == {"amount": 5}
    assert headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert headers["x-switchboard-correlation-id"] == "corr-1"
    assert headers["x-custom"] == "yes"
    _, deliveries, _ = await api.call("GET", "/v1/events/ev-1/deliveries", key)
    [d] = deliveries["data"]
    assert d["status"] == "succeeded" and d["attempts"] == 1
    assert headers["webhook-id"] == d["id"]
    _, attempts, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
    [a] = attempts["data"]
    assert a["ok"] and a["status_code"] == 200 and a["response"] == "ok"
    assert "webhook-signature" in a["request_headers"]


async def test_route_filter_selects_events(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(
        api,
        key,
        rcv.url,
        route={
            "types": ["payment_processed"],
            "filter": {"data": {"method": ["pix"], "status": ["failed"]}},
        },
    )
    await send(
        api,
        key,
        [
            {"id": "a", "type": "payment_processed", "data": {"method": "pix", "status": "failed"}},
            {
                "id": "b",
                "type": "payment_processed",
                "data": {"method": "card", "status": "failed"},
            },
            {"id": "c", "type": "purchase_made", "data": {"method": "pix", "status": "failed"}},
        ],
    )
    await worker_for(api).drain()
    assert [r["json"]["id"] for r in rcv.received] == ["a"]


async def test_retries_follow_the_schedule_then_dead_letter_and_retry(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(default=500)
    await setup_route(api, key, rcv.url, retry_schedule="0,5s,5m,30m")
    await send(api, key, [{"id": "r1", "type": "a.b", "data": {}}])
    clock = Clock()
    worker = worker_for(api, clock)
    await worker.drain()
    assert len(rcv.received) == 1
    _, dl, _ = await api.call("GET", "/v1/events/r1/deliveries", key)
    d = dl["data"][0]
    assert d["status"] == "retrying" and d["attempts"] == 1
    for expected in (5, 300, 1800):
        clock.advance(expected * 0.79)  # before the earliest jitter: nothing is due
        await worker.drain()
        assert len(rcv.received) == len([5, 300, 1800][: [5, 300, 1800].index(expected)]) + 1
        clock.advance(expected * 0.42)  # past the latest jitter: due now
        await worker.drain()
    assert len(rcv.received) == 4
    _, dl, _ = await api.call("GET", "/v1/events/r1/deliveries", key)
    assert dl["data"][0]["status"] == "dead" and dl["data"][0]["attempts"] == 4
    # all attempts carry the same webhook-id
    assert len({r["headers"]["webhook-id"] for r in rcv.received}) == 1
    _, dlq, _ = await api.call("GET", "/v1/dlq", key)
    assert [x["event"]["id"] for x in dlq["data"]] == ["r1"]
    _, stats, _ = await api.call("GET", "/v1/dlq/stats", key)
    assert stats["total"] == 1 and stats["by_type"] == {"a.b": 1}
    rcv.default = 200
    status, body, _ = await api.call("POST", "/v1/dlq/retry", key, {"ids": [d["id"]]})
    assert status == 200 and body == {"requeued": 1}
    await worker.drain()
    _, dl, _ = await api.call("GET", "/v1/events/r1/deliveries", key)
    assert dl["data"][0]["status"] == "succeeded"
    _, dlq, _ = await api.call("GET", "/v1/dlq", key)
    assert dlq["data"] == []


async def test_the_schedules_first_item_delays_the_first_attempt(
    hub_api: Api, receivers: Any
) -> None:
    """`retry_schedule: "2h,5s"` waits two hours before the first attempt, with no attempt
    spent while it waits; a retry from the DLQ is sent at once."""
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(default=500)
    await setup_route(api, key, rcv.url, retry_schedule="2h,5s")
    await send(api, key, [{"id": "late", "type": "a.b", "data": {}}])
    _, dl, _ = await api.call("GET", "/v1/events/late/deliveries", key)
    made = dl["data"][0]["created_at"]
    clock = Clock()
    worker = worker_for(api, clock)
    await worker.drain()
    assert rcv.received == []
    _, dl, _ = await api.call("GET", "/v1/events/late/deliveries", key)
    d = dl["data"][0]
    assert d["status"] == "pending" and d["attempts"] == 0
    due = datetime.fromisoformat(d["next_attempt_at"]) - datetime.fromisoformat(made)
    assert due == timedelta(hours=2)
    clock.advance(2 * 3600 - 60)  # a minute early: still waiting
    await worker.drain()
    assert rcv.received == []
    clock.advance(120)
    await worker.drain()
    assert len(rcv.received) == 1
    _, dl, _ = await api.call("GET", "/v1/events/late/deliveries", key)
    assert dl["data"][0]["status"] == "retrying" and dl["data"][0]["attempts"] == 1
    clock.advance(10)  # past the second item (5 s with its jitter): the last attempt
    await worker.drain()
    assert len(rcv.received) == 2
    _, dl, _ = await api.call("GET", "/v1/events/late/deliveries", key)
    assert dl["data"][0]["status"] == "dead"
    rcv.default = 200
    status, body, _ = await api.call("POST", "/v1/dlq/retry", key, {"ids": [d["id"]]})
    assert status == 200 and body == {"requeued": 1}
    await worker.drain()  # the clock has not moved: a retry by hand does not wait
    assert len(rcv.received) == 3
    _, dl, _ = await api.call("GET", "/v1/events/late/deliveries", key)
    assert dl["data"][0]["status"] == "succeeded"


async def test_a_first_item_of_zero_sends_at_once(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url, retry_schedule="0,1h")
    await send(api, key, [{"id": "now", "type": "a.b", "data": {}}])
    await worker_for(api, Clock()).drain()
    assert len(rcv.received) == 1


async def test_receiver_down_then_recovered_gets_everything(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(default=503)
    await setup_route(api, key, rcv.url, retry_schedule="0,5s,5s,5s")
    await send(api, key, [{"id": f"e{i}", "type": "a.b", "data": {"i": i}} for i in range(20)])
    clock = Clock()
    worker = worker_for(api, clock)
    await worker.drain()
    rcv.default = 200
    # 20 failures open the destination's circuit (30 s); a probe then closes it again
    for _ in range(4):
        clock.advance(35)
        await worker.drain()
    ok = {r["json"]["id"] for r in rcv.received if r["json"]}
    assert ok == {f"e{i}" for i in range(20)}
    _, listing, _ = await api.call("GET", "/v1/deliveries?status=succeeded&limit=100", key)
    assert len(listing["data"]) == 20


async def test_failing_destination_does_not_delay_a_healthy_one(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    slow = await receivers(delay=3.0, default=500)
    healthy = await receivers()
    await setup_route(api, key, slow.url, name="slow", timeout=5, concurrency=2)
    await setup_route(api, key, healthy.url, name="healthy")
    await send(api, key, [{"id": f"e{i}", "type": "a.b", "data": {}} for i in range(30)])
    worker = worker_for(api)
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while len(healthy.received) < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # every healthy delivery arrived while the slow receiver had answered none
        assert len(healthy.received) == 30
        assert len(slow.received) == 0
    finally:
        await worker.stop(grace=0.1)
        task.cancel()
    # the stopped worker released what it held: nothing stays 'sending'
    _, listing, _ = await api.call("GET", "/v1/deliveries?status=sending", key)
    assert listing["data"] == []


async def test_gone_disables_destination_and_publishes_an_event(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    gone = await receivers(default=410)
    alerts = await receivers()
    await setup_route(api, key, gone.url, name="gone", route={"types": ["a.*"]})
    await setup_route(
        api,
        key,
        alerts.url,
        name="alerts",
        route={"types": ["switchboard.destination_disabled", "switchboard.delivery_dead"]},
    )
    await send(api, key, [{"id": "g1", "type": "a.b", "data": {}}])
    worker = worker_for(api)
    await worker.drain()
    await worker.drain()
    _, dest, _ = await api.call("GET", "/v1/destinations/gone", key)
    assert dest["enabled"] is False and "410" in dest["disabled_reason"]
    types = sorted(r["json"]["type"] for r in alerts.received)
    assert types == ["switchboard.delivery_dead", "switchboard.destination_disabled"]
    dead = next(
        r["json"] for r in alerts.received if r["json"]["type"] == "switchboard.delivery_dead"
    )
    assert dead["data"]["event_id"] == "g1" and dead["causation_id"] == "g1"
    # later events to the disabled destination are cancelled, not sent
    await send(api, key, [{"id": "g2", "type": "a.b", "data": {}}])
    await worker.drain()
    assert len(gone.received) == 1
    _, dl, _ = await api.call("GET", "/v1/events/g2/deliveries", key)
    assert dl["data"][0]["status"] == "cancelled"


async def test_ordering_key_delivers_in_order(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    rcv.answers = [500]  # the first delivery fails once
    await setup_route(api, key, rcv.url, retry_schedule="0,5s", route={"ordering_key": "subject"})
    await send(
        api,
        key,
        [{"id": f"o{i}", "type": "a.b", "data": {}, "subject": "cust-1"} for i in range(3)],
    )
    clock = Clock()
    worker = worker_for(api, clock)
    await worker.drain()
    assert [r["json"]["id"] for r in rcv.received] == ["o0"]  # o1, o2 wait behind o0
    clock.advance(10)
    await worker.drain()
    await worker.drain()
    await worker.drain()
    assert [r["json"]["id"] for r in rcv.received] == ["o0", "o0", "o1", "o2"]


async def test_transform_reshapes_the_body(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(
        api,
        key,
        rcv.url,
        route={
            "transform": '{"text": "novo lead {{ data.name }}", "phone": {{ data.phone|tojson }}}'
        },
    )
    await send(api, key, [{"type": "lead.created", "data": {"name": "Ana", "phone": "+55 11"}}])
    await worker_for(api).drain()
    assert rcv.received[0]["json"] == {"text": "novo lead Ana", "phone": "+55 11"}


async def test_replay_dry_run_is_exact_and_reaches_a_new_destination(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    batch = [
        {
            "id": f"h{i}",
            "type": "billing.paid" if i % 2 else "lead.created",
            "data": {"amount": i},
            "time": f"2025-01-0{1 + i % 5}T10:00:00Z",
        }
        for i in range(40)
    ]
    await send(api, key, batch)
    late = await receivers()
    status, _, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "late", "kind": "webhook", "config": {"url": late.url}},
    )
    assert status == 201
    query = {
        "types": ["billing.*"],
        "filter": {"data": {"amount": [{"numeric": [">=", 10]}]}},
        "from": "2025-01-01T00:00:00Z",
        "to": "2025-01-05T00:00:00Z",
        "destinations": ["late"],
    }
    expected = sorted(
        e["id"]
        for e in batch
        if e["type"] == "billing.paid" and e["data"]["amount"] >= 10 and e["time"] < "2025-01-05"
    )
    status, dry, _ = await api.call("POST", "/v1/replays", key, {**query, "dry_run": True})
    assert status == 200, dry
    assert dry["events"] == len(expected) == dry["deliveries"]
    assert {s["event_id"] for s in dry["sample"]} <= set(expected)
    assert late.received == []  # a dry run sends nothing
    status, job, _ = await api.call("POST", "/v1/replays", key, query)
    assert status == 202
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, job, _ = await api.call("GET", f"/v1/replays/{job['id']}", key)
        if job["status"] == "done":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done" and job["deliveries"] == len(expected)
    await worker_for(api).drain()
    assert sorted(r["json"]["id"] for r in late.received) == expected
    assert all(r["headers"]["x-switchboard-replay"] == "true" for r in late.received)
    _, listing, _ = await api.call("GET", f"/v1/deliveries?replay={job['id']}&limit=1000", key)
    assert len(listing["data"]) == len(expected)
    assert {d["priority"] for d in listing["data"]} == {"low"}


async def test_duplicate_events_route_once(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    ev = {"id": "same", "type": "a.b", "data": {}}
    await asyncio.gather(*(send(api, key, [ev]) for _ in range(10)))
    await worker_for(api).drain()
    assert len(rcv.received) == 1


async def test_inbox_channel_stores_items_per_recipient(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    status, d, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "inbox",
            "kind": "inbox",
            "config": {
                "recipient_path": "subject",
                "title_template": "Pagamento de {{ data.amount }}",
            },
        },
    )
    assert status == 201, d
    await api.call("POST", "/v1/routes", key, {"name": "r", "destinations": ["inbox"]})
    await send(
        api,
        key,
        [{"id": "i1", "type": "billing.paid", "data": {"amount": 50}, "subject": "user-7"}],
    )
    await worker_for(api).drain()
    _, inbox, _ = await api.call("GET", "/v1/inbox/user-7", key)
    [item] = inbox["data"]
    assert item["title"] == "Pagamento de 50" and item["read_at"] is None
    _, marked, _ = await api.call("POST", "/v1/inbox/user-7/read", key, {"ids": [item["id"]]})
    assert marked == {"marked": 1}
    _, unread, _ = await api.call("GET", "/v1/inbox/user-7?unread=true", key)
    assert unread["data"] == []


async def test_provider_status_moves_forward_only(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "inbox", "kind": "inbox", "config": {"recipient": "ops"}},
    )
    await api.call("POST", "/v1/routes", key, {"name": "r", "destinations": ["inbox"]})
    await send(api, key, [{"id": "p1", "type": "a.b", "data": {}}])
    await worker_for(api).drain()
    _, dl, _ = await api.call("GET", "/v1/events/p1/deliveries", key)
    pid = dl["data"][0]["provider_id"]
    assert pid
    for status_, expected in (("read", "read"), ("delivered", "read")):
        await api.call(
            "POST", "/v1/deliveries/provider-status", key, {"provider_id": pid, "status": status_}
        )
        _, dl, _ = await api.call("GET", "/v1/events/p1/deliveries", key)
        assert dl["data"][0]["status"] == expected


async def test_destination_and_route_errors_name_fields(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "x", "kind": "webhook", "config": {"url": "ftp://x"}},
    )
    assert status == 422 and "config.url" in body["error"]["message"]
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "x", "kind": "carrier-pigeon", "config": {}}
    )
    assert status == 400 and "kind" in body["error"]["message"]
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "x", "kind": "webhook", "config": {"url": "http://a"}, "timeot": 5},
    )
    assert status == 400 and "timeot" in body["error"]["message"]
    status, body, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        {"name": "r", "destinations": ["nope"], "filter": {"data": {"a": [{"between": 1}]}}},
    )
    assert status == 422
    assert "destinations[0]" in body["error"]["message"] and "filter" in body["error"]["message"]


async def test_tenants_cannot_touch_each_others_delivery_objects(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key_a = await api.tenant()
    _, key_b = await api.tenant()
    rcv = await receivers(default=500)
    await setup_route(api, key_a, rcv.url, retry_schedule="0")
    await send(api, key_a, [{"id": "x1", "type": "a.b", "data": {}}])
    await worker_for(api).drain()
    _, dl, _ = await api.call("GET", "/v1/events/x1/deliveries", key_a)
    did = dl["data"][0]["id"]
    for method, path in (
        ("GET", f"/v1/deliveries/{did}"),
        ("GET", f"/v1/deliveries/{did}/attempts"),
        ("POST", f"/v1/deliveries/{did}/retry"),
        ("GET", "/v1/destinations/hook"),
        ("DELETE", "/v1/routes/to-hook"),
    ):
        assert (await api.call(method, path, key_b))[0] == 404, path
    for path in ("/v1/dlq", "/v1/deliveries", "/v1/destinations", "/v1/routes"):
        _, body, _ = await api.call("GET", path, key_b)
        assert body["data"] == [], path
    _, body, _ = await api.call("POST", "/v1/dlq/retry", key_b, {"ids": [did]})
    assert body == {"requeued": 0}


async def test_a_cookie_one_tenants_endpoint_sets_never_reaches_another_tenant(
    hub_api: Api, receivers: Any
) -> None:
    """The hub's HTTP client keeps no cookies. One client serves every tenant: with aiohttp's
    default jar, a `Set-Cookie` answered to one tenant's delivery went out again with the next
    delivery of any tenant to the same host."""
    api = hub_api
    _, first = await api.tenant()
    _, second = await api.tenant()
    rcv = await receivers(headers={"Set-Cookie": "session=first-tenants-secret; Path=/"})
    url = rcv.url.replace("127.0.0.1", "localhost")  # a jar keeps no cookie of an IP address
    await setup_route(api, first, url)
    await setup_route(api, second, url)
    await send(api, first, [{"type": "a.b", "data": {}}])
    await worker_for(api).drain()
    await send(api, second, [{"type": "a.b", "data": {}}])
    await worker_for(api).drain()
    assert len(rcv.received) == 2
    assert [r["headers"].get("Cookie") for r in rcv.received] == [None, None]


async def test_a_tenants_backlog_does_not_starve_another(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    busy, rcv_busy, quiet, rcv_quiet = await two_tenants(api, receivers)
    await send(api, busy, [{"type": "a.b", "data": {"i": i}} for i in range(300)])
    await send(api, quiet, [{"type": "a.b", "data": {"i": i}} for i in range(5)])
    worker = worker_for(api, worker_concurrency=10)
    await worker.claim_once()  # one cycle: each tenant with due work gets its share
    await worker.settle()
    assert len(rcv_quiet.received) == 5
    assert len(rcv_busy.received) == 5


async def test_high_priority_is_claimed_first(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    low = await receivers()
    high = await receivers()
    await setup_route(api, key, low.url, name="low", route={"priority": "low"})
    await setup_route(api, key, high.url, name="high", route={"priority": "high"})
    await send(api, key, [{"type": "a.b", "data": {"i": i}} for i in range(8)])
    # the only tenant may take the whole worker here (by default it leaves a quarter to others)
    worker = worker_for(api, worker_concurrency=8, worker_tenant_share=1.0)
    await worker.claim_once()
    await worker.settle()
    assert len(high.received) == 8 and low.received == []
    await worker.drain()
    assert len(low.received) == 8


async def test_destination_failing_too_long_is_disabled(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(default=500)
    await setup_route(api, key, rcv.url, retry_schedule="0,30s,30s,30s,30s")
    await send(api, key, [{"id": "f1", "type": "a.b", "data": {}}])
    clock = Clock()
    worker = worker_for(api, clock, disable_after=60.0)
    await worker.drain()
    _, dest, _ = await api.call("GET", "/v1/destinations/hook", key)
    assert dest["enabled"] is True  # failing, but not for long yet
    for _ in range(3):
        clock.advance(40)
        await worker.drain()
    _, dest, _ = await api.call("GET", "/v1/destinations/hook", key)
    assert dest["enabled"] is False and "failing" in dest["disabled_reason"]
    _, events, _ = await api.call("GET", "/v1/events?type=switchboard.destination_disabled", key)
    assert len(events["data"]) == 1


async def test_destination_concurrency_holds_for_a_burst(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(delay=0.2)
    await setup_route(api, key, rcv.url, concurrency=2)
    await send(api, key, [{"type": "a.b", "data": {"i": i}} for i in range(10)])
    await worker_for(api).drain()
    assert len(rcv.received) == 10
    assert rcv.peak == 2


async def test_sends_waiting_past_the_lease_budget_are_released_and_sent_once(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(delay=0.3)
    await setup_route(api, key, rcv.url, concurrency=1, timeout=1)
    await send(api, key, [{"id": f"l{i}", "type": "a.b", "data": {}} for i in range(8)])
    # a lease of 3.5 s covers one slot wait of ~0.5 s: later claims are released unsent
    worker = worker_for(api, lease_seconds=3.5)
    await worker.drain()
    ids = [r["json"]["id"] for r in rcv.received]
    assert sorted(ids) == [f"l{i}" for i in range(8)]  # each sent exactly once
    _, listing, _ = await api.call("GET", "/v1/deliveries?status=succeeded", key)
    assert len(listing["data"]) == 8


async def test_stop_finishes_sends_under_way_and_gives_queued_ones_back(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(delay=0.5)
    await setup_route(api, key, rcv.url, concurrency=2, route={"types": ["a.*"]})
    await send(api, key, [{"id": f"s{i}", "type": "a.b", "data": {}} for i in range(6)])
    worker = worker_for(api)
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while rcv.in_flight < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert rcv.in_flight == 2  # the destination's two slots are taken; four wait in line
        await worker.stop(grace=5)
    finally:
        task.cancel()
    # the two under way finished and were recorded; the four in line went back unsent
    assert len(rcv.received) == 2
    _, done, _ = await api.call("GET", "/v1/deliveries?status=succeeded", key)
    _, waiting, _ = await api.call("GET", "/v1/deliveries?status=pending", key)
    assert len(done["data"]) == 2
    assert len(waiting["data"]) == 4
    assert all(d["attempts"] == 0 for d in waiting["data"])


@pytest.fixture
def kept_tenant_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker keeps its list of tenants with due work for a minute, unless a claim runs dry."""
    monkeypatch.setattr(delivery, "_TENANTS_TTL", 60.0)


async def test_under_a_backlog_the_tenant_list_is_reused_only_until_it_expires(
    hub_api: Api, receivers: Any, kept_tenant_list: None
) -> None:
    api = hub_api
    busy, rcv_busy, late, rcv_late = await two_tenants(api, receivers)
    await send(api, busy, [{"type": "a.b", "data": {"i": i}} for i in range(40)])
    worker = worker_for(api, worker_concurrency=10, worker_tenant_share=1.0)
    assert await worker.claim_once() == 10  # a full claim: the list [busy] is kept
    await worker.settle()
    await send(api, late, [{"type": "a.b", "data": {"i": i}} for i in range(3)])
    assert await worker.claim_once() == 10  # still the kept list: no query, busy only
    await worker.settle()
    assert len(rcv_late.received) == 0
    worker._tenants_until = 0.0  # the list expires: the next cycle asks again
    await worker.claim_once()
    await worker.settle()
    assert len(rcv_late.received) == 3
    assert len(rcv_busy.received) == 25  # 10 + 10 + its half of the third cycle


async def test_a_tenant_running_dry_makes_the_next_cycle_ask_again(
    hub_api: Api, receivers: Any, kept_tenant_list: None
) -> None:
    api = hub_api
    first, rcv_first, second, rcv_second = await two_tenants(api, receivers)
    await send(api, first, [{"type": "a.b", "data": {"i": i}} for i in range(4)])
    worker = worker_for(api, worker_concurrency=10)
    assert await worker.claim_once() == 4  # short of the 10 asked: the list is dropped
    await worker.settle()
    await send(api, second, [{"type": "a.b", "data": {}}])
    assert await worker.claim_once() == 1
    await worker.settle()
    assert len(rcv_second.received) == 1
    assert len(rcv_first.received) == 4


async def test_a_slow_destinations_backlog_does_not_hold_back_another(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    slow = await receivers(delay=0.5)
    fast = await receivers()
    await setup_route(api, key, slow.url, name="slow", concurrency=1, route={"types": ["s.*"]})
    await setup_route(api, key, fast.url, name="fast", route={"types": ["f.*"]})
    # the slow destination's 30 come first, more than the worker holds at once
    await send(api, key, [{"type": "s.x", "data": {"i": i}} for i in range(30)])
    await send(api, key, [{"type": "f.x", "data": {"i": i}} for i in range(5)])
    worker = worker_for(api, worker_concurrency=10, worker_tenant_share=1.0)
    task = asyncio.create_task(worker.run())
    try:
        # the slow line needs 15 s for its 30 (one at a time, 0.5 s each): the fast ones must
        # not wait for it, however loaded the machine is
        deadline = time.monotonic() + 14
        while len(fast.received) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(fast.received) == 5
        assert len(slow.received) < 30
    finally:
        await worker.stop(grace=0.1)
        task.cancel()
    # what the slow line gave back is still queued, unsent, not lost
    _, listing, _ = await api.call("GET", "/v1/deliveries?status=sending", key)
    assert listing["data"] == []
    _, pending, _ = await api.call("GET", "/v1/deliveries?status=pending&limit=100", key)
    # nothing lost; the one send cut off by the stop may have reached the receiver and still be
    # queued again (at-least-once): at most one counted twice
    assert 30 <= len(pending["data"]) + len(slow.received) <= 31


def _held_by(callback: Any) -> list[Any]:
    """What a callback keeps alive: a partial's arguments, a closure's cells."""
    if isinstance(callback, functools.partial):
        return [*callback.args, *_held_by(callback.func)]
    cells = getattr(callback, "__closure__", None) or ()
    return [c.cell_contents for c in cells]


async def test_a_sent_attempt_waiting_for_its_commit_holds_only_the_delivery_id(
    hub_api: Api, receivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few hundred sends wait for each group commit: holding their events and replies until
    then kept them alive through the garbage collector's young generation (docs/delivery.md)."""
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    await send(api, key, [{"id": f"held-{n}", "type": "t.held", "data": {}} for n in range(3)])
    worker = worker_for(api, internal_events="")
    writer = worker.deliveries.writer
    submitted: list[tuple[Any, Any]] = []
    submit = writer.submit

    def watched(statements: Any, *args: Any) -> Any:
        submitted.append((statements, args[0] if args else None))
        return submit(statements, *args)

    monkeypatch.setattr(writer, "submit", watched)
    await worker.drain()
    assert len(rcv.received) == 3
    attempts = [done for sts, done in submitted if any("attempts" in q for q, _ in sts)]
    assert len(attempts) == 3
    for done in attempts:
        assert done is not None, "a success needs no future to wait on"
        held = _held_by(done)
        assert held and all(isinstance(x, str) or callable(x) for x in held), held
    _, listed, _ = await api.call("GET", "/v1/deliveries?status=succeeded", key)
    assert len(listed["data"]) == 3  # drain() returned after the commit


class _FailingWrites:
    """A store whose every write fails (set as the group writer's)."""

    async def batch_many(self, groups: Any) -> None:
        raise StoreError("the disk is full")

    async def batch(self, statements: Any) -> None:
        raise StoreError("the disk is full")


async def test_a_failed_attempt_write_is_logged_and_left_to_the_lease(
    hub_api: Api, receivers: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    await send(api, key, [{"id": "unwritten", "type": "t.x", "data": {}}])
    worker = worker_for(api, internal_events="")
    writer = worker.deliveries.writer
    monkeypatch.setattr(writer, "sql", _FailingWrites())
    caplog.set_level(logging.INFO, logger="switchboard.delivery")
    await worker.drain()
    assert len(rcv.received) == 1
    [failed] = [r for r in caplog.records if getattr(r, "action", None) == "attempt_write_failed"]
    _, deliveries, _ = await api.call("GET", "/v1/events/unwritten/deliveries", key)
    [d] = deliveries["data"]
    assert failed.delivery_id == d["id"] and "the disk is full" in failed.error
    assert d["status"] == "sending"  # its lease expires and it is sent again


async def test_with_debug_logging_each_success_is_logged_once_committed(
    hub_api: Api, receivers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    await send(api, key, [{"id": "logged", "type": "t.x", "data": {}}])
    caplog.set_level(logging.DEBUG, logger="switchboard.delivery")
    await worker_for(api, internal_events="").drain()
    [rec] = [r for r in caplog.records if getattr(r, "action", None) == "delivery_attempt"]
    assert rec.event_id == "logged" and rec.outcome == "succeeded" and rec.status_code == 200
