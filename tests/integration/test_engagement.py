"""Email engagement end to end on both stores: a campaign email goes to a real SMTP server
(aiosmtpd) with its links rewritten and an open pixel; following them records campaign_opened /
campaign_clicked through ingest, and a route acts on them (a real webhook receiver)."""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any

import pytest

from switchboard import engagement
from tests.conftest import Api
from tests.integration.conftest import worker_for
from tests.integration.test_channels import Smtp, email_config, parse, smtp  # noqa: F401
from tests.integration.test_delivery import send

SECRET = "e" * 40
ENGAGEMENT_TYPES = {
    "campaign_opened": {"campaign_id": {"type": "string"}, "device": {"type": "string"}},
    "campaign_clicked": {"campaign_id": {"type": "string"}, "link_id": {"type": "string"}},
}
HTML = (
    "<html><body><p>Olá {{ data.name }}!</p>"
    '<a data-link-id="agendar" href="https://clinica.example/agendar?c={{ data.campaign_id }}'
    '&amp;u=1">Agende</a> <a href="mailto:oi@clinica.example">Fale conosco</a>'
    "</body></html>"
)


@pytest.fixture
def tracked_api(hub_api: Api) -> Api:
    hub_api.hub.settings = dataclasses.replace(hub_api.hub.settings, tracking_secret=SECRET)
    return hub_api


async def setup(api: Api, key: str, smtp_port: int, tracking: dict[str, Any]) -> None:
    for name, props in ENGAGEMENT_TYPES.items():
        schema = {"type": "object", "required": ["campaign_id"], "properties": props}
        spec = {"name": name, "versions": [{"version": "1.0", "schema": schema}]}
        status, body, _ = await api.call("PUT", f"/v1/event-types/{name}", key, spec)
        assert status == 200, body
    config = email_config(smtp_port, to_path="data.email", html_template=HTML, tracking=tracking)
    config.pop("to", None)
    status, body, _ = await api.call(
        "POST", "/v1/destinations", key, {"name": "mail", "kind": "email", "config": config}
    )
    assert status == 201, body
    route = {"name": "promo-marco", "types": ["promo.*"], "destinations": ["mail"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201


def links_of(msg: Any) -> tuple[list[str], str]:
    body = msg.get_body(("html",)).get_content()
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', body)]
    pixel = re.search(r'<img src="([^"]*)"', body)
    assert pixel is not None, body
    return hrefs, html.unescape(pixel.group(1))


async def events_of(api: Api, key: str, etype: str) -> list[dict[str, Any]]:
    status, body, _ = await api.call("GET", f"/v1/events?type={etype}", key)
    assert status == 200, body
    return list(body["data"])


async def test_opens_and_clicks_of_a_campaign_email_become_events_a_route_acts_on(
    tracked_api: Api,
    smtp: Smtp,  # noqa: F811
    receivers: Any,
) -> None:
    api = tracked_api
    _, key = await api.tenant()
    await setup(api, key, smtp.port, {"opens": True, "clicks": True, "window": "1h"})
    rcv = await receivers()
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "crm", "kind": "webhook", "config": {"url": rcv.url}},
    )
    assert status == 201, body
    route = {"name": "funnel", "types": ["campaign_clicked"], "destinations": ["crm"]}
    assert (await api.call("POST", "/v1/routes", key, route))[0] == 201
    await send(
        api,
        key,
        [
            {
                "id": "p1",
                "type": "promo.sent",
                "subject": "ana",
                "data": {"name": "Ana", "email": "ana@example.com", "campaign_id": "cmp_botox"},
            },
            # no campaign in the event: the route's name is the campaign
            {
                "id": "p2",
                "type": "promo.sent",
                "subject": "rui",
                "data": {"email": "rui@example.com"},
            },
        ],
    )
    worker = worker_for(api, public_url=api.url)
    await worker.drain()
    assert len(smtp.collector.envelopes) == 2
    by_to = {e.rcpt_tos[0]: parse(e) for e in smtp.collector.envelopes}
    hrefs, pixel = links_of(by_to["ana@example.com"])
    click = hrefs[0]
    assert click.startswith(f"{api.url}/v1/engagement/click/")
    assert hrefs[1] == "mailto:oi@clinica.example"  # not rewritten
    assert pixel.startswith(f"{api.url}/v1/engagement/open/")
    assert (
        "clinica.example/agendar" not in by_to["ana@example.com"].get_body(("html",)).get_content()
    )
    [delivery] = (await api.call("GET", "/v1/events/p1/deliveries", key))[1]["data"]

    # a link checker's HEAD records nothing; the reader's GETs record one open
    async with api.session.head(pixel) as resp:
        assert resp.status == 200
    assert await events_of(api, key, "campaign_opened") == []
    for _ in range(3):
        async with api.session.get(pixel, headers={"User-Agent": "Mozilla/5.0 (iPhone)"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "image/gif"
            assert await resp.read() == engagement.GIF
            assert resp.headers["Cache-Control"].startswith("no-store")
    [opened] = await events_of(api, key, "campaign_opened")
    assert opened["subject"] == "ana" and opened["source"] == "engagement"
    assert opened["data"] == {
        "campaign_id": "cmp_botox",
        "delivery_id": delivery["id"],
        "device": "mobile",
    }

    # a scanner's click and the reader's: one event, both sent on to the link's own URL
    for _ in range(2):
        async with api.session.get(click, allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "https://clinica.example/agendar?c=cmp_botox&u=1"
    [clicked] = await events_of(api, key, "campaign_clicked")
    assert clicked["data"]["link_id"] == "agendar"
    assert clicked["data"]["delivery_id"] == delivery["id"]
    assert clicked["actor"] == {"id": "ana", "type": "customer"}
    await worker.drain()
    [hook] = rcv.received
    assert hook["json"]["type"] == "campaign_clicked" and hook["json"]["subject"] == "ana"

    # the route's name is the campaign of an event without one
    _, rui_pixel = links_of(by_to["rui@example.com"])
    async with api.session.get(rui_pixel) as resp:
        assert resp.status == 200
    campaigns = {
        e["subject"]: e["data"]["campaign_id"] for e in await events_of(api, key, "campaign_opened")
    }
    assert campaigns == {"ana": "cmp_botox", "rui": "promo-marco"}


@pytest.mark.security
async def test_tracking_tokens_cannot_be_altered_or_used_for_another_url(
    tracked_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    api = tracked_api
    _, key = await api.tenant()
    other_tenant, other_key = await api.tenant()
    await setup(api, key, smtp.port, {"clicks": True, "opens": True})
    await send(
        api,
        key,
        [
            {
                "id": "p1",
                "type": "promo.sent",
                "subject": "ana",
                "data": {"email": "ana@example.com", "campaign_id": "c1"},
            }
        ],
    )
    await worker_for(api, public_url=api.url).drain()
    hrefs, pixel = links_of(parse(smtp.collector.envelopes[0]))
    token = hrefs[0].rsplit("/", 1)[1]
    payload, sig = token.split(".")
    mark = engagement.verify(SECRET, token)
    assert mark is not None
    elsewhere = dataclasses.replace(mark, url="https://evil.example/", tenant_id=other_tenant)
    forged = engagement.token(SECRET, elsewhere).split(".")[0]
    for bad, status in (
        (f"{forged}.{sig}", 404),  # another URL and tenant under this signature
        (engagement.token("x" * 40, elsewhere), 404),  # signed with another key
        (pixel.rsplit("/", 1)[1], 404),  # an open token is no link
        (f"{payload}.", 400),  # not the token's shape
        ("a" * (engagement.MAX_TOKEN + 1), 400),
    ):
        async with api.session.get(
            f"{api.url}/v1/engagement/click/{bad}", allow_redirects=False
        ) as resp:
            assert resp.status == status, bad
            assert "Location" not in resp.headers
            if status == 400:
                assert (await resp.json())["error"]["details"][0]["path"] == "token"
    async with api.session.get(f"{api.url}/v1/engagement/open/{token}") as resp:
        assert resp.status == 404  # a link token is no pixel
    assert await events_of(api, key, "campaign_clicked") == []
    assert await events_of(api, other_key, "campaign_clicked") == []


async def test_without_the_secret_or_a_campaign_messages_go_out_untracked(
    hub_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    api = hub_api
    _, key = await api.tenant()
    await setup(api, key, smtp.port, {"opens": True, "clicks": True})
    await send(
        api,
        key,
        [
            {
                "id": "p1",
                "type": "promo.sent",
                "data": {"email": "a@example.com", "campaign_id": "c"},
            }
        ],
    )
    await worker_for(api, public_url=api.url).drain()  # no SWITCHBOARD_TRACKING_SECRET
    body = parse(smtp.collector.envelopes[0]).get_body(("html",)).get_content()
    assert "https://clinica.example/agendar" in body and "<img" not in body


async def test_a_bad_tracking_config_is_refused_naming_the_field(hub_api: Api) -> None:
    _, key = await hub_api.tenant()
    config = email_config(25, tracking={"opens": True, "window": "5s", "max_links": 0})
    status, body, _ = await hub_api.call(
        "POST", "/v1/destinations", key, {"name": "mail", "kind": "email", "config": config}
    )
    assert status == 422, body
    text = str(body)
    assert "config.tracking.window" in text and "config.tracking.max_links" in text


async def test_an_automations_email_is_tracked_under_the_automations_name(
    tracked_api: Api,
    smtp: Smtp,  # noqa: F811
) -> None:
    api = tracked_api
    tenant, key = await api.tenant()
    await setup(api, key, smtp.port, {"opens": True})
    automation = {
        "name": "boas-vindas",
        "on": "cliente.criado",
        "steps": [{"id": "mail", "send": {"destination": "mail"}}],
    }
    status, body, _ = await api.call("PUT", "/v1/automations/boas-vindas", key, automation)
    assert status == 201, body
    event = {
        "id": "c1",
        "type": "cliente.criado",
        "subject": "ana",
        "data": {"email": "a@x.example"},
    }
    assert (await api.call("POST", "/v1/events", key, [event]))[0] == 202
    while await api.hub.engine.tick():
        pass
    await worker_for(api, public_url=api.url).drain()
    _, pixel = links_of(parse(smtp.collector.envelopes[0]))
    mark = engagement.verify(SECRET, pixel.rsplit("/", 1)[1])
    assert mark is not None
    assert (mark.tenant_id, mark.subject, mark.campaign_id) == (tenant, "ana", "boas-vindas")
