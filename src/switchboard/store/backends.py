"""The store the settings name: SQLite or PostgreSQL.

Above the interface (`store/__init__.py`) and both implementations, which import the interface;
so the interface never imports an implementation.
"""

from __future__ import annotations

from switchboard.config import Settings
from switchboard.store import Store


def open_store(settings: Settings) -> Store:
    """The store the settings name (not yet opened)."""
    if settings.is_postgres:
        from switchboard.store.postgres import PostgresStore

        return PostgresStore(settings)
    from switchboard.store.sqlite import SqliteStore

    return SqliteStore(settings)
