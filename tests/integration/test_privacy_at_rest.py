"""Credentials at rest: sealed under the master key in both stores (the SQLite file and a
pg_dump hold none of them), opened by the worker to deliver, refused at start-up without their
key, and re-sealed by a rotation while the hub keeps reading them."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import Settings
from switchboard.crypto import PREFIX, new_master_key
from switchboard.errors import ConfigError
from switchboard.hub import Hub
from switchboard.store.sealed import rotate
from tests.conftest import LOOPBACK, Api, fresh_database, serve
from tests.integration.conftest import worker_for
from tests.integration.test_secrets import BEARER, CREDENTIALS, DESTINATIONS, WEBHOOK_SECRET

pytestmark = pytest.mark.security

SOURCE_TOKEN = "tok_source_0123456789abcdef"
KEY_A = new_master_key()
KEY_B = new_master_key()


def _settings(url: str, **keys: str) -> Settings:
    return Settings(
        database_url=url,
        key_rate=0,
        tenant_rate=0,
        run_worker=0,
        egress_allow=LOOPBACK,
        **keys,
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def _dump(url: str) -> bytes:
    """Every byte the database holds: the SQLite file and its WAL, or a pg_dump."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is needed to check what PostgreSQL holds"
    proc = await asyncio.create_subprocess_exec(
        pg_dump, "--data-only", url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out


async def _configure(api: Api, receiver_url: str) -> str:
    tenant, key = await api.tenant()
    for body in [*DESTINATIONS, _hook(receiver_url)]:
        status, created, _ = await api.call("POST", "/v1/destinations", key, body)
        assert status == 201, created
    route = {"name": "r", "types": ["*"], "destinations": ["live"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "s",
            "preset": "token",
            "preset_config": {"headers": ["X-Token"]},
            "secrets": [SOURCE_TOKEN],
        },
    )
    assert status == 201, source
    return tenant


def _hook(url: str) -> dict[str, Any]:
    return {
        "name": "live",
        "kind": "webhook",
        "config": {"url": url, "headers": {"Authorization": f"Bearer {BEARER}"}},
        "secrets": [WEBHOOK_SECRET],
    }


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub(settings)
    await hub.open(worker=False)
    try:
        yield hub
    finally:
        await hub.close()


async def test_credentials_are_sealed_in_the_database_and_still_delivered(
    database: str, receivers: Any
) -> None:
    rcv = await receivers()
    async with serve(_settings(database, master_key=KEY_A)) as api:
        tenant = await _configure(api, rcv.url)
        status, _, _ = await api.call(
            "POST", "/v1/events", (await api.tenant(tenant))[1], [{"type": "a.b", "data": {}}]
        )
        assert status == 202
        await worker_for(api).drain()
        # the worker opened the sealed config and secret: the receiver got both
        [got] = rcv.received
        assert got["headers"]["Authorization"] == f"Bearer {BEARER}"
        assert got["headers"]["webhook-signature"].startswith("v1,")
        # the source's token still verifies requests
        [source] = (await api.call("GET", "/v1/sources", (await api.tenant(tenant))[1]))[1]["data"]
        status, _, _ = await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=b"{}",
            headers={"Content-Type": "application/json", "X-Token": SOURCE_TOKEN},
        )
        assert status < 300
        stored = await api.hub.deliveries.get_destination(tenant, "hook")
        assert stored is not None and stored.secrets == (WEBHOOK_SECRET,)
    dump = await _dump(database)
    assert PREFIX.encode() in dump  # the scan looks at the right bytes
    for secret in (*CREDENTIALS, SOURCE_TOKEN):
        assert secret.encode() not in dump, secret


async def test_a_hub_without_the_key_of_sealed_credentials_refuses_to_start(
    database: str, receivers: Any
) -> None:
    rcv = await receivers()
    async with serve(_settings(database, master_key=KEY_A)) as api:
        await _configure(api, rcv.url)
    with pytest.raises(ConfigError, match="SWITCHBOARD_MASTER_KEY"):
        async with _opened(_settings(database)):
            pass
    with pytest.raises(ConfigError, match="SWITCHBOARD_MASTER_KEY_PREVIOUS"):
        async with _opened(_settings(database, master_key=KEY_B)):
            pass


async def test_rotation_reseals_everything_while_the_hub_reads_with_both_keys(
    database: str, receivers: Any
) -> None:
    rcv = await receivers()
    async with serve(_settings(database)) as api:  # credentials stored before any key
        tenant = await _configure(api, rcv.url)
    async with _opened(_settings(database, master_key=KEY_A)) as hub:
        first = await rotate(hub.store)  # seals what was in clear
        assert first.resealed == 2 * (len(DESTINATIONS) + 1) + 1 and first.skipped == 0
    rotating = _settings(database, master_key=KEY_B, master_key_previous=KEY_A)
    async with _opened(rotating) as hub:
        before = await hub.deliveries.get_destination(tenant, "live")
        second = await rotate(hub.store)
        assert second.resealed == first.resealed and second.unchanged == 0
        again = await rotate(hub.store)
        assert again.resealed == 0 and again.unchanged == first.resealed
    async with _opened(_settings(database, master_key=KEY_B)) as hub:  # KEY_A is dropped
        after = await hub.deliveries.get_destination(tenant, "live")
        assert after == before and after is not None
        assert after.config["headers"]["Authorization"] == f"Bearer {BEARER}"
    with pytest.raises(ConfigError):
        async with _opened(_settings(database, master_key=KEY_A)):
            pass
