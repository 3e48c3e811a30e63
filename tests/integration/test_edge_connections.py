"""The connection guards of the server every entry point runs (`switchboard.server`), tried with
raw sockets the way an abusive client would: huge headers, headers and bodies trickled a byte at
a time, connections that never speak. Nothing here touches the store, so one store suffices."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchboard.config import Settings
from tests.conftest import Api, serve

pytestmark = pytest.mark.security


@contextlib.asynccontextmanager
async def hub(tmp_path: Path, **settings: Any) -> AsyncIterator[Api]:
    base = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", key_rate=0, tenant_rate=0)
    async with serve(Settings(**{**base.__dict__, **settings})) as api:
        yield api


def _address(api: Api) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").split(":")
    return host, int(port)


async def _answer(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    """The status and body the server wrote before closing (None: closed without a word);
    bounded, so a server that never closes fails the test instead of hanging it."""
    data = b""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        data = await asyncio.wait_for(reader.read(), timeout=30)
    if not data:
        return None, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _send(writer: asyncio.StreamWriter, data: bytes) -> bool:
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        return False
    return True


async def _trickle(writer: asyncio.StreamWriter, data: bytes, gap: float) -> None:
    """Send `data` a byte at a time, `gap` seconds apart, until done or the server hangs up."""
    for i in range(len(data)):
        if writer.is_closing() or not await _send(writer, data[i : i + 1]):
            return
        await asyncio.sleep(gap)


# --- header size ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024])
async def test_a_big_header_is_431_and_the_connection_closes(tmp_path: Path, size: int) -> None:
    async with hub(tmp_path) as api:  # the default cap, 16 KiB
        reader, writer = await asyncio.open_connection(*_address(api))
        request = b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        sender = asyncio.create_task(_send(writer, request))
        status, body = await _answer(reader)
        await sender
        writer.close()
        assert status == 431, body
        assert orjson.loads(body)["error"]["code"] == "headers_too_large"
        # the server still serves others
        ok, _, _ = await api.call("GET", "/health")
        assert ok == 200


async def test_a_50_mb_cloudevents_header_is_never_stored(tmp_path: Path) -> None:
    async with hub(tmp_path) as api:
        _, key = await api.tenant()
        reader, writer = await asyncio.open_connection(*_address(api))
        head = (
            b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"ce-specversion: 1.0\r\nce-id: big-1\r\nce-source: /x\r\nce-type: a.b\r\n"
            b"ce-blob: "
        )
        chunk = b"b" * (1024 * 1024)

        async def flood() -> None:
            if await _send(writer, head):
                for _ in range(50):
                    if not await _send(writer, chunk):
                        return

        sender = asyncio.create_task(flood())
        status, _ = await _answer(reader)
        await sender
        writer.close()
        assert status == 431
        status, body, _ = await api.call("GET", "/v1/events", key)
        assert status == 200 and body["data"] == []


async def test_headers_trickled_in_small_pieces_are_counted_together(tmp_path: Path) -> None:
    async with hub(tmp_path, max_header_bytes=4096) as api:
        reader, writer = await asyncio.open_connection(*_address(api))
        await _send(writer, b"GET /health HTTP/1.1\r\nHost: hub\r\n")
        for i in range(40):  # 40 headers of ~200 bytes, each its own packet
            if not await _send(writer, b"X-H%d: " % i + b"v" * 200 + b"\r\n"):
                break
        status, _ = await _answer(reader)
        writer.close()
        assert status == 431


async def test_headers_under_the_cap_and_a_big_body_in_one_packet_are_served(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path, max_header_bytes=1024) as api:
        _, key = await api.tenant()
        events = orjson.dumps([{"type": "a.b", "data": {"pad": "x" * 500}}] * 200)
        request = (
            b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(events)
        ) + events  # the headers end well inside the cap; the packet is 100 KB
        reader, writer = await asyncio.open_connection(*_address(api))
        await _send(writer, request)
        status, body = await _answer(reader)
        writer.close()
        assert status == 202, body
        assert orjson.loads(body)["accepted"] == 200


async def test_cloudevents_extension_headers_count_toward_the_event_size(tmp_path: Path) -> None:
    async with hub(tmp_path, max_body_bytes=4096) as api:
        _, key = await api.tenant()
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "ext-1",
            "ce-source": "/x",
            "ce-type": "a.b",
            "ce-padding": "p" * 3000,
        }
        body = orjson.dumps({"pad": "d" * 2000})  # under the limit alone, over it with ce-*
        status, answer, _ = await api.call("POST", "/v1/events", key, data=body, headers=headers)
        assert status == 413, answer
        assert answer["error"]["details"][0]["path"] == "ce-padding"
        small = orjson.dumps({"pad": "d" * 200})
        status, answer, _ = await api.call("POST", "/v1/events", key, data=small, headers=headers)
        assert status == 202, answer


# --- slow clients ---------------------------------------------------------------------------


async def test_headers_trickled_a_byte_at_a_time_get_408_and_a_close(tmp_path: Path) -> None:
    async with hub(tmp_path, header_timeout=0.5) as api:
        reader, writer = await asyncio.open_connection(*_address(api))
        headers = b"GET /health HTTP/1.1\r\nHost: hub\r\n" + b"X-Slow: " + b"z" * 1000 + b"\r\n\r\n"
        trickler = asyncio.create_task(_trickle(writer, headers, 0.02))
        status, body = await _answer(reader)
        trickler.cancel()
        writer.close()
        assert status == 408, body
        assert "headers did not arrive" in orjson.loads(body)["error"]["message"]


async def test_a_connection_that_never_speaks_is_closed(tmp_path: Path) -> None:
    async with hub(tmp_path, header_timeout=0.5) as api:
        reader, writer = await asyncio.open_connection(*_address(api))
        status, _ = await _answer(reader)  # returns only once the server hangs up
        writer.close()
        assert status == 408


async def test_a_body_trickled_a_byte_at_a_time_gets_408_and_a_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with hub(tmp_path, body_timeout=0.5) as api:
        _, key = await api.tenant()
        body = orjson.dumps([{"type": "a.b", "data": {"pad": "x" * 400}}])
        reader, writer = await asyncio.open_connection(*_address(api))
        await _send(
            writer,
            b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body),
        )
        trickler = asyncio.create_task(_trickle(writer, body, 0.02))
        status, answer = await _answer(reader)
        trickler.cancel()
        writer.close()
        assert status == 408, answer
        assert "body did not arrive" in orjson.loads(answer)["error"]["message"]
        status, listed, _ = await api.call("GET", "/v1/events", key)
        assert status == 200 and listed["data"] == []
    # the handler waiting on the body ended quietly, not as an unhandled exception
    assert not [r for r in caplog.records if "Exception in ASGI" in r.getMessage()]


async def test_many_trickling_connections_are_all_closed(tmp_path: Path) -> None:
    async with hub(tmp_path, header_timeout=0.5) as api:
        conns = [await asyncio.open_connection(*_address(api)) for _ in range(50)]
        request = b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"z" * 1000 + b"\r\n\r\n"
        tricklers = [asyncio.create_task(_trickle(w, request, 0.05)) for _, w in conns]
        statuses = await asyncio.gather(*(_answer(r) for r, _ in conns))
        for t in tricklers:
            t.cancel()
        for _, w in conns:
            w.close()
        assert [s for s, _ in statuses] == [408] * 50
        status, _, _ = await api.call("GET", "/health")
        assert status == 200


async def test_a_slow_client_within_the_limits_is_served(tmp_path: Path) -> None:
    async with hub(tmp_path, header_timeout=5, body_timeout=5) as api:
        _, key = await api.tenant()
        body = orjson.dumps([{"id": "slow-1", "type": "a.b", "data": {"n": 1}}])
        head = (
            b"POST /v1/events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        reader, writer = await asyncio.open_connection(*_address(api))
        for piece in (head[:10], head[10:60], head[60:], body[:5], body[5:20], body[20:]):
            await _send(writer, piece)
            await asyncio.sleep(0.05)  # a slow network: pauses well inside the limits
        line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert line.startswith(b"HTTP/1.1 202"), line
        status, event, _ = await api.call("GET", "/v1/events/slow-1", key)
        assert status == 200, event


async def test_keep_alive_requests_each_get_their_own_header_time(tmp_path: Path) -> None:
    """The header timer restarts per request: a connection serving requests for longer than
    the header timeout in total is not cut."""
    async with hub(tmp_path, header_timeout=0.3) as api:
        reader, writer = await asyncio.open_connection(*_address(api))
        loop = asyncio.get_running_loop()
        started = loop.time()
        served = 0
        while loop.time() - started < 1.0:  # > 3 header timeouts on one connection
            await _send(writer, b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            assert line.startswith(b"HTTP/1.1 200"), line
            await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), timeout=10)
            served += 1
            await asyncio.sleep(0.05)
        writer.close()
        assert served > 3
