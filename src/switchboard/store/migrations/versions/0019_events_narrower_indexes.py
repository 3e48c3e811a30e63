"""PostgreSQL: the trace index holds a 4-byte hash of the trace id instead of its 32 hex digits,
and the indexes that grow at their right edge are packed full.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05

Issue 17 asks for disk per event within 5 % of the plain table of 0012; the months' dedup key
(`event_keys`, 0013) costs a heap row per event that only a narrower key could save, and that
one cost ingest (benchmarks/README.md, "PostgreSQL events by month"). The bytes come from the
events' own indexes instead:

- `ix_events_tenant_trace` (tenant_id, trace_id) becomes (tenant_id, hashtext(trace_id)): an
  entry of about 28 bytes instead of about 52 (a trace id is 32 hex digits, random, so the
  index was filled by splits in the middle either way). Every look-up by trace names the hash
  and the trace id (store/queries.py `trace_condition`, patterns.py), so the index finds the
  few candidates and the trace id decides; a b-tree keeps many events of one trace cheap to
  insert (a hash index walks the whole overflow chain of a busy bucket on every insert).
  `hashtext` is the hash of text in PostgreSQL's own hash indexes, whose files pg_upgrade
  copies as they are, so its values stay put across server versions.
- `ix_events_tenant_time` and `ix_events_tenant_type_time` at fillfactor 100: within a tenant
  (and type) `time_us` mostly grows, so insertions land at the right edge of their range, where
  a split leaves the left page as full as the fillfactor says and no later insertion comes back
  to fill it. Events are not updated but by a quarantined event's resubmission, which is rare.
- `event_keys_pkey` at fillfactor 100 for its future pages: the table is insert-only, and ids
  that grow (the hub's own UUIDv7) insert at the right edge of the tenant's range.

The indexes on events are built again (partitioned: each month gets its own, and a month made
later takes the definition and the fillfactor from the parent). SQLite is not touched.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# (name, columns before, columns after, fillfactor after)
_INDEXES = (
    # GET /v1/events?trace_id= and GET /v1/traces/{trace_id}
    ("ix_events_tenant_trace", "(tenant_id, trace_id)", "(tenant_id, hashtext(trace_id))", None),
    # GET /v1/events (newest first, time range) and metrics buckets
    ("ix_events_tenant_time", "(tenant_id, time_us, seq)", "(tenant_id, time_us, seq)", 100),
    # GET /v1/events?type=...
    (
        "ix_events_tenant_type_time",
        "(tenant_id, type, time_us, seq)",
        "(tenant_id, type, time_us, seq)",
        100,
    ),
)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name, _, after, fillfactor in _INDEXES:
        options = f" WITH (fillfactor = {fillfactor})" if fillfactor else ""
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON events {after}{options}")
    op.execute("ALTER INDEX event_keys_pkey SET (fillfactor = 100)")
    op.execute("ANALYZE events")  # the planner's statistics of the hash expression


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("ALTER INDEX event_keys_pkey RESET (fillfactor)")
    for name, before, _, _ in _INDEXES:
        op.execute(f"DROP INDEX {name}")
        op.execute(f"CREATE INDEX {name} ON events {before}")
