"""The real client libraries, unmodified, pointed at a running hub: segment-analytics-python for
the Segment tracking API and the CloudEvents SDK (structured, binary and batched modes)."""

from __future__ import annotations

import asyncio
import base64
import gzip
from typing import Any

import orjson
import pytest
from cloudevents.v1.conversion import to_binary, to_dict, to_structured
from cloudevents.v1.http import CloudEvent
from segment.analytics.client import Client
from segment.analytics.request import APIError

from tests.conftest import Api

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _events(api: Api, key: str, query: str = "") -> list[dict[str, Any]]:
    status, body, _ = await api.call("GET", f"/v1/events?limit=1000{query}", key)
    assert status == 200
    return list(body["data"])


def _client(api: Api, key: str, *, gzip_body: bool = False) -> Client:
    # sync_mode posts each call before returning; it runs in a thread (the library is blocking)
    return Client(write_key=key, host=api.url, sync_mode=True, gzip=gzip_body, max_retries=0)


@pytest.mark.parametrize("gzip_body", [False, True], ids=["plain", "gzip"])
async def test_segment_python_library_every_call(api: Api, gzip_body: bool) -> None:
    _, key = await api.tenant()
    client = _client(api, key, gzip_body=gzip_body)

    def send() -> None:
        client.track(
            "user-1",
            "Order Completed",
            {"total": 30, "currency": "BRL"},
            context={"ip": "10.1.2.3"},
            message_id="msg-track",
        )
        client.identify("user-1", {"email": "joana@example.com"}, message_id="msg-identify")
        client.page("user-1", "Docs", "Pricing", {"url": "https://x/p"}, message_id="msg-page")
        client.screen("user-1", "App", "Home", message_id="msg-screen")
        client.group("user-1", "group-9", {"plan": "pro"}, message_id="msg-group")
        client.alias("anon-1", "user-1", message_id="msg-alias")

    await asyncio.to_thread(send)
    by_id = {e["id"]: e for e in await _events(api, key)}
    assert set(by_id) == {
        "msg-track",
        "msg-identify",
        "msg-page",
        "msg-screen",
        "msg-group",
        "msg-alias",
    }
    track = by_id["msg-track"]
    assert (track["type"], track["subject"], track["source"]) == (
        "order_completed",
        "user-1",
        "segment",
    )
    assert track["data"] == {"total": 30, "currency": "BRL"}
    assert track["context"]["ip"] == "10.1.2.3"
    assert track["context"]["library"]["name"] == "analytics-python"
    assert by_id["msg-identify"]["type"] == "segment.identify"
    assert by_id["msg-identify"]["data"] == {"email": "joana@example.com"}
    assert by_id["msg-page"]["data"] == {
        "url": "https://x/p",
        "name": "Pricing",
        "category": "Docs",
    }
    assert by_id["msg-group"]["data"] == {"group_id": "group-9", "traits": {"plan": "pro"}}
    assert by_id["msg-alias"]["data"] == {"previous_id": "anon-1", "user_id": "user-1"}


async def test_segment_retry_with_same_message_id_is_one_event(api: Api) -> None:
    _, key = await api.tenant()
    client = _client(api, key)
    for _ in range(3):
        await asyncio.to_thread(client.track, "user-1", "Signed Up", message_id="msg-same")
    assert [e["id"] for e in await _events(api, key)] == ["msg-same"]


async def test_segment_batching_consumer_and_flush(api: Api) -> None:
    _, key = await api.tenant()
    client = Client(write_key=key, host=api.url, upload_size=50, max_retries=0)

    def send() -> None:
        for i in range(120):
            client.track(f"user-{i % 7}", "Lesson Viewed", {"n": i}, message_id=f"m-{i}")
        client.flush()
        client.shutdown()

    await asyncio.to_thread(send)
    assert len(await _events(api, key, "&type=lesson_viewed")) == 120


async def test_segment_bad_write_key_is_an_error_the_library_reports(api: Api) -> None:
    client = _client(api, "sb_not_a_key")
    with pytest.raises(APIError) as info:
        await asyncio.to_thread(client.track, "u", "Something")
    assert info.value.status == 401
    assert info.value.code == "unauthorized"


async def test_analytics_js_short_paths_text_plain_and_body_write_key(api: Api) -> None:
    """What analytics.js sends: POST /v1/<first letter>, Content-Type text/plain, writeKey in the
    body; and /v1/b for its batching delivery."""
    _, key = await api.tenant()
    msg = {
        "type": "page",
        "anonymousId": "anon-7",
        "messageId": "ajs-1",
        "writeKey": key,
        "properties": {"path": "/", "url": "https://site/"},
        "name": "Home",
        "sentAt": "2025-03-18T12:00:00.000Z",
        "originalTimestamp": "2025-03-18T11:59:59.000Z",
    }
    status, body, _ = await api.call(
        "POST", "/v1/p", data=orjson.dumps(msg), headers={"Content-Type": "text/plain"}
    )
    assert (status, body) == (200, {"success": True})
    batch = {
        "batch": [
            {**msg, "type": "track", "event": "Clicked CTA", "messageId": "ajs-2"},
            {**msg, "type": "identify", "traits": {"a": 1}, "messageId": "ajs-3"},
        ],
        "writeKey": key,
        "sentAt": "2025-03-18T12:00:00.000Z",
    }
    status, body, _ = await api.call(
        "POST", "/v1/b", data=orjson.dumps(batch), headers={"Content-Type": "text/plain"}
    )
    assert (status, body) == (200, {"success": True})
    types = {e["id"]: e["type"] for e in await _events(api, key)}
    assert types == {"ajs-1": "segment.page", "ajs-2": "clicked_cta", "ajs-3": "segment.identify"}


async def test_segment_limits_and_gzip(api: Api) -> None:
    _, key = await api.tenant()
    auth = {
        "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    big = {"event": "Big", "userId": "u", "properties": {"blob": "x" * 40_000}}
    status, body, _ = await api.call("POST", "/v1/track", data=orjson.dumps(big), headers=auth)
    assert status == 413 and body["success"] is False
    # a batch over 500 KB is refused; inside a batch, an over-32 KB message is dropped alone
    huge = {"batch": [{**big, "type": "track", "properties": {"blob": "y" * 30_000}}] * 20}
    status, _, _ = await api.call("POST", "/v1/batch", data=orjson.dumps(huge), headers=auth)
    assert status == 413
    mixed = {
        "batch": [
            {**big, "type": "track", "messageId": "too-big"},
            {"type": "track", "event": "Small", "userId": "u", "messageId": "ok"},
        ]
    }
    zipped = gzip.compress(orjson.dumps(mixed))
    status, body, _ = await api.call(
        "POST", "/v1/batch", data=zipped, headers={**auth, "Content-Encoding": "gzip"}
    )
    assert (status, body) == (200, {"success": True})
    assert [e["id"] for e in await _events(api, key)] == ["ok"]


async def test_segment_calls_the_catalog_refuses_are_quarantined_not_dropped(api: Api) -> None:
    _, key = await api.tenant(unknown_types="reject")
    client = _client(api, key)
    await asyncio.to_thread(client.track, "u", "Not In Catalog", message_id="x-1")
    await asyncio.to_thread(client.identify, "u", {"email": "a@example.com"}, message_id="x-2")
    status, body, _ = await api.call("GET", "/v1/quarantine", key)
    assert status == 200
    held = {e["id"]: e for e in body["data"]}
    assert set(held) == {"x-1", "x-2"}
    assert held["x-1"]["type"] == "not_in_catalog"
    assert "unknown event type" in str(held["x-1"]["validation_errors"])
    # once the catalog knows the type, a resubmit accepts it
    schema = {"type": "object"}
    status, _, _ = await api.call(
        "PUT",
        "/v1/event-types/segment.identify",
        key,
        json={
            "name": "segment.identify",
            "description": "Who the user is.",
            "owner": "analytics",
            "versions": [{"version": "1.0", "schema": schema}],
        },
    )
    assert status in (200, 201)
    status, body, _ = await api.call("POST", "/v1/quarantine/x-2/resubmit", key)
    assert status == 200, body
    _, body, _ = await api.call("GET", "/v1/quarantine", key)
    assert [e["id"] for e in body["data"]] == ["x-1"]


# --- CloudEvents SDK ---------------------------------------------------------------------------


async def test_cloudevents_structured_mode(api: Api) -> None:
    _, key = await api.tenant()
    event = CloudEvent(
        {
            "type": "invoice.paid",
            "source": "/billing/api",
            "id": "ce-s-1",
            "subject": "cust-1",
            "traceparent": TRACEPARENT,
            "correlationid": "order-77",
        },
        {"amount": 10},
    )
    headers, body = to_structured(event)
    status, reply, _ = await api.call("POST", "/v1/events", key, data=body, headers=headers)
    assert status == 202, reply
    assert reply["results"][0]["status"] == "accepted"
    _, stored, _ = await api.call("GET", "/v1/events/ce-s-1", key)
    assert (stored["type"], stored["source"], stored["subject"]) == (
        "invoice.paid",
        "/billing/api",
        "cust-1",
    )
    assert stored["data"] == {"amount": 10}
    assert stored["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert stored["correlation_id"] == "order-77"
    assert stored["context"]["traceparent"] == TRACEPARENT
    # the same event again is a duplicate
    _, again, _ = await api.call("POST", "/v1/events", key, data=body, headers=headers)
    assert again["results"][0]["status"] == "duplicate"


async def test_cloudevents_binary_mode(api: Api) -> None:
    _, key = await api.tenant()
    event = CloudEvent(
        {
            "type": "lead.created",
            "source": "site",
            "id": "ce-b-1",
            "datacontenttype": "application/json",
            "partitionkey": "p1",
        },
        {"name": "Joana"},
    )
    headers, body = to_binary(event)
    status, reply, _ = await api.call("POST", "/v1/events", key, data=body, headers=headers)
    assert status == 202, reply
    _, stored, _ = await api.call("GET", "/v1/events/ce-b-1", key)
    assert stored["data"] == {"name": "Joana"}
    assert stored["context"]["partitionkey"] == "p1"
    assert stored["context"]["datacontenttype"] == "application/json"


async def test_cloudevents_binary_mode_without_content_type(api: Api) -> None:
    _, key = await api.tenant()
    headers, body = to_binary(CloudEvent({"type": "a.b", "source": "s", "id": "ce-b-2"}, {"k": 1}))
    status, _, _ = await api.call("POST", "/v1/events", key, data=body, headers=headers)
    assert status == 202
    _, stored, _ = await api.call("GET", "/v1/events/ce-b-2", key)
    assert stored["data"] == {"k": 1}


async def test_cloudevents_batch_mode_answers_per_event(api: Api) -> None:
    _, key = await api.tenant()
    good = [
        to_dict(CloudEvent({"type": "a.b", "source": "s", "id": f"ce-{i}"}, {"i": i}))
        for i in range(3)
    ]
    broken = {"specversion": "1.0", "type": "a.b"}  # no id, no source
    body = orjson.dumps([good[0], broken, *good[1:]], default=str)
    status, reply, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        data=body,
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert status == 202, reply
    assert [r["status"] for r in reply["results"]] == [
        "accepted",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert [r["index"] for r in reply["results"]] == [0, 1, 2, 3]
    assert {e["path"] for e in reply["results"][1]["errors"]} == {"/1/id", "/1/source"}
    assert (reply["accepted"], reply["rejected"]) == (3, 1)


async def test_cloudevents_structured_invalid_is_422(api: Api) -> None:
    _, key = await api.tenant()
    status, reply, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        data=b'{"specversion": "0.3", "id": "1"}',
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert status == 422
    assert reply["results"][0]["errors"][0]["path"] == "/specversion"


async def test_segment_malformed_single_call_is_400_and_bad_batch_items_are_dropped(
    api: Api,
) -> None:
    _, key = await api.tenant()
    auth = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    status, body, _ = await api.call(
        "POST", "/v1/track", data=orjson.dumps({"userId": "u"}), headers=auth
    )
    assert status == 400 and body["success"] is False
    assert body["error"]["details"][0]["path"] == "/event"
    batch = {
        "context": {"app": "web"},
        "batch": [
            {"type": "track", "userId": "u", "messageId": "b-1", "event": "A", "context": "x"},
            {"type": "nope", "messageId": "b-2"},
            {"type": "track", "userId": "u", "messageId": "b-3", "event": "B"},
        ],
    }
    status, body, _ = await api.call("POST", "/v1/batch", data=orjson.dumps(batch), headers=auth)
    assert (status, body) == (200, {"success": True})
    events = {e["id"]: e for e in await _events(api, key)}
    assert set(events) == {"b-3"}  # b-1's context is not an object, b-2 has no known type
    assert events["b-3"]["context"]["app"] == "web"
