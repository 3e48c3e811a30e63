"""Fault tests: kill the hub's processes, break its receivers and its database, storm it with
duplicates, and check the promises of DESIGN.md still hold — an acknowledged event is stored
exactly once, every delivery ends `succeeded` or `dead` (and then in the DLQ), repeats carry the
same webhook-id, and a lost database is a 503 rather than a 500 or a hang.

Each test runs the real `switchboard serve` / `switchboard worker` as subprocesses on 127.0.0.1,
is bounded in time and stops by itself. docs/reliability.md says what each one proves.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from typing import Any

import aiohttp
import pytest

from tests.acceptance.conftest import (
    Client,
    Cluster,
    Receiver,
    TcpProxy,
    event,
    wait_until,
)

pytestmark = pytest.mark.fault


async def _post_until_acked(
    client: Client, batch: list[dict[str, Any]], deadline: float
) -> list[dict[str, Any]]:
    """POST one batch until the hub acknowledges it (202), as a careful client does: a refused
    connection, a reset, a timeout or a 503 only mean "not acknowledged yet"."""
    while True:
        try:
            status, body = await client.call("POST", "/v1/events", batch)
        except (aiohttp.ClientError, TimeoutError):
            status, body = 0, None
        if status == 202:
            results: list[dict[str, Any]] = body["results"]
            return results
        assert status in (0, 503), f"ingest answered {status}: {body}"
        assert time.monotonic() < deadline, "a batch was never acknowledged"
        await asyncio.sleep(0.05)


# -- 1. the API process is SIGKILLed under load -------------------------------------------------


async def test_every_acknowledged_event_is_stored_once_across_api_sigkills(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    api = await cluster.spawn("serve", run_worker=0).ready()
    client = Client(http, api.url, cluster.key, timeout=10)
    acked: set[str] = set()
    outcomes: dict[str, int] = defaultdict(int)
    stop = asyncio.Event()
    hard_deadline = time.monotonic() + 50

    async def sender(n: int) -> None:
        batch_no = 0
        while not stop.is_set():
            ids = [f"s{n}-b{batch_no}-e{i}" for i in range(5)]
            batch_no += 1
            results = await _post_until_acked(
                client, [event(i, batch_no) for i in ids], hard_deadline
            )
            bad = [r for r in results if r["status"] not in ("accepted", "duplicate")]
            assert bad == [], bad
            for r in results:
                outcomes[r["status"]] += 1
            acked.update(ids)

    senders = [asyncio.create_task(sender(n)) for n in range(8)]
    try:
        rng = random.Random(1)
        for _ in range(5):
            # let traffic flow into the fresh process, then kill it at a random moment
            async def progressed(before: int = len(acked)) -> bool:
                return len(acked) > before + 20

            await wait_until(progressed, 20, "acknowledgements from the fresh API", every=0.02)
            await asyncio.sleep(rng.uniform(0.1, 1.0))  # chaos timing, not correctness
            api.kill()
            api.start()
            await api.ready()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*senders), 30)
    finally:
        stop.set()
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
    api.kill()  # the last acknowledgements are followed by a kill too

    rows = await cluster.query(
        "SELECT source, id, count(*) FROM events WHERE tenant_id = ? GROUP BY source, id",
        cluster.tenant,
    )
    stored = {(source, ident): int(n) for source, ident, n in rows}
    assert api.starts == 6
    assert len(acked) > 200, "too little traffic to prove anything"
    missing = sorted(i for i in acked if ("default", i) not in stored)
    assert missing == [], f"{len(missing)} acknowledged events were lost: {missing[:10]}"
    twice = {k: n for k, n in stored.items() if n != 1}
    assert twice == {}, f"events stored more than once: {list(twice.items())[:10]}"
    # every batch was retried until acknowledged, so nothing unacknowledged stays stored
    assert {ident for _, ident in stored} == acked
    print("results:", dict(outcomes), "acknowledged:", len(acked))


# -- 2. the worker is SIGKILLed mid-delivery ----------------------------------------------------


@pytest.mark.postgres
async def test_deliveries_survive_worker_sigkill_with_one_webhook_id_each(
    pg_cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    cluster = pg_cluster
    events = 120
    receiver.hold = 0.4  # long enough that a kill lands while requests are held
    api = await cluster.spawn("serve", run_worker=0).ready()
    client = Client(http, api.url, cluster.key)
    await client.webhook(receiver, timeout=5, concurrency=10, retry_schedule="0,1s,1s,2s,2s,5s")
    for start in range(0, events, 40):
        batch = [event(f"w{i}", i) for i in range(start, start + 40)]
        results = (await client.ok("POST", "/v1/events", batch))["results"]
        assert {r["status"] for r in results} == {"accepted"}

    # a worker that claims no more than it sends at once, so every claim is in flight
    worker_settings = {"lease_seconds": 2, "worker_concurrency": 10}
    worker = await cluster.spawn("worker", **worker_settings).ready()
    kills = 3
    for _ in range(kills):
        seen = len(receiver.hits)

        async def mid_flight(seen: int = seen) -> bool:
            return receiver.in_flight > 0 and len(receiver.hits) > seen

        await wait_until(mid_flight, 20, "a delivery in flight", every=0.01)
        worker.kill()
        worker.start()
        await worker.ready()

    async def all_succeeded() -> bool:
        return await cluster.delivery_statuses() == {"succeeded": events}

    await wait_until(all_succeeded, 45, f"{events} succeeded deliveries")
    worker.kill()

    delivery_ids = {d["id"] for d in await client.deliveries("succeeded")}
    assert len(delivery_ids) == events
    by_event: dict[str, set[str]] = defaultdict(set)
    per_delivery: dict[str, int] = defaultdict(int)
    for hit in receiver.hits:
        by_event[hit.event_id].add(hit.webhook_id)
        per_delivery[hit.webhook_id] += 1
    assert len(by_event) == events
    assert {e: ids for e, ids in by_event.items() if len(ids) != 1} == {}, "webhook-id changed"
    assert set(per_delivery) == delivery_ids
    assert receiver.accepted() == delivery_ids
    # each kill left at least one request unanswered, and its delivery was sent again
    repeats = sum(n - 1 for n in per_delivery.values())
    assert repeats >= kills, per_delivery


# -- 3. a flaky receiver that also goes down ------------------------------------------------------


async def _send(client: Client, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    results = (await client.ok("POST", "/v1/events", [event(i) for i in ids]))["results"]
    assert {r["status"] for r in results} == {"accepted"}
    return ids


async def _deliveries_of(client: Client, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for ident in ids:
        out += (await client.ok("GET", f"/v1/events/{ident}/deliveries"))["data"]
    return out


async def _settled(cluster: Cluster, total: int) -> dict[str, int]:
    """Statuses once every delivery is final (no pending, retrying or sending left)."""

    async def final() -> dict[str, int] | None:
        statuses = await cluster.delivery_statuses()
        if sum(statuses.values()) == total and set(statuses) <= {"succeeded", "dead"}:
            return statuses
        return None

    return await wait_until(final, 50, f"{total} deliveries to settle")


async def _warm_up(client: Client, cluster: Cluster) -> list[str]:
    """Successful deliveries before the faults. The destination's circuit breaker opens when
    half of its recent calls fail (and then holds deliveries back for 30 s); a record of
    successes keeps it closed, so these tests measure retries, not the breaker. Two batches,
    one after the other: the concurrent first sends to a destination can each build their own
    breaker (a race in `Worker._destination`), so only the second batch is sure to land in
    the breaker the worker keeps."""
    ids = await _send(client, "warm", 15)
    await _settled(cluster, 15)
    ids += await _send(client, "warm-", 15)
    await _settled(cluster, 30)
    return ids


async def _outage(client: Client, receiver: Receiver, prefix: str, attempts: int) -> list[str]:
    """Take the receiver down, send a few events, and keep it down until each of them has
    failed `attempts` times."""
    await receiver.go_down()
    ids = await _send(client, prefix, 4)

    async def failed_enough() -> bool:
        return all(d["attempts"] >= attempts for d in await _deliveries_of(client, ids))

    await wait_until(failed_enough, 20, f"{attempts} failed attempts during the outage")
    await receiver.come_up()
    return ids


async def test_flaky_and_down_receiver_gets_everything_after_retries(
    cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await cluster.spawn("serve", run_worker=1).ready()
    client = Client(http, api.url, cluster.key)
    # ten attempts over about 12 s: enough for 30 % failures and the outage below
    await client.webhook(
        receiver, timeout=2, concurrency=50, retry_schedule="0,0.5s,0.5s,1s,1s,1s,2s,2s,2s,2s"
    )
    warm = await _warm_up(client, cluster)
    receiver.fail_ratio = 0.3
    flaky = await _send(client, "flaky", 60)
    await _settled(cluster, 30 + 60)
    down = await _outage(client, receiver, "down", attempts=2)
    statuses = await _settled(cluster, 30 + 60 + 4)

    assert statuses == {"succeeded": 94}
    assert len(receiver.accepted()) == 94
    assert await client.deliveries("dead") == []
    flaky_failures = sum(1 for h in receiver.hits if h.status == 503 and h.event_id in flaky)
    assert flaky_failures >= 5, "the receiver did not fail often enough to test retries"
    assert all(d["attempts"] >= 3 for d in await _deliveries_of(client, down))
    assert all(d["attempts"] == 1 for d in await _deliveries_of(client, warm))


async def test_exhausted_retries_end_dead_and_listed_in_the_dlq(
    cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await cluster.spawn("serve", run_worker=1).ready()
    client = Client(http, api.url, cluster.key)
    # two attempts half a second apart: too short for the outage below
    await client.webhook(receiver, timeout=2, concurrency=50, retry_schedule="0,0.5s")
    await _warm_up(client, cluster)
    down = await _outage(client, receiver, "down", attempts=2)
    receiver.fail_ratio = 0.3
    await _send(client, "flaky", 30)
    statuses = await _settled(cluster, 30 + 4 + 30)

    dead = await client.deliveries("dead")
    dead_ids = {d["id"] for d in dead}
    assert statuses.get("dead", 0) == len(dead) >= 4
    assert {d["event"]["id"] for d in dead} >= set(down)
    assert all(d["attempts"] == 2 and d["status"] == "dead" for d in dead)
    assert dead_ids.isdisjoint(receiver.accepted()), "a delivery the receiver took is dead"
    succeeded = {d["id"] for d in await client.deliveries("succeeded")}
    assert succeeded == receiver.accepted()
    assert len(succeeded) + len(dead_ids) == 64


# -- 4. the database connection is cut and restored ----------------------------------------------


async def _database_outage(
    cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver, fault: str
) -> None:
    """Run the hub through a proxy to PostgreSQL, break the proxy for a few seconds while
    sending events, heal it, and check ingest and deliveries resume in the same process."""
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        host, name = cluster.database_url.rsplit("/", 1)
        via_proxy = f"{host.rsplit(':', 1)[0]}:{proxy.port}/{name}"
        # A claim the database ran but whose answer the cut lost leaves its deliveries
        # `sending` until their lease expires: a short lease keeps that inside the test.
        api = await cluster.spawn(
            "serve", run_worker=1, database_url=via_proxy, lease_seconds=3
        ).ready()
        client = Client(http, api.url, cluster.key, timeout=15)
        await client.webhook(receiver, timeout=2, retry_schedule="0,1s,1s,2s,2s,2s")
        before = await _send(client, "before", 10)

        if fault == "reset":
            await proxy.cut()
        else:
            proxy.freeze()
        cut_at = time.monotonic()
        during: list[tuple[int, float]] = []
        while time.monotonic() - cut_at < 3 or len(during) < 2:  # a few seconds of outage
            t0 = time.monotonic()
            try:
                status, body = await client.call("POST", "/v1/events", [event(f"cut{len(during)}")])
            except TimeoutError:
                status, body = -1, f"no answer in {client.timeout:g} s"
            during.append((status, round(time.monotonic() - t0, 3)))
            assert status == 503, (status, body, during)
            assert body["error"]["code"] in ("unavailable", "store_error"), body
            await asyncio.sleep(0.2)
        print("answers while the database was away (status, seconds):", during)
        await proxy.restore()

        async def accepted_again() -> bool:
            try:
                status, body = await client.call("POST", "/v1/events", [event("again")])
            except TimeoutError:
                return False
            assert status in (202, 503), (status, body)
            return status == 202

        await wait_until(accepted_again, 30, "ingest to work again", every=0.2)
        after = ["again", *await _send(client, "after", 10)]
        assert api.alive and api.starts == 1, "the hub was restarted"

        sent = set(before + after)

        async def all_delivered() -> bool:
            return sent <= {h.event_id for h in receiver.hits if h.status == 200}

        await wait_until(all_delivered, 30, "deliveries of the events before and after the cut")
        stored = await cluster.query(
            "SELECT id FROM events WHERE tenant_id = ? AND id LIKE 'cut%'", cluster.tenant
        )
        assert stored == [], "an event answered 503 was stored"
    finally:
        await proxy.close()


@pytest.mark.postgres
async def test_ingest_answers_503_while_database_connections_are_cut_and_recovers_in_place(
    pg_cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Every proxied connection reset and new ones refused: PostgreSQL died, or a firewall
    rejects."""
    await _database_outage(pg_cluster, http, receiver, "reset")


@pytest.mark.postgres
async def test_ingest_answers_503_within_15_s_in_a_silent_database_partition(
    pg_cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Connections stay open but no byte gets through (no RST): a network partition."""
    await _database_outage(pg_cluster, http, receiver, "partition")


# -- 5. a duplicate storm -------------------------------------------------------------------


async def test_duplicate_storm_stores_and_delivers_each_event_once(
    cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    api = await cluster.spawn("serve", run_worker=1).ready()
    client = Client(http, api.url, cluster.key, timeout=30)
    await client.webhook(receiver, timeout=5, concurrency=100)
    events = [event(f"storm{i}", i) for i in range(1000)]
    accepted: dict[str, int] = defaultdict(int)

    async def storm(seed: int) -> None:
        batches = [events[i : i + 100] for i in range(0, 1000, 100)]
        random.Random(seed).shuffle(batches)
        for batch in batches:
            for r in (await client.ok("POST", "/v1/events", batch))["results"]:
                assert r["status"] in ("accepted", "duplicate"), r
                if r["status"] == "accepted":
                    accepted[r["id"]] += 1

    await asyncio.wait_for(asyncio.gather(*(storm(s) for s in range(10))), 60)
    assert len(accepted) == 1000 and set(accepted.values()) == {1}, "an id accepted twice"

    async def delivered() -> bool:
        return await cluster.delivery_statuses() == {"succeeded": 1000}

    await wait_until(delivered, 40, "1,000 succeeded deliveries", every=0.25)
    (n_events,) = await cluster.query(
        "SELECT count(*) FROM events WHERE tenant_id = ?", cluster.tenant
    )
    (n_deliveries,) = await cluster.query(
        "SELECT count(*) FROM deliveries WHERE tenant_id = ?", cluster.tenant
    )
    assert n_events[0] == 1000
    assert n_deliveries[0] == 1000
    assert len({h.webhook_id for h in receiver.hits}) == 1000
    assert {h.event_id for h in receiver.hits} == {e["id"] for e in events}
    assert len(receiver.hits) == 1000, "a healthy receiver was sent some events twice"
