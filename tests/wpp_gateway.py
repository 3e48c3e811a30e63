"""The WPP Gateway as the comms-hub documents it, played on 127.0.0.1 for the tests: every call
needs `X-Gateway-Secret`; `POST /api/messages` sends, `GET`/`POST /api/channels` list and create
channels (sessions), `GET /api/channels/:channel/qr` gives the code to scan, and
`POST /api/channels/:channel/webhook` (or `POST /api/webhooks` with the channel in the body)
says where the gateway posts `message`, `message.ack` and `connection.update`.

A test plays the phone with `scan()` (the channel connects) and `log_out()` (it drops): each posts
the gateway's `connection.update` webhook, with the secret, to the URL registered for the channel.
"""

from __future__ import annotations

import base64
import io
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import segno
from aiohttp import web

Record = Callable[[web.Request], Awaitable[Any]]


@dataclass
class Channel:
    id: str
    status: str = "qr"  # WPPConnect's words: qr, connected, disconnected
    phone: str | None = None
    qr: str = ""
    webhook: str | None = None
    events: list[str] = field(default_factory=list)


@dataclass
class WppGateway:
    secret: str
    record: Record | None = None  # called with every request first (the shared provider log)
    channels: dict[str, Channel] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of each call
    qr_padding: int = 0  # hostile gateway: pad every QR answer with this many bytes
    qr_endless: bool = False  # hostile gateway: a chunked QR answer that never ends
    streamed: int = 0  # bytes of the endless answer written before the reader hung up
    posted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # webhook answers

    def mount(self, app: web.Application, prefix: str = "") -> None:
        app.router.add_post(f"{prefix}/api/messages", self._messages)
        app.router.add_get(f"{prefix}/api/channels", self._list)
        app.router.add_post(f"{prefix}/api/channels", self._create)
        app.router.add_get(f"{prefix}/api/channels/{{channel}}/qr", self._qr)
        app.router.add_post(f"{prefix}/api/channels/{{channel}}/webhook", self._webhook)
        app.router.add_post(f"{prefix}/api/webhooks", self._webhook)

    # --- the phone ------------------------------------------------------------------------------

    async def scan(self, channel: str, phone: str) -> None:
        """The phone scanned the QR code: the channel connects and says so."""
        c = self.channels[channel]
        c.status, c.phone, c.qr = "connected", phone, ""
        await self._notify(c, {"status": "connected", "phone": phone})

    async def log_out(self, channel: str, reason: str = "logged out from phone") -> None:
        c = self.channels[channel]
        c.status, c.phone, c.qr = "disconnected", None, _pairing_text()
        await self._notify(c, {"status": "disconnected", "reason": reason})

    async def _notify(self, c: Channel, data: dict[str, Any]) -> None:
        if c.webhook is None or "connection.update" not in c.events:
            return
        body = {
            "event": "connection.update",
            "channel": c.id,
            "data": {**data, "timestamp": int(time.time())},
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(c.webhook, json=body, headers={"X-Gateway-Secret": self.secret}) as resp,
        ):
            self.posted.append((resp.status, await resp.json(content_type=None)))

    # --- the API --------------------------------------------------------------------------------

    async def _allowed(self, request: web.Request) -> web.Response | None:
        if self.record is not None:
            await self.record(request)
        self.calls.append((request.method, request.path))
        if request.headers.get("X-Gateway-Secret") != self.secret:
            return web.json_response({"success": False, "error": "unauthorized"}, status=401)
        return None

    async def _messages(self, request: web.Request) -> web.Response:
        if refused := await self._allowed(request):
            return refused
        return web.json_response({"success": True, "id": "wamid-1"})

    async def _list(self, request: web.Request) -> web.Response:
        if refused := await self._allowed(request):
            return refused
        listed = [
            {"id": c.id, "status": c.status, **({"phone": c.phone} if c.phone else {})}
            for c in self.channels.values()
        ]
        return web.json_response({"success": True, "channels": listed})

    async def _create(self, request: web.Request) -> web.Response:
        if refused := await self._allowed(request):
            return refused
        body = await request.json()
        ident = body.get("channel") if isinstance(body, dict) else None
        if not isinstance(ident, str) or not ident:
            return web.json_response({"success": False, "error": "channel is required"}, status=400)
        if ident in self.channels:
            return web.json_response(
                {"success": False, "error": "channel already exists"}, status=409
            )
        self.channels[ident] = Channel(ident, qr=_pairing_text())
        return web.json_response(
            {"success": True, "channel": {"id": ident, "status": "qr"}}, status=201
        )

    async def _qr(self, request: web.Request) -> web.Response:
        if refused := await self._allowed(request):
            return refused
        c = self.channels.get(request.match_info["channel"])
        if c is None:
            return web.json_response({"success": False, "error": "channel not found"}, status=404)
        if self.qr_endless:
            return await self._endless(request)
        if c.status == "connected":
            return web.json_response({"success": True, "channel": c.id, "status": "connected"})
        image = io.BytesIO()
        segno.make(c.qr, micro=False).save(image, kind="png", scale=4)
        answer = {
            "success": True,
            "channel": c.id,
            "status": "qr",
            "qr": c.qr,
            "qrcode": "data:image/png;base64," + base64.b64encode(image.getvalue()).decode(),
        }
        if self.qr_padding:
            answer["padding"] = "x" * self.qr_padding
        return web.json_response(answer)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """No Content-Length, and a QR text that goes on until the reader stops (or 64 MiB)."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"status": "qr", "qr": "2@')
        chunk = b"A" * 16384
        try:
            while self.streamed < 64 << 20:
                await resp.write(chunk)
                self.streamed += len(chunk)
        except (ConnectionError, RuntimeError):  # the reader hung up
            pass
        return resp

    async def _webhook(self, request: web.Request) -> web.Response:
        if refused := await self._allowed(request):
            return refused
        body = await request.json()
        ident = request.match_info.get("channel") or body.get("channel")
        c = self.channels.get(ident)
        if c is None:
            return web.json_response({"success": False, "error": "channel not found"}, status=404)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return web.json_response({"success": False, "error": "url is required"}, status=400)
        c.webhook = url
        c.events = list(body.get("events") or ["message", "message.ack", "connection.update"])
        return web.json_response({"success": True, "channel": c.id, "webhook": url})


def _pairing_text() -> str:
    """What WhatsApp Web encodes in its pairing QR: a ref and three base64 keys."""

    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return f"2@{secrets.token_urlsafe(48)},{key()},{key()},{key()}"


async def serve(gateway: WppGateway, prefix: str = "") -> tuple[web.AppRunner, str]:
    """The gateway alone on 127.0.0.1; its base URL."""
    app = web.Application()
    gateway.mount(app, prefix)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}{prefix}"
