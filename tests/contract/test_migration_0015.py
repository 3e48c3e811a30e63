"""Migration 0015 on a database that already holds idempotency keys: a key stored before it has
no request fingerprint and keeps replaying its stored answer; the downgrade keeps the keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command

from switchboard.config import Settings
from switchboard.store.backends import open_store
from switchboard.store.migrate import _config
from tests.conftest import fresh_database
from tests.contract.test_migration_0011 import _raw

ROW = ("t1", "retry-42", 202, b'{"accepted":1}', 2**62)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_keys_stored_before_the_fingerprint_still_replay(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0012")
        await _raw(
            url,
            "INSERT INTO idempotency_keys (tenant_id, key, status, body, expires_us) "
            "VALUES (?, ?, ?, ?, ?)",
            *ROW,
        )
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            assert await store.get_idempotent("t1", "retry-42", 0) == (202, ROW[3], None)
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0012")
        assert await _raw(url, "SELECT key, status FROM idempotency_keys") == [("retry-42", 202)]
