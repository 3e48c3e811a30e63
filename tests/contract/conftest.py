"""The `store` fixture: every contract test runs once on SQLite and once on PostgreSQL.

Each PostgreSQL test gets a fresh database cloned from a migrated template (CREATE DATABASE …
TEMPLATE is a file copy, far cheaper than running the migrations per test), dropped afterwards,
so tests are isolated and the suite can run again and again on the same server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from switchboard.config import Settings
from switchboard.store import Store, migrate
from switchboard.store.postgres import PostgresStore
from switchboard.store.sqlite import SqliteStore
from tests.services import require_postgres


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database the per-test databases are cloned from; its URL."""
    url = require_postgres()
    name = f"sb_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(url, f"CREATE DATABASE {name}"))
    try:
        migrate.upgrade_sync(with_database(url, name))
        yield with_database(url, name)
    finally:
        asyncio.run(_admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _fresh_database(template_url: str) -> Iterator[str]:
    template = urlsplit(template_url).path.lstrip("/")
    name = f"sb_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(template_url, f"CREATE DATABASE {name} TEMPLATE {template}"))
    try:
        yield with_database(template_url, name)
    finally:
        asyncio.run(_admin(template_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# The database fixtures are synchronous on purpose: they run outside the test's event loop, so
# they can use asyncio.run for the admin connection and be requested from parametrization.


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; dropped afterwards."""
    yield from _fresh_database(pg_template)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _fresh_database(request.getfixturevalue("pg_template"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An opened store on a fresh database, of each backend in turn."""
    settings = Settings(database_url=database_url, db_pool_size=5)
    backend: Store = PostgresStore(settings) if settings.is_postgres else SqliteStore(settings)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
