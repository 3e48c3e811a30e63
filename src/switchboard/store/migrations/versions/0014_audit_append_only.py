"""The audit log made append-only in the database: UPDATE, DELETE and TRUNCATE of audit_log are
refused, except the retention job's DELETE of entries older than the cutoff it declares in its
own transaction (store/audit.py `expire`; docs/privacy.md, "Audit log").

PostgreSQL: a row trigger raises unless the row is older than the transaction-local setting
`switchboard.audit_expire_before` (set with set_config(…, true), gone at COMMIT/ROLLBACK); a
statement trigger refuses TRUNCATE. SQLite has no session settings: the retention inserts its
cutoff into `audit_expiry` and removes it in the same transaction (SQLite has one writer, and no
other connection sees an uncommitted row), and the DELETE trigger checks that table.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_REFUSED = "audit_log is append-only"

_PG_FUNCTION = f"""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at_us < coalesce(
        nullif(current_setting('switchboard.audit_expire_before', true), '')::bigint,
        -9223372036854775808
    ) THEN
        RETURN OLD;  -- the retention job, within the cutoff its own transaction declared
    END IF;
    RAISE EXCEPTION '{_REFUSED}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
        return
    op.create_table("audit_expiry", sa.Column("before_us", sa.BigInteger, nullable=False))
    op.execute(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}: UPDATE refused'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "WHEN NOT EXISTS (SELECT 1 FROM audit_expiry WHERE OLD.at_us < before_us) "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}: DELETE refused'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
        return
    op.execute("DROP TRIGGER audit_log_no_delete")
    op.execute("DROP TRIGGER audit_log_no_update")
    op.drop_table("audit_expiry")
