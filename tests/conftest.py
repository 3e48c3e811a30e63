"""Fixtures shared by every tier: a hub served by uvicorn on 127.0.0.1 over either store."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import uvicorn

from switchboard.api import create_app
from switchboard.auth import mint_key
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.hub import Hub
from switchboard.server import server_config
from switchboard.store import Tenant
from tests.services import require_postgres

ROOT = Path(__file__).resolve().parent.parent
# Test receivers listen on 127.0.0.1, which the egress guard refuses by default: the shared
# fixtures allow it explicitly (tests of the guard itself build hubs without it).
LOOPBACK = "127.0.0.0/8"


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL nobody else uses: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    base = require_postgres()
    name = "sb_" + secrets.token_hex(6)
    admin = base.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@dataclass
class Api:
    """A running hub and an HTTP session to talk to it."""

    url: str
    hub: Hub
    session: aiohttp.ClientSession
    admin_key: str

    async def tenant(
        self,
        tenant_id: str | None = None,
        scopes: tuple[str, ...] = ("ingest", "read", "manage", "pii"),
        unknown_types: str = "accept",
    ) -> tuple[str, str]:
        """Create a tenant with a key; returns (tenant id, key). The default key sees PII
        unmasked, as the tests of other features read back what they sent; the privacy tests
        name their scopes."""
        tid = tenant_id or "t" + secrets.token_hex(4)
        if await self.hub.store.get_tenant(tid) is None:
            await self.hub.store.create_tenant(Tenant(tid, tid, unknown_types, now_us()))
        secret, record = mint_key(tid, "test", scopes)
        await self.hub.store.create_key(record)
        return tid, secret

    async def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        async with self.session.request(
            method, self.url + path, json=json, data=data, headers=h
        ) as resp:
            text = await resp.read()
            body = None
            if text:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = text
            return resp.status, body, resp.headers


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Api]:
    hub = Hub(settings)
    app = create_app(settings, hub)
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    secret, record = mint_key(None, "test-admin", ["admin"])
    await hub.store.create_key(record)
    async with aiohttp.ClientSession() as session:
        try:
            yield Api(f"http://127.0.0.1:{port}", hub, session, secret)
        finally:
            server.should_exit = True
            await task


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(database_url=url, key_rate=0, tenant_rate=0, egress_allow=LOOPBACK)
        async with serve(settings) as a:
            yield a


@pytest.fixture
async def sqlite_api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        key_rate=0,
        tenant_rate=0,
        egress_allow=LOOPBACK,
    )
    async with serve(settings) as a:
        yield a
