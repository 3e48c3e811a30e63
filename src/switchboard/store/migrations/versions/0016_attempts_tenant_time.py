"""An index of attempts by tenant and start time, for the dashboard's overview.

The overview counts a tenant's delivery attempts per hour over the last day
(`switchboard.ui.queries.ATTEMPTS_BY_HOUR`: ``WHERE tenant_id = ? AND started_us >= ?``). The
attempts table was keyed on ``(delivery_id, n)`` only, so that count read every attempt of every
tenant; with this index it reads the tenant's last day.

Revision ID: 0016
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_attempts_tenant_started", "attempts", ["tenant_id", "started_us"])


def downgrade() -> None:
    op.drop_index("ix_attempts_tenant_started", table_name="attempts")
