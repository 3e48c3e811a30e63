"""A key without the `pii` scope never sees a raw PII value: every read endpoint is walked with a
`read` key after events, deliveries, attempts, an inbox item, a source request and a recipient
profile all hold the same person's data; a `pii` key sees it whole."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import Api
from tests.integration.conftest import worker_for

pytestmark = pytest.mark.security

NAME = "Joana Pereira"
EMAIL = "joana.pereira@exemplo.com.br"
PHONE = "+55 31 99876-5432"
CPF = "123.456.789-09"
NOTE = "prefers calls after lunch"
RAW = (NAME, EMAIL, PHONE, CPF, NOTE, "99876-5432", "joana.pereira", "Pereira", "456.789-09")

LEAD_TYPE = {
    "description": "A lead arrived.",
    "pii": ["name", "email", "phone", "document", "note"],
    "pii_classes": {"document": "cpf"},
    "versions": [
        {
            "version": "1.0",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "email": {"type": "string"},
                    "phone": {"type": "string"},
                    "document": {"type": "string"},
                    "note": {"type": "string"},
                    "plan": {"type": "string"},
                },
            },
        }
    ],
}
LEAD = {"name": NAME, "email": EMAIL, "phone": PHONE, "document": CPF, "note": NOTE, "plan": "gold"}


def raw_values(answer: Any) -> list[str]:
    text = orjson.dumps(answer).decode()
    return [v for v in RAW if v in text]


async def _populate(api: Api, manage: str, echo_url: str) -> dict[str, str]:
    """Every kind of record holding the lead's PII; returns the ids the walk needs."""
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", manage, LEAD_TYPE)
    assert status in (200, 201), body
    for dest in (
        {"name": "hook", "kind": "webhook", "config": {"url": echo_url}},
        {
            "name": "box",
            "kind": "inbox",
            "config": {
                "recipient": "seller-1",
                "title_template": "Lead {{ data.name }}",
                "body_template": "{{ data.phone }} {{ data.email }} {{ data.note }}",
            },
        },
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", manage, dest)
        assert status == 201, body
    route = {"name": "r", "types": ["lead.*"], "destinations": ["hook", "box"]}
    status, body, _ = await api.call("POST", "/v1/routes", manage, route)
    assert status == 201, body
    event = {"type": "lead.created", "subject": "patient-42", "data": LEAD}
    status, body, _ = await api.call("POST", "/v1/events", manage, [event])
    assert status == 202, body
    event_id = body["results"][0]["id"]
    await worker_for(api).drain()
    profile = {"name": NAME, "email": EMAIL, "phone": PHONE}
    status, body, _ = await api.call("PUT", "/v1/recipients/patient-42", manage, profile)
    assert status in (200, 201), body
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        manage,
        {
            "name": "form",
            "preset": "token",
            "preset_config": {"headers": ["X-Token"]},
            "secrets": ["tok_0123456789abcdefghij"],
        },
    )
    assert status == 201, source
    status, _, _ = await api.call(
        "POST",
        f"/v1/sources/{source['id']}/webhook",
        data=orjson.dumps({"lead": {"email": EMAIL, "phone": PHONE, "cpf": CPF}}),
        headers={"Content-Type": "application/json", "X-Token": "tok_0123456789abcdefghij"},
    )
    assert status < 300
    return {"event_id": event_id, "source_id": source["id"]}


async def _walk(api: Api, key: str, ids: dict[str, str]) -> dict[str, Any]:
    """Every read endpoint that can carry the lead's data, by path."""
    answers: dict[str, Any] = {}

    async def get(path: str) -> Any:
        status, body, _ = await api.call("GET", path, key)
        assert status == 200, (path, body)
        answers[path] = body
        return body

    await get("/v1/events")
    await get(f"/v1/events/{ids['event_id']}")
    await get("/v1/events?type=lead.created&subject=patient-42")
    await get("/v1/subjects/patient-42/timeline")
    await get(f"/v1/events/{ids['event_id']}/deliveries")
    deliveries = await get("/v1/deliveries")
    assert len(deliveries["data"]) == 2
    for d in deliveries["data"]:
        await get(f"/v1/deliveries/{d['id']}")
        await get(f"/v1/deliveries/{d['id']}/attempts")
    await get("/v1/inbox/seller-1")
    await get(f"/v1/sources/{ids['source_id']}/requests")
    requests = answers[f"/v1/sources/{ids['source_id']}/requests"]["data"]
    for r in requests:
        await get(f"/v1/sources/{ids['source_id']}/requests/{r['id']}")
    await get("/v1/recipients/patient-42")
    status, replay, _ = await api.call(
        "POST", "/v1/replays", key, {"types": ["lead.*"], "dry_run": True}
    )
    assert status in (200, 403), replay  # a dry run needs `manage`: the manage key's walk
    if status == 200:
        answers["replay dry run"] = replay
    return answers


async def test_a_read_key_never_sees_raw_pii_and_a_pii_key_sees_it(hub_api: Api, echo: str) -> None:
    api = hub_api
    tenant, manage = await api.tenant(scopes=("ingest", "read", "manage"))
    _, read = await api.tenant(tenant, scopes=("read",))
    _, pii = await api.tenant(tenant, scopes=("read", "pii"))
    ids = await _populate(api, manage, echo)

    masked = await _walk(api, read, ids)
    for path, answer in masked.items():
        assert raw_values(answer) == [], (path, answer)
    event = masked[f"/v1/events/{ids['event_id']}"]
    assert event["data"] == {
        "name": "J. P.",
        "email": "j***@e***.com.br",
        "phone": "+55 31 9****-5432",
        "document": "***.456.789-**",
        "note": f"[{len(NOTE)} characters hidden]",
        "plan": "gold",  # not PII: shown as sent
    }
    assert masked["/v1/recipients/patient-42"]["email"] == "j***@e***.com.br"
    # the attempts echo the webhook body and the inbox renders the data: both masked
    attempts = [a for p, a in masked.items() if p.endswith("/attempts") and a["data"]]
    assert attempts and "+55 31 9****-5432" in orjson.dumps(attempts).decode()
    # a manage key without `pii` is masked too: the scope is given explicitly
    managed = await _walk(api, manage, ids)
    assert "replay dry run" in managed
    assert all(raw_values(a) == [] for a in managed.values())

    whole = await _walk(api, pii, ids)
    assert whole[f"/v1/events/{ids['event_id']}"]["data"] == LEAD
    assert whole["/v1/recipients/patient-42"]["email"] == EMAIL
    assert NAME in orjson.dumps(whole["/v1/inbox/seller-1"]).decode()
    # an admin key sees everything, as before
    status, event, _ = await api.call(
        "GET",
        f"/v1/events/{ids['event_id']}",
        api.admin_key,
        headers={"X-Switchboard-Tenant": tenant},
    )
    assert status == 200 and event["data"] == LEAD


async def test_a_key_can_be_minted_with_the_pii_scope(api: Api) -> None:
    _, manage = await api.tenant()
    status, body, _ = await api.call(
        "POST", "/v1/keys", manage, {"name": "analyst", "scopes": ["read", "pii"]}
    )
    assert status == 201, body
    assert sorted(body["scopes"]) == ["pii", "read"]


async def test_a_pii_class_that_does_not_exist_is_refused_naming_the_path(api: Api) -> None:
    _, manage = await api.tenant()
    bad = {**LEAD_TYPE, "pii_classes": {"document": "passport"}}
    status, body, _ = await api.call("PUT", "/v1/event-types/lead.created", manage, bad)
    assert status in (400, 422), body
    assert "pii_classes.document" in orjson.dumps(body).decode()


async def test_configuration_answers_are_not_masked_so_a_round_trip_keeps_them(api: Api) -> None:
    """A destination's addresses are the tenant's configuration, not a subject's data: a key
    without `pii` reads them as stored and can send them back unchanged."""
    _, manage = await api.tenant(scopes=("read", "manage"))
    config = {
        "host": "smtp.example.com",
        "username": "hub",
        "from": "avisos@clinica.com.br",
        "to": "recepcao@clinica.com.br",
    }
    body = {"name": "mail", "kind": "email", "config": config, "secrets": ["pw-0123456789"]}
    status, created, _ = await api.call("POST", "/v1/destinations", manage, body)
    assert status == 201, created
    _, shown, _ = await api.call("GET", "/v1/destinations/mail", manage)
    assert shown["config"]["from"] == "avisos@clinica.com.br"
    status, patched, _ = await api.call(
        "PATCH", "/v1/destinations/mail", manage, {"config": shown["config"]}
    )
    assert status == 200, patched
    stored = await api.hub.deliveries.get_destination(None, created["id"])
    assert stored is not None and stored.config["to"] == "recepcao@clinica.com.br"


async def test_only_a_key_with_pii_can_mint_one(api: Api) -> None:
    _, manage = await api.tenant(scopes=("read", "manage"))
    status, body, _ = await api.call(
        "POST", "/v1/keys", manage, {"name": "sneaky", "scopes": ["read", "pii"]}
    )
    assert status == 403 and "'pii'" in body["error"]["message"], body
    _, keys, _ = await api.call("GET", "/v1/keys", manage)
    assert [k["name"] for k in keys["data"]] == ["test"]  # nothing minted
