"""Logs never carry PII values: the JSON log lines of a whole run (ingest accepted and rejected,
deliveries that fail with the body echoed back and then succeed, inbox, provider requests
verified and not) are scanned for the raw values."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from switchboard.logs import JsonFormatter
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_privacy_masking import CPF, EMAIL, LEAD, LEAD_TYPE, NAME, NOTE, PHONE

pytestmark = pytest.mark.security


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every record of every logger, formatted as the hub writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.fixture
async def failing_echo() -> Any:
    """Answers 500 with the body it got the first time, 200 after that."""
    seen: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(body)
        return web.Response(status=500 if len(seen) == 1 else 200, body=body)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", seen
    await runner.cleanup()


async def test_the_logs_of_a_full_run_hold_no_pii(
    hub_api: Api, failing_echo: Any, json_logs: io.StringIO
) -> None:
    api = hub_api
    url, seen = failing_echo
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    assert status in (200, 201), body
    for dest in (
        {"name": "hook", "kind": "webhook", "config": {"url": url}, "retry_schedule": ["0s"]},
        {
            "name": "box",
            "kind": "inbox",
            "config": {"recipient": "u1", "body_template": "{{ data.name }}"},
        },
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", key, dest)
        assert status == 201, body
    route = {"name": "r", "types": ["lead.*"], "destinations": ["hook", "box"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    events = [
        {"type": "lead.created", "subject": "p-1", "data": LEAD},
        # rejected: the schema's errors must not quote the values either
        {"type": "lead.created", "subject": "p-2", "data": {**LEAD, "plan": 5, "email": 7}},
    ]
    status, body, _ = await api.call("POST", "/v1/events", key, events)
    assert status == 202, body
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
    worker = worker_for(api)
    await worker.drain()
    assert len(seen) == 1  # the first try failed with the body echoed
    listed = (await api.call("GET", "/v1/deliveries", key))[1]["data"]
    [hook] = [d for d in listed if d["status"] not in ("succeeded",)]
    status, body, _ = await api.call("POST", f"/v1/deliveries/{hook['id']}/retry", key)
    assert status in (200, 202), (hook, body)
    await worker.drain()
    assert len(seen) == 2
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "form",
            "preset": "token",
            "preset_config": {"headers": ["X-Token"]},
            "secrets": ["tok_0123456789abcdefghij"],
        },
    )
    assert status == 201, source
    payload = orjson.dumps({"lead": {"name": NAME, "email": EMAIL, "phone": PHONE, "cpf": CPF}})
    for token in ("tok_0123456789abcdefghij", "wrong"):
        await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=payload,
            headers={"Content-Type": "application/json", "X-Token": token},
        )
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = json_logs.getvalue().splitlines()
    assert lines, "the run logged nothing: the scan would prove nothing"
    for line in lines:
        for raw in (NAME, EMAIL, PHONE, CPF, NOTE, "99876-5432", "456.789"):
            assert raw not in line, line
