"""The durable floor of a delivery: claim, send, record, and nothing else.

It drains the same queue the hub's worker drains, with the hub's own pieces: the store's claim
(`DeliveryStore.claim`, the same SQL), the webhook channel (`WebhookChannel.send`: the same body,
headers and signature) and the store's group-committed attempt write, handed over without a future
as the worker hands over a success (`GroupWriter.submit(..., on_error)`).
What it leaves out is everything else the worker does: lanes per destination, the circuit
breaker, rate limits, retry decisions, lease budgets, fairness between tenants, logs. Its rate
beside the raw client's says what a durable delivery costs on this machine by itself; the hub's
beside it says what the rest costs.

Run: ``python -m benchmarks.bare_worker DATABASE_URL TENANT COUNT CONCURRENCY``; prints a JSON line.
It stops once COUNT deliveries are sent and their attempts committed, or after 300 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque

import aiohttp
import uvloop

from switchboard.channels import ChannelContext, Destination, Outbound
from switchboard.channels.webhook import WebhookChannel
from switchboard.config import Settings
from switchboard.egress import Policy, connector
from switchboard.envelope import Event
from switchboard.hub import tune_gc
from switchboard.store.backends import open_store
from switchboard.store.deliveries import Attempt, Delivery, DeliveryStore

_LIMIT_S = 300.0


async def drain(database_url: str, tenant: str, count: int, concurrency: int) -> dict[str, float]:
    store = open_store(Settings.from_env({}, database_url=database_url))
    await store.open()
    session = aiohttp.ClientSession(
        # guarded as the hub's client is, with the receivers' loopback allowed
        connector=connector(Policy.parse("127.0.0.0/8"), limit=0, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),  # as the hub's client
    )
    deliveries = DeliveryStore(store)
    channel = WebhookChannel(ChannelContext(session))
    capacity = concurrency * 8  # the hub's worker holds up to 8 x a destination's concurrency
    queue: deque[tuple[Delivery, Event]] = deque()
    refill = asyncio.Event()
    refill.set()
    sent = failures = 0
    write_errors: list[Exception] = []  # attempts the store failed to record
    finished = asyncio.Event()
    destinations: dict[str, Destination] = {}

    async def claimer() -> None:
        while True:
            await refill.wait()
            refill.clear()
            now = int(time.time() * 1_000_000)
            room = capacity - len(queue)
            if room > 0:
                queue.extend(await deliveries.claim(tenant, now, now + 60_000_000, room))

    async def sender() -> None:
        nonlocal failures, sent
        while True:
            if not queue:
                refill.set()
                await asyncio.sleep(0.001)
                continue
            delivery, event = queue.popleft()
            if len(queue) <= capacity * 3 // 4:
                refill.set()
            dest = destinations.get(delivery.destination_id)
            if dest is None:
                found = await deliveries.destination_state(delivery.destination_id)
                assert found is not None, "the benchmark's destination is gone"
                dest = destinations[delivery.destination_id] = found[0]
            n = delivery.attempts + 1
            started = time.time()
            t0 = time.perf_counter()
            result = await channel.send(dest, Outbound(delivery.id, n, event.to_json()))
            latency_ms = (time.perf_counter() - t0) * 1000
            failures += not result.ok
            now_us = int(time.time() * 1_000_000)
            attempt = Attempt(
                delivery.id,
                n,
                delivery.tenant_id,
                int(started * 1_000_000),
                latency_ms,
                result.ok,
                result.status,
                result.error,
                result.message,
                result.response or None,
                result.request_headers or None,
            )
            status = "succeeded" if result.ok else "retrying"
            statements = deliveries.finish_statements(
                delivery, attempt, status, now_us, None, None, now_us, None
            )
            deliveries.writer.submit(statements, write_errors.append)
            sent += 1
            if sent >= count:
                finished.set()

    tune_gc()  # as `switchboard worker` does once started
    tasks = [asyncio.create_task(claimer())]
    tasks += [asyncio.create_task(sender()) for _ in range(concurrency)]
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(finished.wait(), _LIMIT_S)
        await deliveries.writer.flush()  # every attempt written
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        await store.close()
    elapsed = time.perf_counter() - t0
    if write_errors:
        raise RuntimeError(f"{len(write_errors)} attempts not recorded: {write_errors[0]}")
    return {"recorded": sent, "failures": failures, "seconds": elapsed}


def main() -> None:
    database_url, tenant, count, concurrency = sys.argv[1:5]
    result = uvloop.run(drain(database_url, tenant, int(count), int(concurrency)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
