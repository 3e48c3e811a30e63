"""The audit entry and the change it records commit together (one transaction), and the table is
append-only in the database itself; on both stores."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from switchboard.config import Settings
from switchboard.envelope import new_id, now_us
from switchboard.errors import StoreError
from switchboard.retention import DAY_US
from switchboard.retention_job import run_once
from switchboard.store.audit import AuditEntry, append, expire, list_entries
from tests.conftest import LOOPBACK, Api, fresh_database, serve

WEBHOOK = {"name": "crm", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}


async def _refuse_entries_of(api: Api, tenant: str) -> None:
    """A trigger of the test's own that makes every audit insert of `tenant` fail."""
    store = api.hub.store
    if store.dialect == "sqlite":
        await store.execute(
            "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log "
            f"WHEN NEW.tenant_id = '{tenant}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); "
            "END"
        )
        return
    await store.execute(
        "CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.tenant_id = '{tenant}' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
        "RETURN NEW; END $$"
    )
    await store.execute(
        "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION test_refuse_audit()"
    )


async def _allow_entries(api: Api) -> None:
    store = api.hub.store
    if store.dialect == "sqlite":
        await store.execute("DROP TRIGGER test_refuse_audit")
    else:
        await store.execute("DROP TRIGGER test_refuse_audit ON audit_log")


async def test_a_change_whose_entry_cannot_be_written_is_not_made(api: Api) -> None:
    """Creating, updating and deleting: when the audit insert fails, the answer is a 503 and
    the change is rolled back with it, never left unaudited."""
    tenant, manage = await api.tenant()
    status, _, _ = await api.call("POST", "/v1/destinations", manage, WEBHOOK)
    assert status == 201
    keys_before = len(await api.hub.store.list_keys(tenant))
    await _refuse_entries_of(api, tenant)

    status, body, _ = await api.call("POST", "/v1/keys", manage, {"scopes": ["read"]})
    assert status == 503 and body["error"]["code"] == "audit_failed", body
    assert len(await api.hub.store.list_keys(tenant)) == keys_before
    other = {**WEBHOOK, "name": "erp"}
    status, body, _ = await api.call("POST", "/v1/destinations", manage, other)
    assert status == 503, body
    status, _, _ = await api.call("GET", "/v1/destinations/erp", manage)
    assert status == 404
    status, _, _ = await api.call("PATCH", "/v1/destinations/crm", manage, {"timeout": 7})
    assert status == 503
    status, shown, _ = await api.call("GET", "/v1/destinations/crm", manage)
    assert status == 200 and shown["timeout"] != 7
    status, _, _ = await api.call("DELETE", "/v1/destinations/crm", manage)
    assert status == 503
    status, _, _ = await api.call("GET", "/v1/destinations/crm", manage)
    assert status == 200
    assert [e.action for e in await list_entries(api.hub.store, tenant)] == ["destinations.create"]

    await _allow_entries(api)
    status, _, _ = await api.call("PATCH", "/v1/destinations/crm", manage, {"timeout": 7})
    assert status == 200
    status, shown, _ = await api.call("GET", "/v1/destinations/crm", manage)
    assert shown["timeout"] == 7
    assert [e.action for e in await list_entries(api.hub.store, tenant)] == [
        "destinations.update",
        "destinations.create",
    ]


async def test_changes_and_ingest_at_once_all_answer(api: Api) -> None:
    """A change holds its transaction (SQLite: the writer) only until it commits: changes and
    ingest sent together all complete, each change with its entry."""
    tenant, key = await api.tenant()
    events = [{"type": "a.b", "data": {"n": i}} for i in range(20)]
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(api.call("POST", "/v1/events", key, e) for e in events),
            *(
                api.call("POST", "/v1/keys", key, {"name": f"k{i}", "scopes": ["read"]})
                for i in range(20)
            ),
        ),
        timeout=60,
    )
    assert [a[0] for a in answers] == [202] * 20 + [201] * 20, [a[:2] for a in answers]
    entries = await list_entries(api.hub.store, tenant)
    assert sorted(e.after["name"] for e in entries) == sorted(f"k{i}" for i in range(20))


async def _raw(api: Api, sql: str) -> None:
    """Run `sql` on a connection of its own, as someone with the database's password would."""
    url = api.hub.settings.database_url
    if api.hub.store.dialect == "sqlite":

        def run() -> None:
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                conn.execute(sql)
            finally:
                conn.close()

        await asyncio.to_thread(run)
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _entry(tenant: str, at_us: int) -> AuditEntry:
    return AuditEntry(
        new_id(), tenant, at_us, "k", None, None, "keys.create", "POST", "/v1/keys", 201, None, {}
    )


@pytest.mark.security
async def test_the_audit_log_refuses_update_and_delete(api: Api) -> None:
    tenant, manage = await api.tenant()
    for i in range(3):
        await api.call("POST", "/v1/keys", manage, {"name": f"k{i}", "scopes": ["read"]})
    entries = await list_entries(api.hub.store, tenant)
    assert len(entries) == 3
    store = api.hub.store
    attempts: list[str] = [
        "UPDATE audit_log SET action = 'keys.delete'",
        "UPDATE audit_log SET after = NULL WHERE tenant_id = '" + tenant + "'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = '" + entries[0].id + "'",
    ]
    if store.dialect == "postgres":
        attempts.append("TRUNCATE audit_log")
    for sql in attempts:
        with pytest.raises(StoreError, match="append-only"):
            await store.execute(sql)  # through the hub's own connections
        with pytest.raises((sqlite3.DatabaseError, asyncpg.PostgresError), match="append-only"):
            await _raw(api, sql)  # and from outside it
    # retention's own path lets through only rows older than the cutoff it declares: a DELETE
    # of everything in that transaction is refused whole
    declare: Any = (
        ("INSERT INTO audit_expiry (before_us) VALUES (?)", (entries[1].at_us,))
        if store.dialect == "sqlite"
        else (
            "SELECT set_config('switchboard.audit_expire_before', ?::text, true)",
            (str(entries[1].at_us),),
        )
    )
    with pytest.raises(StoreError, match="append-only"):
        await store.batch([declare, ("DELETE FROM audit_log WHERE tenant_id = ?", (tenant,))])
    assert await list_entries(store, tenant) == entries


@pytest.fixture(params=["sqlite", "postgres"])
async def quiet_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A hub whose own retention pass does not run: the test runs the passes itself (the hub's
    first pass, at start-up, would race the test's old entry)."""
    async with fresh_database(request.param, tmp_path) as url:
        settings = Settings(
            database_url=url, key_rate=0, tenant_rate=0, egress_allow=LOOPBACK, retention_interval=0
        )
        async with serve(settings) as a:
            yield a


@pytest.mark.security
async def test_retention_still_expires_old_entries(quiet_api: Api) -> None:
    """The retention job removes entries older than the audit retention, and only those; its
    permission does not outlive its transaction."""
    api = quiet_api
    tenant, manage = await api.tenant()
    now = now_us()
    days = api.hub.settings.audit_retention_days
    old = _entry(tenant, now - (days + 1) * DAY_US)
    await append(api.hub.store, old)
    await api.call("POST", "/v1/keys", manage, {"name": "recent", "scopes": ["read"]})
    assert len(await list_entries(api.hub.store, tenant)) == 2
    deleted = await run_once(api.hub, now)
    assert deleted["audit_log"] == 1
    [kept] = await list_entries(api.hub.store, tenant)
    assert kept.after["name"] == "recent"
    # an old entry written after the pass cannot be deleted outside the retention's path
    older = _entry(tenant, now - (days + 2) * DAY_US)
    await append(api.hub.store, older)
    with pytest.raises(StoreError, match="append-only"):
        await api.hub.store.execute("DELETE FROM audit_log WHERE id = ?", (older.id,))
    if api.hub.store.dialect == "sqlite":
        assert await api.hub.store.fetch("SELECT count(*) FROM audit_expiry") == [(0,)]
    assert await expire(api.hub.store, now - days * DAY_US, 10) == 1


async def test_a_change_holds_no_transaction_until_its_first_write(api: Api) -> None:
    """A change that reads, then waits on something outside (a WhatsApp gateway setting up a
    channel can take its whole timeout), holds neither SQLite's single writer nor a PostgreSQL
    connection in a transaction meanwhile: ingest answers while it waits. Its first write begins
    the transaction, and the commit keeps the write."""
    store = api.hub.store
    tenant, key = await api.tenant()
    async with store.transaction() as unit:
        assert await store.list_keys(tenant)
        assert getattr(unit, "conn", None) is None and not getattr(unit, "begun", False)
        # the change "waits on a gateway": another request must get through meanwhile
        status, body, _ = await asyncio.wait_for(
            api.call("POST", "/v1/events", key, {"type": "a.b", "data": {}}), 30
        )
        assert status == 202, body
        await store.execute("UPDATE tenants SET name = ? WHERE id = ?", ("renamed", tenant))
        assert getattr(unit, "conn", None) is not None or getattr(unit, "begun", False)
    assert (await store.get_tenant(tenant)).name == "renamed"  # type: ignore[union-attr]


@pytest.mark.security
async def test_a_refusal_quoting_a_nul_is_a_400_and_audited(api: Api) -> None:
    """A refused change is audited too, and its answer may quote the NUL it refused (a JSON
    pointer through a key holding one); PostgreSQL cannot store NUL, so the entry shows it as
    U+FFFD instead of failing, and the refusal is not turned into a 503."""
    tenant, manage = await api.tenant()
    body = {"on": "a.b", "steps": [{"if": {"k\x00": 1}}]}
    status, answer, _ = await api.call("PUT", "/v1/automations/x", manage, body)
    assert status == 400, answer
    [entry] = await list_entries(api.hub.store, tenant)
    assert entry.status == 400 and "\x00" not in repr(entry) and "\ufffd" in repr(entry)
