"""The Store contract: the same behaviour from the SQLite and the PostgreSQL store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

import asyncpg
import pytest
from msgspec import structs

from switchboard.config import Settings
from switchboard.envelope import Event
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.store import (
    ApiKey,
    Cursor,
    EventQuery,
    MetricRow,
    Store,
    StoredType,
    Tenant,
    migrate,
    queries,
)
from switchboard.store.deliveries import FINISH_DELIVERY, RECOVER_EXPIRED, claim_sql
from switchboard.store.postgres import PostgresStore, data_index_name

HOUR = 3_600_000_000
DAY = 24 * HOUR
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def ev(
    id: str,
    *,
    tenant: str = "acme",
    type: str = "lead.created",
    time_us: int = T0,
    received_us: int | None = None,
    source: str = "crm",
    subject: str | None = None,
    actor_id: str | None = None,
    trace_id: str = "trace-0",
    correlation_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    return Event(
        tenant_id=tenant,
        id=id,
        type=type,
        version="1",
        time_us=time_us,
        received_us=received_us if received_us is not None else time_us + 1,
        source=source,
        subject=subject,
        actor_id=actor_id,
        actor_type="user" if actor_id else None,
        trace_id=trace_id,
        correlation_id=correlation_id,
        causation_id=None,
        context={"ip": "10.0.0.1"},
        data=data if data is not None else {"n": id},
    )


async def ids(store: Store, tenant: str = "acme", **query: Any) -> list[str]:
    return [e.id for e in await store.list_events(tenant, EventQuery(**query))]


# -- append and idempotency ------------------------------------------------------------------


async def test_append_returns_accepted_with_increasing_seq(store: Store) -> None:
    first = await store.append([ev("a"), ev("b"), ev("c")])
    second = await store.append([ev("d")])
    results = first + second
    assert [r.status for r in results] == ["accepted"] * 4
    assert [r.id for r in results] == ["a", "b", "c", "d"]
    seqs = [r.seq for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert results[0].received_us == T0 + 1


async def test_append_of_nothing_returns_nothing(store: Store) -> None:
    assert await store.append([]) == []


async def test_repeated_id_is_duplicate_with_original_seq_and_received_at(store: Store) -> None:
    [original] = await store.append([ev("a", received_us=T0 + 5)])
    [again] = await store.append([ev("a", received_us=T0 + 999, data={"changed": True})])
    assert again.status == "duplicate"
    assert (again.seq, again.received_us) == (original.seq, T0 + 5)
    stored = await store.get_event("acme", "a", None)
    assert stored is not None and stored.data == {"n": "a"}  # the original is kept


async def test_same_id_in_another_source_or_tenant_is_accepted(store: Store) -> None:
    results = await store.append([ev("a"), ev("a", source="billing"), ev("a", tenant="other")])
    assert [r.status for r in results] == ["accepted"] * 3
    assert len({r.seq for r in results}) == 3


async def test_concurrent_appends_of_one_id_store_it_once(store: Store) -> None:
    results = await asyncio.gather(*(store.append([ev("same")]) for _ in range(50)))
    statuses = [r[0].status for r in results]
    assert statuses.count("accepted") == 1
    assert statuses.count("duplicate") == 49
    assert len({r[0].seq for r in results}) == 1
    assert await ids(store) == ["same"]


async def test_duplicate_within_one_append_first_occurrence_wins(store: Store) -> None:
    results = await store.append(
        [ev("a", received_us=T0 + 1), ev("b"), ev("a", received_us=T0 + 7), ev("a")]
    )
    assert [r.status for r in results] == ["accepted", "accepted", "duplicate", "duplicate"]
    assert results[2].seq == results[3].seq == results[0].seq
    assert results[2].received_us == T0 + 1
    assert sorted(await ids(store)) == ["a", "b"]


async def test_duplicate_of_a_stored_event_inside_a_batch(store: Store) -> None:
    [original] = await store.append([ev("a")])
    results = await store.append([ev("a"), ev("b"), ev("a")])
    assert [r.status for r in results] == ["duplicate", "accepted", "duplicate"]
    assert results[0].seq == results[2].seq == original.seq


async def test_group_commit_answers_each_caller_in_its_own_order(store: Store) -> None:
    batches = [[ev(f"c{c}-e{i}") for i in range(10)] for c in range(30)]
    results = await asyncio.gather(*(store.append(b) for b in batches))
    all_seqs: list[int] = []
    for batch, res in zip(batches, results, strict=True):
        assert [r.id for r in res] == [e.id for e in batch]
        assert {r.status for r in res} == {"accepted"}
        seqs = [r.seq for r in res]
        assert seqs == sorted(seqs)
        all_seqs += seqs
    assert len(set(all_seqs)) == 300
    assert len(await ids(store, limit=1000)) == 300


# -- reading events --------------------------------------------------------------------------


async def test_get_event_by_id_and_source(store: Store) -> None:
    await store.append([ev("a", data={"from": "crm"}), ev("a", source="app", data={"from": "app"})])
    by_source = await store.get_event("acme", "a", "crm")
    assert by_source is not None and by_source.data == {"from": "crm"}
    assert by_source.seq > 0 and by_source.context == {"ip": "10.0.0.1"}
    latest = await store.get_event("acme", "a", None)
    assert latest is not None and latest.source == "app"
    assert await store.get_event("acme", "a", "nowhere") is None
    assert await store.get_event("acme", "missing", None) is None


async def test_stored_event_round_trips(store: Store) -> None:
    original = ev(
        "a",
        subject="cust-1",
        actor_id="u-1",
        correlation_id="corr",
        data={"nested": {"list": [1, 2.5, None, "é"]}, "flag": True},
    )
    await store.append([original])
    stored = await store.get_event("acme", "a", "crm")
    assert stored is not None
    assert stored.seq > 0
    assert structs.replace(stored, seq=0) == original


async def test_list_events_newest_first_by_time_then_seq(store: Store) -> None:
    await store.append([ev("old", time_us=T0), ev("tie1", time_us=T0 + 10)])
    await store.append([ev("tie2", time_us=T0 + 10), ev("new", time_us=T0 + 20)])
    assert await ids(store) == ["new", "tie2", "tie1", "old"]


async def test_list_events_filters(store: Store) -> None:
    await store.append(
        [
            ev("1", type="billing.paid", subject="s1", actor_id="u1", trace_id="t1"),
            ev("2", type="billing.refunded", time_us=T0 + HOUR, correlation_id="c1"),
            ev("3", type="lead.created", source="site", subject="s1", time_us=T0 + 2 * HOUR),
            ev("4", type="billing_x.paid", time_us=T0 + 3 * HOUR),
            ev("5", type="lead.created", actor_id="u1", time_us=T0 + 4 * HOUR),
        ]
    )
    assert await ids(store, types=("lead.created",)) == ["5", "3"]
    assert await ids(store, types=("billing.*",)) == ["2", "1"]  # "_" is not a wildcard
    assert await ids(store, types=("billing.*", "lead.created")) == ["5", "3", "2", "1"]
    assert await ids(store, source="site") == ["3"]
    assert await ids(store, subject="s1") == ["3", "1"]
    assert await ids(store, actor_id="u1") == ["5", "1"]
    assert await ids(store, trace_id="t1") == ["1"]
    assert await ids(store, correlation_id="c1") == ["2"]
    assert await ids(store, from_us=T0 + HOUR, to_us=T0 + 3 * HOUR) == ["3", "2"]
    assert await ids(store, from_us=T0 + 4 * HOUR) == ["5"]
    assert await ids(store, status="accepted", limit=2) == ["5", "4"]
    assert await ids(store, status="quarantined") == []
    assert await ids(store, types=("lead.created",), subject="s1") == ["3"]


async def test_cursor_pages_cover_every_event_once(store: Store) -> None:
    # groups of three share a timestamp, so pages split ties and must order them by seq
    await store.append([ev(f"e{i:02}", time_us=T0 + (i // 3) * 1000) for i in range(30)])
    everything = await ids(store, limit=100)
    seen: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page = await store.list_events("acme", EventQuery(limit=7, cursor=cursor))
        pages += 1
        seen += [e.id for e in page]
        if len(page) < 7:
            break
        cursor = Cursor(page[-1].time_us, page[-1].seq)
        cursor = Cursor.decode(cursor.encode())
    assert pages == 5
    assert seen == everything and len(set(seen)) == 30


async def test_tenants_never_see_each_others_events(store: Store) -> None:
    await store.append([ev("a", tenant="A", type="x.y", trace_id="t", subject="s")])
    [b] = await store.append([ev("b", tenant="B")])
    assert await ids(store, tenant="B") == ["b"]
    for query in (
        EventQuery(),
        EventQuery(types=("x.*",)),
        EventQuery(trace_id="t"),
        EventQuery(subject="s"),
        EventQuery(cursor=Cursor(T0 + 10**9, 10**9)),
    ):
        assert "a" not in [e.id for e in await store.list_events("B", query)]
    assert await store.get_event("B", "a", None) is None
    assert await store.get_event("B", "a", "crm") is None
    rows = await store.metrics("B", HOUR, T0 - DAY, T0 + DAY)
    assert rows == [MetricRow(T0, "lead.created", "accepted", 1)]
    # a status change addressed to another tenant's seq changes nothing
    await store.set_event_status("A", b.seq, "quarantined", [], None)
    stored = await store.get_event("B", "b", None)
    assert stored is not None and stored.status == "accepted"


async def test_metrics_by_hour_and_by_day(store: Store) -> None:
    await store.append(
        [
            ev("1", type="a.x", time_us=T0 + 5),
            ev("2", type="a.x", time_us=T0 + 10),
            ev("3", type="b.x", time_us=T0 + 20),
            ev("4", type="a.x", time_us=T0 + HOUR + 1),
            ev("5", type="a.x", time_us=T0 + DAY + 1),  # outside the range
        ]
    )
    [r3] = await store.append([ev("6", type="a.x", time_us=T0 + 2 * HOUR)])
    await store.set_event_status(
        "acme", r3.seq, "quarantined", [{"path": "/", "message": "x"}], None
    )
    by_hour = await store.metrics("acme", HOUR, T0, T0 + DAY)
    assert by_hour == [
        MetricRow(T0, "a.x", "accepted", 2),
        MetricRow(T0, "b.x", "accepted", 1),
        MetricRow(T0 + HOUR, "a.x", "accepted", 1),
        MetricRow(T0 + 2 * HOUR, "a.x", "quarantined", 1),
    ]
    by_day = await store.metrics("acme", DAY, T0, T0 + 2 * DAY)
    assert by_day == [
        MetricRow(T0, "a.x", "accepted", 3),
        MetricRow(T0, "a.x", "quarantined", 1),
        MetricRow(T0, "b.x", "accepted", 1),
        MetricRow(T0 + DAY, "a.x", "accepted", 1),
    ]


async def test_set_event_status(store: Store) -> None:
    [r] = await store.append([ev("a")])
    errors = [{"path": "/data/email", "message": "is required"}]
    await store.set_event_status("acme", r.seq, "quarantined", errors, "2")
    stored = await store.get_event("acme", "a", None)
    assert stored is not None
    assert (stored.status, stored.errors, stored.version) == ("quarantined", errors, "2")
    assert await ids(store, status="quarantined") == ["a"]
    await store.set_event_status("acme", r.seq, "accepted", [], "2")
    stored = await store.get_event("acme", "a", None)
    assert stored is not None and (stored.status, stored.errors) == ("accepted", [])


# -- tenants and keys ------------------------------------------------------------------------


async def test_tenants(store: Store) -> None:
    acme = await store.create_tenant(Tenant("acme", "Acme", created_us=T0))
    await store.create_tenant(Tenant("beta", "Beta", unknown_types="accept", created_us=T0))
    with pytest.raises(StoreError, match="already exists"):
        await store.create_tenant(Tenant("acme", "Again", created_us=T0))
    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant("nope") is None
    assert [t.id for t in await store.list_tenants()] == ["acme", "beta"]
    await store.set_unknown_types("acme", "accept")
    tenant = await store.get_tenant("acme")
    assert tenant is not None and tenant.unknown_types == "accept"


def key(id: str, tenant: str | None, prefix: str, created: int) -> ApiKey:
    return ApiKey(
        id=id,
        tenant_id=tenant,
        name=f"key {id}",
        prefix=prefix,
        hash="h" + id,
        scopes=("ingest", "read"),
        created_us=created,
        source="crm" if tenant else None,
    )


async def test_keys(store: Store) -> None:
    await store.create_tenant(Tenant("acme", "Acme", created_us=T0))
    await store.create_tenant(Tenant("beta", "Beta", created_us=T0))
    k1, k2 = key("k1", "acme", "sb_aaaa", T0), key("k2", "acme", "sb_bbbb", T0 + 1)
    k3, admin = key("k3", "beta", "sb_aaaa", T0 + 2), key("ka", None, "sb_admn", T0 + 3)
    for k in (k1, k2, k3, admin):
        await store.create_key(k)
    assert sorted(k.id for k in await store.keys_by_prefix("sb_aaaa")) == ["k1", "k3"]
    assert await store.keys_by_prefix("sb_admn") == [admin]
    assert await store.keys_by_prefix("sb_none") == []
    assert [k.id for k in await store.list_keys("acme")] == ["k1", "k2"]
    assert [k.id for k in await store.list_keys(None)] == ["k1", "k2", "k3", "ka"]
    assert not await store.revoke_key("beta", "k1", T0 + 10)  # another tenant's key
    assert await store.revoke_key("acme", "k1", T0 + 10)
    assert not await store.revoke_key("acme", "k1", T0 + 11)  # already revoked
    assert await store.revoke_key(None, "k3", T0 + 12)  # admins revoke anywhere
    [stored] = await store.keys_by_prefix("sb_bbbb")
    assert stored == k2 and stored.revoked_us is None
    revoked = {k.id: k.revoked_us for k in await store.list_keys(None)}
    assert revoked == {"k1": T0 + 10, "k2": None, "k3": T0 + 12, "ka": None}


# -- catalog and idempotency keys ------------------------------------------------------------


async def test_catalog_types(store: Store) -> None:
    spec = {"name": "lead.created", "versions": {"1": {"type": "object"}}, "pii": ["email"]}
    shared = StoredType("*", "lead.created", "core", spec, T0)
    own = StoredType("acme", "clinic.visit", "clinic", {"name": "clinic.visit"}, T0)
    other = StoredType("beta", "beta.only", "beta", {"name": "beta.only"}, T0)
    for t in (shared, own, other):
        await store.put_type(t)
    assert await store.get_type("*", "lead.created") == shared
    assert await store.get_type("acme", "lead.created") is None
    listed = await store.list_types(("acme", "*"))
    assert [(t.scope, t.name) for t in listed] == [("acme", "clinic.visit"), ("*", "lead.created")]
    changed = StoredType("*", "lead.created", "core2", {**spec, "owner": "sales"}, T0 + 1)
    await store.put_type(changed)
    assert await store.get_type("*", "lead.created") == changed
    assert len(await store.list_types(("*",))) == 1
    assert await store.list_types(()) == []


async def test_idempotency_keys(store: Store) -> None:
    assert await store.get_idempotent("acme", "k", T0) is None
    await store.put_idempotent("acme", "k", 202, b'{"ok":true}', T0 + 100, "ab" * 32)
    assert await store.get_idempotent("acme", "k", T0) == (202, b'{"ok":true}', "ab" * 32)
    assert await store.get_idempotent("beta", "k", T0) is None
    assert await store.get_idempotent("acme", "k", T0 + 100) is None  # expired
    await store.put_idempotent("acme", "k", 207, b"\x00\xff", T0 + 500, "cd" * 32)
    assert await store.get_idempotent("acme", "k", T0 + 100) == (207, b"\x00\xff", "cd" * 32)


async def test_health_reports_the_head_revision(store: Store) -> None:
    await store.create_tenant(Tenant("acme", "Acme", created_us=T0))
    await store.append([ev("a"), ev("b")])
    health = await store.health()
    assert health.ok and health.error is None
    assert health.backend == store.backend
    assert health.revision == health.head == migrate.head()
    assert health.counts["tenants"] == 1
    assert health.counts["events"] == 2


async def test_ensure_data_index_validates_or_declines(store: Store) -> None:
    result = await store.ensure_data_index("campaign_id")
    assert result is (store.backend == "postgres")


# -- PostgreSQL only -------------------------------------------------------------------------


pg = pytest.mark.postgres


@pg
async def test_two_processes_appending_the_same_ids_store_each_once(pg_url: str) -> None:
    one = PostgresStore(Settings(database_url=pg_url, db_pool_size=3))
    two = PostgresStore(Settings(database_url=pg_url, db_pool_size=3))
    await one.open()
    await two.open()
    try:
        names = [f"e{i}" for i in range(40)]

        async def caller(store: PostgresStore, seed: int) -> list[str]:
            # different orders in the two pools provoke lock-order conflicts (deadlocks)
            order = names[:]
            random.Random(seed).shuffle(order)
            out: list[str] = []
            for chunk in range(0, 40, 8):
                res = await store.append([ev(i) for i in order[chunk : chunk + 8]])
                out += [r.id for r in res if r.status == "accepted"]
            return out

        results = await asyncio.gather(*(caller(s, seed) for seed in range(6) for s in (one, two)))
        accepted = [i for r in results for i in r]
        assert sorted(accepted) == sorted(names)  # each id accepted exactly once
        assert sorted(await ids(one, limit=1000)) == sorted(names)
    finally:
        await one.close()
        await two.close()


@pg
async def test_ensure_data_index_creates_an_expression_index(pg_url: str) -> None:
    store = PostgresStore(Settings(database_url=pg_url))
    await store.open()
    try:
        assert await store.ensure_data_index("utm.campaign_id")
        assert await store.ensure_data_index("utm.campaign_id")  # idempotent
        for bad in ("", "a..b", "a;drop table events", "a.b'c", "ção"):
            with pytest.raises(StoreError):
                await store.ensure_data_index(bad)
        conn = await asyncpg.connect(pg_url)
        try:
            definition = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'events' AND indexname = $1",
                data_index_name("utm.campaign_id"),
            )
        finally:
            await conn.close()
        assert definition is not None
        assert "(data #>> '{utm,campaign_id}'::text[])" in definition
        assert "tenant_id" in definition
    finally:
        await store.close()


async def _cut_connections(url: str) -> int:
    """Terminate every server connection to the test database, as a restart would."""
    conn = await asyncpg.connect(url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return killed
    finally:
        await conn.close()


@pg
async def test_store_recovers_after_its_connections_are_cut(pg_url: str) -> None:
    store = PostgresStore(Settings(database_url=pg_url, db_pool_size=3))
    await store.open()
    try:
        await store.append([ev("before")])
        assert await _cut_connections(pg_url) >= 1
        # a write on a stale connection is retried once on a fresh one (nothing was sent yet)
        [after] = await store.append([ev("after")])
        assert after.status == "accepted"
        assert await _cut_connections(pg_url) >= 1
        # reads retry once on a fresh connection
        assert await ids(store) == ["after", "before"]
        assert (await store.health()).ok
    finally:
        await store.close()


@pg
async def test_unreachable_database_raises_store_unavailable(pg_url: str) -> None:
    store = PostgresStore(Settings(database_url=pg_url, db_pool_size=2))
    await store.open()
    try:
        await store.append([ev("a")])
        # the server "goes away": new connections are refused (a closed port), old ones cut
        store._pool.set_connect_args("postgresql://postgres@127.0.0.1:9/none")
        await _cut_connections(pg_url)
        with pytest.raises(StoreUnavailable):
            await store.append([ev("b")])
        with pytest.raises(StoreUnavailable):
            await store.get_event("acme", "a", None)
        health = await store.health()
        assert not health.ok and health.error
    finally:
        await store.close()


@pg
async def test_one_bad_event_does_not_fail_the_callers_sharing_its_commit(pg_url: str) -> None:
    store = PostgresStore(Settings(database_url=pg_url))
    await store.open()
    try:
        good = [store.append([ev(f"g{i}")]) for i in range(5)]
        bad = store.append([ev("bad", data={"text": "nul \x00 inside"})])
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        assert isinstance(results[-1], StoreError)
        assert all(isinstance(r, list) and r[0].status == "accepted" for r in results[:-1])
        [later] = await store.append([ev("later")])  # the committer is still alive
        assert later.status == "accepted"
    finally:
        await store.close()


@pg
async def test_a_commit_that_loses_a_deadlock_is_retried(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real deadlocks between two hub processes are timing-dependent; inject one instead.
    store = PostgresStore(Settings(database_url=pg_url))
    real = PostgresStore._write_batch
    calls = 0

    async def lose_once(self: PostgresStore, events: list[Event], planned: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            cause = asyncpg.DeadlockDetectedError("deadlock detected")
            raise StoreError("PostgreSQL: deadlock detected") from cause
        return await real(self, events, planned)

    monkeypatch.setattr(PostgresStore, "_write_batch", lose_once)
    await store.open()
    try:
        [result] = await store.append([ev("a")])
        assert result.status == "accepted" and calls == 2
    finally:
        await store.close()


@pg
async def test_committed_deliveries_notify_listeners(pg_url: str) -> None:
    from switchboard.records import NewDelivery

    store = PostgresStore(Settings(database_url=pg_url))
    await store.open()
    woke = asyncio.Event()
    listener = asyncio.create_task(store.listen(woke.set))
    try:
        await asyncio.wait_for(woke.wait(), 10)  # the listener wakes once when it connects
        woke.clear()
        plan = [NewDelivery("acme", 0, "dst_x", None, 1, None, 0)]
        await store.append([ev("n1")], [plan])
        await asyncio.wait_for(woke.wait(), 10)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await store.close()


def _plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, nested ones included."""
    nodes: list[dict[str, Any]] = []
    if isinstance(plan, dict):
        if "Node Type" in plan:
            nodes.append(plan)
        for value in plan.values():
            nodes += _plan_nodes(value)
    elif isinstance(plan, list):
        for value in plan:
            nodes += _plan_nodes(value)
    return nodes


def _index_names(plan: Any) -> set[str]:
    """Every index the plan reads."""
    return {n["Index Name"] for n in _plan_nodes(plan) if "Index Name" in n}


def _scanned_tables(plan: Any) -> set[str]:
    """Every table the plan reads whole (a sequential scan)."""
    return {n["Relation Name"] for n in _plan_nodes(plan) if n["Node Type"] == "Seq Scan"}


@pg
async def test_finishing_a_delivery_reads_it_by_key_however_many_are_in_flight(
    pg_url: str,
) -> None:
    """With statistics taken while nothing was in flight (a fresh backlog), a thousand deliveries
    are then claimed. Finishing one must read it by its primary key: under the old
    index (partial on status = 'sending'), the planner walked every delivery in flight instead,
    on each of them. Lease recovery still reads the index of leases."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO deliveries (id, tenant_id, event_seq, destination_id, status, priority,"
            " next_attempt_us, created_us, updated_us)"
            " SELECT 'd' || n, 'acme', n, 'dst', 'pending', 1, n, n, n"
            " FROM generate_series(1, 2000) AS n"
        )
        await conn.execute("ANALYZE deliveries")
        await conn.execute(
            "UPDATE deliveries SET status = 'sending', lease_until_us = 99 WHERE event_seq <= 1000"
        )

        async def indexes(sql: str, *params: Any) -> set[str]:
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + queries.render(sql), *params)
            return _index_names(json.loads(plan))

        finish = (FINISH_DELIVERY, "succeeded", 1, 5, None, None, 5, "d10")
        assert await indexes(*finish) == {"deliveries_pkey"}
        assert await indexes(RECOVER_EXPIRED, 5, 5, 5) == {"ix_deliveries_lease"}
    finally:
        await conn.close()


@pg
async def test_a_claims_generic_plan_reads_no_table_whole(pg_url: str) -> None:
    """asyncpg prepares the claim, and after a few runs PostgreSQL may keep a generic plan, made
    without the LIMIT's value. Written as `id IN (SELECT …)`, that plan hash-joined the picked
    ids with a scan of every delivery, and the claimed rows with a scan of every event: 17 ms
    for 192 deliveries of 20,000 here, against 3 ms by the keys."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO events (seq, tenant_id, id, source, type, time_us, received_us,"
            " trace_id, status, context, data)"
            " SELECT n, 'acme', 'e' || n, 'api', 'a.b', n, n, 't' || n, 'accepted', '{}', '{}'"
            " FROM generate_series(1, 5000) AS n"
        )
        await conn.execute(
            "INSERT INTO deliveries (id, tenant_id, event_seq, destination_id, status, priority,"
            " next_attempt_us, created_us, updated_us)"
            " SELECT 'd' || n, 'acme', n, 'dst', 'pending', 1, n, n, n"
            " FROM generate_series(1, 5000) AS n"
        )
        await conn.execute("ANALYZE")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        for skipped in (0, 2):
            sql = queries.render(claim_sql(True, skipped))
            params = (9, 9, "acme", 10**12, *["x"] * skipped, 192)
            tx = conn.transaction()  # EXPLAIN ANALYZE runs the claim: roll it back after
            await tx.start()
            try:
                plan = json.loads(
                    await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *params)
                )
            finally:
                await tx.rollback()
            assert plan[0]["Plan"]["Actual Rows"] == 192
            # the months of the partitioned events table created ahead have no page to read
            empty = {
                r[0]
                for r in await conn.fetch(
                    "SELECT relname FROM pg_class WHERE relkind = 'r' AND pg_relation_size(oid) = 0"
                )
            }
            assert _scanned_tables(plan) - empty == set(), (skipped, plan)
    finally:
        await conn.close()
