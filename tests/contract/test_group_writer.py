"""GroupWriter on both stores: concurrent callers share one transaction and `executemany`, each
caller's statements keep their order, and one failing caller never fails the others."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.store import Store
from switchboard.store.queries import GroupWriter

INSERT = "INSERT INTO tenants (id, name, created_us) VALUES (?, ?, ?)"
RENAME = "UPDATE tenants SET name = ? WHERE id = ?"


async def _names(store: Store, prefix: str) -> dict[str, str]:
    rows = await store.fetch("SELECT id, name FROM tenants WHERE id LIKE ?", [prefix + "%"])
    return {r[0]: r[1] for r in rows}


async def test_concurrent_callers_of_several_shapes_all_land_in_their_own_order(
    store: Store,
) -> None:
    writer = GroupWriter(store)
    try:
        # a caller inserting then renaming its row only ends with the new name if its own two
        # statements ran in order, whatever the other callers sent beside them
        calls = [
            writer.write([(INSERT, (f"gw-a{n}", "first", n)), (RENAME, ("second", f"gw-a{n}"))])
            for n in range(40)
        ] + [writer.write([(INSERT, (f"gw-b{n}", "only", n))]) for n in range(40)]
        await asyncio.gather(*calls)
    finally:
        await writer.close()
    names = await _names(store, "gw-")
    assert len(names) == 80
    assert all(names[f"gw-a{n}"] == "second" for n in range(40))
    assert all(names[f"gw-b{n}"] == "only" for n in range(40))


async def test_a_failing_caller_fails_alone(store: Store) -> None:
    await store.execute(INSERT, ("gw-taken", "already here", 0))
    writer = GroupWriter(store)
    try:
        good = [writer.write([(INSERT, (f"gw-ok{n}", "ok", n))]) for n in range(20)]
        bad = writer.write([(INSERT, ("gw-taken", "again", 1))])  # primary key conflict
        results = await asyncio.gather(*good, bad, return_exceptions=True)
    finally:
        await writer.close()
    assert all(r is None for r in results[:-1])
    assert isinstance(results[-1], Exception)
    names = await _names(store, "gw-")
    assert names.pop("gw-taken") == "already here"
    assert names == {f"gw-ok{n}": "ok" for n in range(20)}


@pytest.mark.parametrize("rows", [1, 3])
async def test_batch_many_is_one_transaction(store: Store, rows: int) -> None:
    """A failure in a later group rolls back the earlier groups too."""
    await store.execute(INSERT, ("gw-x", "x", 0))
    with pytest.raises(Exception):  # noqa: B017 — each driver raises its own error type
        await store.batch_many(
            [
                (INSERT, [(f"gw-t{n}", "t", n) for n in range(rows)]),
                (INSERT, [("gw-x", "dup", 1)]),
            ]
        )
    assert await _names(store, "gw-t") == {}


async def test_unwatched_writes_land_by_flush_and_only_failures_are_told(store: Store) -> None:
    """`submit(..., on_error)` returns no future: `flush` waits for the commit, and `on_error`
    hears of a failure only (the worker's successful sends are written this way)."""
    await store.execute(INSERT, ("gw-held", "already here", 0))
    writer = GroupWriter(store)
    told: list[tuple[str, Exception]] = []
    try:
        for n in range(30):
            ret = writer.submit(
                [(INSERT, (f"gw-u{n}", "u", n))], lambda exc, n=n: told.append((f"u{n}", exc))
            )
            assert ret is None
        writer.submit([(INSERT, ("gw-held", "again", 1))], lambda exc: told.append(("dup", exc)))
        watched = writer.submit([(INSERT, ("gw-w", "w", 2))])  # a future beside them
        await writer.flush()
        assert watched.done() and watched.exception() is None
    finally:
        await writer.close()
    assert [who for who, _ in told] == ["dup"]
    names = await _names(store, "gw-")
    assert names.pop("gw-held") == "already here" and names.pop("gw-w") == "w"
    assert names == {f"gw-u{n}": "u" for n in range(30)}


async def test_flush_with_nothing_queued_returns_at_once(store: Store) -> None:
    writer = GroupWriter(store)
    try:
        await asyncio.wait_for(writer.flush(), 1)
    finally:
        await writer.close()


async def test_flush_returns_when_the_store_fails_the_writes(store: Store) -> None:
    """A failing store fails each write to its own caller; the caller flushing gets no error."""

    class Down:
        async def batch_many(self, groups: object) -> None:
            raise ConnectionError("the database went away")

        async def batch(self, statements: object) -> None:
            raise ConnectionError("the database went away")

    writer = GroupWriter(Down())  # type: ignore[arg-type]
    told: list[Exception] = []
    try:
        writer.submit([(INSERT, ("gw-down", "x", 0))], told.append)
        await asyncio.wait_for(writer.flush(), 5)
    finally:
        await writer.close()
    assert [type(e) for e in told] == [ConnectionError]
