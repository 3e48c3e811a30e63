"""The SMS channel against a local server speaking Twilio's Messages API (and a generic gateway):
a route sends, Twilio's signed status callbacks come back through a `twilio` source and move the
delivery forward only; a bad signature is refused; segment counts are recorded on the attempt."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from tests.conftest import Api
from tests.integration.conftest import worker_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twilio"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-0123456789"
SERVICE = "MG" + "fedcba9876543210" * 2


def _sign(url: str, params: dict[str, str], token: str) -> str:
    """Signed as Twilio signs: with its own library's validator (a dev dependency)."""
    return str(RequestValidator(token).compute_signature(url, params))


@dataclass
class FakeTwilio:
    """Twilio's `Messages.json` resource: Basic auth with the account SID and auth token, a form,
    201 with the Message resource (`sid`, `status: queued`, `num_segments`)."""

    url: str = ""
    sent: list[dict[str, str]] = field(default_factory=list)
    sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def messages(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        if request.match_info["account"] != ACCOUNT:
            return web.json_response({"code": 20404, "status": 404}, status=404)
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"code": 20003, "status": 401}, status=401)
        assert request.content_type == "application/x-www-form-urlencoded"
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        self.sent.append(form)
        if not form["To"].startswith("+") or len(form["To"]) < 9:
            answer = orjson.loads((FIXTURES / "error_invalid_to.json").read_bytes())
            return web.json_response(answer, status=400)
        message = orjson.loads((FIXTURES / "message_created.json").read_bytes())
        sid = f"SM{next(self.sids):032x}"
        message.update(
            account_sid=ACCOUNT,
            sid=sid,
            to=form["To"],
            body=form["Body"],
            **{"from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid")},
        )
        return web.json_response(message, status=201)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", fake.messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


async def _setup(api: Api, key: str, config: dict[str, Any], secret: str = TOKEN) -> None:
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "sms", "kind": "sms", "secrets": [secret], "config": config},
    )
    assert status == 201, body
    assert secret not in orjson.dumps(body["config"]).decode()
    status, body, _ = await api.call(
        "POST",
        "/v1/routes",
        key,
        {"name": "avisos", "types": ["lembrete.*"], "destinations": ["sms"]},
    )
    assert status == 201, body


async def _emit(api: Api, key: str, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    status, body, _ = await api.call(
        "POST", "/v1/events", key, {"id": event_id, "type": "lembrete.consulta", "data": data}
    )
    assert status == 202 and body["accepted"] == 1, body
    await worker_for(api).drain()
    _, found, _ = await api.call("GET", f"/v1/events/{event_id}/deliveries", key)
    assert len(found["data"]) == 1, found
    delivery: dict[str, Any] = found["data"][0]
    return delivery


async def _attempt(api: Api, key: str, delivery_id: str) -> dict[str, Any]:
    status, body, _ = await api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", key)
    assert status == 200, body
    last: dict[str, Any] = body["data"][-1]
    return last


def _twilio_config(fake: FakeTwilio, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "base_url": fake.url,
        "account_sid": ACCOUNT,
        "from": "+1 (555) 712-2661",
        "to_path": "data.telefone",
        "default_country": "55",
        "template": "Olá {{ data.nome }}, sua consulta é amanhã às {{ data.hora }}.",
        **extra,
    }


async def test_a_send_then_signed_status_callbacks_move_it_forward_only(
    hub_api: Api, twilio: FakeTwilio
) -> None:
    api = hub_api
    _, key = await api.tenant()
    _, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {"name": "twilio", "preset": "twilio", "secrets": [TOKEN], "mapping": "twilio-sms"},
    )
    callback = f"{api.url}/v1/sources/{source['id']}/webhook"
    await _setup(api, key, _twilio_config(twilio, status_callback=callback))

    delivery = await _emit(
        api, key, "c-1", {"telefone": "(11) 98765-4321", "nome": "Ana", "hora": "14h"}
    )
    assert delivery["status"] == "succeeded", delivery
    form = twilio.sent[0]
    assert form["To"] == "+5511987654321"  # E.164
    assert form["From"] == "+15557122661"
    assert form["Body"] == "Olá Ana, sua consulta é amanhã às 14h."
    assert form["StatusCallback"] == callback
    sid = delivery["provider_id"]
    assert sid and sid.startswith("SM") and len(sid) == 34
    attempt = await _attempt(api, key, delivery["id"])
    assert "sms: 1 segment (UCS-2)" in attempt["message"]  # "á", "é" are outside GSM-7
    shown = attempt["request_headers"]["Authorization"]  # kept, masked
    assert shown and TOKEN not in shown and ACCOUNT not in shown
    assert (
        base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
        not in orjson.dumps(attempt).decode()
    )

    base = orjson.loads((FIXTURES / "status_callback.json").read_bytes())
    del base["_comment"]

    async def callback_with(status: str, *, token: str = TOKEN, **more: str) -> tuple[int, Any]:
        params = {**base, "MessageSid": sid, "SmsSid": sid, "MessageStatus": status}
        params.update(SmsStatus=status, To=form["To"], AccountSid=ACCOUNT, **more)
        code, reply, _ = await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": _sign(callback, params, token),
            },
        )
        return code, reply

    async def status_now() -> tuple[str, str | None]:
        _, found, _ = await api.call("GET", "/v1/events/c-1/deliveries", key)
        return found["data"][0]["status"], found["data"][0].get("last_error")

    code, reply = await callback_with("sent")
    assert code == 200, reply
    assert (await status_now())[0] == "succeeded"  # "sent" moves nothing
    code, reply = await callback_with("delivered")
    assert code == 200, reply
    assert (await status_now())[0] == "delivered"
    code, reply = await callback_with("sent")  # a late "sent" never moves it back
    assert code == 200, reply
    code, reply = await callback_with("failed", ErrorCode="30008")  # nor does a later failure
    assert code == 200, reply
    assert (await status_now())[0] == "delivered"

    # a bad signature (signed with another token) is refused and changes nothing
    code, reply = await callback_with("undelivered", token="not-the-token")
    assert code == 401, reply
    assert (await status_now())[0] == "delivered"
    _, events, _ = await api.call("GET", "/v1/events?type=sms.status", key)
    assert sorted(e["data"]["status"] for e in events["data"]) == ["delivered", "failed", "sent"]
    assert {e["subject"] for e in events["data"]} == {"5511987654321"}


async def test_an_undelivered_callback_fails_the_delivery_with_the_error(
    hub_api: Api, twilio: FakeTwilio
) -> None:
    api = hub_api
    tid, key = await api.tenant()
    _, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "twilio",
            "preset": "twilio",
            "secrets": [TOKEN],
            "mapping": "twilio-sms",
            # the URL Twilio was given (a proxy in front of the hub): what it signs
            "preset_config": {"url": "https://hub.example.com/sms/status"},
        },
    )
    await _setup(
        api,
        key,
        _twilio_config(
            twilio,
            messaging_service_sid=SERVICE,
            status_callback="https://hub.example.com/sms/status",
            **{"from": None},
        ),
    )
    delivery = await _emit(api, key, "c-2", {"telefone": "+55 31 9876-5432", "nome": "Bia"})
    assert twilio.sent[0]["MessagingServiceSid"] == SERVICE and "From" not in twilio.sent[0]
    assert twilio.sent[0]["To"] == "+5531998765432"  # the ninth digit of a Brazilian mobile
    params = {
        "MessageSid": delivery["provider_id"],
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "AccountSid": ACCOUNT,
        "To": "+5531998765432",
    }
    code, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _sign("https://hub.example.com/sms/status", params, TOKEN),
        },
    )
    assert code == 200, reply
    _, found, _ = await api.call("GET", "/v1/events/c-2/deliveries", key)
    assert found["data"][0]["status"] == "failed"
    assert "undelivered" in found["data"][0]["last_error"]
    assert "30003" in found["data"][0]["last_error"]
    # forward only: neither a late "delivered" nor a repeated failure moves it again
    sid = delivery["provider_id"]
    assert await api.hub.deliveries.provider_status(tid, sid, "delivered", 1) == 0
    assert await api.hub.deliveries.provider_status(tid, sid, "failed", 1, error="again") == 0
    _, found, _ = await api.call("GET", "/v1/events/c-2/deliveries", key)
    assert found["data"][0]["status"] == "failed"
    assert "30003" in found["data"][0]["last_error"]


async def test_twilio_refusing_the_number_fails_the_attempt(
    hub_api: Api, twilio: FakeTwilio
) -> None:
    api = hub_api
    _, key = await api.tenant()
    await _setup(api, key, _twilio_config(twilio, template="Oi"))
    delivery = await _emit(api, key, "c-3", {"telefone": "+55 11"})
    # "+5511" is not a number we send to: refused before Twilio is called
    assert twilio.sent == []
    assert delivery["status"] in ("retrying", "dead"), delivery
    assert "data.telefone" in (delivery["last_error"] or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, "1 segment (GSM-7)"),
        ("a" * 161, "2 segments (GSM-7)"),
        ("Promo {50%} €" + "x" * 150, "2 segments (GSM-7)"),  # { } € take two septets
        ("Olá 😀" * 14, "2 segments (UCS-2)"),  # 84 UTF-16 units
    ],
)
async def test_segments_are_counted_on_the_attempt(
    hub_api: Api, twilio: FakeTwilio, text: str, expected: str
) -> None:
    api = hub_api
    _, key = await api.tenant()
    await _setup(api, key, _twilio_config(twilio, template="{{ data.texto }}"))
    delivery = await _emit(api, key, "c-4", {"telefone": "11987654321", "texto": text})
    assert delivery["status"] == "succeeded", delivery
    assert twilio.sent[0]["Body"] == text
    attempt = await _attempt(api, key, delivery["id"])
    assert attempt["message"] == f"sms: {expected}"


async def test_the_generic_gateway(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    got: list[tuple[str, dict[str, str], Any]] = []

    async def gateway(request: web.Request) -> web.Response:
        got.append((request.method, dict(request.headers), await request.json()))
        if request.headers.get("X-Api-Key") != "gw-key-42":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"message_id": "gw-777", "status": "accepted"})

    app = web.Application()
    app.router.add_route("*", "/v1/sms", gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await _setup(
            api,
            key,
            {
                "provider": "gateway",
                "url": f"http://127.0.0.1:{port}/v1/sms",
                "method": "PUT",
                "auth_header": "X-Api-Key",
                "to_path": "data.telefone",
                "default_country": "55",
                "template": "Código {{ data.codigo }}",
                "body_template": '{"destino": {{ sms.to | tojson }}, "mensagem": '
                '{{ sms.text | tojson }}, "ref": {{ event.id | tojson }}}',
            },
            secret="gw-key-42",
        )
        delivery = await _emit(api, key, "g-1", {"telefone": "021 99876-5432", "codigo": "7731"})
        assert delivery["status"] == "succeeded", delivery["last_error"]
        assert delivery["provider_id"] == "gw-777"
        method, headers, body = got[0]
        assert method == "PUT" and headers["X-Api-Key"] == "gw-key-42"
        assert body == {"destino": "+5521998765432", "mensagem": "Código 7731", "ref": "g-1"}
        attempt = await _attempt(api, key, delivery["id"])
        assert attempt["message"] == "sms: 1 segment (UCS-2)"  # "ó" is outside GSM-7
        assert "gw-key-42" not in orjson.dumps(attempt).decode()
    finally:
        await runner.cleanup()


async def test_config_problems_name_the_field(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    cases = [
        ({"provider": "twilio"}, "config.account_sid"),
        ({"provider": "carrier-pigeon"}, "config.provider"),
        ({"provider": "twilio", "account_sid": ACCOUNT, "to": "1", "template": "x"}, "config.from"),
        (
            {
                "provider": "twilio",
                "account_sid": ACCOUNT,
                "from": "+15557122661",
                "to": "(11) 98765-4321",
                "template": "x",
            },
            "config.to",  # no country code and no default_country
        ),
        (
            {"provider": "gateway", "url": "ftp://x", "to": "+5511987654321", "template": "x"},
            "config.url",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "to": "+5511987654321",
                "template": "x",
                "max_segments": 11,
            },
            "config.max_segments",
        ),
        (
            {
                "provider": "gateway",
                "url": "http://127.0.0.1/",
                "to": "+5511987654321",
                "template": "{{ unclosed",
            },
            "config.template",
        ),
    ]
    for config, field_name in cases:
        status, body, _ = await api.call(
            "POST", "/v1/destinations", key, {"name": "s", "kind": "sms", "config": config}
        )
        assert status == 422 and field_name in orjson.dumps(body).decode(), (config, body)


@pytest.mark.security
async def test_hostile_sms_configs_and_texts(hub_api: Api, twilio: FakeTwilio) -> None:
    """A tenant's SMS destination goes through the egress guard, the template budget and the
    segment limit: denied addresses refused when saved, a text too long or a runaway template
    fails the delivery without anything sent."""
    api = hub_api
    _, key = await api.tenant()
    for config, where in [
        (_twilio_config(twilio, base_url="http://169.254.169.254/latest"), "config.base_url"),
        (
            {
                "provider": "gateway",
                "url": "http://10.0.0.7/send",
                "to": "+5511987654321",
                "template": "x",
            },
            "config.url",
        ),
    ]:
        status, body, _ = await api.call(
            "POST", "/v1/destinations", key, {"name": "s", "kind": "sms", "config": config}
        )
        assert status == 422 and where in orjson.dumps(body).decode(), body

    await _setup(api, key, _twilio_config(twilio, template="{{ data.texto }}", max_segments=2))
    delivery = await _emit(api, key, "h-1", {"telefone": "11987654321", "texto": "a" * 307})
    assert delivery["status"] == "dead" and twilio.sent == []
    assert "3 segments (GSM-7), over max_segments 2" in delivery["last_error"]

    status, _, _ = await api.call(
        "PATCH",
        "/v1/destinations/sms",
        key,
        {"config": _twilio_config(twilio, template="{% for i in range(10**9) %}x{% endfor %}")},
    )
    assert status == 200
    delivery = await _emit(api, key, "h-2", {"telefone": "11987654321"})
    assert delivery["status"] == "dead" and twilio.sent == []
    assert delivery["last_error"].startswith("template_error")


@pytest.mark.security
async def test_a_callback_cannot_move_another_tenants_delivery(
    hub_api: Api, twilio: FakeTwilio
) -> None:
    """Tenant B signs a valid callback with its own token for tenant A's message: B's source
    accepts it (it is B's event), A's delivery does not move."""
    api = hub_api
    _, key_a = await api.tenant()
    _, key_b = await api.tenant()
    await _setup(api, key_a, _twilio_config(twilio))
    delivery = await _emit(api, key_a, "t-1", {"telefone": "11987654321", "nome": "A"})
    assert delivery["status"] == "succeeded"
    _, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key_b,
        {"name": "twilio", "preset": "twilio", "secrets": ["b-token"], "mapping": "twilio-sms"},
    )
    url = f"{api.url}/v1/sources/{source['id']}/webhook"
    params = {"MessageSid": delivery["provider_id"], "MessageStatus": "failed", "ErrorCode": "1"}
    code, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _sign(url, params, "b-token"),
        },
    )
    assert code == 200, reply
    _, found, _ = await api.call("GET", "/v1/events/t-1/deliveries", key_a)
    assert found["data"][0]["status"] == "succeeded"


async def test_to_recipient_takes_the_profiles_phone(hub_api: Api, twilio: FakeTwilio) -> None:
    api = hub_api
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "PUT", "/v1/recipients/cli_9", key, {"phone": "+55 31 99876-5432", "name": "Carla"}
    )
    assert status in (200, 201), body
    config = _twilio_config(twilio, template="Oi {{ recipient.name }}, sua recompensa chegou.")
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "sms", "kind": "sms", "secrets": [TOKEN], "config": config},
    )
    assert status == 201, body
    route = {"name": "ofertas", "types": ["lembrete.*"], "destinations": ["sms"], "to": "recipient"}
    status, body, _ = await api.call("POST", "/v1/routes", key, route)
    assert status == 201, body
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        {"id": "r-1", "type": "lembrete.oferta", "subject": "cli_9", "data": {"telefone": "1"}},
    )
    assert status == 202 and body["accepted"] == 1, body
    await worker_for(api).drain()
    _, found, _ = await api.call("GET", "/v1/events/r-1/deliveries", key)
    assert found["data"][0]["status"] == "succeeded", found
    # the profile's phone, not data.telefone (the destination's to_path)
    assert twilio.sent[0]["To"] == "+5531998765432"
    assert twilio.sent[0]["Body"] == "Oi Carla, sua recompensa chegou."


async def test_a_wpp_gateway_error_ack_fails_the_whatsapp_delivery_too(hub_api: Api) -> None:
    """The receipts path is shared: the WPP gateway's ack -1 ("failed") now moves its
    delivery to failed, as Twilio's undelivered does."""
    api = hub_api
    _, key = await api.tenant()

    async def messages(request: web.Request) -> web.Response:
        return web.json_response({"id": "true_5511999990000@c.us_ERR1"})

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = {
            "provider": "gateway",
            "base_url": f"http://127.0.0.1:{port}",
            "channel": "tenant-042",
            "to_path": "data.telefone",
            "template": "Oi",
        }
        status, body, _ = await api.call(
            "POST",
            "/v1/destinations",
            key,
            {"name": "sms", "kind": "whatsapp", "secrets": ["gw-secret"], "config": config},
        )
        assert status == 201, body
        await api.call(
            "POST",
            "/v1/routes",
            key,
            {"name": "r", "types": ["lembrete.*"], "destinations": ["sms"]},
        )
        delivery = await _emit(api, key, "w-1", {"telefone": "5511999990000"})
        assert delivery["status"] == "succeeded", delivery
        _, source, _ = await api.call(
            "POST",
            "/v1/sources",
            key,
            {
                "name": "gw",
                "preset": "wpp_gateway",
                "secrets": ["gw-secret"],
                "mapping": "wpp-gateway",
            },
        )
        payload = {
            "event": "message.ack",
            "channel": "tenant-042",
            "data": {"id": delivery["provider_id"], "ack": -1, "timestamp": 1737980490},
        }
        code, reply, _ = await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json", "X-Gateway-Secret": "gw-secret"},
        )
        assert code == 200, reply
        _, found, _ = await api.call("GET", "/v1/events/w-1/deliveries", key)
        assert found["data"][0]["status"] == "failed"
        assert found["data"][0]["last_error"] == "provider: failed"
    finally:
        await runner.cleanup()


async def test_the_receipt_endpoint_takes_failed(hub_api: Api, twilio: FakeTwilio) -> None:
    """A provider the hub has no source for reports through POST /v1/deliveries/provider-status."""
    api = hub_api
    _, key = await api.tenant()
    await _setup(api, key, _twilio_config(twilio, template="Oi"))
    delivery = await _emit(api, key, "e-1", {"telefone": "11987654321"})
    receipt = {"provider_id": delivery["provider_id"], "status": "failed", "error": "30005"}
    status, body, _ = await api.call("POST", "/v1/deliveries/provider-status", key, receipt)
    assert status == 200 and body == {"updated": 1}, body
    status, body, _ = await api.call("POST", "/v1/deliveries/provider-status", key, receipt)
    assert status == 200 and body == {"updated": 0}, body  # already failed
    _, found, _ = await api.call("GET", "/v1/events/e-1/deliveries", key)
    assert found["data"][0]["status"] == "failed"
    assert found["data"][0]["last_error"] == "provider: 30005"
    status, body, _ = await api.call(
        "POST", "/v1/deliveries/provider-status", key, {**receipt, "error": "x" * 501}
    )
    assert status == 400 and body["error"]["details"][0]["path"] == "/error", body
