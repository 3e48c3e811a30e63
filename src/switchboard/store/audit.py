"""The audit log, written once for both backends on the stores' generic SQL.

An entry is written in the same transaction as the change it records (`audited`): both are
committed, or neither. Append-only: this module offers `append`, `list_entries` and the retention
job's `expire` (rows older than a cutoff, in chunks) and nothing that updates or deletes a given
row, and the database refuses UPDATE and DELETE on the table (migration 0014's triggers) except
the retention's DELETE of rows older than the cutoff it declares in its own transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from switchboard.store.queries import Sql, dumps, load_json

if TYPE_CHECKING:
    from switchboard.store import Store

_COLUMNS = "id, tenant_id, at_us, key_id, key_name, ip, action, method, path, status, before, after"


@dataclass(frozen=True)
class AuditEntry:
    id: str  # UUIDv7, time-ordered: the listing cursor
    tenant_id: str  # '' for operator actions outside any tenant
    at_us: int
    key_id: str
    key_name: str | None
    ip: str | None
    action: str  # e.g. destinations.update
    method: str
    path: str
    status: int
    before: Any  # the resource before the change, secrets masked (None for a creation)
    after: Any  # the answer to the change, secrets masked


def _row(r: Any) -> AuditEntry:
    return AuditEntry(
        id=r[0],
        tenant_id=r[1],
        at_us=r[2],
        key_id=r[3],
        key_name=r[4],
        ip=r[5],
        action=r[6],
        method=r[7],
        path=r[8],
        status=r[9],
        before=load_json(r[10]),
        after=load_json(r[11]),
    )


def _storable(value: Any) -> Any:
    """`value` with every NUL character of its texts and keys shown as U+FFFD: an entry records
    refused requests too, whose answers may quote what was refused (a JSON pointer through a key
    holding NUL), and PostgreSQL's text and jsonb cannot hold NUL."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


async def append(sql: Sql, entry: AuditEntry) -> None:
    entry = AuditEntry(**{f.name: _storable(getattr(entry, f.name)) for f in fields(entry)})
    await sql.execute(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?j, ?j)",
        (
            entry.id,
            entry.tenant_id,
            entry.at_us,
            entry.key_id,
            entry.key_name,
            entry.ip,
            entry.action,
            entry.method,
            entry.path,
            entry.status,
            None if entry.before is None else dumps(entry.before),
            None if entry.after is None else dumps(entry.after),
        ),
    )


@dataclass
class Change:
    """A change in progress: the entry to commit with it (None: nothing to record)."""

    entry: AuditEntry | None = None


@asynccontextmanager
async def audited(store: Store, *, joined: bool = True) -> AsyncIterator[Change]:
    """The block's writes and the entry it sets on the yielded `Change` in one transaction of
    `store` (store/unit.py): committed together when the block ends, neither when it or the
    entry's insert raises. `joined=False` (the API's wrapper) lets only a manage/admin key's
    change join the transaction (`unit.join`); other requests keep their own transactions."""
    change = Change()
    async with store.transaction(joined=joined) as unit:
        yield change
        if change.entry is not None:
            unit.joined = True
            await append(store, change.entry)


async def list_entries(
    sql: Sql,
    tenant_id: str,
    *,
    from_us: int | None = None,
    to_us: int | None = None,
    action: str | None = None,
    before_id: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """A tenant's entries newest first; `action` is a name (`keys.create`) or a resource
    (`keys`, every action on keys); `before_id` is the cursor (the last id of the last page)."""
    where: list[str] = ["tenant_id = ?"]
    params: list[Any] = [tenant_id]
    if from_us is not None:
        where.append("at_us >= ?")
        params.append(from_us)
    if to_us is not None:
        where.append("at_us < ?")
        params.append(to_us)
    if action:
        where.append("(action = ? OR action LIKE ?)")
        params += [action, action.replace("%", "").replace("_", "") + ".%"]
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    rows = await sql.fetch(
        f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    return [_row(r) for r in rows]


# The one DELETE the append-only triggers let through: the retention's, of rows older than the
# cutoff it declares first in the same transaction (PostgreSQL: a transaction-local setting;
# SQLite, which has none: a row of audit_expiry that the transaction inserts and removes, so no
# other connection ever sees it).
_DECLARE = {
    "postgres": "SELECT set_config('switchboard.audit_expire_before', ?::text, true)",
    "sqlite": "INSERT INTO audit_expiry (before_us) VALUES (?)",
}
_DELETE = (
    "DELETE FROM audit_log WHERE id IN "
    "(SELECT id FROM audit_log WHERE at_us < ? ORDER BY at_us LIMIT ?)"
)


async def expire(sql: Sql, cutoff_us: int, chunk: int) -> int:
    """Delete up to `chunk` entries recorded before `cutoff_us` (the audit retention); the
    number deleted. The retention job calls it until it returns less than `chunk`."""
    statements: list[tuple[str, Sequence[Any]]] = [
        (_DECLARE[sql.dialect], (str(cutoff_us) if sql.dialect == "postgres" else cutoff_us,)),
        (_DELETE, (cutoff_us, chunk)),
    ]
    if sql.dialect == "sqlite":
        statements.append(("DELETE FROM audit_expiry WHERE before_us = ?", (cutoff_us,)))
    return (await sql.batch(statements))[1]
