"""Setting up a tenant's channel on the WPP Gateway: create it, read its connection state and QR
code, and point its webhook at the hub. The `whatsapp` channel (`provider: gateway`) sends through
the channel once it is connected; this module is what gets it there.

The gateway's management API, with ``X-Gateway-Secret`` on every call:

- ``GET  {base_url}/api/channels``: the channels, ``{"channels": [{"id", "status", "phone"?}]}``
  (a bare list, ``data``, and ``channel``/``channel_id``/``session``/``name`` for the id and
  ``state`` for the status are read too);
- ``POST {base_url}/api/channels`` ``{"channel": id}``: create one (409 when it exists);
- ``GET  {base_url}/api/channels/{id}/qr``: ``{"status", "qr"?}``; the QR's text is read from
  ``qr``, ``qrcode``, ``urlcode`` or ``code`` (a ``data:image/png;base64,`` value is the image);
- ``POST {base_url}/api/channels/{id}/webhook`` ``{"url", "events"}``: where the gateway posts
  ``message``, ``message.ack`` and ``connection.update``.

The base URL is tenant input: every call goes through the hub's egress-guarded session, answers
are read up to a bound (a bigger one is refused, never buffered), and the secret is never part of
a message this module returns.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
import segno

from switchboard import egress

ConnectionStatus = Literal["connected", "connecting", "qr_required", "disconnected", "unknown"]

# The gateway's words (WPPConnect's and Baileys' states) → ours; the `wpp-gateway` mapping's
# `connection.update` rule uses the same table (tests/unit/test_wpp_gateway.py compares them).
STATUS_WORDS: dict[str, ConnectionStatus] = {
    "connected": "connected",
    "open": "connected",
    "inchat": "connected",
    "islogged": "connected",
    "connecting": "connecting",
    "opening": "connecting",
    "qr": "qr_required",
    "qrcode": "qr_required",
    "qr_required": "qr_required",
    "notlogged": "qr_required",
    "disconnected": "disconnected",
    "close": "disconnected",
    "closed": "disconnected",
    "browserclose": "disconnected",
}

WEBHOOK_EVENTS = ("message", "message.ack", "connection.update")
LIST_LIMIT = 1 << 20  # a shared gateway lists every tenant's channels: 1 MiB is thousands
QR_LIMIT = 64 << 10  # a QR answer, with a PNG data URL of the code, is a few KiB
ANSWER_LIMIT = 64 << 10  # any other answer
QR_TEXT_LIMIT = 1024  # WhatsApp's pairing text is ~240 characters; a QR holds at most ~2.9 KB
MAX_TIMEOUT = 30.0  # an API request waits at most this long for the gateway
PNG_SCALE = 8  # pixels per module: a version-40 code (the largest) is 1,480 px square
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# a channel id goes into the gateway's URL path: no '/', '?', '%' or spaces, and not '.' or '..'
CHANNEL_RE = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.:@\-]{1,100}(?!\n)$")


class GatewayProblem(Exception):
    """The gateway could not be used: `kind` says why (for the API's answer), the message says
    what happened, without the secret."""

    def __init__(
        self,
        kind: Literal["egress_denied", "timeout", "connection", "status", "too_large", "malformed"],
        message: str,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class ChannelState:
    """One channel as the gateway reports it."""

    id: str
    status: ConnectionStatus
    phone: str | None = None
    raw_status: str | None = None  # the gateway's own word, when it is not one we know


@dataclass(frozen=True)
class QrCode:
    """A channel's pairing code: its text (what the phone scans) and/or the gateway's PNG."""

    status: ConnectionStatus
    text: str | None = None
    png: bytes | None = None

    def image(self) -> bytes | None:
        """The PNG to show: drawn from the text (same size for every gateway), else the
        gateway's own image."""
        return qr_png(self.text) if self.text is not None else self.png


def check_channel_id(channel: Any) -> str | None:
    """Why `channel` cannot be a gateway channel id (None: it can)."""
    if not isinstance(channel, str) or not CHANNEL_RE.fullmatch(channel):
        return "must be 1 to 100 letters, digits, '.', '_', ':', '@' or '-' (not '.' or '..')"
    return None


def status_of(word: Any) -> ConnectionStatus:
    if isinstance(word, bool):  # `{"connected": true}` style answers
        return "connected" if word else "disconnected"
    if not isinstance(word, str):
        return "unknown"
    return STATUS_WORDS.get(word.strip().lower(), "unknown")


def _text(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value[:limit] if isinstance(value, str) and value else None


def _channel_items(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in ("channels", "data", "sessions"):
            if isinstance(doc.get(key), list):
                return list(doc[key])
    raise GatewayProblem("malformed", "the channel list is not a list (nor under `channels`)")


def parse_channels(doc: Any) -> list[ChannelState]:
    """The channels of a `GET /api/channels` answer; items without an id are skipped."""
    found = []
    for item in _channel_items(doc):
        if isinstance(item, str):
            found.append(ChannelState(item[:200], "unknown"))
            continue
        if not isinstance(item, dict):
            continue
        ident = next(
            (
                t
                for k in ("id", "channel", "channel_id", "session", "name")
                if (t := _text(item.get(k)))
            ),
            None,
        )
        if ident is None:
            continue
        word = item.get("status", item.get("state", item.get("connected")))
        status = status_of(word)
        found.append(
            ChannelState(
                ident,
                status,
                phone=_text(item.get("phone") or item.get("number"), 32),
                raw_status=_text(word, 50) if status == "unknown" else None,
            )
        )
    return found


def parse_qr(doc: Any) -> QrCode:
    """A `GET /api/channels/{id}/qr` answer: the status and the code's text or image."""
    if not isinstance(doc, dict):
        raise GatewayProblem("malformed", "the QR answer is not a JSON object")
    data = doc.get("data")
    scope: dict[str, Any] = data if isinstance(data, dict) else doc
    text: str | None = None
    png: bytes | None = None
    for key in ("qr", "qrcode", "urlcode", "code", "base64"):
        value = scope.get(key)
        if not isinstance(value, str) or not value:
            continue
        if value.startswith("data:image/"):
            png = png or _data_png(value)
        elif text is None:
            text = value
    if text is not None and len(text) > QR_TEXT_LIMIT:
        raise GatewayProblem(
            "too_large", f"the QR text has {len(text)} characters; at most {QR_TEXT_LIMIT}"
        )
    word = scope.get("status", scope.get("state"))
    status = status_of(word)
    if status == "unknown" and (text or png):
        status = "qr_required"
    return QrCode(status, text, png)


def _data_png(value: str) -> bytes:
    head, _, payload = value.partition(",")
    if head != "data:image/png;base64":
        raise GatewayProblem("malformed", "the QR image is not a base64 PNG data URL")
    try:
        png = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise GatewayProblem("malformed", "the QR image is not valid base64") from None
    if not png.startswith(PNG_MAGIC):
        raise GatewayProblem("malformed", "the QR image is not a PNG")
    return png


def qr_png(text: str) -> bytes:
    """The QR code of `text` as a PNG (segno, no Pillow); never a Micro QR, which phones'
    WhatsApp cannot read."""
    out = io.BytesIO()
    segno.make(text, micro=False).save(out, kind="png", scale=PNG_SCALE, border=4)
    return out.getvalue()


def qr_terminal(text: str) -> str:
    """The QR code of `text` drawn with half blocks, two rows per line, dark on a light
    terminal and light on a dark one alike (the quiet zone is drawn too)."""
    out = io.StringIO()
    segno.make(text, micro=False).terminal(out=out, compact=True)
    return out.getvalue()


class Gateway:
    """One gateway, as a destination names it: its base URL and secret."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, secret: str, timeout: float
    ) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.secret = secret
        self.timeout = min(timeout, MAX_TIMEOUT)

    async def channels(self) -> list[ChannelState]:
        return parse_channels(await self._call("GET", "/api/channels", limit=LIST_LIMIT))

    async def channel(self, channel: str) -> ChannelState | None:
        return next((c for c in await self.channels() if c.id == channel), None)

    async def create(self, channel: str) -> bool:
        """Create the channel; False when the gateway already has it (409)."""
        try:
            await self._call("POST", "/api/channels", {"channel": channel})
        except GatewayProblem as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def qr(self, channel: str) -> QrCode:
        return parse_qr(await self._call("GET", f"/api/channels/{channel}/qr", limit=QR_LIMIT))

    async def set_webhook(self, channel: str, url: str) -> None:
        body = {"url": url, "events": list(WEBHOOK_EVENTS)}
        await self._call("POST", f"/api/channels/{channel}/webhook", body)

    async def _call(
        self, method: str, path: str, body: Any = None, limit: int = ANSWER_LIMIT
    ) -> Any:
        """One call; the parsed JSON answer of a 2xx, else GatewayProblem."""
        url = self.base + path
        headers = {
            "X-Gateway-Secret": self.secret,
            "accept": "application/json",
            "user-agent": "Switchboard/0.1",
        }
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["content-type"] = "application/json"
        token = egress.HOST.set(urlsplit(url).hostname)  # the socket hook checks this name
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                raw = await self._read(resp, limit, path)
                status = resp.status
        except TimeoutError:
            raise GatewayProblem("timeout", f"no answer in {self.timeout:g} s") from None
        except aiohttp.ClientConnectionError as exc:
            denied = egress.denied_in(exc)
            if denied is not None:
                raise GatewayProblem("egress_denied", str(denied)) from None
            raise GatewayProblem(
                "connection", self._scrub(str(exc) or type(exc).__name__)
            ) from None
        except aiohttp.ClientError as exc:
            raise GatewayProblem(
                "connection", self._scrub(str(exc) or type(exc).__name__)
            ) from None
        finally:
            egress.HOST.reset(token)
        if not 200 <= status < 300:
            raise GatewayProblem(
                "status", f"{method} {path}: HTTP {status}{self._said(raw)}", status=status
            )
        try:
            return orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise GatewayProblem("malformed", f"{method} {path}: the answer is not JSON") from None

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, limit: int, path: str) -> bytes:
        """The body, up to `limit` bytes: a longer one is refused without reading it all."""
        if resp.content_length is not None and resp.content_length > limit:
            raise GatewayProblem(
                "too_large", f"{path}: the answer has {resp.content_length} bytes; at most {limit}"
            )
        raw = await resp.content.read(limit + 1)
        if len(raw) > limit:
            raise GatewayProblem("too_large", f"{path}: the answer is over {limit} bytes")
        return raw

    def _said(self, raw: bytes) -> str:
        """What the gateway said with an error, short and without the secret."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ""
        said = None
        if isinstance(doc, dict):
            said = doc.get("error") or doc.get("message")
            if isinstance(said, dict):
                said = said.get("message")
        return f": {self._scrub(said[:200])}" if isinstance(said, str) and said else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self.secret, "…") if self.secret else text
