"""Ingest's cached look-ups (the API key, the tenant, the event type) on both stores: requests
that find an entry expired together share one query, and a change made meanwhile is not
hidden by a load that began before it."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.conftest import Api

ORDER_TYPE = {
    "name": "order.placed",
    "description": "An order was placed.",
    "owner": "shop",
    "mode": "enforce",
    "versions": [
        {
            "version": "1.0",
            "schema": {
                "type": "object",
                "required": ["total"],
                "properties": {"total": {"type": "number"}},
            },
            "examples": [{"total": 10}],
        }
    ],
}


def _count(api: Api, names: tuple[str, ...]) -> Counter[str]:
    """Count the store's calls of `names` (the real store answers them)."""
    calls: Counter[str] = Counter()
    store: Any = api.hub.store
    for name in names:
        real = getattr(store, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return await _real(*args)

        setattr(store, name, counted)
    return calls


def _expire(api: Api) -> None:
    """Every cached key, tenant and type expired, as after their time to live."""
    h = api.hub
    h.auth._cache = {k: (0.0, v[1]) for k, v in h.auth._cache.items()}
    h._tenants = {k: (0.0, v[1]) for k, v in h._tenants.items()}
    h.registry._cache = {k: (0.0, v[1]) for k, v in h.registry._cache.items()}


async def test_concurrent_ingests_finding_the_caches_expired_share_one_query_each(
    api: Api,
) -> None:
    tenant, key = await api.tenant()
    status, _, _ = await api.call("PUT", "/v1/event-types/order.placed", key, ORDER_TYPE)
    assert status == 200, status
    event = {"id": "warm", "type": "order.placed", "data": {"total": 1}}
    assert (await api.call("POST", "/v1/events", key, event))[0] == 202
    calls = _count(api, ("keys_by_prefix", "get_tenant", "get_type"))
    _expire(api)
    answers = await asyncio.gather(
        *(
            api.call(
                "POST",
                "/v1/events",
                key,
                {"id": f"e-{i}", "type": "order.placed", "data": {"total": i}},
            )
            for i in range(40)
        )
    )
    assert [a[0] for a in answers] == [202] * 40
    assert all(a[1]["accepted"] == 1 for a in answers)
    # one look-up of the key, one of the tenant, one of the type (found in the tenant's own
    # catalog, so the shared scope is not asked); before, each request that found the entry
    # expired ran its own
    assert calls == Counter({"keys_by_prefix": 1, "get_tenant": 1, "get_type": 1}), calls
    status, body, _ = await api.call("GET", "/v1/events?type=order.placed&limit=100", key)
    assert status == 200 and len(body["data"]) == 41, (tenant, body)


async def test_a_type_changed_during_its_load_is_not_cached_stale(api: Api) -> None:
    tenant, key = await api.tenant()
    registry = api.hub.registry
    store: Any = api.hub.store
    real = store.get_type
    gate = asyncio.Event()
    held = asyncio.Event()

    async def slow(*args: Any) -> Any:
        found = await real(*args)
        held.set()
        await gate.wait()  # the type is read (absent), and changes before the answer is used
        return found

    store.get_type = slow
    stale = asyncio.ensure_future(registry.lookup(tenant, "order.placed"))
    await held.wait()
    store.get_type = real
    status, _, _ = await api.call("PUT", "/v1/event-types/order.placed", key, ORDER_TYPE)
    assert status == 200, status
    gate.set()
    assert await stale is None  # what the load read before the change
    found = await registry.lookup(tenant, "order.placed")  # not the stale "absent"
    assert found is not None and found.name == "order.placed"


async def test_a_key_revoked_during_its_load_is_refused_at_once(api: Api) -> None:
    tenant, key = await api.tenant()
    auth = api.hub.auth
    store: Any = api.hub.store
    real = store.keys_by_prefix
    gate = asyncio.Event()
    held = asyncio.Event()

    async def slow(*args: Any) -> Any:
        found = await real(*args)
        held.set()
        await gate.wait()  # read while the key was valid; revoked before the answer is used
        return found

    store.keys_by_prefix = slow
    first = asyncio.ensure_future(auth.authenticate("Bearer " + key, None))
    await held.wait()
    store.keys_by_prefix = real
    [record] = [k for k in await store.list_keys(tenant) if key.startswith(k.prefix)]
    _, other = await api.tenant(tenant)  # another key of the tenant revokes this one
    status, _, _ = await api.call("DELETE", f"/v1/keys/{record.id}", other)
    assert status == 204, status
    gate.set()
    assert (await first).tenant_id == tenant  # the request that began before the revocation
    status, _, _ = await api.call("POST", "/v1/events", key, {"id": "x", "type": "a.b"})
    assert status == 401  # the stale look-up was not cached
