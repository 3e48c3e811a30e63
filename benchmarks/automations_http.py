"""Ingest over HTTP with runs waiting on the ingested type, against the same ingest to a tenant
without automations, on one server (the issue's figure: single-event requests).

One hub (`switchboard serve`, a fresh provisioned database) serves two tenants: `bench`, without
automations, and `waiting`, whose automation `waiter` (applied through
`PUT /v1/automations/waiter`) has W runs waiting (`wait_for` with `match: data.order_id`) on
`order.placed`, the type wrk sends (benchmarks/ingest.lua). The waits' keys match none of the
events sent, so every event of the waiting tenant pays for its wake-up (planned at ingest, the
statement in its group commit) and wakes nothing, as in `benchmarks.automations.ingest`. Then,
in turns, wrk runs of one event per request: plain, waiting, plain, … plain (three waiting
runs); each waiting run against the mean of the plain runs on either side of it, and the figure
is the median of those three ratios.

Run: ``python -m benchmarks.automations_http KIND [WAITING] [SECONDS] [CONNECTIONS]`` (KIND:
sqlite or postgres; 100,000 waiting runs, 5 s per wrk run and 64 connections by default);
prints one JSON line. `make bench` calls `measure` once per store, with 3 s wrk runs
(benchmarks/run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.automations import waiter, waiting_runs

WAITER = waiter("order.placed", "data.order_id")


def _waiting_tenant(database_url: str) -> str:
    """Create the tenant `waiting` and a key with every tenant scope; returns the key."""
    from switchboard.auth import mint_key
    from switchboard.config import Settings
    from switchboard.envelope import now_us
    from switchboard.store import Tenant
    from switchboard.store.backends import open_store

    async def run() -> str:
        store = open_store(Settings.from_env({}, database_url=database_url))
        await store.open()
        try:
            await store.create_tenant(Tenant("waiting", "waiting", "accept", now_us()))
            secret, record = mint_key("waiting", "bench", ["ingest", "read", "manage"])
            await store.create_key(record)
            return secret
        finally:
            await store.close()

    return asyncio.run(run())


def _waiting_runs(database_url: str, n: int) -> None:
    """N runs of `waiter` waiting on order.placed, triggered by the event `trigger` the server
    stored, with keys that match none of wrk's events."""
    from switchboard.config import Settings
    from switchboard.store.backends import open_store

    async def run() -> None:
        store = open_store(Settings.from_env({}, database_url=database_url))
        await store.open()
        try:
            rows = await store.fetch(
                "SELECT seq FROM events WHERE tenant_id = 'waiting' AND id = 'trigger'", ()
            )
            key = '["waiting-{}"]'.format
            await waiting_runs(store, "waiting", int(rows[0][0]), n, "order.placed", key)
        finally:
            await store.close()

    asyncio.run(run())


def _still_waiting(database_url: str) -> int:
    from switchboard.config import Settings
    from switchboard.store.backends import open_store

    async def run() -> int:
        store = open_store(Settings.from_env({}, database_url=database_url))
        await store.open()
        try:
            rows = await store.fetch(
                "SELECT count(*) FROM automation_runs r JOIN automation_waits w ON w.run_id = r.id "
                "WHERE r.tenant_id = 'waiting' AND r.status = 'running'",
                (),
            )
            return int(rows[0][0])
        finally:
            await store.close()

    return asyncio.run(run())


def _rate(summary: dict[str, Any], what: str) -> float:
    if summary["errors"] or not summary["requests"]:
        raise RuntimeError(f"{what}: wrk saw errors or completed nothing: {summary}")
    return float(summary["events_per_s"])


def measure(
    kind: str,
    work: Path,
    name: str,
    waiting: int,
    seconds: float,
    connections: int,
    rounds: int = 3,
) -> dict[str, Any]:
    with h.provisioned(kind, work, name) as (db, plain_key):
        waiting_key = _waiting_tenant(db)
        with h.hub(work, db, name=f"hub-{name}") as (url, _proc):
            status, body = h.http(
                "POST",
                url + "/v1/events",
                {"id": "trigger", "type": "bench.start", "data": {}},
                key=waiting_key,
            )
            if status != 202:
                raise RuntimeError(f"the trigger was not accepted: {status} {body}")
            _waiting_runs(db, waiting)  # before the automation: the trigger started no run
            status, body = h.http("PUT", url + "/v1/automations/waiter", WAITER, key=waiting_key)
            if status >= 300:
                raise RuntimeError(f"the automation was not applied: {status} {body}")
            for key, tag in ((plain_key, "warm-p"), (waiting_key, "warm-w")):
                h.run_wrk(url, key, batch=1, connections=connections, duration=1, tag=tag)

            # in turns, plain first and last: each waiting run against the mean of the plain
            # runs on either side of it (a drift, of the load or of the growing database, hits
            # both sides alike)
            def rate(key: str, tag: str) -> float:
                got = h.run_wrk(
                    url, key, batch=1, connections=connections, duration=seconds, tag=tag
                )
                return _rate(got, name)

            plains = [rate(plain_key, "p0")]
            pairs = []
            for round_ in range(rounds):
                with_waits = rate(waiting_key, f"w{round_}")
                plains.append(rate(plain_key, f"p{round_ + 1}"))
                pairs.append((with_waits, (plains[-2] + plains[-1]) / 2))
        still = _still_waiting(db)
        if still != waiting:  # the figure is of runs that stay waiting
            raise RuntimeError(f"{name}: {still} of {waiting} runs still wait")
    ratios = [w / p for w, p in pairs]
    # the run with the median ratio (the middle one of an even count's two)
    median, with_waits_per_s, plain_per_s = sorted(
        (r, w, p) for r, (w, p) in zip(ratios, pairs, strict=True)
    )[len(pairs) // 2]
    return {
        "figure": "http_ingest_with_waiting_runs",
        "kind": kind,
        "waiting_runs": waiting,
        "rounds": [round(r, 3) for r in ratios],
        "plain_per_s": round(plain_per_s),
        "with_waiting_per_s": round(with_waits_per_s),
        "ratio": round(median, 3),
        "still_waiting": still,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["sqlite", "postgres"])
    parser.add_argument("waiting", nargs="?", type=int, default=100_000)
    parser.add_argument("seconds", nargs="?", type=float, default=5.0)
    parser.add_argument("connections", nargs="?", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        got = measure(
            args.kind, Path(tmp), "auto_http", args.waiting, args.seconds, args.connections
        )
    print(json.dumps(got))


if __name__ == "__main__":
    main()
