"""campaign_replied on both stores: a campaign message goes out through WhatsApp Cloud (the local
Graph API), Z-API or the WPP gateway (the local provider server), the customer answers it, and
the provider's inbound webhook (documented payloads under tests/fixtures) records the reply and
`campaign_replied` with the delivery and the campaign, which a route then acts on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_channels import (  # noqa: F401
    GATEWAY_SECRET,
    ZAPI_CLIENT_TOKEN,
    ZAPI_TOKEN,
    Providers,
    providers,
)
from tests.integration.test_whatsapp_cloud import (  # noqa: F401
    EVENT,
    Graph,
    _setup,
    _webhook,
    config,
    fixture,
    graph,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRACKING = {"replies": True}


async def _track_replies(api: Api, key: str, name: str, tracking: dict[str, Any]) -> None:
    status, body, _ = await api.call("GET", f"/v1/destinations/{name}", key)
    assert status == 200, body
    patch = {"config": {**body["config"], "tracking": tracking}}
    status, body, _ = await api.call("PATCH", f"/v1/destinations/{name}", key, patch)
    assert status == 200, body


async def _events(api: Api, key: str, etype: str) -> list[dict[str, Any]]:
    status, body, _ = await api.call("GET", f"/v1/events?type={etype}", key)
    assert status == 200, body
    return list(body["data"])


async def test_a_reply_to_a_cloud_campaign_message_records_campaign_replied(
    hub_api: Api,
    graph: Graph,  # noqa: F811
) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    await _track_replies(api, key, "wa-cloud", TRACKING)
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "crm", "kind": "inbox", "config": {"recipient": "crm"}},
    )
    assert status == 201, body
    route = {"name": "funnel", "types": ["campaign_replied"], "destinations": ["crm"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    campaign_event = {**EVENT, "id": "offer-1", "data": {**EVENT["data"], "campaign_id": "cmp_9"}}
    assert (await api.call("POST", "/v1/events", key, [campaign_event]))[0] == 202
    await worker_for(api).drain()
    [delivery] = (await api.call("GET", "/v1/events/offer-1/deliveries", key))[1]["data"]

    body = fixture("button_reply.json", delivery["provider_id"])
    status, reply = await _webhook(api, source, body)
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == [
        "whatsapp.message_received",
        "campaign_replied",
    ]
    [replied] = await _events(api, key, "campaign_replied")
    assert replied["subject"] == "patient-42"  # the campaign's recipient, not the phone
    assert replied["data"] == {
        "campaign_id": "cmp_9",
        "delivery_id": delivery["id"],
        "channel": "whatsapp_cloud",
        "message_text": "Confirmar",
    }
    assert replied["causation_id"] == reply["events"][0]["id"]
    assert replied["context"]["reply_event_id"] == reply["events"][0]["id"]
    # Meta's retry of the same webhook records nothing new
    status, again = await _webhook(api, source, body)
    assert status == 200, again
    assert [e["status"] for e in again["events"]] == ["duplicate"]
    assert len(await _events(api, key, "campaign_replied")) == 1
    await worker_for(api).drain()
    status, inbox, _ = await api.call("GET", "/v1/inbox/crm", key)
    assert status == 200 and len(inbox["data"]) == 1, inbox


async def test_an_automations_message_is_its_campaign_and_the_type_is_configurable(
    hub_api: Api,
    graph: Graph,  # noqa: F811
) -> None:
    api = hub_api
    _, key, source = await _setup(api, graph)
    await _track_replies(api, key, "wa-cloud", {"replies": True, "replied_type": "resposta"})
    automation = {
        "name": "reativacao",
        "on": "appointment.missed",
        "steps": [{"id": "ask", "send": {"destination": "wa-cloud"}}],
    }
    status, body, _ = await api.call("PUT", "/v1/automations/reativacao", key, automation)
    assert status == 201, body
    event = {**EVENT, "id": "miss-1", "type": "appointment.missed"}
    assert (await api.call("POST", "/v1/events", key, [event]))[0] == 202
    while await api.hub.engine.tick():
        pass
    await worker_for(api).drain()
    [delivery] = (await api.call("GET", "/v1/events/miss-1/deliveries", key))[1]["data"]
    status, reply = await _webhook(
        api, source, fixture("button_reply.json", delivery["provider_id"])
    )
    assert status == 200, reply
    [answer] = await _events(api, key, "resposta")
    assert answer["data"]["campaign_id"] == "reativacao"
    assert answer["data"]["delivery_id"] == delivery["id"]


async def _provider_setup(
    api: Api, servers: Providers, provider: str, preset: str, mapping: str
) -> tuple[str, dict[str, Any]]:
    _, key = await api.tenant()
    if provider == "zapi":
        cfg = {"provider": "zapi", "base_url": servers.url, "instance": "INST1"}
        secrets = [ZAPI_TOKEN, ZAPI_CLIENT_TOKEN]
        source_secret = ZAPI_CLIENT_TOKEN
    else:
        cfg = {"provider": "gateway", "base_url": f"{servers.url}/wpp", "channel": "tenant-042"}
        secrets = [GATEWAY_SECRET]
        source_secret = GATEWAY_SECRET
    dest = {
        "name": "wa",
        "kind": "whatsapp",
        "secrets": secrets,
        "config": {
            **cfg,
            "to_path": "data.phone",
            "template": "Olá {{ data.name }}! Temos uma oferta para você.",
            "tracking": TRACKING,
        },
    }
    status, body, _ = await api.call("POST", "/v1/destinations", key, dest)
    assert status == 201, body
    route = {"name": "oferta-marco", "types": ["reward.*"], "destinations": ["wa"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {"name": "inbound", "preset": preset, "secrets": [source_secret], "mapping": mapping},
    )
    assert status == 201, source
    return key, {**source, "secret": source_secret}


@pytest.mark.parametrize(
    ("provider", "preset", "mapping", "sample", "header", "text"),
    [
        (
            "zapi",
            "zapi",
            "zapi",
            "zapi/received-reply.json",
            "Client-Token",
            "Quero agendar para sábado",
        ),
        (
            "gateway",
            "wpp_gateway",
            "wpp-gateway",
            "wpp-gateway/message-reply.json",
            "X-Gateway-Secret",
            "Pode ser sábado às 10h?",
        ),
    ],
)
async def test_zapi_and_gateway_replies_record_campaign_replied(
    hub_api: Api,
    providers: Providers,  # noqa: F811
    provider: str,
    preset: str,
    mapping: str,
    sample: str,
    header: str,
    text: str,
) -> None:
    api = hub_api
    key, source = await _provider_setup(api, providers, provider, preset, mapping)
    # no campaign_id in the event: the route's name is the campaign
    assert (await api.call("POST", "/v1/events", key, [{**EVENT, "id": "o-1"}]))[0] == 202
    await worker_for(api).drain()
    [delivery] = (await api.call("GET", "/v1/events/o-1/deliveries", key))[1]["data"]
    assert delivery["status"] == "succeeded" and delivery["provider_id"], delivery

    async def post(raw: bytes) -> dict[str, Any]:
        status, reply, _ = await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=raw,
            headers={"Content-Type": "application/json", header: source["secret"]},
        )
        assert status == 200, reply
        return dict(reply)

    template = (FIXTURES / sample).read_bytes()
    reply = await post(template.replace(b"__REF__", delivery["provider_id"].encode()))
    assert [e["type"] for e in reply["events"]][-1] == "campaign_replied", reply
    [replied] = await _events(api, key, "campaign_replied")
    assert replied["subject"] == "patient-42"
    assert replied["data"]["campaign_id"] == "oferta-marco"
    assert replied["data"]["delivery_id"] == delivery["id"]
    assert replied["data"]["message_text"] == text
    assert replied["data"]["channel"] == "whatsapp"

    # a reply quoting a message the hub never sent is only a message
    other = orjson.loads(template.replace(b"__REF__", b"not-ours-123"))
    if provider == "zapi":
        other["messageId"] = "3EB0C431C26A1916E0C9"
    else:
        other["data"]["id"] = "false_5511987654321@c.us_3EB0FFFF"
    reply = await post(orjson.dumps(other))
    assert "campaign_replied" not in [e["type"] for e in reply["events"]]
    assert len(await _events(api, key, "campaign_replied")) == 1


@pytest.mark.security
async def test_a_reply_never_ties_to_another_tenants_campaign(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    api = hub_api
    key, _ = await _provider_setup(api, providers, "zapi", "zapi", "zapi")
    assert (await api.call("POST", "/v1/events", key, [{**EVENT, "id": "o-1"}]))[0] == 202
    await worker_for(api).drain()
    [delivery] = (await api.call("GET", "/v1/events/o-1/deliveries", key))[1]["data"]
    # another tenant's source receives a reply naming our message id
    other_key, other_source = await _provider_setup(api, providers, "zapi", "zapi", "zapi")
    raw = (FIXTURES / "zapi/received-reply.json").read_bytes()
    status, reply, _ = await api.call(
        "POST",
        f"/v1/sources/{other_source['id']}/webhook",
        data=raw.replace(b"__REF__", delivery["provider_id"].encode()),
        headers={"Content-Type": "application/json", "Client-Token": ZAPI_CLIENT_TOKEN},
    )
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == ["whatsapp.inbound"]
    assert await _events(api, other_key, "campaign_replied") == []
    assert await _events(api, key, "campaign_replied") == []


def test_reply_tracking_config_names_the_field() -> None:
    from switchboard.channels.registry import check_destination_config

    problems = check_destination_config(
        "whatsapp_cloud",
        {**config(Graph(url="http://127.0.0.1:9")), "tracking": {"replies": 1, "opens": True}},
    )
    assert "config.tracking.replies: true or false" in problems
    assert any(p.startswith("config.tracking.opens: unknown field") for p in problems)
