"""The benchmark's durable floors do what their figures claim: the bare worker claims, sends and
records every delivery of a real queue, and the bare ingest server stores what it acknowledges."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from benchmarks import harness as h
from benchmarks.config import Config
from benchmarks.delivery import _queued
from benchmarks.events import document

from switchboard.config import Settings
from switchboard.store.backends import open_store
from tests.services import require_postgres


async def _outcomes(database_url: str) -> list[tuple[str, int, int]]:
    """(status, attempts, attempt rows) of every delivery in the store."""
    store = open_store(Settings.from_env({}, database_url=database_url))
    await store.open()
    try:
        rows = await store.fetch(  # type: ignore[attr-defined]
            "SELECT d.status, d.attempts, (SELECT count(*) FROM attempts a "
            "WHERE a.delivery_id = d.id AND a.ok) FROM deliveries d",
            (),
        )
    finally:
        await store.close()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.slow
def test_the_bare_worker_claims_sends_and_records_every_delivery(tmp_path: Path) -> None:
    cfg = Config(**{**Config.make(quick=True).__dict__, "deliveries": 40})
    with _queued(cfg, tmp_path, "sqlite", "floor", None) as (db, receiver):
        worker = h.run_module("benchmarks.bare_worker", db, "bench", "40", "8", timeout=120)
        stats = h.wait_count(receiver, 40, within=30)
        outcomes = asyncio.run(_outcomes(db))
    assert worker["recorded"] == 40 and worker["failures"] == 0
    assert stats["count"] == 40 and stats["repeats"] == 0
    assert sorted(set(outcomes)) == [("succeeded", 1, 1)] and len(outcomes) == 40


def test_the_bare_ingest_server_stores_what_it_acknowledges(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bare.db'}"
    h.provision(db)
    port = h.free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "benchmarks.bare_ingest", db, "bench", str(port)]
    with h.running("bare-ingest", argv, tmp_path, health=url + "/health"):
        for n in (1, 2, 2):  # the repeat is a duplicate: acknowledged, stored once
            status, body = h.http("POST", url + "/v1/events", document(f"e-{n}", n))
            assert status == 202, body
        batch = [document(f"e-{n}", n) for n in (3, 4)]
        assert h.http("POST", url + "/v1/events", batch) == (202, {"accepted": 2})
        assert h.http("GET", url + "/_count")[1]["events"] == 4


@pytest.mark.slow
def test_the_hub_ingest_figure_runs_and_checks_what_the_store_holds(tmp_path: Path) -> None:
    """The hub's ingest figure end to end (wrk, a real `switchboard serve`, the stored-event
    check through `/health/detailed`), short: a change to what that endpoint shows a key broke
    every ingest figure of `make bench` while the test suite stayed green."""
    from benchmarks.ingest import hub_ingest

    h.ensure_wrk()
    cfg = Config(**{**Config.make(quick=True).__dict__, "duration": 1, "connections": 8})
    result = hub_ingest(cfg, tmp_path, "sqlite", 0, 1)
    assert result["value"] > 0 and result["wrk"]["events"] > 0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_raw_insert_loads_rows_the_store_reads_back(tmp_path: Path, kind: str) -> None:
    # the batched-ingest ceiling and the scan/disk figures' loader use the store's own INSERT:
    # when that statement changes shape, the loader must change with it
    if kind == "postgres":
        require_postgres()
    with h.provisioned(kind, tmp_path, "raw") as (db, _):
        out = h.run_module("benchmarks.raw_insert", db, "bench", "2500", "1000", "raw", timeout=120)
        assert out["rows"] == 2500
        store = open_store(Settings.from_env({}, database_url=db))

        async def count() -> int:
            await store.open()
            try:
                rows = await store.fetch(
                    "SELECT count(*) FROM events WHERE tenant_id = 'bench'", ()
                )  # type: ignore[attr-defined]
            finally:
                await store.close()
            return int(rows[0][0])

        assert asyncio.run(count()) == 2500
