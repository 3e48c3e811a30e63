"""An acknowledged change has its audit entry even when the API process is SIGKILLed right after
acknowledging it, and no change is stored without its entry (they commit together)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.acceptance.conftest import Client, Cluster


def _name(after: Any) -> str | None:
    document = json.loads(after) if isinstance(after, str) else after
    return document.get("name") if isinstance(document, dict) else None


async def test_a_killed_api_leaves_every_acknowledged_change_audited(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    api = await cluster.spawn("serve", run_worker=0).ready()
    client = Client(http, api.url, cluster.key, timeout=10)
    acked: set[str] = set()

    async def create(name: str) -> None:
        try:
            status, _ = await client.call("POST", "/v1/keys", {"name": name, "scopes": ["read"]})
        except (aiohttp.ClientError, TimeoutError):
            return  # cut by the kill: either outcome is allowed, both or neither stored
        if status == 201:
            acked.add(name)

    names = iter(f"key-{i}" for i in range(10_000))
    tasks: list[asyncio.Task[None]] = []
    for _ in range(4):  # four kills, each with changes in flight
        goal = len(acked) + 20
        while len(acked) < goal:  # a steady stream of changes
            tasks.append(asyncio.create_task(create(next(names))))
            await asyncio.sleep(0.005)
        api.kill()  # SIGKILL right after an acknowledgement, with more changes in flight
        await asyncio.gather(*tasks)
        api.start()
        await api.ready()
    api.kill()
    sent = {f"key-{i}" for i in range(len(tasks))}

    keys = {
        name
        for (name,) in await cluster.query(
            "SELECT name FROM api_keys WHERE tenant_id = ?", cluster.tenant
        )
    }
    entries = await cluster.query(
        "SELECT after, status FROM audit_log WHERE tenant_id = ? AND action = 'keys.create'",
        cluster.tenant,
    )
    audited = {_name(after) for after, status in entries if status == 201}
    assert len(acked) >= 80
    unaudited = sorted(acked - audited)
    assert unaudited == [], f"acknowledged changes without their entry: {unaudited[:10]}"
    made = keys & sent
    assert made == audited, (
        f"stored without an entry: {sorted(made - audited)[:10]}; "
        f"entries without the change: {sorted(audited - made)[:10]}"
    )
