"""Ingest over HTTP on both stores: results per event, bad input, idempotency, auth, limits."""

from __future__ import annotations

import asyncio

from switchboard.config import Settings
from tests.conftest import Api, serve

LEAD_TYPE = {
    "name": "lead.created",
    "description": "A lead arrived.",
    "owner": "growth",
    "mode": "enforce",
    "pii": ["email"],
    "versions": [
        {
            "version": "1.0",
            "schema": {
                "type": "object",
                "required": ["name", "phone"],
                "properties": {
                    "name": {"type": "string"},
                    "phone": {"type": "string"},
                    "email": {"type": "string"},
                },
            },
            "examples": [{"name": "Maria", "phone": "+5511999990000"}],
        }
    ],
}


async def test_single_event_is_accepted_and_readable(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        {
            "id": "e-1",
            "type": "order.paid",
            "data": {"amount": 10},
            "subject": "cust-1",
            "actor": {"id": "u1", "type": "user"},
        },
    )
    assert status == 202
    assert body["results"] == [{"index": 0, "status": "accepted", "id": "e-1"}]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    status, event, _ = await api.call("GET", "/v1/events/e-1", key)
    assert status == 200
    assert event["data"] == {"amount": 10}
    assert event["subject"] == "cust-1"
    assert event["actor"] == {"id": "u1", "type": "user"}
    assert event["trace_id"] and event["received_at"].endswith("Z")


async def test_repeated_id_is_duplicate_with_original_receipt(api: Api) -> None:
    _, key = await api.tenant()
    ev = {"id": "dup-1", "type": "a.b", "data": {}}
    _, first, _ = await api.call("POST", "/v1/events", key, ev)
    status, second, _ = await api.call("POST", "/v1/events", key, [ev, ev])
    assert status == 202
    assert [r["status"] for r in second["results"]] == ["duplicate", "duplicate"]
    _, stored, _ = await api.call("GET", "/v1/events/dup-1", key)
    assert second["results"][0]["original_received_at"] == stored["received_at"]
    _, listing, _ = await api.call("GET", "/v1/events?limit=1000", key)
    assert len(listing["data"]) == 1
    assert first["accepted"] == 1


async def test_concurrent_repeats_store_one_event(api: Api) -> None:
    _, key = await api.tenant()
    ev = {"id": "race-1", "type": "a.b", "data": {"n": 1}}
    answers = await asyncio.gather(*(api.call("POST", "/v1/events", key, ev) for _ in range(40)))
    statuses = [b["results"][0]["status"] for _, b, _ in answers]
    assert statuses.count("accepted") == 1
    assert statuses.count("duplicate") == 39
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert len(listing["data"]) == 1


async def test_batch_reports_each_event_and_partial_rejects(api: Api) -> None:
    _, key = await api.tenant()
    batch = [
        {"type": "a.b", "data": {}},
        {"type": "Bad Type", "data": {}},
        {"type": "a.c"},
        {"type": "a.d", "data": {}, "time": "2024-06-01T12:00:00"},
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, batch)
    assert status == 202
    assert [r["status"] for r in body["results"]] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert body["results"][1]["errors"][0]["path"] == "/type"
    assert body["results"][2]["errors"][0]["path"] == "/data"
    assert body["results"][3]["errors"][0]["path"] == "/time"
    assert "timezone" in body["results"][3]["errors"][0]["message"]


async def test_all_rejected_answers_422(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("POST", "/v1/events", key, [{"data": {}}, {"type": "x"}])
    assert status == 422
    assert body["rejected"] == 2
    assert body["results"][0]["errors"] == [{"path": "/type", "message": "is required"}]


async def test_bad_requests_get_clear_4xx(api: Api) -> None:
    _, key = await api.tenant()
    cases = [
        (b"{not json", {"Content-Type": "application/json"}, 400, "bad_request"),
        (
            b'{"type":"a.b","data":{}}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (b'{"type":"a.b","data":{}}', {}, 415, "unsupported_media_type"),
        (b"[]", {"Content-Type": "application/json"}, 400, "bad_request"),
        (b"42", {"Content-Type": "application/json"}, 422, None),
    ]
    for data, headers, expected, code in cases:
        status, body, _ = await api.call("POST", "/v1/events", key, data=data, headers=headers)
        assert status == expected, (data, body)
        if code:
            assert body["error"]["code"] == code
            assert body["error"]["message"]


async def test_oversized_body_and_batch_answer_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'h.db'}",
        max_body_bytes=2000,
        max_batch_events=5,
        key_rate=0,
        tenant_rate=0,
    )
    async with serve(settings) as api:
        _, key = await api.tenant()
        big = {"type": "a.b", "data": {"blob": "x" * 3000}}
        status, body, _ = await api.call("POST", "/v1/events", key, big)
        assert status == 413 and body["error"]["code"] == "payload_too_large"
        many = [{"type": "a.b", "data": {}} for _ in range(6)]
        status, body, _ = await api.call("POST", "/v1/events", key, many)
        assert status == 413 and "limit is 5" in body["error"]["message"]
        # a chunked body (no Content-Length) is cut off at the limit too

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"["
            for _ in range(30):
                yield b" " * 100
            yield b"]"

        async with api.session.post(
            api.url + "/v1/events",
            data=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413


async def test_missing_unknown_and_revoked_keys_get_401(api: Api) -> None:
    _, key = await api.tenant()
    ev = {"type": "a.b", "data": {}}
    assert (await api.call("POST", "/v1/events", None, ev))[0] == 401
    assert (await api.call("POST", "/v1/events", "sb_nottherealkey", ev))[0] == 401
    status, body, _ = await api.call(
        "POST", "/v1/events", None, ev, headers={"Authorization": "Basic x"}
    )
    assert status == 401 and "Bearer" in body["error"]["message"]
    _, created, _ = await api.call(
        "POST", "/v1/keys", key, {"name": "second", "scopes": ["ingest"]}
    )
    assert (await api.call("POST", "/v1/events", created["key"], ev))[0] == 202
    assert (await api.call("DELETE", f"/v1/keys/{created['id']}", key))[0] == 204
    assert (await api.call("POST", "/v1/events", created["key"], ev))[0] == 401


async def test_missing_scope_gets_403(api: Api) -> None:
    _, ingest_only = await api.tenant(scopes=("ingest",))
    status, body, _ = await api.call("GET", "/v1/events", ingest_only)
    assert status == 403 and "read" in body["error"]["message"]
    _, reader = await api.tenant(scopes=("read",))
    assert (await api.call("POST", "/v1/events", reader, {"type": "a.b", "data": {}}))[0] == 403
    assert (await api.call("POST", "/v1/keys", reader, {"scopes": ["ingest"]}))[0] == 403
    assert (await api.call("POST", "/v1/tenants", reader, {"id": "x"}))[0] == 403


async def test_tenants_never_see_each_other(api: Api) -> None:
    a, key_a = await api.tenant()
    b, key_b = await api.tenant()
    await api.call(
        "POST",
        "/v1/events",
        key_a,
        {"id": "secret-1", "type": "a.b", "data": {"x": 1}, "subject": "s1", "actor": {"id": "u1"}},
    )
    assert (await api.call("GET", "/v1/events/secret-1", key_b))[0] == 404
    for path in (
        "/v1/events",
        "/v1/subjects/s1/timeline",
        "/v1/actors/u1/timeline",
        "/v1/quarantine",
    ):
        status, body, _ = await api.call("GET", path, key_b)
        assert status == 200 and body["data"] == [], path
    _, m, _ = await api.call("GET", "/v1/metrics/events?granularity=day", key_b)
    assert m["buckets"] == []
    _, keys_a, _ = await api.call("GET", "/v1/keys", key_a)
    assert (await api.call("DELETE", f"/v1/keys/{keys_a['data'][0]['id']}", key_b))[0] == 404
    assert (await api.call("GET", f"/v1/tenants/{a}", key_b))[0] == 404
    # the same id in tenant B is B's own event, not a duplicate of A's
    _, body, _ = await api.call(
        "POST", "/v1/events", key_b, {"id": "secret-1", "type": "a.b", "data": {}}
    )
    assert body["results"][0]["status"] == "accepted"
    _, ev, _ = await api.call("GET", "/v1/events/secret-1", key_a)
    assert ev["data"] == {"x": 1}
    # tenant_id in the body is ignored for tenant keys
    await api.call(
        "POST", "/v1/events", key_b, {"id": "x-2", "type": "a.b", "data": {}, "tenant_id": a}
    )
    assert (await api.call("GET", "/v1/events/x-2", key_a))[0] == 404
    assert b != a


async def test_admin_key_acts_in_named_tenant(api: Api) -> None:
    status, _, _ = await api.call(
        "POST",
        "/v1/tenants",
        api.admin_key,
        {"id": "clinic-7", "name": "Clínica 7", "unknown_types": "accept"},
    )
    assert status == 201
    ev = {"type": "a.b", "data": {}}
    status, body, _ = await api.call("POST", "/v1/events", api.admin_key, ev)
    assert status == 403 and "X-Switchboard-Tenant" in body["error"]["message"]
    status, _, _ = await api.call(
        "POST", "/v1/events", api.admin_key, ev, headers={"X-Switchboard-Tenant": "clinic-7"}
    )
    assert status == 202
    assert (await api.call("POST", "/v1/tenants", api.admin_key, {"id": "clinic-7"}))[0] == 409
    assert (await api.call("POST", "/v1/tenants", api.admin_key, {"id": "Bad Id"}))[0] == 400


async def test_idempotency_key_replays_the_same_response(api: Api) -> None:
    _, key = await api.tenant()
    headers = {"Idempotency-Key": "req-77"}
    first = await api.call("POST", "/v1/events", key, {"type": "a.b", "data": {}}, headers=headers)
    again = await asyncio.gather(
        *(
            api.call("POST", "/v1/events", key, {"type": "a.b", "data": {}}, headers=headers)
            for _ in range(5)
        )
    )
    for status, body, h in again:
        assert status == first[0] == 202
        assert body == first[1]
        assert h["Idempotent-Replayed"] == "true"
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert len(listing["data"]) == 1


async def test_an_idempotency_key_used_for_another_request_is_a_409(api: Api) -> None:
    """The key stands for one request: another body under it is refused, not answered with the
    first body's stored 202 (which would drop the second event without a word)."""
    _, key = await api.tenant()
    headers = {"Idempotency-Key": "req-78"}
    first = {"type": "a.b", "data": {"n": 1}}
    assert (await api.call("POST", "/v1/events", key, first, headers=headers))[0] == 202
    status, body, _ = await api.call(
        "POST", "/v1/events", key, {"type": "a.b", "data": {"n": 2}}, headers=headers
    )
    assert status == 409, body
    assert [d["path"] for d in body["error"]["details"]] == ["Idempotency-Key"]
    status, _, h = await api.call("POST", "/v1/events", key, first, headers=headers)
    assert (status, h["Idempotent-Replayed"]) == (202, "true")
    # another tenant's key of the same name is its own
    _, other = await api.tenant()
    second = {"type": "c.d", "data": {}}
    assert (await api.call("POST", "/v1/events", other, second, headers=headers))[0] == 202
    _, listing, _ = await api.call("GET", "/v1/events", key)
    assert [e["data"] for e in listing["data"]] == [{"n": 1}]


async def test_an_idempotency_key_tells_binary_cloudevents_apart_by_their_headers(
    api: Api,
) -> None:
    _, key = await api.tenant()
    base = {"Idempotency-Key": "ce-1", "ce-specversion": "1.0", "ce-source": "/crm"}
    base["ce-type"] = "a.b"
    for ce_id, expected in (("one", 202), ("one", 202), ("two", 409)):
        status, body, _ = await api.call(
            "POST", "/v1/events", key, {"n": 1}, headers={**base, "ce-id": ce_id}
        )
        assert status == expected, body


async def test_rate_limit_answers_429_with_retry_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'h.db'}", key_rate=1, key_burst=3, tenant_rate=0
    )
    async with serve(settings) as api:
        _, key = await api.tenant()
        ev = [{"type": "a.b", "data": {}}] * 3
        assert (await api.call("POST", "/v1/events", key, ev))[0] == 202
        status, body, headers = await api.call("POST", "/v1/events", key, ev)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert body["error"]["code"] == "rate_limited"
        _, other = await api.tenant()
        assert (await api.call("POST", "/v1/events", other, ev))[0] == 202


async def test_tenant_rate_limit_spans_its_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'h.db'}", key_rate=0, tenant_rate=1, tenant_burst=4
    )
    async with serve(settings) as api:
        tid, k1 = await api.tenant()
        _, k2 = await api.tenant(tid)
        ev = [{"type": "a.b", "data": {}}] * 3
        assert (await api.call("POST", "/v1/events", k1, ev))[0] == 202
        assert (await api.call("POST", "/v1/events", k2, ev))[0] == 429


async def test_seed_shapes_map_onto_the_envelope(api: Api) -> None:
    _, key = await api.tenant()
    base_event = {
        "eventId": "9b1f0c1e-0000-4000-8000-000000000001",
        "eventType": "billing.payment_received",
        "eventVersion": "1.0.0",
        "timestamp": "2025-01-31T12:00:00Z",
        "actor": "system",
        "actorType": "system",
        "organizationId": "org_xyz789",
        "payload": {"paymentIntentId": "pi_123", "amount": 5000, "currency": "usd"},
        "metadata": {
            "ipAddress": "10.0.0.1",
            "userAgent": "UA",
            "requestId": "r1",
            "source": "api",
            "environment": "production",
        },
        "processed": False,
        "retryCount": 0,
    }
    emit_event = {
        "eventType": "purchase_made",
        "actor": "clinic",
        "clinicId": "clinic_1",
        "customerId": "cust_9",
        "timestamp": "2025-02-01T09:30:00-03:00",
        "eventId": "ext-55",
        "metadata": {"value": 150.0, "currency": "BRL", "items": []},
    }
    status, body, _ = await api.call("POST", "/v1/events", key, [base_event, emit_event])
    assert status == 202 and body["accepted"] == 2, body
    _, e1, _ = await api.call("GET", f"/v1/events/{base_event['eventId']}", key)
    assert e1["type"] == "billing.payment_received"
    assert e1["version"] == "1.0.0"
    assert e1["actor"] == {"id": "system", "type": "system"}
    assert e1["subject"] == "org_xyz789"
    assert e1["source"] == "api"
    assert e1["data"]["paymentIntentId"] == "pi_123"
    assert e1["context"]["ip"] == "10.0.0.1" and e1["context"]["environment"] == "production"
    assert e1["time"] == "2025-01-31T12:00:00Z"
    _, e2, _ = await api.call("GET", "/v1/events/ext-55", key)
    assert e2["type"] == "purchase_made"
    assert e2["subject"] == "cust_9"
    assert e2["actor"] == {"id": "clinic_1", "type": "clinic"}
    assert e2["context"]["clinic_id"] == "clinic_1"
    assert e2["data"]["currency"] == "BRL"
    assert e2["time"] == "2025-02-01T12:30:00Z"


async def test_health_endpoints(api: Api) -> None:
    status, body, _ = await api.call("GET", "/health")
    assert status == 200 and body == {"status": "ok"}
    status, body, _ = await api.call("GET", "/health/detailed", api.admin_key)
    assert status == 200
    assert body["store"]["reachable"] is True
    assert body["store"]["migrations"]["up_to_date"] is True
    assert "events" in body["store"]["counts"]  # counts need the admin key


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    status, body, _ = await api.call("GET", "/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await api.call("DELETE", "/v1/events")
    assert status == 405


async def test_nul_characters_are_refused_on_every_store(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [
            {"type": "a.b", "data": {"note": "a\u0000b"}},
            {"type": "a.b", "data": {"items": [{"x": "ok"}, {"x": "\u0000"}]}},
            {"type": "a.b", "data": {}, "subject": "s\u0000"},
        ],
    )
    assert status == 422
    paths = [r["errors"][0]["path"] for r in body["results"]]
    assert paths == ["/data/note", "/data/items/1/x", "/subject"]
