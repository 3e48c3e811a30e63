"""Observability: worker heartbeats (for /status and the open-breaker gauge) and alert
episodes (so an alert fires once per episode however many processes check it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

(`down_revision` names 0007, the head when this branch was cut; the merge re-chains it.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("id", sa.Text, primary_key=True),  # one per running worker process
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("seen_us", sa.BigInteger, nullable=False),  # its last beat
        sa.Column("stats", JSON, nullable=False),  # open breakers, deliveries held
    )
    op.create_table(
        "alert_episodes",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("alert", sa.Text, primary_key=True),  # backlog_high, dlq_growth, error_rate
        sa.Column("opened_us", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),  # the measure when it opened
        sa.Column("event_id", sa.Text, nullable=False),  # the alert event it published
    )
    # delivery statistics over a window (GET /v1/metrics/deliveries) and the error-rate alert
    op.create_index("ix_attempts_tenant_started", "attempts", ["tenant_id", "started_us"])


def downgrade() -> None:
    op.drop_index("ix_attempts_tenant_started", "attempts")
    op.drop_table("alert_episodes")
    op.drop_table("worker_heartbeats")
