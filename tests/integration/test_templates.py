"""Message templates through the API on both stores: versions, previews with the locale chain,
and a route that renders the recipient's variant into a real email."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_channels import (  # noqa: F401
    GATEWAY_SECRET,
    Providers,
    Smtp,
    email_config,
    gateway_config,
    parse,
    providers,
    smtp,
)
from tests.integration.test_delivery import send

ROOT = Path(__file__).resolve().parents[2]
WELCOME = yaml.safe_load((ROOT / "templates" / "lead_welcome.yaml").read_text(encoding="utf-8"))


async def test_templates_are_versioned_and_previewed_with_the_locale_chain(hub_api: Api) -> None:
    api = hub_api
    _, key = await api.tenant()
    status, body, _ = await api.call("PUT", "/v1/templates/lead_welcome", key, WELCOME)
    assert status == 201 and body["version"] == 1, body
    status, body, _ = await api.call("PUT", "/v1/templates/lead_welcome", key, body)  # as read
    assert status == 200 and body["version"] == 1
    changed = {**WELCOME, "description": "v2"}
    status, body, _ = await api.call("PUT", "/v1/templates/lead_welcome", key, changed)
    assert status == 201 and body["version"] == 2
    _, old, _ = await api.call("GET", "/v1/templates/lead_welcome?version=1", key)
    assert old["description"] == WELCOME["description"]
    _, listing, _ = await api.call("GET", "/v1/templates", key)
    assert listing == {"data": [{"name": "lead_welcome", "version": 2}]}

    await api.call("PUT", "/v1/recipients/joana", key, {"name": "Joana", "locale": "en-GB"})
    event = {"type": "lead.created", "data": {"name": "Joana", "city": "Belo Horizonte"}}
    status, body, _ = await api.call(
        "POST", "/v1/templates/lead_welcome/preview", key, {"event": event, "recipient": "joana"}
    )
    assert status == 200, body
    assert body["chain"] == ["en-gb", "en", "pt-br"]
    by_channel = {v["channel"]: v for v in body["variants"]}
    assert by_channel["email"]["locale"] == "en"  # en-GB → en
    assert by_channel["email"]["rendered"]["subject"] == "We got your message, Joana"
    assert by_channel["whatsapp"]["locale"] == "pt-BR"  # no English WhatsApp: the default
    assert "Belo Horizonte" in by_channel["whatsapp"]["rendered"]["text"]
    status, body, _ = await api.call(
        "POST", "/v1/templates/lead_welcome/preview", key, {"event": event, "locale": "es"}
    )
    assert {v["locale"] for v in body["variants"]} == {"pt-BR"}
    other_tenant = (await api.tenant())[1]
    assert (await api.call("GET", "/v1/templates/lead_welcome", other_tenant))[0] == 404


async def test_a_route_template_renders_the_recipients_locale_into_the_email(
    hub_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    api = hub_api
    _, key = await api.tenant()
    assert (await api.call("PUT", "/v1/templates/lead_welcome", key, WELCOME))[0] == 201
    await api.call("PUT", "/v1/recipients/ana", key, {"email": "ana@example.com", "locale": "en"})
    await api.call("PUT", "/v1/recipients/bia", key, {"email": "bia@example.com", "locale": "es"})
    config = email_config(smtp.port, to=["ops@example.com"])
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "mail", "kind": "email", "config": config}
    )
    assert status == 201, body
    route = {
        "name": "welcome",
        "types": ["lead.created"],
        "destinations": ["mail"],
        "to": "recipient",
        "template": "lead_welcome",
    }
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    await send(
        api,
        key,
        [
            {"type": "lead.created", "subject": s, "data": {"name": n}}
            for s, n in (("ana", "Ana"), ("bia", "Bia <b>"))
        ],
    )
    await worker_for(api).drain()
    got = {e.rcpt_tos[0]: parse(e) for e in smtp.collector.envelopes}
    assert got["ana@example.com"]["Subject"] == "We got your message, Ana"
    bia = got["bia@example.com"]  # Spanish is missing: the pt-BR default
    assert bia["Subject"] == "Recebemos seu contato, Bia <b>"
    html = bia.get_body(("html",)).get_content()
    assert "Bia &lt;b&gt;" in html  # escaped for HTML


@pytest.mark.security
@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {"variants": [{"channel": "email", "locale": "en", "text": "{% for %}"}]},
            "/variants/0/text",
        ),
        (
            {"variants": [{"channel": "email", "locale": "en", "text": "x" * 20001}]},
            "/variants/0/text",
        ),
        (
            {"name": "other", "variants": [{"channel": "email", "locale": "en", "text": "x"}]},
            "/name",
        ),
        ({"variants": [{"channel": "email", "locale": "en", "text": "x"}], "code": "x"}, "/code"),
    ],
)
async def test_bad_templates_are_a_422_naming_the_path(
    api: Api, body: dict[str, Any], path: str
) -> None:
    _, key = await api.tenant()
    status, answer, _ = await api.call("PUT", "/v1/templates/t", key, body)
    assert status == 422, answer
    assert path in {d["path"] for d in answer["error"]["details"]}
    assert (await api.call("GET", "/v1/templates/t", key))[0] == 404


@pytest.mark.security
async def test_a_template_that_fails_at_render_time_is_reported_not_a_500(api: Api) -> None:
    _, key = await api.tenant()
    escape = {"channel": "email", "locale": "en", "text": "{{ ''.__class__.__subclasses__() }}"}
    status, answer, _ = await api.call("PUT", "/v1/templates/t", key, {"variants": [escape]})
    assert status == 422, answer  # the sandbox's `_` attributes are refused when saved
    doc = {
        "variants": [
            {"channel": "email", "locale": "en", "text": "{{ data.missing.deeper }}"},
            {"channel": "inbox", "locale": "en", "title": "{{ 1 / 0 }}", "body": "ok"},
        ]
    }
    assert (await api.call("PUT", "/v1/templates/t", key, doc))[0] == 201
    status, body, _ = await api.call(
        "POST", "/v1/templates/t/preview", key, {"event": {"type": "x", "data": {}}}
    )
    assert status == 200, body
    errors = {v["channel"]: v["errors"] for v in body["variants"]}
    assert errors["email"] and errors["inbox"][0].startswith("title:")
    assert body["variants"][1]["rendered"] == {"body": "ok"}


async def test_clinic_reward_goes_by_whatsapp_to_the_profile_phone_with_the_templates_buttons(
    hub_api: Api,
    providers: Providers,  # noqa: F811
) -> None:
    """clinic-loyalty: customer_created (with marketing consent and a phone) fills the profile;
    reward_offered goes over WhatsApp to that phone, in the pt-BR template with its buttons."""
    api = hub_api
    _, key = await api.tenant()
    customer = {
        "name": "customer_created",
        "versions": [{"version": "1.0", "schema": {"type": "object"}}],
        "profile": {"name": "data.nome", "phone": "data.telefone"},
        "consent": {"purpose": "marketing", "field": "data.consentimento_marketing"},
    }
    assert (await api.call("PUT", "/v1/event-types/customer_created", key, customer))[0] == 200
    reward = yaml.safe_load((ROOT / "templates" / "reward_offered.yaml").read_text("utf-8"))
    assert (await api.call("PUT", "/v1/templates/reward_offered", key, reward))[0] == 201
    config = gateway_config(providers, to="+55 11 90000-0000")
    del config["to_path"]
    zap = {
        "name": "zap",
        "kind": "whatsapp",
        "config": config,
        "secrets": [GATEWAY_SECRET],
    }
    status, body, _ = await api.call("POST", "/v1/destinations", key, zap)
    assert status == 201, body
    route = {
        "name": "rewards",
        "types": ["reward_offered"],
        "destinations": ["zap"],
        "to": "recipient",
        "template": "reward_offered",
        "requires_consent": ["marketing"],
    }
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    await send(
        api,
        key,
        [
            {
                "type": "customer_created",
                "subject": "cus_1",
                "data": {
                    "nome": "Maria",
                    "telefone": "+55 31 99876-5432",
                    "consentimento_marketing": True,
                },
            },
            {
                "id": "r1",
                "type": "reward_offered",
                "subject": "cus_1",
                "data": {"channel": "whatsapp"},
            },
        ],
    )
    await worker_for(api).drain()
    [seen] = providers.seen
    assert seen.body["to"] == "5531998765432"  # the profile's phone, not the fixed number
    assert seen.body["text"].startswith("Olá, Maria!")
    assert [b["text"] for b in seen.body["buttons"]] == ["Quero resgatar", "Depois"]


async def test_a_webhook_variant_is_the_body_the_receiver_gets_in_the_recipients_locale(
    hub_api: Api, receivers: Any
) -> None:
    """A route with a template sends a webhook destination the variant's JSON body (chosen by
    the recipient's locale) in place of its transform; without a webhook variant, the
    transform."""
    api = hub_api
    _, key = await api.tenant()
    doc = {
        "name": "ticket_opened",
        "variants": [
            {
                "channel": "webhook",
                "locale": "pt-BR",
                "body": '{"texto": "Chamado de {{ recipient.name }}", "id": {{ data.n }}}',
            },
            {
                "channel": "webhook",
                "locale": "en",
                "body": '{"text": "Ticket from {{ recipient.name }}", "id": {{ data.n }}}',
            },
        ],
    }
    assert (await api.call("PUT", "/v1/templates/ticket_opened", key, doc))[0] == 201
    rcv = await receivers()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "hook", "kind": "webhook", "config": {"url": rcv.url}},
    )
    assert status == 201, body
    for name, template in (("with", "ticket_opened"), ("without", "missing")):
        route = {
            "name": name,
            "types": [f"ticket.{name}"],
            "destinations": ["hook"],
            "template": template,
            "transform": '{"plain": {{ data.n }}}',
        }
        status, body, _ = await api.call("POST", "/v1/routes", key, route)
        assert status == 201, body
    await api.call("PUT", "/v1/recipients/ana", key, {"name": "Ana", "locale": "en-US"})
    await api.call("PUT", "/v1/recipients/rui", key, {"name": "Rui", "locale": "pt-BR"})
    await send(
        api,
        key,
        [
            {"type": "ticket.with", "subject": "ana", "data": {"n": 1}},
            {"type": "ticket.with", "subject": "rui", "data": {"n": 2}},
            {"type": "ticket.without", "subject": "ana", "data": {"n": 3}},
        ],
    )
    await worker_for(api).drain()
    bodies = sorted((r["json"] for r in rcv.received), key=lambda b: str(sorted(b.items())))
    assert bodies == [
        {"id": 1, "text": "Ticket from Ana"},
        {"id": 2, "texto": "Chamado de Rui"},
        {"plain": 3},
    ]
    status, preview, _ = await api.call(
        "POST",
        "/v1/templates/ticket_opened/preview",
        key,
        {"event": {"type": "ticket.with", "data": {"n": 7}}, "recipient": "rui"},
    )
    assert status == 200, preview
    [variant] = preview["variants"]
    assert variant["rendered"] == {"body": {"texto": "Chamado de Rui", "id": 7}}
