"""Keys limited inside a tenant: a key's `constraints` (a filter pattern) bound every event it
sends and narrow every read it makes, on both stores — checked on each read path the way tenant
isolation is."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.integration.conftest import worker_for

CLINIC = {"context": {"clinic_id": ["c-17"]}}


def event(event_id: str, clinic: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "visit.done",
        "subject": "p-1",
        "actor": {"id": "a-1", "type": "user"},
        "context": {"clinic_id": clinic},
        "data": {},
        **extra,
    }


async def constrained_key(api: Api, manage: str, **body: Any) -> str:
    status, created, _ = await api.call(
        "POST",
        "/v1/keys",
        manage,
        {
            "name": "clinic-17",
            "scopes": ["ingest", "read", "manage"],
            "constraints": CLINIC,
            **body,
        },
    )
    assert status == 201, created
    assert created["constraints"] == CLINIC
    return str(created["key"])


async def test_a_constrained_key_sends_only_events_inside_its_constraints(hub_api: Api) -> None:
    api = hub_api
    _, manage = await api.tenant()
    mine = await constrained_key(api, manage)
    status, body, _ = await api.call("POST", "/v1/events", mine, [event("x1", "c-18")])
    assert status == 422
    message = body["results"][0]["errors"][0]["message"]
    assert "constraints" in message and "clinic_id" in message
    status, body, _ = await api.call(
        "POST", "/v1/events", mine, [event("x2", "c-17"), event("x3", "c-18"), event("x4", "")]
    )
    assert status == 202
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "rejected"]
    status, body, _ = await api.call("POST", "/v1/events", mine, {"type": "visit.done", "data": {}})
    assert status == 422  # an event without the field does not satisfy the constraints either
    _, listing, _ = await api.call("GET", "/v1/events", manage)
    assert [e["id"] for e in listing["data"]] == ["x2"]


async def test_every_read_of_a_constrained_key_sees_only_its_part(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, manage = await api.tenant()
    mine = await constrained_key(api, manage)
    failing = await receivers(default=500)
    for dest in (
        {"name": "hook", "kind": "webhook", "config": {"url": failing.url}, "retry_schedule": "0"},
        {"name": "bell", "kind": "inbox", "config": {"recipient": "ops"}},
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", manage, dest)
        assert status == 201, body
    route = {"name": "all", "types": ["visit.*"], "destinations": ["hook", "bell"]}
    assert (await api.call("POST", "/v1/routes", manage, route))[0] == 201
    events = [event("in", "c-17"), event("out", "c-18")]
    assert (await api.call("POST", "/v1/events", manage, events))[0] == 202
    await worker_for(api).drain()

    async def get(path: str, key: str = mine) -> Any:
        status, body, _ = await api.call("GET", path, key)
        assert status == 200, (path, body)
        return body

    # the unconstrained key sees both clinics; the constrained one, only its own
    assert len((await get("/v1/events?type=visit.*", manage))["data"]) == 2
    assert [e["id"] for e in (await get("/v1/events"))["data"]] == ["in"]
    assert [e["id"] for e in (await get("/v1/events?filter=%7B%7D"))["data"]] == ["in"]
    assert [e["id"] for e in (await get("/v1/subjects/p-1/timeline"))["data"]] == ["in"]
    assert [e["id"] for e in (await get("/v1/actors/a-1/timeline"))["data"]] == ["in"]
    assert (await api.call("GET", "/v1/events/out", mine))[0] == 404
    assert (await get("/v1/events/in"))["id"] == "in"
    metrics = await get("/v1/metrics/events")
    assert sum(b["total"] for b in metrics["buckets"]) == 1  # not even the hub's own events
    assert (await api.call("GET", "/v1/events/out/deliveries", mine))[0] == 404
    assert len((await get("/v1/events/in/deliveries"))["data"]) == 2

    every = (await get("/v1/deliveries", manage))["data"]
    assert len(every) == 4
    theirs = [d["id"] for d in every if d["event"]["id"] == "out"]
    seen = (await get("/v1/deliveries"))["data"]
    assert {d["event"]["id"] for d in seen} == {"in"} and len(seen) == 2
    for delivery_id in theirs:
        assert (await api.call("GET", f"/v1/deliveries/{delivery_id}", mine))[0] == 404
        assert (await api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", mine))[0] == 404
        status, _, _ = await api.call("POST", f"/v1/deliveries/{delivery_id}/retry", mine)
        assert status == 404

    dead_all = (await get("/v1/dlq", manage))["data"]
    assert {d["event"]["id"] for d in dead_all} == {"in", "out"}
    assert [d["event"]["id"] for d in (await get("/v1/dlq"))["data"]] == ["in"]
    assert (await get("/v1/dlq/stats"))["total"] == 1
    assert (await get("/v1/dlq/stats", manage))["total"] == 2
    their_dead = [d["id"] for d in dead_all if d["event"]["id"] == "out"]
    status, body, _ = await api.call("POST", "/v1/dlq/retry", mine, {"ids": their_dead})
    assert status == 200 and body["requeued"] == 0
    status, body, _ = await api.call("POST", "/v1/dlq/archive", mine, {"ids": their_dead})
    assert status == 200 and body["archived"] == 0

    assert len((await get("/v1/inbox/ops", manage))["data"]) == 2
    assert len((await get("/v1/inbox/ops"))["data"]) == 1

    status, dry, _ = await api.call("POST", "/v1/replays", mine, {"dry_run": True})
    assert status == 200 and dry["events"] == 1
    status, dry, _ = await api.call(
        "POST", "/v1/replays", mine, {"dry_run": True, "filter": {"subject": ["p-1"]}}
    )
    assert status == 200 and dry["events"] == 1
    everything = {"dry_run": True, "types": ["visit.*"]}
    status, dry, _ = await api.call("POST", "/v1/replays", manage, everything)
    assert dry["events"] == 2


async def test_a_constrained_key_makes_only_keys_as_narrow_as_itself(hub_api: Api) -> None:
    api = hub_api
    _, manage = await api.tenant()
    mine = await constrained_key(api, manage)
    status, body, _ = await api.call("POST", "/v1/keys", mine, {"scopes": ["read"]})
    assert status == 201 and body["constraints"] == CLINIC  # inherited
    status, body, _ = await api.call(
        "POST",
        "/v1/keys",
        mine,
        {"scopes": ["read"], "constraints": {"context": {"clinic_id": ["c-18"]}}},
    )
    assert status == 403 and body["error"]["details"][0]["path"] == "/constraints"


@pytest.mark.security
@pytest.mark.parametrize(
    ("constraints", "why"),
    [
        ("c-17", "object"),  # the typed key model refuses it
        ({}, "length >= 1"),
        ({"context": {"ip": [{"cidr": "10.0.0.0/8"}]}}, "cidr"),
        ({"context": {"a": [{"wildcard": "*" * 600}]}}, "512"),
        ({"context": {"a": list(range(101))}}, "100"),
        ({"$where": ["x"]}, "unknown operator"),
    ],
)
async def test_bad_constraints_are_refused_naming_the_field(
    sqlite_api: Api, constraints: Any, why: str
) -> None:
    """Constraints are tenant input: the pattern guards of routes apply, and a pattern SQL cannot
    answer exactly (which every read would need) is refused up front."""
    _, manage = await sqlite_api.tenant()
    status, body, _ = await sqlite_api.call(
        "POST", "/v1/keys", manage, {"scopes": ["read"], "constraints": constraints}
    )
    assert status == 400, body
    assert body["error"]["details"][0]["path"] == "/constraints"
    assert why in str(body["error"]), body


async def test_segment_calls_of_a_constrained_key_are_bounded_too(hub_api: Api) -> None:
    api = hub_api
    _, manage = await api.tenant()
    mine = await constrained_key(api, manage)
    batch = {
        "batch": [
            {
                "type": "track",
                "event": "Visit Done",
                "userId": "p-1",
                "messageId": "s1",
                "context": {"clinic_id": "c-17"},
            },
            {
                "type": "track",
                "event": "Visit Done",
                "userId": "p-1",
                "messageId": "s2",
                "context": {"clinic_id": "c-18"},
            },
        ]
    }
    status, body, _ = await api.call("POST", "/v1/batch", mine, batch)
    assert status == 200, body  # Segment's clients read only success; the log says the rest
    _, listing, _ = await api.call("GET", "/v1/events", manage)
    assert [e["id"] for e in listing["data"]] == ["s1"]
