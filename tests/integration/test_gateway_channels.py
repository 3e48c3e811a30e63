"""A tenant's WhatsApp channel set up on the WPP Gateway through the hub's API, on both stores,
against the gateway test server (tests/wpp_gateway.py, mounted under /wpp by the `providers`
fixture): create it, read its state and QR code, register the hub's source URL as its webhook,
and see the gateway's `connection.update` become `whatsapp.connection_updated`."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.catalog import load_catalog_dir
from switchboard.channels import Destination
from switchboard.channels.wpp_gateway import PNG_MAGIC, QR_LIMIT
from switchboard.config import Settings
from switchboard.envelope import now_us
from tests.conftest import Api, fresh_database, serve
from tests.integration.test_channels import (  # noqa: F401
    GATEWAY_SECRET,
    Providers,
    providers,
)
from tests.wpp_gateway import WppGateway
from tests.wpp_gateway import serve as serve_gateway

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "tenant-042"


async def _tenant(api: Api) -> tuple[str, str]:
    tid, key = await api.tenant()
    await api.hub.registry.apply(tid, load_catalog_dir(ROOT / "catalogs" / "comms-hub"))
    return tid, key


async def _destination(
    api: Api, key: str, base_url: str, name: str = "wpp", secret: str = GATEWAY_SECRET
) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "whatsapp",
        "secrets": [secret],
        "config": {
            "provider": "gateway",
            "base_url": base_url,
            "channel": CHANNEL,
            "to_path": "data.phone",
            "template": "Olá!",
        },
    }
    status, created, _ = await api.call("POST", "/v1/destinations", key, body)
    assert status == 201, created
    return dict(created)


async def _source(api: Api, key: str, secret: str = GATEWAY_SECRET) -> dict[str, Any]:
    body = {
        "name": "gateway",
        "preset": "wpp_gateway",
        "secrets": [secret],
        "mapping": "wpp-gateway",
    }
    status, created, _ = await api.call("POST", "/v1/sources", key, body)
    assert status == 201, created
    return dict(created)


async def _events(api: Api, key: str, etype: str) -> list[dict[str, Any]]:
    status, listing, _ = await api.call("GET", f"/v1/events?type={etype}", key)
    assert status == 200, listing
    return list(listing["data"])


async def test_a_channel_is_created_scanned_and_reports_its_connection(
    hub_api: Api,
    providers: Providers,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # what the hub logs about it, checked for the secret below
    api, gateway = hub_api, providers.gateway
    _, key = await _tenant(api)
    await _destination(api, key, f"{providers.url}/wpp")
    answers: list[Any] = []

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer, _ = await api.call(method, path, key, body)
        answers.append(answer)
        return status, answer

    status, answer = await call("GET", "/v1/destinations/wpp/channel")
    assert status == 404 and "POST /v1/destinations/wpp/channel" in answer["error"]["message"]

    status, answer = await call("POST", "/v1/destinations/wpp/channel")
    assert status == 201, answer
    assert answer == {
        "destination": "wpp",
        "channel": CHANNEL,
        "status": "qr_required",
        "phone": None,
        "gateway_status": None,
    }
    status, again = await call("POST", "/v1/destinations/wpp/channel")
    assert status == 200 and again == answer  # idempotent: the gateway is not asked to create
    assert gateway.calls.count(("POST", "/wpp/api/channels")) == 1
    assert list(gateway.channels) == [CHANNEL]

    status, answer = await call("GET", "/v1/destinations/wpp/channel/qr")
    assert status == 200, answer
    assert answer["status"] == "qr_required"
    assert answer["qr"] == gateway.channels[CHANNEL].qr  # the text the phone scans
    head, _, png = answer["png"].partition(",")
    assert head == "data:image/png;base64" and base64.b64decode(png).startswith(PNG_MAGIC)
    status, png_body, headers = await api.call("GET", "/v1/destinations/wpp/channel/qr.png", key)
    assert status == 200 and headers["content-type"] == "image/png"
    assert png_body.startswith(PNG_MAGIC) and png_body == base64.b64decode(png)

    source = await _source(api, key)
    status, answer = await call(
        "POST", "/v1/destinations/wpp/channel/webhook", {"source": "gateway"}
    )
    assert status == 200, answer
    url = f"{api.url}/v1/sources/{source['id']}/webhook"
    assert answer == {
        "destination": "wpp",
        "channel": CHANNEL,
        "source": source["id"],
        "url": url,
        "events": ["message", "message.ack", "connection.update"],
    }
    assert gateway.channels[CHANNEL].webhook == url

    await gateway.scan(CHANNEL, "5547930001111")  # the phone scans: the gateway posts to the hub
    assert gateway.posted[-1][0] == 200, gateway.posted
    (event,) = await _events(api, key, "whatsapp.connection_updated")
    assert event["data"]["status"] == "connected"
    assert event["data"]["channel_id"] == CHANNEL
    assert event["data"]["phone"] == "5547930001111"
    status, answer = await call("GET", "/v1/destinations/wpp/channel")
    assert (status, answer["status"], answer["phone"]) == (200, "connected", "5547930001111")
    status, answer = await call("GET", "/v1/destinations/wpp/channel/qr")
    assert status == 409 and "connected" in answer["error"]["message"]

    await gateway.log_out(CHANNEL)
    events = await _events(api, key, "whatsapp.connection_updated")
    assert sorted(e["data"]["status"] for e in events) == ["connected", "disconnected"]
    assert any(e["data"].get("reason") == "logged out from phone" for e in events)
    status, answer = await call("GET", "/v1/destinations/wpp/channel")
    assert answer["status"] == "disconnected"

    # every call carried the secret; no answer ever showed it
    assert all(
        s.headers["X-Gateway-Secret"] == GATEWAY_SECRET
        for s in providers.seen
        if s.path.startswith("/wpp")
    )
    assert GATEWAY_SECRET not in orjson.dumps(answers).decode()
    assert "gateway channel created" in caplog.text and GATEWAY_SECRET not in caplog.text


async def test_the_webhook_url_is_under_the_public_url(
    providers: Providers,  # noqa: F811
    tmp_path: Path,
) -> None:
    public = "https://hub.example.com/switchboard"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        key_rate=0,
        tenant_rate=0,
        egress_allow="127.0.0.0/8",
        public_url=public + "/",
    )
    async with serve(settings) as api:
        _, key = await _tenant(api)
        await _destination(api, key, f"{providers.url}/wpp")
        assert (await api.call("POST", "/v1/destinations/wpp/channel", key))[0] == 201
        source = await _source(api, key)
        status, answer, _ = await api.call(
            "POST", "/v1/destinations/wpp/channel/webhook", key, {"source": source["id"]}
        )
        assert status == 200, answer
        assert answer["url"] == f"{public}/v1/sources/{source['id']}/webhook"
        assert providers.gateway.channels[CHANNEL].webhook == answer["url"]


async def test_the_webhook_needs_a_gateway_source_that_accepts_the_secret(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    api = hub_api
    _, key = await _tenant(api)
    await _destination(api, key, f"{providers.url}/wpp")
    assert (await api.call("POST", "/v1/destinations/wpp/channel", key))[0] == 201
    await _source(api, key, secret="another-secret-123")
    status, answer, _ = await api.call(
        "POST", "/v1/destinations/wpp/channel/webhook", key, {"source": "gateway"}
    )
    assert status == 422 and answer["error"]["details"][0]["path"] == "/source"
    assert "secret" in answer["error"]["message"]
    body = {"name": "zapi", "preset": "zapi", "secrets": [GATEWAY_SECRET], "mapping": "zapi"}
    assert (await api.call("POST", "/v1/sources", key, body))[0] == 201
    status, answer, _ = await api.call(
        "POST", "/v1/destinations/wpp/channel/webhook", key, {"source": "zapi"}
    )
    assert status == 422 and "wpp_gateway" in answer["error"]["message"]
    status, answer, _ = await api.call(
        "POST", "/v1/destinations/wpp/channel/webhook", key, {"sourc": "zapi"}
    )
    assert status == 400 and answer["error"]["details"][0]["path"] in ("/sourc", "/source")
    assert providers.gateway.channels[CHANNEL].webhook is None


async def test_a_destination_that_is_not_a_gateway_is_a_422_naming_the_field(
    hub_api: Api,
) -> None:
    api = hub_api
    _, key = await _tenant(api)
    body = {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    assert (await api.call("POST", "/v1/destinations", key, body))[0] == 201
    status, answer, _ = await api.call("POST", "/v1/destinations/hook/channel", key)
    assert status == 422 and answer["error"]["details"][0]["path"] == "/config/provider"
    body = {
        "name": "odd",
        "kind": "whatsapp",
        "secrets": [GATEWAY_SECRET],
        "config": {
            "provider": "gateway",
            "base_url": "http://127.0.0.1:9",
            "channel": "../api/messages",
            "to": "5511999990000",
            "template": "x",
        },
    }
    assert (await api.call("POST", "/v1/destinations", key, body))[0] == 201
    status, answer, _ = await api.call("GET", "/v1/destinations/odd/channel/qr", key)
    assert status == 422 and answer["error"]["details"][0]["path"] == "/config/channel"


# --- abuse ------------------------------------------------------------------------------------


@pytest.mark.security
async def test_another_tenants_destination_and_source_are_not_found(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    api, gateway = hub_api, providers.gateway
    _, key_a = await _tenant(api)
    dest_a = await _destination(api, key_a, f"{providers.url}/wpp")
    assert (await api.call("POST", "/v1/destinations/wpp/channel", key_a))[0] == 201
    source_a = await _source(api, key_a)
    _, key_b = await _tenant(api)
    before = list(gateway.calls)
    for ref in ("wpp", dest_a["id"]):
        for method, path, body in (
            ("POST", f"/v1/destinations/{ref}/channel", None),
            ("GET", f"/v1/destinations/{ref}/channel", None),
            ("GET", f"/v1/destinations/{ref}/channel/qr", None),
            ("GET", f"/v1/destinations/{ref}/channel/qr.png", None),
            ("POST", f"/v1/destinations/{ref}/channel/webhook", {"source": source_a["id"]}),
        ):
            status, answer, _ = await api.call(method, path, key_b, body)
            assert status == 404, (method, path, answer)
    assert gateway.calls == before  # B's calls never reached A's gateway
    # B's own gateway destination cannot register A's source as its webhook
    await _destination(api, key_b, f"{providers.url}/wpp", name="mine")
    status, answer, _ = await api.call(
        "POST", "/v1/destinations/mine/channel/webhook", key_b, {"source": source_a["id"]}
    )
    assert status == 422 and answer["error"]["details"][0]["path"] == "/source"
    assert gateway.channels[CHANNEL].webhook is None


@pytest.mark.security
async def test_the_qr_code_needs_the_manage_scope(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    api = hub_api
    tid, key = await _tenant(api)
    await _destination(api, key, f"{providers.url}/wpp")
    assert (await api.call("POST", "/v1/destinations/wpp/channel", key))[0] == 201
    _, reader = await api.tenant(tid, scopes=("read",))
    assert (await api.call("GET", "/v1/destinations/wpp/channel", reader))[0] == 200
    for path in ("/channel/qr", "/channel/qr.png"):
        status, _, _ = await api.call("GET", "/v1/destinations/wpp" + path, reader)
        assert status == 403
    status, _, _ = await api.call("POST", "/v1/destinations/wpp/channel", reader)
    assert status == 403


@pytest.mark.security
async def test_an_oversize_qr_answer_is_refused(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    api = hub_api
    _, key = await _tenant(api)
    await _destination(api, key, f"{providers.url}/wpp")
    assert (await api.call("POST", "/v1/destinations/wpp/channel", key))[0] == 201
    providers.gateway.qr_padding = QR_LIMIT  # the answer is over the bound by its other fields
    for path in ("/channel/qr", "/channel/qr.png"):
        status, answer, _ = await api.call("GET", "/v1/destinations/wpp" + path, key)
        assert status == 502, answer
        assert answer["error"]["code"] == "provider_error"
        assert f"at most {QR_LIMIT}" in answer["error"]["message"]
    # without a Content-Length, and never ending: read up to the bound, then dropped
    providers.gateway.qr_padding = 0
    providers.gateway.qr_endless = True
    status, answer, _ = await api.call("GET", "/v1/destinations/wpp/channel/qr", key)
    assert status == 502 and f"over {QR_LIMIT} bytes" in answer["error"]["message"]
    assert providers.gateway.streamed < 64 << 20  # the hub stopped reading long before the end
    providers.gateway.qr_endless = False
    # a QR text too long for any phone's pairing code is refused too
    providers.gateway.qr_padding = 0
    providers.gateway.channels[CHANNEL].qr = "2@" + "A" * 2000  # a QR code, not a pairing code
    status, answer, _ = await api.call("GET", "/v1/destinations/wpp/channel/qr", key)
    assert status == 502 and "at most 1024" in answer["error"]["message"]


@pytest.mark.security
async def test_a_wrong_secret_is_a_502_naming_secrets_and_never_echoed(
    hub_api: Api,
    providers: Providers,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = hub_api
    _, key = await _tenant(api)
    wrong = "wrong-secret-987654321"
    await _destination(api, key, f"{providers.url}/wpp", secret=wrong)
    with caplog.at_level(logging.DEBUG):
        status, answer, _ = await api.call("POST", "/v1/destinations/wpp/channel", key)
    assert status == 502, answer
    assert answer["error"]["details"][0]["path"] == "/secrets"
    assert "HTTP 401" in answer["error"]["message"]
    assert wrong not in orjson.dumps(answer).decode()
    assert wrong not in caplog.text


@pytest.mark.security
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_an_internal_base_url_is_refused_before_any_connection(
    backend: str, tmp_path: Path
) -> None:
    """Under the default egress policy (loopback denied): a literal internal address saved
    before the policy said so, and a name that resolves to one, never get a connection."""
    gateway = WppGateway(GATEWAY_SECRET)
    runner, base = await serve_gateway(gateway)
    try:
        async with (
            fresh_database(backend, tmp_path) as url,
            serve(Settings(database_url=url, key_rate=0, tenant_rate=0)) as api,
        ):
            tid, key = await _tenant(api)
            literal = Destination(
                id="dst_literal",
                tenant_id=tid,
                name="literal",
                kind="whatsapp",
                config={
                    "provider": "gateway",
                    "base_url": base,
                    "channel": CHANNEL,
                    "to": "5511999990000",
                    "template": "x",
                },
                secrets=(GATEWAY_SECRET,),
                created_us=now_us(),
            )
            await api.hub.deliveries.put_destination(literal, now_us())
            await _destination(api, key, base.replace("127.0.0.1", "localhost"), name="named")
            for name in ("literal", "named"):
                for method, path in (
                    ("POST", "/channel"),
                    ("GET", "/channel"),
                    ("GET", "/channel/qr"),
                ):
                    status, answer, _ = await api.call(
                        method, f"/v1/destinations/{name}{path}", key
                    )
                    assert status == 422, (name, path, answer)
                    assert answer["error"]["details"][0]["path"] == "/config/base_url"
        assert gateway.calls == []
    finally:
        await runner.cleanup()
