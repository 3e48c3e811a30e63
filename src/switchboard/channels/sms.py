"""SMS through Twilio's Messages API (or a compatible one), or through a generic HTTP gateway.

The phone (fixed in ``config.to`` or found at ``config.to_path``) is normalized to E.164; the text
comes from ``config.template``. Before sending, the text is counted in segments the way carriers
split it (GSM-7: 160 characters alone, 153 per part; UCS-2 as soon as one character is outside
GSM-7: 70 alone, 67 per part); the count goes into the attempt's message, and a text of more than
``config.max_segments`` segments is refused without sending.

- twilio: ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, HTTP Basic auth
  with the account SID and the auth token (``secrets[0]``), a form with ``To``, ``From`` (or
  ``MessagingServiceSid``), ``Body`` and ``StatusCallback``. The answer's ``sid`` becomes the
  delivery's provider id; Twilio's status callbacks come back through a source with the
  ``twilio`` preset and the ``twilio-sms`` mapping (docs/sources.md).
- gateway: ``POST`` (or ``PUT``) ``config.url`` with ``{"to": "+E164", "text": …}``, or the JSON
  that ``config.body_template`` renders (it sees the event and ``sms.to`` / ``sms.text``); the
  secret goes in ``config.auth_header`` (``Authorization`` unless set).
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from msgspec.structs import replace

from switchboard import engagement, templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult
from switchboard.channels.fields import check_path, check_template, lookup, render_field
from switchboard.channels.webhook import check_url, post
from switchboard.channels.whatsapp import provider_id

PROVIDERS = ("twilio", "gateway")
TWILIO_URL = "https://api.twilio.com"
MAX_SEGMENTS = 10  # Twilio refuses bodies over 1600 characters: 10 GSM-7 parts
TEXT_LIMIT = 1600  # characters rendered at most, before counting
_SID = {
    "account_sid": re.compile(r"^AC[0-9a-fA-F]{32}(?!\n)$"),
    "messaging_service_sid": re.compile(r"^MG[0-9a-fA-F]{32}(?!\n)$"),
}
_SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}(?!\n)$")  # an alphanumeric sender id
_SHORT_CODE = re.compile(r"^[0-9]{3,8}(?!\n)$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}(?!\n)$")
_RESERVED_HEADERS = {"content-type", "content-length", "host"}

# GSM 03.38: the basic alphabet (one septet each) and its extension table (escape + one septet)
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


class PhoneProblem(ValueError):
    """The phone is missing or is not a number."""


class Segments:
    """How many SMS parts a text takes, and in which encoding."""

    __slots__ = ("count", "encoding", "units")

    def __init__(self, count: int, encoding: str, units: int) -> None:
        self.count = count
        self.encoding = encoding  # "GSM-7" or "UCS-2"
        self.units = units  # septets (GSM-7) or UTF-16 code units (UCS-2)

    def __repr__(self) -> str:
        return f"{self.count} segment{'s' if self.count != 1 else ''} ({self.encoding})"


def _parts(sizes: list[int], single: int, per_part: int) -> int:
    """Parts for characters of these sizes: one part if they fit in `single`, else parts of
    `per_part` units, a character never split across two parts (an escape pair, a surrogate
    pair)."""
    total = sum(sizes)
    if total <= single:
        return 1 if total else 0
    count, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            count, used = count + 1, 0
        used += size
    return count


def count_segments(text: str) -> Segments:
    """The segments of `text`: GSM-7 when every character is in the GSM 03.38 alphabet
    (extension characters such as ``€`` or ``{`` take two septets), else UCS-2 (characters
    outside the Basic Multilingual Plane, such as emoji, take two code units)."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return Segments(_parts(sizes, 160, 153), "GSM-7", sum(sizes))
    sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments(_parts(sizes, 70, 67), "UCS-2", sum(sizes))


_PUNCTUATION = re.compile(r"[\s\-().]")


def to_e164(raw: Any, default_country: str | None = None) -> str:
    """A phone number in E.164 (``+5511987654321``); raise PhoneProblem.

    A number written with ``+`` or ``00`` carries its country code. Without it, `default_country`
    (``"55"``) is put in front of a national number (a leading trunk ``0`` dropped); a number
    that already starts with that code and has the international length is kept. Brazilian
    mobile numbers written before the ninth digit (``55 DD 8XXX-XXXX``) get it.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise PhoneProblem("is empty")
    text = _PUNCTUATION.sub("", raw)
    international = text.startswith("+") or text.startswith("00")
    digits = text[1:] if text.startswith("+") else text[2:] if text.startswith("00") else text
    if not digits.isascii() or not digits.isdigit():
        raise PhoneProblem(f"is not a phone number: {raw[:30]!r}")
    if not international:
        if not default_country:
            raise PhoneProblem("has no country code: write it with + or set config.default_country")
        national = digits[1:] if digits.startswith("0") else digits
        # already international: Brazil's 12-13 digits (a national one has 10-11, and DDD 55
        # exists), elsewhere anything longer than the 10 digits of most national plans
        longest = 11 if default_country == "55" else 10
        if not (digits.startswith(default_country) and len(digits) > longest):
            digits = default_country + national
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        digits = digits[:4] + "9" + digits[4:]  # a Brazilian mobile without the ninth digit
    if digits.startswith("0"):
        raise PhoneProblem(f"has no country code after {'+' if raw.strip()[:1] == '+' else '00'}")
    if not 8 <= len(digits) <= 15:  # E.164: at most 15 digits, country code included
        raise PhoneProblem(f"has {len(digits)} digits with the country code, expected 8 to 15")
    return "+" + digits


def _check_sid(config: dict[str, Any], field: str) -> list[str]:
    value = config.get(field)
    if not isinstance(value, str) or not _SID[field].match(value):
        prefix = _SID[field].pattern[1:3]
        return [f"config.{field}: must be a Twilio SID: {prefix} and 32 hex digits"]
    return []


class SmsChannel:
    kind = "sms"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        provider = config.get("provider")
        problems: list[str] = []
        problems += engagement.parse_tracking(config.get("tracking"), email=False)[1]
        if provider not in PROVIDERS:
            problems.append(f"config.provider: must be one of {', '.join(PROVIDERS)}")
        if provider == "twilio":
            problems += self._check_twilio(config)
        elif provider == "gateway":
            problems += self._check_gateway(config)
        problems += check_path(config, "to", "to_path")
        country = config.get("default_country")
        if country is not None and not (
            isinstance(country, str)
            and country.isascii()
            and country.isdigit()
            and len(country) <= 3
        ):
            problems.append("config.default_country: must be a calling code such as '55'")
            country = None
        if config.get("to") not in (None, ""):
            try:
                to_e164(config["to"], country)
            except PhoneProblem as exc:
                problems.append(f"config.to: {exc}")
        problems += check_template(config, "template", required=True)
        most = config.get("max_segments", MAX_SEGMENTS)
        if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= MAX_SEGMENTS:
            problems.append(f"config.max_segments: must be an integer from 1 to {MAX_SEGMENTS}")
        return problems

    @staticmethod
    def _check_twilio(config: dict[str, Any]) -> list[str]:
        problems = _check_sid(config, "account_sid")
        if "base_url" in config:
            problems += check_url(config.get("base_url"), "base_url")
        has_from = config.get("from") not in (None, "")
        has_service = config.get("messaging_service_sid") not in (None, "")
        if has_from == has_service:
            problems.append("config.from: give either from (a number) or messaging_service_sid")
        elif has_from:
            sender = config["from"]
            if not (
                isinstance(sender, str) and (_SENDER_ID.match(sender) or _SHORT_CODE.match(sender))
            ):
                try:
                    to_e164(sender)
                except PhoneProblem as exc:
                    problems.append(
                        f"config.from: {exc} (or a short code, or a sender id of 1 to 11 "
                        "letters, digits and spaces)"
                    )
        else:
            problems += _check_sid(config, "messaging_service_sid")
        if "status_callback" in config:
            problems += check_url(config.get("status_callback"), "status_callback")
        return problems

    @staticmethod
    def _check_gateway(config: dict[str, Any]) -> list[str]:
        problems = check_url(config.get("url"), "url")
        if config.get("method", "POST") not in ("POST", "PUT"):
            problems.append("config.method: must be POST or PUT")
        header = config.get("auth_header", "Authorization")
        if not isinstance(header, str) or not _HEADER_NAME.match(header):
            problems.append("config.auth_header: must be an HTTP header name")
        elif header.lower() in _RESERVED_HEADERS:
            problems.append(f"config.auth_header: may not be {header}")
        problems += check_template(config, "body_template")
        return problems

    def _phone(self, config: dict[str, Any], event: dict[str, Any]) -> str:
        if config.get("to_path"):
            path = config["to_path"]
            raw, where = lookup(event, path), path
        else:
            raw, where = config.get("to"), "config.to"
        try:
            return to_e164(raw, config.get("default_country"))
        except PhoneProblem as exc:
            raise PhoneProblem(f"phone at {where} {exc}") from exc

    @staticmethod
    def _text(config: dict[str, Any], event: dict[str, Any]) -> str:
        return render_field(config, "template", event).strip()[:TEXT_LIMIT]

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        config = destination.config
        try:
            phone = self._phone(config, out.event)
            text = await self.ctx.renderer.run(self._text, config, out.event)
        except templates.TemplateProblem as exc:
            return SendResult(False, error="template_error", message=f"template_error: {exc}")
        except PhoneProblem as exc:
            return SendResult(False, error="other", message=str(exc))
        if not text:
            return SendResult(False, error="other", message="config.template: rendered empty")
        segments = count_segments(text)
        most = config.get("max_segments", MAX_SEGMENTS)
        if segments.count > most:  # the same text is as long next time: never retried
            return SendResult(
                False,
                error="template_error",
                message=f"template_error: the text takes {segments!r}, over max_segments {most}",
            )
        if not destination.secrets or not destination.secrets[0]:
            return SendResult(False, error="other", message="no token: set the destination secret")
        if config.get("provider") == "gateway":
            result = await self._send_gateway(destination, out, phone, text)
        else:
            result = await self._send_twilio(destination, phone, text)
        note = f"sms: {segments!r}"
        return replace(result, message=f"{result.message}; {note}" if result.message else note)

    async def _send_twilio(self, destination: Destination, phone: str, text: str) -> SendResult:
        config = destination.config
        sid = config["account_sid"]
        form = {"To": phone, "Body": text}
        if config.get("messaging_service_sid"):
            form["MessagingServiceSid"] = config["messaging_service_sid"]
        else:
            sender = str(config["from"])
            if _SENDER_ID.match(sender) or _SHORT_CODE.match(sender):
                form["From"] = sender
            else:
                try:
                    form["From"] = to_e164(sender)
                except PhoneProblem as exc:  # check_config refuses it; a config from before
                    return SendResult(False, error="other", message=f"config.from {exc}")
        if config.get("status_callback"):
            form["StatusCallback"] = config["status_callback"]
        basic = base64.b64encode(f"{sid}:{destination.secrets[0]}".encode()).decode()
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
            "user-agent": "Switchboard/0.1",
            "Authorization": f"Basic {basic}",
        }
        base = str(config.get("base_url") or TWILIO_URL).rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{quote(sid)}/Messages.json"
        body = urlencode(form).encode()
        result = await post(
            self.ctx.session,
            url,
            body,
            headers,
            destination.timeout,
            credentials=("Authorization",),
        )
        if result.ok:
            result = replace(result, provider_id=provider_id(result.response, "sid"))
        return result

    async def _send_gateway(
        self, destination: Destination, out: Outbound, phone: str, text: str
    ) -> SendResult:
        config = destination.config
        if config.get("body_template"):
            seen = {**out.event, "sms": {"to": phone, "text": text}}
            try:
                payload = await self.ctx.renderer.run(
                    templates.render_json, config["body_template"], seen
                )
            except templates.TemplateProblem as exc:
                return SendResult(
                    False,
                    error="template_error",
                    message=f"template_error: config.body_template: {exc}",
                )
        else:
            payload = {"to": phone, "text": text}
        header = config.get("auth_header", "Authorization")
        headers = {
            "content-type": "application/json",
            "user-agent": "Switchboard/0.1",
            header: destination.secrets[0],
        }
        method = config.get("method", "POST")
        result = await post(
            self.ctx.session,
            config["url"],
            orjson.dumps(payload),
            headers,
            destination.timeout,
            credentials=(header,),
            method=method,
        )
        if result.ok:
            result = replace(
                result,
                provider_id=provider_id(result.response, "id", "message_id", "messageId", "sid"),
            )
        return result
