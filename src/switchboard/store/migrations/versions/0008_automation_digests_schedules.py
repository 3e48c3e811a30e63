"""Automations: the events each open digest has collected, and each schedule's next fire time.

A digest run holds its key (`automation_runs.dedupe_key`, `digest:<value>`) while its window is
open; every event that would start a run for the same key joins it instead, as a row here written
in the event's own commit. A schedule is one row per scheduled automation: the engine fires it
when `next_us` has passed, then moves `next_us` to the next fire after now (a fire missed while
the hub was down happens once, not once per missed time).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automation_digest_items",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("event_seq", sa.BigInteger, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
    )
    op.create_table(
        "automation_schedules",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("automation", sa.Text, primary_key=True),
        sa.Column("next_us", sa.BigInteger, nullable=False),  # the next fire time
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # the engine's look for due schedules
    op.create_index("ix_automation_schedules_next", "automation_schedules", ["next_us"])


def downgrade() -> None:
    op.drop_index("ix_automation_schedules_next", table_name="automation_schedules")
    op.drop_table("automation_schedules")
    op.drop_table("automation_digest_items")
