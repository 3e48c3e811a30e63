"""PostgreSQL's events by month (migration 0013, store/partitions.py), on a real database: the
migration moves events and their dedup keys, duplicates stay duplicates across months, the
retention job drops a month that is wholly past retention while ingest goes on and leaves a
month that mixes retentions to the chunked deletes, and the months ahead are created."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from switchboard.config import Settings
from switchboard.envelope import Event, build_event, format_us, now_us
from switchboard.patterns import compile_pattern
from switchboard.retention import DAY_US
from switchboard.retention_job import run_once
from switchboard.store import EventQuery
from switchboard.store import retention as sql
from switchboard.store.backends import open_store
from switchboard.store.migrate import _config
from switchboard.store.observe import ObserveStore
from switchboard.store.partitions import Month, ensure_month, month, month_index, upkeep
from switchboard.store.postgres import PostgresStore
from switchboard.store.queries import list_events_sql
from tests.conftest import LOOPBACK, Api, fresh_database, serve

pytestmark = pytest.mark.postgres


def event(tenant: str, event_id: str, received_us: int, time_us: int | None = None) -> Event:
    doc: dict[str, Any] = {"id": event_id, "type": "a.b", "data": {"n": 1}}
    if time_us is not None:
        doc["time"] = format_us(time_us)
    return build_event(doc, tenant_id=tenant, default_source="api", received_us=received_us)


def months_ago(n: int) -> Month:
    return month(month_index(now_us()) - n)


async def partitions(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def test_the_migration_moves_events_and_their_dedup_keys(tmp_path: Path) -> None:
    old = months_ago(14)
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0012")
        conn = await asyncpg.connect(url)
        try:
            for n, received in enumerate((old.start_us + 5, months_ago(2).start_us, now_us())):
                await conn.execute(
                    "INSERT INTO events (tenant_id, id, source, type, time_us, received_us, "
                    "trace_id, status, context, data) VALUES ('t1', $1, 'api', 'a.b', $2, $2, "
                    "'tr', 'accepted', '{}', '{\"n\": 1}')",
                    f"e{n}",
                    received,
                )
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        names = await partitions(url)
        assert {old.name, months_ago(2).name, months_ago(0).name, "events_default"} <= names
        assert month(month_index(now_us()) + 2).name in names  # two months ahead
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            again = await store.append([event("t1", f"e{n}", now_us()) for n in range(3)])
            assert [a.status for a in again] == ["duplicate"] * 3
            assert [a.seq for a in again] == [1, 2, 3]  # the originals', and seq goes on
            assert again[0].received_us == old.start_us + 5
            [new] = await store.append([event("t1", "e3", now_us())])
            assert new.status == "accepted" and new.seq > 3
            found = await store.get_event("t1", "e0", None)
            assert found is not None and found.received_us == old.start_us + 5
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0012")
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT seq, id FROM events ORDER BY seq")
            assert [r[1] for r in rows] == ["e0", "e1", "e2", "e3"]
            assert await conn.fetchval("SELECT to_regclass('event_keys')") is None
            with pytest.raises(asyncpg.UniqueViolationError):  # the unique index is back
                await conn.execute(
                    "INSERT INTO events (tenant_id, id, source, type, time_us, received_us, "
                    "trace_id, status, context, data) VALUES ('t1', 'e1', 'api', 'a.b', 1, 1, "
                    "'tr', 'accepted', '{}', '{}')"
                )
            seq = await conn.fetchval(
                "INSERT INTO events (tenant_id, id, source, type, time_us, received_us, "
                "trace_id, status, context, data) VALUES ('t1', 'e9', 'api', 'a.b', 1, 1, "
                "'tr', 'accepted', '{}', '{}') RETURNING seq"
            )
            assert seq > rows[-1][0]  # the sequence stayed with the table
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        assert months_ago(14).name in await partitions(url)


async def test_an_empty_database_upgrades_and_downgrades(tmp_path: Path) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        assert {months_ago(0).name, "events_default"} <= await partitions(url)
        await asyncio.to_thread(command.downgrade, _config(url), "0012")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM events") == 0
            assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'events'") in (
                "r",
                b"r",
            )
        finally:
            await conn.close()


async def _seq_indexes(conn: Any) -> dict[str, tuple[str, list[str] | None]]:
    """Each month's index on seq alone: partition → (index definition, storage options)."""
    rows = await conn.fetch(
        "SELECT t.relname, pg_get_indexdef(i.indexrelid), c.reloptions FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_inherits h ON h.inhrelid = t.oid AND h.inhparent = 'events'::regclass "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = 'seq' "
        "WHERE i.indnatts = 1 AND i.indkey[0] = a.attnum"
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_0017_indexes_seq_in_every_month_and_keeps_duplicates(tmp_path: Path) -> None:
    """The upgrade from 0016 (primary key (seq, received_us)) to a packed index on seq: every
    month has it, a month made later too; duplicates in another month stay duplicates; the
    downgrade gives the primary key back."""
    old = months_ago(3)
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0016")
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            await store.append([event("t1", "e0", old.start_us + 5), event("t1", "e1", now_us())])
        finally:
            await store.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('events_pkey')") is None
            await ensure_month(conn, month(month_index(now_us()) + 4))  # made after 0017
            found = await _seq_indexes(conn)
            assert set(found) == await partitions(url)
            assert all(options == ["fillfactor=100"] for _, options in found.values())
            assert not any("UNIQUE" in definition for definition, _ in found.values())
        finally:
            await conn.close()
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            again = await store.append([event("t1", "e0", now_us()), event("t1", "e1", now_us())])
            assert [(a.status, a.seq) for a in again] == [("duplicate", 1), ("duplicate", 2)]
            assert again[0].received_us == old.start_us + 5
            found_event = await store.get_event("t1", "e0", None)
            assert found_event is not None and found_event.seq == 1
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0016")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('ix_events_seq')") is None
            with pytest.raises(asyncpg.UniqueViolationError):  # the primary key is back
                await conn.execute(
                    "INSERT INTO events (seq, tenant_id, id, source, type, time_us, received_us, "
                    "trace_id, status, context, data) SELECT seq, tenant_id, 'x', source, type, "
                    "time_us, received_us, trace_id, status, context, data FROM events "
                    "WHERE seq = 1"
                )
        finally:
            await conn.close()


async def _event_indexes(conn: Any) -> dict[str, tuple[str, list[str] | None]]:
    """Every index on events' partitions and on event_keys: name → (definition, options)."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), c.reloptions FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'event_keys'::regclass "
        "OR i.indrelid IN (SELECT inhrelid FROM pg_inherits "
        "WHERE inhparent = 'events'::regclass)"
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def _trace_event(tenant: str, event_id: str, trace: str, received_us: int) -> Event:
    doc: dict[str, Any] = {"id": event_id, "type": "a.b", "trace_id": trace, "data": {}}
    return build_event(doc, tenant_id=tenant, default_source="api", received_us=received_us)


async def test_0019_hashes_the_trace_index_and_packs_the_growing_ones(tmp_path: Path) -> None:
    """The upgrade from 0018: every month (one made later too) has the trace index on the
    trace id's hash and the time indexes at fillfactor 100; events stored before it are found
    by trace through the index, by the listing, the trace view and a pattern, in their tenant
    only; the downgrade gives the plain indexes back."""
    trace, other = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
    old = months_ago(2)
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0018")
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            await store.append(
                [
                    _trace_event("t1", "e0", trace, old.start_us + 5),
                    _trace_event("t1", "e1", trace, now_us()),
                    _trace_event("t1", "e2", other, now_us()),
                    _trace_event("t2", "e3", trace, now_us()),  # the same trace, another tenant
                    *(_trace_event("t1", f"x{n}", f"{n:032x}", now_us()) for n in range(500)),
                ]
            )
        finally:
            await store.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        conn = await asyncpg.connect(url)
        try:
            await ensure_month(conn, month(month_index(now_us()) + 4))  # made after 0019
            found = await _event_indexes(conn)
            by_kind: dict[str, list[tuple[str, list[str] | None]]] = {}
            for definition, options in found.values():
                columns = definition.split(" USING btree ", 1)[1].split(" WITH ", 1)[0]
                by_kind.setdefault(columns, []).append((definition, options))
            months = len(await partitions(url))
            assert len(by_kind["(tenant_id, hashtext(trace_id))"]) == months
            assert "(tenant_id, trace_id)" not in by_kind
            for columns in ("(tenant_id, time_us, seq)", "(tenant_id, type, time_us, seq)"):
                assert len(by_kind[columns]) == months
                assert all(o == ["fillfactor=100"] for _, o in by_kind[columns])
            assert found["event_keys_pkey"][1] == ["fillfactor=100"]
            await conn.execute("ANALYZE events")
            # the listing's query by trace id, and by a pattern naming it, read the month of
            # many events through the index on the hash (months of a row or none may go any way)
            holding = {months_ago(0).name}
            pattern = compile_pattern({"trace_id": [trace]})
            for query in (EventQuery(trace_id=trace), EventQuery(pattern=pattern)):
                sql, params = list_events_sql("postgres", "t1", query)
                plan = [r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *params)]
                read = {
                    m.group(1): cond
                    for line, cond in itertools.pairwise(plan)
                    if (m := re.search(r" on (\S+) ", line)) and m.group(1) in holding
                }
                assert set(read) == holding, plan
                assert all("hashtext(trace_id) =" in c for c in read.values()), "\n".join(plan)
        finally:
            await conn.close()
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            listed = await store.list_events("t1", EventQuery(trace_id=trace))
            assert sorted(e.id for e in listed) == ["e0", "e1"]
            pattern = compile_pattern({"trace_id": [trace, "nope"]})
            listed = await store.list_events("t1", EventQuery(pattern=pattern))
            assert sorted(e.id for e in listed) == ["e0", "e1"]
            seen = await ObserveStore(store).trace("t2", trace)
            assert [e.id for e in seen.events] == ["e3"]
            [again] = await store.append([_trace_event("t1", "e0", trace, now_us())])
            assert again.status == "duplicate" and again.received_us == old.start_us + 5
        finally:
            await store.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0018")
        conn = await asyncpg.connect(url)
        try:
            found = await _event_indexes(conn)
            assert not any("hashtext" in d for d, _ in found.values())
            assert sum("(tenant_id, trace_id)" in d for d, _ in found.values()) == len(
                await partitions(url)
            )
            assert not any(o for name, (d, o) in found.items() if "time_us" in d)
            assert found["event_keys_pkey"][1] is None
        finally:
            await conn.close()


@pytest.fixture
async def pg_store(tmp_path: Path) -> AsyncIterator[PostgresStore]:
    async with fresh_database("postgres", tmp_path) as url:
        store = open_store(Settings(database_url=url))
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def test_a_duplicate_in_the_next_month_is_still_a_duplicate(
    pg_store: PostgresStore,
) -> None:
    last = months_ago(1)
    async with pg_store.connection() as conn:
        await ensure_month(conn, last)
    [first] = await pg_store.append([event("t1", "x", last.end_us - 1)])
    assert first.status == "accepted"
    # the same id the next month, alone and in a batch with new ids and itself twice
    [again] = await pg_store.append([event("t1", "x", last.end_us)])
    assert (again.status, again.seq, again.received_us) == (
        "duplicate",
        first.seq,
        first.received_us,
    )
    batch = await pg_store.append(
        [event("t1", "y", now_us()), event("t1", "x", now_us()), event("t1", "y", now_us())]
    )
    assert [a.status for a in batch] == ["accepted", "duplicate", "duplicate"]
    assert batch[1].seq == first.seq and batch[2].seq == batch[0].seq
    # another tenant's or another source's "x" is another event
    [other] = await pg_store.append([event("t2", "x", now_us())])
    assert other.status == "accepted"
    rows = await pg_store.fetch("SELECT count(*) FROM events WHERE id = 'x'")
    assert rows == [(2,)]
    # two stores (two hub processes) racing on the same new ids: each id is accepted once
    twin = open_store(pg_store.settings)
    await twin.open()
    try:
        ids = [f"race-{i}" for i in range(200)]
        a, b = await asyncio.gather(
            pg_store.append([event("t1", i, now_us()) for i in ids]),
            twin.append([event("t1", i, now_us()) for i in reversed(ids)]),
        )
    finally:
        await twin.close()
    accepted = [r.id for r in a + b if r.status == "accepted"]
    assert sorted(accepted) == sorted(ids)
    seqs = {r.id: r.seq for r in a}
    assert all(seqs[r.id] == r.seq for r in b)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database("postgres", tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            run_worker=0,
            egress_allow=LOOPBACK,
            retention_chunk=50,
        )
        async with serve(settings) as a:
            yield a


async def ids_in(store: Any, tenant: str) -> set[str]:
    rows = await store.fetch("SELECT id FROM events WHERE tenant_id = ?", (tenant,))
    return {r[0] for r in rows}


async def test_a_month_past_retention_is_dropped_while_ingest_goes_on(hub: Api) -> None:
    """Month A (15 months back) holds only events past the tenant's 12 months: it is dropped
    whole, with its deliveries and dedup keys. Month B (14 months back) also holds a tenant
    without retention: it stays, and only the expired tenant's rows leave it, in chunks. Clients
    send events all along: every acknowledged one is there after."""
    store = hub.hub.store
    assert isinstance(store, PostgresStore)
    t1, key = await hub.tenant()
    t2, _ = await hub.tenant()
    await sql.set_tenant_retention(store, t1, 372)
    a, b = months_ago(15), months_ago(14)
    async with store.connection() as conn:
        for m in (a, b):
            await ensure_month(conn, m)
    for start in range(0, 1000, 250):
        await store.append([event(t1, f"a-{n}", a.start_us + n) for n in range(start, start + 250)])
    await store.append([event(t1, f"b-{n}", b.start_us + n) for n in range(300)])
    await store.append([event(t2, f"b2-{n}", b.start_us + n) for n in range(20)])
    seqs = await store.fetch("SELECT seq FROM events WHERE id IN ('a-7', 'b-7') ORDER BY id")
    for n, (seq,) in enumerate(seqs):
        await store.execute(
            "INSERT INTO deliveries (id, tenant_id, event_seq, destination_id, status, priority, "
            "next_attempt_us, created_us, updated_us) VALUES (?, ?, ?, 'dst', 'succeeded', 1, "
            "0, 0, 0)",
            (f"d{n}", t1, seq),
        )
    acknowledged: set[str] = set()
    done = asyncio.Event()

    async def keep_sending() -> None:
        n = 0
        while not done.is_set() or n < 5:
            batch = [{"id": f"live-{n}-{i}", "type": "a.b", "data": {}} for i in range(20)]
            status, body, _ = await hub.call("POST", "/v1/events", key, batch)
            assert status == 202, body
            acknowledged.update(r["id"] for r in body["results"] if r["status"] == "accepted")
            n += 1

    sender = asyncio.create_task(keep_sending())
    try:
        deleted = await run_once(hub.hub, now_us())
    finally:
        done.set()
        await sender
    assert deleted["events"] == 1300
    names = await partitions(store.settings.database_url)
    assert a.name not in names and b.name in names
    left = await ids_in(store, t1)
    assert not any(i.startswith(("a-", "b-")) for i in left)
    assert acknowledged and acknowledged <= left
    assert await ids_in(store, t2) == {f"b2-{n}" for n in range(20)}
    assert await store.fetch("SELECT count(*) FROM deliveries") == [(0,)]
    keys = await store.fetch("SELECT count(*) FROM event_keys WHERE id LIKE 'a-%' OR id LIKE 'b-%'")
    assert keys == [(0,)]
    # no key outlives its event, and every event left keeps its key
    orphans = await store.fetch(
        "SELECT count(*) FROM event_keys k WHERE NOT EXISTS (SELECT 1 FROM events e "
        "WHERE e.seq = k.seq AND e.received_us = k.received_us)"
    )
    assert orphans == [(0,)]
    assert await store.fetch("SELECT count(*) FROM event_keys") == await store.fetch(
        "SELECT count(*) FROM events"
    )
    # the keys went with their events: the id may be used again
    [again] = await store.append([event(t1, "a-1", now_us())])
    assert again.status == "accepted"


@pytest.mark.security
async def test_a_future_time_or_waiting_work_keeps_its_month(hub: Api) -> None:
    """A tenant that dates an event years ahead cannot make the job lose it (nor the others'
    events): its month is not dropped, and the rest of the month goes in chunks. A month with a
    delivery still pending is not dropped either."""
    store = hub.hub.store
    assert isinstance(store, PostgresStore)
    t1, _ = await hub.tenant()
    await sql.set_tenant_retention(store, t1, 372)
    c, d = months_ago(16), months_ago(17)
    async with store.connection() as conn:
        for m in (c, d):
            await ensure_month(conn, m)
    future = now_us() + 3650 * DAY_US
    await store.append(
        [event(t1, f"c-{n}", c.start_us + n, c.start_us + n) for n in range(40)]
        + [event(t1, "c-future", c.start_us + 99, future)]
    )
    await store.append([event(t1, f"d-{n}", d.start_us + n, d.start_us + n) for n in range(40)])
    [(seq,)] = await store.fetch("SELECT seq FROM events WHERE id = 'd-3'")
    await store.execute(
        "INSERT INTO deliveries (id, tenant_id, event_seq, destination_id, status, priority, "
        "next_attempt_us, created_us, updated_us) VALUES ('dp', ?, ?, 'dst', 'pending', 1, "
        "0, 0, 0)",
        (t1, seq),
    )
    deleted = await run_once(hub.hub, now_us())
    assert deleted["events"] == 79  # every one but the future one and the one waited for
    assert {c.name, d.name} <= await partitions(store.settings.database_url)
    assert await ids_in(store, t1) == {"c-future", "d-3"}


async def test_the_months_ahead_are_made_and_take_their_rows_from_the_default(
    pg_store: PostgresStore,
) -> None:
    later = month(month_index(now_us()) + 5)
    # no partition for that month yet: the row goes to the DEFAULT partition, and is found
    [stray] = await pg_store.append([event("t1", "stray", later.start_us + 10)])
    where = "SELECT tableoid::regclass::text FROM events WHERE id = 'stray'"
    assert await pg_store.fetch(where) == [("events_default",)]
    assert await upkeep(pg_store, later.start_us + 20, {}) == 0
    assert await pg_store.fetch(where) == [(later.name,)]
    names = await partitions(pg_store.settings.database_url)
    assert {later.name, month(month_index(later.start_us) + 2).name} <= names
    found = await pg_store.get_event("t1", "stray", "api")
    assert found is not None and found.seq == stray.seq
    # and an upkeep again changes nothing
    assert await upkeep(pg_store, later.start_us + 20, {}) == 0
    assert await partitions(pg_store.settings.database_url) == names


def test_names_of_months() -> None:
    m = month(month_index(1_764_547_200_000_000))  # 2025-12-01T00:00Z
    assert (m.name, m.start_us, m.end_us) == (
        "events_p202512",
        1_764_547_200_000_000,
        1_767_225_600_000_000,
    )
    assert month_index(m.end_us - 1) == month_index(m.start_us)


def _plan_nodes(plan: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    stack = [plan]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "Node Type" in item:
                nodes.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return nodes


async def test_reads_by_id_and_by_seq_use_indexes_in_every_month(pg_store: PostgresStore) -> None:
    """GET /v1/events/{id} goes through the key's row to one month; a read by seq (deliveries,
    the UI, exports) probes each month's seq index; neither scans a month that has rows."""
    from switchboard.store.postgres import _BY_ID
    from switchboard.store.queries import EVENT_COLUMNS, render

    last = months_ago(1)
    async with pg_store.connection() as conn:
        await ensure_month(conn, last)
    for received in (last.start_us, now_us()):
        for start in range(0, 3000, 500):
            await pg_store.append(
                [event("t1", f"{received}-{n}", received + n) for n in range(start, start + 500)]
            )
    async with pg_store.connection() as conn:
        await conn.execute("ANALYZE")
        full = {
            r[0]
            for r in await conn.fetch(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND pg_relation_size(oid) > 0"
            )
        }
        reads = [
            (_BY_ID + " ORDER BY k.seq DESC LIMIT 1", "t1", f"{last.start_us}-7"),
            (
                render(f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND seq = ?"),
                "t1",
                9,
            ),
            (
                render(
                    "SELECT d.id FROM deliveries d JOIN events e ON e.tenant_id = d.tenant_id "
                    "AND e.seq = d.event_seq WHERE d.tenant_id = ? LIMIT 50"
                ),
                "t1",
            ),
        ]
        for sql_text, *params in reads:
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql_text, *params)
            nodes = _plan_nodes(json.loads(plan))
            scanned = {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}
            assert not scanned & full, (sql_text, scanned & full)
        by_id = _plan_nodes(
            json.loads(
                await conn.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + _BY_ID, "t1", f"{last.start_us}-7"
                )
            )
        )
        # one month read: the others' scans are never executed (run-time pruning)
        ran = {
            n["Relation Name"]
            for n in by_id
            if n.get("Relation Name", "").startswith("events_") and n.get("Actual Loops", 0) > 0
        }
        assert ran == {last.name}
