"""Automation semantics on both stores: runs start in the trigger's commit, look-back, wake-ups,
tenant isolation, durable timers, idempotent sends and emits, cancel, pinned versions.

A real Hub over each store, without its background loops: the tests drive the engine's `tick`
on a fake clock, so a two-hour wait takes no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.automation_engine import Engine, FakeClock
from switchboard.automation_runs import advance
from switchboard.channels import Destination
from switchboard.config import Settings
from switchboard.envelope import build_event, now_us
from switchboard.hub import Hub
from switchboard.records import Wake
from switchboard.store import Tenant
from switchboard.store.automations import RunStart

HOUR = 3600.0

FEEDBACK: dict[str, Any] = {
    "name": "service-feedback",
    "on": "service.completed",
    "steps": [
        {"wait": "2h"},
        {"id": "request", "send": {"destination": "wpp"}},
        {
            "id": "reply",
            "wait_for": {"type": "feedback.received", "match": "data.service_id", "within": "24h"},
            "on_event": "stop",
        },
        {"id": "reminder", "send": {"destination": "email"}},
    ],
    "cancel_on": [{"type": "service.cancelled", "match": "data.service_id"}],
}


async def open_hub(url: str) -> Hub:
    hub = Hub(Settings(database_url=url, db_pool_size=5))
    await hub.open(worker=False)
    # ahead of the wall clock that stamps received events, so a run started by an event sent
    # during the test is due at once on the engine's clock
    hub.engine.clock = FakeClock(now_us() + 600_000_000)
    return hub


@pytest.fixture
async def hub(database_url: str) -> AsyncIterator[Hub]:
    h = await open_hub(database_url)
    for tenant in ("acme", "other"):
        await h.store.create_tenant(Tenant(tenant, tenant, "accept", now_us()))
        for name in ("wpp", "email"):
            await h.deliveries.put_destination(
                Destination(
                    f"dst_{tenant}_{name}",
                    tenant,
                    name,
                    "webhook",
                    {"url": "http://127.0.0.1:9/hook"},
                ),
                now_us(),
            )
    try:
        yield h
    finally:
        await h.close()


async def apply(hub: Hub, tenant: str, spec: dict[str, Any]) -> int:
    version = await hub.automations.put(tenant, spec["name"], spec, now_us())
    hub.automation_cache.forget(tenant)
    return version


async def send(hub: Hub, tenant: str, raw: dict[str, Any]) -> dict[str, Any]:
    t = await hub.store.get_tenant(tenant)
    assert t is not None
    result = await hub.ingestor.ingest([raw], t, "ops")
    return result.results[0]


async def drain(engine: Engine) -> None:
    while await engine.tick():
        pass


async def runs(hub: Hub, tenant: str, automation: str = "service-feedback") -> list[Any]:
    return await hub.automations.runs(tenant, automation, None, 100)


async def deliveries(hub: Hub, tenant: str) -> list[tuple[str, str]]:
    rows = await hub.store.fetch(
        "SELECT d.id, x.name FROM deliveries d JOIN destinations x ON x.id = d.destination_id "
        "WHERE d.tenant_id = ? ORDER BY d.created_us",
        (tenant,),
    )
    return [(r[0], r[1]) for r in rows]


def completed(service_id: int, event_id: str = "svc-1") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "service.completed",
        "subject": "patient-42",
        "data": {"service_id": service_id},
    }


async def test_a_trigger_starts_its_run_in_its_own_commit_and_a_duplicate_starts_none(
    hub: Hub,
) -> None:
    await apply(hub, "acme", FEEDBACK)
    assert (await send(hub, "acme", completed(1)))["status"] == "accepted"
    # no engine has run: the run row was written by the commit that accepted the event
    assert [r.status for r in await runs(hub, "acme")] == ["running"]
    assert (await send(hub, "acme", completed(1)))["status"] == "duplicate"
    assert len(await runs(hub, "acme")) == 1


async def test_wait_then_send_makes_one_ordinary_delivery(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    clock = hub.engine.clock
    await drain(hub.engine)
    assert await deliveries(hub, "acme") == []  # waiting two hours
    clock.advance(2 * HOUR - 1)
    await drain(hub.engine)
    assert await deliveries(hub, "acme") == []
    clock.advance(1)
    await drain(hub.engine)
    sent = await deliveries(hub, "acme")
    assert [name for _, name in sent] == ["wpp"]
    # a step run again (a crash after the send, before the run was saved) sends nothing new
    (run,) = await runs(hub, "acme")
    auto = await hub.automation_cache.version("acme", run.automation, run.version)
    assert auto is not None
    from switchboard.automation_runs import replace  # Run is a msgspec Struct

    again = replace(run, pc=1, deadline_us=None, due_us=None, status="running")
    await advance(auto, again, clock.now_us(), hub.engine.env)
    await hub.store.batch(hub.engine.env.pending.pop(run.id))  # type: ignore[attr-defined]
    assert await deliveries(hub, "acme") == sent


async def test_wait_for_looks_back_over_events_stored_before_it_was_registered(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    # the reply arrives during the two-hour wait, before the wait_for exists
    await send(hub, "acme", {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}})
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme")
    assert run.status == "stopped"
    assert run.reason == "feedback.received fb-1 arrived"
    assert run.matched["reply"]["id"] == "fb-1"
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp"]


async def test_an_arriving_event_wakes_the_waiting_run_at_once(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme")
    assert run.status == "running" and run.deadline_us is not None
    assert await hub.engine.tick() == 0  # nothing due until the deadline…
    await send(hub, "acme", {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}})
    assert await hub.engine.tick() == 1  # …but the reply made it due, in its own commit
    (run,) = await runs(hub, "acme")
    assert run.status == "stopped"
    rows = await hub.store.fetch(
        "SELECT count(*) FROM automation_waits WHERE run_id = ?", (run.id,)
    )
    assert rows[0][0] == 0  # an ended run keeps no waits


async def test_one_commit_wakes_exactly_the_runs_its_events_await(hub: Hub) -> None:
    # 300 keys in one commit: more than one look-up of the waits (at most 256 keys each)
    spec = {
        "name": "reply",
        "on": "a.start",
        "steps": [{"id": "r", "wait_for": {"type": "a.reply", "match": "data.k", "within": "1h"}}],
    }
    await apply(hub, "acme", spec)
    await apply(hub, "other", spec)
    acme = await hub.store.get_tenant("acme")
    other = await hub.store.get_tenant("other")
    assert acme is not None and other is not None
    starts = [{"id": f"s-{n}", "type": "a.start", "data": {"k": n}} for n in range(320)]
    await hub.ingestor.ingest(starts, acme, "ops")
    await hub.ingestor.ingest(starts[:5], other, "ops")
    await drain(hub.engine)  # every run registered its wait
    assert await hub.engine.tick() == 0
    # one request, one commit: replies for 300 of acme's keys (one of them twice, one for no
    # run at all), none for the other tenant's runs with the same keys
    replies = [{"id": f"r-{n}", "type": "a.reply", "data": {"k": n}} for n in range(300)]
    replies += [{"id": "r-again", "type": "a.reply", "data": {"k": 7}}]
    replies += [{"id": "r-none", "type": "a.reply", "data": {"k": 10_000}}]
    result = await hub.ingestor.ingest(replies, acme, "ops")
    assert result.accepted == len(replies)
    await drain(hub.engine)
    by_key = {
        r.trigger["data"]["k"]: r for r in await hub.automations.runs("acme", "reply", None, 1000)
    }
    assert len(by_key) == 320
    assert {k for k, r in by_key.items() if r.status == "completed"} == set(range(300))
    assert all(r.matched["r"]["id"] == f"r-{k}" for k, r in by_key.items() if k < 300)
    assert all(r.status == "running" for k, r in by_key.items() if k >= 300)
    assert [r.status for r in await runs(hub, "other", "reply")] == ["running"] * 5


@pytest.mark.security
async def test_waits_never_match_another_tenants_events(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)
    # the same correlation value and type, in another tenant: early and late
    await send(hub, "other", {"id": "fb-x", "type": "feedback.received", "data": {"service_id": 1}})
    await send(hub, "other", {"id": "c-x", "type": "service.cancelled", "data": {"service_id": 1}})
    assert await hub.engine.tick() == 0  # not woken
    hub.engine.clock.advance(24 * HOUR)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme")
    assert run.status == "completed"
    assert [name for _, name in await deliveries(hub, "acme")] == ["wpp", "email"]
    assert await runs(hub, "other") == []


async def test_timers_are_rows_that_fire_after_a_restart(database_url: str, hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    start = hub.engine.clock.now_us()
    await hub.close()
    again = await open_hub(database_url)
    try:
        again.engine.clock = FakeClock(start)
        assert await again.engine.tick() == 0
        again.engine.clock.advance(2 * HOUR)
        await drain(again.engine)
        assert [name for _, name in await deliveries(again, "acme")] == ["wpp"]
    finally:
        await again.close()
        hub.store = again.store  # the fixture closes the hub once more; closing is idempotent


async def test_a_claimed_run_of_a_killed_engine_comes_due_after_its_lease(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    now = hub.engine.clock.now_us()
    claimed = await hub.automations.claim(now, 60_000_000, 10)  # claimed, then "killed"
    assert len(claimed) == 1
    assert await hub.automations.claim(now, 60_000_000, 10) == []
    hub.engine.clock.advance(61)
    await drain(hub.engine)
    (run,) = await runs(hub, "acme")
    assert run.history == [] and run.until_us is not None  # it went on to its wait


async def test_concurrent_claims_never_take_the_same_run(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    for n in range(30):
        await send(hub, "acme", completed(n, f"svc-{n}"))
    now = hub.engine.clock.now_us()
    batches = await asyncio.gather(*(hub.automations.claim(now, 60_000_000, 7) for _ in range(6)))
    ids = [run_id for batch in batches for run_id, _ in batch]
    assert len(ids) == len(set(ids)) == 30


async def test_emit_is_validated_deterministic_and_caused_by_the_trigger(hub: Hub) -> None:
    spec = {
        "name": "reply-to-feedback",
        "on": "whatsapp.inbound",
        "filter": {"data": {"button": [{"prefix": "rating-"}]}},
        "steps": [
            {
                "id": "emit",
                "emit": {
                    "type": "feedback.received",
                    "data": '{"service_id": {{ data.service_id }}, '
                    '"rating": "{{ data.button[7:] }}"}',
                },
            }
        ],
    }
    await apply(hub, "acme", spec)
    await send(
        hub,
        "acme",
        {
            "id": "in-1",
            "type": "whatsapp.inbound",
            "subject": "p-1",
            "trace_id": "trace-77",
            "data": {"service_id": 5, "button": "rating-5"},
        },
    )
    await drain(hub.engine)
    (run,) = await runs(hub, "acme", "reply-to-feedback")
    assert run.status == "completed"
    emitted_id = run.history[0]["event_id"]
    ev = await hub.store.get_event("acme", emitted_id, None)
    assert ev is not None
    assert ev.type == "feedback.received" and ev.data == {"service_id": 5, "rating": "5"}
    assert ev.causation_id == "in-1" and ev.trace_id == "trace-77"
    # the emit step run again makes no second event
    auto = await hub.automation_cache.version("acme", run.automation, run.version)
    assert auto is not None
    from switchboard.automation_runs import replace  # Run is a msgspec Struct

    await advance(auto, replace(run, status="running", pc=0), now_us(), hub.engine.env)
    rows = await hub.store.fetch(
        "SELECT count(*) FROM events WHERE tenant_id = ? AND type = 'feedback.received'",
        ("acme",),
    )
    assert rows[0][0] == 1


async def test_an_emit_the_catalog_rejects_fails_the_run_with_the_reason(hub: Hub) -> None:
    await hub.store.create_tenant(Tenant("strict", "strict", "reject", now_us()))
    spec = {"name": "bad-emit", "on": "a.happened", "steps": [{"emit": {"type": "b.unknown"}}]}
    await apply(hub, "strict", spec)
    # the trigger itself must pass the catalog: make its type known by accepting it loosely
    await hub.store.set_unknown_types("strict", "accept")
    hub._tenants.clear()
    await send(hub, "strict", {"type": "a.happened", "data": {}})
    await hub.store.set_unknown_types("strict", "reject")
    hub._tenants.clear()
    await drain(hub.engine)
    (run,) = await runs(hub, "strict", "bad-emit")
    assert run.status == "failed"
    assert run.reason is not None and "rejected" in run.reason and "b.unknown" in run.reason


async def test_cancel_on_and_the_cancel_call_are_durable(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1, "svc-1"))
    await send(hub, "acme", completed(2, "svc-2"))
    await drain(hub.engine)
    await send(hub, "acme", {"id": "c-1", "type": "service.cancelled", "data": {"service_id": 1}})
    await drain(hub.engine)
    by_service = {r.trigger["data"]["service_id"]: r for r in await runs(hub, "acme")}
    assert by_service[1].status == "cancelled"
    assert by_service[1].reason == "cancel_on service.cancelled c-1"
    assert await hub.automations.cancel("other", by_service[2].id, "nope", now_us()) is False
    assert await hub.automations.cancel("acme", by_service[2].id, "by hand", now_us()) is True
    hub.engine.clock.advance(48 * HOUR)
    await drain(hub.engine)
    statuses = {r.trigger["data"]["service_id"]: r.status for r in await runs(hub, "acme")}
    assert statuses == {1: "cancelled", 2: "cancelled"}
    assert await deliveries(hub, "acme") == []


async def test_a_run_keeps_the_version_it_started_with(hub: Hub) -> None:
    assert await apply(hub, "acme", FEEDBACK) == 1
    await send(hub, "acme", completed(1))
    second = {**FEEDBACK, "steps": [{"wait": "2h"}, {"send": {"destination": "email"}}]}
    assert await apply(hub, "acme", second) == 2
    await send(hub, "acme", completed(2, "svc-2"))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)
    versions = {r.trigger["data"]["service_id"]: r.version for r in await runs(hub, "acme")}
    assert versions == {1: 1, 2: 2}
    assert sorted(name for _, name in await deliveries(hub, "acme")) == ["email", "wpp"]


async def test_a_missing_destination_fails_the_run_with_a_reason(hub: Hub) -> None:
    spec = {"name": "gone", "on": "a.b", "steps": [{"send": {"destination": "nowhere"}}]}
    await apply(hub, "acme", spec)
    await send(hub, "acme", {"type": "a.b", "data": {}})
    await drain(hub.engine)
    (run,) = await runs(hub, "acme", "gone")
    assert run.status == "failed" and "nowhere" in (run.reason or "")


async def test_dedupe_starts_one_run_per_key_and_window(hub: Hub) -> None:
    spec = {
        "name": "welcome",
        "on": "client.registered",
        "dedupe": {"key": "subject", "window": "1d"},
        "steps": [{"send": {"destination": "email"}}],
    }
    await apply(hub, "acme", spec)
    for n in range(3):
        await send(
            hub, "acme", {"id": f"c-{n}", "type": "client.registered", "subject": "c-1", "data": {}}
        )
    await send(
        hub, "acme", {"id": "d-1", "type": "client.registered", "subject": "c-2", "data": {}}
    )
    assert len(await runs(hub, "acme", "welcome")) == 2


async def test_a_deleted_automation_starts_no_runs(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    assert await hub.automations.delete("acme", "service-feedback", now_us())
    hub.automation_cache.forget("acme")
    await send(hub, "acme", completed(1))
    assert await runs(hub, "acme") == []


@pytest.mark.security
async def test_runs_past_the_tenants_limit_are_recorded_failed_with_the_reason(hub: Hub) -> None:
    hub.automation_cache.max_running = 2
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1, "svc-1"))
    await send(hub, "acme", completed(2, "svc-2"))
    hub.automation_cache.forget("acme")  # the running count is cached for a second
    await send(hub, "acme", completed(3, "svc-3"))
    by_service = {r.trigger["data"]["service_id"]: r for r in await runs(hub, "acme")}
    assert [by_service[n].status for n in (1, 2, 3)] == ["running", "running", "failed"]
    assert "the limit is 2" in (by_service[3].reason or "")
    await drain(hub.engine)  # the refused run is never advanced
    assert (await runs(hub, "acme"))[0].history == []


async def count_calls(hub: Hub) -> list[str]:
    """The tenants whose running runs the store counted from now on (the real count runs)."""
    calls: list[str] = []
    count = hub.automations.count_running

    async def counted(tenant_id: str) -> int:
        calls.append(tenant_id)
        return await count(tenant_id)

    hub.automations.count_running = counted  # type: ignore[method-assign]
    return calls


async def test_concurrent_triggers_share_one_count_of_the_running_runs(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    calls = await count_calls(hub)
    # 20 ingests find the count expired together: one query answers them all (with 100,000
    # waiting runs, one count per concurrent ingest took most of ingest's time)
    await asyncio.gather(*(send(hub, "acme", completed(n, f"svc-{n}")) for n in range(20)))
    assert calls == ["acme"]
    assert len(await runs(hub, "acme")) == 20


async def test_an_event_that_only_wakes_runs_does_not_count_the_running_runs(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)  # the run now waits for feedback.received
    hub.automation_cache.forget("acme")  # the next ingest would have to count again
    calls = await count_calls(hub)
    await send(hub, "acme", {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}})
    assert calls == []  # the limit is on starting runs; waking one needs no count
    assert await hub.engine.tick() == 1
    assert (await runs(hub, "acme"))[0].status == "stopped"


async def test_an_event_that_only_wakes_runs_wakes_the_engine_not_the_delivery_worker(
    hub: Hub,
) -> None:
    assert hub.worker is not None
    await apply(hub, "acme", FEEDBACK)
    hub.worker.wakeup.clear()
    hub.engine.wakeup.clear()
    await send(hub, "acme", completed(1))  # a new run: the engine looks now
    assert hub.engine.wakeup.is_set()
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)  # the wpp send made a delivery; the run waits for the reply
    hub.worker.wakeup.clear()
    hub.engine.wakeup.clear()
    await send(hub, "acme", {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}})
    # the commit only woke the run: nothing for the delivery worker to claim
    assert hub.engine.wakeup.is_set() and not hub.worker.wakeup.is_set()
    assert await hub.engine.tick() == 1


async def test_an_event_that_matches_no_waiting_run_does_not_wake_the_engine(hub: Hub) -> None:
    """The store wakes the engine only when its commit made waiting runs due: with many runs
    waiting on a type, each other event of it would otherwise send the engine to claim."""
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)  # the run waits for feedback.received of service 1
    hub.engine.wakeup.clear()
    reply = {"id": "fb-2", "type": "feedback.received", "data": {"service_id": 2}}
    await send(hub, "acme", reply)  # another service's reply: nobody waits on it
    assert not hub.engine.wakeup.is_set()
    assert await hub.engine.tick() == 0
    await send(hub, "acme", {**reply, "id": "fb-1", "data": {"service_id": 1}})
    assert hub.engine.wakeup.is_set()
    assert await hub.engine.tick() == 1
    assert (await runs(hub, "acme"))[0].status == "stopped"


async def test_a_duplicate_of_an_awaited_event_wakes_nothing(hub: Hub) -> None:
    """Only an event stored as new wakes runs: a client's retry of one stored before the run
    began to wait (so its look-back does not see it) leaves the run waiting."""
    await apply(hub, "acme", FEEDBACK)
    reply = {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}}
    assert (await send(hub, "acme", reply))["status"] == "accepted"  # before the trigger
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)  # the run waits: its look-back starts after its trigger
    (run,) = await runs(hub, "acme")
    assert run.status == "running"
    hub.engine.wakeup.clear()
    assert (await send(hub, "acme", reply))["status"] == "duplicate"
    assert not hub.engine.wakeup.is_set()
    assert await hub.engine.tick() == 0
    assert (await runs(hub, "acme"))[0].status == "running"
    await send(hub, "acme", {**reply, "id": "fb-2"})  # a new reply with the same key wakes it
    assert hub.engine.wakeup.is_set()
    assert await hub.engine.tick() == 1
    assert (await runs(hub, "acme"))[0].status == "stopped"


async def test_a_commit_that_starts_a_run_still_wakes_the_runs_its_other_events_await(
    hub: Hub,
) -> None:
    """A commit with both kinds of plans (a trigger and an awaited event) wakes as one with
    wake-ups only does."""
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    await drain(hub.engine)  # service 1's run waits for its reply
    acme = await hub.store.get_tenant("acme")
    assert acme is not None
    reply = {"id": "fb-1", "type": "feedback.received", "data": {"service_id": 1}}
    result = await hub.ingestor.ingest([completed(2, "svc-2"), reply], acme, "ops")
    assert result.accepted == 2
    await drain(hub.engine)
    by_service = {r.trigger["data"]["service_id"]: r for r in await runs(hub, "acme")}
    assert by_service[1].status == "stopped"
    assert by_service[2].status == "running"


async def test_plans_from_the_cache_are_the_plans_or_none(hub: Hub) -> None:
    """`cached_plans` (ingest's path without a coroutine) plans exactly as `plans` does, and
    answers None whenever it would need the store: automations not cached, or a type that
    starts runs while the running count is not cached or is at the limit."""
    await apply(hub, "acme", FEEDBACK)
    cache = hub.automation_cache

    def event(raw: dict[str, Any]) -> Any:
        return build_event(raw, tenant_id="acme", default_source="t", received_us=now_us())

    reply = event({"id": "fb-1", "type": "feedback.received", "data": {"service_id": 7}})
    trigger = event(completed(1))
    assert cache.cached_plans("acme", [reply]) is None  # nothing cached yet
    planned = await cache.plans("acme", [reply])
    assert planned == [[Wake("acme", "feedback.received", "[7]")]]
    assert cache.cached_plans("acme", [reply]) == planned
    assert cache.cached_plans("other", [reply]) is None  # another tenant's are not known
    cache.forget("acme")
    await cache.automations("acme")  # the automations cached, not the running count
    assert cache.cached_plans("acme", [reply]) == planned  # waking needs no count
    assert cache.cached_plans("acme", [trigger, reply]) is None  # starting one does
    await cache.plans("acme", [trigger])  # counts
    got = cache.cached_plans("acme", [trigger, reply])
    assert got is not None and [type(h) for hooks in got for h in hooks] == [RunStart, Wake]
    assert got[0][0].refused is None
    cache.max_running = 0  # at the limit: plans() plans the refusal
    assert cache.cached_plans("acme", [trigger]) is None
    (refused,) = (await cache.plans("acme", [trigger]))[0]
    assert isinstance(refused, RunStart) and refused.refused is not None


async def test_a_send_racing_a_cancel_makes_no_delivery(hub: Hub) -> None:
    await apply(hub, "acme", FEEDBACK)
    await send(hub, "acme", completed(1))
    await drain(hub.engine)
    hub.engine.clock.advance(2 * HOUR)
    # an engine loaded the run to send; the cancel commits before its send does
    (loaded,) = await runs(hub, "acme")
    assert await hub.automations.cancel("acme", loaded.id, "by hand", now_us())
    auto = await hub.automation_cache.version("acme", loaded.automation, loaded.version)
    assert auto is not None
    result = await advance(auto, loaded, hub.engine.clock.now_us(), hub.engine.env)
    # the engine writes the send's delivery with the run's save: both find the run changed
    sends = [hub.engine.env.pending.pop(loaded.id)]  # type: ignore[attr-defined]
    assert len(sends[0]) == 1
    now = hub.engine.clock.now_us()
    assert await hub.automations.save_many([(result, loaded.rev, False, True)], now, sends) == [
        False
    ]
    assert await deliveries(hub, "acme") == []
    assert await hub.engine.tick() == 0


async def test_a_run_on_an_older_version_keeps_that_versions_transform(hub: Hub) -> None:
    spec = {
        "name": "t",
        "on": "a.b",
        "steps": [
            {"wait": "1h"},
            {"id": "s", "send": {"destination": "wpp", "transform": '{"v": 1}'}},
        ],
    }
    await apply(hub, "acme", spec)
    await send(hub, "acme", {"id": "e1", "type": "a.b", "data": {}})
    await drain(hub.engine)
    second = {**spec, "steps": [{"send": {"destination": "wpp", "transform": '{"v": 2}'}}]}
    await apply(hub, "acme", second)
    hub.routes.forget("acme")
    transforms = {r.id: r.transform for r in await hub.routes.routes("acme")}
    assert transforms["automation:t:1:s"] == '{"v": 1}'
    assert transforms["automation:t:2:steps.0"] == '{"v": 2}'
    hub.engine.clock.advance(HOUR)
    await drain(hub.engine)
    rows = await hub.store.fetch("SELECT route_id FROM deliveries WHERE tenant_id = 'acme'")
    assert [r[0] for r in rows] == ["automation:t:1:s"]
