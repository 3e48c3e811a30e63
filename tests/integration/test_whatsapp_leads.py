"""Leads from WhatsApp on both stores: Z-API's documented ReceivedCallback payloads (kept in
tests/fixtures/zapi/) through the `zapi-leads` mapping make one lead per tenant and normalized
phone — lead.created for the first message, lead.updated for later ones — however the number is
written, across a restart of the hub, and never for a number the tenant already knows."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.catalog import load_catalog_dir
from switchboard.config import Settings
from switchboard.sources.leads import e164, lead_id_for
from tests.conftest import LOOPBACK, Api, fresh_database, serve

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "zapi"
TOKEN = "tok-zapi-leads-123456"


def _payload(name: str, **changes: Any) -> bytes:
    doc = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    return orjson.dumps({**doc, **changes})


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


def _settings(url: str) -> Settings:
    return Settings(database_url=url, key_rate=0, tenant_rate=0, egress_allow=LOOPBACK)


async def _care_tenant(api: Api) -> str:
    tid, key = await api.tenant(unknown_types="reject")
    await api.hub.registry.apply(tid, load_catalog_dir(ROOT / "catalogs" / "care-integrations"))
    return key


async def _source(api: Api, key: str) -> dict[str, Any]:
    body = {"name": "zapi", "preset": "zapi", "secrets": [TOKEN], "mapping": "zapi-leads"}
    status, created, _ = await api.call("POST", "/v1/sources", key, body)
    assert status == 201, created
    return created


async def _post(api: Api, source: dict[str, Any], body: bytes) -> dict[str, Any]:
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=body,
        headers={"Content-Type": "application/json", "Client-Token": TOKEN},
    )
    assert status == 200, reply
    return reply


async def _events(api: Api, key: str, etype: str) -> list[dict[str, Any]]:
    status, listing, _ = await api.call("GET", f"/v1/events?type={etype}", key)
    assert status == 200, listing
    return list(listing["data"])


def _statuses(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["type"], e["status"]) for e in reply["events"]]


def test_phone_numbers_normalize_to_e164() -> None:
    assert e164("5531998765432") == "+5531998765432"
    assert e164("553198765432") == "+5531998765432"  # WhatsApp's form without the ninth digit
    assert e164("+55 (31) 99876-5432") == "+5531998765432"
    assert e164("(31) 99876-5432") == "+5531998765432"
    assert e164("+1 415 555 0100") == "+14155550100"
    # as WhatsApp writes them: the country code is always there, even without a '+'
    assert e164("14155550100", international=True) == "+14155550100"
    assert e164("14155550100") == "+5514155550100"  # read as a Brazilian DDD 14 number
    assert e164("553198765432", international=True) == "+5531998765432"
    assert e164("1234") is None and e164("") is None and e164(None) is None
    assert e164({"phone": "5531998765432"}) is None
    assert lead_id_for("t1", "+5531998765432", "m1") != lead_id_for("t2", "+5531998765432", "m1")
    assert lead_id_for("t1", "+5531998765432", "m1") == lead_id_for("t1", "+5531998765432", "m1")
    assert "998765432" not in lead_id_for("t1", "+5531998765432", "m1")


async def test_first_message_creates_a_lead_later_ones_update_it_across_a_restart(
    database: str,
) -> None:
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        source = await _source(api, key)
        first = await _post(api, source, _payload("received-text"))
        assert _statuses(first) == [("whatsapp.inbound", "accepted"), ("lead.created", "accepted")]
        retry = await _post(api, source, _payload("received-text"))  # Z-API retries
        assert _statuses(retry) == [("whatsapp.inbound", "duplicate")]
        (created,) = await _events(api, key, "lead.created")
        assert created["status"] == "accepted", created  # valid against the catalog
        assert created["data"] == {
            "name": "Joana Pereira",
            "phone": "+5531998765432",
            "source": "whatsapp",
            "message": "Olá, quero saber valores de cuidadora",
        }
        assert created["subject"] == "5531998765432"
        _, profile, _ = await api.call("GET", "/v1/recipients/5531998765432", key)
        assert profile["phone"] == "+5531998765432"
        assert profile["attributes"]["lead_id"] == created["id"]
    # a new hub process on the same database: the lead is remembered
    async with serve(_settings(database)) as api:
        # the same number written as WhatsApp writes it, without the ninth digit
        later = await _post(api, source, _payload("received-button"))
        assert _statuses(later) == [("whatsapp.inbound", "accepted"), ("lead.updated", "accepted")]
        assert await _events(api, key, "lead.created") != []
        (updated,) = await _events(api, key, "lead.updated")
        assert updated["status"] == "accepted", updated
        assert updated["data"]["lead_id"] == created["id"]
        changes = updated["data"]["changes"]
        assert changes["message"] == {
            "old": "Olá, quero saber valores de cuidadora",
            "new": "Manhã",
        }
        assert changes["name"] == {"old": "Joana Pereira", "new": "Joana P."}
        assert changes["last_message_at"]["old"] == created["time"]
        assert [e["id"] for e in await _events(api, key, "lead.created")] == [created["id"]]
        _, profile, _ = await api.call("GET", "/v1/recipients/5531998765432", key)
        assert profile["attributes"]["lead_id"] == created["id"]
        assert profile["attributes"]["last_message"] == "Manhã"
        assert profile["name"] == "Joana P."


async def test_two_first_messages_at_once_make_one_lead(database: str) -> None:
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        source = await _source(api, key)
        replies = await asyncio.gather(
            *(
                _post(api, source, _payload("received-text", messageId=f"3EB0C431C26A19AA{i:04d}"))
                for i in range(6)
            )
        )
        kinds = sorted(t for reply in replies for t, s in _statuses(reply) if t.startswith("lead"))
        assert kinds == ["lead.created"] + ["lead.updated"] * 5
        assert len(await _events(api, key, "lead.created")) == 1


async def test_known_recipients_and_other_tenants(database: str) -> None:
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        source = await _source(api, key)
        # a patient the tenant already has, under its own id and a formatted phone
        status, body, _ = await api.call(
            "PUT", "/v1/recipients/pac_5120", key, {"phone": "+55 11 98765-4321", "name": "Carlos"}
        )
        assert status in (200, 201), body
        status, body, _ = await api.call(
            "PUT", "/v1/recipients/pac_5121", key, {"phone": "+5511987654321"}
        )
        reply = await _post(api, source, _payload("received-image"))
        assert _statuses(reply) == [("whatsapp.inbound", "accepted")]
        assert await _events(api, key, "lead.created") == []
        # another tenant: the same number is new there, and its lead is its own
        other = await _care_tenant(api)
        other_source = await _source(api, other)
        reply = await _post(api, other_source, _payload("received-text"))
        assert ("lead.created", "accepted") in _statuses(reply)
        mine = await _post(api, source, _payload("received-text"))
        assert ("lead.created", "accepted") in _statuses(mine)
        (a,), (b,) = (
            await _events(api, other, "lead.created"),
            await _events(api, key, "lead.created"),
        )
        assert a["id"] != b["id"]


async def test_a_refused_lead_gives_the_phone_back(database: str, tmp_path: Path) -> None:
    """A catalog without lead.created: the message is stored, the lead refused, and the number
    stays new, so its next message makes the lead once the catalog has the type."""
    partial = tmp_path / "care"
    shutil.copytree(ROOT / "catalogs" / "care-integrations", partial)
    (partial / "types" / "lead.created.yaml").unlink()
    async with serve(_settings(database)) as api:
        tid, key = await api.tenant(unknown_types="reject")
        await api.hub.registry.apply(tid, load_catalog_dir(partial))
        source = await _source(api, key)
        reply = await _post(api, source, _payload("received-text"))
        assert _statuses(reply) == [("whatsapp.inbound", "accepted"), ("lead.created", "rejected")]
        assert reply["status"] == "partial"
        await api.hub.registry.apply(tid, load_catalog_dir(ROOT / "catalogs" / "care-integrations"))
        reply = await _post(api, source, _payload("received-button"))
        assert _statuses(reply) == [("whatsapp.inbound", "accepted"), ("lead.created", "accepted")]


@pytest.mark.security
async def test_erasing_the_subject_forgets_the_lead(database: str) -> None:
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        source = await _source(api, key)
        first = await _post(api, source, _payload("received-text"))
        assert ("lead.created", "accepted") in _statuses(first)
        status, receipt, _ = await api.call("DELETE", "/v1/subjects/5531998765432", key)
        assert status == 200, receipt
        assert receipt["recipient_deleted"] is True
        rows = await api.hub.store.fetch("SELECT key FROM dedup_keys WHERE key LIKE '%998765432%'")
        assert rows == []
        again = await _post(api, source, _payload("received-button"))
        assert ("lead.created", "accepted") in _statuses(again)


@pytest.mark.security
async def test_hostile_sender_fields_stay_bounded(database: str) -> None:
    """Whatever a sender puts in its name and text, the lead holds bounded strings and a number
    that is not a phone makes no lead (the message is still stored)."""
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        source = await _source(api, key)
        huge = "x" * 50_000
        reply = await _post(
            api,
            source,
            _payload(
                "received-text",
                senderName=huge,
                text={"message": huge},
                messageId="3EB0HOSTILE0001",
            ),
        )
        assert ("lead.created", "accepted") in _statuses(reply)
        (lead,) = await _events(api, key, "lead.created")
        assert len(lead["data"]["name"]) <= 500 and len(lead["data"]["message"]) <= 500
        reply = await _post(
            api, source, _payload("received-text", phone="00000000", messageId="3EB0HOSTILE0002")
        )
        assert _statuses(reply) == [("whatsapp.inbound", "accepted")]


async def test_wpp_gateway_messages_make_leads_too(database: str) -> None:
    async with serve(_settings(database)) as api:
        tid, key = await api.tenant(unknown_types="accept")
        await api.hub.registry.apply(tid, load_catalog_dir(ROOT / "catalogs" / "comms-hub"))
        body = {
            "name": "wpp",
            "preset": "wpp_gateway",
            "secrets": ["tok-wpp-leads-123456"],
            "mapping": "wpp-gateway-leads",
        }
        status, source, _ = await api.call("POST", "/v1/sources", key, body)
        assert status == 201, source
        message = (ROOT / "tests" / "fixtures" / "wpp-gateway" / "message.json").read_bytes()
        for expected in ("lead.created", "lead.updated"):
            doc = orjson.loads(message)
            doc["data"]["id"] += expected  # a new message from the same sender
            status, reply, _ = await api.call(
                "POST",
                f"/v1/sources/{source['id']}/webhook",
                data=orjson.dumps(doc),
                headers={
                    "Content-Type": "application/json",
                    "X-Gateway-Secret": body["secrets"][0],
                },
            )
            assert status == 200, reply
            assert _statuses(reply) == [
                ("whatsapp.message_received", "accepted"),
                (expected, "accepted"),
            ]
        (lead,) = await _events(api, key, "lead.created")
        assert lead["data"] == {
            "name": "Marina Costa",
            "phone": "+5547991234567",
            "source": "whatsapp",
            "message": "Oi, vi o anúncio de vocês. Atendem em Joinville?",
        }


@pytest.mark.security
async def test_a_tenant_mapping_with_a_bad_leads_block_is_a_400_naming_it(database: str) -> None:
    async with serve(_settings(database)) as api:
        key = await _care_tenant(api)
        doc = {
            "name": "mine",
            "version": "1",
            "rules": [{"type": "whatsapp.inbound", "data": {"phone": "phone"}}],
            "leads": {"type": "whatsapp.inbound", "phone": ["phone"], "extra": True},
        }
        status, body, _ = await api.call("PUT", "/v1/mappings/mine/1", key, doc)
        assert status == 400, body  # what every invalid mapping answers
        assert {"/leads/phone", "/leads/extra"} <= {d["path"] for d in body["error"]["details"]}
        doc["leads"] = {"type": "whatsapp.inbound", "phone": "phone", "created": "lead.new"}
        status, body, _ = await api.call("PUT", "/v1/mappings/mine/1", key, doc)
        assert status == 201, body
