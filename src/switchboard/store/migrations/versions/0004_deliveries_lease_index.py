"""The index of leased deliveries is keyed on the lease, not on the status.

`ix_deliveries_sending` was partial on ``status = 'sending'``. Every statement that finishes a
claimed delivery (``WHERE id = ? AND status = 'sending'``) matched that predicate, and
PostgreSQL's planner, which saw the index as nearly empty, walked it instead of the primary key:
each finish read every delivery then in flight. With the few hundred in flight of one busy
worker that cost little; with thousands (several workers, slow destinations) it dominated: a
drain whose sends answered at once went from about 1,100 to 7,800 deliveries/s without it.

The new index is partial on ``lease_until_us IS NOT NULL``. A delivery holds a lease exactly while
it is 'sending' (claims set it; finishing, releasing, recovering and cancelling clear it), so it
holds the same rows. The lease recovery (``lease_until_us < ?``) implies the predicate and still
uses it; a finish by id no longer can, so it takes the primary key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_sending", table_name="deliveries")
    op.create_index(
        "ix_deliveries_lease",
        "deliveries",
        ["lease_until_us"],
        sqlite_where=sa.text("lease_until_us IS NOT NULL"),
        postgresql_where=sa.text("lease_until_us IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_lease", table_name="deliveries")
    op.create_index(
        "ix_deliveries_sending",
        "deliveries",
        ["lease_until_us"],
        sqlite_where=sa.text("status = 'sending'"),
        postgresql_where=sa.text("status = 'sending'"),
    )
