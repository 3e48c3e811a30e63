"""The automations API over HTTP on both stores: versions, validation with paths, runs, cancel,
scopes and tenant isolation; end to end to a real webhook receiver on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard import automation_engine
from switchboard.automation_engine import FakeClock
from switchboard.envelope import now_us
from tests.conftest import Api
from tests.integration.conftest import worker_for

FEEDBACK: dict[str, Any] = {
    "name": "service-feedback",
    "on": "service.completed",
    "steps": [
        {"wait": "2h"},
        {
            "id": "request",
            "send": {
                "destination": "wpp",
                "transform": '{"to": "{{ subject }}", "text": "Como foi o atendimento?"}',
            },
        },
        {
            "id": "reply",
            "wait_for": {"type": "feedback.received", "match": "data.service_id", "within": "24h"},
            "on_event": "stop",
        },
        {"id": "reminder", "send": {"destination": "wpp"}},
    ],
}


async def setup(api: Api, url: str = "http://127.0.0.1:9/hook") -> str:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "wpp", "kind": "webhook", "config": {"url": url}}
    )
    assert status == 201, body
    return key


async def test_put_versions_get_list_delete(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    assert status == 201 and body["version"] == 1, body
    changed = {**FEEDBACK, "steps": FEEDBACK["steps"][:2]}
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, changed)
    assert status == 200 and body["version"] == 2
    _, body, _ = await api.call("GET", "/v1/automations/service-feedback", key)
    assert body["version"] == 2 and len(body["spec"]["steps"]) == 2
    _, body, _ = await api.call("GET", "/v1/automations/service-feedback?version=1", key)
    assert body["version"] == 1 and len(body["spec"]["steps"]) == 4
    _, body, _ = await api.call("GET", "/v1/automations", key)
    assert [(a["name"], a["version"]) for a in body["data"]] == [("service-feedback", 2)]
    status, _, _ = await api.call("DELETE", "/v1/automations/service-feedback", key)
    assert status == 204
    status, _, _ = await api.call("GET", "/v1/automations/service-feedback", key)
    assert status == 404
    _, body, _ = await api.call("GET", "/v1/automations", key)
    assert body["data"] == []


async def test_invalid_documents_answer_422_naming_each_path(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    bad = {
        "name": "service-feedback",
        "on": "service.completed",
        "steps": [
            {"wait": "2 hours"},
            {"send": {"destination": "nowhere"}},
            {"wait_for": {"type": "feedback.received", "within": "2y"}},
        ],
    }
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, bad)
    assert status == 422
    paths = {d["path"] for d in body["error"]["details"]}
    assert paths == {"/steps/0/wait", "/steps/2/wait_for/within"}
    fine_but_unknown_destination = {**bad, "steps": [{"send": {"destination": "nowhere"}}]}
    status, body, _ = await api.call(
        "PUT", "/v1/automations/service-feedback", key, fine_but_unknown_destination
    )
    assert status == 422
    assert body["error"]["details"] == [
        {"path": "/steps/0/send/destination", "message": "no destination 'nowhere' in this tenant"}
    ]
    status, body, _ = await api.call("PUT", "/v1/automations/other-name", key, FEEDBACK)
    assert status == 422 and body["error"]["details"][0]["path"] == "/name"


@pytest.mark.security
async def test_oversized_and_deeply_nested_documents_are_refused(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    huge = {**FEEDBACK, "description": "x" * 70_000}
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, huge)
    assert status == 413, body
    nested: dict[str, Any] = {"send": {"destination": "wpp"}}
    for _ in range(6):  # `if` inside `if` past MAX_DEPTH (4)
        nested = {"if": {"trigger": {"type": ["a"]}}, "then": [nested]}
    status, body, _ = await api.call(
        "PUT", "/v1/automations/service-feedback", key, {**FEEDBACK, "steps": [nested]}
    )
    assert status == 422 and "nested" in body["error"]["message"], body
    # past the document's own limit (32), within what the API reads at all (64)
    deep_filter: dict[str, Any] = {"x": ["y"]}
    for _ in range(40):
        deep_filter = {"k": deep_filter}
    status, body, _ = await api.call(
        "PUT", "/v1/automations/service-feedback", key, {**FEEDBACK, "filter": deep_filter}
    )
    assert status == 422, body
    assert "nested more than 32 levels" in body["error"]["message"]
    # past what any JSON body may nest: refused as it is read, before the automation parser
    for _ in range(200):
        deep_filter = {"k": deep_filter}
    status, body, _ = await api.call(
        "PUT", "/v1/automations/service-feedback", key, {**FEEDBACK, "filter": deep_filter}
    )
    assert status == 400 and "nested" in str(body["error"]), body


@pytest.mark.security
async def test_schedules_are_limited_per_tenant_and_in_how_often_they_fire(
    hub_api: Api,
) -> None:
    from switchboard.automations import MAX_SCHEDULES

    api = hub_api
    key = await setup(api)
    daily = {
        "on": {"schedule": "0 9 * * *", "timezone": "America/Sao_Paulo"},
        "steps": [{"send": {"destination": "wpp"}}],
    }
    status, body, _ = await api.call(
        "PUT",
        "/v1/automations/often",
        key,
        {**daily, "name": "often", "on": {"schedule": "* * * * *"}},
    )
    assert status == 422 and body["error"]["details"][0]["path"] == "/on/schedule", body
    for n in range(MAX_SCHEDULES):
        status, body, _ = await api.call(
            "PUT", f"/v1/automations/daily-{n}", key, {**daily, "name": f"daily-{n}"}
        )
        assert status == 201, body
    status, body, _ = await api.call(
        "PUT", "/v1/automations/one-more", key, {**daily, "name": "one-more"}
    )
    assert status == 422 and body["error"]["details"][0]["path"] == "/on/schedule", body
    # a new version of a scheduled automation is not one more
    status, body, _ = await api.call(
        "PUT", "/v1/automations/daily-0", key, {**daily, "name": "daily-0"}
    )
    assert status == 200, body


@pytest.mark.security
async def test_scopes_and_tenant_isolation(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    _, reader = await api.tenant(scopes=("read",))
    status, _, _ = await api.call("PUT", "/v1/automations/service-feedback", reader, FEEDBACK)
    assert status == 403
    await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    await api.call(
        "POST",
        "/v1/events",
        key,
        [{"id": "svc-1", "type": "service.completed", "subject": "p-1", "data": {"service_id": 1}}],
    )
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    run_id = runs["data"][0]["id"]
    other = await setup(api)
    for method, path in [
        ("GET", "/v1/automations/service-feedback"),
        ("DELETE", "/v1/automations/service-feedback"),
        ("GET", f"/v1/runs/{run_id}"),
        ("POST", f"/v1/runs/{run_id}/cancel"),
    ]:
        status, _, _ = await api.call(method, path, other)
        assert status == 404, (method, path)
    _, body, _ = await api.call("GET", "/v1/automations/service-feedback/runs", other)
    assert body["data"] == []
    _, body, _ = await api.call("GET", "/v1/automations", other)
    assert body["data"] == []
    status, _, _ = await api.call("POST", f"/v1/runs/{run_id}/cancel", reader)
    assert status == 403  # reading is not managing


async def test_end_to_end_feedback_two_hours_later_on_a_fake_clock(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    rcv = await receivers()
    key = await setup(api, rcv.url)
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    assert status == 201, body
    engine = api.hub.engine
    clock = FakeClock(now_us() + 600_000_000)
    engine.clock = clock
    for n in (1, 2):
        await api.call(
            "POST",
            "/v1/events",
            key,
            [
                {
                    "id": f"svc-{n}",
                    "type": "service.completed",
                    "subject": f"patient-{n}",
                    "data": {"service_id": n},
                }
            ],
        )
    while await engine.tick():
        pass
    clock.advance(2 * 3600)
    while await engine.tick():
        pass
    await worker_for(api).drain()
    assert sorted(r["json"]["to"] for r in rcv.received) == ["patient-1", "patient-2"]
    assert rcv.received[0]["json"]["text"] == "Como foi o atendimento?"
    # patient-1 answers; patient-2 does not and gets the reminder after 24 h
    await api.call(
        "POST",
        "/v1/events",
        key,
        [{"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1, "rating": 5}}],
    )
    while await engine.tick():
        pass
    clock.advance(24 * 3600)
    while await engine.tick():
        pass
    await worker_for(api).drain()
    assert len(rcv.received) == 3
    assert rcv.received[2]["json"]["subject"] == "patient-2"  # the trigger, as routes send it
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    by_subject = {r["trigger"]["subject"]: r for r in runs["data"]}
    assert by_subject["patient-1"]["status"] == "stopped"
    assert by_subject["patient-1"]["matched"]["reply"]["id"] == "fb-1"
    assert by_subject["patient-2"]["status"] == "completed"
    _, run, _ = await api.call("GET", f"/v1/runs/{by_subject['patient-2']['id']}", key)
    assert [s["step"] for s in run["steps"]] == ["steps.0", "request", "reply", "reminder"]
    delivery_id = run["steps"][1]["delivery_id"]
    _, delivery, _ = await api.call("GET", f"/v1/deliveries/{delivery_id}", key)
    assert delivery["status"] == "succeeded"
    _, stopped, _ = await api.call(
        "GET", "/v1/automations/service-feedback/runs?status=stopped", key
    )
    assert [r["trigger"]["subject"] for r in stopped["data"]] == ["patient-1"]
    status, _, _ = await api.call("GET", "/v1/automations/service-feedback/runs?status=odd", key)
    assert status == 400


async def test_cancel_is_durable_and_answers_409_once_ended(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    await api.call(
        "POST",
        "/v1/events",
        key,
        [{"id": "svc-1", "type": "service.completed", "subject": "p-1", "data": {"service_id": 1}}],
    )
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    run_id = runs["data"][0]["id"]
    status, body, _ = await api.call(
        "POST", f"/v1/runs/{run_id}/cancel", key, {"reason": "patient asked"}
    )
    assert status == 200 and body["status"] == "cancelled"
    assert body["reason"] == "cancelled by request: patient asked"
    status, body, _ = await api.call("POST", f"/v1/runs/{run_id}/cancel", key)
    assert status == 409
    api.hub.engine.clock = FakeClock(now_us() + 3 * 3600 * 1_000_000)
    assert await api.hub.engine.tick() == 0
    _, body, _ = await api.call("GET", f"/v1/runs/{run_id}", key)
    assert body["status"] == "cancelled" and body["steps"] == []


async def test_a_zapi_button_reply_becomes_feedback_received_and_stops_the_run(
    hub_api: Api, receivers: Any
) -> None:
    """care-integrations: "Processamento de resposta de botao" — the Z-API webhook of a tapped
    rating button becomes whatsapp.inbound (source + mapping), an automation emits
    feedback.received from it (validated by the catalog), and that event ends the waiting
    feedback run before its reminder."""
    from pathlib import Path

    import orjson

    from switchboard.catalog import load_catalog_dir
    from tests.unit.test_mappings import ZAPI_BUTTON

    api = hub_api
    root = Path(__file__).resolve().parents[2]
    tid, key = await api.tenant(unknown_types="reject")
    await api.hub.registry.apply(tid, load_catalog_dir(root / "catalogs" / "care-integrations"))
    rcv = await receivers()
    await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "wpp", "kind": "webhook", "config": {"url": rcv.url}},
    )
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {"name": "zapi", "preset": "zapi", "secrets": ["tok-zapi-123456"], "mapping": "zapi"},
    )
    assert status == 201, source
    reply = {
        "name": "feedback-button-reply",
        "on": "whatsapp.inbound",
        "filter": {"data": {"button_response": {"id": [{"prefix": "feedback:"}]}}},
        "steps": [
            {
                "emit": {
                    "type": "feedback.received",
                    "data": (
                        '{"service_id": {{ data.button_response.id.split(":")[1] | tojson }}, '
                        '"rating": {{ data.button_response.id.split(":")[2] | int }}, '
                        '"channel": "whatsapp"}'
                    ),
                }
            }
        ],
    }
    for doc in (FEEDBACK, reply):
        status, body, _ = await api.call("PUT", f"/v1/automations/{doc['name']}", key, doc)
        assert status == 201, body
    engine = api.hub.engine
    clock = FakeClock(now_us() + 600_000_000)
    engine.clock = clock
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [
            {
                "id": "svc-1-done",
                "type": "service.completed",
                "subject": "patient-42",
                "data": {
                    "service_id": "svc_1",
                    "caregiver_id": "cg_7",
                    "completed_at": "2026-01-01T00:00:00Z",
                    "duration_minutes": 240,
                },
            }
        ],
    )
    assert body["accepted"] == 1, body
    while await engine.tick():
        pass
    clock.advance(2 * 3600)
    while await engine.tick():
        pass
    payload = {
        **ZAPI_BUTTON,
        "buttonsResponseMessage": {"buttonId": "feedback:svc_1:5", "message": "Excelente"},
    }
    status, answer, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=orjson.dumps(payload),
        headers={"Content-Type": "application/json", "Client-Token": "tok-zapi-123456"},
    )
    assert status == 200 and answer["events"][0]["status"] == "accepted", answer
    while await engine.tick():
        pass
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    (run,) = runs["data"]
    assert run["status"] == "stopped", run
    matched = run["matched"]["reply"]
    assert matched["type"] == "feedback.received"
    assert matched["data"] == {"service_id": "svc_1", "rating": 5, "channel": "whatsapp"}
    _, emitted, _ = await api.call("GET", f"/v1/events/{matched['id']}", key)
    assert emitted["status"] == "accepted"  # valid against the care catalog
    assert emitted["causation_id"] == answer["events"][0]["id"]
    await worker_for(api).drain()
    assert len(rcv.received) == 1  # the 2-hour request, and no reminder


async def test_escalate_when_the_whatsapp_message_is_not_read(hub_api: Api) -> None:
    """`wait_for` on a send step's delivery status: a message read in time ends the run, an
    unread one escalates after the window."""
    from aiohttp import web

    api = hub_api
    _, key = await api.tenant()
    sent: list[dict[str, Any]] = []

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        sent.append(body)
        return web.json_response({"id": f"wamid-{body['to'][-4:]}"})

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        for name, to in (("wpp", None), ("supervisor", "+55 47 99999-0000")):
            config: dict[str, Any] = {
                "provider": "gateway",
                "base_url": f"http://127.0.0.1:{port}",
                "channel": "atendimento",
                "template": "Olá! {{ data.text }}",
                **({"to": to} if to else {"to_path": "data.phone"}),
            }
            status, body, _ = await api.call(
                "POST",
                "/v1/destinations",
                key,
                {"name": name, "kind": "whatsapp", "secrets": ["gw"], "config": config},
            )
            assert status == 201, body
        doc = {
            "name": "unread-escalation",
            "on": "billing.invoice.overdue",
            "steps": [
                {"id": "notice", "send": {"destination": "wpp"}},
                {
                    "id": "read",
                    "wait_for": {"delivery": "notice", "status": "read", "within": "4h"},
                    "on_event": "stop",
                },
                {"id": "escalate", "send": {"destination": "supervisor"}},
            ],
        }
        status, body, _ = await api.call("PUT", "/v1/automations/unread-escalation", key, doc)
        assert status == 201, body
        engine = api.hub.engine
        clock = FakeClock(now_us() + 600_000_000)
        engine.clock = clock
        await api.call(
            "POST",
            "/v1/events",
            key,
            [
                {
                    "id": f"inv-{n}",
                    "type": "billing.invoice.overdue",
                    "subject": f"c-{n}",
                    "data": {"phone": f"+55 11 98888-000{n}", "text": "Sua fatura venceu."},
                }
                for n in (1, 2)
            ],
        )
        while await engine.tick():
            pass
        await worker_for(api).drain()
        assert len(sent) == 2
        # the provider reports the first customer's message read
        status, body, _ = await api.call(
            "POST",
            "/v1/deliveries/provider-status",
            key,
            {"provider_id": "wamid-0001", "status": "read"},
        )
        assert body == {"updated": 1}, body
        clock.advance(30)
        while await engine.tick():
            pass
        clock.advance(4 * 3600)
        while await engine.tick():
            pass
        await worker_for(api).drain()
        _, runs, _ = await api.call("GET", "/v1/automations/unread-escalation/runs", key)
        by_subject = {r["trigger"]["subject"]: r for r in runs["data"]}
        assert by_subject["c-1"]["status"] == "stopped"
        assert by_subject["c-1"]["reason"] == "delivery notice is read"
        assert by_subject["c-2"]["status"] == "completed"
        assert len(sent) == 3 and sent[2]["to"] == "5547999990000"
    finally:
        await runner.cleanup()


async def test_a_replay_redelivers_events_but_starts_no_runs(hub_api: Api, receivers: Any) -> None:
    """Replays make deliveries of stored events; they store no event and start no automation
    (docs/automations.md, "Which events start runs, and why replays do not")."""
    import asyncio
    import time

    api = hub_api
    rcv = await receivers()
    key = await setup(api, rcv.url)
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    assert status == 201, body
    event = {
        "id": "svc-9",
        "type": "service.completed",
        "subject": "patient-9",
        "time": "2026-01-01T10:00:00Z",
        "data": {"service_id": 9},
    }
    status, body, _ = await api.call("POST", "/v1/events", key, [event])
    assert body["accepted"] == 1, body
    query = {
        "types": ["service.completed"],
        "from": "2026-01-01T00:00:00Z",
        "to": "2026-01-02T00:00:00Z",
        "destinations": ["wpp"],
    }
    status, job, _ = await api.call("POST", "/v1/replays", key, query)
    assert status == 202, job
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and job["status"] != "done":
        await asyncio.sleep(0.05)
        _, job, _ = await api.call("GET", f"/v1/replays/{job['id']}", key)
    assert job["status"] == "done" and job["deliveries"] == 1, job
    await worker_for(api).drain()
    assert [r["json"]["id"] for r in rcv.received] == ["svc-9"]  # the replay was delivered
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    assert len(runs["data"]) == 1  # the run the event started when it arrived, no second one


async def test_an_automation_saved_after_ingests_without_one_starts_on_the_next_event(
    hub_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest skips planning while the tenant is cached as having no automation; saving one
    must end that at once (in this process), on both stores."""
    # the cache's second would let a slow machine expire the entry mid-test: an hour instead
    monkeypatch.setattr(automation_engine, "_TTL", 3600.0)
    api = hub_api
    tenant, key = await api.tenant()
    destination = {"name": "wpp", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/h"}}
    status, body, _ = await api.call("POST", "/v1/destinations", key, destination)
    assert status == 201, body
    cache = api.hub.automation_cache
    numbers = iter(range(100))

    async def send() -> None:
        event = {
            "id": f"svc-{next(numbers)}",
            "type": "service.completed",
            "subject": "p-1",
            "data": {"service_id": 1},
        }
        status, body, _ = await api.call("POST", "/v1/events", key, [event])
        assert status == 202, body

    await send()
    await send()  # within the cache's second: this ingest skips planning
    assert cache.none_cached(tenant)
    assert not cache.none_cached("another-tenant")  # nothing known about it: plan
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    assert status == 201, body
    assert not cache.none_cached(tenant)
    await send()
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    assert [r["trigger"]["id"] for r in runs["data"]] == ["svc-2"]
    status, _, _ = await api.call("DELETE", "/v1/automations/service-feedback", key)
    assert status == 204
    await send()  # deleted: the tenant has none again, and no run starts
    assert cache.none_cached(tenant)
    _, runs, _ = await api.call("GET", "/v1/automations/service-feedback/runs", key)
    assert [r["trigger"]["id"] for r in runs["data"]] == ["svc-2"]


@pytest.mark.security
async def test_parameters_and_cancel_bodies_are_a_400_naming_them(hub_api: Api) -> None:
    api = hub_api
    key = await setup(api)
    status, body, _ = await api.call("PUT", "/v1/automations/service-feedback", key, FEEDBACK)
    assert status == 201, body
    for path, where in (
        ("/v1/automations/service-feedback/runs?limit=0", "?limit"),
        ("/v1/automations/service-feedback/runs?limit=1001", "?limit"),
        ("/v1/automations/service-feedback/runs?status=odd", "?status"),
        ("/v1/automations/service-feedback?version=0", "?version"),
        ("/v1/automations/service-feedback?version=x", "?version"),
        ("/v1/automations/Not%20A%20Name", "name"),
        ("/v1/automations/" + "a" * 64, "name"),
        ("/v1/runs/" + "r" * 101, "run_id"),
    ):
        status, body, _ = await api.call("GET", path, key)
        assert status == 400, (path, body)
        assert [d["path"] for d in body["error"]["details"]] == [where], (path, body)
    for cancel, where in (({"reason": "x" * 201}, "/reason"), ({"why": "x"}, "/why")):
        status, body, _ = await api.call("POST", "/v1/runs/r-1/cancel", key, cancel)
        assert status == 400, body
        assert [d["path"] for d in body["error"]["details"]] == [where], body
    # no body at all is fine: a run that does not exist
    assert (await api.call("POST", "/v1/runs/r-1/cancel", key))[0] == 404
