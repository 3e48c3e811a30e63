"""Idempotency keys remember what they were used for: a SHA-256 of the request (media type,
CloudEvents `ce-*` headers and body), so the same key sent with another request is refused
instead of answered with the first request's stored response.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for the keys stored before: they replay as they did
    op.add_column("idempotency_keys", sa.Column("request_sha256", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("request_sha256")
