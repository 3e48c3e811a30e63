"""Inbound SMS on both stores: a text goes out through the local Twilio Messages API, its signed
status callback comes back, then the customer's answer arrives through Twilio's incoming message
webhook (signed with X-Twilio-Signature, as Twilio's own library signs) and becomes sms.inbound,
tied to the delivery it answers; with `tracking.replies` it also records campaign_replied."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from switchboard import catalog
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_sms import (  # noqa: F401
    ACCOUNT,
    TOKEN,
    FakeTwilio,
    _setup,
    _sign,
    _twilio_config,
    twilio,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "twilio"


def _form(name: str, **values: str) -> dict[str, str]:
    form = orjson.loads((FIXTURES / name).read_bytes())
    del form["_comment"]
    form.update(values, AccountSid=ACCOUNT)
    return {k: str(v) for k, v in form.items()}


async def _source(api: Api, key: str) -> tuple[dict[str, Any], str]:
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {"name": "twilio", "preset": "twilio", "secrets": [TOKEN], "mapping": "twilio-sms"},
    )
    assert status == 201, source
    return source, f"{api.url}/v1/sources/{source['id']}/webhook"


async def _post(
    api: Api, url: str, params: dict[str, str], token: str = TOKEN
) -> tuple[int, dict[str, Any]]:
    status, reply, _ = await api.call(
        "POST",
        url.removeprefix(api.url),
        data=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _sign(url, params, token),
        },
    )
    return status, reply


async def test_an_answer_to_our_text_is_sms_inbound_tied_to_the_delivery(
    hub_api: Api,
    twilio: FakeTwilio,  # noqa: F811
) -> None:
    api = hub_api
    tid, key = await api.tenant()
    await api.hub.registry.apply(tid, catalog.load_catalog_dir(ROOT / "catalogs" / "comms-hub"))
    _, url = await _source(api, key)
    config = _twilio_config(twilio, status_callback=url, tracking={"replies": True})
    await _setup(api, key, config)
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        key,
        {
            "id": "c-1",
            "type": "lembrete.consulta",
            "subject": "paciente-7",
            "data": {"telefone": "(11) 98765-4321", "nome": "Ana", "campaign_id": "cmp_retorno"},
        },
    )
    assert status == 202, body
    await worker_for(api).drain()
    [delivery] = (await api.call("GET", "/v1/events/c-1/deliveries", key))[1]["data"]
    sid = delivery["provider_id"]
    sent = twilio.sent[0]

    # Twilio's status callback records where the text went (sms.status)
    status, reply = await _post(
        api,
        url,
        _form(
            "status_callback.json",
            MessageSid=sid,
            SmsSid=sid,
            MessageStatus="delivered",
            SmsStatus="delivered",
            To=sent["To"],
            From=sent["From"],
        ),
    )
    assert status == 200, reply

    # the customer answers: Twilio posts the incoming message to the same source
    inbound_sid = "SM" + "ab" * 16
    answer = _form(
        "inbound_message.json",
        MessageSid=inbound_sid,
        SmsSid=inbound_sid,
        SmsMessageSid=inbound_sid,
        From=sent["To"],
        To=sent["From"],
        Body="Ok, confirmado 👍",
    )
    status, reply = await _post(api, url, answer)
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == ["sms.inbound", "campaign_replied"]
    assert reply["events"][0]["status"] == "accepted"
    assert reply["events"][0].get("validation") in (None, "valid"), reply
    status, event, _ = await api.call("GET", f"/v1/events/{inbound_sid}", key)
    assert status == 200, event
    assert event["subject"] == "5511987654321"
    assert event["data"]["text"] == "Ok, confirmado 👍"
    assert event["data"]["from"] == "+5511987654321" and event["data"]["to"] == "+15557122661"
    assert event["context"]["in_reply_to_delivery"] == delivery["id"]
    _, events, _ = await api.call("GET", "/v1/events?type=campaign_replied", key)
    [replied] = events["data"]
    assert replied["subject"] == "paciente-7"
    assert replied["data"] == {
        "campaign_id": "cmp_retorno",
        "delivery_id": delivery["id"],
        "channel": "sms",
        "message_text": "Ok, confirmado 👍",
    }

    # Twilio's retry is a duplicate; a forged signature is refused and stores nothing
    status, again = await _post(api, url, answer)
    assert status == 200 and [e["status"] for e in again["events"]] == ["duplicate"], again
    forged = {**answer, "MessageSid": "SM" + "cd" * 16, "Body": "forged"}
    status, refused = await _post(api, url, forged, token="not-the-auth-token")
    assert status == 401, refused
    _, events, _ = await api.call("GET", "/v1/events?type=sms.inbound", key)
    assert [e["id"] for e in events["data"]] == [inbound_sid]


@pytest.mark.security
async def test_a_text_from_someone_we_never_texted_answers_nothing(
    hub_api: Api,
    twilio: FakeTwilio,  # noqa: F811
) -> None:
    api = hub_api
    _, key = await api.tenant()
    _, url = await _source(api, key)
    # another tenant texted this number: its status events are not ours to look at
    _, other_key = await api.tenant()
    _, other_url = await _source(api, other_key)
    await _setup(api, other_key, _twilio_config(twilio, status_callback=other_url))
    status, body, _ = await api.call(
        "POST",
        "/v1/events",
        other_key,
        {"id": "x-1", "type": "lembrete.consulta", "data": {"telefone": "+5511987654321"}},
    )
    assert status == 202, body
    await worker_for(api).drain()
    sent = twilio.sent[0]
    sid = (await api.call("GET", "/v1/events/x-1/deliveries", other_key))[1]["data"][0][
        "provider_id"
    ]
    callback = _form(
        "status_callback.json",
        MessageSid=sid,
        SmsSid=sid,
        MessageStatus="delivered",
        SmsStatus="delivered",
        To=sent["To"],
        From=sent["From"],
    )
    assert (await _post(api, other_url, callback))[0] == 200
    inbound_sid = "SM" + "ef" * 16
    answer = _form(
        "inbound_message.json",
        MessageSid=inbound_sid,
        SmsSid=inbound_sid,
        SmsMessageSid=inbound_sid,
        From=sent["To"],
        To=sent["From"],
    )
    status, reply = await _post(api, url, answer)
    assert status == 200, reply
    assert [e["type"] for e in reply["events"]] == ["sms.inbound"]
    _, event, _ = await api.call("GET", f"/v1/events/{inbound_sid}", key)
    assert "in_reply_to_delivery" not in event["context"]
