"""What the engine is woken for, and what it leaves alone, on both stores: a program of send
steps only ends in its trigger's commit (the engine never claims it), a route's commit does not
wake the engine, and the engine's loop claims once per wake-up when the batch was not full.

A real Hub over each store; the engine's own loop runs only in the last test, with a poll of an
hour, so every claim it makes there is one a wake-up asked for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard.envelope import now_us
from switchboard.hub import Hub
from tests.contract.test_automations_contract import apply, deliveries, hub, runs, send

__all__ = ["hub"]  # the fixture, shared with the automations contract tests

# legal-practice / care-integrations: "`client.registered` → welcome email + WhatsApp"
WELCOME: dict[str, Any] = {
    "name": "welcome",
    "on": "client.registered",
    "dedupe": {"key": "subject", "window": "1d"},
    "steps": [
        {"id": "email", "send": {"destination": "email"}},
        {"id": "whatsapp", "send": {"destination": "wpp"}},
    ],
}
LATER: dict[str, Any] = {
    "name": "later",
    "on": "client.registered",
    "steps": [{"wait": "2h"}, {"send": {"destination": "wpp"}}],
}


def registered(event_id: str, subject: str = "client-1") -> dict[str, Any]:
    return {"id": event_id, "type": "client.registered", "subject": subject, "data": {}}


async def test_a_program_of_sends_only_ends_in_its_triggers_commit(hub: Hub) -> None:
    await apply(hub, "acme", WELCOME)
    hub.engine.wakeup.clear()
    assert (await send(hub, "acme", registered("reg-1")))["status"] == "accepted"
    assert [name for _, name in await deliveries(hub, "acme")] == ["email", "wpp"]
    (run,) = await runs(hub, "acme", "welcome")
    assert run.status == "completed" and run.ended_us is not None and run.due_us is None
    assert [h["step"] for h in run.history] == ["email", "whatsapp"] and run.pc == 2
    assert not hub.engine.wakeup.is_set()  # nothing left for the engine: not woken, no claim
    assert await hub.engine.tick() == 0
    # the dedupe still holds for a run that ended at once: the second trigger makes no send
    await send(hub, "acme", registered("reg-2"))
    assert len(await deliveries(hub, "acme")) == 2
    assert len(await runs(hub, "acme", "welcome")) == 1


async def test_a_program_with_more_than_sends_still_goes_to_the_engine(hub: Hub) -> None:
    cancelable = {
        **WELCOME,
        "name": "cancelable",
        "cancel_on": [{"type": "client.deleted", "match": "subject"}],
    }
    cancelable.pop("dedupe")
    await apply(hub, "acme", cancelable)
    hub.engine.wakeup.clear()
    await send(hub, "acme", registered("reg-1"))
    (run,) = await runs(hub, "acme", "cancelable")  # cancel_on: the engine ends it
    assert run.status == "running" and hub.engine.wakeup.is_set()
    assert await hub.engine.tick() == 1
    (run,) = await runs(hub, "acme", "cancelable")
    assert run.status == "completed"
    assert [name for _, name in await deliveries(hub, "acme")] == ["email", "wpp"]


async def test_a_routes_commit_does_not_wake_the_engine(hub: Hub) -> None:
    await hub.deliveries.put_route(
        "acme",
        "rt_acme",
        "all",
        {"name": "all", "types": ["order.placed"], "destination_ids": ["dst_acme_wpp"]},
        now_us(),
    )
    hub.routes.forget("acme")
    await apply(hub, "acme", LATER)
    hub.engine.wakeup.clear()
    await send(hub, "acme", {"id": "o-1", "type": "order.placed", "data": {}})
    assert len(await deliveries(hub, "acme")) == 1
    assert not hub.engine.wakeup.is_set()
    await send(hub, "acme", registered("reg-1"))  # starts a run: the engine has work
    assert hub.engine.wakeup.is_set()


async def test_the_engine_claims_once_per_wake_up_when_its_batch_was_not_full(hub: Hub) -> None:
    await apply(hub, "acme", LATER)
    engine = hub.engine
    engine.poll_s = 3600.0
    claims = 0
    asleep = asyncio.Event()
    claim_runs, next_due_us = engine.store.claim_runs, engine.store.next_due_us

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await claim_runs(*args, **kwargs)

    async def sleeping() -> int | None:  # the loop asks this just before it waits
        asleep.set()
        return await next_due_us()

    engine.store.claim_runs = counted  # type: ignore[method-assign]
    engine.store.next_due_us = sleeping  # type: ignore[method-assign]
    await send(hub, "acme", registered("reg-1"))
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(asleep.wait(), 30)
        assert claims == 1  # one run claimed of a batch of 100: no second, empty claim
        (run,) = await runs(hub, "acme", "later")
        assert run.until_us is not None  # waiting its two hours
        asleep.clear()
        await send(hub, "acme", registered("reg-2", "client-2"))  # woken, not polled
        await asyncio.wait_for(asleep.wait(), 30)
        assert claims == 2
        assert all(r.until_us is not None for r in await runs(hub, "acme", "later"))
    finally:
        await engine.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
