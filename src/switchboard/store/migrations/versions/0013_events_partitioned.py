"""PostgreSQL: the events table partitioned by month of `received_us`, and the dedup key moved to
its own table (`event_keys`), since a unique index on a partitioned table must hold the
partition key and (tenant_id, id, source) must stay unique across months.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

The migration builds the partitioned table beside the old one (the same columns, defaults and
indexes, read from the catalog so columns or indexes added by other revisions come along),
creates one partition per month from the oldest stored event's month (at most MAX_PAST months
back; anything older goes to the DEFAULT partition) to AHEAD months after the current one,
copies every row, fills `event_keys` from them, drops the old table and takes its name. The
sequence behind `seq` is kept, so new events continue the numbering. Downgrade does the reverse:
one plain table, the unique index back on it, `event_keys` gone. SQLite is not touched.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

AHEAD = 2  # months created after the current one (the retention job keeps this many ahead)
MAX_PAST = 240  # months before the current one that get their own partition
_UNIQUE = "uq_events_tenant_source_id"
_ON = re.compile(r" ON (ONLY )?(\S+\.)?events USING ")


def _month(index: int) -> int:
    """µs at the start of month `index` (months since 1970-01, UTC)."""
    return int(datetime(1970 + index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp()) * 10**6


def _month_index(us: int) -> int:
    dt = datetime.fromtimestamp(us / 10**6, tz=UTC)
    return (dt.year - 1970) * 12 + dt.month - 1


def _name(index: int) -> str:
    return f"events_p{1970 + index // 12:04d}{index % 12 + 1:02d}"


def _indexes(conn: sa.Connection, skip: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, definition) of the events table's indexes, but the primary key and `skip`."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'events'::regclass AND NOT i.indisprimary ORDER BY c.relname"
        )
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows if r[0] not in skip]


def _copy_indexes(indexes: list[tuple[str, str]], table: str) -> None:
    """Each index again on `table`, named `<name>_new` until the swap."""
    for name, definition in indexes:
        head, tail = definition.split(f" {name} ", 1)
        moved = _ON.sub(f" ON {table} USING ", " " + tail, count=1)
        assert moved != " " + tail, definition
        op.execute(f"{head} {name}_new{moved}")


def _swap(table: str, indexes: list[tuple[str, str]], extra: tuple[str, ...] = ()) -> None:
    """Drop the old events table, give `table` its name and its indexes theirs."""
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY NONE")  # or DROP TABLE takes it along
    op.execute("DROP TABLE events")
    op.execute(f"ALTER TABLE {table} RENAME TO events")
    op.execute(f"ALTER TABLE events RENAME CONSTRAINT {table}_pkey TO events_pkey")
    for name in [n for n, _ in indexes] + list(extra):
        op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY events.seq")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    indexes = _indexes(conn, skip=(_UNIQUE,))
    op.execute(
        "CREATE TABLE events_partitioned (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (received_us)"
    )
    now = _month_index(int(time.time() * 10**6))
    oldest = conn.execute(sa.text("SELECT min(received_us) FROM events")).scalar()
    first = now if oldest is None else max(now - MAX_PAST, min(now, _month_index(int(oldest))))
    for index in range(first, now + AHEAD + 1):
        op.execute(
            f"CREATE TABLE {_name(index)} PARTITION OF events_partitioned "
            f"FOR VALUES FROM ({_month(index)}) TO ({_month(index + 1)})"
        )
    op.execute("CREATE TABLE events_default PARTITION OF events_partitioned DEFAULT")
    op.execute("INSERT INTO events_partitioned SELECT * FROM events")
    # the dedup key: one row per event, in the same transaction as the event (store/postgres.py)
    op.execute(
        "CREATE TABLE event_keys (tenant_id text NOT NULL, id text NOT NULL, "
        "source text NOT NULL, seq bigint NOT NULL, received_us bigint NOT NULL, "
        "CONSTRAINT event_keys_pkey PRIMARY KEY (tenant_id, id, source))"
    )
    op.execute(
        "INSERT INTO event_keys (tenant_id, id, source, seq, received_us) "
        "SELECT tenant_id, id, source, seq, received_us FROM events"
    )
    # seq stays the key every other table refers to events by; with the partition key it is
    # unique per partition, and seq alone is unique by its sequence
    op.execute(
        "ALTER TABLE events_partitioned ADD CONSTRAINT events_partitioned_pkey "
        "PRIMARY KEY (seq, received_us)"
    )
    _copy_indexes(indexes, "events_partitioned")
    _swap("events_partitioned", indexes)
    op.execute("ANALYZE events")
    op.execute("ANALYZE event_keys")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    indexes = _indexes(conn, skip=())
    op.execute("CREATE TABLE events_plain (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute("INSERT INTO events_plain SELECT * FROM events ORDER BY seq")
    op.execute("ALTER TABLE events_plain ADD CONSTRAINT events_plain_pkey PRIMARY KEY (seq)")
    op.execute(f"CREATE UNIQUE INDEX {_UNIQUE}_new ON events_plain (tenant_id, id, source)")
    _copy_indexes(indexes, "events_plain")
    op.execute("DROP TABLE event_keys")
    _swap("events_plain", indexes, extra=(_UNIQUE,))
