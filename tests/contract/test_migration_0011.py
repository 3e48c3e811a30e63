"""Migration 0011 on a database that already holds tenants and keys: they survive the upgrade
(no constraints, no retention: nothing changes for them) and the downgrade."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from switchboard.config import Settings
from switchboard.store import retention as retention_sql
from switchboard.store.backends import open_store
from switchboard.store.migrate import _config
from tests.conftest import fresh_database

TENANT = ("t1", "Clinic group", "accept", 1)
KEY = ("k1", "t1", "old key", "sb_abcdefgh", "0" * 64, "ingest,read", None, 2, None)


async def _raw(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """A statement on a connection of our own (no store: the schema is not at head)."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        numbered = sql
        for i in range(len(params)):
            numbered = numbered.replace("?", f"${i + 1}", 1)
        return [tuple(r) for r in await conn.fetch(numbered, *params)]
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_upgrade_and_downgrade_keep_existing_tenants_and_keys(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0010")
        await _raw(url, "INSERT INTO tenants VALUES (?, ?, ?, ?)", *TENANT)
        await _raw(
            url,
            "INSERT INTO api_keys (id, tenant_id, name, prefix, hash, scopes, source, "
            "created_us, revoked_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            *KEY,
        )
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            [key] = await store.keys_by_prefix("sb_abcdefgh")
            assert key.id == "k1" and key.scopes == ("ingest", "read")
            assert key.constraints is None
            assert await retention_sql.tenant_retentions(store) == [("t1", None)]
            assert [tuple(r) for r in await store.fetch("SELECT count(*) FROM audit_log")] == [(0,)]
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0010")
        assert await _raw(url, "SELECT id, name FROM tenants") == [("t1", "Clinic group")]
        assert await _raw(url, "SELECT id, scopes FROM api_keys") == [("k1", "ingest,read")]
