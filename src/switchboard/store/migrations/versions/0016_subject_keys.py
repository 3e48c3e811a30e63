"""Per-subject data keys: the key that seals a subject's PII in events, wrapped by the master
key (crypto.py). Deleting a row is crypto-shredding: every copy of that subject's sealed values,
backups included, can no longer be opened.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        # 'subject' (an event's subject), 'event' (an event without one: its id), 'index' (the
        # tenant's blind-index key, owner '')
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("wrapped", sa.Text, nullable=False),  # sbenc1.<master key id>.<...>
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subject_keys")
