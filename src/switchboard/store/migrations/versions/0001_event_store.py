"""The event store: tenants, API keys, events, catalog, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite makes an INTEGER PRIMARY KEY the rowid: time-ordered, and the cheapest insert key.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("unknown_types", sa.Text, nullable=False, server_default="reject"),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
    )
    # authentication: find the key by the prefix it shows in clear
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=True),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("actor_id", sa.Text, nullable=True),
        sa.Column("actor_type", sa.Text, nullable=True),
        sa.Column("trace_id", sa.Text, nullable=False),
        sa.Column("correlation_id", sa.Text, nullable=True),
        sa.Column("causation_id", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("errors", JSON, nullable=True),
        sa.Column("context", JSON, nullable=False),
        sa.Column("data", JSON, nullable=False),
    )
    # idempotency: an id is unique per (tenant, source) for the whole retention period; with
    # the id before the source the same index also serves GET /v1/events/{id}
    op.create_index(
        "uq_events_tenant_source_id", "events", ["tenant_id", "id", "source"], unique=True
    )
    # GET /v1/events (newest first, time range) and metrics buckets
    op.create_index("ix_events_tenant_time", "events", ["tenant_id", "time_us", "seq"])
    # GET /v1/events?type=...
    op.create_index("ix_events_tenant_type_time", "events", ["tenant_id", "type", "time_us", "seq"])
    # GET /v1/subjects/{subject}/timeline
    op.create_index(
        "ix_events_tenant_subject_time", "events", ["tenant_id", "subject", "time_us", "seq"]
    )
    # GET /v1/actors/{actor}/timeline
    op.create_index(
        "ix_events_tenant_actor_time", "events", ["tenant_id", "actor_id", "time_us", "seq"]
    )
    # GET /v1/events?trace_id= and ?correlation_id=
    op.create_index("ix_events_tenant_trace", "events", ["tenant_id", "trace_id"])
    op.create_index("ix_events_tenant_correlation", "events", ["tenant_id", "correlation_id"])
    # GET /v1/quarantine: only the few quarantined rows are indexed
    op.create_index(
        "ix_events_quarantined",
        "events",
        ["tenant_id", "seq"],
        sqlite_where=sa.text("status = 'quarantined'"),
        postgresql_where=sa.text("status = 'quarantined'"),
    )
    op.create_table(
        "event_types",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("catalog", sa.Text, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "event_types", "events", "api_keys", "tenants"):
        op.drop_table(table)
