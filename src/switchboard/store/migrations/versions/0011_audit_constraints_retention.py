"""Privacy, part B: the audit log, keys limited inside a tenant, retention.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

(`down_revision` names 0007, the head when this branch was cut; the other branches of issue 17's
wave also hang theirs off 0007, and the merge chains them.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # append-only: the store API has no update or delete of a row; only the retention job
    # removes rows older than the audit retention
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Text, primary_key=True),  # UUIDv7: time-ordered, the listing cursor
        sa.Column("tenant_id", sa.Text, nullable=False),  # '' for operator actions (tenants)
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("key_name", sa.Text, nullable=True),
        sa.Column("ip", sa.Text, nullable=True),
        sa.Column("action", sa.Text, nullable=False),  # e.g. destinations.update
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("before", JSON, nullable=True),  # secrets masked
        sa.Column("after", JSON, nullable=True),  # secrets masked
    )
    # GET /v1/audit: a tenant's rows newest first by id, within a time range
    op.create_index("ix_audit_tenant", "audit_log", ["tenant_id", "id"])
    # the retention job: rows older than the cutoff, oldest first
    op.create_index("ix_audit_at", "audit_log", ["at_us"])
    # a filter-language pattern every event the key sends must match, and every read it makes
    # is narrowed by (NULL: the whole tenant)
    op.add_column("api_keys", sa.Column("constraints", JSON, nullable=True))
    # the tenant's default event retention in days (NULL: keep until the catalog or operator
    # says otherwise)
    op.add_column("tenants", sa.Column("retention_days", sa.Integer, nullable=True))
    # the retention job deletes attempts by age, oldest first
    op.create_index("ix_attempts_started", "attempts", ["started_us"])
    # ... and inbound requests by age across sources
    op.create_index("ix_inbound_requests_age", "inbound_requests", ["received_us"])


def downgrade() -> None:
    op.drop_index("ix_inbound_requests_age", table_name="inbound_requests")
    op.drop_index("ix_attempts_started", table_name="attempts")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("retention_days")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("constraints")
    op.drop_index("ix_audit_at", table_name="audit_log")
    op.drop_index("ix_audit_tenant", table_name="audit_log")
    op.drop_table("audit_log")
