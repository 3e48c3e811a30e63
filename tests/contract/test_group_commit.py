"""Group commit of appends, on both stores: concurrent callers share commits, every caller gets
its own answer (also when the shared commit fails), and closing the store first commits what
was already queued."""

from __future__ import annotations

import asyncio

import pytest
from msgspec import structs

from switchboard.config import Settings
from switchboard.errors import StoreError
from switchboard.store import EventQuery, Store
from switchboard.store.backends import open_store
from tests.contract.test_store_contract import ev


async def test_concurrent_appends_each_get_their_own_answers(store: Store) -> None:
    batches = [[ev(f"c{n}-{i}") for i in range(5)] for n in range(40)]
    answers = await asyncio.gather(*(store.append(b) for b in batches))
    for batch, answer in zip(batches, answers, strict=True):
        assert [a.id for a in answer] == [e.id for e in batch]
        assert {a.status for a in answer} == {"accepted"}
    seqs = [a.seq for answer in answers for a in answer]
    assert len(set(seqs)) == 200
    # a repeat of any of them is a duplicate pointing at the stored row
    again = await store.append([batches[7][2]])
    assert again[0].status == "duplicate"
    assert again[0].seq == answers[7][2].seq


async def test_a_failing_commit_answers_every_caller_in_it(store: Store) -> None:
    bad = structs.replace(ev("bad"), type=None)  # type: ignore[arg-type]  # NOT NULL column
    results = await asyncio.wait_for(
        asyncio.gather(store.append([ev("ok-1")]), store.append([bad]), return_exceptions=True),
        10,
    )
    assert any(isinstance(r, StoreError) for r in results)
    # no caller is left waiting, and the store still commits afterwards
    after = await asyncio.wait_for(store.append([ev("ok-2")]), 10)
    assert after[0].status == "accepted"


async def test_close_commits_what_was_already_queued(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    first = open_store(settings)
    await first.open()
    pending = [
        asyncio.ensure_future(first.append([ev(f"q{n}-{i}") for i in range(50)])) for n in range(20)
    ]
    await asyncio.sleep(0)  # every append has queued its events
    await first.close()
    answers = await asyncio.gather(*pending)
    assert sum(len(a) for a in answers) == 1000
    second = open_store(settings)
    await second.open()
    try:
        stored = await second.list_events("acme", EventQuery(limit=1000))
        assert len(stored) == 1000
    finally:
        await second.close()


async def test_appends_after_close_are_refused(database_url: str) -> None:
    store = open_store(Settings(database_url=database_url))
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.append([ev("late")])
