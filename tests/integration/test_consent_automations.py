"""Automations that require consent, on both stores with a real webhook receiver: their sends
are suppressed without the grant, a withdrawal cancels the subject's waiting runs (reason
`consent:<purpose>`) with its pending deliveries, and a withdrawal raced against a stream of
sends lets nothing out after it is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from switchboard.automation_engine import FakeClock
from switchboard.envelope import now_us
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_delivery import send

OPEN = {"type": "object"}
MARKETING = {
    "name": "customer_created",
    "versions": [{"version": "1.0", "schema": OPEN}],
    "consent": {"purpose": "marketing", "field": "data.consentimento_marketing"},
}
CAMPAIGN: dict[str, Any] = {
    "name": "reward-reminder",
    "on": "reward_offered",
    "requires_consent": ["marketing"],
    "steps": [
        {"id": "offer", "send": {"destination": "zap"}},
        {"wait": "1d"},
        {"id": "reminder", "send": {"destination": "zap"}},
    ],
}


async def setup(api: Api, url: str) -> str:
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/event-types/customer_created", key, MARKETING)
    assert status == 200, body
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "zap", "kind": "webhook", "config": {"url": url}}
    )
    assert status == 201, body
    status, body, _ = await api.call("PUT", "/v1/automations/reward-reminder", key, CAMPAIGN)
    assert status == 201, body
    return key


def consent(subject: str, granted: bool) -> dict[str, Any]:
    return {
        "type": "customer_created",
        "subject": subject,
        "data": {"consentimento_marketing": granted},
    }


async def runs_by_subject(api: Api, key: str) -> dict[str, list[tuple[str, str | None]]]:
    _, runs, _ = await api.call("GET", "/v1/automations/reward-reminder/runs?limit=1000", key)
    out: dict[str, list[tuple[str, str | None]]] = {}
    for r in runs["data"]:
        out.setdefault(r["trigger"]["subject"], []).append((r["status"], r["reason"]))
    return out


async def ticks(api: Api) -> None:
    while await api.hub.engine.tick():
        pass


async def test_withdrawal_cancels_the_subjects_waiting_runs_and_unconsented_sends_are_suppressed(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    rcv = await receivers()
    key = await setup(api, rcv.url)
    clock = FakeClock(now_us() + 600_000_000)
    api.hub.engine.clock = clock
    await send(api, key, [consent("ana", True), consent("bia", True), consent("caio", False)])
    await send(
        api,
        key,
        [
            {"id": f"offer-{s}", "type": "reward_offered", "subject": s, "data": {}}
            for s in ("ana", "bia", "caio")
        ],
    )
    await ticks(api)  # every run sends its offer and waits a day
    await worker_for(api).drain()
    assert sorted(r["json"]["subject"] for r in rcv.received) == ["ana", "bia"]
    _, listing, _ = await api.call("GET", "/v1/deliveries?status=suppressed", key)
    assert [d["last_error"] for d in listing["data"]] == ["consent:marketing"]  # caio's offer
    await send(api, key, [consent("ana", False)])  # ana withdraws while her run waits
    runs = await runs_by_subject(api, key)
    assert runs["ana"] == [("cancelled", "consent:marketing")]
    assert runs["bia"] == [("running", None)]
    clock.advance(86_400 + 60)
    await ticks(api)
    await worker_for(api).drain()
    assert sorted(r["json"]["subject"] for r in rcv.received) == ["ana", "bia", "bia"]
    runs = await runs_by_subject(api, key)
    assert runs["ana"] == [("cancelled", "consent:marketing")]
    assert runs["bia"] == [("completed", None)]


async def test_a_withdrawal_by_api_cancels_runs_unless_a_later_grant_is_recorded(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    rcv = await receivers()
    key = await setup(api, rcv.url)
    api.hub.engine.clock = FakeClock(now_us() + 600_000_000)
    for who in ("dani", "edu"):
        await api.call(
            "POST",
            f"/v1/recipients/{who}/consents",
            key,
            {"purpose": "marketing", "action": "grant"},
        )
        await send(api, key, [{"type": "reward_offered", "subject": who, "data": {}}])
    await ticks(api)
    # an old withdrawal arriving late does not undo the newer grant
    late = {"purpose": "marketing", "action": "withdraw", "at": "2020-01-01T00:00:00Z"}
    assert (await api.call("POST", "/v1/recipients/edu/consents", key, late))[0] == 201
    now = {"purpose": "marketing", "action": "withdraw", "origin": "support"}
    assert (await api.call("POST", "/v1/recipients/dani/consents", key, now))[0] == 201
    runs = await runs_by_subject(api, key)
    assert runs == {"dani": [("cancelled", "consent:marketing")], "edu": [("running", None)]}


@pytest.mark.security
async def test_a_bad_requires_consent_is_a_422_naming_the_field(hub_api: Api) -> None:
    _, key = await hub_api.tenant()
    for bad, path in (
        ({**CAMPAIGN, "requires_consent": "marketing"}, "/requires_consent"),
        ({**CAMPAIGN, "requires_consent": ["Marketing!"]}, "/requires_consent/0"),
        ({**CAMPAIGN, "requires_consent": ["m"] * 9}, "/requires_consent"),
    ):
        status, body, _ = await hub_api.call("PUT", "/v1/automations/reward-reminder", key, bad)
        assert status == 422, body
        assert path in {d["path"] for d in body["error"]["details"]}, body


async def test_a_withdrawal_raced_against_sends_lets_nothing_out_after_it(
    hub_api: Api, receivers: Any
) -> None:
    """Offers for one customer keep arriving while the engine runs their send steps and a worker
    delivers them; the withdrawal lands in the middle. Once it is acknowledged, at most what was
    already succeeded or on the wire reaches the receiver; every later send is cancelled or
    suppressed with consent:marketing, and every run still waiting is cancelled."""
    api = hub_api
    rcv = await receivers(delay=0.002)
    key = await setup(api, rcv.url)
    api.hub.engine.clock = FakeClock(now_us() + 600_000_000)
    await send(api, key, [consent("fabi", True)])
    worker = worker_for(api)
    stop = asyncio.Event()

    async def engine_and_worker() -> None:
        while not stop.is_set():
            await ticks(api)
            await worker.drain(within=5)
            await asyncio.sleep(0)

    async def offers(first: int, count: int) -> None:
        for n in range(first, first + count):
            offer = {"id": f"o-{n}", "type": "reward_offered", "subject": "fabi", "data": {}}
            await send(api, key, [offer])

    running = asyncio.create_task(engine_and_worker())
    sending = asyncio.create_task(offers(0, 30))
    try:
        async with asyncio.timeout(120):  # a generous bound, so a bug fails instead of hanging
            while len(rcv.received) < 3:  # the race is on: offers are being delivered
                await asyncio.sleep(0.005)
        await send(api, key, [consent("fabi", False)])
        _, listing, _ = await api.call("GET", "/v1/deliveries?limit=1000", key)
        on_the_wire = sum(d["status"] in ("succeeded", "sending") for d in listing["data"])
        await sending
        await offers(100, 5)  # after the withdrawal
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await running
    await ticks(api)
    await worker.drain()
    _, listing, _ = await api.call("GET", "/v1/deliveries?limit=1000", key)
    final = [(d["status"], d["last_error"]) for d in listing["data"]]
    succeeded = sum(s == "succeeded" for s, _ in final)
    assert len(rcv.received) == succeeded <= on_the_wire
    assert all(
        s == "succeeded" or (s in ("suppressed", "cancelled") and why == "consent:marketing")
        for s, why in final
    ), final
    # nothing waits any more: each run was cancelled by the withdrawal, or (started after it)
    # sent only suppressed offers and waits for its reminder, which will be suppressed too
    runs = (await runs_by_subject(api, key))["fabi"]
    assert len(runs) == 35
    assert any(r == ("cancelled", "consent:marketing") for r in runs)
    api.hub.engine.clock = FakeClock(now_us() + 2 * 86_400_000_000)
    await ticks(api)
    await worker.drain()
    assert len(rcv.received) == succeeded
    _, ledger, _ = await api.call("GET", "/v1/recipients/fabi/consents", key)
    assert ledger["state"] == {"marketing": "withdrawn"}
