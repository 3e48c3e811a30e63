"""`switchboard channels` through the real CLI and a served hub (both stores), against the WPP
gateway test server: create the channel, draw its QR code in the terminal and as a PNG, point
its webhook at the hub, and see the phone's scan reported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from switchboard.channels.wpp_gateway import qr_png, qr_terminal
from tests.acceptance.conftest import Client, Cluster
from tests.wpp_gateway import WppGateway, serve

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "switchboard")
SECRET = "gw-secret-cli-0123456789"


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # in a thread: the gateway this test serves answers the hub meanwhile
    return await asyncio.to_thread(
        subprocess.run,
        [CLI, "channels", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def test_create_qr_webhook_and_status_through_the_cli(
    cluster: Cluster, tmp_path: Path
) -> None:
    gateway = WppGateway(SECRET)
    runner, base = await serve(gateway, "/wpp")
    try:
        hub = cluster.spawn("serve")
        await hub.ready()
        env = {**cluster.env(), "SWITCHBOARD_URL": hub.url, "SWITCHBOARD_API_KEY": cluster.key}
        async with aiohttp.ClientSession() as http:
            client = Client(http, hub.url, cluster.key)
            await client.ok(
                "POST",
                "/v1/destinations",
                {
                    "name": "wpp",
                    "kind": "whatsapp",
                    "secrets": [SECRET],
                    "config": {
                        "provider": "gateway",
                        "base_url": base,
                        "channel": "clinica-7",
                        "to_path": "data.phone",
                        "template": "Olá!",
                    },
                },
            )
            source = await client.ok(
                "POST",
                "/v1/sources",
                {
                    "name": "gateway",
                    "preset": "wpp_gateway",
                    "secrets": [SECRET],
                    "mapping": "wpp-gateway",
                },
            )

            missing = await run(env, "status", "wpp")
            assert missing.returncode == 1
            assert "the gateway has no channel 'clinica-7'" in missing.stderr

            created = await run(env, "create", "wpp")
            assert created.returncode == 0, created.stderr
            assert "created on the gateway" in created.stderr
            assert "clinica-7" in created.stdout and "qr_required" in created.stdout
            again = await run(env, "create", "wpp", "--json")
            assert again.returncode == 0, again.stderr
            assert json.loads(again.stdout)["status"] == "qr_required"
            assert gateway.calls.count(("POST", "/wpp/api/channels")) == 1

            drawn = await run(env, "qr", "wpp")
            assert drawn.returncode == 0, drawn.stderr
            text = gateway.channels["clinica-7"].qr
            assert drawn.stdout == qr_terminal(text)  # the code the gateway gave, drawn whole
            assert "Linked devices" in drawn.stderr
            png = tmp_path / "qr.png"
            written = await run(env, "qr", "wpp", "--png", str(png))
            assert written.returncode == 0, written.stderr
            assert png.read_bytes() == qr_png(text)

            hooked = await run(env, "webhook", "wpp", "--source", "gateway")
            assert hooked.returncode == 0, hooked.stderr
            url = f"{hub.url}/v1/sources/{source['id']}/webhook"
            assert url in hooked.stdout
            assert gateway.channels["clinica-7"].webhook == url

            await gateway.scan("clinica-7", "5547930001111")
            assert gateway.posted[-1][0] == 200, gateway.posted
            status = await run(env, "status", "wpp", "--json")
            assert json.loads(status.stdout)["status"] == "connected", status.stderr
            page = await client.ok("GET", "/v1/events?type=whatsapp.connection_updated")
            assert [e["data"]["status"] for e in page["data"]] == ["connected"]
            nothing = await run(env, "qr", "wpp")
            assert nothing.returncode == 1 and "connected" in nothing.stderr

            for proc in (created, again, drawn, written, hooked, status, nothing):
                assert SECRET not in proc.stdout + proc.stderr
    finally:
        await runner.cleanup()
    assert SECRET not in hub.output()
