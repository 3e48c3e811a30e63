"""A tenant's catalog may declare only a few `index` paths: each is an index on the events table
every tenant shares in PostgreSQL (docs/security.md, "Catalog indexes")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.security


def event_type(name: str, index: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "index": index,
        "versions": [{"version": "1.0", "schema": {"type": "object"}}],
    }


async def events_indexes(api: Api) -> int:
    """Indexes on the events table (PostgreSQL); SQLite builds none for `index`."""
    if api.hub.store.dialect != "postgres":
        return 0
    rows = await api.hub.store.fetch(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'events'", ()
    )
    return int(rows[0][0])


async def test_forty_index_paths_are_refused_and_build_nothing(api: Api) -> None:
    _, key = await api.tenant()
    before = await events_indexes(api)
    paths = [f"f{i}" for i in range(40)]
    status, body, _ = await api.call("PUT", "/v1/event-types/x", key, event_type("x", paths))
    assert status == 422, body
    assert body["error"]["details"][0]["path"] == "/index"
    assert "the limit is 3 (SWITCHBOARD_TENANT_MAX_INDEXES)" in body["error"]["message"]
    assert await events_indexes(api) == before
    status, body, _ = await api.call("GET", "/v1/event-types/x", key)
    assert status == 404, body


async def test_the_limit_counts_every_type_of_the_tenant(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/event-types/a", key, event_type("a", ["p", "q"]))
    assert status == 200, body
    # on SQLite `index` builds nothing (the answer's `indexed` is empty) but still counts
    assert body["indexed"] == (["p", "q"] if api.hub.store.dialect == "postgres" else [])
    status, body, _ = await api.call("PUT", "/v1/event-types/b", key, event_type("b", ["q", "r"]))
    assert status == 200, body  # q is shared with a: three distinct paths
    status, body, _ = await api.call("PUT", "/v1/event-types/c", key, event_type("c", ["s"]))
    assert status == 422, body
    assert "would declare 4 indexed data paths" in body["error"]["message"]
    # replacing a type's own paths does not count them twice
    status, body, _ = await api.call("PUT", "/v1/event-types/b", key, event_type("b", ["q", "r"]))
    assert status == 200, body
    # another tenant has its own allowance
    _, other = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/event-types/c", other, event_type("c", ["s"]))
    assert status == 200, body


async def test_an_admin_key_may_declare_more(api: Api) -> None:
    tenant, _ = await api.tenant()
    paths = [f"g{i}" for i in range(5)]
    status, body, _ = await api.call(
        "PUT",
        "/v1/event-types/x",
        api.admin_key,
        event_type("x", paths),
        headers={"X-Switchboard-Tenant": tenant},
    )
    assert status == 200, body
