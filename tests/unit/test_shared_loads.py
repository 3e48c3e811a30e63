"""SharedLoads and the route cache built on it: one running load per key."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.router import RouteCache
from switchboard.shared import SharedLoads


async def test_concurrent_callers_share_one_load() -> None:
    loads: SharedLoads[str, int] = SharedLoads()
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiters = [asyncio.ensure_future(loads.get("k", load)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [1] * 50
    assert calls == 1
    assert await loads.get("k", load) == 2  # finished loads are not cached


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    loads: SharedLoads[str, str] = SharedLoads()
    gate = asyncio.Event()

    async def load() -> str:
        await gate.wait()
        return "done"

    first = asyncio.ensure_future(loads.get("k", load))
    second = asyncio.ensure_future(loads.get("k", load))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_load_reaches_every_caller_and_the_next_call_retries() -> None:
    loads: SharedLoads[str, str] = SharedLoads()
    attempts = 0

    async def load() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise ConnectionError("database away")
        return "ok"

    results = await asyncio.gather(
        loads.get("k", load), loads.get("k", load), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await loads.get("k", load) == "ok"


async def test_routes_forgotten_during_a_load_are_not_cached() -> None:
    versions = iter(["old", "new"])
    gate = asyncio.Event()

    async def load(tenant_id: str) -> list[str]:
        version = next(versions)
        if version == "old":
            await gate.wait()
        return [version]

    cache = RouteCache(load)  # type: ignore[arg-type]
    stale = asyncio.ensure_future(cache.routes("t"))
    await asyncio.sleep(0)
    cache.forget("t")  # a route changed while the old list was being read
    assert await cache.routes("t") == ["new"]  # not joined to the running, stale load
    gate.set()
    assert await stale == ["old"]
    assert await cache.routes("t") == ["new"]  # the stale answer was not cached
