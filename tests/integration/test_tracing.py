"""OpenTelemetry spans, exported over OTLP/HTTP to a real collector endpoint on 127.0.0.1: the
caller's traceparent is continued through ingest, routing and the attempt, and passed on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from switchboard.config import Settings
from switchboard.delivery import Worker
from tests.conftest import LOOPBACK, Api, fresh_database, serve
from tests.integration.test_delivery import setup_route

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Collector:
    """Receives OTLP/HTTP protobuf exports and keeps every span by name."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.service_names: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    self.service_names.add(attr.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    c = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", c.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield c, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
async def traced(
    request: pytest.FixtureRequest, tmp_path: Path, collector: tuple[Collector, str]
) -> AsyncIterator[tuple[Api, Collector]]:
    c, endpoint = collector
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url,
            key_rate=0,
            tenant_rate=0,
            run_worker=0,
            egress_allow=LOOPBACK,
            internal_events="",
            otel_exporter="otlp",
            otel_endpoint=endpoint,
            otel_service_name="hub-under-test",
        )
        async with serve(settings) as api:
            yield api, c


async def test_the_callers_trace_runs_through_ingest_routing_and_the_attempt(
    traced: tuple[Api, Collector], receivers: Any
) -> None:
    api, collector = traced
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(api, key, rcv.url)
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [{"id": "o1", "type": "order.placed", "data": {}}],
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert status == 202, body
    _, stored, _ = await api.call("GET", "/v1/events/o1", key)
    assert stored["trace_id"] == CALLER_TRACE  # no trace_id in the event: the caller's
    assert api.hub.worker is not None
    worker = Worker(
        api.hub.settings,
        api.hub.store,
        api.hub.worker.channels,
        api.hub.routes,
        tracing=api.hub.tracing,
    )
    await worker.drain()
    assert len(rcv.received) == 1
    sent = {k.lower(): v for k, v in rcv.received[0]["headers"].items()}["traceparent"]
    _, sent_trace, sent_span, _ = sent.split("-")
    assert sent_trace == CALLER_TRACE

    assert await asyncio.to_thread(api.hub.tracing.flush)
    deadline = time.monotonic() + 30
    while not collector.named("switchboard.attempt"):
        assert time.monotonic() < deadline, "no attempt span reached the collector"
        await asyncio.sleep(0.05)
    (ingest,) = collector.named("switchboard.ingest")
    (route,) = collector.named("switchboard.route")
    (attempt,) = collector.named("switchboard.attempt")
    assert collector.service_names == {"hub-under-test"}
    for span in (ingest, route, attempt):
        assert span.trace_id.hex() == CALLER_TRACE
    assert ingest.parent_span_id.hex() == CALLER_SPAN  # continues the caller's span
    assert route.parent_span_id == ingest.span_id
    assert attempt.parent_span_id == ingest.span_id  # through the event's context.traceparent
    assert attempt.span_id.hex() == sent_span  # the receiver continues from the attempt
    attrs = {a.key: a.value for a in attempt.attributes}
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["switchboard.event_id"].string_value == "o1"


async def test_an_events_own_trace_id_wins_over_the_request_header(
    traced: tuple[Api, Collector],
) -> None:
    api, _ = traced
    _, key = await api.tenant()
    own = "1" * 32
    await api.call(
        "POST",
        "/v1/events",
        key,
        [
            {"id": "p1", "type": "a.b", "data": {}, "trace_id": own},
            {"id": "p2", "type": "a.b", "data": {}},
        ],
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    _, first, _ = await api.call("GET", "/v1/events/p1", key)
    _, second, _ = await api.call("GET", "/v1/events/p2", key)
    assert first["trace_id"] == own and "traceparent" not in first["context"]
    assert second["trace_id"] == CALLER_TRACE
    assert second["context"]["traceparent"].split("-")[1] == CALLER_TRACE


async def test_a_malformed_traceparent_starts_a_new_trace(traced: tuple[Api, Collector]) -> None:
    api, _ = traced
    _, key = await api.tenant()
    status, _, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        [{"id": "q1", "type": "a.b", "data": {}}],
        headers={"traceparent": "00-not-hex-01"},
    )
    assert status == 202
    _, stored, _ = await api.call("GET", "/v1/events/q1", key)
    assert len(stored["trace_id"]) == 32 and stored["trace_id"] != CALLER_TRACE
