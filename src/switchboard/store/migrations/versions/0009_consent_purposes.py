"""Consent purposes declared per tenant (`marketing`, `processing`, …): once a tenant declares
any, consents, routes and automations may name only those.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

(`down_revision` names 0007, the head when this branch was cut; other branches add theirs after
0007 too, and the merge chains them.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_purposes",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consent_purposes")
