"""Peer 2's worker: Procrastinate jobs in the same PostgreSQL (its schema, LISTEN/NOTIFY wakes
the worker), one job per delivery, retried with an exponential wait on any ``httpx`` error or
non-2xx answer. Procrastinate tasks are coroutines, so the client is ``httpx.AsyncClient`` (one
per worker, keep-alive, as httpx's docs ask). Run:
``procrastinate --app benchmarks.peers.procrastinate_peer.app worker --concurrency 64``.
"""

from __future__ import annotations

from typing import Any

import httpx
import procrastinate

from benchmarks.peers import common

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=common.DATABASE_URL, min_size=4, max_size=10)
)

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        _client = httpx.AsyncClient(limits=limits, timeout=10)
    return _client


@app.task(
    name="deliver",
    retry=procrastinate.RetryStrategy(
        max_attempts=common.MAX_ATTEMPTS, exponential_wait=2, retry_exceptions=[httpx.HTTPError]
    ),
)
async def deliver(event: dict[str, Any]) -> None:
    body, headers = common.signed_request(event)
    response = await client().post(common.TARGET, content=body, headers=headers)
    response.raise_for_status()
