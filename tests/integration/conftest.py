"""Fixtures for integration tests: real webhook receivers, a fake clock, a hub without its
background worker (tests drive a Worker themselves)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from switchboard.config import Settings
from switchboard.delivery import Worker
from tests.conftest import LOOPBACK, Api, fresh_database, serve


@dataclass
class Receiver:
    """A webhook receiver that records requests and answers as told."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # popped per request; then `default`
    default: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    in_flight: int = 0
    peak: int = 0  # most requests it was answering at once

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.received.append(
            {
                "headers": dict(request.headers),
                "body": body,
                "json": json.loads(body) if body else None,
            }
        )
        status = self.answers.pop(0) if self.answers else self.default
        return web.Response(
            status=status, text="ok" if status < 300 else "nope", headers=self.headers
        )


@pytest.fixture
async def receivers() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def make(**kw: Any) -> Receiver:
        r = Receiver(**kw)
        app = web.Application()
        app.router.add_post("/{tail:.*}", r.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        r.url = f"http://127.0.0.1:{port}/hook"
        runners.append(runner)
        return r

    yield make
    for runner in runners:
        await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["sqlite", "postgres"])
async def hub_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url, key_rate=0, tenant_rate=0, run_worker=0, egress_allow=LOOPBACK
        )
        async with serve(settings) as a:
            yield a


def worker_for(api: Api, clock: Clock | None = None, **settings: Any) -> Worker:
    assert api.hub.worker is not None
    s = Settings(**{**api.hub.settings.__dict__, **settings})
    return Worker(
        s, api.hub.store, api.hub.worker.channels, api.hub.routes, clock=clock or time.time
    )


@pytest.fixture
async def echo() -> Any:
    """A receiver that answers with the body it got (as many real endpoints do on errors)."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=200, body=await request.read())

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()
