"""Rate limits that batches cannot slip past, limits on the public source URLs, and forwarding
headers believed only from trusted proxies — on both stores."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.client import AsyncClient
from switchboard.config import Settings
from tests.conftest import Api, fresh_database, serve

pytestmark = pytest.mark.security

Hub = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture(params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Hub:
    """A hub on a fresh database of either store, with the settings the test names."""

    @contextlib.asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[Api]:
        async with fresh_database(request.param, tmp_path) as url:
            base = {"key_rate": 0.0, "tenant_rate": 0.0, **settings}
            async with serve(Settings(database_url=url, **base)) as api:
                yield api

    return start


def _events(n: int, prefix: str = "e") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "type": "a.b", "data": {"i": i}} for i in range(n)]


async def _count(api: Api, key: str) -> int:
    status, page, _ = await api.call("GET", "/v1/events?limit=1000", key)
    assert status == 200
    return len(page["data"])


# --- batches cost their events --------------------------------------------------------------


async def test_batches_larger_than_the_burst_are_429_saying_the_most(hub: Hub) -> None:
    async with hub(key_rate=1.0, key_burst=20.0) as api:
        _, key = await api.tenant()
        for n in range(5):  # the reported attack: five 1,000-event batches with a burst of 20
            status, body, headers = await api.call(
                "POST", "/v1/events", key, _events(1000, f"b{n}")
            )
            assert status == 429, body
            assert "at most 20 at once" in body["error"]["message"]
            assert "Retry-After" not in headers  # waiting never makes it pass
        assert await _count(api, key) == 0
        assert (await api.call("POST", "/v1/events", key, _events(20)))[0] == 202


async def test_a_batch_takes_as_many_tokens_as_it_has_events(hub: Hub) -> None:
    async with hub(key_rate=0.5, key_burst=20.0) as api:
        _, key = await api.tenant()
        assert (await api.call("POST", "/v1/events", key, _events(15, "a")))[0] == 202
        status, body, headers = await api.call("POST", "/v1/events", key, _events(10, "b"))
        assert status == 429, body  # 5 tokens left, 10 asked
        assert int(headers["Retry-After"]) >= 1
        assert (await api.call("POST", "/v1/events", key, _events(5, "c")))[0] == 202
        assert await _count(api, key) == 20


async def test_the_tenant_burst_bounds_a_batch_too(hub: Hub) -> None:
    async with hub(tenant_rate=1.0, tenant_burst=50.0) as api:
        _, key = await api.tenant()
        status, body, _ = await api.call("POST", "/v1/events", key, _events(51))
        assert status == 429 and "this tenant may send at most 50" in body["error"]["message"]


async def test_cloudevents_and_segment_batches_cost_their_events(hub: Hub) -> None:
    async with hub(key_rate=1.0, key_burst=20.0) as api:
        _, key = await api.tenant()
        batch = [
            {"specversion": "1.0", "id": f"ce-{i}", "source": "/x", "type": "a.b"}
            for i in range(100)
        ]
        status, body, _ = await api.call(
            "POST",
            "/v1/events",
            key,
            data=orjson.dumps(batch),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        )
        assert status == 429 and "at most 20 at once" in body["error"]["message"], body
        auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
        segment = {
            "batch": [
                {"type": "track", "event": "Clicked", "userId": "u", "messageId": f"m-{i}"}
                for i in range(100)
            ]
        }
        status, body, _ = await api.call(
            "POST", "/v1/batch", data=orjson.dumps(segment), headers=auth
        )
        assert status == 429 and body["success"] is False, body
        assert "at most 20 at once" in body["message"]
        assert await _count(api, key) == 0


async def test_the_sdk_batches_fit_the_default_limits(hub: Hub) -> None:
    defaults = Settings()
    async with hub(
        key_rate=defaults.key_rate,
        key_burst=defaults.key_burst,
        tenant_rate=defaults.tenant_rate,
        tenant_burst=defaults.tenant_burst,
    ) as api:
        _, key = await api.tenant()
        async with AsyncClient(api.url, key, flush_interval=0.01) as sb:
            for i in range(1000):
                sb.emit("a.b", {"i": i})
            await sb.flush()
            assert sb.stats.sent == 1000 and sb.stats.failed == 0
        assert await _count(api, key) == 1000


# --- source URLs ----------------------------------------------------------------------------


async def _source(api: Api, key: str, name: str, **body: Any) -> str:
    status, created, _ = await api.call(
        "POST", "/v1/sources", key, {"name": name, "preset": "none", **body}
    )
    assert status == 201, created
    return str(created["id"])


async def _hit(api: Api, source_id: str, headers: dict[str, str] | None = None) -> Any:
    return await api.call(
        "POST",
        f"/v1/sources/{source_id}/webhook",
        data=b"{}",
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def test_a_source_url_is_limited_per_source(hub: Hub) -> None:
    async with hub(source_rate=0.1, source_burst=3.0, source_ip_rate=0.0) as api:
        _, key = await api.tenant()
        busy, quiet = await _source(api, key, "busy"), await _source(api, key, "quiet")
        for _ in range(3):
            assert (await _hit(api, busy))[0] == 200
        status, body, headers = await _hit(api, busy)
        assert status == 429, body
        assert int(headers["Retry-After"]) >= 1
        assert (await _hit(api, quiet))[0] == 200  # another source has its own bucket
        _, log, _ = await api.call("GET", f"/v1/sources/{busy}/requests", key)
        assert len(log["data"]) == 3  # a refused request is not stored


async def test_a_source_url_is_limited_per_client_address(hub: Hub) -> None:
    async with hub(source_ip_rate=0.1, source_ip_burst=4.0) as api:
        _, key = await api.tenant()
        sources = [await _source(api, key, f"s{i}") for i in range(5)]
        answers = [(await _hit(api, s))[0] for s in sources]
        assert answers == [200, 200, 200, 200, 429]  # one address, across sources


# --- forwarding headers ---------------------------------------------------------------------


async def test_a_spoofed_forwarded_for_is_ignored_without_trusted_proxies(hub: Hub) -> None:
    async with hub() as api:  # the default: no trusted proxies
        _, key = await api.tenant()
        source = await _source(api, key, "office", ip_allowlist=["10.9.0.0/16"])
        status, body, _ = await _hit(api, source, {"X-Forwarded-For": "10.9.1.1"})
        assert status == 403, body
        _, log, _ = await api.call("GET", f"/v1/sources/{source}/requests", key)
        assert log["data"][0]["remote_ip"] == "127.0.0.1"


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(hub: Hub) -> None:
    async with hub(trusted_proxies="127.0.0.1/32") as api:
        _, key = await api.tenant()
        source = await _source(api, key, "office", ip_allowlist=["10.9.0.0/16"])
        status, body, _ = await _hit(api, source, {"X-Forwarded-For": "10.9.1.1"})
        assert status == 200, body
        # the proxy appends the real peer; a client-supplied entry before it is not believed
        status, _, _ = await _hit(api, source, {"X-Forwarded-For": "10.9.1.1, 192.0.2.7"})
        assert status == 403


async def test_a_trusted_proxy_elsewhere_does_not_make_loopback_trusted(hub: Hub) -> None:
    async with hub(trusted_proxies="192.0.2.0/24") as api:
        _, key = await api.tenant()
        source = await _source(api, key, "office", ip_allowlist=["10.9.0.0/16"])
        assert (await _hit(api, source, {"X-Forwarded-For": "10.9.1.1"}))[0] == 403
