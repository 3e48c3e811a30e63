"""Automations: versioned documents, runs (each with its timer), and waits.

A run is sequential, so it has at most one timer: its `due_us` column (NULL once it has ended).
The engine claims due runs with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer),
pushing `due_us` one lease ahead; a killed engine's claims come due again after the lease.

Revision ID: 0006
Revises: 0005_attempt_history
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005_attempt_history"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),  # 1, 2, …: each PUT adds one
        sa.Column("spec", JSON, nullable=False),  # the document as submitted
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=True),  # set on every version by DELETE
    )
    op.create_table(
        "automation_runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("automation", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),  # the version the run pinned
        sa.Column("trigger_seq", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # running | completed | stopped | …
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("state", JSON, nullable=False),  # position, wait in progress, matched, history
        sa.Column("dedupe_key", sa.Text, nullable=True),
        sa.Column("rev", sa.Integer, nullable=False),  # bumped by every change (optimistic lock)
        sa.Column("due_us", sa.BigInteger, nullable=True),  # the run's timer
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("ended_us", sa.BigInteger, nullable=True),
    )
    # the engine's claim: due runs, earliest first (ended runs are not in the index)
    op.create_index(
        "ix_automation_runs_due",
        "automation_runs",
        ["due_us"],
        sqlite_where=sa.text("due_us IS NOT NULL"),
        postgresql_where=sa.text("due_us IS NOT NULL"),
    )
    # GET /v1/automations/{name}/runs?status=
    op.create_index(
        "ix_automation_runs_listing",
        "automation_runs",
        ["tenant_id", "automation", "created_us"],
    )
    # the running-runs limit per tenant counts these
    op.create_index("ix_automation_runs_status", "automation_runs", ["tenant_id", "status"])
    # dedupe: one run per (automation, key, window) — the insert of a second one does nothing
    op.create_index(
        "uq_automation_runs_dedupe",
        "automation_runs",
        ["tenant_id", "automation", "dedupe_key"],
        unique=True,
        sqlite_where=sa.text("dedupe_key IS NOT NULL"),
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )
    op.create_table(
        "automation_waits",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("slot", sa.Text, primary_key=True),  # 'step' or 'cancel.<n>'
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),  # the awaited event type
        sa.Column("match_key", sa.Text, nullable=False),  # the trigger's correlation values
    )
    # an arriving event wakes the runs waiting for (its tenant, its type, its values)
    op.create_index(
        "ix_automation_waits_key", "automation_waits", ["tenant_id", "type", "match_key"]
    )


def downgrade() -> None:
    for table in ("automation_waits", "automation_runs", "automations"):
        op.drop_table(table)
