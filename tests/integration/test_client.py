"""The Python SDK against a real HTTP server on 127.0.0.1 that speaks the ingest contract.

The server is a few lines of aiohttp.web, not the hub: it records what arrives, deduplicates by
id, and can be told to fail in the ways the client must survive.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from switchboard.client import AsyncClient, Client

API_KEY = "sk_test_do_not_log_me"


@dataclass
class Request:
    at: float  # time.monotonic() when it arrived
    count: int  # events in the body
    status: int  # what the server answered (0: the connection was dropped)


@dataclass
class Hub:
    """A fake ingest endpoint. Set the counters to make the next requests fail."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    answer_503: int = 0  # answer 503 without storing
    store_then_503: int = 0  # store, then answer 503 (the 202 was "lost")
    answer_429: int = 0  # answer 429 with Retry-After: 1
    drop: int = 0  # close the connection without an answer
    status: int | None = None  # answer every request with this error status
    require: str | None = None  # reject events whose data lacks this field
    max_events: int | None = None  # answer 413 above this many events per request
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/events", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        host, bound = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stored(self) -> int:
        return len(self.events)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        batch = await request.json()
        seen = Request(time.monotonic(), len(batch), 0)
        self.requests.append(seen)
        response = self._answer(request, batch)
        if response is None:
            assert request.transport is not None
            request.transport.close()
            response = web.Response(status=500)  # never reaches the client
        seen.status = response.status
        return response

    def _answer(self, request: web.Request, batch: list[dict[str, Any]]) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return error(401, "unauthorized", "unknown API key")
        if self.drop:
            self.drop -= 1
            return None
        if self.status is not None:
            return error(self.status, "bad_request", "the hub says no")
        if self.answer_503:
            self.answer_503 -= 1
            return error(503, "store_unavailable", "try again shortly")
        if self.answer_429:
            self.answer_429 -= 1
            return web.json_response(
                {"error": {"code": "rate_limited", "message": "slow down"}},
                status=429,
                headers={"Retry-After": "1"},
            )
        if self.max_events is not None and len(batch) > self.max_events:
            return error(413, "payload_too_large", f"at most {self.max_events} events")
        results = [self._store(index, event) for index, event in enumerate(batch)]
        if self.store_then_503:
            self.store_then_503 -= 1
            return error(503, "store_unavailable", "committed, then fell over")
        rejected = sum(r["status"] == "rejected" for r in results)
        body = {
            "results": results,
            "accepted": sum(r["status"] == "accepted" for r in results),
            "duplicates": sum(r["status"] == "duplicate" for r in results),
            "rejected": rejected,
        }
        return web.json_response(body, status=422 if rejected == len(batch) else 202)

    def _store(self, index: int, event: dict[str, Any]) -> dict[str, Any]:
        if self.require is not None and self.require not in event["data"]:
            path = f"/data/{self.require}"
            message = f"'{self.require}' is a required property"
            return {
                "index": index,
                "status": "rejected",
                "errors": [{"path": path, "message": message}],
            }
        if event["id"] in self.events:
            return {
                "index": index,
                "status": "duplicate",
                "id": event["id"],
                "original_received_at": "2025-01-01T00:00:00Z",
            }
        self.events[event["id"]] = event
        return {"index": index, "status": "accepted", "id": event["id"]}


def error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": []}}
    return web.json_response(body, status=status)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    server = Hub()
    await server.start()
    yield server
    await server.stop()


def fast(url: str, **options: Any) -> AsyncClient:
    """A client with backoffs small enough for tests."""
    settings: dict[str, Any] = {
        "flush_interval": 0.01,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "timeout": 2.0,
    }
    return AsyncClient(url, API_KEY, **(settings | options))


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- emitting and batching --------------------------------------------------------------------


async def test_emit_returns_a_uuid7_at_once_and_the_event_arrives(hub: Hub) -> None:
    async with fast(hub.url, source="clinic-crm") as client:
        event_id = client.emit(
            "purchase_made",
            {"value": 120.5, "currency": "BRL"},
            subject="cust-9",
            actor={"id": "clinic-1", "type": "clinic"},
        )
        assert uuid.UUID(event_id).version == 7
        assert hub.requests == []  # nothing was awaited: emit did not touch the network
        assert client.stats.queued == 1
        await client.flush()
        assert client.stats.sent == 1
    stored = hub.events[event_id]
    assert stored["type"] == "purchase_made"
    assert stored["data"] == {"value": 120.5, "currency": "BRL"}
    assert stored["source"] == "clinic-crm"
    assert stored["subject"] == "cust-9"
    assert stored["actor"] == {"id": "clinic-1", "type": "clinic"}
    assert datetime.fromisoformat(stored["time"]).tzinfo is not None


async def test_explicit_id_is_kept_and_repeats_count_as_sent(hub: Hub) -> None:
    async with fast(hub.url) as client:
        assert client.emit("billing.payment_received", {"amount": 1}, id="pi_123") == "pi_123"
        client.emit("billing.payment_received", {"amount": 1}, id="pi_123")
        await client.flush()
        assert client.stats.sent == 2
    assert list(hub.events) == ["pi_123"]


async def test_200_emits_go_out_as_two_requests_of_100(hub: Hub) -> None:
    async with fast(hub.url, batch_size=100, flush_interval=5.0) as client:
        for n in range(200):
            client.emit("lead.created", {"n": n})
        await client.flush(timeout=5)
        assert client.stats.sent == 200
    assert [r.count for r in hub.requests] == [100, 100]
    assert hub.stored() == 200


async def test_a_partial_batch_goes_out_after_flush_interval_without_flush(hub: Hub) -> None:
    client = fast(hub.url, batch_size=100, flush_interval=0.05)
    for n in range(3):
        client.emit("lead.created", {"n": n})
    await wait_until(lambda: hub.stored() == 3, "the interval to send the partial batch")
    assert [r.count for r in hub.requests] == [3]
    await client.close()


async def test_wrong_arguments_raise_in_the_caller(hub: Hub) -> None:
    async with fast(hub.url) as client:
        with pytest.raises(TypeError, match="type"):
            client.emit(42, {})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="mapping"):
            client.emit("a.b", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unknown envelope field"):
            client.emit("a.b", {}, tenant_id="t-1")
        with pytest.raises(TypeError, match="JSON"):
            client.emit("a.b", {"when": {1, 2}})
        with pytest.raises(ValueError, match="timezone"):
            client.emit("a.b", {}, time=datetime(2025, 1, 1))
        assert client.stats.queued == 0


# --- retries --------------------------------------------------------------------------------


async def test_503_is_retried_and_each_event_is_stored_once(hub: Hub) -> None:
    hub.answer_503 = 2
    hub.store_then_503 = 1  # the third try commits but its answer is lost
    async with fast(hub.url) as client:
        ids = [client.emit("consentimento_registrado", {"n": n}) for n in range(10)]
        await client.flush(timeout=5)
        stats = client.stats
    assert [r.status for r in hub.requests] == [503, 503, 503, 202]
    assert (stats.sent, stats.retries, stats.failed) == (10, 3, 0)
    assert sorted(hub.events) == sorted(ids)


async def test_429_waits_at_least_retry_after(hub: Hub) -> None:
    hub.answer_429 = 1
    async with fast(hub.url) as client:  # backoff_max 0.05: only Retry-After explains a wait
        client.emit("a.b", {})
        await client.flush(timeout=5)
        assert client.stats.sent == 1
    first, second = hub.requests
    assert first.status == 429
    assert second.at - first.at >= 0.9  # Retry-After: 1, with slack for clock granularity


async def test_refused_connections_are_retried_until_the_server_starts() -> None:
    port = free_port()
    client = fast(f"http://127.0.0.1:{port}", max_retries=200)
    event_id = client.emit("a.b", {"n": 1})
    await wait_until(lambda: client.stats.retries >= 2, "refused attempts")
    server = Hub()
    await server.start(port)
    try:
        await client.flush(timeout=5)
        assert client.stats.sent == 1
        assert list(server.events) == [event_id]
    finally:
        await client.close()
        await server.stop()


async def test_a_dropped_connection_is_retried(hub: Hub) -> None:
    hub.drop = 1
    async with fast(hub.url) as client:
        client.emit("a.b", {})
        await client.flush(timeout=5)
        assert (client.stats.sent, client.stats.retries) == (1, 1)
    assert hub.stored() == 1


async def test_gives_up_after_max_retries(hub: Hub) -> None:
    hub.answer_503 = 100
    async with fast(hub.url, max_retries=2) as client:
        client.emit("a.b", {})
        client.emit("a.b", {})
        await client.flush(timeout=5)
        stats = client.stats
    assert (stats.failed, stats.retries, stats.sent) == (2, 2, 0)
    assert len(hub.requests) == 3


async def test_400_fails_without_retry_and_logs_the_body_not_the_key(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.status = 400
    caplog.set_level(logging.DEBUG, logger="switchboard.client")
    async with fast(hub.url) as client:
        for _ in range(5):
            client.emit("a.b", {})
        await client.flush(timeout=5)
        stats = client.stats
    assert (stats.failed, stats.retries, stats.sent) == (5, 0, 0)
    assert len(hub.requests) == 1
    failed = [r for r in caplog.records if getattr(r, "action", None) == "batch_failed"]
    assert failed and "the hub says no" in failed[0].getMessage()
    assert API_KEY not in caplog.text


async def test_wrong_key_fails_with_401(hub: Hub) -> None:
    async with AsyncClient(hub.url, "sk_wrong", flush_interval=0.01) as client:
        client.emit("a.b", {})
        await client.flush(timeout=5)
        assert client.stats.failed == 1
    assert [r.status for r in hub.requests] == [401]


async def test_413_splits_the_batch_until_it_fits(hub: Hub) -> None:
    hub.max_events = 10
    async with fast(hub.url) as client:
        for n in range(25):
            client.emit("a.b", {"n": n})
        await client.flush(timeout=5)
        assert (client.stats.sent, client.stats.failed) == (25, 0)
    assert hub.stored() == 25
    assert all(r.count <= 10 for r in hub.requests if r.status == 202)


# --- per-event results, queue limits, shutdown ------------------------------------------------


async def test_rejected_events_are_counted_and_logged_with_paths(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.require = "email"
    caplog.set_level(logging.WARNING, logger="switchboard.client")
    async with fast(hub.url) as client:
        client.emit("lead.created", {"email": "a@example.com"})
        bad = client.emit("lead.created", {"name": "Maria"})
        client.emit("lead.created", {"email": "b@example.com"})
        await client.flush(timeout=5)
        assert (client.stats.sent, client.stats.rejected, client.stats.retries) == (2, 1, 0)
        client.emit("lead.created", {})  # all rejected: the hub answers 422, same shape
        await client.flush(timeout=5)
        assert client.stats.rejected == 2
    rejected = [r for r in caplog.records if getattr(r, "action", None) == "event_rejected"]
    assert rejected[0].event_id == bad  # type: ignore[attr-defined]
    assert "/data/email" in rejected[0].getMessage()
    assert [r.status for r in hub.requests] == [202, 422]


async def test_a_full_queue_drops_and_counts_without_raising(hub: Hub) -> None:
    async with fast(hub.url, max_queue=5) as client:
        ids = [client.emit("a.b", {"n": n}) for n in range(8)]  # no await: nothing sent yet
        assert len(set(ids)) == 8
        assert (client.stats.queued, client.stats.dropped) == (5, 3)
        await client.flush(timeout=5)
        assert client.stats.sent == 5
    assert sorted(hub.events) == sorted(ids[:5])


async def test_close_drains_the_queue_and_later_emits_are_dropped(hub: Hub) -> None:
    client = fast(hub.url, flush_interval=10.0)
    for n in range(50):
        client.emit("a.b", {"n": n})
    await client.close()
    assert hub.stored() == 50
    client.emit("a.b", {})  # after close: counted, not raised
    assert (client.stats.sent, client.stats.dropped) == (50, 1)


async def test_close_with_timeout_gives_up_on_a_hub_that_stays_down(hub: Hub) -> None:
    hub.answer_503 = 10_000
    client = fast(hub.url, max_retries=10_000)
    for _ in range(3):
        client.emit("a.b", {})
    await client.flush(timeout=0.1)  # returns, does not raise
    await client.close(timeout=0.1)
    stats = client.stats
    assert (stats.queued, stats.sent, stats.failed) == (3, 0, 3)


# --- the sync client ------------------------------------------------------------------------


class ThreadedHub:
    """The fake hub on its own loop in its own thread, for code that has no loop."""

    def __init__(self) -> None:
        self.hub = Hub()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Hub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.hub.start(), self._loop).result(5)
        return self.hub

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.hub.stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def test_sync_client_from_plain_threads() -> None:
    with ThreadedHub() as hub:
        hub.answer_503 = 1
        client = Client(
            hub.url,
            API_KEY,
            source="legal-saas",
            flush_interval=0.01,
            backoff_base=0.01,
            backoff_max=0.05,
        )
        ids: list[str] = []

        def worker(n: int) -> None:
            for i in range(25):
                ids.append(client.emit("billing.payment_received", {"worker": n, "i": i}))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        client.flush(timeout=5)
        stats = client.stats
        assert (stats.queued, stats.sent, stats.retries) == (100, 100, 1)
        assert sorted(hub.events) == sorted(ids)
        assert all(e["source"] == "legal-saas" for e in hub.events.values())
        client.close()
        client.emit("a.b", {})  # after close: dropped, no error
        assert client.stats.dropped == 1


def test_sync_client_as_context_manager_flushes_on_exit() -> None:
    with ThreadedHub() as hub:
        with Client(hub.url, API_KEY, flush_interval=10.0) as client:
            event_id = client.emit("purchase_made", {"value": 10})
            with pytest.raises(TypeError):
                client.emit("purchase_made", "not a mapping")  # type: ignore[arg-type]
        assert list(hub.events) == [event_id]
