"""What masking costs an answer: `GET /v1/events?limit=100` over 100 stored events with five PII
fields each, read with a key that has `pii` (the answer as stored) and with a `read` key (the
answer masked on its way out), in turns; medians of each.

In one process, against the hub served by uvicorn on 127.0.0.1 over a temporary SQLite file.
Run: ``python -m benchmarks.masking [--requests 40] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import aiohttp
import uvicorn

from switchboard.api import create_app
from switchboard.auth import mint_key
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.hub import Hub
from switchboard.server import server_config
from switchboard.store import Tenant

LEAD_TYPE: dict[str, Any] = {
    "description": "A lead arrived.",
    "pii": ["name", "email", "phone", "document", "note"],
    "pii_classes": {"document": "cpf"},
    "versions": [{"version": "1.0", "schema": {"type": "object"}}],
}


def lead(i: int) -> dict[str, Any]:
    return {
        "type": "lead.created",
        "subject": f"p-{i}",
        "context": {"ip": "203.0.113.7"},
        "data": {
            "name": f"Joana Pereira {i}",
            "email": f"joana{i}@exemplo.com.br",
            "phone": f"+55 31 99876-{i:04d}",
            "document": "123.456.789-09",
            "note": "prefers calls after lunch",
            "plan": "gold",
        },
    }


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite:///{folder}/hub.db", key_rate=0, tenant_rate=0, run_worker=0
        )
        hub = Hub(settings)
        server = uvicorn.Server(server_config(create_app(settings, hub), settings, port=0))
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        await hub.store.create_tenant(Tenant("bench", "bench", "accept", now_us()))
        keys = {}
        for name, scopes in (("pii", ["ingest", "read", "manage", "pii"]), ("read", ["read"])):
            secret, record = mint_key("bench", name, scopes)
            await hub.store.create_key(record)
            keys[name] = {"Authorization": f"Bearer {secret}"}
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            put = await http.put(
                f"{base}/v1/event-types/lead.created", json=LEAD_TYPE, headers=keys["pii"]
            )
            assert put.status in (200, 201), await put.text()
            post = await http.post(
                f"{base}/v1/events", json=[lead(i) for i in range(100)], headers=keys["pii"]
            )
            assert post.status == 202, await post.text()
            times: dict[str, list[float]] = {"pii": [], "read": []}
            for _ in range(rounds):
                for name in ("pii", "read"):
                    for _ in range(requests):
                        start = time.perf_counter()
                        async with http.get(
                            f"{base}/v1/events?limit=100", headers=keys[name]
                        ) as answer:
                            assert answer.status == 200
                            await answer.read()
                        times[name].append(time.perf_counter() - start)
        server.should_exit = True
        await task
    pii, read = (statistics.median(times[n]) * 1e3 for n in ("pii", "read"))
    print(f"GET /v1/events?limit=100, median of {requests * rounds}:")
    print(f"  key with pii (as stored): {pii:.2f} ms")
    print(f"  read key (masked):        {read:.2f} ms  (+{(read - pii) * 10:.0f} µs per event)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
