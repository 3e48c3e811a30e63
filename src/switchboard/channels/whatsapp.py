"""WhatsApp through an unofficial gateway: the WPP Gateway (``provider: gateway``) or Z-API.

Both take a phone (fixed in ``config.to`` or found at ``config.to_path`` in the event), a text from
``config.template`` and optional buttons (``config.buttons``: a list of ``{id, text}`` templates).
The provider's message id becomes ``SendResult.provider_id``, so later status callbacks
(``message.ack`` from the gateway, Z-API's ``MessageStatusCallback``) can find the delivery.

- gateway: ``POST {base_url}/api/messages`` with ``X-Gateway-Secret: <secrets[0]>`` and
  ``{"channel", "to", "text"[, "buttons": [{"id", "text"}]]}``; one gateway channel per tenant,
  created and connected through ``channels/wpp_gateway.py``.
- zapi: ``POST {base_url}/instances/{instance}/token/{secrets[0]}/send-text`` with
  ``Client-Token`` (``secrets[1]`` or ``config.client_token``) and ``{"phone", "message"}``; with
  buttons ``…/send-button-list`` and ``{"phone", "message", "buttonList": {"buttons": [{"id",
  "label"}]}}``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from msgspec.structs import replace

from switchboard import engagement, templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import (
    check_path,
    check_template,
    lookup,
    render_field,
    template_failure,
)
from switchboard.channels.webhook import check_url, post

PROVIDERS = ("gateway", "zapi")
ZAPI_URL = "https://api.z-api.io"
TEXT_LIMIT = 4096  # WhatsApp's own limit for a text message
MAX_BUTTONS = 3  # what WhatsApp shows as reply buttons

_PUNCTUATION = re.compile(r"[\s+\-().]")


class PhoneProblem(ValueError):
    """The phone is missing or is not a number."""


def normalize_phone(raw: Any, default_country: str | None = None) -> str:
    """Digits only (``+55 (11) 98765-4321`` → ``5511987654321``); raise PhoneProblem.

    With `default_country` (``"55"``), a national number of 10 or 11 digits (area code + number,
    as Brazilian forms collect it) gets the country code in front.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise PhoneProblem("is empty")
    digits = _PUNCTUATION.sub("", raw)
    if not digits.isascii() or not digits.isdigit():
        raise PhoneProblem(f"is not a phone number: {raw[:30]!r}")
    if default_country and len(digits) in (10, 11) and not digits.startswith(default_country):
        digits = default_country + digits
    if not 8 <= len(digits) <= 15:  # E.164 allows at most 15 digits
        raise PhoneProblem(f"has {len(digits)} digits, expected 8 to 15")
    return digits


def provider_id(response: str, *keys: str) -> str | None:
    """The first of `keys` in the JSON answer (or in its ``data``/``message`` object)."""
    try:
        parsed = orjson.loads(response)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    for scope in (parsed, parsed.get("data"), parsed.get("message")):
        if isinstance(scope, dict):
            for key in keys:
                value = scope.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                    return str(value)
    return None


class WhatsAppChannel:
    kind = "whatsapp"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        provider = config.get("provider")
        problems: list[str] = []
        problems += engagement.parse_tracking(config.get("tracking"), email=False)[1]
        if provider not in PROVIDERS:
            problems.append(f"config.provider: must be one of {', '.join(PROVIDERS)}")
        if provider == "gateway":
            problems += check_url(config.get("base_url"), "base_url")
            if not isinstance(config.get("channel"), str) or not config["channel"]:
                problems.append("config.channel: required, the tenant's gateway channel id")
        elif provider == "zapi":
            if "base_url" in config:
                problems += check_url(config.get("base_url"), "base_url")
            if not isinstance(config.get("instance"), str) or not config["instance"]:
                problems.append("config.instance: required, the Z-API instance id")
            if "client_token" in config and not isinstance(config["client_token"], str):
                problems.append("config.client_token: must be a string")
        problems += check_path(config, "to", "to_path")
        if config.get("to") not in (None, ""):
            try:
                normalize_phone(config["to"], config.get("default_country"))
            except PhoneProblem as exc:
                problems.append(f"config.to: {exc}")
        country = config.get("default_country")
        if country is not None and not (isinstance(country, str) and country.isdigit()):
            problems.append("config.default_country: must be a calling code such as '55'")
        problems += check_template(config, "template", required=True)
        problems += self._check_buttons(config.get("buttons"))
        return problems

    @staticmethod
    def _check_buttons(buttons: Any) -> list[str]:
        if buttons is None:
            return []
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
            return [f"config.buttons: must be a list of 1 to {MAX_BUTTONS} {{id, text}} objects"]
        problems: list[str] = []
        for i, button in enumerate(buttons):
            if not isinstance(button, dict):
                problems.append(f"config.buttons[{i}]: must be an object with id and text")
                continue
            for key in ("id", "text"):
                problems += [
                    p.replace(f"config.{key}", f"config.buttons[{i}].{key}")
                    for p in check_template(button, key, required=True)
                ]
        return problems

    def _phone(self, config: dict[str, Any], event: dict[str, Any]) -> str:
        if config.get("to_path"):
            path = config["to_path"]
            raw, where = lookup(event, path), path
        else:
            raw, where = config.get("to"), "config.to"
        try:
            return normalize_phone(raw, config.get("default_country"))
        except PhoneProblem as exc:
            raise PhoneProblem(f"phone at {where} {exc}") from exc

    def _buttons(self, config: dict[str, Any], event: dict[str, Any]) -> list[dict[str, str]]:
        rendered = []
        for i, button in enumerate(config.get("buttons") or []):
            rendered.append(
                {
                    "id": render_field(button, "id", event).strip(),
                    "text": render_field(button, "text", event).strip(),
                }
            )
            if not rendered[-1]["id"] or not rendered[-1]["text"]:
                raise templates.TemplateProblem(f"config.buttons[{i}]: rendered empty")
        return rendered

    def _texts(
        self, config: dict[str, Any], event: dict[str, Any]
    ) -> tuple[str, list[dict[str, str]]]:
        """The message text and buttons; raises TemplateProblem."""
        text = render_field(config, "template", event).strip()[:TEXT_LIMIT]
        return text, self._buttons(config, event)

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        config = destination.config
        try:
            phone = self._phone(config, out.event)
            text, buttons = await self.ctx.renderer.run(self._texts, config, out.event)
        except templates.TemplateProblem as exc:
            return template_failure(exc)
        except PhoneProblem as exc:
            return SendResult(False, error="other", message=str(exc))
        if not text:
            return SendResult(False, error="other", message="config.template: rendered empty")
        if not destination.secrets or not destination.secrets[0]:
            return SendResult(False, error="other", message="no token: set the destination secret")
        if config.get("provider") == "zapi":
            return await self._send_zapi(destination, phone, text, buttons)
        return await self._send_gateway(destination, phone, text, buttons)

    async def _send_gateway(
        self, destination: Destination, phone: str, text: str, buttons: list[dict[str, str]]
    ) -> SendResult:
        config = destination.config
        body: dict[str, Any] = {"channel": config["channel"], "to": phone, "text": text}
        if buttons:
            body["buttons"] = buttons
        headers = {
            "content-type": "application/json",
            "user-agent": "Switchboard/0.1",
            "X-Gateway-Secret": destination.secrets[0],
        }
        url = config["base_url"].rstrip("/") + "/api/messages"
        result = await post(self.ctx.session, url, orjson.dumps(body), headers, destination.timeout)
        if result.ok:
            result = replace(result, provider_id=provider_id(result.response, "id", "messageId"))
        return result

    async def _send_zapi(
        self, destination: Destination, phone: str, text: str, buttons: list[dict[str, str]]
    ) -> SendResult:
        config = destination.config
        token = destination.secrets[0]
        client_token = (
            destination.secrets[1] if len(destination.secrets) > 1 else config.get("client_token")
        )
        base = str(config.get("base_url") or ZAPI_URL).rstrip("/")
        prefix = f"{base}/instances/{config['instance']}/token/{token}"
        body: dict[str, Any] = {"phone": phone, "message": text}
        if buttons:
            url = prefix + "/send-button-list"
            body["buttonList"] = {"buttons": [{"id": b["id"], "label": b["text"]} for b in buttons]}
        else:
            url = prefix + "/send-text"
        headers = {"content-type": "application/json", "user-agent": "Switchboard/0.1"}
        if client_token:
            headers["Client-Token"] = client_token
        result = await post(self.ctx.session, url, orjson.dumps(body), headers, destination.timeout)
        if result.message and token in result.message:  # the token is part of the URL
            result = replace(result, message=result.message.replace(token, "…"))
        if result.ok:
            result = replace(result, provider_id=provider_id(result.response, "messageId", "id"))
        return result
