"""/metrics, /status, traces, delivery statistics and alerts, on both stores, against real
receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchboard.alerts import Alerts
from switchboard.config import Settings
from switchboard.delivery import Worker
from tests.conftest import LOOPBACK, Api, fresh_database, serve
from tests.integration.test_api_ingest import LEAD_TYPE
from tests.integration.test_delivery import send, setup_route

TOKEN = "metrics-token-for-tests"


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            run_worker=0,
            egress_allow=LOOPBACK,
            metrics_token=TOKEN,
            heartbeat_seconds=0.2,
            alert_interval=0,
        )
        async with serve(settings) as a:
            yield a


def worker(api: Api, **settings: Any) -> Worker:
    """A worker of the hub that counts into the hub's metrics (as `serve` builds it)."""
    assert api.hub.worker is not None
    s = Settings(**{**api.hub.settings.__dict__, **settings})
    return Worker(
        s, api.hub.store, api.hub.worker.channels, api.hub.routes, metrics=api.hub.metrics
    )


async def scrape(api: Api, key: str = TOKEN) -> dict[tuple[str, frozenset[Any]], float]:
    status, body, headers = await api.call("GET", "/metrics", key)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_was_sent_and_delivered(api: Api, receivers: Any) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    assert status == 200, body
    ok = await receivers()
    await setup_route(api, key, ok.url, name="ok", route={"types": ["lead.*"]})
    failing = await receivers(default=500)
    await setup_route(
        api, key, failing.url, name="bad", retry_schedule="0", route={"types": ["misc.*"]}
    )
    lead = {"type": "lead.created", "data": {"name": "Ana", "phone": "+55"}}
    sent = [
        {**lead, "id": "l1"},
        {**lead, "id": "l2"},
        {**lead, "id": "l3"},
        {"type": "lead.created", "data": {"name": 5}},  # rejected by the schema
        {"id": "m1", "type": "misc.thing", "data": {}},  # not in the catalog: `other`
        {"id": "m2", "type": "misc.other", "data": {}},
        {"data": {}},  # no type: rejected
    ]
    await send(api, key, sent)
    await send(api, key, [{**lead, "id": "l1"}])  # a duplicate

    before = await scrape(api)
    assert (
        value(before, "switchboard_ingest_events_total", outcome="accepted", type="lead.created")
        == 3
    )
    assert value(before, "switchboard_ingest_events_total", outcome="accepted", type="other") == 2
    assert (
        value(before, "switchboard_ingest_events_total", outcome="rejected", type="lead.created")
        == 1
    )
    assert value(before, "switchboard_ingest_events_total", outcome="rejected", type="other") == 1
    assert (
        value(before, "switchboard_ingest_events_total", outcome="duplicate", type="lead.created")
        == 1
    )
    assert not any(
        dict(labels).get("type") in ("misc.thing", "misc.other") for _, labels in before
    ), "a type outside the catalog must not name a series"
    # five deliveries are due and none has been tried
    assert value(before, "switchboard_backlog_due_deliveries") == 5
    assert value(before, "switchboard_backlog_oldest_due_seconds") >= 0
    assert value(before, "switchboard_dlq_deliveries") == 0
    ingest_requests = value(
        before,
        "switchboard_http_request_duration_seconds_count",
        method="POST",
        route="/v1/events",
        status="202",
    )
    assert ingest_requests == 2

    await worker(api).drain()
    after = await scrape(api, api.admin_key)  # an admin key may scrape too
    assert value(after, "switchboard_deliveries_total", status="succeeded", channel="webhook") == 3
    assert value(after, "switchboard_deliveries_total", status="dead", channel="webhook") == 2
    assert (
        value(after, "switchboard_attempt_duration_seconds_count", channel="webhook", ok="true")
        == 3
    )
    assert (
        value(after, "switchboard_attempt_duration_seconds_count", channel="webhook", ok="false")
        == 2
    )
    assert value(after, "switchboard_backlog_due_deliveries") == 0
    assert value(after, "switchboard_dlq_deliveries") == 2
    assert len(ok.received) == 3 and len(failing.received) == 2
    # the earlier scrape is itself counted, under its route template
    assert (
        value(
            after,
            "switchboard_http_request_duration_seconds_count",
            method="GET",
            route="/metrics",
            status="200",
        )
        >= 1
    )


async def test_tenant_labels_only_when_the_operator_asks(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        settings = Settings(
            database_url=url, key_rate=0, tenant_rate=0, run_worker=0, metrics_tenant_labels=1
        )
        async with serve(settings) as api:
            tenant, key = await api.tenant()
            await send(api, key, [{"type": "x.y", "data": {}}])
            samples = await scrape(api, api.admin_key)
            assert (
                value(
                    samples,
                    "switchboard_ingest_events_total",
                    tenant=tenant,
                    outcome="accepted",
                    type="other",
                )
                == 1
            )


@pytest.mark.security
async def test_only_operators_scrape_and_a_trace_stays_in_its_tenant(api: Api) -> None:
    _, key = await api.tenant()
    _, other = await api.tenant()
    for path in ("/metrics", "/status"):
        assert (await api.call("GET", path))[0] == 401, path
        assert (await api.call("GET", path, key))[0] == 403, path  # a tenant's key: no
        assert (await api.call("GET", path, "wrong-token"))[0] == 401, path
    await send(api, key, [{"id": "t1", "type": "a.b", "data": {}, "trace_id": "trace-1"}])
    assert (await api.call("GET", "/v1/traces/trace-1", key))[0] == 200
    status, body, _ = await api.call("GET", "/v1/traces/trace-1", other)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await api.call("GET", "/v1/traces/" + "x" * 300, key)
    assert status == 400 and "trace_id" in body["error"]["message"]
    status, body, _ = await api.call(
        "GET", "/v1/metrics/deliveries?from=2025-01-01T00:00:00Z&to=2025-06-01T00:00:00Z", key
    )
    assert status == 400 and "from" in body["error"]["message"]
    for query, where in (
        ("?from=yesterday", "?from"),
        ("?to=" + "9" * 65, "?to"),
        ("?destination_id=" + "d" * 201, "?destination_id"),
        ("?from=2025-06-01T00:00:00Z&to=2025-01-01T00:00:00Z", "?from"),
    ):
        status, body, _ = await api.call("GET", "/v1/metrics/deliveries" + query, key)
        assert status == 400, (query, body)
        assert [d["path"] for d in body["error"]["details"]] == [where], (query, body)


async def test_trace_is_one_timeline_in_time_order(api: Api, receivers: Any) -> None:
    _, key = await api.tenant()
    rcv = await receivers()
    rcv.answers = [500]  # the first attempt fails, the retry succeeds
    await setup_route(api, key, rcv.url, retry_schedule="0,0")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    await send(api, key, [{"id": "c1", "type": "order.placed", "data": {}, "trace_id": trace}])
    await send(api, key, [{"id": "c2", "type": "order.paid", "data": {}, "trace_id": trace}])
    await send(api, key, [{"id": "n1", "type": "order.paid", "data": {}}])  # another trace
    w = worker(api)
    await w.drain()
    await w.drain()  # the retry is due at once
    status, body, _ = await api.call("GET", f"/v1/traces/{trace}", key)
    assert status == 200, body
    # the hub's own delivery events carry the trace too: one per attempt
    assert (body["events"], body["deliveries"], body["attempts"]) == (5, 2, 3)
    kinds = [i["kind"] for i in body["timeline"]]
    assert kinds.count("event") == 5 and kinds.count("attempt") == 3
    # parsed: a whole second is written without a fraction, so the strings do not sort
    times = [datetime.fromisoformat(i["at"]) for i in body["timeline"]]
    assert times == sorted(times)
    events = [i["event"] for i in body["timeline"] if i["kind"] == "event"]
    assert [e["id"] for e in events[:2]] == ["c1", "c2"]
    assert sorted(e["type"] for e in events[2:]) == [
        "switchboard.delivery_failed",
        "switchboard.delivery_succeeded",
        "switchboard.delivery_succeeded",
    ]
    assert kinds.index("delivery") > kinds.index("event")
    attempts = [i["attempt"] for i in body["timeline"] if i["kind"] == "attempt"]
    assert [a["ok"] for a in attempts] == [False, True, True]


async def test_delivery_stats_per_destination_and_type(api: Api, receivers: Any) -> None:
    _, key = await api.tenant()
    rcv = await receivers()
    rcv.answers = [500, 500]  # two failures, then successes
    dest = await setup_route(api, key, rcv.url, retry_schedule="0,0,0")
    await send(api, key, [{"id": f"s{i}", "type": "a.b", "data": {}} for i in range(3)])
    await send(api, key, [{"id": "z", "type": "c.d", "data": {}}])
    w = worker(api, worker_concurrency=1)
    for _ in range(4):
        await w.drain()
    status, body, _ = await api.call("GET", "/v1/metrics/deliveries", key)
    assert status == 200, body
    rows = {r["type"]: r for r in body["data"]}
    assert set(rows) == {"a.b", "c.d"}
    total = sum(r["attempts"] for r in rows.values())
    assert total == 6  # four deliveries, two of them retried once
    assert sum(r["succeeded"] for r in rows.values()) == 4
    assert sum(r["retries"] for r in rows.values()) == 2
    for r in rows.values():
        assert r["destination_id"] == dest["id"]
        assert r["success_rate"] == round(r["succeeded"] / r["attempts"], 4)
        assert 0 <= r["latency_ms"]["p50"] <= r["latency_ms"]["p95"]
    status, body, _ = await api.call("GET", "/v1/metrics/deliveries?destination_id=nope", key)
    assert status == 200 and body["data"] == []


async def test_event_metrics_by_the_minute(api: Api) -> None:
    _, key = await api.tenant()
    await send(
        api,
        key,
        [
            {"type": "a.b", "data": {}, "time": "2025-03-01T10:00:05Z"},
            {"type": "a.b", "data": {}, "time": "2025-03-01T10:00:55Z"},
            {"type": "a.b", "data": {}, "time": "2025-03-01T10:01:00Z"},
        ],
    )
    status, body, _ = await api.call(
        "GET",
        "/v1/metrics/events?granularity=minute&from=2025-03-01T10:00:00Z&to=2025-03-01T11:00:00Z",
        key,
    )
    assert status == 200, body
    assert [(b["start"][11:16], b["total"]) for b in body["buckets"]] == [
        ("10:00", 2),
        ("10:01", 1),
    ]


async def until(predicate: Any, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_status_needs_a_live_worker_and_health_shows_the_backlog(api: Api) -> None:
    status, body, _ = await api.call("GET", "/status", TOKEN)
    assert status == 503, body
    assert body["components"]["workers"] == {"ok": False, "alive": 0}
    assert body["components"]["store"]["ok"] is True
    w = worker(api)
    task = asyncio.create_task(w.run())

    async def alive() -> bool:
        s, b, _ = await api.call("GET", "/status", TOKEN)
        return bool(s == 200 and b["components"]["workers"]["alive"] == 1)

    try:
        await until(alive, "the worker's heartbeat")
    finally:
        await w.stop()
        await asyncio.wait_for(task, 60)
    # a stopped worker removes its row: nothing is alive again
    status, body, _ = await api.call("GET", "/status", TOKEN)
    assert status == 503 and body["components"]["workers"]["alive"] == 0

    _, key = await api.tenant()
    await setup_route(api, key, "http://127.0.0.1:9/hook")
    await send(api, key, [{"type": "a.b", "data": {}}, {"type": "a.c", "data": {}}])
    status, body, _ = await api.call("GET", "/health/detailed", api.admin_key)
    assert status == 200 and body["backlog"]["due"] == 2
    status, body, _ = await api.call("GET", "/health/detailed")  # anyone: nothing countable
    assert status == 200 and "backlog" not in body


async def test_status_reports_dlq_growth(api: Api, receivers: Any) -> None:
    _, key = await api.tenant()
    rcv = await receivers(default=500)
    await setup_route(api, key, rcv.url, retry_schedule="0")
    await send(api, key, [{"type": "a.b", "data": {}} for _ in range(10)])
    await worker(api).drain()
    status, body, _ = await api.call("GET", "/status", TOKEN)
    assert status == 503
    assert body["components"]["dlq"]["ok"] is False
    assert body["components"]["dlq"]["size"] == 10 and body["components"]["dlq"]["growth"] == 10


async def test_alerts_fire_once_per_episode_then_resolve_through_routes(
    api: Api, receivers: Any
) -> None:
    _, key = await api.tenant()
    slow = await receivers()
    await setup_route(api, key, slow.url, name="work", route={"types": ["job.*"]})
    alerts_rcv = await receivers()
    await setup_route(
        api, key, alerts_rcv.url, name="ops", route={"types": ["switchboard.alert.*"]}
    )
    # a tenant over the threshold with no route for alerts: nothing is stored for it
    _, unheard = await api.tenant()
    await setup_route(api, unheard, slow.url, name="work", route={"types": ["job.*"]})
    await send(api, unheard, [{"type": "job.run", "data": {}} for _ in range(5)])
    await send(api, key, [{"type": "job.run", "data": {"n": i}} for i in range(3)])
    alerts = Alerts(
        api.hub, Settings(**{**api.hub.settings.__dict__, "alert_backlog": 3, "alert_interval": 1})
    )
    assert await alerts.check() == ["switchboard.alert.backlog_high"]
    assert await alerts.check() == []  # still firing: the episode alerts once
    await worker(api).drain()  # the backlog and the alert itself are sent
    assert await alerts.check() == ["switchboard.alert.resolved"]
    assert await alerts.check() == []
    await worker(api).drain()
    types = [r["json"]["type"] for r in alerts_rcv.received]
    assert types == ["switchboard.alert.backlog_high", "switchboard.alert.resolved"]
    fired, resolved = (r["json"] for r in alerts_rcv.received)
    assert fired["data"]["value"] == 3 and fired["data"]["threshold"] == 3
    assert resolved["data"]["alert"] == "backlog_high"
    assert resolved["data"]["alert_event_id"] == fired["id"]
    _, listing, _ = await api.call("GET", "/v1/events?type=switchboard.alert.*", unheard)
    assert listing["data"] == []


async def test_an_episode_opens_once_when_processes_race(api: Api) -> None:
    tenant, _ = await api.tenant()
    obs = api.hub.observe
    won = await asyncio.gather(
        *(obs.open_episode(tenant, "dlq_growth", 1, 5.0, f"ev{i}") for i in range(8))
    )
    assert sum(won) == 1
    closed = await asyncio.gather(*(obs.close_episode(tenant, "dlq_growth") for _ in range(4)))
    assert sum(1 for c in closed if c is not None) == 1
