"""Slack, Discord, WhatsApp (WPP gateway, Z-API), email and inbox channels against real servers.

The HTTP providers are played by one aiohttp.web app on 127.0.0.1 that records every request;
email goes to an aiosmtpd server on 127.0.0.1; the inbox writes to a small in-memory writer (the
store's own `add_inbox_item` is tested with the store).
"""

from __future__ import annotations

import email
import email.policy
import functools
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from switchboard.channels import Channel, ChannelContext, Destination, Outbound
from switchboard.channels.discord import DiscordChannel
from switchboard.channels.email import EmailChannel
from switchboard.channels.fields import lookup
from switchboard.channels.inbox import InboxChannel, InboxWriter
from switchboard.channels.registry import KINDS, build_channels, check_destination_config
from switchboard.channels.slack import SlackChannel
from switchboard.channels.whatsapp import WhatsAppChannel, normalize_phone
from switchboard.egress import Policy, connector
from tests.conftest import LOOPBACK
from tests.wpp_gateway import WppGateway

GATEWAY_SECRET = "gw-secret-0123456789"
ZAPI_TOKEN = "zapi-token-abcdef"
ZAPI_CLIENT_TOKEN = "client-token-xyz123"

EVENT: dict[str, Any] = {
    "id": "evt_01",
    "type": "lead.created",
    "subject": "lead-42",
    "time": "2025-02-10T12:00:00Z",
    "data": {
        "name": "Maria <Silva>",
        "email": "maria@example.com",
        "phone": "+55 (11) 98765-4321",
        "user_id": "u-7",
    },
}


def out(event: dict[str, Any] | None = None, delivery_id: str = "dlv_01", **kw: Any) -> Outbound:
    return Outbound(delivery_id=delivery_id, attempt=1, event=event or EVENT, **kw)


def dest(kind: str, config: dict[str, Any], *secrets: str, timeout: float = 5.0) -> Destination:
    return Destination(
        id="d1",
        tenant_id="t1",
        name=kind,
        kind=kind,
        config=config,
        secrets=secrets,
        timeout=timeout,
    )


# --- the fake HTTP providers -----------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Providers:
    url: str
    seen: list[Seen] = field(default_factory=list)
    slack_throttle: int = 0  # answer this many Slack requests with 429
    # the WPP Gateway under /wpp: messages, and channels, QR codes and webhooks to set them up
    gateway: WppGateway = field(default_factory=lambda: WppGateway(GATEWAY_SECRET))


async def _record(providers: Providers, request: web.Request) -> Seen:
    raw = await request.read()
    seen = Seen(request.path, dict(request.headers), orjson.loads(raw) if raw else None)
    providers.seen.append(seen)
    return seen


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    state = Providers(url="")

    async def slack(request: web.Request) -> web.Response:
        await _record(state, request)
        if state.slack_throttle:
            state.slack_throttle -= 1
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "3"})
        return web.Response(text="ok")

    async def discord(request: web.Request) -> web.Response:
        await _record(state, request)
        return web.Response(status=204)

    async def discord_limited(request: web.Request) -> web.Response:
        await _record(state, request)
        return web.json_response({"message": "rate limited", "retry_after": 1.5}, status=429)

    async def zapi(request: web.Request) -> web.Response:
        await _record(state, request)
        if request.match_info["token"] != ZAPI_TOKEN:
            return web.json_response({"error": "Instance not found"}, status=400)
        if request.headers.get("Client-Token") != ZAPI_CLIENT_TOKEN:
            return web.json_response({"error": "null not allowed"}, status=400)
        return web.json_response({"zaapId": "zaap-1", "messageId": "msg-1", "id": "msg-1"})

    app = web.Application()
    app.router.add_post("/slack/hook", slack)
    app.router.add_post("/discord/hook", discord)
    app.router.add_post("/discord/limited", discord_limited)
    state.gateway.record = functools.partial(_record, state)
    state.gateway.mount(app, "/wpp")
    app.router.add_post("/instances/{instance}/token/{token}/{action}", zapi)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def ctx() -> AsyncIterator[ChannelContext]:
    policy = Policy.parse(LOOPBACK)  # the hub's guard, with the test servers' loopback allowed
    async with aiohttp.ClientSession(connector=connector(policy)) as session:
        yield ChannelContext(session=session, egress=policy)


# --- Slack -----------------------------------------------------------------------------------


async def test_slack_posts_rendered_text(providers: Providers, ctx: ChannelContext) -> None:
    channel = SlackChannel(ctx)
    config = {"url": providers.url + "/slack/hook"}
    assert channel.check_config(config) == []
    result = await channel.send(dest("slack", config), out())
    assert result.ok and result.status == 200 and result.response == "ok"
    [seen] = providers.seen
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == {
        "text": "*lead.created* lead-42\n```" + orjson.dumps(EVENT["data"]).decode() + "```"
    }


async def test_slack_blocks_and_custom_text(providers: Providers, ctx: ChannelContext) -> None:
    config = {
        "url": providers.url + "/slack/hook",
        "template": "🎉 New user signed up: {{ data.email }}",
        "blocks_template": '[{"type": "section", "text": {"type": "mrkdwn", '
        '"text": {{ ("*" ~ data.name ~ "*")|tojson }}}}]',
    }
    result = await SlackChannel(ctx).send(dest("slack", config), out())
    assert result.ok
    assert providers.seen[0].body == {
        "text": "🎉 New user signed up: maria@example.com",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Maria <Silva>*"}}],
    }


async def test_slack_429_surfaces_retry_after(providers: Providers, ctx: ChannelContext) -> None:
    providers.slack_throttle = 1
    channel = SlackChannel(ctx)
    destination = dest("slack", {"url": providers.url + "/slack/hook"})
    first = await channel.send(destination, out())
    assert not first.ok and first.status == 429 and first.retry_after == "3"
    second = await channel.send(destination, out())
    assert second.ok and second.retry_after is None


async def test_slack_route_transform_is_the_whole_body(
    providers: Providers, ctx: ChannelContext
) -> None:
    transform = '{"text": {{ ("Payment failed: " ~ data.email)|tojson }}}'
    result = await SlackChannel(ctx).send(
        dest("slack", {"url": providers.url + "/slack/hook"}), out(body_template=transform)
    )
    assert result.ok
    assert providers.seen[0].body == {"text": "Payment failed: maria@example.com"}


# --- Discord ---------------------------------------------------------------------------------


async def test_discord_content_username_and_204(providers: Providers, ctx: ChannelContext) -> None:
    config = {
        "url": providers.url + "/discord/hook",
        "template": "{{ data.name }} {{ 'x' * 3000 }}",
        "username": "Switchboard",
    }
    result = await DiscordChannel(ctx).send(dest("discord", config), out())
    assert result.ok and result.status == 204
    body = providers.seen[0].body
    assert body["username"] == "Switchboard"
    assert body["allowed_mentions"] == {"parse": []}
    assert len(body["content"]) == 2000
    assert body["content"].startswith("Maria <Silva> xxx") and body["content"].endswith("…")


async def test_discord_json_retry_after_when_no_header(
    providers: Providers, ctx: ChannelContext
) -> None:
    result = await DiscordChannel(ctx).send(
        dest("discord", {"url": providers.url + "/discord/limited"}), out()
    )
    assert not result.ok and result.status == 429
    assert result.retry_after == "1.5"


# --- WhatsApp --------------------------------------------------------------------------------


def gateway_config(providers: Providers, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "gateway",
        "base_url": providers.url + "/wpp/",
        "channel": "pixelhub-tenant-9",
        "to_path": "data.phone",
        "template": "Olá {{ data.name }}, sua fatura vence amanhã.",
        **extra,
    }


async def test_gateway_text_message(providers: Providers, ctx: ChannelContext) -> None:
    channel = WhatsAppChannel(ctx)
    config = gateway_config(providers)
    assert channel.check_config(config) == []
    result = await channel.send(dest("whatsapp", config, GATEWAY_SECRET), out())
    assert result.ok and result.status == 200
    assert result.provider_id == "wamid-1"
    assert result.request_headers["X-Gateway-Secret"] == "…6789"
    [seen] = providers.seen
    assert seen.path == "/wpp/api/messages"
    assert seen.headers["X-Gateway-Secret"] == GATEWAY_SECRET
    assert seen.body == {
        "channel": "pixelhub-tenant-9",
        "to": "5511987654321",
        "text": "Olá Maria <Silva>, sua fatura vence amanhã.",
    }


async def test_gateway_buttons(providers: Providers, ctx: ChannelContext) -> None:
    config = gateway_config(
        providers,
        template="Como foi o atendimento de {{ data.name }}?",
        buttons=[
            {"id": "rate-5-{{ subject }}", "text": "Ótimo"},
            {"id": "rate-1-{{ subject }}", "text": "Ruim"},
        ],
    )
    result = await WhatsAppChannel(ctx).send(dest("whatsapp", config, GATEWAY_SECRET), out())
    assert result.ok
    assert providers.seen[0].body["buttons"] == [
        {"id": "rate-5-lead-42", "text": "Ótimo"},
        {"id": "rate-1-lead-42", "text": "Ruim"},
    ]


async def test_gateway_wrong_secret_is_401(providers: Providers, ctx: ChannelContext) -> None:
    result = await WhatsAppChannel(ctx).send(
        dest("whatsapp", gateway_config(providers), "wrong-secret-999"), out()
    )
    assert not result.ok and result.status == 401 and result.provider_id is None
    assert "unauthorized" in result.response


async def test_zapi_send_text(providers: Providers, ctx: ChannelContext) -> None:
    config = {
        "provider": "zapi",
        "base_url": providers.url,
        "instance": "INST1",
        "to": "(11) 98765-4321",
        "default_country": "55",
        "template": "Oi {{ data.name }}!",
    }
    channel = WhatsAppChannel(ctx)
    assert channel.check_config(config) == []
    result = await channel.send(dest("whatsapp", config, ZAPI_TOKEN, ZAPI_CLIENT_TOKEN), out())
    assert result.ok and result.provider_id == "msg-1"
    [seen] = providers.seen
    assert seen.path == f"/instances/INST1/token/{ZAPI_TOKEN}/send-text"
    assert seen.headers["Client-Token"] == ZAPI_CLIENT_TOKEN
    assert seen.body == {"phone": "5511987654321", "message": "Oi Maria <Silva>!"}
    assert result.request_headers["Client-Token"] == "…z123"


async def test_zapi_button_list_with_client_token_in_config(
    providers: Providers, ctx: ChannelContext
) -> None:
    config = {
        "provider": "zapi",
        "base_url": providers.url,
        "instance": "INST1",
        "client_token": ZAPI_CLIENT_TOKEN,
        "to_path": "data.phone",
        "template": "Avalie o serviço",
        "buttons": [{"id": "1", "text": "Bom"}, {"id": "2", "text": "Ruim"}],
    }
    result = await WhatsAppChannel(ctx).send(dest("whatsapp", config, ZAPI_TOKEN), out())
    assert result.ok and result.provider_id == "msg-1"
    [seen] = providers.seen
    assert seen.path.endswith("/send-button-list")
    assert seen.body == {
        "phone": "5511987654321",
        "message": "Avalie o serviço",
        "buttonList": {"buttons": [{"id": "1", "label": "Bom"}, {"id": "2", "label": "Ruim"}]},
    }


async def test_whatsapp_missing_phone_is_refused_without_a_request(
    providers: Providers, ctx: ChannelContext
) -> None:
    event = {**EVENT, "data": {"name": "Sem telefone"}}
    result = await WhatsAppChannel(ctx).send(
        dest("whatsapp", gateway_config(providers), GATEWAY_SECRET), out(event)
    )
    assert not result.ok and result.error == "other" and result.status is None
    assert result.message == "phone at data.phone is empty"
    assert providers.seen == []


def test_normalize_phone() -> None:
    assert normalize_phone("+55 (11) 98765-4321") == "5511987654321"
    assert normalize_phone("11 3456-7890", "55") == "551134567890"
    assert normalize_phone(5511987654321) == "5511987654321"
    for bad in ("", "   ", None, "abc", "123"):
        with pytest.raises(ValueError):
            normalize_phone(bad)


# --- email -----------------------------------------------------------------------------------


class Collector:
    """An aiosmtpd handler that keeps every envelope; `nobody@` is refused, `busy@` deferred."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Smtp:
    port: int
    collector: Collector


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    collector = Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    yield Smtp(port, collector)
    controller.stop()


def email_config(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Carinho <ola@carinho.example>",
        "subject_template": "Bem-vindo(a), {{ data.name }}!",
        "text_template": "Olá {{ data.name }}, seu cadastro foi concluído.",
        **extra,
    }


def parse(envelope: Any) -> email.message.EmailMessage:
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


async def test_email_plain_to_fixed_list(smtp: Smtp, ctx: ChannelContext) -> None:
    channel = EmailChannel(ctx)
    config = email_config(smtp.port, to=["ops@example.com", "crm@example.com"])
    assert channel.check_config(config) == []
    result = await channel.send(dest("email", config), out())
    assert result.ok and result.status == 250 and result.error is None
    [envelope] = smtp.collector.envelopes
    assert envelope.mail_from == "ola@carinho.example"
    assert envelope.rcpt_tos == ["ops@example.com", "crm@example.com"]
    msg = parse(envelope)
    assert msg["Subject"] == "Bem-vindo(a), Maria <Silva>!"
    assert msg["X-Switchboard-Event-Id"] == "evt_01"
    assert msg["X-Switchboard-Delivery-Id"] == "dlv_01"
    assert msg["Message-ID"] == "<dlv_01@carinho.example>"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Olá Maria <Silva>, seu cadastro foi concluído."


async def test_email_to_path_html_and_text(smtp: Smtp, ctx: ChannelContext) -> None:
    config = email_config(
        smtp.port, to_path="data.email", html_template="<p>Olá <b>{{ data.name }}</b></p>"
    )
    channel = EmailChannel(ctx)
    first = await channel.send(dest("email", config), out())
    again = await channel.send(dest("email", config), out())  # a retry of the same delivery
    assert first.ok and again.ok
    assert [e.rcpt_tos for e in smtp.collector.envelopes] == [["maria@example.com"]] * 2
    msg, repeat = (parse(e) for e in smtp.collector.envelopes)
    assert msg["Message-ID"] == repeat["Message-ID"]  # receivers can recognise the repeat
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "Maria <Silva>" in text.get_content()
    assert "<b>Maria &lt;Silva&gt;</b>" in html.get_content()  # autoescaped


async def test_email_missing_recipient(smtp: Smtp, ctx: ChannelContext) -> None:
    event = {**EVENT, "data": {"name": "x"}}
    config = email_config(smtp.port, to_path="data.email")
    result = await EmailChannel(ctx).send(dest("email", config), out(event))
    assert not result.ok and result.error == "other" and result.status is None
    assert result.message == "no recipient at data.email"
    assert smtp.collector.envelopes == []


async def test_email_refused_recipients_report_smtp_codes(smtp: Smtp, ctx: ChannelContext) -> None:
    channel = EmailChannel(ctx)
    permanent = await channel.send(
        dest("email", email_config(smtp.port, to=["nobody@example.com"])), out()
    )
    assert not permanent.ok and permanent.status == 550 and permanent.error == "other"
    assert "no such user" in (permanent.message or "")
    temporary = await channel.send(
        dest("email", email_config(smtp.port, to=["busy@example.com"])), out()
    )
    assert not temporary.ok and temporary.status == 451 and temporary.error is None


async def test_email_server_down_is_a_connection_error(ctx: ChannelContext) -> None:
    config = email_config(free_port(), to=["ops@example.com"])
    result = await EmailChannel(ctx).send(dest("email", config, timeout=3), out())
    assert not result.ok and result.error == "connection" and result.status is None


async def test_email_template_error_is_a_result(smtp: Smtp, ctx: ChannelContext) -> None:
    config = email_config(smtp.port, to=["ops@example.com"], subject_template="{{ data.a.b.c }}")
    result = await EmailChannel(ctx).send(dest("email", config), out())
    assert not result.ok and result.error == "template_error"
    assert (result.message or "").startswith("template_error: config.subject_template:")


# --- inbox -----------------------------------------------------------------------------------


class MemoryInbox:
    """An InboxWriter keyed by delivery id, like the store's unique key."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str, dict[str, Any]]] = {}

    async def add_inbox_item(self, tenant_id: str, recipient: str, item: dict[str, Any]) -> str:
        key: str = item["delivery_id"]
        self.items.setdefault(key, (tenant_id, recipient, item))
        return "item-" + key


async def test_inbox_writes_once_per_delivery() -> None:
    writer = MemoryInbox()
    assert isinstance(writer, InboxWriter)
    channel = InboxChannel(ChannelContext(session=None, inbox=writer))  # type: ignore[arg-type]
    config = {
        "recipient_path": "data.user_id",
        "title_template": "Novo lead: {{ data.name }}",
        "body_template": "Telefone {{ data.phone }}",
        "link_template": "/leads/{{ subject }}",
    }
    assert channel.check_config(config) == []
    first = await channel.send(dest("inbox", config), out())
    again = await channel.send(dest("inbox", config), out())
    assert first.ok and first.provider_id == "item-dlv_01" and again.provider_id == "item-dlv_01"
    assert writer.items == {
        "dlv_01": (
            "t1",
            "u-7",
            {
                "delivery_id": "dlv_01",
                "event_id": "evt_01",
                "type": "lead.created",
                "title": "Novo lead: Maria <Silva>",
                "body": "Telefone +55 (11) 98765-4321",
                "link": "/leads/lead-42",
            },
        )
    }


async def test_inbox_without_recipient_or_store() -> None:
    channel = InboxChannel(ChannelContext(session=None, inbox=MemoryInbox()))  # type: ignore[arg-type]
    missing = await channel.send(dest("inbox", {"recipient_path": "data.nope"}), out())
    assert not missing.ok and missing.message == "no recipient at data.nope"
    no_store = InboxChannel(ChannelContext(session=None))  # type: ignore[arg-type]
    result = await no_store.send(dest("inbox", {"recipient": "u-1"}), out())
    assert not result.ok and result.error == "other"


# --- templates and config checks -------------------------------------------------------------


async def test_template_errors_are_results_not_exceptions(ctx: ChannelContext) -> None:
    # Nothing listens on this URL: a template problem must stop the attempt before any request.
    url = "http://127.0.0.1:9/never"
    cases: list[tuple[Channel, dict[str, Any]]] = [
        (SlackChannel(ctx), {"url": url, "template": "{{ data.a.b }}"}),
        (SlackChannel(ctx), {"url": url, "blocks_template": "not json"}),
        (DiscordChannel(ctx), {"url": url, "template": "{{ 1 / 0 }}"}),
        (
            WhatsAppChannel(ctx),
            {
                "provider": "gateway",
                "base_url": url,
                "channel": "c",
                "to": "5511987654321",
                "template": "{% for %}",
            },
        ),
        (
            InboxChannel(ChannelContext(ctx.session, MemoryInbox())),
            {"recipient": "u", "title_template": "{{ data.x.y }}"},
        ),
    ]
    for channel, config in cases:
        result = await channel.send(dest(channel.kind, config, "s3cret-token"), out())
        assert not result.ok and result.error == "template_error", config
        assert result.status is None, config
        assert (result.message or "").startswith("template_error: "), result.message


def test_check_config_names_the_fields() -> None:
    assert check_destination_config("fax", {}) == [
        "kind: must be one of " + ", ".join(KINDS) + ", got 'fax'"
    ]
    slack = check_destination_config("slack", {"url": "ftp://x", "template": "{% if %}"})
    assert [p.split(":")[0] for p in slack] == ["config.url", "config.template"]
    discord = check_destination_config("discord", {})
    assert discord[0].startswith("config.url:")
    mail = check_destination_config("email", {"from": "nope", "to": ["a@b.co"], "to_path": "x"})
    assert {p.split(":")[0] for p in mail} == {"config.host", "config.from", "config.to"}
    wa = check_destination_config(
        "whatsapp", {"provider": "zapi", "template": "x", "to": "12", "buttons": [{"id": "1"}]}
    )
    assert {p.split(":")[0] for p in wa} == {
        "config.instance",
        "config.to",
        "config.buttons[0].text",
    }
    assert check_destination_config("whatsapp", {"provider": "sms"})[0].startswith(
        "config.provider:"
    )
    inbox = check_destination_config("inbox", {})
    assert inbox == [
        "config.recipient: required (or config.recipient_path, a dotted path into the event)"
    ]
    assert check_destination_config("webhook", {"url": "https://example.com/hook"}) == []


async def test_build_channels_has_every_kind(ctx: ChannelContext) -> None:
    channels = build_channels(ctx)
    assert sorted(channels) == sorted(KINDS)
    assert all(channel.kind == kind for kind, channel in channels.items())


def test_lookup_dotted_paths() -> None:
    event = {"subject": "s", "data": {"a": {"b": [10, {"c": "deep"}]}, "n": None}}
    assert lookup(event, "subject") == "s"
    assert lookup(event, "data.a.b.1.c") == "deep"
    assert lookup(event, "data.a.b.5") is None
    assert lookup(event, "data.n.x") is None
    assert lookup(event, "data.missing") is None
