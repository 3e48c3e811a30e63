"""Schema migrations with Alembic, for both backends, callable from the CLI and at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from switchboard.errors import StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """Our plain URLs → SQLAlchemy async-driver URLs."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return "sqlite+aiosqlite:///" + str(path)
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url.removeprefix(prefix)
    raise ValueError(f"unsupported database URL: {database_url.split(':', 1)[0]}://…")


def _config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return cfg


def head() -> str | None:
    return ScriptDirectory.from_config(_config("sqlite:///:memory:")).get_current_head()


def upgrade_sync(database_url: str) -> None:
    try:
        command.upgrade(_config(database_url), "head")
    except OSError as exc:
        raise StoreUnavailable(f"cannot reach the database to migrate: {exc}") from exc


async def upgrade(database_url: str) -> None:
    """Alembic's env.py runs its own event loop, so migrations run in a worker thread."""
    await asyncio.to_thread(upgrade_sync, database_url)
