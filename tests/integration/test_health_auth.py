"""`/health/detailed` tells anyone whether the store is up, and nothing countable: the row counts
span every tenant, so they need an admin key."""

from __future__ import annotations

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security


async def test_detailed_health_says_nothing_countable_without_an_admin_key(api: Api) -> None:
    _, key = await api.tenant()
    await api.call("POST", "/v1/events", key, [{"type": "a.b", "data": {}}])
    status, body, _ = await api.call("GET", "/health/detailed")
    assert status == 200
    assert body["store"]["reachable"] is True and body["store"]["migrations"]["up_to_date"]
    assert "counts" not in body["store"], body
    assert "tenants" not in str(body) and "events" not in str(body)
    # a tenant's key is not enough (the counts are every tenant's), and a wrong key is refused
    status, body, _ = await api.call("GET", "/health/detailed", key)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _, _ = await api.call("GET", "/health/detailed", "sb_not_a_key")
    assert status == 401
    status, body, _ = await api.call("GET", "/health/detailed", api.admin_key)
    assert status == 200 and body["store"]["counts"]["tenants"] >= 1
    assert body["store"]["counts"]["events"] == 1
