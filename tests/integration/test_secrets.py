"""Credentials are write-only: a `read` key (or anyone reading attempts and request logs) never
sees a destination's tokens, auth headers or passwords, nor a source's token."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import Api
from tests.integration.conftest import worker_for

pytestmark = pytest.mark.security

BEARER = "sk_live_0123456789abcdefXYZ1"
CUSTOM = "custom-credential-abcdef123456"
QUERY_TOKEN = "qt0123456789abcdefgh"
SLACK_TOKEN = "abcdefghijklmnopqrstuvwx"
DISCORD_TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
CLIENT_TOKEN = "client-token-abcdef0123456789"
INSTANCE_TOKEN = "instance-token-0123456789abcdef"
SMTP_PASSWORD = "smtp-password-0123456789"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CREDENTIALS = (
    BEARER,
    CUSTOM,
    QUERY_TOKEN,
    SLACK_TOKEN,
    DISCORD_TOKEN,
    CLIENT_TOKEN,
    INSTANCE_TOKEN,
    SMTP_PASSWORD,
    WEBHOOK_SECRET,
)


def leaks(answer: Any) -> list[str]:
    """Every credential that appears in `answer`, whole or beyond its last 4 characters."""
    text = orjson.dumps(answer).decode()
    return [c for c in CREDENTIALS if c[:-4] in text or c[6:14] in text]


DESTINATIONS: list[dict[str, Any]] = [
    {
        "name": "hook",
        "kind": "webhook",
        "config": {
            "url": f"https://hooks.example.com/in?token={QUERY_TOKEN}",
            "headers": {"Authorization": f"Bearer {BEARER}", "X-Auth": CUSTOM},
        },
        "secrets": [WEBHOOK_SECRET],
    },
    {
        "name": "slack",
        "kind": "slack",
        "config": {"url": f"https://hooks.slack.com/services/T0001/B0002/{SLACK_TOKEN}"},
    },
    {
        "name": "discord",
        "kind": "discord",
        "config": {"url": f"https://discord.com/api/webhooks/123456789/{DISCORD_TOKEN}"},
    },
    {
        "name": "zapi",
        "kind": "whatsapp",
        "config": {
            "provider": "zapi",
            "instance": "inst1",
            "client_token": CLIENT_TOKEN,
            "to": "5511987654321",
            "template": "hi",
        },
        "secrets": [INSTANCE_TOKEN],
    },
    {
        "name": "mail",
        "kind": "email",
        "config": {
            "host": "smtp.example.com",
            "username": "hub",
            "from": "a@example.com",
            "to": "b@example.com",
        },
        "secrets": [SMTP_PASSWORD],
    },
]


async def test_destination_answers_never_show_credentials(api: Api) -> None:
    tenant, manage = await api.tenant()
    _, read = await api.tenant(tenant, scopes=("read",))
    for body in DESTINATIONS:
        status, created, _ = await api.call("POST", "/v1/destinations", manage, body)
        assert status == 201, created
        assert leaks(created) == [], created  # secrets the client sent are not echoed back
    _, listing, _ = await api.call("GET", "/v1/destinations", read)
    assert len(listing["data"]) == len(DESTINATIONS)
    assert leaks(listing) == [], listing
    for body in DESTINATIONS:
        _, one, _ = await api.call("GET", f"/v1/destinations/{body['name']}", read)
        assert leaks(one) == [], one
    _, hook, _ = await api.call("GET", "/v1/destinations/hook", read)
    assert hook["config"]["headers"]["Authorization"] == "Bearer …XYZ1"
    assert hook["secrets"] == ["whsec_…"]  # nothing of the key after its prefix
    # `?secrets` no longer reveals anything, and sending back what was shown keeps the stored
    # credentials (instead of storing the masks)
    status, patched, _ = await api.call(
        "PATCH", "/v1/destinations/hook?secrets", manage, {"config": hook["config"]}
    )
    assert status == 200 and leaks(patched) == [], patched
    stored = await api.hub.deliveries.get_destination(tenant, "hook")
    assert stored is not None and stored.config == DESTINATIONS[0]["config"]
    assert stored.secrets == (WEBHOOK_SECRET,)
    status, patched, _ = await api.call(
        "PATCH", "/v1/destinations/slack", manage, {"config": {"url": listing_url(listing)}}
    )
    assert status == 200
    stored = await api.hub.deliveries.get_destination(tenant, "slack")
    assert stored is not None and stored.config == DESTINATIONS[1]["config"]


def listing_url(listing: dict[str, Any]) -> str:
    [slack] = [d for d in listing["data"] if d["name"] == "slack"]
    url: str = slack["config"]["url"]
    return url


async def test_a_generated_signing_secret_is_shown_once(api: Api) -> None:
    _, key = await api.tenant()
    status, created, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "h", "kind": "webhook", "config": {"url": "https://hooks.example.com/x"}},
    )
    assert status == 201 and created["secrets"][0].startswith("whsec_")
    assert len(created["secrets"][0]) > 20  # the whole secret, this once
    _, again, _ = await api.call("GET", "/v1/destinations/h", key)
    assert again["secrets"] == ["whsec_…"]


async def test_attempts_mask_custom_auth_headers(hub_api: Api, receivers: Any) -> None:
    api = hub_api
    _, key = await api.tenant()
    rcv = await receivers()
    headers = {"Authorization": f"Bearer {BEARER}", "X-Auth": CUSTOM, "X-Env": "prod"}
    status, body, _ = await api.call(
        "POST",
        "/v1/destinations",
        key,
        {"name": "h", "kind": "webhook", "config": {"url": rcv.url, "headers": headers}},
    )
    assert status == 201, body
    await api.call("POST", "/v1/routes", key, {"name": "r", "types": ["*"], "destinations": ["h"]})
    status, _, _ = await api.call("POST", "/v1/events", key, [{"type": "a.b", "data": {}}])
    assert status == 202
    await worker_for(api).drain()
    [request] = rcv.received
    assert request["headers"]["X-Auth"] == CUSTOM  # the receiver gets the real values
    _, deliveries, _ = await api.call("GET", "/v1/deliveries", key)
    [d] = deliveries["data"]
    _, attempts, _ = await api.call("GET", f"/v1/deliveries/{d['id']}/attempts", key)
    [attempt] = attempts["data"]
    assert attempt["ok"], attempt
    assert leaks(attempt) == [], attempt["request_headers"]
    shown = {k.lower(): v for k, v in attempt["request_headers"].items()}
    assert shown["authorization"] == "Bearer …XYZ1" and shown["x-auth"] == "…3456"


async def test_a_source_token_header_is_masked_in_its_request_log(api: Api) -> None:
    _, key = await api.tenant()
    token = "tok_0123456789abcdefghij"
    status, source, _ = await api.call(
        "POST",
        "/v1/sources",
        key,
        {
            "name": "partner",
            "preset": "token",
            "preset_config": {"headers": ["X-Hook"]},  # a name that says nothing about secrets
            "secrets": [token],
        },
    )
    assert status == 201, source
    assert token not in orjson.dumps(source).decode()
    for sent in ({"X-Hook": token}, {"X-Hook": "wrong-guess-0123456789"}, {"X-Copy": token}):
        await api.call(
            "POST",
            f"/v1/sources/{source['id']}/webhook",
            data=b'{"a": 1}',
            headers={"Content-Type": "application/json", **sent},
        )
    _, log, _ = await api.call("GET", f"/v1/sources/{source['id']}/requests", key)
    assert len(log["data"]) == 3
    text = orjson.dumps(log).decode()
    assert token not in text and token[:8] not in text
    assert "wrong-guess" not in text  # a failed guess is a credential too: masked by name
    _, listing, _ = await api.call("GET", "/v1/sources", key)
    assert token not in orjson.dumps(listing).decode()
