"""The comms hub's WhatsApp loop: a route sends through the WPP gateway, the gateway's
`message.ack` webhook comes back through a source, and the delivery moves to delivered/read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from switchboard import catalog
from tests.conftest import Api
from tests.integration.conftest import worker_for

ROOT = Path(__file__).resolve().parents[2]


async def test_gateway_ack_moves_the_delivery_forward_only(hub_api: Api) -> None:
    api = hub_api
    tid, key = await api.tenant()
    await api.hub.registry.apply(tid, catalog.load_catalog_dir(ROOT / "catalogs" / "comms-hub"))
    sent: list[dict[str, Any]] = []

    async def messages(request: web.Request) -> web.Response:
        assert request.headers["X-Gateway-Secret"] == "gw-secret-123"
        sent.append(await request.json())
        return web.json_response({"id": "true_5511999990000@c.us_ABC123"})

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        status, body, _ = await api.call(
            "POST",
            "/v1/destinations",
            key,
            {
                "name": "wpp",
                "kind": "whatsapp",
                "secrets": ["gw-secret-123"],
                "config": {
                    "provider": "gateway",
                    "base_url": f"http://127.0.0.1:{port}",
                    "channel": "tenant-042",
                    "to_path": "data.phone",
                    "template": "Olá! Sua fatura {{ data.invoice_id }} vence amanhã.",
                },
            },
        )
        assert status == 201, body
        await api.call(
            "POST",
            "/v1/routes",
            key,
            {"name": "lembretes", "types": ["billing.invoice.pre_due"], "destinations": ["wpp"]},
        )
        spec = await api.hub.registry.lookup(tid, "billing.invoice.pre_due")
        assert spec is not None
        example = {**spec.latest().examples[0], "phone": "5511999990000"}
        status, body, _ = await api.call(
            "POST",
            "/v1/events",
            key,
            {"id": "inv-9", "type": "billing.invoice.pre_due", "data": example},
        )
        assert status == 202 and body["accepted"] == 1, body
        await worker_for(api).drain()
        assert sent and sent[0]["channel"] == "tenant-042"
        _, dl, _ = await api.call("GET", "/v1/events/inv-9/deliveries", key)
        assert dl["data"][0]["status"] == "succeeded"
        assert dl["data"][0]["provider_id"] == "true_5511999990000@c.us_ABC123"

        _, source, _ = await api.call(
            "POST",
            "/v1/sources",
            key,
            {
                "name": "gateway",
                "preset": "wpp_gateway",
                "secrets": ["gw-secret-123"],
                "mapping": "wpp-gateway",
            },
        )

        async def ack(level: int) -> None:
            payload = {
                "event": "message.ack",
                "channel": "tenant-042",
                "data": {
                    "id": "true_5511999990000@c.us_ABC123",
                    "ack": level,
                    "timestamp": 1737980490 + level,
                },
            }
            status, reply, _ = await api.call(
                "POST",
                f"/v1/sources/{source['id']}/webhook",
                data=orjson.dumps(payload),
                headers={"Content-Type": "application/json", "X-Gateway-Secret": "gw-secret-123"},
            )
            assert status == 200, reply

        await ack(3)  # read
        _, dl, _ = await api.call("GET", "/v1/events/inv-9/deliveries", key)
        assert dl["data"][0]["status"] == "read"
        await ack(2)  # a late "delivered" never moves it back
        _, dl, _ = await api.call("GET", "/v1/events/inv-9/deliveries", key)
        assert dl["data"][0]["status"] == "read"
    finally:
        await runner.cleanup()
