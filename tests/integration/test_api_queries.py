"""Queries, timelines, metrics, the catalog API and validation modes, on both stores."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import Api
from tests.integration.test_api_ingest import LEAD_TYPE


def ev(i: int, **kw: Any) -> dict[str, Any]:
    base = {
        "id": f"e{i:03d}",
        "type": "billing.paid",
        "data": {"n": i},
        "time": f"2025-03-01T{i % 24:02d}:00:00Z",
    }
    base.update(kw)
    return base


async def _seed(api: Api, key: str) -> None:
    batch = [ev(i) for i in range(10)]
    batch += [ev(i, type="billing.refunded", subject="cust-1") for i in range(10, 15)]
    batch += [
        ev(
            i,
            type="lead.created",
            source="site",
            actor={"id": "u9", "type": "user"},
            trace_id="trace-x",
            correlation_id="corr-y",
        )
        for i in range(15, 20)
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, batch)
    assert status == 202 and body["accepted"] == 20


async def test_listing_filters(api: Api) -> None:
    _, key = await api.tenant()
    await _seed(api, key)

    async def ids(query: str) -> list[str]:
        status, body, _ = await api.call("GET", "/v1/events?limit=1000&" + query, key)
        assert status == 200, body
        return [e["id"] for e in body["data"]]

    assert len(await ids("type=billing.*")) == 15
    assert len(await ids("type=billing.refunded")) == 5
    assert len(await ids("type=billing.refunded,lead.created")) == 10
    assert len(await ids("source=site")) == 5
    assert len(await ids("subject=cust-1")) == 5
    assert len(await ids("actor=u9")) == 5
    assert len(await ids("trace_id=trace-x")) == 5
    assert len(await ids("correlation_id=corr-y")) == 5
    window = await ids("from=2025-03-01T02:00:00Z&to=2025-03-01T05:00:00Z")
    assert sorted(window) == ["e002", "e003", "e004"]
    newest_first = await ids("")
    assert newest_first[0] == "e019" and newest_first[-1] == "e000"


async def test_bad_query_parameters_are_400_naming_the_parameter(api: Api) -> None:
    _, key = await api.tenant()
    for query, word in (
        ("limit=5000", "limit"),
        ("limit=abc", "limit"),
        ("from=yesterday", "from"),
        ("cursor=%%%", "cursor"),
    ):
        status, body, _ = await api.call("GET", "/v1/events?" + query, key)
        assert status == 400, query
        assert word in body["error"]["message"]
    status, body, _ = await api.call("GET", "/v1/metrics/events?granularity=week", key)
    assert status == 400 and "granularity" in body["error"]["message"]


async def test_type_globs_are_lowercase_on_both_stores(api: Api) -> None:
    """Stored types are lowercase. SQLite's LIKE ignores case where PostgreSQL's does not, so
    `Billing.*` listed every billing event on SQLite and none on PostgreSQL; it is a 400 now,
    naming the parameter, on listings of events and deliveries and in a replay."""
    _, key = await api.tenant()
    await _seed(api, key)
    status, body, _ = await api.call("GET", "/v1/events?type=billing.*", key)
    assert status == 200 and len(body["data"]) == 15
    status, body, _ = await api.call("GET", "/v1/events?type=lead.created,bill?ng.paid", key)
    assert status == 200 and len(body["data"]) == 15
    for path in ("/v1/events?type=Billing.*", "/v1/events?type=lead.*,x%5By%5D"):
        status, body, _ = await api.call("GET", path, key)
        assert status == 400, path
        assert body["error"]["details"][0]["path"] == "?type", body
    status, body, _ = await api.call("GET", "/v1/deliveries?type=BILLING.PAID", key)
    assert status == 400 and body["error"]["details"][0]["path"] == "?type", body
    replay = {"types": ["billing.*", "Lead.*"], "dry_run": True}
    status, body, _ = await api.call("POST", "/v1/replays", key, replay)
    assert status == 400, body
    assert [d["path"] for d in body["error"]["details"]] == ["/types/1"], body


async def test_cursor_pagination_has_no_gaps_or_repeats(api: Api) -> None:
    _, key = await api.tenant()
    await _seed(api, key)
    seen: list[str] = []
    path = "/v1/events?limit=7"
    while True:
        _, body, _ = await api.call("GET", path, key)
        seen += [e["id"] for e in body["data"]]
        if not body["next_cursor"]:
            break
        path = f"/v1/events?limit=7&cursor={body['next_cursor']}"
    assert len(seen) == 20 and len(set(seen)) == 20


async def test_subject_and_actor_timelines(api: Api) -> None:
    _, key = await api.tenant()
    await _seed(api, key)
    _, body, _ = await api.call("GET", "/v1/subjects/cust-1/timeline?limit=2", key)
    assert [e["id"] for e in body["data"]] == ["e014", "e013"]
    _, body2, _ = await api.call(
        "GET", f"/v1/subjects/cust-1/timeline?limit=10&cursor={body['next_cursor']}", key
    )
    assert [e["id"] for e in body2["data"]] == ["e012", "e011", "e010"]
    _, body, _ = await api.call("GET", "/v1/actors/u9/timeline", key)
    assert len(body["data"]) == 5


async def test_metrics_count_by_type_and_outcome(api: Api) -> None:
    _, key = await api.tenant()
    await _seed(api, key)
    _, body, _ = await api.call(
        "GET",
        "/v1/metrics/events?granularity=day&from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z",
        key,
    )
    assert len(body["buckets"]) == 1
    day = body["buckets"][0]
    assert day["start"] == "2025-03-01T00:00:00Z" and day["total"] == 20
    assert day["by_type"]["billing.paid"] == {"total": 10, "by_outcome": {"accepted": 10}}
    _, hourly, _ = await api.call(
        "GET",
        "/v1/metrics/events?granularity=hour&from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z",
        key,
    )
    assert len(hourly["buckets"]) == 20
    assert all(b["total"] == 1 for b in hourly["buckets"])


async def test_catalog_api_enforce_rejects_with_paths(api: Api) -> None:
    _, key = await api.tenant(unknown_types="reject")
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    assert status == 200, body
    status, body, _ = await api.call("GET", "/v1/event-types", key)
    assert [t["name"] for t in body["data"]] == ["lead.created"]
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [
            {"type": "lead.created", "data": {"name": "Ana", "phone": "+55"}},
            {"type": "lead.created", "data": {"name": 5}},
            {"type": "lead.unknown", "data": {}},
        ],
    )
    assert status == 202
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    paths = {e["path"] for e in body["results"][1]["errors"]}
    assert paths == {"/data/name", "/data/phone"}
    assert body["results"][2]["errors"][0]["path"] == "/type"
    _, stored, _ = await api.call("GET", f"/v1/events/{body['results'][0]['id']}", key)
    assert stored["version"] == "1.0"


async def test_catalog_breaking_change_needs_new_major(api: Api) -> None:
    _, key = await api.tenant()
    await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    breaking = copy.deepcopy(LEAD_TYPE)
    v11 = copy.deepcopy(breaking["versions"][0])
    v11["version"] = "1.1"
    v11["schema"]["required"] = ["name", "phone", "email"]
    breaking["versions"].append(v11)
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, breaking)
    assert status == 409, body
    assert body["error"]["details"]
    v11["version"] = "2.0"
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, breaking)
    assert status == 200, body
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [
            {"type": "lead.created", "version": "1", "data": {"name": "A", "phone": "1"}},
            {"type": "lead.created", "data": {"name": "A", "phone": "1"}},
            {"type": "lead.created", "version": "7", "data": {}},
        ],
    )
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    assert body["results"][2]["errors"][0]["path"] == "/version"


async def test_bad_event_type_body_is_422_naming_the_field(api: Api) -> None:
    _, key = await api.tenant()
    bad = copy.deepcopy(LEAD_TYPE)
    bad["mode"] = "sometimes"
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, bad)
    assert status == 422
    assert "mode" in body["error"]["message"]


async def test_warn_mode_accepts_and_flags(api: Api) -> None:
    _, key = await api.tenant()
    warn = {**copy.deepcopy(LEAD_TYPE), "mode": "warn"}
    await api.call("PUT", "/v1/event-types/lead.created", key, warn)
    status, body, _ = await api.call(
        "POST", "/v1/events", key, {"id": "w1", "type": "lead.created", "data": {}}
    )
    assert status == 202
    assert body["results"][0]["validation"] == "warned"
    assert body["results"][0]["warnings"]
    _, stored, _ = await api.call("GET", "/v1/events/w1", key)
    assert stored["status"] == "warned" and stored["validation_errors"]


async def test_quarantine_stores_aside_and_resubmits_after_fix(api: Api) -> None:
    _, key = await api.tenant()
    q = {**copy.deepcopy(LEAD_TYPE), "mode": "quarantine"}
    await api.call("PUT", "/v1/event-types/lead.created", key, q)
    _, body, _ = await api.call(
        "POST", "/v1/events", key, {"id": "q1", "type": "lead.created", "data": {"name": "Ana"}}
    )
    assert body["results"][0]["validation"] == "quarantined"
    _, listing, _ = await api.call("GET", "/v1/quarantine", key)
    assert [e["id"] for e in listing["data"]] == ["q1"]
    status, body, _ = await api.call("POST", "/v1/quarantine/q1/resubmit", key)
    assert status == 422  # still invalid
    fixed = copy.deepcopy(q)
    v2 = copy.deepcopy(fixed["versions"][0])
    v2["version"] = "2.0"
    v2["schema"]["required"] = ["name"]
    fixed["versions"].append(v2)
    assert (await api.call("PUT", "/v1/event-types/lead.created", key, fixed))[0] == 200
    status, body, _ = await api.call("POST", "/v1/quarantine/q1/resubmit", key)
    assert status == 200 and body["status"] == "accepted" and body["version"] == "2.0"
    _, listing, _ = await api.call("GET", "/v1/quarantine", key)
    assert listing["data"] == []


async def test_unknown_type_policy(api: Api) -> None:
    _, strict = await api.tenant(unknown_types="reject")
    _, loose = await api.tenant(unknown_types="accept")
    ev_ = {"type": "never.declared", "data": {}}
    assert (await api.call("POST", "/v1/events", strict, ev_))[0] == 422
    assert (await api.call("POST", "/v1/events", loose, ev_))[0] == 202
