"""Inbound sources: sources, the inbound request log, business-dedup claims, tenant mappings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Text, primary_key=True),  # "src_" + random: part of the public URL
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("preset", sa.Text, nullable=False),
        sa.Column("preset_config", JSON, nullable=False),
        sa.Column("secrets", JSON, nullable=False),
        sa.Column("ip_allowlist", JSON, nullable=False),
        sa.Column("mapping", sa.Text, nullable=True),
        sa.Column("mapping_version", sa.Text, nullable=True),
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("dedup_window", sa.Integer, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("verified", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("failed_verification", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("events_produced", sa.BigInteger, nullable=False, server_default="0"),
    )
    # GET /v1/sources lists a tenant's sources by name; names are unique per tenant
    op.create_index("uq_sources_name", "sources", ["tenant_id", "name"], unique=True)
    op.create_table(
        "inbound_requests",
        sa.Column("id", sa.Text, primary_key=True),  # UUIDv7: time-ordered, the listing cursor
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("source_id", sa.Text, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.Column("remote_ip", sa.Text, nullable=True),
        sa.Column("headers", JSON, nullable=False),  # masked
        sa.Column("content_type", sa.Text, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("verification_error", sa.Text, nullable=True),
        sa.Column("mapping", sa.Text, nullable=True),
        sa.Column("event_ids", JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    # GET /v1/sources/{id}/requests (newest first by id, optional status/verified filters)
    # and reprocess (oldest first by id within a received_us range)
    op.create_index("ix_inbound_requests_source", "inbound_requests", ["source_id", "id"])
    # reprocess ?from=&to= over a long log: the time range first
    op.create_index(
        "ix_inbound_requests_received", "inbound_requests", ["source_id", "received_us"]
    )
    op.create_table(
        "dedup_keys",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),  # "phone:5531998765432"
        sa.Column("event_id", sa.Text, nullable=False),  # the original holding the claim
        sa.Column("created_us", sa.BigInteger, nullable=False),
        # the claim (INSERT … ON CONFLICT) and the duplicate lookup both go by this key
        sa.PrimaryKeyConstraint("tenant_id", "event_type", "key"),
    )
    op.create_table(
        "source_mappings",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        # a tenant's mapping versions by name (GET /v1/mappings, resolving a source's pin)
        sa.PrimaryKeyConstraint("tenant_id", "name", "version"),
    )


def downgrade() -> None:
    op.drop_table("source_mappings")
    op.drop_table("dedup_keys")
    op.drop_index("ix_inbound_requests_received", table_name="inbound_requests")
    op.drop_index("ix_inbound_requests_source", table_name="inbound_requests")
    op.drop_table("inbound_requests")
    op.drop_index("uq_sources_name", table_name="sources")
    op.drop_table("sources")
