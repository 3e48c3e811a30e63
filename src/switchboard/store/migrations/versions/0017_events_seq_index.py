"""PostgreSQL: the events' primary key (seq, received_us) becomes an index on seq, packed full.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

Since 0013 the partitioned events table's primary key was (seq, received_us), because a unique
index on it must hold the partition key: unique only within a month, so it enforced nothing the
sequence and `event_keys` do not. What readers use it for is seq (deliveries and runs to their
event, the retention job's chunks and checks), so it is now a plain index on seq: 8 bytes per
entry narrower, about 10 bytes per event (benchmarks/README.md, "PostgreSQL events by month").
Within a month seq only grows, so every insertion is at the index's right edge: fillfactor 100
fills each page whole instead of leaving the default 10 % that no later insertion would use.
SQLite is not touched.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE events DROP CONSTRAINT events_pkey")
    # reads by seq: deliveries and runs to their event, the retention job's chunks and checks;
    # on the partitioned table, so each month (and every month attached later) gets its own
    op.execute("CREATE INDEX ix_events_seq ON events (seq) WITH (fillfactor = 100)")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_events_seq")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (seq, received_us)")
