"""The replay dry run counts in SQL exactly what planning every event in Python counts.

Every case is checked against a reference computed the slow way — `Scanner.page` plus
`Scanner.deliveries` over every event in scope — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.config import Settings
from switchboard.envelope import Event
from switchboard.hub import Hub
from switchboard.replay import PACE, Pace, ReplaySpec, Scanner, dry_run, dry_run_sql
from tests.conftest import fresh_database

T = "t-dry"
OTHER = "t-other"
DAY = 86_400_000_000
T0 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z

TYPES = [
    "order.placed",
    "order.shipped",
    "user.signed_up",
    "billing.paid",
    "billing.refund_issued",
    "user.signedxup",  # `user.sign?d_up` matches it only if LIKE left the `_` unescaped
    "switchboard.delivery_dead",
    "switchboard.replay_done",
]
SOURCES = ["shop", "crm", "billing"]

# (id, spec) in creation order: "first route wins" follows it
ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("r-orders", {"types": ["order.*"], "destination_ids": ["d-a"]}),
    (
        "r-brl",
        {
            "types": ["order.placed", "billing.*"],
            "filter": {"data": {"currency": ["BRL"]}},
            "destination_ids": ["d-b"],
        },
    ),
    (
        "r-big",  # names d-a again (second route for it) and a second destination
        {
            "types": ["*"],
            "filter": {"data": {"amount": [{"numeric": [">=", 500]}]}},
            "destination_ids": ["d-a", "d-c"],
        },
    ),
    (
        "r-vip",
        {
            "types": ["*"],
            "sources": ["crm", "billing"],
            "filter": {
                "$or": [
                    {"data": {"email": [{"prefix": "vip"}]}},
                    {"data": {"tier": [{"anything-but": ["free", "basic"]}]}},
                ]
            },
            "destination_ids": ["d-d"],
        },
    ),
    (
        "r-region",
        {
            "types": ["user.sign?d_up", "user.signed_up"],
            "filter": {"context": {"region": [{"exists": True}]}},
            "destination_ids": ["d-c"],
        },
    ),
    (
        "r-untracked",
        {
            "types": ["order.shipped"],
            "filter": {"data": {"tracking": [{"exists": False}]}},
            "destination_ids": ["d-b"],
        },
    ),
    ("r-dead", {"types": ["switchboard.delivery_dead"], "destination_ids": ["d-ops"]}),
    (
        "r-ops",  # names an internal type, so its `billing.*` glob is not what lets them in
        {"types": ["billing.*", "switchboard.replay_*"], "destination_ids": ["d-ops"]},
    ),
    ("r-off", {"types": ["*"], "enabled": False, "destination_ids": ["d-e"]}),
    ("r-shop", {"types": ["*"], "sources": ["shop"], "destination_ids": ["d-shop"]}),
]


def _event(rng: random.Random, tenant: str, i: int) -> Event:
    type_ = TYPES[i % len(TYPES)] if i % 7 else rng.choice(TYPES)
    data: dict[str, Any] = {}
    if rng.random() < 0.8:
        data["amount"] = rng.choice([rng.randint(0, 1000), rng.random() * 1000, "900", None])
    if rng.random() < 0.7:
        data["currency"] = rng.choice(["BRL", "USD", "EUR", "brl", ["BRL", "USD"]])
    if rng.random() < 0.3:
        data["email"] = rng.choice(["vip@x.io", "vipper@y.io", "joe@x.io", "VIP@x.io"])
    if rng.random() < 0.4:
        data["tier"] = rng.choice(["free", "basic", "gold", 3, {"nested": 1}])
    if type_ == "order.shipped" and rng.random() < 0.5:
        data["tracking"] = rng.choice(["TRK1", None])
    context: dict[str, Any] = {}
    if rng.random() < 0.3:
        context["region"] = rng.choice(["eu", "us", None])
    roll = rng.random()
    if roll < 0.12:
        context["duplicate_of"] = f"evt-{rng.randint(0, i)}"
    elif roll < 0.16:
        context["duplicate_of"] = None  # present but null: still routed
    status = rng.choice(["accepted"] * 6 + ["warned", "quarantined"])
    return Event(
        tenant_id=tenant,
        id=f"evt-{i}",
        type=type_,
        version="1",
        time_us=T0 + rng.randint(0, 10 * DAY),
        received_us=T0 + 11 * DAY,
        source=rng.choice(SOURCES),
        subject=None,
        actor_id=None,
        actor_type=None,
        trace_id=f"tr-{i}",
        correlation_id=None,
        causation_id=None,
        context=context,
        data=data,
        status=status,
    )


async def _seed(hub: Hub) -> None:
    rng = random.Random(20250101)
    events = [_event(rng, T, i) for i in range(400)]
    events += [_event(rng, OTHER, i) for i in range(60)]
    for start in range(0, len(events), 100):
        await hub.store.append(events[start : start + 100])
    for n, (route_id, spec) in enumerate(ROUTES):
        await hub.deliveries.put_route(T, route_id, route_id, {"name": route_id, **spec}, n + 1)
    await hub.deliveries.put_route(
        OTHER, "r-other", "r-other", {"name": "r-other", "destination_ids": ["d-a"]}, 1
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    async with fresh_database(request.param, tmp_path) as url:
        h = Hub(Settings(database_url=url, run_worker=0))
        await h.open(worker=False)
        try:
            await _seed(h)
            yield h
        finally:
            await h.close()


async def _reference(hub: Hub, spec: ReplaySpec) -> tuple[int, int, list[dict[str, Any]]]:
    """(events, deliveries, every planned delivery in order) by planning each event."""
    scanner = Scanner(hub, spec)
    await scanner.prepare()
    events = 0
    planned: list[dict[str, Any]] = []
    after = 0
    while page := await scanner.page(after):
        for e in page:
            out = scanner.deliveries(e, None, 0)
            events += bool(out)
            planned += [
                {
                    "event_id": e.id,
                    "type": e.type,
                    "time": e.to_json()["time"],
                    "destination_id": d.destination_id,
                    "route_id": d.route_id,
                }
                for d in out
            ]
        after = page[-1].seq
    return events, len(planned), planned


def _spec(
    *,
    frm: int | None = None,
    to: int | None = None,
    types: tuple[str, ...] = (),
    pattern: dict[str, Any] | None = None,
    routes: tuple[str, ...] = (),
    dests: tuple[str, ...] = (),
    tenant: str = T,
) -> ReplaySpec:
    return ReplaySpec(tenant, frm, to, types, pattern, routes, dests)


SPECS: dict[str, ReplaySpec] = {
    "every enabled route": _spec(),
    "time range": _spec(frm=T0 + 2 * DAY, to=T0 + 7 * DAY),
    "from only": _spec(frm=T0 + 5 * DAY),
    "types glob": _spec(types=("order.*",)),
    "internal type": _spec(types=("switchboard.delivery_dead", "billing.paid")),
    "pattern": _spec(pattern={"data": {"currency": ["BRL", "USD"]}}),
    "pattern and types and time": _spec(
        frm=T0 + DAY,
        to=T0 + 9 * DAY,
        types=("billing.*", "order.placed"),
        pattern={"data": {"amount": [{"numeric": [">", 100]}]}},
    ),
    "one route": _spec(routes=("r-brl",)),
    "a disabled route": _spec(routes=("r-off",)),
    "routes sharing a destination": _spec(routes=("r-big", "r-orders")),
    "internal routes": _spec(routes=("r-dead", "r-ops")),
    "routes restricted to a destination": _spec(routes=("r-big", "r-orders"), dests=("d-a",)),
    "route with two destinations, one kept": _spec(routes=("r-big",), dests=("d-c",)),
    "routes and a destination none names": _spec(routes=("r-big",), dests=("d-zzz",)),
    "routes with a destination subset and a pattern": _spec(
        routes=("r-big", "r-region", "r-vip", "r-orders"),
        dests=("d-c", "d-d"),
        pattern={"data": {"amount": [{"exists": True}]}},
    ),
    "direct": _spec(dests=("d-x",)),
    "direct, two destinations, scoped": _spec(
        dests=("d-x", "d-y"), frm=T0 + 3 * DAY, types=("user.*", "switchboard.*")
    ),
    "direct, the same destination twice": _spec(dests=("d-x", "d-x"), types=("order.placed",)),
    "unknown route, no destination": _spec(routes=("r-nope",)),
    "unknown route, a destination: direct": _spec(routes=("r-nope",), dests=("d-x",)),
    "nothing in range": _spec(frm=T0 + 20 * DAY),
    "another tenant": _spec(tenant=OTHER),
}


# windows of 37 seq each: the 460 seeded events take 13 of them, most holding events of both
# tenants, so a count or a sample that crosses a window's edge wrongly shows
NARROW = Pace(first=37, least=37, most=37)


def _windowed(queries: list[str]) -> int:
    """The statements that read events, each bounded to a window of seq; how many there are."""
    reads = [q for q in queries if "FROM events" in q and not q.startswith("SELECT min(seq)")]
    assert all("e.seq > ? AND e.seq <= ?" in q for q in reads), reads
    return len(reads)


@pytest.mark.parametrize("pace", [PACE, NARROW], ids=["default pace", "narrow windows"])
@pytest.mark.parametrize("name", list(SPECS))
async def test_sql_dry_run_counts_what_python_plans(hub: Hub, name: str, pace: Pace) -> None:
    spec = SPECS[name]
    scanner = Scanner(hub, spec)
    await scanner.prepare()
    assert dry_run_sql(scanner) is not None  # the SQL path, not the Python fallback
    events, deliveries, planned = await _reference(hub, spec)
    queries: list[str] = []
    fetch = hub.store.fetch

    async def counting(sql: str, params: Any = ()) -> list[Any]:
        queries.append(sql)
        return await fetch(sql, params)

    hub.store.fetch = counting  # type: ignore[method-assign]
    try:
        got = await dry_run(hub, spec, pace=pace)
    finally:
        del hub.store.fetch
    assert (got["events"], got["deliveries"]) == (events, deliveries)
    reads = _windowed(queries)
    if pace == PACE:
        # the routes, the seq bounds, one aggregate and one page of matching events for the
        # sample: no full scan
        assert len(queries) <= 4, queries
    else:
        counts = [q for q in queries if q.startswith("SELECT count(*)")]
        assert len(counts) in (0, 13), counts  # 0: nothing can be delivered, nothing counted
        assert reads <= len(counts) + 13
    # the sample is the first planned deliveries, in seq order, as the full scan would give
    assert got["sample"] == planned[:10]
    everything = await dry_run(hub, spec, sample_size=10_000, pace=pace)
    assert everything["sample"] == planned


async def test_the_cases_are_not_trivial(hub: Hub) -> None:
    """Most cases match some events but not all, so a broken condition changes a count."""
    counts = {name: (await _reference(hub, spec))[:2] for name, spec in SPECS.items()}
    assert sum(1 for e, _ in counts.values() if e > 0) >= 17
    every = counts["every enabled route"]
    assert every[1] > every[0] > 0  # some events make several deliveries
    assert counts["a disabled route"] == (0, 0)
    assert counts["routes and a destination none names"] == (0, 0)


async def test_routes_sql_cannot_express_fall_back_to_python(hub: Hub) -> None:
    await hub.deliveries.put_route(
        T,
        "r-cidr",
        "r-cidr",
        {
            "name": "r-cidr",
            "types": ["*"],
            "filter": {"data": {"ip": [{"cidr": "10.0.0.0/8"}]}},
            "destination_ids": ["d-a"],
        },
        100,
    )
    await hub.deliveries.put_route(
        T,
        "r-class",
        "r-class",
        {"name": "r-class", "types": ["order.[ps]*"], "destination_ids": ["d-b"]},
        101,
    )
    for routes in (("r-cidr", "r-orders"), ("r-class",), ()):
        spec = _spec(routes=routes)
        scanner = Scanner(hub, spec)
        await scanner.prepare()
        assert dry_run_sql(scanner) is None
        events, deliveries, planned = await _reference(hub, spec)
        for pace in (PACE, NARROW):
            got = await dry_run(hub, spec, pace=pace)
            assert (got["events"], got["deliveries"], got["sample"]) == (
                events,
                deliveries,
                planned[:10],
            )
        assert events > 0


@pytest.mark.parametrize("name", ["every enabled route", "pattern and types and time"])
async def test_a_replays_total_is_counted_window_by_window(hub: Hub, name: str) -> None:
    """The count a replay starts with (`Scanner.count`) is the events in scope, however narrow
    the windows it is counted in."""
    spec = SPECS[name]
    scanner = Scanner(hub, spec)
    await scanner.prepare()
    in_scope = 0
    after = 0
    while page := await scanner.page(after):
        in_scope += len(page)
        after = page[-1].seq
    assert in_scope > 0
    assert await scanner.count(NARROW) == await scanner.count() == in_scope
