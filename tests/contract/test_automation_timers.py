"""Firing timers on both stores: the engine's claim returns the runs whole, and a run's trigger
event is loaded only when its pinned version reads it (`Automation.reads_trigger`).

A real Hub over each store without its background loops; the engine's clock is a FakeClock.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from switchboard.automation_runs import NOT_LOADED
from switchboard.automations import parse_automation
from switchboard.hub import Hub
from tests.contract.test_automations_contract import HOUR, apply, deliveries, drain, hub, runs, send

__all__ = ["hub"]

# care-integrations: "service.completed → feedback request 2 h later over WhatsApp"
LATER: dict[str, Any] = {
    "name": "later",
    "on": "service.completed",
    "steps": [{"wait": "2h"}, {"send": {"destination": "wpp"}}],
}
# the same delay, then a step that reads the trigger (an `if` over its data)
BRANCHED: dict[str, Any] = {
    "name": "branched",
    "on": "service.completed",
    "steps": [
        {"wait": "2h"},
        {
            "if": {"trigger": {"data": {"channel": ["email"]}}},
            "then": [{"send": {"destination": "email"}}],
            "else": [{"send": {"destination": "wpp"}}],
        },
    ],
}


def completed(n: int, channel: str) -> dict[str, Any]:
    return {
        "id": f"svc-{n}",
        "type": "service.completed",
        "trace_id": f"{n:032x}",
        "data": {"service_id": n, "channel": channel},
    }


def test_only_fixed_waits_sends_and_jumps_do_not_read_the_trigger() -> None:
    def reads(steps: list[Any], **more: Any) -> bool:
        spec = {"name": "a", "on": "x.y", "steps": steps, **more}
        return parse_automation(spec, name="a", version=1).reads_trigger

    assert not reads([{"wait": "1h"}, {"send": {"destination": "wpp"}}])
    assert reads([{"wait": {"until": "data.at"}}])
    assert reads([{"wait_for": {"type": "x.z", "match": "data.k", "within": "1h"}}])
    assert reads([{"emit": {"type": "x.z"}}])
    assert reads([{"if": {"trigger": {"data": {"k": [1]}}}, "then": [{"wait": "1h"}]}])
    assert reads([{"digest": {"key": "data.k", "window": "1h"}}])
    assert reads([{"wait": "1h"}], cancel_on=[{"type": "x.z", "match": "data.k"}])


async def test_due_runs_fire_and_a_step_that_reads_the_trigger_gets_it(hub: Hub) -> None:
    await apply(hub, "acme", LATER)
    await apply(hub, "acme", BRANCHED)
    for n, channel in enumerate(["email", "whatsapp", "email"]):
        assert (await send(hub, "acme", completed(n, channel)))["status"] == "accepted"
    await drain(hub.engine)  # each run starts its wait
    hub.engine.clock.advance(1 * HOUR)
    await drain(hub.engine)
    assert await deliveries(hub, "acme") == []  # nothing is due yet
    hub.engine.clock.advance(1 * HOUR)
    await drain(hub.engine)
    for name in ("later", "branched"):
        assert {r.status for r in await runs(hub, "acme", name)} == {"completed"}
    # every run of `later` sent to wpp; `branched` followed each trigger's channel
    sent = [name for _, name in await deliveries(hub, "acme")]
    assert sorted(sent) == ["email", "email", "wpp", "wpp", "wpp", "wpp"]


async def test_a_claim_returns_runs_whole_without_their_trigger(hub: Hub) -> None:
    await apply(hub, "acme", LATER)
    await send(hub, "acme", completed(7, "whatsapp"))
    await drain(hub.engine)  # the run starts its wait
    (stored,) = await runs(hub, "acme", "later")
    hub.engine.clock.advance(2 * HOUR)
    now = hub.engine.clock.now_us()
    ((run, trace),) = await hub.automations.claim_runs(now, 60_000_000, 10, trace=True)
    assert trace == ("svc-7", f"{7:032x}")
    assert (run.id, run.rev, run.due_us, run.until_us) == (
        stored.id,
        stored.rev + 1,
        now + 60_000_000,
        stored.until_us,
    )
    assert run.trigger is NOT_LOADED
    with pytest.raises(AssertionError, match="not loaded"):
        run.trigger.get("id")
    assert await hub.automations.claim_runs(now, 60_000_000, 10) == []  # leased
    assert await hub.automations.triggers([run.trigger_seq]) == {run.trigger_seq: stored.trigger}


async def test_an_ended_run_is_logged_with_its_triggers_trace(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    await apply(hub, "acme", LATER)
    await send(hub, "acme", completed(3, "whatsapp"))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    with caplog.at_level(logging.INFO, logger="switchboard.automations"):
        await drain(hub.engine)
    ended = [r for r in caplog.records if getattr(r, "action", None) == "automation_end"]
    assert [(r.status, r.trace_id) for r in ended] == [("completed", f"{3:032x}")]  # type: ignore[attr-defined]
