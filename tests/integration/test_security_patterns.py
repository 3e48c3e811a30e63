"""A hostile tenant's filter patterns through the API: a wildcard that backtracks in a regex is
matched without stalling ingest, and oversized patterns are refused where they enter, naming the
limit and the path (docs/security.md, "Filter patterns")."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security

EVIL = "*a*a*a*a*a*a*a*a*a*a*a*a*b"


async def _route(api: Api, key: str, pattern: Any) -> tuple[int, Any]:
    status, d, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    )
    assert status in (201, 422), d
    status, body, _ = await api.call(
        "POST", "/v1/routes", key, {"name": "r", "destinations": ["hook"], "filter": pattern}
    )
    return status, body


async def test_backtracking_wildcard_route_is_accepted_and_ingest_still_answers(
    hub_api: Api,
) -> None:
    api = hub_api
    _, key = await api.tenant()
    _, other = await api.tenant()
    status, body = await _route(api, key, {"data.s": [{"wildcard": EVIL}]})
    assert status == 201, body
    # on the old matcher (a regex), the first event never came back: the loop was stuck in it
    events = [
        {"id": "miss-31", "type": "t.x", "data": {"s": "a" * 31}},
        {"id": "miss", "type": "t.x", "data": {"s": "a" * 10_000}},
        {"id": "hit", "type": "t.x", "data": {"s": "a" * 10_000 + "b"}},
    ]
    status, answer, _ = await api.call("POST", "/v1/events", key, events)
    assert status == 202, answer
    status, answer, _ = await api.call("POST", "/v1/events", other, [{"type": "t.y", "data": {}}])
    assert status == 202, answer
    status, _, _ = await api.call("GET", "/health")
    assert status == 200
    routed = []
    for event in events:
        status, listing, _ = await api.call("GET", f"/v1/events/{event['id']}/deliveries", key)
        assert status == 200, listing
        routed += [event["id"]] * len(listing["data"])
    assert routed == ["hit"]
    # the SQL side (listings) agrees with the matcher on both stores
    query = quote(json.dumps({"data.s": [{"wildcard": EVIL}]}))
    status, found, _ = await api.call("GET", f"/v1/events?filter={query}", key)
    assert status == 200, found
    assert [e["id"] for e in found["data"]] == ["hit"]


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaf": [1]}
    for i in range(depth - 1):
        spec = {f"k{i}": spec}
    return {"data": spec}


LIMITED = [
    (_nested(11), "limit max_depth"),
    ({"data.x": list(range(101))}, "data.x: 101 alternatives; at most 100"),
    ({"$or": [{"data.a": [i]} for i in range(101)]}, "limit max_alternatives"),
    ({"data.x": [{"wildcard": "*a" * 300}]}, "data.x[0].wildcard: a string of 600 characters"),
    ({f"data.f{i}": list(range(100)) for i in range(11)}, "limit max_nodes"),
]


@pytest.mark.parametrize(("pattern", "message"), LIMITED)
async def test_oversized_route_filter_is_a_422_naming_the_limit(
    api: Api, pattern: dict[str, Any], message: str
) -> None:
    _, key = await api.tenant()
    status, body = await _route(api, key, pattern)
    assert status == 422, body
    assert body["error"]["details"][0]["path"] == "/filter"
    assert message in body["error"]["details"][0]["message"]
    status, routes, _ = await api.call("GET", "/v1/routes", key)
    assert routes["data"] == []


@pytest.mark.parametrize(("pattern", "message"), LIMITED[:4])
async def test_oversized_query_filter_is_a_400_naming_the_parameter(
    api: Api, pattern: dict[str, Any], message: str
) -> None:
    _, key = await api.tenant()
    query = quote(json.dumps(pattern))
    for path in ("/v1/events", "/v1/deliveries", "/v1/dlq"):
        status, body, _ = await api.call("GET", f"{path}?filter={query}", key)
        assert status == 400, (path, body)
        assert message in body["error"]["message"]
        assert body["error"]["details"][0]["path"] == "?filter"


async def test_deeply_nested_query_filter_is_a_400_not_a_500(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", "/v1/events?filter=" + "%5B" * 5000, key)
    assert status == 400, body
    assert "limit max_depth" in body["error"]["message"]


async def test_oversized_replay_filter_is_a_422(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/replays",
        key,
        {"from": "2025-01-01T00:00:00Z", "filter": {"data.x": [{"prefix": "p" * 513}]}},
    )
    assert status == 422, body
    assert "limit max_string" in body["error"]["message"]


async def test_oversized_type_glob_in_a_route_is_a_400(api: Api) -> None:
    _, key = await api.tenant()
    await _route(api, key, None)
    status, body, _ = await api.call(
        "POST", "/v1/routes", key, {"name": "g", "destinations": ["hook"], "types": ["a" * 201]}
    )
    assert status == 400, body
    assert [d["path"] for d in body["error"]["details"]] == ["/types/0"], body
    assert "length <= 200" in body["error"]["message"]
