"""Privacy: the receipts of subject erasures (DELETE /v1/subjects/{id}).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

(`down_revision` names 0007, the head when this branch was cut; the other branches of the
same round hang theirs off 0007 too, and the merge chains them.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "subject_erasures",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("erased_us", sa.BigInteger, nullable=False),
        sa.Column("receipt", JSON, nullable=False),  # what was erased, as counts: no PII
    )
    # the export's "erasures" list: a subject's receipts in one tenant
    op.create_index("ix_subject_erasures", "subject_erasures", ["tenant_id", "subject"])


def downgrade() -> None:
    op.drop_index("ix_subject_erasures", table_name="subject_erasures")
    op.drop_table("subject_erasures")
