"""A fast webhook receiver for the benchmarks: asyncio + httptools on uvloop, one process.

Every POST is answered 204 at once and counted by its ``webhook-id`` (repeats of an at-least-once
delivery count once); its arrival time is kept per id. The harness reads the figures with
``GET /_stats`` (count, first and last arrival) and ``GET /_arrivals`` (id → arrival time, and the
``sent_at`` the event carries in ``data``, for the latency figure), and clears them with
``POST /_reset``. Run: ``python -m benchmarks.receiver PORT``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httptools
import orjson
import uvloop

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.arrivals: dict[str, float] = {}  # webhook-id → first arrival (time.time())
        self.sent: dict[str, float] = {}  # webhook-id → data.sent_at, when present
        self.accepted: dict[str, str] = {}  # webhook-id → event id
        self.repeats = 0
        self.first = 0.0
        self.last = 0.0
        self.keep_bodies = False

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.arrivals),
            "repeats": self.repeats,
            "first": self.first,
            "last": self.last,
        }


class Http(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.webhook_id = ""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        now = time.time()
        method = self.parser.get_method()
        if self.url.startswith(b"/_"):
            self._control(method, self.url)
            return
        s = self.state
        wid = self.webhook_id or f"anon-{len(s.arrivals)}"
        if wid in s.arrivals:
            s.repeats += 1
        else:
            s.arrivals[wid] = now
            if not s.first:
                s.first = now
            s.last = now
            if s.keep_bodies and self.body:
                doc = orjson.loads(b"".join(self.body))
                data = doc.get("data") if isinstance(doc, dict) else None
                if isinstance(data, dict) and "sent_at" in data:
                    s.sent[wid] = float(data["sent_at"])
                s.accepted[wid] = str(doc.get("id"))
        self.transport.write(_NO_CONTENT)

    def _control(self, method: bytes, url: bytes) -> None:
        assert self.transport is not None
        s = self.state
        if url.startswith(b"/_stats"):
            body = orjson.dumps(s.stats())
        elif url.startswith(b"/_arrivals"):
            body = orjson.dumps(
                {
                    wid: {"at": at, "sent_at": s.sent.get(wid), "event_id": s.accepted.get(wid)}
                    for wid, at in s.arrivals.items()
                }
            )
        elif url.startswith(b"/_reset"):
            keep = b"keep_bodies=1" in url
            s.reset()
            s.keep_bodies = keep
            body = b"{}"
        else:
            body = b'{"error":"unknown control path"}'
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )


async def serve(port: int) -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(state), "127.0.0.1", port, backlog=1024)
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
