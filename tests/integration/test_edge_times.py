"""Event times outside what a calendar can name, on both stores: every wire form refuses them with
the field's path, and a row that holds one anyway (stored before the check) never breaks a read."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from switchboard.envelope import Event, new_id, now_us
from switchboard.records import NewDelivery
from tests.conftest import Api
from tests.integration.test_sources import _source, _tenant

pytestmark = pytest.mark.security

LATE = "9999-12-31T23:59:59-12:00"  # year 10000 in UTC
EARLY = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
OUT_OF_RANGE = pytest.mark.parametrize("when", [LATE, EARLY])


async def _reads_answer(api: Api, key: str) -> None:
    for path in ("/v1/events", "/v1/deliveries", "/v1/quarantine"):
        status, body, _ = await api.call("GET", path, key)
        assert status == 200, (path, body)


def _paths(result: dict[str, Any]) -> list[str]:
    return [e["path"] for e in result["errors"]]


@OUT_OF_RANGE
async def test_native_time_outside_the_range_is_422_with_its_path(api: Api, when: str) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST", "/v1/events", key, [{"type": "a.b", "data": {}, "time": when}]
    )
    assert status == 422, body
    assert body["results"][0]["index"] == 0
    assert _paths(body["results"][0]) == ["/time"]
    assert "representable range" in body["results"][0]["errors"][0]["message"]
    await _reads_answer(api, key)


async def test_the_edges_of_the_range_are_accepted_and_read_back(api: Api) -> None:
    _, key = await api.tenant()
    edges = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+00:00"]
    events = [
        {"id": f"edge-{i}", "type": "a.b", "data": {}, "time": t} for i, t in enumerate(edges)
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, events)
    assert status == 202 and body["accepted"] == 3, body
    _, got, _ = await api.call("GET", "/v1/events/edge-1", key)
    assert got["time"] == "9999-12-31T23:59:59.999999Z"
    await _reads_answer(api, key)


@OUT_OF_RANGE
async def test_base_event_and_emit_event_timestamps_are_refused(api: Api, when: str) -> None:
    _, key = await api.tenant()
    base_event = {
        "eventId": "be-1",
        "eventType": "case.created",
        "timestamp": when,
        "organizationId": "org-1",
        "payload": {},
    }
    emit_event = {"eventType": "visit.done", "clinicId": "c-1", "timestamp": when}
    status, body, _ = await api.call("POST", "/v1/events", key, [base_event, emit_event])
    assert status == 422, body
    assert [_paths(r) for r in body["results"]] == [["/time"], ["/time"]]
    await _reads_answer(api, key)


def _cloudevent(when: str, i: int = 0) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"ce-{i}", "source": "/x", "type": "a.b", "time": when}


@OUT_OF_RANGE
async def test_cloudevents_structured_and_batch_times_are_refused(api: Api, when: str) -> None:
    _, key = await api.tenant()
    structured = {"Content-Type": "application/cloudevents+json"}
    status, body, _ = await api.call(
        "POST", "/v1/events", key, data=orjson.dumps(_cloudevent(when)), headers=structured
    )
    assert status == 422 and _paths(body["results"][0]) == ["/time"], body
    batch = [_cloudevent("2026-01-01T00:00:00Z", 0), _cloudevent(when, 1)]
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        data=orjson.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert status == 202, body  # the good one is kept, the bad one answered at its index
    assert body["results"][0]["status"] == "accepted"
    assert body["results"][1]["status"] == "rejected"
    assert _paths(body["results"][1]) == ["/1/time"]
    await _reads_answer(api, key)


@OUT_OF_RANGE
async def test_cloudevents_binary_ce_time_is_refused_naming_the_header(api: Api, when: str) -> None:
    _, key = await api.tenant()
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "/x",
        "ce-type": "a.b",
        "ce-time": when,
    }
    status, body, _ = await api.call("POST", "/v1/events", key, data=b"{}", headers=headers)
    assert status == 422, body
    assert _paths(body["results"][0]) == ["ce-time"]
    await _reads_answer(api, key)


@OUT_OF_RANGE
async def test_segment_times_are_refused_under_their_own_names(api: Api, when: str) -> None:
    _, key = await api.tenant()
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    ok = "2026-01-01T00:00:00Z"
    for field, msg in (
        ("timestamp", {"timestamp": when}),
        ("originalTimestamp", {"originalTimestamp": when}),
        ("sentAt", {"originalTimestamp": ok, "sentAt": when}),
    ):
        call = {"userId": "u-1", "event": "Clicked", "messageId": f"m-{field}", **msg}
        status, body, _ = await api.call("POST", "/v1/track", data=orjson.dumps(call), headers=auth)
        assert status == 400, (field, body)
        assert body["error"]["details"][0]["path"] == f"/{field}", body
    # in a batch Segment answers success; the message is refused (not stored), the rest kept
    batch = {
        "batch": [
            {"type": "track", "event": "Clicked", "messageId": "b-0", "userId": "u", "sentAt": ok},
            {"type": "track", "event": "Clicked", "messageId": "b-1", "timestamp": when},
        ]
    }
    status, body, _ = await api.call("POST", "/v1/batch", data=orjson.dumps(batch), headers=auth)
    assert status == 200, body
    status, listed, _ = await api.call("GET", "/v1/events", key)
    assert status == 200
    assert [e["id"] for e in listed["data"]] == ["b-0"]
    await _reads_answer(api, key)


async def test_segment_skew_correction_out_of_range_is_refused(api: Api) -> None:
    _, key = await api.tenant()
    call = {
        "userId": "u-1",
        "event": "Clicked",
        "originalTimestamp": "0001-01-01T00:00:00Z",  # each one valid, the correction is not
        "sentAt": "9999-12-31T00:00:00Z",
    }
    auth = {"Authorization": f"Bearer {key}"}
    status, body, _ = await api.call("POST", "/v1/track", data=orjson.dumps(call), headers=auth)
    assert status == 400, body
    assert body["error"]["details"][0]["path"] == "/sentAt"
    await _reads_answer(api, key)


@OUT_OF_RANGE
async def test_source_mapping_time_outside_the_range_is_refused(api: Api, when: str) -> None:
    _, key = await _tenant(api, "care-integrations")
    source = await _source(api, key, name="site", preset="none", mapping="site-lead-form")
    form = {"name": "Joana", "phone": "31998765432", "submitted_at": when}
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=orjson.dumps(form),
        headers={"Content-Type": "application/json"},
    )
    assert status == 422, reply
    assert reply["events"][0]["errors"][0]["path"] == "/time"
    await _reads_answer(api, key)


async def test_query_times_outside_the_range_are_400(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("GET", f"/v1/events?to={LATE.replace('+', '%2B')}", key)
    assert status == 400, body
    assert body["error"]["details"][0]["path"] == "?to"


async def test_a_stored_row_with_a_time_outside_the_range_still_reads(api: Api) -> None:
    """A row written before ingest checked the range (or by another writer): every read that
    shows it answers, the time written with an expanded ISO 8601 year."""
    tid, key = await api.tenant()
    status, dest, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "bell", "kind": "inbox", "config": {"recipient": "u-1"}},
    )
    assert status == 201, dest
    received = now_us()
    rows = [
        Event(
            tenant_id=tid,
            id=f"planted-{i}",
            type="a.b",
            version=None,
            time_us=time_us,
            received_us=received,
            source="default",
            subject="s-1",
            actor_id=None,
            actor_type=None,
            trace_id=new_id(),
            correlation_id=None,
            causation_id=None,
            context={},
            data={},
        )
        for i, time_us in enumerate((253_402_343_999_000_000, -62_135_647_200_000_000))
    ]
    never_due = received + 86_400_000_000 * 365  # the worker leaves these alone
    plans = [[NewDelivery(tid, 0, dest["id"], None, 0, None, never_due)] for _ in rows]
    await api.hub.store.append(rows, plans)
    status, got, _ = await api.call("GET", "/v1/events/planted-0", key)
    assert status == 200, got
    assert got["time"] == "+10000-01-01T11:59:59Z"
    status, got, _ = await api.call("GET", "/v1/events/planted-1", key)
    assert status == 200 and got["time"] == "+0000-12-31T10:00:00Z", got
    status, listed, _ = await api.call("GET", "/v1/events", key)
    assert status == 200 and len(listed["data"]) == 2, listed
    status, timeline, _ = await api.call("GET", "/v1/subjects/s-1/timeline", key)
    assert status == 200 and len(timeline["data"]) == 2, timeline
    status, deliveries, _ = await api.call("GET", "/v1/deliveries", key)
    assert status == 200, deliveries
    assert sorted(d["event"]["time"] for d in deliveries["data"]) == [
        "+0000-12-31T10:00:00Z",
        "+10000-01-01T11:59:59Z",
    ]
    status, one, _ = await api.call("GET", f"/v1/deliveries/{deliveries['data'][0]['id']}", key)
    assert status == 200, one
