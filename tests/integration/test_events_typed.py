"""The event, catalog and Segment endpoints read their parameters through their models: each
guard refuses with a 400 (or the catalog's 422) naming what to fix, on both stores."""

from __future__ import annotations

import copy

import msgspec
import pytest

from switchboard.api.event_shapes import IngestResponse
from tests.conftest import Api
from tests.integration.test_api_ingest import LEAD_TYPE

LONG = "x" * 201


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=0", "?limit"),
        ("limit=1001", "?limit"),
        ("limit=ten", "?limit"),
        ("status=lost", "?status"),
        (f"source={LONG}", "?source"),
        (f"subject={LONG}", "?subject"),
        (f"actor={LONG}", "?actor"),
        (f"trace_id={LONG}", "?trace_id"),
        (f"cursor={LONG}", "?cursor"),
        ("cursor=not-one", "?cursor"),
        ("from=yesterday", "?from"),
        ("type=" + ",".join(f"t{i}" for i in range(101)), "?type"),
        ("type=Billing", "?type"),
        ("filter=" + "x" * 8193, "?filter"),
    ],
)
async def test_a_bad_listing_parameter_is_a_400_naming_it(api: Api, query: str, name: str) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", f"/v1/events?{query}", key)
    assert status == 400, body
    assert body["error"]["details"][0]["path"] == name, body


async def test_timelines_and_lookups_bound_their_path_parameters(api: Api) -> None:
    _, key = await api.tenant()
    for path, name in (
        (f"/v1/subjects/{LONG}/timeline", "subject"),
        (f"/v1/actors/{LONG}/timeline", "actor"),
        (f"/v1/events/{LONG}", "event_id"),
    ):
        status, body, _ = await api.call("GET", path, key)
        assert status == 400, (path, body)
        assert body["error"]["details"][0]["path"] == name, body


async def test_metrics_refuse_an_unknown_granularity_and_a_backward_range(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", "/v1/metrics/events?granularity=week", key)
    assert status == 400 and body["error"]["details"][0]["path"] == "?granularity", body
    backward = "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"
    status, body, _ = await api.call("GET", f"/v1/metrics/events?{backward}", key)
    assert status == 400 and body["error"]["details"][0]["path"] == "?from", body


async def test_an_idempotency_key_over_255_characters_is_a_400_naming_the_header(
    api: Api,
) -> None:
    _, key = await api.tenant(unknown_types="accept")
    event = {"type": "a", "data": {}}
    headers = {"Idempotency-Key": "k" * 256}
    status, body, _ = await api.call("POST", "/v1/events", key, event, headers=headers)
    assert status == 400, body
    assert body["error"]["details"][0]["path"] == "Idempotency-Key"
    status, body, _ = await api.call(
        "POST", "/v1/events", key, event, headers={"Idempotency-Key": "k" * 255}
    )
    assert status == 202, body


async def test_the_ingest_answer_is_the_published_model(api: Api) -> None:
    _, key = await api.tenant(unknown_types="accept")
    batch = [
        {"id": "a1", "type": "a", "data": {}},
        {"type": "A"},
        {"id": "a1", "type": "a", "data": {}},
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, batch)
    assert status == 202, body
    answer = msgspec.convert(body, IngestResponse)
    assert [r.status for r in answer.results] == ["accepted", "rejected", "duplicate"]


async def test_legacy_shapes_refuse_a_context_or_clinic_that_is_not_what_they_say(
    api: Api,
) -> None:
    _, key = await api.tenant(unknown_types="accept")
    batch = [
        {"eventType": "a", "context": [1]},
        {"eventType": "a", "clinicId": {"x": 1}},
        {"type": "a", "data": {}, "actor": ""},
        {"eventType": "a", "clinicId": 7, "actor": "clinic"},
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, batch)
    assert status == 202, body
    assert [r["status"] for r in body["results"]] == [
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert [r["errors"][0]["path"] for r in body["results"][:3]] == [
        "/context",
        "/clinicId",
        "/actor",
    ]


async def test_an_event_type_of_the_wrong_shape_is_a_422_naming_the_field(api: Api) -> None:
    _, key = await api.tenant()
    for field, value in (("versions", []), ("pii", "email"), ("description", "d" * 10_001)):
        bad = copy.deepcopy(LEAD_TYPE)
        bad[field] = value
        status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, bad)
        assert status == 422, (field, body)
        assert body["error"]["details"][0]["path"] == f"/{field}", body
    status, body, _ = await api.call(
        "PUT", "/v1/event-types/lead.created?shared=maybe", key, LEAD_TYPE
    )
    assert status == 400 and body["error"]["details"][0]["path"] == "?shared", body


async def test_a_type_read_back_can_be_put_back(api: Api) -> None:
    _, key = await api.tenant()
    status, stored, _ = await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    assert status == 200 and stored["indexed"] == [], stored
    status, got, _ = await api.call("GET", "/v1/event-types/lead.created", key)
    assert status == 200 and "indexed" not in got, got
    assert got["scope"] == "tenant" and got["owner"] == "growth" and got["mode"] == "enforce"
    status, again, _ = await api.call("PUT", "/v1/event-types/lead.created", key, got)
    assert status == 200, again
