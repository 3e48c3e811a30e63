"""PostgreSQL's dedup keys as one uuid per event (migration 0017, store/event_keys.py), on a real
database: the key computed in SQL is the one the store computes, the upgrade from 0016 keeps
every duplicate a duplicate (in another month, under another source, in another tenant) and
every read by id indexed, and the downgrade gives the text keys back."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command

from switchboard.config import Settings
from switchboard.envelope import Event, build_event, now_us
from switchboard.store.backends import open_store
from switchboard.store.event_keys import KEY_SQL, event_key, id_range
from switchboard.store.migrate import _config
from switchboard.store.partitions import month, month_index
from tests.conftest import fresh_database

pytestmark = pytest.mark.postgres

_MIGRATION = importlib.import_module("switchboard.store.migrations.versions.0017_event_keys_hashed")
_AWKWARD = [
    ("t1", "api", "e1"),
    ("t1", "", "e1"),  # an empty source is not the id's neighbour
    ("t1", "api", ""),
    ("tê", "ß", "日本-🎉"),
    ("t1", "a\x01b", "c"),  # the separator is NUL, which no text holds: \x01 is just a byte
]


def event(tenant: str, event_id: str, received_us: int, source: str = "api") -> Event:
    doc: dict[str, Any] = {"id": event_id, "type": "a.b", "source": source, "data": {"n": 1}}
    return build_event(doc, tenant_id=tenant, default_source="api", received_us=received_us)


async def test_the_key_in_sql_is_the_key_the_store_computes(tmp_path: Path) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        conn = await asyncpg.connect(url)
        try:
            for t, s, i in _AWKWARD:
                for sql in (
                    KEY_SQL.format(t="$1::text", s="$2::text", i="$3::text"),
                    _MIGRATION._KEY.replace("tenant_id", "$1::text")
                    .replace("source", "$2::text")
                    .replace("convert_to(id,", "convert_to($3::text,"),
                ):
                    found = await conn.fetchval(f"SELECT {sql}", t, s, i)
                    assert found.hex == event_key(t, s, i), (t, s, i)
                lo, hi = id_range(t, i)
                assert lo <= event_key(t, s, i) <= hi
        finally:
            await conn.close()
    # the two halves: an id's sources share the first, tenants and ids do not
    assert event_key("t1", "api", "e1")[:16] == event_key("t1", "web", "e1")[:16]
    assert event_key("t1", "api", "e1")[16:] != event_key("t1", "web", "e1")[16:]
    assert event_key("t2", "api", "e1")[:16] != event_key("t1", "api", "e1")[:16]
    assert event_key("t1", "ap", "ie1") != event_key("t1", "api", "e1")


async def test_the_upgrade_keeps_duplicates_across_months_and_sources(tmp_path: Path) -> None:
    old = month(month_index(now_us()) - 3)
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(command.upgrade, _config(url), "0016")
        conn = await asyncpg.connect(url)
        try:
            # as the store of 0013-0016 wrote them: each event and its text key
            for n, (tenant, source, event_id, received) in enumerate(
                [
                    ("t1", "api", "e0", old.start_us + 5),
                    ("t1", "web", "e0", old.start_us + 6),  # the same id, another source
                    ("t2", "api", "e0", now_us()),  # the same id, another tenant
                    ("t1", "api", "e1", now_us()),
                ],
                start=1,
            ):
                await conn.execute(
                    "INSERT INTO events (seq, tenant_id, id, source, type, time_us, "
                    "received_us, trace_id, status, context, data) VALUES ($1, $2, $3, $4, "
                    "'a.b', $5, $5, 'tr', 'accepted', '{}', '{\"n\": 1}')",
                    n,
                    tenant,
                    event_id,
                    source,
                    received,
                )
                await conn.execute(
                    "INSERT INTO event_keys (tenant_id, id, source, seq, received_us) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    tenant,
                    event_id,
                    source,
                    n,
                    received,
                )
            await conn.execute("SELECT setval('events_seq_seq', 4)")
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
        store = open_store(Settings(database_url=url))
        await store.open()
        try:
            again = await store.append(
                [
                    event("t1", "e0", now_us()),
                    event("t1", "e0", now_us(), source="web"),
                    event("t2", "e0", now_us()),
                    event("t1", "e1", now_us()),
                ]
            )
            assert [(a.status, a.seq) for a in again] == [("duplicate", n) for n in (1, 2, 3, 4)]
            assert again[0].received_us == old.start_us + 5
            fresh = await store.append(
                [event("t1", "e0", now_us(), source="app"), event("t3", "e0", now_us())]
            )
            assert [a.status for a in fresh] == ["accepted", "accepted"]
            # by id: the newest of any source, never another tenant's; by id and source: that one
            newest = await store.get_event("t1", "e0", None)
            assert newest is not None and (newest.seq, newest.source) == (fresh[0].seq, "app")
            web = await store.get_event("t1", "e0", "web")
            assert web is not None and web.seq == 2
            assert await store.get_event("t1", "e0", "nope") is None
            other = await store.get_event("t2", "e0", None)
            assert other is not None and (other.tenant_id, other.seq) == ("t2", 3)
            assert await store.get_event("t4", "e0", None) is None
        finally:
            await store.close()
        conn = await asyncpg.connect(url)
        try:
            columns = await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'event_keys'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
            assert [c[0] for c in columns] == ["key", "seq", "received_us"]
            assert await conn.fetchval("SELECT to_regclass('events_pkey')") is None
            assert await conn.fetchval("SELECT to_regclass('ix_events_seq')") is not None
        finally:
            await conn.close()
        await asyncio.to_thread(command.downgrade, _config(url), "0016")
        conn = await asyncpg.connect(url)
        try:
            keys = await conn.fetch(
                "SELECT tenant_id, source, id, seq FROM event_keys ORDER BY seq"
            )
            assert [tuple(k) for k in keys] == [
                ("t1", "api", "e0", 1),
                ("t1", "web", "e0", 2),
                ("t2", "api", "e0", 3),
                ("t1", "api", "e1", 4),
                ("t1", "app", "e0", fresh[0].seq),
                ("t3", "api", "e0", fresh[1].seq),
            ]
            with pytest.raises(asyncpg.UniqueViolationError):  # the text key decides again
                await conn.execute("INSERT INTO event_keys VALUES ('t1', 'e0', 'web', 99, 1)")
            assert await conn.fetchval("SELECT to_regclass('events_pkey')") is not None
        finally:
            await conn.close()
        await asyncio.to_thread(command.upgrade, _config(url), "head")
