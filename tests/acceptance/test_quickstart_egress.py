"""`switchboard quickstart` (the local demo) lets deliveries reach this machine, and says so;
`serve` and `worker` keep the default egress guard (tests/integration/test_egress.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import aiohttp
import pytest

from tests.acceptance.conftest import HubProcess, Receiver, free_port, wait_until

pytestmark = pytest.mark.security


async def test_quickstart_allows_loopback_and_says_so(tmp_path: Path, receiver: Receiver) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
        SWITCHBOARD_HOST="127.0.0.1",
        SWITCHBOARD_PORT=str(free_port()),
        SWITCHBOARD_WORKER_POLL="0.1",
    )
    hub = HubProcess("quickstart", env, tmp_path / "quickstart.log").start()
    try:
        await hub.ready(within=60)
        said = " ".join(hub.output().split())  # the console may wrap lines
        assert "deliveries reach 127.0.0.0/8" in said, said
        match = re.search(r"\b(sb_[A-Za-z0-9_-]{20,})", said)
        assert match, said
        headers = {"Authorization": f"Bearer {match[1]}"}
        async with aiohttp.ClientSession(base_url=hub.url, headers=headers) as http:
            dest = {"name": "local", "kind": "webhook", "config": {"url": receiver.url}}
            async with http.post("/v1/destinations", json=dest) as r:
                assert r.status == 201, await r.text()
            route = {"name": "all", "types": ["*"], "destinations": ["local"]}
            async with http.post("/v1/routes", json=route) as r:
                assert r.status == 201, await r.text()
            # the first event the demo suggests: `switchboard emit TYPE 'DATA' --subject S`
            example = re.search(r"switchboard emit (\S+) '(\{.*?\})' --subject (\S+)", said)
            assert example, said
            event = {"type": example[1], "data": json.loads(example[2]), "subject": example[3]}
            async with http.post("/v1/events", json=event) as r:
                assert r.status == 202, await r.text()

        async def arrived() -> bool:
            return bool(receiver.accepted())

        await wait_until(arrived, 30, "the demo's delivery to a receiver on 127.0.0.1")
    finally:
        hub.kill()
