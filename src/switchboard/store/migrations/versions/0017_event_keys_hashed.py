"""PostgreSQL: narrower dedup keys and seq index, for disk per event near the plain table's.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

`event_keys` (0013) held (tenant_id, id, source) whole, in its heap and in its primary key,
beside the seq and month of the event: about 140 bytes per event where the plain table's
unique index had taken 70. It now holds one uuid per event (store/event_keys.py: 8 bytes of
SHA-256 of (tenant_id, id), then 8 of (tenant_id, id, source)), unique, with the seq and
`received_us` as before: about 100 bytes.

The events' primary key (seq, received_us) becomes an index on seq alone: uniqueness there was
only ever per month (the key table and the sequence decide it), and seq is what every reader
looks up by (deliveries, runs, the retention job). Its values only grow within a month, so the
index is built full (fillfactor 100): a page is never written again once the next one starts.

Downgrade rebuilds the text keys from the events and the primary key. SQLite is not touched.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# store/event_keys.py's KEY_SQL as it was when this revision was written (a test holds the two
# equal): 8 bytes of SHA-256 of (tenant_id, id), then 8 of (tenant_id, id, source), NUL-separated
_KEY = (
    "encode(substring(sha256(convert_to(tenant_id, 'UTF8') || '\\x00'::bytea || "
    "convert_to(id, 'UTF8')) FROM 1 FOR 8) || substring(sha256(convert_to(tenant_id, 'UTF8') "
    "|| '\\x00'::bytea || convert_to(id, 'UTF8') || '\\x00'::bytea || "
    "convert_to(source, 'UTF8')) FROM 1 FOR 8), 'hex')::uuid"
)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE event_keys_new (key uuid NOT NULL, seq bigint NOT NULL, "
        "received_us bigint NOT NULL)"
    )
    op.execute(
        f"INSERT INTO event_keys_new (key, seq, received_us) "
        f"SELECT {_KEY}, seq, received_us FROM event_keys ORDER BY seq"
    )
    # the dedup decision (ON CONFLICT (key)), the originals of duplicates, GET /v1/events/{id}
    # (a range of keys when no source is given); built after the load, so packed
    op.execute("ALTER TABLE event_keys_new ADD CONSTRAINT event_keys_new_pkey PRIMARY KEY (key)")
    op.execute("DROP TABLE event_keys")
    op.execute("ALTER TABLE event_keys_new RENAME TO event_keys")
    op.execute("ALTER TABLE event_keys RENAME CONSTRAINT event_keys_new_pkey TO event_keys_pkey")
    op.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
    # reads by seq: deliveries and runs to their event, the retention job's chunks and checks;
    # on the partitioned table, so each month (and every month attached later) gets its own
    op.execute("CREATE INDEX ix_events_seq ON events (seq) WITH (fillfactor = 100)")
    op.execute("ANALYZE event_keys")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_events_seq")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (seq, received_us)")
    op.execute(
        "CREATE TABLE event_keys_old (tenant_id text NOT NULL, id text NOT NULL, "
        "source text NOT NULL, seq bigint NOT NULL, received_us bigint NOT NULL)"
    )
    op.execute(
        "INSERT INTO event_keys_old (tenant_id, id, source, seq, received_us) "
        "SELECT e.tenant_id, e.id, e.source, e.seq, e.received_us FROM event_keys k "
        "JOIN events e ON e.seq = k.seq AND e.received_us = k.received_us"
    )
    op.execute(
        "ALTER TABLE event_keys_old ADD CONSTRAINT event_keys_old_pkey "
        "PRIMARY KEY (tenant_id, id, source)"
    )
    op.execute("DROP TABLE event_keys")
    op.execute("ALTER TABLE event_keys_old RENAME TO event_keys")
    op.execute("ALTER TABLE event_keys RENAME CONSTRAINT event_keys_old_pkey TO event_keys_pkey")
