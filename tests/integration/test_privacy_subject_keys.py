"""PII sealed per subject (subject_keys.py): the database holds none of it in clear, every read
path opens it (masked for keys without `pii`), an erasure destroys the subject's key so a backup
of its rows no longer opens — in this process and in another one that had the key in memory —,
a sealed value moved to another event, subject or tenant does not open, and a rotation of the
master key re-wraps the data keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from switchboard.config import Settings
from switchboard.crypto import new_master_key
from switchboard.errors import ConfigError
from switchboard.hub import Hub
from switchboard.store.queries import load_json
from switchboard.store.sealed import rotate
from switchboard.store.subject_keys import PREFIX
from tests.conftest import LOOPBACK, Api, fresh_database, serve
from tests.integration.test_privacy_at_rest import _dump
from tests.integration.test_privacy_masking import (
    CPF,
    EMAIL,
    LEAD,
    LEAD_TYPE,
    NAME,
    NOTE,
    PHONE,
    raw_values,
    test_a_read_key_never_sees_raw_pii_and_a_pii_key_sees_it,
)
from tests.integration.test_privacy_subjects import test_export_then_erasure_leaves_no_pii_anywhere
from tests.integration.test_sources import test_lead_form_dedups_on_phone_within_the_window

pytestmark = pytest.mark.security

KEY_A = new_master_key()
KEY_B = new_master_key()
SECRETS = (NAME, EMAIL, PHONE, CPF, NOTE, "99876-5432", "joana.pereira", "203.0.113.7")


def _settings(url: str, **keys: str) -> Settings:
    return Settings(
        database_url=url, key_rate=0, tenant_rate=0, run_worker=0, egress_allow=LOOPBACK, **keys
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def sealed_api(database: str) -> AsyncIterator[Api]:
    async with serve(_settings(database, master_key=KEY_A)) as api:
        yield api


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub(settings)
    await hub.open(worker=False)
    try:
        yield hub
    finally:
        await hub.close()


async def _leads(api: Api, key: str, *events: dict[str, Any]) -> list[str]:
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", key, LEAD_TYPE)
    assert status in (200, 201), body
    status, body, _ = await api.call("POST", "/v1/events", key, list(events))
    assert status == 202 and body["accepted"] == len(events), body
    return [r["id"] for r in body["results"]]


def _lead(subject: str | None, **data: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "lead.created",
        "data": {**LEAD, **data},
        "context": {"ip": "203.0.113.7", "locale": "pt-BR"},
    }
    if subject is not None:
        event["subject"] = subject
    return event


async def _stored(api: Api, tenant: str, event_id: str) -> tuple[Any, Any]:
    rows = await api.hub.store.fetch(
        "SELECT data, context FROM events WHERE tenant_id = ? AND id = ?", (tenant, event_id)
    )
    return load_json(rows[0][0]), load_json(rows[0][1])


async def test_the_database_holds_no_plaintext_pii_and_reads_open_it(sealed_api: Api) -> None:
    api = sealed_api
    tenant, key = await api.tenant()
    _, read = await api.tenant(tenant, scopes=("read",))
    with_subject, without = await _leads(api, key, _lead("patient-42"), _lead(None))
    data, context = await _stored(api, tenant, with_subject)
    assert data["plan"] == "gold"  # not PII: stored as sent
    for field in ("name", "email", "phone", "document", "note"):
        assert data[field].startswith(PREFIX), (field, data)
    assert context["ip"].startswith(PREFIX) and context["locale"] == "pt-BR"
    dump = await _dump(api.hub.store.settings.database_url)
    assert PREFIX.encode() in dump  # the scan looks at the right bytes
    for secret in SECRETS:
        assert secret.encode() not in dump, secret
    # a subject-less event has a key of its own: sealed too, and read back whole
    for event_id in (with_subject, without):
        status, event, _ = await api.call("GET", f"/v1/events/{event_id}", key)
        assert status == 200 and event["data"] == LEAD, event
        assert event["context"] == {"ip": "203.0.113.7", "locale": "pt-BR"}
        status, masked, _ = await api.call("GET", f"/v1/events/{event_id}", read)
        assert status == 200 and raw_values(masked) == [], masked
        assert masked["data"]["email"] == "j***@e***.com.br"
    status, listed, _ = await api.call("GET", "/v1/events?subject=patient-42", key)
    assert status == 200 and [e["data"] for e in listed["data"]] == [LEAD]


async def test_every_read_path_with_sealed_pii(sealed_api: Api, echo: str) -> None:
    """The masking walk (events, timelines, deliveries, attempts, inbox, replays' dry runs)
    with the PII sealed at rest: a `pii` key reads it whole, the others masked."""
    await test_a_read_key_never_sees_raw_pii_and_a_pii_key_sees_it(sealed_api, echo)


async def test_export_erasure_and_replay_with_sealed_pii(
    sealed_api: Api, echo: str, receivers: Any
) -> None:
    """The erasure walk (export, erase, every read, a replay) with the PII sealed at rest."""
    await test_export_then_erasure_leaves_no_pii_anywhere(sealed_api, echo, receivers)


async def test_erasure_shreds_the_key_so_a_backup_no_longer_opens(database: str) -> None:
    async with serve(_settings(database, master_key=KEY_A)) as api:
        tenant, key = await api.tenant()
        [mine, theirs] = await _leads(
            api, key, _lead("patient-42"), _lead("patient-7", name="Ana Lima")
        )
        backup = await _stored(api, tenant, mine)  # what a backup taken now holds
        async with _opened(_settings(database, master_key=KEY_A)) as other:
            # another process reads the subject's event and seals one: it holds the key in memory
            before = await other.store.get_event(tenant, mine, None)
            assert before is not None and before.data == LEAD
            tenant_row = await other.store.get_tenant(tenant)
            assert tenant_row is not None
            sealed = await other.ingestor.ingest([_lead("patient-42")], tenant_row, "api")
            assert sealed.accepted == 1
            status, receipt, _ = await api.call("DELETE", "/v1/subjects/patient-42", key)
            assert status == 200 and receipt["key_destroyed"] is True, receipt
            # the backup is restored over the erased row: its sealed values stay unreadable,
            # here and in the other process
            await api.hub.store.execute(
                "UPDATE events SET data = ?j, context = ?j WHERE tenant_id = ? AND id = ?",
                (orjson.dumps(backup[0]).decode(), orjson.dumps(backup[1]).decode(), tenant, mine),
            )
            for hub in (api.hub, other):
                restored = await hub.store.get_event(tenant, mine, None)
                assert restored is not None and restored.data == {
                    **{k: None for k in LEAD if k != "plan"},
                    "plan": "gold",
                }
                assert restored.context == {"ip": None, "locale": "pt-BR"}
            for path in (f"/v1/events/{mine}", "/v1/subjects/patient-42/export", "/v1/events"):
                status, answer, _ = await api.call("GET", path, key)
                assert status == 200 and NAME not in orjson.dumps(answer).decode(), (path, answer)
            # after the receipt, the other process seals the subject's next event under a new
            # key, not the destroyed one it had used: it reads whole
            later = await other.ingestor.ingest([_lead("patient-42")], tenant_row, "api")
            event_id = later.results[0]["id"]
            status, event, _ = await api.call("GET", f"/v1/events/{event_id}", key)
            assert status == 200 and event["data"] == LEAD, event
        # the other subject keeps its key and its data
        status, event, _ = await api.call("GET", f"/v1/events/{theirs}", key)
        assert status == 200 and event["data"] == {**LEAD, "name": "Ana Lima"}
        # a new event of the erased subject gets a new key and reads whole
        [again] = await _leads(api, key, _lead("patient-42"))
        status, event, _ = await api.call("GET", f"/v1/events/{again}", key)
        assert status == 200 and event["data"] == LEAD
        status, receipt, _ = await api.call("DELETE", "/v1/subjects/nobody", key)
        assert status == 200 and receipt["key_destroyed"] is False


async def test_a_sealed_value_moved_to_another_subject_or_tenant_does_not_open(
    sealed_api: Api,
) -> None:
    api = sealed_api
    tenant, key = await api.tenant()
    other_tenant, other_key = await api.tenant()
    [victim, thief, sibling] = await _leads(
        api, key, _lead("patient-42"), _lead("patient-7", name="Ana Lima"), _lead("patient-42")
    )
    [foreign] = await _leads(api, other_key, _lead("patient-42", name="Ana Lima"))
    stolen, _ = await _stored(api, tenant, victim)
    for target_tenant, target in ((tenant, thief), (tenant, sibling), (other_tenant, foreign)):
        await api.hub.store.execute(
            "UPDATE events SET data = ?j WHERE tenant_id = ? AND id = ?",
            (orjson.dumps(stolen).decode(), target_tenant, target),
        )
    for target_key, target in ((key, thief), (key, sibling), (other_key, foreign)):
        status, event, _ = await api.call("GET", f"/v1/events/{target}", target_key)
        assert status == 200, event
        # same subject's key (sibling), another subject's, another tenant's: none opens it
        assert event["data"] == {**{k: None for k in LEAD if k != "plan"}, "plan": "gold"}
    status, event, _ = await api.call("GET", f"/v1/events/{victim}", key)
    assert status == 200 and event["data"] == LEAD


async def test_rotation_rewraps_the_subject_keys(database: str) -> None:
    async with serve(_settings(database, master_key=KEY_A)) as api:
        tenant, key = await api.tenant()
        [event_id] = await _leads(api, key, _lead("patient-42"))
        stored = await _stored(api, tenant, event_id)
    rotating = _settings(database, master_key=KEY_B, master_key_previous=KEY_A)
    async with _opened(rotating) as hub:
        done = await rotate(hub.store)
        assert done.resealed == 2 and done.skipped == 0  # the subject's key, the index key
        again = await rotate(hub.store)
        assert again.resealed == 0 and again.unchanged == 2
    async with _opened(_settings(database, master_key=KEY_B)) as hub:  # KEY_A is dropped
        event = await hub.store.get_event(tenant, event_id, None)
        assert event is not None and event.data == LEAD
        # the data itself was not re-encrypted
        rows = await hub.store.fetch("SELECT data FROM events WHERE id = ?", (event_id,))
        assert load_json(rows[0][0]) == stored[0]


async def test_without_a_master_key_pii_is_stored_as_sent(database: str) -> None:
    async with serve(_settings(database)) as api:
        tenant, key = await api.tenant()
        [event_id] = await _leads(api, key, _lead("patient-42"))
        data, _ = await _stored(api, tenant, event_id)
        assert data == LEAD
        assert await api.hub.store.fetch("SELECT count(*) FROM subject_keys") == [(0,)]


async def test_equality_filters_on_pii_compare_blind_tags(sealed_api: Api) -> None:
    api = sealed_api
    _, key = await api.tenant()
    [joana, ana] = await _leads(
        api,
        key,
        _lead("patient-42"),
        _lead("patient-7", name="Ana Lima", email="ana@lima.org", phone="+55 11 91234-0000"),
    )

    async def listed(spec: dict[str, Any]) -> list[str]:
        filt = quote(orjson.dumps(spec).decode())
        status, body, _ = await api.call("GET", f"/v1/events?filter={filt}", key)
        assert status == 200, body
        return [e["id"] for e in body["data"]]

    # equality on a sealed field, on its normalized value (emails fold case, phones are digits)
    assert await listed({"data": {"email": [EMAIL]}}) == [joana]
    assert await listed({"data": {"email": [EMAIL.upper()]}}) == [joana]
    assert await listed({"data.phone": ["5531998765432"]}) == [joana]
    assert await listed({"$or": [{"data": {"name": [NAME]}}, {"data": {"phone": ["x"]}}]}) == [
        joana
    ]
    assert await listed({"data": {"email": ["ana@lima.org", EMAIL]}}) == [ana, joana]
    assert await listed({"data": {"email": ["nobody@lima.org"]}}) == []
    assert await listed({"data": {"email": [{"exists": True}]}, "data.plan": ["gold"]}) == [
        ana,
        joana,
    ]
    # another tenant's tags differ: its filter finds nothing of this tenant
    _, other = await api.tenant()
    await _leads(api, other, _lead("patient-1", email="x@y.org"))
    filt = quote(orjson.dumps({"data": {"email": [EMAIL]}}).decode())
    status, body, _ = await api.call("GET", f"/v1/events?filter={filt}", other)
    assert status == 200 and body["data"] == []
    # what a ciphertext cannot answer is refused, naming the field
    for op in ({"prefix": "joana"}, {"wildcard": "*@exemplo.com.br"}, {"anything-but": EMAIL}):
        filt = quote(orjson.dumps({"data": {"email": [op]}}).decode())
        for path in ("/v1/events", "/v1/deliveries"):
            status, body, _ = await api.call("GET", f"{path}?filter={filt}", key)
            assert status == 400, body
            assert body["error"]["details"][0]["path"] == "?filter", body
            assert "data.email" in body["error"]["details"][0]["message"], body
    # a prefix on a field that is not PII still works
    assert await listed({"data": {"plan": [{"prefix": "go"}]}}) == [ana, joana]


async def test_a_replay_filter_on_pii_matches_and_is_kept_without_the_value(
    sealed_api: Api, receivers: Any
) -> None:
    api = sealed_api
    _, key = await api.tenant()
    await _leads(api, key, _lead("patient-42"), _lead("patient-7", email="ana@lima.org"))
    rcv = await receivers()
    dest = {"name": "late", "kind": "webhook", "config": {"url": rcv.url}}
    assert (await api.call("POST", "/v1/destinations", key, dest))[0] == 201
    query = {"types": ["lead.*"], "destinations": ["late"], "filter": {"data": {"email": [EMAIL]}}}
    status, dry, _ = await api.call("POST", "/v1/replays", key, {**query, "dry_run": True})
    assert status == 200 and dry["events"] == 1, dry
    status, job, _ = await api.call("POST", "/v1/replays", key, query)
    assert status == 202, job
    bad = {**query, "filter": {"data": {"email": [{"suffix": "exemplo.com.br"}]}}}
    status, body, _ = await api.call("POST", "/v1/replays", key, bad)
    assert status == 400 and body["error"]["details"][0]["path"] == "/filter", body
    assert "data.email" in body["error"]["details"][0]["message"]
    dump = await _dump(api.hub.store.settings.database_url)
    for secret in SECRETS:
        assert secret.encode() not in dump, secret
    # a route filtering on a PII field (a route keeps its filter as written): the dry run plans
    # those events on their plain values, not SQL on the sealed text
    route = {"name": "r", "types": ["lead.*"], "destinations": ["late"], "filter": query["filter"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    status, dry, _ = await api.call("POST", "/v1/replays", key, {"dry_run": True})
    assert status == 200 and (dry["events"], dry["deliveries"]) == (1, 1), dry


async def test_business_dedup_claims_hold_blind_tags(sealed_api: Api) -> None:
    """The lead form's dedup (phone written differently, same person) with a master key: the
    claims table holds a tag, never the number or the email."""
    await test_lead_form_dedups_on_phone_within_the_window(sealed_api)
    rows = await sealed_api.hub.store.fetch("SELECT key FROM dedup_keys")
    assert rows and all(r[0].split(":", 1)[1].startswith("#") for r in rows), rows
    text = " ".join(r[0] for r in rows)
    for raw in ("998765432", "91234-5678", "912345678", "ana@example.com", "joana"):
        assert raw not in text.lower(), rows


async def test_a_hub_without_the_key_that_wrapped_the_data_keys_refuses_to_start(
    database: str,
) -> None:
    async with serve(_settings(database, master_key=KEY_A)) as api:
        _, key = await api.tenant()
        await _leads(api, key, _lead("patient-42"))
    with pytest.raises(ConfigError, match="SWITCHBOARD_MASTER_KEY"):
        async with _opened(_settings(database)):
            pass
    with pytest.raises(ConfigError, match="SWITCHBOARD_MASTER_KEY_PREVIOUS"):
        async with _opened(_settings(database, master_key=KEY_B)):
            pass
