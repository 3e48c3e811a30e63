"""POST /v1/events answers 503 once SWITCHBOARD_INGEST_TIMEOUT passes while the store cannot
confirm (here: another writer holds what the commit needs), and the event still lands once it
can, so the client's retry with the same id is answered as a duplicate."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from switchboard.config import Settings
from tests.conftest import LOOPBACK, Api, fresh_database, serve

TIMEOUT = 0.5


@asynccontextmanager
async def _blocked(api: Api, backend: str, url: str, tenant: str) -> AsyncIterator[None]:
    """Hold, from another connection, what the commit of event `e-1` from `tenant` waits for."""
    if backend == "sqlite":
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the database's write lock
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    conn = await asyncpg.connect(url)
    tx = conn.transaction()
    await tx.start()
    # the same key, not committed: the hub's insert waits to see whether it will be
    await conn.execute(
        "INSERT INTO event_keys (tenant_id, id, source, seq, received_us) "
        "VALUES ($1, 'e-1', 'default', -1, 0)",
        tenant,
    )
    try:
        yield
    finally:
        await tx.rollback()
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_commit_that_cannot_confirm_is_a_503_on_time_and_lands_later(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            egress_allow=LOOPBACK,
            ingest_timeout=TIMEOUT,
        )
        async with serve(settings) as api:
            tenant, key = await api.tenant()
            event = {"id": "e-1", "type": "order.paid", "data": {"n": 1}}
            async with _blocked(api, backend, url, tenant):
                began = time.monotonic()
                status, body, headers = await api.call("POST", "/v1/events", key, event)
                took = time.monotonic() - began
                assert status == 503, body
                assert body["error"]["code"] == "unavailable"
                assert headers["Retry-After"] == "1"
                assert TIMEOUT <= took < TIMEOUT + 5
                # the connection keeps serving while the abandoned work waits
                status, _, _ = await api.call("GET", "/health", None)
                assert status == 200
            for _ in range(100):  # the abandoned commit goes on once the writer lets go
                status, body, _ = await api.call("POST", "/v1/events", key, event)
                if status == 202:
                    break
                await asyncio.sleep(0.1)
            assert status == 202, body
            assert body["results"][0]["status"] == "duplicate"
            status, stored, _ = await api.call("GET", "/v1/events/e-1", key)
            assert status == 200 and stored["data"] == {"n": 1}
