"""One transaction for a whole change: what a request writes and the audit entry that records it.

`Store.transaction()` opens a unit for the running task (and the tasks it starts while the unit
is open): once `join()`ed, every statement the store runs for that context from its first write
on — reads included, so the change sees its own writes — goes to the unit's one connection and
transaction, until the block commits (it ended) or rolls back (it raised). The audit log uses
it (store/audit.py `audited`): the change and its entry commit together or not at all.

A unit begins armed but not joined: a request that may change something opens one before its
handler runs, and only a manage/admin key's change (`api.common.principal`) joins it, so ingest,
public webhooks and the like keep their own transactions and the group commit. Nothing is held
until the change's first write: the unit takes its connection (SQLite: the single writer) then,
and reads before it run outside, so a change that reads and then calls out (a WhatsApp gateway
setting up a channel) holds no transaction while it waits.

Background jobs started during a change (`Hub.spawn`) run `detached`: they outlive the request
and must not write into its transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

# the unit of the running context, or None; the stores check it is theirs and joined
CURRENT: contextvars.ContextVar[Unit | None] = contextvars.ContextVar(
    "switchboard.store.unit", default=None
)


class Unit:
    """A store's transaction for one change (the stores subclass it with their connection)."""

    def __init__(self, owner: object) -> None:
        self.owner = owner  # the store whose statements this unit takes
        self.joined = False  # statements go through the unit only once joined
        self.done = False  # committed or rolled back: the store's own paths again
        self.lock = asyncio.Lock()  # one statement at a time on the unit's connection
        self.ended = asyncio.Event()  # set once committed or rolled back

    def takes(self, store: object) -> bool:
        return self.joined and not self.done and self.owner is store


U = TypeVar("U", bound="Unit")


@asynccontextmanager
async def running(unit: U, end: Callable[[U, bool], Awaitable[None]]) -> AsyncIterator[U]:
    """`unit` as the running context's (each store's `transaction()`): `end(unit, commit)`
    commits it when the block ends and rolls it back when the block raises."""
    token = CURRENT.set(unit)
    try:
        yield unit
    except BaseException:
        await end(unit, False)
        raise
    else:
        await end(unit, True)
    finally:
        CURRENT.reset(token)
        unit.ended.set()


def current(store: object) -> Unit | None:
    """The unit that `store`'s next statement belongs to, or None."""
    unit = CURRENT.get()
    return unit if unit is not None and unit.takes(store) else None


def join() -> None:
    """Make the open unit take the rest of the change's statements (a manage/admin change)."""
    unit = CURRENT.get()
    if unit is not None and not unit.done:
        unit.joined = True


def detached(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task for `coro` outside any unit: a background job started during a change, which
    begins once that change has committed (or rolled back), so it reads what the change wrote
    (a replay's row) and never waits on the writer its starter holds."""
    unit = CURRENT.get()
    if unit is not None and not unit.ended.is_set():
        coro = _after(unit.ended, coro)
    context = contextvars.copy_context()
    context.run(CURRENT.set, None)
    return asyncio.get_running_loop().create_task(coro, context=context)


async def _after(ended: asyncio.Event, coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        await ended.wait()
    except BaseException:
        coro.close()  # cancelled before it began: never awaited
        raise
    return await coro
