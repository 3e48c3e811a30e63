"""Digests, debounce and schedules on both stores: the keys a digest or debounce run holds, the
events that join it in their own commit, the release that lets the next trigger start a new run,
and schedules whose next fire is a row (a fire missed during downtime happens once).

A real Hub over each store without its background loops; the engine's clock is a FakeClock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard.automations import SCHEDULE_EVENT_TYPE
from switchboard.envelope import now_us
from switchboard.hub import Hub
from switchboard.store.automations import cancel_subject_runs
from switchboard.subjects import erase_subject
from tests.contract.test_automations_contract import (
    FEEDBACK,
    HOUR,
    apply,
    deliveries,
    drain,
    hub,
    runs,
    send,
)

__all__ = ["hub"]  # the fixture, shared with the automations contract tests

# comms-hub: "bulk_reminder" — the reminders due for one agent, collected for an hour, sent once
BULK: dict[str, Any] = {
    "name": "bulk-reminder",
    "on": "reminder.due",
    "steps": [
        {"id": "batch", "digest": {"key": "data.agent", "window": "1h", "max_events": 3}},
        {
            "emit": {
                "type": "bulk_reminder",
                "data": '{"agent": {{ data.agent | tojson }}, "count": {{ steps.batch.count }}, '
                '"ids": {{ steps.batch.events | map(attribute="id") | list | tojson }}}',
            }
        },
        {"send": {"destination": "email"}},
    ],
}


def reminder(n: int, agent: str) -> dict[str, Any]:
    return {"id": f"rem-{n}", "type": "reminder.due", "data": {"agent": agent, "n": n}}


async def test_a_digest_collects_a_keys_events_for_its_window_then_continues_once(
    hub: Hub,
) -> None:
    await apply(hub, "acme", BULK)
    for n, agent in enumerate(["ana", "ana", "bob", "ana"]):
        assert (await send(hub, "acme", reminder(n, agent)))["status"] == "accepted"
    # one run per key: later events of the key joined the first one's run in their own commit
    assert sorted(r.trigger["data"]["agent"] for r in await runs(hub, "acme", "bulk-reminder")) == [
        "ana",
        "bob",
    ]
    await drain(hub.engine)
    assert await deliveries(hub, "acme") == []  # the window is open
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    by_agent = {r.trigger["data"]["agent"]: r for r in await runs(hub, "acme", "bulk-reminder")}
    assert by_agent["ana"].status == by_agent["bob"].status == "completed"
    batch = by_agent["ana"].matched["batch"]
    assert batch["count"] == 3 and batch["truncated"] is False
    assert [e["id"] for e in batch["events"]] == ["rem-0", "rem-1", "rem-3"]
    assert by_agent["bob"].matched["batch"]["count"] == 1
    emitted = await hub.store.fetch(
        "SELECT data FROM events WHERE tenant_id = ? AND type = 'bulk_reminder'", ("acme",)
    )
    from switchboard.store.queries import load_json

    datas = sorted((load_json(r[0]) for r in emitted), key=lambda d: d["agent"])
    assert datas == [
        {"agent": "ana", "count": 3, "ids": ["rem-0", "rem-1", "rem-3"]},
        {"agent": "bob", "count": 1, "ids": ["rem-2"]},
    ]
    assert [name for _, name in await deliveries(hub, "acme")] == ["email", "email"]
    # the window closed: the key's next event starts a new digest
    await send(hub, "acme", reminder(9, "ana"))
    assert len(await runs(hub, "acme", "bulk-reminder")) == 3
    left = await hub.store.fetch("SELECT count(*) FROM automation_digest_items", ())
    assert left[0][0] == 1  # ended digests keep no rows; the open one has its trigger


@pytest.mark.security
async def test_a_digest_keeps_at_most_max_events_and_says_it_was_cut(hub: Hub) -> None:
    await apply(hub, "acme", BULK)
    for n in range(8):
        await send(hub, "acme", reminder(n, "ana"))
    rows = await hub.store.fetch("SELECT count(*) FROM automation_digest_items", ())
    assert rows[0][0] == 4  # max_events (3) and one more, to know the digest was cut
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme", "bulk-reminder")
    assert run.matched["batch"]["count"] == 3 and run.matched["batch"]["truncated"] is True


async def test_a_cancelled_digest_lets_go_of_its_key(hub: Hub) -> None:
    await apply(hub, "acme", BULK)
    await send(hub, "acme", reminder(1, "ana"))
    (run,) = await runs(hub, "acme", "bulk-reminder")
    assert await hub.automations.cancel("acme", run.id, "cancelled by request", now_us())
    await send(hub, "acme", reminder(2, "ana"))  # starts a new run, not joining the dead one
    statuses = sorted(r.status for r in await runs(hub, "acme", "bulk-reminder"))
    assert statuses == ["cancelled", "running"]


async def test_an_erasure_cancels_the_subjects_digest_and_lets_go_of_its_key(hub: Hub) -> None:
    """Erasure cancels the subject's running runs with the same statements as a consent
    withdrawal (`cancel_runs`): the digest's items go, and its held key is free again."""
    await apply(hub, "acme", BULK)
    await send(hub, "acme", {**reminder(1, "ana"), "subject": "patient-42"})
    receipt = await erase_subject(hub, "acme", "patient-42")
    assert receipt.runs_cancelled == 1
    items = await hub.store.fetch("SELECT count(*) FROM automation_digest_items", ())
    assert [tuple(r) for r in items] == [(0,)]
    await send(hub, "acme", reminder(2, "ana"))  # another subject, same key: a new run
    statuses = sorted(r.status for r in await runs(hub, "acme", "bulk-reminder"))
    assert statuses == ["cancelled", "running"]


DEBOUNCE: dict[str, Any] = {
    "name": "profile-sync",
    "on": "profile.updated",
    "debounce": {"key": "subject", "period": "1h", "max_wait": "3h"},
    "steps": [{"send": {"destination": "wpp"}}],
}


def updated(n: int, who: str = "c-1") -> dict[str, Any]:
    return {"id": f"upd-{n}", "type": "profile.updated", "subject": who, "data": {"n": n}}


async def test_debounce_runs_once_with_the_newest_trigger_after_the_quiet_period(
    hub: Hub,
) -> None:
    await apply(hub, "acme", DEBOUNCE)
    for n in range(3):
        await send(hub, "acme", updated(n))
    await send(hub, "acme", updated(7, "c-2"))
    found = {r.trigger["subject"]: r for r in await runs(hub, "acme", "profile-sync")}
    assert set(found) == {"c-1", "c-2"}
    assert found["c-1"].trigger["id"] == "upd-2"  # the newest event is the trigger
    assert await hub.engine.tick() == 0  # quiet for an hour first
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    assert [r.status for r in await runs(hub, "acme", "profile-sync")] == ["completed"] * 2
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp", "wpp"]
    await send(hub, "acme", updated(3))  # after the run went ahead: a new debounce
    assert len(await runs(hub, "acme", "profile-sync")) == 3


async def test_debounce_never_waits_past_max_wait(hub: Hub) -> None:
    spec = {**DEBOUNCE, "debounce": {"key": "subject", "period": "1h", "max_wait": "1h"}}
    await apply(hub, "acme", spec)
    await send(hub, "acme", updated(0))
    (first,) = await runs(hub, "acme", "profile-sync")
    await send(hub, "acme", updated(1))
    (run,) = await runs(hub, "acme", "profile-sync")
    # a later trigger would push it to its own time + 1h; max_wait holds it at the first's + 1h
    assert run.trigger["id"] == "upd-1"
    assert run.due_us == first.created_us + HOUR * 1_000_000


async def test_a_trigger_arriving_after_the_claim_supersedes_the_debounced_advance(
    hub: Hub,
) -> None:
    await apply(hub, "acme", DEBOUNCE)
    await send(hub, "acme", updated(0))
    hub.engine.clock.advance(HOUR)
    ((run_id, rev),) = await hub.automations.claim(hub.engine.clock.now_us(), 60_000_000, 10)
    claimed = (await hub.automations.load_many([run_id]))[run_id]
    await send(hub, "acme", updated(1))  # moves the run while the engine holds its claim
    result = await hub.engine.advance(claimed, rev)
    assert await hub.automations.save_many([result], hub.engine.clock.now_us()) == [False]
    assert await deliveries(hub, "acme") == []
    (run,) = await runs(hub, "acme", "profile-sync")
    assert run.trigger["id"] == "upd-1" and run.status == "running"


DAILY: dict[str, Any] = {
    "name": "daily-agenda",
    "on": {"schedule": "0 9 * * *", "timezone": "America/Sao_Paulo"},
    "steps": [{"send": {"destination": "email"}}],
}


async def test_a_schedule_fires_at_its_time_and_once_after_downtime(hub: Hub) -> None:
    await apply(hub, "acme", DAILY)
    clock = hub.engine.clock
    # the next fire, from the engine's clock (the test's "now")
    nxt = await hub.automations.set_schedule("acme", "daily-agenda", DAILY, clock.now_us())
    assert nxt is not None and nxt > clock.now_us()
    assert await hub.engine.tick() == 0
    clock.us = nxt + 1_000_000  # (the engine looks for due schedules once a second)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme", "daily-agenda")
    assert run.trigger["type"] == SCHEDULE_EVENT_TYPE
    assert run.trigger["data"]["timezone"] == "America/Sao_Paulo"
    assert run.status == "completed"
    # three days down: the missed fires make one run, and the schedule moves past now
    clock.us = nxt + 3 * 86_400_000_000 + 3_600_000_000
    await drain(hub.engine)
    assert len(await runs(hub, "acme", "daily-agenda")) == 2
    assert await hub.engine.tick() == 0
    rows = await hub.store.fetch("SELECT next_us FROM automation_schedules", ())
    assert rows[0][0] == nxt + 4 * 86_400_000_000  # 09:00 in São Paulo, the next day
    assert [name for _, name in await deliveries(hub, "acme")] == ["email", "email"]


async def test_two_engines_firing_the_same_schedule_start_one_run(hub: Hub) -> None:
    await apply(hub, "acme", DAILY)
    clock = hub.engine.clock
    nxt = await hub.automations.set_schedule("acme", "daily-agenda", DAILY, clock.now_us())
    assert nxt is not None
    clock.us = nxt
    await asyncio.gather(hub.engine.fire_schedules(), hub.engine.fire_schedules())
    assert len(await runs(hub, "acme", "daily-agenda")) == 1


async def test_deleting_a_scheduled_automation_removes_its_schedule(hub: Hub) -> None:
    await apply(hub, "acme", DAILY)
    assert await hub.automations.count_schedules("acme") == 1
    changed = {**DAILY, "on": "a.b"}  # a new version without a schedule drops it too
    await apply(hub, "acme", changed)
    assert await hub.automations.count_schedules("acme") == 0
    await apply(hub, "acme", DAILY)
    assert await hub.automations.delete("acme", "daily-agenda", now_us())
    assert await hub.automations.count_schedules("acme") == 0


async def test_a_subjects_cancel_ends_only_its_runs_of_the_named_automations(hub: Hub) -> None:
    """`cancel_subject_runs` (what a consent withdrawal writes in its own transaction) ends the
    subject's runs of the automations that require the purpose, and no other run."""
    await apply(hub, "acme", {**FEEDBACK, "requires_consent": ["marketing"]})
    other = {**FEEDBACK, "name": "service-notice"}
    await apply(hub, "acme", other)
    await send(hub, "acme", {**FEEDBACK_EVENT, "id": "s-1"})
    await send(hub, "acme", {**FEEDBACK_EVENT, "id": "s-2", "subject": "patient-7"})
    statements = cancel_subject_runs(
        "acme", "patient-42", ["service-feedback"], "consent:marketing", now_us()
    )
    await hub.store.batch(statements)
    cancelled = [r for r in await runs(hub, "acme") if r.status == "cancelled"]
    assert [(r.trigger["subject"], r.reason) for r in cancelled] == [
        ("patient-42", "consent:marketing")
    ]
    # the other automation (no such purpose) and the other patient keep running
    assert {r.status for r in await runs(hub, "acme", "service-notice")} == {"running"}
    assert [r.status for r in await runs(hub, "acme") if r not in cancelled] == ["running"]
    assert cancel_subject_runs("acme", "patient-42", [], "consent:marketing", now_us()) == []


FEEDBACK_EVENT: dict[str, Any] = {
    "type": "service.completed",
    "subject": "patient-42",
    "data": {"service_id": 1},
}


async def test_an_emitted_event_starts_the_runs_of_other_automations(hub: Hub) -> None:
    """Internal events start runs too: the digest's emitted bulk_reminder starts the automation
    that sends it (comms-hub), in the emitted event's own commit."""
    await apply(hub, "acme", BULK)
    sender = {
        "name": "bulk-sender",
        "on": "bulk_reminder",
        "filter": {"data": {"count": [{"numeric": [">=", 2]}]}},
        "steps": [{"send": {"destination": "wpp"}}],
    }
    await apply(hub, "acme", sender)
    await send(hub, "acme", reminder(1, "ana"))
    await send(hub, "acme", reminder(2, "ana"))
    await send(hub, "acme", reminder(3, "bob"))
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme", "bulk-sender")  # bob's digest of one did not match
    assert run.status == "completed"
    assert run.trigger["type"] == "bulk_reminder" and run.trigger["data"]["count"] == 2
    assert run.trigger["context"]["automation"] == "bulk-reminder"
    assert sorted(name for _, name in await deliveries(hub, "acme")) == ["email", "email", "wpp"]


async def test_leading_sends_are_made_in_the_triggers_own_commit(hub: Hub) -> None:
    """care-integrations: "`lead.created` → WhatsApp at once": the send steps a program starts
    with are planned with the trigger, as a route's delivery is — no engine in between; a
    dedupe's second trigger and a duplicate event make none."""
    spec = {
        "name": "lead-whatsapp",
        "on": "lead.created",
        "dedupe": {"key": "subject", "window": "1d"},
        "steps": [
            {"id": "hello", "send": {"destination": "wpp"}},
            {"wait": "1h"},
            {"id": "follow-up", "send": {"destination": "email"}},
        ],
    }
    await apply(hub, "acme", spec)
    lead = {"id": "lead-1", "type": "lead.created", "subject": "lead-9", "data": {}}
    assert (await send(hub, "acme", lead))["status"] == "accepted"
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp"]  # no engine yet
    (run,) = await runs(hub, "acme", "lead-whatsapp")
    assert run.pc == 1 and [h["step"] for h in run.history] == ["hello"]
    assert (await send(hub, "acme", lead))["status"] == "duplicate"
    await send(hub, "acme", {**lead, "id": "lead-1-again"})  # deduplicated: no run, no send
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp"]
    await drain(hub.engine)  # the engine goes on from the wait, and sends nothing twice
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp"]
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp", "email"]
    (run,) = await runs(hub, "acme", "lead-whatsapp")
    assert run.status == "completed"


@pytest.mark.security
async def test_digests_and_debounces_never_join_another_tenants_runs(hub: Hub) -> None:
    for tenant in ("acme", "other"):
        await apply(hub, tenant, BULK)
        await apply(hub, tenant, DEBOUNCE)
    for tenant in ("acme", "other"):  # the same keys (agent, subject) in both tenants
        await send(hub, tenant, reminder(1, "ana"))
        await send(hub, tenant, updated(1))
    await send(hub, "acme", reminder(2, "ana"))
    for tenant in ("acme", "other"):
        assert len(await runs(hub, tenant, "bulk-reminder")) == 1
        assert len(await runs(hub, tenant, "profile-sync")) == 1
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    (mine,) = await runs(hub, "acme", "bulk-reminder")
    (theirs,) = await runs(hub, "other", "bulk-reminder")
    assert [e["id"] for e in mine.matched["batch"]["events"]] == ["rem-1", "rem-2"]
    assert [e["id"] for e in theirs.matched["batch"]["events"]] == ["rem-1"]
