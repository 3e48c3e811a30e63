"""Single-flight loads: concurrent callers asking for the same key share one running load."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLoads(Generic[K, V]):
    """One load per key at a time: hundreds of callers finding a cache entry expired together
    await the same query instead of each running it. A caller that is cancelled does not cancel
    the load the others wait for."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._running[key] = running
            running.add_done_callback(lambda f: self._done(key, f))
        return await asyncio.shield(running)

    def forget(self, key: K) -> None:
        """Callers from now on start a fresh load (the data changed under the running one)."""
        self._running.pop(key, None)

    def forget_if(self, which: Callable[[K], bool]) -> None:
        """`forget` every key for which `which` holds."""
        for key in [k for k in self._running if which(k)]:
            del self._running[key]

    def _done(self, key: K, fut: asyncio.Future[V]) -> None:
        if self._running.get(key) is fut:
            del self._running[key]
