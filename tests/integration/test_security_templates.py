"""A hostile tenant's templates: a render has a time and size budget, runs off the event loop
that serves ingest, and a delivery over budget is dead with `template_error`, never retried;
templates are checked when they are saved (docs/security.md, "Templates")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from switchboard.templates import MAX_SOURCE, Budget
from tests.conftest import Api

pytestmark = pytest.mark.security

# emits nothing for 36 million iterations: ~10 s of CPU in Jinja, far past any budget
NESTED_RANGE = (
    '{% for i in range(6000) %}{% for j in range(6000) %}{% endfor %}{% endfor %}{"ok": 1}'
)
HUNDRED_MB = '{"a": "{{ \'a\' * 100000000 }}"}'


async def eventually(check: Callable[[], Awaitable[bool]], what: str, bound: float = 60) -> None:
    """Wait until `check()` holds; the bound is generous and only keeps a failure from hanging."""
    end = time.monotonic() + bound
    while not await check():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def hook(api: Api, key: str, url: str, transform: str | None = None) -> None:
    status, d, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "hook", "kind": "webhook", "config": {"url": url}}
    )
    assert status == 201, d
    route: dict[str, Any] = {"name": "r", "destinations": ["hook"]}
    if transform is not None:
        route["transform"] = transform
    status, body, _ = await api.call("POST", "/v1/routes", key, route)
    assert status == 201, body


async def delivery_of(api: Api, key: str, event_id: str) -> dict[str, Any] | None:
    status, body, _ = await api.call("GET", f"/v1/events/{event_id}/deliveries", key)
    assert status == 200, body
    return body["data"][0] if body["data"] else None


async def send(api: Api, key: str, event_id: str) -> None:
    status, body, _ = await api.call(
        "POST", "/v1/events", key, [{"id": event_id, "type": "t.x", "data": {"n": 1}}]
    )
    assert status == 202, body


async def assert_dead_with_template_error(api: Api, key: str, event_id: str) -> None:
    async def finished() -> bool:
        d = await delivery_of(api, key, event_id)
        return d is not None and d["status"] in ("dead", "succeeded")

    await eventually(finished, f"the delivery of {event_id} to finish")
    d = await delivery_of(api, key, event_id)
    assert d is not None
    assert d["status"] == "dead", d
    assert d["attempts"] == 1, d  # not retried
    assert "template_error" in (d["last_error"] or ""), d
    status, attempts, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
    assert status == 200, attempts
    assert [a["error"] for a in attempts["data"]] == ["template_error"]


async def test_a_runaway_render_leaves_the_loop_free_and_ends_dead(
    api: Api, receivers: Any
) -> None:
    assert api.hub.renderer is not None
    api.hub.renderer.budget = Budget(timeout=3.0)  # long enough to act while it runs
    _, hostile = await api.tenant()
    _, other = await api.tenant()
    hostile_rcv, other_rcv = await receivers(), await receivers()
    await hook(api, hostile, hostile_rcv.url, transform=NESTED_RANGE)
    await hook(api, other, other_rcv.url)
    await send(api, hostile, "spin")

    async def rendering() -> bool:
        d = await delivery_of(api, hostile, "spin")
        return d is not None and d["status"] == "sending"

    await eventually(rendering, "the hostile delivery to start")
    # while it renders, the API answers and another tenant's event is ingested and delivered
    status, _, _ = await api.call("GET", "/health")
    assert status == 200
    await send(api, other, "calm")

    async def delivered() -> bool:
        return len(other_rcv.received) == 1

    await eventually(delivered, "the other tenant's delivery")
    still = await delivery_of(api, hostile, "spin")
    assert still is not None and still["status"] == "sending", still  # it was still rendering
    await assert_dead_with_template_error(api, hostile, "spin")
    assert hostile_rcv.received == []


async def test_a_hundred_megabyte_render_is_dead_with_template_error(
    api: Api, receivers: Any
) -> None:
    _, key = await api.tenant()
    rcv = await receivers()
    await hook(api, key, rcv.url, transform=HUNDRED_MB)
    await send(api, key, "big")
    await assert_dead_with_template_error(api, key, "big")
    assert rcv.received == []


async def test_a_templated_destination_over_budget_is_dead(api: Api) -> None:
    _, key = await api.tenant()
    status, d, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "box",
            "kind": "inbox",
            "config": {"recipient": "u1", "title_template": "{{ 'x'|center(1000000000) }}"},
        },
    )
    assert status == 201, d
    status, body, _ = await api.call(
        "POST", "/v1/routes", key, {"name": "r", "destinations": ["box"]}
    )
    assert status == 201, body
    await send(api, key, "wide")
    await assert_dead_with_template_error(api, key, "wide")


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ data.__class__.__mro__ }}", "attribute '__class__' is not allowed"),
        ("{% include 'secrets.txt' %}", "include, extends and import are not available"),
        ("{{ data.x ", "does not compile"),
        ("x" * 40_000, "at most 32768"),
    ],
)
async def test_templates_are_checked_when_saved(api: Api, template: str, says: str) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {
            "name": "s",
            "kind": "slack",
            "config": {"url": "https://hooks.example/x", "template": template},
        },
    )
    assert status == 422, body
    assert body["error"]["details"][0]["path"] == "/config/template"
    assert says in body["error"]["message"]
    await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "hook", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    )
    status, body, _ = await api.call(
        "POST", "/v1/routes", key, {"name": "r", "destinations": ["hook"], "transform": template}
    )
    assert body["error"]["details"][0]["path"] == "/transform"
    if len(template) > MAX_SOURCE:  # the route's model bounds it, as the document says
        assert status == 400, body
        assert str(MAX_SOURCE) in body["error"]["message"]
    else:
        assert status == 422, body
        assert says in body["error"]["message"]
