"""Attempt history survives manual and DLQ retries.

A retry from the DLQ (or ``POST /v1/deliveries/{id}/retry``) used to set ``attempts`` back to 0,
so the next attempts were numbered 1, 2, … again and their rows collided with the kept ones on
the ``(delivery_id, n)`` key and were dropped. Now ``attempts`` keeps counting every attempt ever
made, and ``retry_base`` remembers how many had been made when the delivery was last retried by
hand: the retry schedule starts over from there (attempt ``attempts - retry_base``).

Revision ID: 0005_attempt_history
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_attempt_history"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows retried by hand before this migration restarted their count at 0: the attempts of
    # their earlier rounds are already lost, and counting the schedule from 0 is what they did.
    op.add_column(
        "deliveries", sa.Column("retry_base", sa.Integer, nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:  # SQLite rebuilds the table
        batch.drop_column("retry_base")
