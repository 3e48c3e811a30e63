"""The durable floor of ingest: the same uvicorn, each POSTed event parsed, made into the stored
envelope by the hub's `build_event`, appended by the hub's store (its group commit, the same SQL,
the same indexes) and acknowledged with 202, and nothing else: no API key, no tenant lookup, no
schema validation, no routing, no rate limits, no per-event answers, no log line.

Its rate beside the ceiling app's (which only parses) says what durability costs per request on
this machine by itself; the hub's beside it says what the rest costs.

Run: ``python -m benchmarks.bare_ingest DATABASE_URL TENANT PORT``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.ceiling_app import serve
from switchboard.config import Settings
from switchboard.envelope import build_event, now_us
from switchboard.hub import tune_gc
from switchboard.store.backends import open_store


def make_app(database_url: str, tenant: str) -> Starlette:
    store = open_store(Settings.from_env({}, database_url=database_url))

    async def ingest(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        docs = doc if isinstance(doc, list) else [doc]
        received = now_us()
        events = [
            build_event(d, tenant_id=tenant, default_source="default", received_us=received)
            for d in docs
        ]
        results = await store.append(events)
        accepted = sum(r.status == "accepted" for r in results)
        return Response(orjson.dumps({"accepted": accepted}), 202, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def count(request: Request) -> Response:  # what the store holds, to check the run
        return Response(orjson.dumps((await store.health()).counts), media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        tune_gc()  # as `switchboard serve` does once started
        try:
            yield
        finally:
            await store.close()

    return Starlette(
        routes=[
            Route("/v1/events", ingest, methods=["POST"]),
            Route("/health", health),
            Route("/_count", count),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    database_url, tenant, port = sys.argv[1:4]
    serve(make_app(database_url, tenant), int(port))


if __name__ == "__main__":
    main()
