"""Recipients, consent and preferences on both stores, with real receivers: profiles kept current
by catalog types, the consent ledger fed by events and the API, routes that require consent,
per-channel opt-outs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from switchboard import unsubscribe
from tests.conftest import Api
from tests.integration.conftest import Clock, worker_for
from tests.integration.test_channels import Smtp, email_config, parse, smtp  # noqa: F401
from tests.integration.test_delivery import send, setup_route

OPEN = {"type": "object"}


def event_type(name: str, **people: Any) -> dict[str, Any]:
    return {"name": name, "versions": [{"version": "1.0", "schema": OPEN}], **people}


async def put_type(api: Api, key: str, spec: dict[str, Any]) -> None:
    status, body, _ = await api.call("PUT", f"/v1/event-types/{spec['name']}", key, spec)
    assert status == 200, body


async def statuses(api: Api, key: str, event_id: str) -> list[tuple[str, str | None]]:
    status, body, _ = await api.call("GET", f"/v1/events/{event_id}/deliveries", key)
    assert status == 200, body
    return [(d["status"], d["last_error"]) for d in body["data"]]


ESSAY_GRANT = event_type(
    "consentimento_registrado",
    consent={
        "purpose": "processing",
        "action": "grant",
        "terms_version": "data.versao_termo",
        "legal_basis": "data.base_legal",
        "origin": "data.origem",
        "ip": "data.ip",
        "user_agent": "data.user_agent",
    },
)
ESSAY_WITHDRAW = event_type(
    "consentimento_revogado",
    consent={"purpose": "processing", "action": "withdraw", "terms_version": "data.versao_termo"},
)


async def test_catalog_profile_keeps_recipients_current_and_the_api_edits_them(
    hub_api: Api,
) -> None:
    api = hub_api
    _, key = await api.tenant()
    await put_type(
        api,
        key,
        event_type(
            "usuario_cadastrado",
            profile={"email": "data.email", "locale": "context.locale", "plano": "data.plano"},
        ),
    )
    await send(
        api,
        key,
        [
            {
                "type": "usuario_cadastrado",
                "subject": "usr_1",
                "context": {"locale": "pt-BR"},
                "data": {"email": "ana@example.com", "plano": "premium"},
            }
        ],
    )
    status, body, _ = await api.call("GET", "/v1/recipients/usr_1", key)
    assert status == 200, body
    assert body["email"] == "ana@example.com" and body["locale"] == "pt-BR"
    assert body["attributes"] == {"plano": "premium"}
    # a later event updates what it carries and keeps the rest
    await send(
        api,
        key,
        [{"type": "usuario_cadastrado", "subject": "usr_1", "data": {"email": "ana@novo.com"}}],
    )
    _, body, _ = await api.call("GET", "/v1/recipients/usr_1", key)
    assert body["email"] == "ana@novo.com" and body["locale"] == "pt-BR"
    assert body["attributes"] == {"plano": "premium"}
    status, body, _ = await api.call(
        "PATCH", "/v1/recipients/usr_1", key, {"phone": "+55 31 99876-5432", "locale": None}
    )
    assert status == 200, body
    assert body["phone"] == "+55 31 99876-5432" and body["locale"] is None
    assert body["email"] == "ana@novo.com"
    status, body, _ = await api.call(
        "PUT", "/v1/recipients/usr_2", key, {"email": "bia@example.com", "timezone": "UTC"}
    )
    assert status == 201, body
    status, body, _ = await api.call("PUT", "/v1/recipients/usr_2", key, {"name": "Bia"})
    assert status == 200 and body["email"] is None and body["name"] == "Bia"
    assert (await api.call("DELETE", "/v1/recipients/usr_2", key))[0] == 204
    assert (await api.call("GET", "/v1/recipients/usr_2", key))[0] == 404
    assert (await api.call("DELETE", "/v1/recipients/usr_2", key))[0] == 404


async def test_clinic_marketing_consent_from_customer_created(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    await put_type(
        api,
        key,
        event_type(
            "customer_created",
            profile={"name": "data.nome"},
            consent={"purpose": "marketing", "field": "data.consentimento_marketing"},
        ),
    )
    rcv = await receivers()
    await setup_route(
        api,
        key,
        rcv.url,
        route={"types": ["reward_offered"], "requires_consent": ["marketing"]},
    )
    await send(
        api,
        key,
        [
            {
                "type": "customer_created",
                "subject": "c-yes",
                "data": {"nome": "Maria", "consentimento_marketing": True},
            },
            {
                "type": "customer_created",
                "subject": "c-no",
                "data": {"nome": "João", "consentimento_marketing": False},
            },
            {"type": "customer_created", "subject": "c-silent", "data": {"nome": "Rita"}},
        ],
    )
    body = await send(
        api,
        key,
        [
            {"id": f"offer-{s}", "type": "reward_offered", "subject": s, "data": {"reward": "spa"}}
            for s in ("c-yes", "c-no", "c-silent")
        ],
    )
    assert body["accepted"] == 3
    await worker_for(api).drain()
    assert [r["json"]["subject"] for r in rcv.received] == ["c-yes"]
    assert await statuses(api, key, "offer-c-yes") == [("succeeded", None)]
    assert await statuses(api, key, "offer-c-no") == [("suppressed", "consent:marketing")]
    assert await statuses(api, key, "offer-c-silent") == [("suppressed", "consent:marketing")]
    _, ledger, _ = await api.call("GET", "/v1/recipients/c-no/consents", key)
    assert ledger["state"] == {"marketing": "withdrawn"}
    _, ledger, _ = await api.call("GET", "/v1/recipients/c-silent/consents", key)
    assert ledger == {"state": {}, "data": []}


async def test_essay_withdrawal_races_deliveries_and_nothing_is_sent_after_it(
    hub_api: Api, receivers: Any
) -> None:
    """essay-platform: after `consentimento_revogado`, `redacao_enviada` must not be delivered.
    Essays are sent and a worker delivers them while the withdrawal arrives; once the
    withdrawal is acknowledged, nothing more reaches the receiver but what was already on the
    wire, and every essay sent afterwards is suppressed."""
    api = hub_api
    _, key = await api.tenant()
    await put_type(api, key, ESSAY_GRANT)
    await put_type(api, key, ESSAY_WITHDRAW)
    rcv = await receivers(delay=0.002)
    await setup_route(
        api, key, rcv.url, route={"types": ["redacao_enviada"], "requires_consent": ["processing"]}
    )
    grant = {
        "type": "consentimento_registrado",
        "subject": "usr_5f2a91",
        "data": {
            "versao_termo": "2024-05",
            "base_legal": "consentimento",
            "origem": "dashboard-web",
            "ip": "200.147.35.10",
            "user_agent": "Mozilla/5.0",
        },
    }
    await send(api, key, [grant])
    worker = worker_for(api)
    stop = asyncio.Event()

    async def deliver() -> None:
        while not stop.is_set():
            await worker.drain(within=5)
            await asyncio.sleep(0)

    def essay(n: int) -> dict[str, Any]:
        return {"id": f"essay-{n}", "type": "redacao_enviada", "subject": "usr_5f2a91", "data": {}}

    async def essays(first: int, count: int) -> None:
        for n in range(first, first + count):
            await send(api, key, [essay(n)])

    delivering = asyncio.create_task(deliver())
    sending = asyncio.create_task(essays(0, 40))
    try:
        while len(rcv.received) < 3:  # the race is on: essays are being delivered
            await asyncio.sleep(0.005)
        await send(
            api,
            key,
            [
                {
                    "type": "consentimento_revogado",
                    "subject": "usr_5f2a91",
                    "data": {"versao_termo": "2024-05"},
                }
            ],
        )
        # acknowledged: what may still arrive is at most what was succeeded or being sent now
        _, listing, _ = await api.call("GET", "/v1/deliveries?limit=1000", key)
        on_the_wire = sum(d["status"] in ("succeeded", "sending") for d in listing["data"])
        await sending
        await essays(100, 5)  # after the withdrawal
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await delivering
    await worker.drain()
    _, listing, _ = await api.call("GET", "/v1/deliveries?limit=1000", key)
    final = [(d["status"], d["last_error"]) for d in listing["data"]]
    assert len(final) == 45
    succeeded = sum(s == "succeeded" for s, _ in final)
    assert len(rcv.received) == succeeded <= on_the_wire
    assert all(
        s == "succeeded" or (s in ("suppressed", "cancelled") and why == "consent:processing")
        for s, why in final
    ), final
    for n in range(100, 105):
        assert await statuses(api, key, f"essay-{n}") in (
            [("suppressed", "consent:processing")],
            [("cancelled", "consent:processing")],
        )
    _, ledger, _ = await api.call("GET", "/v1/recipients/usr_5f2a91/consents", key)
    assert ledger["state"] == {"processing": "withdrawn"}
    granted = ledger["data"][-1]
    assert granted["action"] == "grant" and granted["terms_version"] == "2024-05"
    assert granted["legal_basis"] == "consentimento" and granted["ip"] == "200.147.35.10"
    assert granted["origin"] == "dashboard-web" and granted["user_agent"] == "Mozilla/5.0"


async def test_withdrawal_by_api_cancels_waiting_deliveries(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    await setup_route(
        api, key, rcv.url, route={"types": ["promo.*"], "requires_consent": ["marketing"]}
    )
    status, body, _ = await api.call(
        "POST", "/v1/recipients/ana/consents", key, {"purpose": "marketing", "action": "grant"}
    )
    assert status == 201 and body["action"] == "grant", body
    await send(api, key, [{"id": "p1", "type": "promo.sent", "subject": "ana", "data": {}}])
    await send(api, key, [{"id": "p2", "type": "promo.sent", "subject": "bob", "data": {}}])
    status, body, _ = await api.call(
        "POST",
        "/v1/recipients/ana/consents",
        key,
        {"purpose": "marketing", "action": "withdraw", "origin": "support", "ip": "10.0.0.1"},
    )
    assert status == 201 and body["ip"] == "10.0.0.1", body
    # cancelled at once, before any worker ran; bob's (never granted) is left to the worker
    assert await statuses(api, key, "p1") == [("cancelled", "consent:marketing")]
    assert await statuses(api, key, "p2") == [("pending", None)]
    await worker_for(api).drain()
    assert rcv.received == []
    assert await statuses(api, key, "p2") == [("suppressed", "consent:marketing")]


async def test_per_channel_opt_out_email_off_inbox_on(
    hub_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    """legal-practice: a user's event_subscriptions turn email off and keep in-app on."""
    api = hub_api
    _, key = await api.tenant()
    await put_type(api, key, event_type("auth.password_reset_requested", critical=True))
    for dest in (
        {"name": "mail", "kind": "email", "config": email_config(smtp.port, to_path="data.to")},
        {"name": "inbox", "kind": "inbox", "config": {"recipient_path": "subject"}},
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", key, dest)
        assert status == 201, body
    route = {"name": "all", "types": ["*"], "destinations": ["mail", "inbox"], "preferences": True}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    status, body, _ = await api.call(
        "PUT",
        "/v1/recipients/adv_1/preferences",
        key,
        {"preferences": [{"topic": "*", "channel": "email", "enabled": False}]},
    )
    assert status == 200, body

    def ev(event_id: str, etype: str, subject: str) -> dict[str, Any]:
        data = {"to": f"{subject}@example.com", "name": subject}
        return {"id": event_id, "type": etype, "subject": subject, "data": data}

    await send(
        api,
        key,
        [
            ev("m1", "matter.updated", "adv_1"),
            ev("m2", "matter.updated", "adv_2"),
            ev("r1", "auth.password_reset_requested", "adv_1"),  # critical: ignores opt-outs
        ],
    )
    await worker_for(api).drain()
    emails = sorted(parse(e)["X-Switchboard-Event-Id"] for e in smtp.collector.envelopes)
    assert emails == ["m2", "r1"]
    assert sorted(await statuses(api, key, "m1")) == [
        ("succeeded", None),
        ("suppressed", "preference"),
    ]
    _, inbox, _ = await api.call("GET", "/v1/inbox/adv_1", key)
    assert len(inbox["data"]) == 2  # m1 and r1 in-app
    _, prefs, _ = await api.call("GET", "/v1/recipients/adv_1/preferences", key)
    assert prefs == {"preferences": [{"topic": "*", "channel": "email", "enabled": False}]}


async def test_catalog_default_preferences_apply_until_the_recipient_chooses(
    hub_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    """A marketing type is off by email unless the person opts in, on in-app by default; the
    person's own preference (here by category) beats the catalog's default."""
    api = hub_api
    _, key = await api.tenant()
    await put_type(
        api,
        key,
        event_type("promo.sent", category="marketing", preferences={"email": False, "*": True}),
    )
    for dest in (
        {"name": "mail", "kind": "email", "config": email_config(smtp.port, to_path="data.to")},
        {"name": "inbox", "kind": "inbox", "config": {"recipient_path": "subject"}},
    ):
        status, body, _ = await api.call("POST", "/v1/destinations", key, dest)
        assert status == 201, body
    route = {"name": "all", "types": ["*"], "destinations": ["mail", "inbox"], "preferences": True}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    _, stored, _ = await api.call("GET", "/v1/event-types/promo.sent", key)
    assert stored["preferences"] == {"*": True, "email": False}
    status, body, _ = await api.call(
        "PUT",
        "/v1/recipients/fan/preferences",
        key,
        {"preferences": [{"topic": "marketing", "channel": "email", "enabled": True}]},
    )
    assert status == 200, body
    await send(
        api,
        key,
        [
            {"id": f"p-{s}", "type": "promo.sent", "subject": s, "data": {"to": f"{s}@ex.com"}}
            for s in ("fan", "quiet")
        ],
    )
    await worker_for(api).drain()
    emails = sorted(parse(e)["X-Switchboard-Event-Id"] for e in smtp.collector.envelopes)
    assert emails == ["p-fan"]
    assert sorted(await statuses(api, key, "p-quiet")) == [
        ("succeeded", None),
        ("suppressed", "preference"),
    ]
    for who in ("fan", "quiet"):
        _, inbox, _ = await api.call("GET", f"/v1/inbox/{who}", key)
        assert len(inbox["data"]) == 1, who


async def test_recipients_are_per_tenant(hub_api: Api) -> None:
    api = hub_api
    _, first = await api.tenant()
    _, second = await api.tenant()
    await api.call("PUT", "/v1/recipients/same", first, {"email": "a@example.com"})
    await api.call(
        "POST", "/v1/recipients/same/consents", first, {"purpose": "marketing", "action": "grant"}
    )
    assert (await api.call("GET", "/v1/recipients/same", second))[0] == 404
    _, ledger, _ = await api.call("GET", "/v1/recipients/same/consents", second)
    assert ledger == {"state": {}, "data": []}
    assert (await api.call("DELETE", "/v1/recipients/same", second))[0] == 404
    assert (await api.call("GET", "/v1/recipients/same", first))[1]["email"] == "a@example.com"


@pytest.mark.security
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/recipients/r", {"email": "not-an-address"}, "/email"),
        ("PUT", "/v1/recipients/r", {"timezone": "Mars/Olympus"}, "/timezone"),
        ("PUT", "/v1/recipients/r", {"attributes": {f"k{i}": i for i in range(51)}}, "/attributes"),
        ("PUT", "/v1/recipients/r", {"attributes": {"blob": "x" * 9000}}, "/attributes"),
        ("PUT", "/v1/recipients/r", {"name": "x" * 501}, "/name"),
        ("PUT", "/v1/recipients/r", {"role": "admin"}, "/role"),
        (
            "POST",
            "/v1/recipients/r/consents",
            {"purpose": "Marketing!", "action": "grant"},
            "/purpose",
        ),
        (
            "POST",
            "/v1/recipients/r/consents",
            {"purpose": "marketing", "action": "maybe"},
            "/action",
        ),
        (
            "POST",
            "/v1/recipients/r/consents",
            {"purpose": "m", "action": "grant", "ip": "1" * 600},
            "/ip",
        ),
        (
            "PUT",
            "/v1/recipients/r/preferences",
            {"preferences": [{"topic": "*", "channel": "email", "enabled": True}] * 201},
            "/preferences",
        ),
        (
            "PUT",
            "/v1/recipients/r/preferences",
            {"preferences": [{"topic": "a b", "channel": "email", "enabled": True}]},
            "/preferences/0/topic",
        ),
    ],
)
async def test_tenant_input_over_limits_is_a_422_naming_the_field(
    api: Api, method: str, path: str, body: Any, field: str
) -> None:
    _, key = await api.tenant()
    status, answer, _ = await api.call(method, path, key, body)
    assert status == 422, answer
    assert field in {d["path"] for d in answer["error"]["details"]}
    assert (await api.call("GET", "/v1/recipients/r", key))[0] == 404  # nothing written


@pytest.mark.security
async def test_catalog_people_keys_are_checked(api: Api) -> None:
    _, key = await api.tenant()
    for people, where in [
        ({"profile": {"email": "__class__.__globals__"}}, "profile.email"),
        ({"profile": {f"f{i}": "data.x" for i in range(21)}}, "profile"),
        ({"consent": {"purpose": "marketing"}}, "consent"),
        ({"consent": {"purpose": "marketing", "action": "grant", "sql": "x"}}, "consent.sql"),
        ({"critical": "yes"}, "critical"),
    ]:
        status, body, _ = await api.call(
            "PUT", "/v1/event-types/x.y", key, event_type("x.y", **people)
        )
        assert status == 422, (people, body)
        assert where in str(body["error"]), (people, body)


@pytest.mark.security
async def test_recipient_id_over_the_limit_is_refused(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/recipients/" + "r" * 201, key, {"name": "x"})
    assert status == 400 and body["error"]["details"][0]["path"] == "id"


@pytest.mark.security
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "where"),
    [
        ("GET", "/v1/recipients/r/consents?limit=0", None, 400, "?limit"),
        ("GET", "/v1/recipients/r/consents?limit=many", None, 400, "?limit"),
        ("GET", "/v1/templates/t?version=0", None, 400, "?version"),
        ("GET", "/v1/templates/T!", None, 400, "name"),
        ("GET", "/v1/subjects/" + "s" * 201 + "/export", None, 400, "subject"),
        ("DELETE", "/v1/consent-purposes/" + "m" * 41, None, 400, "name"),
        ("PATCH", "/v1/recipients/r", {"email": 5}, 422, "/email"),
        ("PUT", "/v1/recipients/r", {"phone": "call me"}, 422, "/phone"),
        ("PUT", "/v1/recipients/r", {"locale": "portuguese please"}, 422, "/locale"),
        (
            "PUT",
            "/v1/recipients/r/preferences",
            {"preferences": [{"topic": "a"}]},
            422,
            "/preferences/0/enabled",
        ),
        (
            "POST",
            "/v1/recipients/r/consents",
            {"purpose": "m", "action": "grant", "at": "soon"},
            422,
            "/at",
        ),
        (
            "PUT",
            "/v1/templates/t",
            {
                "description": "d" * 1001,
                "variants": [{"channel": "email", "locale": "en", "text": "x"}],
            },
            422,
            "/description",
        ),
        (
            "POST",
            "/v1/templates/t/preview",
            {"event": {}, "recipient": "r" * 201},
            400,
            "/recipient",
        ),
        ("POST", "/v1/templates/t/preview", {"event": [], "locale": "en"}, 400, "/event"),
        ("POST", "/v1/templates/t/preview", {"event": {}, "locale": "x" * 300}, 400, "/locale"),
    ],
)
async def test_typed_parameters_and_bodies_name_the_field(
    api: Api, method: str, path: str, body: Any, status: int, where: str
) -> None:
    _, key = await api.tenant()
    got, answer, _ = await api.call(method, path, key, body)
    assert got == status, answer
    assert where in {d["path"] for d in answer["error"]["details"]}, answer
    assert (await api.call("GET", "/v1/recipients/r", key))[0] == 404  # nothing written
    assert (await api.call("GET", "/v1/templates", key))[1] == {"data": []}


async def test_a_patch_changes_only_what_it_names_and_null_clears(api: Api) -> None:
    _, key = await api.tenant()
    first = {"email": "ana@example.com", "name": "Ana", "attributes": {"plan": "pro", "n": 1}}
    assert (await api.call("PUT", "/v1/recipients/a/b", key, first))[0] == 201
    change = {"name": None, "locale": "pt-BR", "attributes": {"n": None, "vip": True}}
    status, after, _ = await api.call("PATCH", "/v1/recipients/a/b", key, change)
    assert status == 200, after
    assert after["id"] == "a/b" and after["email"] == "ana@example.com"
    assert after["name"] is None and after["locale"] == "pt-BR"
    assert after["attributes"] == {"plan": "pro", "vip": True}
    # the answer goes back as a PUT (its `id` is ignored; the timestamps are not fields)
    again = {k: after[k] for k in ("id", "email", "phone", "locale", "timezone", "name")}
    status, replaced, _ = await api.call("PUT", "/v1/recipients/a/b", key, again)
    assert status == 200 and replaced["attributes"] == {}, replaced


SECRET = "s" * 40


@pytest.fixture
def people_api(hub_api: Api) -> Api:
    """The shared hub (no worker of its own) with unsubscribe links signed: its settings, so
    whatever the shared fixture allows (egress to 127.0.0.1) still applies."""
    hub_api.hub.settings = dataclasses.replace(hub_api.hub.settings, unsubscribe_secret=SECRET)
    return hub_api


async def test_email_to_recipient_with_one_click_unsubscribe_clicked_from_the_email(
    people_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    api = people_api
    _, key = await api.tenant()
    await api.call("PUT", "/v1/recipients/ana", key, {"email": "ana@example.com", "name": "Ana"})
    await api.call("PUT", "/v1/recipients/rui", key, {"name": "Rui"})  # no email
    config = email_config(
        smtp.port,
        to=["ops@example.com"],
        subject_template="Novidades",
        text_template=(
            "Olá {{ recipient.name }}! Para sair: {{ unsubscribe_url }}\n"
            "(o mesmo link: {{ event.unsubscribe_url }})"  # the name templates used first
        ),
    )
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "mail", "kind": "email", "config": config}
    )
    assert status == 201, body
    route = {
        "name": "news",
        "types": ["news.*"],
        "destinations": ["mail"],
        "to": "recipient",
        "preferences": True,
    }
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    await send(
        api,
        key,
        [
            {"id": "n1", "type": "news.weekly", "subject": "ana", "data": {}},
            {"id": "n2", "type": "news.weekly", "subject": "rui", "data": {}},
            {"id": "n3", "type": "news.weekly", "subject": "ghost", "data": {}},
        ],
    )
    worker = worker_for(api, public_url=api.url)
    await worker.drain()
    [envelope] = smtp.collector.envelopes
    assert envelope.rcpt_tos == ["ana@example.com"]  # the profile's, not the fixed list
    msg = parse(envelope)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = msg["List-Unsubscribe"].strip("<>")
    assert url.startswith(f"{api.url}/v1/unsubscribe/")
    assert msg.get_content().count(url) == 2 and "Olá Ana!" in msg.get_content()
    assert await statuses(api, key, "n2") == [("suppressed", "no_address")]
    assert await statuses(api, key, "n3") == [("suppressed", "no_address")]

    # a browser (or a mail scanner) following the link changes nothing
    async with api.session.get(url) as resp:
        assert resp.status == 200 and "<form" in await resp.text()
    assert (await api.call("GET", "/v1/recipients/ana/preferences", key))[1]["preferences"] == []
    # the mail client's one-click POST opts out; a second one is harmless
    for _ in range(2):
        async with api.session.post(url, data=b"List-Unsubscribe=One-Click") as resp:
            assert resp.status == 200
    _, prefs, _ = await api.call("GET", "/v1/recipients/ana/preferences", key)
    assert prefs["preferences"] == [{"topic": "news.weekly", "channel": "email", "enabled": False}]
    await send(api, key, [{"id": "n4", "type": "news.weekly", "subject": "ana", "data": {}}])
    await worker.drain()
    assert len(smtp.collector.envelopes) == 1
    assert await statuses(api, key, "n4") == [("suppressed", "preference")]


@pytest.mark.security
async def test_an_altered_unsubscribe_token_is_refused(people_api: Api) -> None:
    api = people_api
    tenant, key = await api.tenant()
    other = unsubscribe.token(SECRET, tenant, "ana", "news.weekly", "email")
    payload, sig = other.split(".")
    forged_payload = unsubscribe.token("x" * 40, tenant, "bob", "*", "*").split(".")[0]
    for bad in (
        f"{forged_payload}.{sig}",  # someone else, with ana's signature
        unsubscribe.token("x" * 40, tenant, "bob", "*", "*"),  # signed with another key
        f"{payload}.",
        "a" * 3000,
        "no-dot",
        f"{payload}.ção",  # not ASCII: a 404 like any other, not a server error
    ):
        async with api.session.post(f"{api.url}/v1/unsubscribe/{bad}") as resp:
            assert resp.status == 404, bad
    assert (await api.call("GET", "/v1/recipients/bob/preferences", key))[1]["preferences"] == []


async def test_quiet_hours_hold_deliveries_durably_until_the_recipients_morning(
    hub_api: Api, receivers: Any
) -> None:
    """A window around 'now' in Tokyo: a Tokyo recipient's message waits for its end (on a fake
    clock), one without a time zone uses the route's (New York: outside it), a critical type
    never waits."""
    api = hub_api
    _, key = await api.tenant()
    await put_type(api, key, event_type("auth.password_reset_requested", critical=True))
    rcv = await receivers()
    tokyo = datetime.now(ZoneInfo("Asia/Tokyo"))
    minute = tokyo.hour * 60 + tokyo.minute
    start, end = (minute - 60) % 1440, (minute + 60) % 1440
    quiet = {
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{end // 60:02d}:{end % 60:02d}",
        "timezone": "America/New_York",
    }
    await setup_route(api, key, rcv.url, route={"quiet_hours": quiet})
    await api.call("PUT", "/v1/recipients/night", key, {"timezone": "Asia/Tokyo"})
    await api.call("PUT", "/v1/recipients/day", key, {"name": "Day"})
    await send(
        api,
        key,
        [
            {"id": "q1", "type": "news.daily", "subject": "night", "data": {}},
            {"id": "q2", "type": "news.daily", "subject": "day", "data": {}},
            {"id": "q3", "type": "auth.password_reset_requested", "subject": "night", "data": {}},
        ],
    )
    clock = Clock()  # now: the events are due
    worker = worker_for(api, clock)
    await worker.drain()
    assert sorted(r["json"]["id"] for r in rcv.received) == ["q2", "q3"]
    _, listing, _ = await api.call("GET", "/v1/events/q1/deliveries", key)
    [held] = listing["data"]
    assert held["status"] == "pending" and held["last_error"] == "quiet hours"
    assert held["attempts"] == 0  # waiting spends no attempt
    wake = datetime.fromisoformat(held["next_attempt_at"].replace("Z", "+00:00"))
    assert wake.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == quiet["end"]
    await worker.drain()  # still quiet: nothing moves
    assert len(rcv.received) == 2
    clock.advance(wake.timestamp() - clock() + 1)
    await worker.drain()
    assert sorted(r["json"]["id"] for r in rcv.received) == ["q1", "q2", "q3"]
    assert await statuses(api, key, "q1") == [("succeeded", None)]


@pytest.mark.security
async def test_a_bad_quiet_hours_window_is_refused(api: Api) -> None:
    _, key = await api.tenant()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "h", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    )
    assert status == 201, body
    for quiet, refusal in (
        ({"start": "25:00", "end": "08:00"}, 422),
        ({"start": "21:00", "end": "08:00", "timezone": "Nowhere/X"}, 422),
        ("always", 400),  # not an object: the route's model refuses it
    ):
        route = {"name": "r", "destinations": ["h"], "quiet_hours": quiet}
        status, body, _ = await api.call("POST", "/v1/routes", key, route)
        assert status == refusal and "quiet_hours" in body["error"]["message"], body
