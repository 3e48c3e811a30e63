"""A big tenant's replay dry run answers with its counts even when counting its events in one
statement would outlive the store's statement timeout: it counts window by window of `seq`."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.errors import StoreUnavailable
from switchboard.hub import Hub
from switchboard.replay import Pace, ReplaySpec, Scanner, dry_run, dry_run_sql
from tests.conftest import fresh_database

pytestmark = pytest.mark.postgres

T = "t-big"
ROWS = 60_000  # every 10th belongs to another tenant
TIMEOUT = 0.1  # the lowered statement timeout, in seconds
# each window aims at a tenth of the timeout
PACE = Pace(first=500, least=100, seconds=TIMEOUT / 10)
ROUTE = {
    "name": "r-brl",
    "types": ["order.*"],
    # a numeric test on a JSON field: the slowest kind of condition per row
    "filter": {"data": {"currency": ["BRL"], "amount": [{"numeric": [">=", 100]}]}},
    "destination_ids": ["d-a", "d-b"],
}


def _tenant(g: int) -> str:
    return "t-other" if g % 10 == 0 else T


async def _load(url: str) -> None:
    """ROWS events inserted by the database itself (the same rows `_tenant` and `_matches`
    describe), so the test spends its time counting them, not sending them."""
    conn = await asyncpg.connect(url)
    try:
        received = now_us()
        await conn.execute(
            "INSERT INTO events (tenant_id, id, source, type, version, time_us, received_us, "
            "trace_id, status, context, data) "
            "SELECT CASE WHEN g % 10 = 0 THEN 't-other' ELSE 't-big' END, 'e' || g, 'shop', "
            "'order.placed', '1', $1::bigint - g, $1::bigint, 'tr' || g, 'accepted', '{}'::jsonb, "
            "jsonb_build_object('currency', CASE WHEN g % 3 = 0 THEN 'BRL' ELSE 'USD' END, "
            "'amount', g % 1000) FROM generate_series(1, $2) g",
            received,
            ROWS,
        )
        await conn.execute("ANALYZE events")
    finally:
        await conn.close()


def _matches(g: int) -> bool:
    return _tenant(g) == T and g % 3 == 0 and g % 1000 >= 100


async def test_a_dry_run_counts_past_the_statement_timeout(tmp_path: Path) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        seeding = Hub(Settings(database_url=url, run_worker=0))
        await seeding.open(worker=False)
        try:
            await _load(url)
            await seeding.deliveries.put_route(T, "r-brl", "r-brl", ROUTE, 1)
        finally:
            await seeding.close()

        hub = Hub(Settings(database_url=url, run_worker=0))
        hub.store.statement_timeout = TIMEOUT  # type: ignore[attr-defined]
        await hub.open(worker=False)
        try:
            spec = ReplaySpec(T, None, None, (), None, (), ())
            scanner = Scanner(hub, spec)
            await scanner.prepare()
            whole = dry_run_sql(scanner)
            assert whole is not None and not whole.empty
            # as one statement, the count does not finish within the timeout
            with pytest.raises(StoreUnavailable):
                await hub.store.fetch(whole.counts.sql, whole.counts.params)

            got = await dry_run(hub, spec, sample_size=3, pace=PACE)
            expected = sum(1 for g in range(1, ROWS + 1) if _matches(g))
            assert expected > 10_000
            assert (got["events"], got["deliveries"]) == (expected, 2 * expected)
            first = next(g for g in range(1, ROWS + 1) if _matches(g))
            assert [s["event_id"] for s in got["sample"]] == [f"e{first}"] * 2 + [
                f"e{next(g for g in range(first + 1, ROWS + 1) if _matches(g))}"
            ]
            # a real replay's total is counted the same way
            in_scope = sum(1 for g in range(1, ROWS + 1) if _tenant(g) == T)
            assert await scanner.count(PACE) == in_scope
        finally:
            await hub.close()
