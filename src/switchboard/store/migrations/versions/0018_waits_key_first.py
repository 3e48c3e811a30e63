"""The waits' look-up index leads with the correlation key: (match_key, tenant_id, type)
instead of (tenant_id, type, match_key).

Every ingested event of an awaited type probes this index in its commit, and almost every probe
finds nothing. Led by the tenant and the type, which every entry of a busy wait shares, each
comparison down the b-tree decoded and compared two equal fields before reaching the one that
differs; led by the key, most comparisons end at the first field. Every look-up of the waits by
key still names all three columns (tenant isolation is unchanged: a key only wakes runs of its
tenant and type); the other look-ups go through the primary key (run_id, slot).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_automation_waits_key", table_name="automation_waits")
    op.create_index(
        "ix_automation_waits_key", "automation_waits", ["match_key", "tenant_id", "type"]
    )


def downgrade() -> None:
    op.drop_index("ix_automation_waits_key", table_name="automation_waits")
    op.create_index(
        "ix_automation_waits_key", "automation_waits", ["tenant_id", "type", "match_key"]
    )
