"""/metrics adds up several real processes: two API processes and a worker on one PostgreSQL
database, sharing PROMETHEUS_MULTIPROC_DIR, scraped through one of them while events flow."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import Client, Cluster, HubProcess, Receiver, event, wait_until

TOKEN = "scrape-token-for-the-acceptance-test"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _process(cluster: Cluster, role: str, shared: Path, **settings: object) -> HubProcess:
    env = cluster.env(metrics_token=TOKEN, heartbeat_seconds=0.5, **settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    process = HubProcess(role, env, cluster.tmp / f"{role}-{len(cluster.processes)}.log")
    cluster.processes.append(process)
    return process.start()


async def _scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(
        url + "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=15),
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_counters_of_every_process_add_up_in_one_scrape(
    pg_cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver, tmp_path: Path
) -> None:
    cluster = pg_cluster
    shared = tmp_path / "prometheus"
    shared.mkdir()
    first = await _process(cluster, "serve", shared, run_worker=0).ready()
    second = await _process(cluster, "serve", shared, run_worker=0).ready()
    a, b = Client(http, first.url, cluster.key), Client(http, second.url, cluster.key)
    await a.webhook(receiver)
    await a.ok("POST", "/v1/events", [event(f"a{i}", i) for i in range(30)])
    await b.ok("POST", "/v1/events", [event(f"b{i}", i) for i in range(20)])
    await b.ok("POST", "/v1/events", [event("a0")])  # sent to the other process: a duplicate
    await _process(cluster, "worker", shared).ready()

    async def delivered() -> bool:
        return len(receiver.accepted()) == 50

    await wait_until(delivered, 60, "50 deliveries at the receiver")

    def ingested(s: Samples, outcome: str) -> float:
        labels = frozenset({("outcome", outcome), ("type", "other")})
        return s.get(("switchboard_ingest_events_total", labels), 0.0)

    async def counted() -> Samples | None:
        s = await _scrape(http, second.url)
        succeeded = (
            "switchboard_deliveries_total",
            frozenset({("status", "succeeded"), ("channel", "webhook")}),
        )
        # the worker counts an attempt before its write commits: wait for the 50th
        alive = s.get(("switchboard_workers_alive", frozenset()))
        return s if s.get(succeeded) == 50 and alive == 1 else None

    samples = await wait_until(counted, 30, "the worker's counts and heartbeat in the scrape")
    assert ingested(samples, "accepted") == 50  # 30 through one API process, 20 the other
    assert ingested(samples, "duplicate") == 1
    assert samples["switchboard_backlog_due_deliveries", frozenset()] == 0
    # the first process answers the same sums: the counts live in the shared folder
    again = await _scrape(http, first.url)
    assert ingested(again, "accepted") == 50
