"""The peers' API, as FastAPI's docs write one: a Pydantic body model, a bearer-token
dependency, an asyncpg pool opened in the lifespan, one INSERT per request, then the delivery is
enqueued (a Celery task, from the thread pool since ``delay`` blocks, or a Procrastinate job,
by ``PEER_KIND``) before answering 202.

Served by uvicorn (``uvicorn benchmarks.peers.api:app``, uvloop + httptools, one process), as the
hub is. A duplicate id is stored and enqueued once (``ON CONFLICT DO NOTHING``), as the hub's
idempotent ingest.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from benchmarks.peers import common

KIND = os.environ.get("PEER_KIND", "celery")


class EventIn(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    subject: str | None = Field(default=None, max_length=200)
    actor: dict[str, Any] | None = None
    data: dict[str, Any]
    context: dict[str, Any] | None = None


class Accepted(BaseModel):
    accepted: int


def authorized(authorization: Annotated[str, Header()] = "") -> None:
    if not hmac.compare_digest(authorization.encode(), f"Bearer {common.TOKEN}".encode()):
        raise HTTPException(status_code=401, detail="bad token")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(common.DATABASE_URL, min_size=10, max_size=10)
    try:
        if KIND == "procrastinate":
            from benchmarks.peers.procrastinate_peer import app as jobs

            async with jobs.open_async():
                yield
        else:
            yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/events", status_code=202, dependencies=[Depends(authorized)])
async def ingest(event: EventIn) -> Accepted:
    payload = event.model_dump(mode="json")
    async with app.state.pool.acquire() as conn:
        inserted = await conn.fetchval(
            "INSERT INTO events (id, type, body) VALUES ($1, $2, $3::jsonb) "
            "ON CONFLICT (id) DO NOTHING RETURNING true",
            event.id,
            event.type,
            event.model_dump_json(),
        )
    if inserted:
        if KIND == "procrastinate":
            from benchmarks.peers.procrastinate_peer import deliver as job

            await job.defer_async(event=payload)
        else:
            from benchmarks.peers.celery_peer import deliver

            # `delay` blocks on Redis round trips: off the event loop, as FastAPI's docs ask of
            # blocking calls, so concurrent requests overlap them
            await run_in_threadpool(deliver.delay, payload)
    return Accepted(accepted=1)
