"""The sealed columns (crypto.py) as a whole: checking at start-up that the configured master
keys open them, and re-sealing them under the current key (`switchboard crypto rotate-master`).
The subjects' data keys (subject_keys.py) are re-wrapped the same way; the PII they seal is not
touched (it is sealed under the data keys, which do not change)."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.crypto import is_sealed, sealed_key_id
from switchboard.errors import ConfigError
from switchboard.store.queries import Sql, dumps, load_json
from switchboard.store.subject_keys import key_place

# (table, column): every column that holds a sealed value; the place a value is bound to is
# "<table>.<column>:<row id>"
SEALED_COLUMNS = (
    ("destinations", "config"),
    ("destinations", "secrets"),
    ("sources", "secrets"),
)


# the master keys that wrapped the subjects' data keys, with how many each
_WRAPPED_KEY_IDS = (
    "SELECT substr(wrapped, 8, 8), count(*) FROM subject_keys GROUP BY substr(wrapped, 8, 8)"
)


@dataclass(frozen=True)
class Rotation:
    resealed: int  # values now sealed under the current key
    unchanged: int  # values that already were
    skipped: int  # rows changed while the rotation ran (written under the current key then)


async def check_keys(sql: Sql) -> None:
    """Refuse to start when stored values were sealed with a master key that is not set: the
    hub could not send a single delivery with them, and would otherwise fail one by one."""
    vault = sql.vault
    missing: dict[str, int] = {}
    for table, column in SEALED_COLUMNS:
        for (value,) in await sql.fetch(f"SELECT {column} FROM {table}"):
            stored = load_json(value)
            if is_sealed(stored) and not vault.knows(kid := sealed_key_id(stored)):
                missing[kid] = missing.get(kid, 0) + 1
    for kid, n in await sql.fetch(_WRAPPED_KEY_IDS):
        if not vault.knows(kid):
            missing[kid] = missing.get(kid, 0) + n
    if not missing:
        return
    which = ", ".join(f"{kid} ({n} values)" for kid, n in sorted(missing.items()))
    if not vault.enabled:
        raise ConfigError(
            f"the database holds credentials or data keys sealed with master key {which}, and "
            "no master key is set: set SWITCHBOARD_MASTER_KEY or SWITCHBOARD_MASTER_KEY_FILE to "
            "that key"
        )
    raise ConfigError(
        f"the database holds credentials or data keys sealed with master key {which}, which "
        f"is neither SWITCHBOARD_MASTER_KEY (key {vault.current_id}) nor in "
        "SWITCHBOARD_MASTER_KEY_PREVIOUS"
    )


async def rotate(sql: Sql) -> Rotation:
    """Re-seal every sealed (or still clear) credential under the current master key, one row
    at a time; a row written meanwhile is left alone (its writer sealed it)."""
    vault = sql.vault
    if not vault.enabled:
        raise ConfigError("set SWITCHBOARD_MASTER_KEY (or _FILE) to the new master key first")
    resealed = unchanged = skipped = 0
    for table, column in SEALED_COLUMNS:
        for row_id, value in await sql.fetch(f"SELECT id, {column} FROM {table}"):
            stored = load_json(value)
            if stored is None:
                continue
            fresh = vault.reseal(stored, f"{table}.{column}:{row_id}")
            if fresh is None:
                unchanged += 1
                continue
            # compare and set: the exact text read, so a concurrent update is never undone
            changed = await sql.execute(
                f"UPDATE {table} SET {column} = ?j WHERE id = ? AND {column} = ?j",
                (dumps(fresh), row_id, dumps(stored)),
            )
            if changed:
                resealed += 1
            else:
                skipped += 1
    # the subjects' data keys: re-wrapped one by one, the same compare and set (a key shredded
    # meanwhile stays shredded: its row is gone, the UPDATE changes nothing)
    for tenant_id, kind, owner, wrapped in await sql.fetch(
        "SELECT tenant_id, kind, owner, wrapped FROM subject_keys"
    ):
        if sealed_key_id(wrapped) == vault.current_id:
            unchanged += 1
            continue
        place = key_place(tenant_id, kind, owner)
        changed = await sql.execute(
            "UPDATE subject_keys SET wrapped = ? WHERE tenant_id = ? AND kind = ? AND owner = ? "
            "AND wrapped = ?",
            (vault.seal(vault.open(wrapped, place), place), tenant_id, kind, owner, wrapped),
        )
        if changed:
            resealed += 1
        else:
            skipped += 1
    return Rotation(resealed, unchanged, skipped)
