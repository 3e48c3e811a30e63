"""The audit log: every change a manage or admin key makes is recorded (who, when, from where,
what, before and after with credentials masked), on both stores."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from switchboard.api import segment
from switchboard.config import Settings
from switchboard.store.audit import expire, list_entries
from tests.conftest import LOOPBACK, Api, serve

# Non-GET routes that are not manage/admin actions, and why: the walk below fails for any
# other route that changes something without being audited.
NOT_MANAGE = {
    ("POST", "/v1/events"): "ingest scope",
    ("POST", "/v1/sources/{source_id}/webhook"): "a provider's public URL, no key",
    ("POST", "/v1/unsubscribe/{token}"): "a recipient's public link, no key",
    ("POST", "/v1/deliveries/provider-status"): "ingest scope (provider receipts)",
    ("POST", "/v1/templates/{name}/preview"): "read scope; renders, changes nothing",
}
SEGMENT = {route.path for route in segment.routes}  # the Segment API: ingest scope


def _fill(path: str) -> str:
    """A concrete path for a route template: each parameter becomes `x` (versions `1`)."""
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if m.group(1) == "version" else "x", path)


async def _entries(api: Api, key: str, query: str = "", tenant: str | None = None) -> list[dict]:
    headers = {"X-Switchboard-Tenant": tenant} if tenant else None
    status, body, _ = await api.call("GET", "/v1/audit" + query, key, headers=headers)
    assert status == 200, body
    return list(body["data"])


async def test_every_changing_route_is_audited(api: Api) -> None:
    """Walk the app's routes: each non-GET one a manage/admin key calls leaves an audit entry,
    whatever its answer (a new endpoint that changes things cannot forget the audit)."""
    tenant, _ = await api.tenant()
    from switchboard.api import create_app

    app = create_app(api.hub.settings, api.hub)
    walked = 0
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"GET", "HEAD"}):
            if (method, route.path) in NOT_MANAGE or route.path in SEGMENT:
                continue
            if route.path.startswith("/ui/"):
                # the dashboard's forms take a session cookie, not a key; the actions among
                # them write their own entries (test_dashboard.py checks them)
                continue
            path = _fill(route.path)
            tenant_wide = route.path == "/v1/tenants"  # the operator's own action
            headers = None if tenant_wide else {"X-Switchboard-Tenant": tenant}
            before = await _entries(api, api.admin_key, tenant=None if tenant_wide else tenant)
            status, body, _ = await api.call(method, path, api.admin_key, {}, headers=headers)
            assert status < 500, (method, path, status, body)
            after = await _entries(api, api.admin_key, tenant=None if tenant_wide else tenant)
            assert len(after) == len(before) + 1, f"{method} {route.path} left no audit entry"
            assert after[0]["method"] == method and after[0]["path"] == path
            assert after[0]["status"] == status
            walked += 1
    assert walked >= 30  # the walk really covered the API


async def test_entry_says_who_when_where_what_with_secrets_masked(api: Api) -> None:
    tenant, manage = await api.tenant()
    body = {
        "name": "crm",
        "kind": "webhook",
        "config": {
            "url": "http://127.0.0.1:9/hook?token=abcdefghijklmnop1234",
            "headers": {"Authorization": "Bearer zyxwvutsrqponmlk9876"},
        },
    }
    status, created, _ = await api.call("POST", "/v1/destinations", manage, body)
    assert status == 201, created
    status, _, _ = await api.call("PATCH", "/v1/destinations/crm", manage, {"timeout": 7})
    assert status == 200
    status, minted, _ = await api.call("POST", "/v1/keys", manage, {"scopes": ["read"]})
    assert status == 201
    entries = await _entries(api, manage)
    assert [e["action"] for e in entries] == [
        "keys.create",
        "destinations.update",
        "destinations.create",
    ]
    key_entry, update, create = entries
    text = str(entries)
    assert minted["key"] not in text  # the new key's secret is never kept
    assert key_entry["after"]["key"].startswith("…")
    assert "abcdefghijklmnop1234" not in text  # nor the URL's token
    assert "zyxwvutsrqponmlk" not in text  # nor a header's credential
    assert created["secrets"][0].startswith("whsec_")  # generated, shown once to the client
    assert created["secrets"][0] not in text and "whsec_…" in text  # but not kept here
    assert update["before"]["timeout"] != 7 and update["after"]["timeout"] == 7
    assert create["before"] is None and create["after"]["name"] == "crm"
    for e in entries:
        assert e["ip"] == "127.0.0.1"
        assert e["key_name"] == "test" and e["key_id"]
        assert e["tenant_id"] == tenant and e["at"].endswith("Z")


async def test_a_tenant_reads_only_its_own_audit_log(api: Api) -> None:
    tenant_a, manage_a = await api.tenant()
    tenant_b, manage_b = await api.tenant()
    _, read_a = await api.tenant(tenant_a, scopes=("read",))
    await api.call("POST", "/v1/keys", manage_a, {"scopes": ["read"]})
    assert await _entries(api, manage_b) == []
    assert len(await _entries(api, manage_a)) == 1
    assert len(await _entries(api, api.admin_key, tenant=tenant_a)) == 1
    assert await _entries(api, api.admin_key, tenant=tenant_b) == []
    status, _, _ = await api.call("GET", "/v1/audit", read_a)
    assert status == 403  # the log is for manage keys
    status, _, _ = await api.call("POST", "/v1/keys", read_a, {"scopes": ["read"]})
    assert status == 403
    assert len(await _entries(api, manage_a)) == 1  # a refused key changed nothing


async def test_filters_and_pages(api: Api) -> None:
    _, manage = await api.tenant()
    for i in range(5):
        await api.call("POST", "/v1/keys", manage, {"name": f"k{i}", "scopes": ["read"]})
    listed = await _entries(api, manage, "?action=keys")
    assert len(listed) == 5
    assert await _entries(api, manage, "?action=routes") == []
    assert len(await _entries(api, manage, "?action=keys.create")) == 5
    first = await _entries(api, manage, "?limit=2")
    status, page, _ = await api.call("GET", "/v1/audit?limit=2", manage)
    assert page["next_cursor"] == first[-1]["id"]
    rest = await _entries(api, manage, f"?limit=10&cursor={page['next_cursor']}")
    assert [e["id"] for e in first + rest] == [e["id"] for e in listed]
    newest = listed[0]["at"]
    assert len(await _entries(api, manage, f"?from={newest}")) == 1
    assert len(await _entries(api, manage, f"?to={newest}")) == 4
    status, body, _ = await api.call("GET", "/v1/audit?action=a%20b", manage)
    assert status == 400 and "action" in body["error"]["message"]
    status, body, _ = await api.call("GET", "/v1/audit?from=yesterday", manage)
    assert status == 400 and "from" in body["error"]["message"]
    for query, where in (
        ("?action=a%20b", "?action"),
        ("?limit=0", "?limit"),
        ("?cursor=" + "c" * 101, "?cursor"),
        ("?from=yesterday", "?from"),
    ):
        status, body, _ = await api.call("GET", "/v1/audit" + query, manage)
        assert status == 400, (query, body)
        assert [d["path"] for d in body["error"]["details"]] == [where], (query, body)
    # a resource whose name holds a '-' is a filter like any other (a refused change is
    # recorded too)
    status, body, _ = await api.call("PUT", "/v1/event-types/a.b", manage, {})
    assert status == 422, body
    assert [e["action"] for e in await _entries(api, manage, "?action=event-types")] == [
        "event-types.put"
    ]


async def test_retention_expires_old_entries_only(api: Api) -> None:
    tenant, manage = await api.tenant()
    for i in range(3):
        await api.call("POST", "/v1/keys", manage, {"name": f"k{i}", "scopes": ["read"]})
    entries = await list_entries(api.hub.store, tenant)
    cutoff = entries[1].at_us  # the oldest one is before it
    assert await expire(api.hub.store, cutoff, 100) == 1
    assert [e.id for e in await list_entries(api.hub.store, tenant)] == [e.id for e in entries[:2]]


async def test_the_address_is_the_trusted_proxys_client_or_the_peer(tmp_path: Path) -> None:
    """Behind a proxy in SWITCHBOARD_TRUSTED_PROXIES the entry keeps the X-Forwarded-For
    client; from anywhere else the header is ignored and the TCP peer is kept."""
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    for trusted, expected in (("127.0.0.1/32", "203.0.113.9"), ("", "127.0.0.1")):
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / f'hub{len(trusted)}.db'}",
            key_rate=0,
            tenant_rate=0,
            egress_allow=LOOPBACK,
            trusted_proxies=trusted,
        )
        async with serve(settings) as api:
            _, manage = await api.tenant()
            body = {"scopes": ["read"]}
            status, _, _ = await api.call("POST", "/v1/keys", manage, body, headers=forwarded)
            assert status == 201
            [entry] = await _entries(api, manage)
            assert entry["ip"] == expected
