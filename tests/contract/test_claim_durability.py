"""`fetch_write(durable=False)` (a delivery's claim) on both stores: its statement commits
without waiting for the disk, is seen at once by every other connection, and leaves every other
write (the ingest commits above all) as durable as before."""

from __future__ import annotations

from switchboard.store import Store

RENAME = "UPDATE tenants SET name = ? WHERE id = ? RETURNING id"


async def _durability(store: Store) -> str:
    """How the store's next ordinary write commits: SQLite's `synchronous` on the writer
    connection (2 is FULL), PostgreSQL's `synchronous_commit`."""
    if store.dialect == "sqlite":
        return str((await store.fetch_write("PRAGMA synchronous"))[0][0])
    return str((await store.fetch("SELECT current_setting('synchronous_commit')"))[0][0])


async def test_an_undurable_write_lands_and_leaves_the_others_durable(store: Store) -> None:
    await store.execute(
        "INSERT INTO tenants (id, name, created_us) VALUES (?, ?, ?)", ("claimed", "before", 1)
    )
    durable = await _durability(store)
    assert durable == ("2" if store.dialect == "sqlite" else "on")
    rows = await store.fetch_write(RENAME, ("after", "claimed"), durable=False)
    assert [tuple(r) for r in rows] == [("claimed",)]
    # committed: another connection (a reader, a pooled connection) sees it at once
    got = await store.fetch("SELECT name FROM tenants WHERE id = ?", ("claimed",))
    assert got[0][0] == "after"
    # the writes after it are durable again, on the very connection it used
    for _ in range(3):
        assert await _durability(store) == durable
    await store.batch([(RENAME, ("durable", "claimed"))])
    got = await store.fetch("SELECT name FROM tenants WHERE id = ?", ("claimed",))
    assert got[0][0] == "durable"


async def test_the_undurable_statement_itself_skips_the_flush(store: Store) -> None:
    if store.dialect == "sqlite":
        inside = await store.fetch_write("PRAGMA synchronous", durable=False)
        assert inside[0][0] == 1  # NORMAL: the WAL is not synced at this commit
    else:
        await store.execute(
            "INSERT INTO tenants (id, name, created_us) VALUES (?, ?, ?)", ("seen", "x", 1)
        )
        inside = await store.fetch_write(
            "UPDATE tenants SET name = 'y' WHERE id = 'seen' "
            "RETURNING current_setting('synchronous_commit')",
            durable=False,
        )
        assert inside[0][0] == "off"
    assert await _durability(store) == ("2" if store.dialect == "sqlite" else "on")
