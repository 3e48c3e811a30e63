"""The worker under abuse and accident: attempt history across manual retries, a delivery whose
handling raises, and one tenant's hanging destination against another tenant's deliveries."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.integration.conftest import Clock, worker_for
from tests.integration.test_delivery import send, setup_route


async def _fail_round(api: Api, worker: Any, clock: Clock, attempts: int) -> None:
    """Run one round of the schedule "0,5s,5s,5s": the first attempt is due now, each next one
    five seconds (plus jitter) later."""
    await worker.drain()
    for _ in range(attempts - 1):
        clock.advance(7)
        await worker.drain()


async def test_every_attempt_is_kept_across_dlq_and_manual_retries(
    hub_api: Api, receivers: Any
) -> None:
    """Issue 22: failed 4 times, retried from the DLQ, failed 4 more, retried again, succeeded.
    The receiver got 9 POSTs; the history must list all 9, numbered 1…9, and the delivery must
    say so."""
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(answers=[500] * 8)
    await setup_route(api, key, rcv.url, retry_schedule="0,5s,5s,5s")
    await send(api, key, [{"id": "h1", "type": "a.b", "data": {}}])
    clock = Clock()
    worker = worker_for(api, clock)

    await _fail_round(api, worker, clock, 4)
    _, dl, _ = await api.call("GET", "/v1/events/h1/deliveries", key)
    d = dl["data"][0]
    assert (d["status"], d["attempts"], len(rcv.received)) == ("dead", 4, 4)

    status, body, _ = await api.call("POST", "/v1/dlq/retry", key, {"ids": [d["id"]]})
    assert (status, body) == (200, {"requeued": 1})
    await _fail_round(api, worker, clock, 4)  # the schedule starts over: four more attempts
    status, d, _ = await api.call("GET", f"/v1/deliveries/{d['id']}", key)
    assert (d["status"], d["attempts"], len(rcv.received)) == ("dead", 8, 8), d

    status, body, _ = await api.call("POST", f"/v1/deliveries/{d['id']}/retry", key)
    assert (status, body) == (200, {"requeued": 1})
    await worker.drain()
    assert len(rcv.received) == 9

    status, d, _ = await api.call("GET", f"/v1/deliveries/{d['id']}", key)
    assert (d["status"], d["attempts"]) == ("succeeded", 9), d
    status, att, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
    assert status == 200, att
    assert [a["n"] for a in att["data"]] == list(range(1, 10))
    assert [a["status_code"] for a in att["data"]] == [500] * 8 + [200]
    assert [a["ok"] for a in att["data"]] == [False] * 8 + [True]
    # every POST carried the delivery's one webhook-id, and the attempt number went on counting
    assert len({r["headers"]["webhook-id"] for r in rcv.received}) == 1
    assert [r["headers"]["x-switchboard-attempt"] for r in rcv.received] == [
        str(n) for n in range(1, 10)
    ]
