"""What `requires_consent` costs a delivery: drain rates of a route without checks and of a route
that requires consent, over a ledger of 100,000 recipients (one in ten withdrawn).

In one process, against a webhook receiver on 127.0.0.1: a tenant per round with one route,
events to random recipients ingested through the hub's ingestor, then one worker drains them.
Rounds run in turns (plain, consent, plain, consent, …) so both see the same machine.

Run: ``python -m benchmarks.consent [--database URL] [--events 5000] [--rounds 2]``. Without
``--database`` it uses a temporary SQLite file; a PostgreSQL URL must name an empty database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web

from switchboard.channels import Destination
from switchboard.config import Settings
from switchboard.envelope import new_id, now_us
from switchboard.hub import Hub
from switchboard.store import Tenant

RECIPIENTS = 100_000
_CONSENT = (
    "INSERT INTO consents (id, tenant_id, recipient_id, purpose, action, at_us, terms_version, "
    "legal_basis, origin, ip, user_agent, event_id, recorded_us) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, ?)"
)


async def _round(hub: Hub, url: str, events: int, requires: list[str]) -> tuple[float, int]:
    tid = "bench" + new_id()[-12:]
    await hub.store.create_tenant(Tenant(tid, tid, "accept", now_us()))
    dest = Destination(
        id="dst_" + new_id(),
        tenant_id=tid,
        name="hook",
        kind="webhook",
        config={"url": url},
        secrets=("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",),
        concurrency=64,
    )
    await hub.deliveries.put_destination(dest, now_us())
    spec = {"name": "r", "types": ["*"], "destination_ids": [dest.id], "requires_consent": requires}
    await hub.deliveries.put_route(tid, "rte_" + new_id(), "r", spec, now_us())
    hub.routes.forget(tid)
    if requires:
        now = now_us()
        rows = [
            (new_id(), tid, f"u{i}", requires[0], "withdraw" if i % 10 == 0 else "grant", now, now)
            for i in range(RECIPIENTS)
        ]
        await hub.store.batch_many([(_CONSENT, rows)])
    tenant = await hub.store.get_tenant(tid)
    assert tenant is not None
    for _ in range(0, events, 500):
        batch = [
            {"type": "promo.sent", "subject": f"u{random.randrange(RECIPIENTS)}", "data": {}}
            for _ in range(500)
        ]
        await hub.ingestor.ingest(batch, tenant, "bench")
    assert hub.worker is not None  # built by open(), not running: drained here
    started = time.perf_counter()
    await hub.worker.drain(within=600)
    elapsed = time.perf_counter() - started
    # the round's own deliveries that ended (a claim count would include earlier rounds' retries)
    rows = await hub.store.fetch(
        "SELECT status, count(*) FROM deliveries WHERE tenant_id = ? GROUP BY status", (tid,)
    )
    by_status = {str(status): int(n) for status, n in rows}
    ended = sum(n for st, n in by_status.items() if st in ("succeeded", "suppressed", "cancelled"))
    if ended != events:
        print(f"  (not ended in this round: {by_status})", flush=True)
    return ended / elapsed, ended


async def main(database: str, events: int, rounds: int) -> None:
    app = web.Application()

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app.router.add_post("/hook", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    settings = Settings(
        database_url=database,
        key_rate=0,
        tenant_rate=0,
        run_worker=0,
        internal_events="",
        egress_allow="127.0.0.0/8",  # the receiver is on this machine, which egress refuses
    )
    hub = Hub(settings)
    await hub.open(worker=False)
    rates: dict[str, list[float]] = {"plain": [], "requires_consent": []}
    try:
        for _ in range(rounds):
            for label, requires in (("plain", []), ("requires_consent", ["marketing"])):
                rate, drained = await _round(hub, url, events, requires)
                rates[label].append(rate)
                print(f"{label:17s} {drained} deliveries  {rate:8,.0f}/s", flush=True)
    finally:
        await hub.close()
        await runner.cleanup()
    for label, values in rates.items():
        print(f"median {label:17s} {statistics.median(values):8,.0f}/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.database or f"sqlite:///{Path(tmp) / 'consent.db'}"
        asyncio.run(main(db, args.events, args.rounds))
