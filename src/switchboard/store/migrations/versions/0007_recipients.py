"""People: recipients (contact points per tenant and subject), the consent ledger,
preferences and message templates.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

(`down_revision` names 0004, the head when this branch was cut; other branches add 0005 and
0006, and the merge re-chains this one after them.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "recipients",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),  # the events' `subject`
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("phone", sa.Text, nullable=True),
        sa.Column("locale", sa.Text, nullable=True),
        sa.Column("timezone", sa.Text, nullable=True),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # append-only: a grant or a withdrawal is a new row, never an update
    op.create_table(
        "consents",
        sa.Column("id", sa.Text, primary_key=True),  # time-ordered
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("recipient_id", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),  # grant | withdraw
        sa.Column("at_us", sa.BigInteger, nullable=False),  # when the person decided
        sa.Column("terms_version", sa.Text, nullable=True),
        sa.Column("legal_basis", sa.Text, nullable=True),
        sa.Column("origin", sa.Text, nullable=True),
        sa.Column("ip", sa.Text, nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("event_id", sa.Text, nullable=True),  # the event that recorded it, if any
        sa.Column("recorded_us", sa.BigInteger, nullable=False),
    )
    # the current state of one purpose (latest row) and a recipient's ledger, newest first
    op.create_index(
        "ix_consents_recipient", "consents", ["tenant_id", "recipient_id", "purpose", "at_us", "id"]
    )
    op.create_table(
        "preferences",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("recipient_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),  # an event type, a glob, or a category
        sa.Column("channel", sa.Text, primary_key=True),  # a destination kind, or '*'
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    # message templates as code: every applied change is a new version, never an update
    op.create_table(
        "message_templates",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("message_templates")
    op.drop_table("preferences")
    op.drop_index("ix_consents_recipient", table_name="consents")
    op.drop_table("consents")
    op.drop_table("recipients")
