"""The WhatsApp Cloud API channel and its webhooks, against a local server speaking the Graph API.

The server (aiohttp on 127.0.0.1, port 0) checks what Meta checks of ``POST /{version}/
{phone_number_id}/messages``: the bearer token, ``messaging_product``, the recipient and the shape
of each message type, and answers with a ``wamid`` as Meta does (error objects as Meta's). The
webhooks the tests post are the documented payloads under tests/fixtures/whatsapp_cloud, signed
with the app secret as Meta signs them (``X-Hub-Signature-256: sha256=<hex HMAC of the body>``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from switchboard.channels import ChannelContext, Destination, Outbound
from switchboard.channels.registry import check_destination_config
from switchboard.channels.whatsapp_cloud import WhatsAppCloudChannel
from switchboard.egress import Policy, connector
from tests.conftest import LOOPBACK, Api
from tests.integration.conftest import worker_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp_cloud"
TOKEN = "EAAGm0PX4ZCpsBAxyz-test-access-token"
APP_SECRET = "3f1c9a0e5b7d4c2a8e6f0b1d3c5a7e9f"
VERIFY_TOKEN = "clinic-verify-2f9c7b"
PHONE_NUMBER_ID = "106540352242922"

EVENT: dict[str, Any] = {
    "id": "evt_wa_1",
    "type": "reward.offered",
    "subject": "patient-42",
    "data": {
        "name": "Maria",
        "phone": "+55 (11) 98765-4321",
        "reward": "Limpeza de pele",
        "coupon": "PELE10",
        "image": "https://cdn.example.com/rewards/pele.png",
    },
}


def fixture(name: str, wamid: str = "") -> bytes:
    return (FIXTURES / name).read_bytes().replace(b"__WAMID__", wamid.encode())


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


# --- the local Graph API -----------------------------------------------------------------------


@dataclass
class Graph:
    url: str = ""
    token: str = TOKEN
    requests: list[dict[str, Any]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _graph_error(status: int, message: str, code: int) -> web.Response:
    body = {"error": {"message": message, "type": "OAuthException", "code": code}}
    return web.json_response(body, status=status)


def _shape_problem(body: dict[str, Any]) -> str | None:
    """What the Cloud API refuses in a message body (its documented limits), or None."""
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not str(body.get("to", "")).isdigit():
        return "to must be a phone number"
    kind = body.get("type")
    part = body.get(kind) if isinstance(kind, str) else None
    if not isinstance(part, dict):
        return f"the {kind} object is required"
    if kind == "text" and not part.get("body"):
        return "text.body is required"
    if kind == "template" and (not part.get("name") or not part.get("language", {}).get("code")):
        return "template name and language.code are required"
    if kind in ("image", "video", "audio", "document") and not part.get("link"):
        return f"{kind}.link is required"
    if kind == "interactive":
        if not part.get("body", {}).get("text"):
            return "interactive.body.text is required"
        action = part.get("action", {})
        if part.get("type") == "button":
            buttons = action.get("buttons", [])
            if not 1 <= len(buttons) <= 3 or any(len(b["reply"]["title"]) > 20 for b in buttons):
                return "1 to 3 buttons with titles of at most 20 characters"
        elif part.get("type") == "list":
            rows = [r for s in action.get("sections", []) for r in s["rows"]]
            if not action.get("button") or not 1 <= len(rows) <= 10:
                return "a list needs a button and 1 to 10 rows"
        else:
            return "interactive.type must be button or list"
    return None


@pytest.fixture
async def graph() -> AsyncIterator[Graph]:
    state = Graph()

    async def messages(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        state.requests.append(
            {"path": request.path, "headers": dict(request.headers), "body": body}
        )
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return web.Response(
                status=401, body=fixture("error_token.json"), content_type="application/json"
            )
        if request.match_info["phone_number_id"] != PHONE_NUMBER_ID:
            return _graph_error(400, "Unsupported post request: unknown phone number id", 100)
        problem = _shape_problem(body)
        if problem:
            return _graph_error(400, f"(#100) Invalid parameter: {problem}", 100)
        wamid = f"wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI{next(state.ids):04d}"
        answer = fixture("send_answer.json", wamid).replace(b"__TO__", body["to"].encode())
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{version}/{phone_number_id}/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def ctx() -> AsyncIterator[ChannelContext]:
    policy = Policy.parse(LOOPBACK)
    async with aiohttp.ClientSession(connector=connector(policy)) as session:
        yield ChannelContext(session=session, egress=policy)


def config(graph: Graph, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": graph.url,
        "api_version": "v21.0",
        "phone_number_id": PHONE_NUMBER_ID,
        "to_path": "data.phone",
        "template": "Olá {{ data.name }}, você ganhou: {{ data.reward }}",
        **extra,
    }


def dest(cfg: dict[str, Any], *secrets: str) -> Destination:
    return Destination(
        id="d1",
        tenant_id="t1",
        name="wa",
        kind="whatsapp_cloud",
        config=cfg,
        secrets=secrets or (TOKEN,),
        timeout=5.0,
    )


def out(event: dict[str, Any] | None = None) -> Outbound:
    return Outbound(delivery_id="dlv_test", attempt=1, event=event or EVENT)


# --- sending each message form -------------------------------------------------------------------

FORMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "text": (
        {},
        {
            "type": "text",
            "text": {"preview_url": False, "body": "Olá Maria, você ganhou: Limpeza de pele"},
        },
    ),
    "template": (
        {
            "message": "template",
            "template": None,
            "wa_template": {
                "name": "reward_offered",
                "language": "pt_BR",
                "components": [
                    {"type": "body", "parameters": ["{{ data.name }}", "{{ data.reward }}"]},
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": 0,
                        "parameters": ["accept:{{ subject }}"],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": 1,
                        "parameters": ["{{ data.coupon }}"],
                    },
                ],
            },
        },
        {
            "type": "template",
            "template": {
                "name": "reward_offered",
                "language": {"code": "pt_BR"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Maria"},
                            {"type": "text", "text": "Limpeza de pele"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "quick_reply",
                        "index": "0",
                        "parameters": [{"type": "payload", "payload": "accept:patient-42"}],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "1",
                        "parameters": [{"type": "text", "text": "PELE10"}],
                    },
                ],
            },
        },
    ),
    "buttons": (
        {
            "message": "buttons",
            "buttons": [
                {"id": "accept:{{ subject }}", "text": "Quero!"},
                {"id": "later", "text": "Mais tarde, obrigada pela oferta"},
            ],
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Olá Maria, você ganhou: Limpeza de pele"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "accept:patient-42", "title": "Quero!"}},
                        # WhatsApp shows at most 20 characters of a button's title
                        {
                            "type": "reply",
                            "reply": {"id": "later", "title": "Mais tarde, obrigada"},
                        },
                    ]
                },
            },
        },
    ),
    "list": (
        {
            "message": "list",
            "list": {
                "button": "Ver horários",
                "sections": [
                    {
                        "title": "Esta semana",
                        "rows": [
                            {"id": "slot-tue-10", "title": "Terça 10h", "description": "Dra. Ana"},
                            {"id": "slot-wed-15", "title": "Quarta 15h"},
                        ],
                    }
                ],
            },
        },
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "Olá Maria, você ganhou: Limpeza de pele"},
                "action": {
                    "button": "Ver horários",
                    "sections": [
                        {
                            "title": "Esta semana",
                            "rows": [
                                {
                                    "id": "slot-tue-10",
                                    "title": "Terça 10h",
                                    "description": "Dra. Ana",
                                },
                                {"id": "slot-wed-15", "title": "Quarta 15h"},
                            ],
                        }
                    ],
                },
            },
        },
    ),
    "media": (
        {"message": "media", "media": {"type": "image", "url": "{{ data.image }}"}},
        {
            "type": "image",
            "image": {
                "link": "https://cdn.example.com/rewards/pele.png",
                "caption": "Olá Maria, você ganhou: Limpeza de pele",
            },
        },
    ),
    "document": (
        {
            "message": "media",
            "template": None,
            "media": {
                "type": "document",
                "url": "https://cdn.example.com/r/{{ data.coupon }}.pdf",
                "filename": "cupom-{{ data.coupon }}.pdf",
            },
        },
        {
            "type": "document",
            "document": {
                "link": "https://cdn.example.com/r/PELE10.pdf",
                "filename": "cupom-PELE10.pdf",
            },
        },
    ),
}


@pytest.mark.parametrize("form", list(FORMS))
async def test_sends_each_message_form(graph: Graph, ctx: ChannelContext, form: str) -> None:
    extra, expected = FORMS[form]
    cfg = {k: v for k, v in config(graph, **extra).items() if v is not None}
    channel = WhatsAppCloudChannel(ctx)
    assert channel.check_config(cfg) == []
    result = await channel.send(dest(cfg), out())
    assert result.ok, result
    assert result.provider_id == "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI0001"
    [seen] = graph.requests
    assert seen["path"] == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert seen["body"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511987654321",
        **expected,
    }
    # the attempt log keeps the request's headers with the token masked
    assert TOKEN not in orjson.dumps(result.request_headers).decode()


async def test_an_expired_token_is_graphs_401_with_its_error(
    graph: Graph, ctx: ChannelContext
) -> None:
    result = await WhatsAppCloudChannel(ctx).send(dest(config(graph), "EAA-expired"), out())
    assert not result.ok and result.status == 401 and result.provider_id is None
    assert '"code": 190' in result.response or '"code":190' in result.response


async def test_without_a_token_or_a_phone_nothing_is_sent(
    graph: Graph, ctx: ChannelContext
) -> None:
    channel = WhatsAppCloudChannel(ctx)
    no_token = await channel.send(dest(config(graph), ""), out())
    assert not no_token.ok and "access token" in (no_token.message or "")
    no_phone = await channel.send(dest(config(graph)), out({**EVENT, "data": {"name": "x"}}))
    assert not no_phone.ok and "data.phone" in (no_phone.message or "")
    bad_template = await channel.send(
        dest(config(graph, template="{{ data.name.missing.deeper }}")), out()
    )
    assert bad_template.error == "template_error"
    assert graph.requests == []


def test_config_problems_name_the_field() -> None:
    def fields(cfg: dict[str, Any]) -> list[str]:
        return [p.split(":")[0] for p in check_destination_config("whatsapp_cloud", cfg)]

    assert fields({}) == ["config.phone_number_id", "config.to", "config.template"]
    base = {"phone_number_id": "1065", "to": "5511987654321", "template": "hi"}
    assert fields({**base, "api_version": "21"}) == ["config.api_version"]
    assert fields({**base, "api_version": "v21.0\n"}) == ["config.api_version"]
    assert fields({**base, "phone_number_id": "12ab"}) == ["config.phone_number_id"]
    assert fields({**base, "message": "sticker"}) == ["config.message"]
    assert fields({**base, "message": "template"}) == ["config.wa_template"]
    assert fields(
        {
            **base,
            "message": "template",
            "wa_template": {
                "name": "Bad Name",
                "language": "portuguese",
                "components": [
                    {"type": "footer", "parameters": ["x"]},
                    {"type": "button", "parameters": ["{% if %}"]},
                ],
            },
        }
    ) == [
        "config.wa_template.name",
        "config.wa_template.language",
        "config.wa_template.components[0].type",
        "config.wa_template.components[1].sub_type",
        "config.wa_template.components[1].index",
        "config.wa_template.components[1].parameters[0]",
    ]
    four = [{"id": str(i), "text": "t"} for i in range(4)]
    assert fields({**base, "message": "buttons", "buttons": four}) == ["config.buttons"]
    assert fields({**base, "message": "buttons", "buttons": [{"id": "a"}]}) == [
        "config.buttons[0].text"
    ]
    rows = [{"id": str(i), "title": "t"} for i in range(11)]
    assert fields(
        {**base, "message": "list", "list": {"button": "b", "sections": [{"rows": rows}]}}
    ) == ["config.list.sections"]
    assert fields({**base, "message": "list", "list": {"sections": []}}) == [
        "config.list.button",
        "config.list.sections",
    ]
    assert fields({**base, "message": "media", "media": {"type": "gif"}}) == [
        "config.media.type",
        "config.media.url",
    ]
    for junk in (None, 7, "x", [1], {"a": {}}):
        for key in ("wa_template", "buttons", "list", "media", "message", "api_version"):
            problems = check_destination_config("whatsapp_cloud", {**base, key: junk})
            assert all(p.startswith("config.") for p in problems)


# --- end to end over the hub: sending, statuses, replies, the handshake --------------------------


async def _setup(api: Api, graph: Graph) -> tuple[str, str, dict[str, Any]]:
    """A tenant with a whatsapp_cloud destination and route, and a whatsapp_cloud source."""
    tid, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "wa-cloud",
            "kind": "whatsapp_cloud",
            "config": config(graph, message="buttons", buttons=[{"id": "confirm", "text": "Ok"}]),
            "secrets": [TOKEN],
        },
    )
    assert status == 201, body
    assert TOKEN not in orjson.dumps(body).decode()  # the token is write-only
    status, body, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        {"name": "r", "types": ["reward.*"], "destinations": ["wa-cloud"]},
    )
    assert status == 201, body
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "meta",
            "preset": "whatsapp_cloud",
            "preset_config": {"verify_token": VERIFY_TOKEN},
            "secrets": [APP_SECRET],
            "mapping": "whatsapp-cloud",
        },
    )
    assert status == 201, source
    assert VERIFY_TOKEN not in orjson.dumps(source).decode()
    assert APP_SECRET not in orjson.dumps(source).decode()
    return tid, key, source


async def _sent(api: Api, key: str, event_id: str = "evt_wa_1") -> dict[str, Any]:
    status, body, _ = await api.call("POST", "/v1/events", key, [{**EVENT, "id": event_id}])
    assert status == 202, body
    await worker_for(api).drain()
    _, deliveries, _ = await api.call("GET", f"/v1/events/{event_id}/deliveries", key)
    [delivery] = deliveries["data"]
    return dict(delivery)


async def _delivery(api: Api, key: str, delivery_id: str) -> dict[str, Any]:
    status, body, _ = await api.call("GET", f"/v1/deliveries/{delivery_id}", key)
    assert status == 200, body
    return dict(body.get("delivery", body))


async def _webhook(
    api: Api, source: dict[str, Any], body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=body,
        headers=signed(body) if headers is None else headers,
    )
    return status, reply


async def test_statuses_move_the_delivery_forward_only(hub_api: Api, graph: Graph) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    delivery = await _sent(api, key)
    assert delivery["status"] == "succeeded"
    wamid = delivery["provider_id"]
    assert wamid == "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI0001"
    assert graph.requests[0]["body"]["interactive"]["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": "confirm", "title": "Ok"}}
    ]

    status, reply = await _webhook(api, source, fixture("status_delivered.json", wamid))
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == ["whatsapp.message_status"]
    assert (await _delivery(api, key, delivery["id"]))["status"] == "delivered"

    status, reply = await _webhook(api, source, fixture("status_read.json", wamid))
    assert status == 200, reply
    assert (await _delivery(api, key, delivery["id"]))["status"] == "read"

    # a late "delivered" (and a retried one) never moves it back, nor does a late "failed"
    for late in ("status_delivered.json", "status_failed.json"):
        status, reply = await _webhook(api, source, fixture(late, wamid))
        assert status == 200, reply
        assert (await _delivery(api, key, delivery["id"]))["status"] == "read"

    status, event, _ = await api.call("GET", f"/v1/events/{wamid}:status:read", key)
    assert status == 200, event
    assert event["data"]["message_id"] == wamid and event["subject"] == "5511987654321"


async def test_a_failed_status_marks_the_delivery_dead_with_the_error(
    hub_api: Api, graph: Graph
) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    delivery = await _sent(api, key)
    status, reply = await _webhook(
        api, source, fixture("status_failed.json", delivery["provider_id"])
    )
    assert status == 200, reply
    after = await _delivery(api, key, delivery["id"])
    assert after["status"] == "dead"
    assert "131026" in after["last_error"] and "Message undeliverable" in after["last_error"]
    status, dlq, _ = await api.call("GET", "/v1/dlq", key)
    assert status == 200 and [d["id"] for d in dlq["data"]] == [delivery["id"]], dlq


async def test_a_button_reply_carries_the_delivery_it_answers(hub_api: Api, graph: Graph) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    # a route matching replies to this destination's messages, through the reply's context
    status, dests, _ = await api.call("GET", "/v1/destinations", key)
    dest_id = next(d["id"] for d in dests["data"] if d["name"] == "wa-cloud")
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "replies", "kind": "inbox", "config": {"recipient": "front-desk"}},
    )
    assert status == 201, body
    status, body, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        {
            "name": "answers",
            "types": ["whatsapp.message_received"],
            "filter": {"context": {"in_reply_to_destination": [dest_id]}},
            "destinations": ["replies"],
        },
    )
    assert status == 201, body
    delivery = await _sent(api, key)
    status, reply = await _webhook(
        api, source, fixture("button_reply.json", delivery["provider_id"])
    )
    assert status == 200, reply
    [result] = reply["events"]
    status, event, _ = await api.call("GET", f"/v1/events/{result['id']}", key)
    assert status == 200, event
    assert event["type"] == "whatsapp.message_received"
    assert event["data"]["reply"] == {"id": "confirm-appt-42", "title": "Confirmar"}
    assert event["data"]["in_reply_to"] == delivery["provider_id"]
    assert event["context"]["in_reply_to_delivery"] == delivery["id"]
    assert event["context"]["in_reply_to_destination"] == dest_id
    await worker_for(api).drain()
    status, inbox, _ = await api.call("GET", "/v1/inbox/front-desk", key)
    assert status == 200 and len(inbox["data"]) == 1, inbox

    # a message that answers nothing of ours carries no delivery, and no route matches it
    status, reply = await _webhook(api, source, fixture("text_message.json"))
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == ["whatsapp.message_received"] * 2
    status, first, _ = await api.call("GET", f"/v1/events/{reply['events'][0]['id']}", key)
    assert first["data"]["text"] == "Olá, quero remarcar minha consulta"
    assert "in_reply_to_delivery" not in first["context"]
    status, second, _ = await api.call("GET", f"/v1/events/{reply['events'][1]['id']}", key)
    assert second["data"]["reply"] == {"id": "slot-tue-10", "title": "Terça 10h"}


async def test_a_reply_to_an_automations_message_carries_its_run(
    hub_api: Api, graph: Graph
) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    automation = {
        "name": "confirm-appointment",
        "on": "appointment.scheduled",
        "steps": [{"id": "ask", "send": {"destination": "wa-cloud"}}],
    }
    status, body, _ = await api.call("PUT", "/v1/automations/confirm-appointment", key, automation)
    assert status == 201, body
    event = {**EVENT, "id": "appt-1", "type": "appointment.scheduled"}
    status, body, _ = await api.call("POST", "/v1/events", key, [event])
    assert status == 202, body
    while await api.hub.engine.tick():
        pass
    await worker_for(api).drain()
    _, runs, _ = await api.call("GET", "/v1/automations/confirm-appointment/runs", key)
    [run] = runs["data"]
    _, detail, _ = await api.call("GET", f"/v1/runs/{run['id']}", key)
    delivery = await _delivery(api, key, detail["steps"][0]["delivery_id"])
    assert delivery["status"] == "succeeded" and delivery["provider_id"], delivery
    status, reply = await _webhook(
        api, source, fixture("button_reply.json", delivery["provider_id"])
    )
    assert status == 200, reply
    _, answer, _ = await api.call("GET", f"/v1/events/{reply['events'][0]['id']}", key)
    assert answer["context"]["in_reply_to_delivery"] == delivery["id"]
    assert answer["context"]["in_reply_to_run"] == run["id"]


@pytest.mark.security
async def test_bad_or_missing_signature_is_refused(hub_api: Api, graph: Graph) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    delivery = await _sent(api, key)
    body = fixture("status_read.json", delivery["provider_id"])
    for headers in (
        signed(body, "not-the-app-secret"),
        {"Content-Type": "application/json"},
        {**signed(body), "X-Hub-Signature-256": "sha1=abc"},
        signed(body + b" "),  # signed another body
    ):
        status, reply = await _webhook(api, source, body, headers)
        assert status == 401, reply
        assert reply["error"]["code"] == "signature_invalid"
    assert (await _delivery(api, key, delivery["id"]))["status"] == "succeeded"


@pytest.mark.security
async def test_subscription_handshake(hub_api: Api, graph: Graph) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    url = f"{api.url}/v1/sources/{source['id']}/webhook"
    good = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with api.session.get(url, params=good) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert await resp.text() == "1158201444"
    for params, expected, names in (
        ({**good, "hub.verify_token": "wrong-token-123"}, 403, "hub.verify_token"),
        ({**good, "hub.mode": "unsubscribe"}, 400, "hub.mode"),
        ({**good, "hub.challenge": "<script>alert(1)</script>"}, 400, "hub.challenge"),
        ({**good, "hub.challenge": "1158201444\n<b>"}, 400, "hub.challenge"),
        ({**good, "hub.challenge": "1158201444\n"}, 400, "hub.challenge"),
        ({k: v for k, v in good.items() if k != "hub.challenge"}, 400, "hub.challenge"),
    ):
        async with api.session.get(url, params=params) as resp:
            assert resp.status == expected
            assert names in (await resp.json())["error"]["message"]
    # a source of another preset has no handshake
    status, other, _ = await api.call(
        "POST", "/v1/sources", key, {"name": "gh", "preset": "github", "secrets": ["s3cr3t-abc"]}
    )
    assert status == 201
    async with api.session.get(f"{api.url}/v1/sources/{other['id']}/webhook", params=good) as r:
        assert r.status == 404


async def test_source_needs_its_verify_token_and_app_secret(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    for body, field_name in (
        ({"name": "m", "preset": "whatsapp_cloud", "secrets": [APP_SECRET]}, "verify_token"),
        (
            {
                "name": "m",
                "preset": "whatsapp_cloud",
                "preset_config": {"verify_token": "short"},
                "secrets": [APP_SECRET],
            },
            "verify_token",
        ),
        (
            {
                "name": "m",
                "preset": "whatsapp_cloud",
                "preset_config": {"verify_token": VERIFY_TOKEN},
            },
            "secrets",
        ),
    ):
        status, reply, _ = await api.call("POST", "/v1/sources", key, body)
        assert 400 <= status < 500, reply
        assert field_name in reply["error"]["message"]


# --- abuse -------------------------------------------------------------------------------------


@pytest.mark.security
async def test_another_tenant_cannot_move_or_claim_our_deliveries(
    hub_api: Api, graph: Graph
) -> None:
    """Tenant B's own (validly signed) webhooks naming tenant A's wamid touch nothing of A's."""
    api = hub_api
    _, key_a, _ = await _setup(api, graph)
    delivery = await _sent(api, key_a)
    wamid = delivery["provider_id"]
    _, key_b, source_b = await _setup(api, graph)
    for name in ("status_read.json", "status_failed.json"):
        status, reply = await _webhook(api, source_b, fixture(name, wamid))
        assert status == 200, reply
    assert (await _delivery(api, key_a, delivery["id"]))["status"] == "succeeded"
    status, reply = await _webhook(api, source_b, fixture("button_reply.json", wamid))
    assert status == 200, reply
    _, event, _ = await api.call("GET", f"/v1/events/{reply['events'][0]['id']}", key_b)
    assert "in_reply_to_delivery" not in event["context"]


@pytest.mark.security
async def test_base_url_goes_through_the_egress_guard() -> None:
    """Without the loopback allowance a destination naming a private address is refused when
    saved, and a send to one is refused before it connects."""
    problems = check_destination_config("whatsapp_cloud", {"base_url": "file:///etc/passwd"})
    assert problems[0].startswith("config.base_url:")
    policy = Policy.parse("")
    async with aiohttp.ClientSession(connector=connector(policy)) as session:
        channel = WhatsAppCloudChannel(ChannelContext(session=session, egress=policy))
        cfg = {**config(Graph(url="http://127.0.0.1:9")), "to": "5511987654321"}
        cfg.pop("to_path")
        result = await channel.send(dest(cfg), out())
    assert not result.ok and result.error == "egress_denied"
