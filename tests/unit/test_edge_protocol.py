"""The edge guard's header cap as the protocol sees it, chunk by chunk: uvicorn's protocol class
fed bytes through an in-memory transport, so where a chunk ends is exact (a socket may merge or
split what a test sends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from switchboard.server import EdgeLimits, guarded_protocol

pytestmark = pytest.mark.security

CAP = 200
HEAD = b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n"


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = b""
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.out += bytes(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closing = True


async def _serve(chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
    """What the server wrote back, and the bodies the app received, for `chunks` fed in turn."""
    bodies: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        bodies.append(body)
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    cls = guarded_protocol(EdgeLimits(max_header_bytes=CAP, header_timeout=30, body_timeout=30))
    config = Config(app, http=cls, proxy_headers=False, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    proto = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = _Transport()
    proto.connection_made(transport)
    for chunk in chunks:
        proto.data_received(chunk)
        for _ in range(20):  # let the request's task run
            await asyncio.sleep(0)
    proto.connection_lost(None)
    return transport.out, bodies


async def test_a_terminator_split_over_two_chunks_then_a_body_over_the_cap_is_served() -> None:
    body = b"x" * (CAP * 2)
    head = HEAD % len(body)
    out, bodies = await _serve([head + b"\r", b"\n" + body])
    assert out.startswith(b"HTTP/1.1 202"), out
    assert bodies == [body]


async def test_a_terminator_split_over_tiny_chunks_is_found_too() -> None:
    body = b"y" * (CAP * 2)
    head = HEAD % len(body)
    out, bodies = await _serve([head[:-1], head[-1:], b"\r", b"\n" + body])
    assert out.startswith(b"HTTP/1.1 202"), out
    assert bodies == [body]


async def test_headers_over_the_cap_without_an_end_are_431() -> None:
    head = HEAD % 2
    out, bodies = await _serve([head, b"X-Pad: " + b"p" * CAP + b"\r\n\r\nok"])
    assert out.startswith(b"HTTP/1.1 431"), out
    assert bodies == []


async def test_keep_alive_requests_each_count_their_own_headers() -> None:
    """Each request's headers start the count again: many small requests on one connection
    add up to far more than the cap and are all served."""
    one = HEAD % 2 + b"\r\nok"
    out, bodies = await _serve([one] * 10)
    assert out.count(b"HTTP/1.1 202") == 10, out
    assert bodies == [b"ok"] * 10
