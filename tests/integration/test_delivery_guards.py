"""The worker under abuse and accident: attempt history across manual retries, a delivery whose
handling raises, and one tenant's hanging destination against another tenant's deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

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


async def _delivery_of(api: Api, key: str, event_id: str) -> dict[str, Any]:
    _, dl, _ = await api.call("GET", f"/v1/events/{event_id}/deliveries", key)
    [d] = dl["data"]
    return d  # type: ignore[no-any-return]


async def _settled(api: Api, key: str, delivery_id: str) -> tuple[dict[str, Any], list[Any]]:
    status, d, _ = await api.call("GET", f"/v1/deliveries/{delivery_id}", key)
    assert status == 200, d
    status, att, _ = await api.call("GET", f"/v1/deliveries/{delivery_id}/attempts", key)
    assert status == 200, att
    return d, att["data"]


@pytest.mark.security
async def test_an_event_that_breaks_rendering_ends_retried_then_dead_never_stuck_sending(
    hub_api: Api, receivers: Any
) -> None:
    """Issue 13 item 5: a stored row that made handling raise (first seen: an event time past
    9999-12-31 UTC, which reads now render) left its delivery 'sending', to be claimed and crash
    again at every lease's end. Planted here: a destination row whose headers are not a map."""
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url, retry_schedule="0,5s")
    await send(api, key, [{"id": "far", "type": "a.b", "data": {}}])
    d = await _delivery_of(api, key, "far")
    # written behind the API's back, as an old release or a hand edit could have left it
    await api.hub.store.execute(
        "UPDATE destinations SET config = ? WHERE id = ?",
        (json.dumps({"url": rcv.url, "headers": [["x-a", "b"]]}), d["destination_id"]),
    )
    clock = Clock()
    worker = worker_for(api, clock)
    await worker.drain()
    d, attempts = await _settled(api, key, d["id"])
    assert d["status"] == "retrying" and d["attempts"] == 1, d
    assert "internal error" in d["last_error"] and "TypeError" in d["last_error"], d
    assert [(a["n"], a["ok"], a["error"]) for a in attempts] == [(1, False, "other")]
    assert "internal error" in attempts[0]["message"]
    clock.advance(7)
    await worker.drain()
    d, attempts = await _settled(api, key, d["id"])
    assert (d["status"], d["attempts"], len(attempts)) == ("dead", 2, 2), d
    assert rcv.received == []  # nothing half-rendered was sent


@pytest.mark.security
async def test_a_delivery_whose_event_row_is_gone_is_finished_not_left_sending(
    hub_api: Api, receivers: Any
) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url, retry_schedule="0")
    await send(
        api,
        key,
        [{"id": "gone", "type": "a.b", "data": {}}, {"id": "ok", "type": "a.b", "data": {}}],
    )
    gone = await _delivery_of(api, key, "gone")
    ok = await _delivery_of(api, key, "ok")
    await api.hub.store.execute("DELETE FROM events WHERE id = ?", ("gone",))
    await worker_for(api).drain()
    d, attempts = await _settled(api, key, gone["id"])
    assert d["status"] == "dead" and "event is gone" in d["last_error"], d
    assert [a["n"] for a in attempts] == [1]
    d, _ = await _settled(api, key, ok["id"])
    assert d["status"] == "succeeded"  # claimed in the same batch, sent as usual
    assert [r["json"]["id"] for r in rcv.received] == ["ok"]


@pytest.mark.security
async def test_a_reply_with_nul_bytes_is_recorded_not_resent_forever(hub_api: Api) -> None:
    """PostgreSQL's text cannot hold NUL: recording such a reply failed every time, and the
    delivery stayed 'sending' (sent again at each lease's end)."""
    api = hub_api
    hits: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=500, body=b"bad\x00reply", content_type="text/plain")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        _, key = await api.tenant()
        await setup_route(api, key, f"http://127.0.0.1:{port}/hook", retry_schedule="0")
        await send(api, key, [{"id": "nul", "type": "a.b", "data": {}}])
        d = await _delivery_of(api, key, "nul")
        await worker_for(api).drain()
        d, attempts = await _settled(api, key, d["id"])
        assert d["status"] == "dead", d
        assert [a["status_code"] for a in attempts] == [500]
        assert attempts[0]["response"].startswith("bad") and "\x00" not in attempts[0]["response"]
        assert len(hits) == 1
    finally:
        await runner.cleanup()


class _Silent:
    """A TCP server on 127.0.0.1 that accepts every connection, reads, and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass  # read the request, answer nothing

    async def __aenter__(self) -> _Silent:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._writers:
            w.close()
        assert self._server is not None
        self._server.close()


async def _until(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return condition()


@pytest.mark.security
async def test_a_tenant_with_a_hanging_destination_does_not_starve_another(
    hub_api: Api, receivers: Any
) -> None:
    """Issue 13 item 4: tenant A's destination accepts and never answers, at the largest
    timeout and concurrency allowed, with 1,000 events due; tenant B's one webhook must still
    arrive within 2 s (it took 57.8 s: A's deliveries filled every slot of the worker)."""
    api = hub_api
    _, key_a = await api.tenant()
    _, key_b = await api.tenant()
    rcv_b = await receivers()
    async with _Silent() as silent:
        # the default SWITCHBOARD_MAX_DESTINATION_TIMEOUT and _CONCURRENCY
        await setup_route(api, key_a, silent.url, timeout=30, concurrency=100)
        await setup_route(api, key_b, rcv_b.url)
        await send(api, key_a, [{"type": "a.b", "data": {"i": i}} for i in range(1000)])
        worker = worker_for(api)
        task = asyncio.create_task(worker.run())
        try:
            # A fills what it may: every one of its destination's senders hangs
            assert await _until(lambda: silent.connections >= 100, 10), silent.connections
            await send(api, key_b, [{"id": "b-1", "type": "a.b", "data": {}}])
            assert await _until(lambda: len(rcv_b.received) == 1, 2.0)
            assert worker._tenant_held and max(worker._tenant_held.values()) <= int(
                worker.settings.worker_concurrency * worker.settings.worker_tenant_share
            )
        finally:
            await worker.stop(grace=0.1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.security
async def test_destination_concurrency_and_timeout_over_the_maxima_are_refused(
    hub_api: Api,
) -> None:
    api = hub_api
    _, key = await api.tenant()
    base = {"name": "big", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    for field, value in (("concurrency", 1000), ("timeout", 60)):
        status, body, _ = await api.call("POST", "/v1/destinations", key, {**base, field: value})
        assert status == 422, body
        assert [d["path"] for d in body["error"]["details"]] == [f"/{field}"], body
    status, d, _ = await api.call("POST", "/v1/destinations", key, {**base, "concurrency": 100})
    assert status == 201, d
    status, body, _ = await api.call("PATCH", "/v1/destinations/big", key, {"timeout": 30.5})
    assert status == 422 and body["error"]["details"][0]["path"] == "/timeout", body


@pytest.mark.security
async def test_a_stored_destination_over_lowered_maxima_is_held_to_them(
    hub_api: Api, receivers: Any
) -> None:
    """A destination saved before the operator lowered the maxima is sent within them."""
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers(delay=0.2)
    await setup_route(api, key, rcv.url, concurrency=10, route={"types": ["a.*"]})
    await send(api, key, [{"type": "a.b", "data": {"i": i}} for i in range(10)])
    await worker_for(api, max_destination_concurrency=3).drain()
    assert len(rcv.received) == 10 and rcv.peak <= 3, rcv.peak
    async with _Silent() as silent:
        await setup_route(api, key, silent.url, name="slow", timeout=20, route={"types": ["s.x"]})
        await send(api, key, [{"id": "s-1", "type": "s.x", "data": {}}])
        started = time.monotonic()
        await worker_for(api, max_destination_timeout=0.5).drain(within=10)
        assert time.monotonic() - started < 10  # not the destination's 20 s
        d = await _delivery_of(api, key, "s-1")
        _, att, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
        assert [a["error"] for a in att["data"]] == ["timeout"], att
