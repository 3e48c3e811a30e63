"""Routing and delivery: destinations, routes, deliveries, attempts, inbox, replays.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "destinations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("secrets", JSON, nullable=False),
        sa.Column("settings", JSON, nullable=False),  # timeout, concurrency, rates, schedule
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("failing_since_us", sa.BigInteger, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # destination names are unique per tenant (routes files refer to them by name)
    op.create_index("uq_destinations_name", "destinations", ["tenant_id", "name"], unique=True)
    op.create_table(
        "routes",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", JSON, nullable=False),  # types, sources, filter, destinations, ...
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index("uq_routes_name", "routes", ["tenant_id", "name"], unique=True)
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Text, primary_key=True),  # also the webhook-id of every attempt
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("destination_id", sa.Text, nullable=False),
        sa.Column("route_id", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),  # 0 high, 1 normal, 2 low (replays)
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("ordering_key", sa.Text, nullable=True),
        sa.Column("replay_id", sa.Text, nullable=True),
        sa.Column("provider_id", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # the worker's claim: tenants with due work (skip-scan), then each tenant's due
    # deliveries by priority and due time
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["tenant_id", "priority", "next_attempt_us"],
        sqlite_where=sa.text("status IN ('pending', 'retrying')"),
        postgresql_where=sa.text("status IN ('pending', 'retrying')"),
    )
    # expired leases of killed workers
    op.create_index(
        "ix_deliveries_sending",
        "deliveries",
        ["lease_until_us"],
        sqlite_where=sa.text("status = 'sending'"),
        postgresql_where=sa.text("status = 'sending'"),
    )
    # GET /v1/events/{id}/deliveries
    op.create_index("ix_deliveries_event", "deliveries", ["tenant_id", "event_seq"])
    # the DLQ listing and stats
    op.create_index(
        "ix_deliveries_tenant_status", "deliveries", ["tenant_id", "status", "updated_us"]
    )
    # FIFO per ordering key: the oldest open delivery of a key goes first
    op.create_index(
        "ix_deliveries_ordering",
        "deliveries",
        ["destination_id", "ordering_key", "event_seq"],
        sqlite_where=sa.text("ordering_key IS NOT NULL"),
        postgresql_where=sa.text("ordering_key IS NOT NULL"),
    )
    # provider status callbacks (e.g. the WhatsApp gateway's message.ack) find by provider id
    op.create_index("ix_deliveries_provider", "deliveries", ["tenant_id", "provider_id"])
    op.create_table(
        "attempts",
        sa.Column("delivery_id", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("request_headers", JSON, nullable=True),
    )
    op.create_table(
        "inbox_items",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("item", JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("read_us", sa.BigInteger, nullable=True),
    )
    # one item per delivery, however often the delivery is retried
    op.create_index("uq_inbox_delivery", "inbox_items", ["delivery_id"], unique=True)
    # GET /v1/inbox/{recipient}
    op.create_index("ix_inbox_recipient", "inbox_items", ["tenant_id", "recipient", "created_us"])
    op.create_table(
        "replays",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # running | done | failed
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("scanned", sa.BigInteger, nullable=False),
        sa.Column("matched", sa.BigInteger, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("replays", "inbox_items", "attempts", "deliveries", "routes", "destinations"):
        op.drop_table(table)
