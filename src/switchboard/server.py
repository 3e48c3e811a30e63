"""How the API is served: one uvicorn configuration for every place that starts it (`serve`,
`quickstart`, the test fixtures, the benchmarks), with the guards a connection meets before the
app sees a request.

uvicorn (httptools + uvloop) has a keep-alive timeout and nothing else: no cap on the size of a
request's headers (httptools buffers a 50 MB header line whole) and no limit on how long a client
may take to send its headers or body, so 400 clients trickling a byte a second hold 400
connections forever. `GuardedProtocol` is uvicorn's httptools protocol (uvicorn's `Config` takes
a protocol class as `http=`) with those three guards added where only the protocol can see them:

* the request line and headers of one request are at most `max_header_bytes` (431, then close);
* they arrive within `header_timeout` seconds of the connection opening or of the request's
  first byte (408, then close);
* the body arrives within `body_timeout` seconds of the headers (408 if no answer has started;
  the app's pending `receive` sees a disconnect).

One lazy timer per connection serves both timeouts: a request's phases only move its deadline,
so a busy keep-alive connection schedules about one timer per `header_timeout` seconds, not one
per request (the fast path pays a clock read per phase).

Forwarding headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are honoured only from the
`trusted_proxies` networks; by default from nobody, so the client address is the TCP peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from switchboard.config import Settings

__all__ = ["EdgeLimits", "GuardedProtocol", "guarded_protocol", "server_config"]

_CRLFCRLF = b"\r\n\r\n"
LINGER = 2.0  # seconds a refused connection discards what the client still sends


@dataclass(frozen=True)
class EdgeLimits:
    """What one connection may take before the app sees its request."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(settings.max_header_bytes, settings.header_timeout, settings.body_timeout)


def _answer(status: int, reason: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size cap and header and body timeouts."""

    limits: ClassVar[EdgeLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when `_timer` fires (read on every request: cheaper than when())
        self._deadline: float | None = None  # loop time the current phase must end by
        self._in_headers = True  # the current request's headers are not complete yet
        self._body_due = False  # headers complete, body not: its deadline is set after parsing
        self._header_bytes = 0
        # the header bytes counted last; its last 3 bytes are the tail that may hold the start
        # of a terminator split in two (a reference: no slice per request on the fast path)
        self._last = b""
        self._discarding = False  # refused: what the client still sends is dropped

    # -- the timer -----------------------------------------------------------------------------
    # One lazy timer per connection: a phase only moves `_deadline`, and the timer, when it
    # fires early, sleeps again until the deadline. A busy keep-alive connection so schedules
    # one timer per `header_timeout` seconds instead of one per request.

    def _arm(self, seconds: float) -> None:
        if seconds <= 0:
            self._deadline = None
            return
        deadline = self._deadline = self.loop.time() + seconds
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()  # set for a later deadline: it would fire too late
            self._timer = self.loop.call_at(deadline, self._expired)
            self._timer_at = deadline

    def _disarm(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._deadline is None or self.transport.is_closing():
            return  # idle between requests: the keep-alive timeout watches those
        if self._deadline > self.loop.time():  # the phase moved on since: sleep again
            self._timer = self.loop.call_at(self._deadline, self._expired)
            self._timer_at = self._deadline
            return
        if self._in_headers:
            self._refuse(408, b"Request Timeout", "request_timeout", self._header_late())
            return
        message = f"the request body did not arrive within {self.limits.body_timeout:g} s"
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(_answer(408, b"Request Timeout", "request_timeout", message))
        if cycle is not None:
            cycle.disconnected = True  # the app's pending `receive` answers a disconnect
            cycle.message_event.set()
        self.logger.info("closed a slow request: %s", message)
        self._hang_up()

    def _header_late(self) -> str:
        return f"the request headers did not arrive within {self.limits.header_timeout:g} s"

    def _refuse(self, status: int, reason: bytes, code: str, message: str) -> None:
        # a status can be sent only while no earlier (pipelined) answer is being written
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_answer(status, reason, code, message))
        self.logger.info("refused a request before the app: %s", message)
        self._hang_up()

    def _hang_up(self) -> None:
        """End the connection after a refusal. Closing at once, with bytes the client sent
        still unread, makes the kernel send a reset that can destroy the answer before the
        client reads it; so: end our side (FIN), discard what still comes for `LINGER` seconds
        (or until the client ends its side), then close."""
        self._disarm()
        self._discarding = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        with contextlib.suppress(RuntimeError):  # reading may be paused by flow control
            self.transport.resume_reading()
        self._timer_at = self.loop.time() + LINGER
        self._timer = self.loop.call_at(self._timer_at, self.transport.close)

    # -- uvicorn's protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout)  # a connection that never speaks is timed out

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # The hooks below run for every request, so they call the base class directly (no
    # `super()` object) and keep the fast path to a few attribute reads: a request whose
    # headers fit and whose body arrives with them costs one clock read and no slice.

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_headers:
            size = self._header_bytes + len(data)
            if size <= self.limits.max_header_bytes:
                self._header_bytes = size
                self._last = data if len(data) >= 3 else self._last[-3:] + data
            elif self.limits.max_header_bytes > 0 and not self._over_cap_fits(data):
                limit = self.limits.max_header_bytes
                self._refuse(
                    431,
                    b"Request Header Fields Too Large",
                    "headers_too_large",
                    f"the request line and headers are over {limit} bytes "
                    "(SWITCHBOARD_MAX_HEADER_BYTES)",
                )
                return
        HttpToolsProtocol.data_received(self, data)
        if self._body_due:  # the headers ended in this data and the body did not
            self._body_due = False
            self._arm(self.limits.body_timeout)

    def _over_cap_fits(self, data: bytes) -> bool:
        """`data` takes the header block over the cap: fine only if the block ends within the
        room left (what follows is the body, or a pipelined request counted once its
        predecessor completes). Checked before the parser sees the bytes, since httptools
        keeps a header whole in memory until its value ends."""
        room = self.limits.max_header_bytes - self._header_bytes
        if data.find(_CRLFCRLF, 0, room) != -1:
            return True
        return _CRLFCRLF in self._last[-3:] + data[: min(3, room)]  # a terminator split in two

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        if self._deadline is None:  # the first request keeps the deadline of the connection
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._last = b""
        # The body's deadline counts from here; it is set once this data is parsed, and only
        # if the body is still to come (the parser calls back within `data_received`, so no
        # timer can fire in between).
        self._body_due = True
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._deadline = None  # the timer, if it fires while idle, just ends
        self._in_headers = True
        self._body_due = False
        HttpToolsProtocol.on_message_complete(self)


def guarded_protocol(limits: EdgeLimits) -> type[GuardedProtocol]:
    """`GuardedProtocol` bound to `limits` (uvicorn builds protocols from the class alone)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})


def trusted_networks(raw: str) -> list[str]:
    """`SWITCHBOARD_TRUSTED_PROXIES` → normalized CIDRs; raises ValueError naming a bad one."""
    out = []
    for item in (part.strip() for part in raw.split(",")):
        if item:
            out.append(str(ipaddress.ip_network(item, strict=False)))
    return out


def server_config(
    app: Any, settings: Settings, *, host: str | None = None, port: int | None = None, **extra: Any
) -> uvicorn.Config:
    """The uvicorn configuration every server of the hub runs with."""
    trusted = trusted_networks(settings.trusted_proxies)
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": settings.port if port is None else port,
        "loop": "uvloop",
        "http": guarded_protocol(EdgeLimits.from_settings(settings)),
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: only from these
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or [],
        "h11_max_incomplete_event_size": settings.max_header_bytes or None,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "lifespan": "on",
    }
    options.update(extra)
    return uvicorn.Config(app, **options)
