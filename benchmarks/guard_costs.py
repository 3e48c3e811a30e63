"""Not a figure: what two tenant-safety guards cost on their own, in µs of CPU, in process.

* **The edge guard per request**: one keep-alive connection's requests fed to uvicorn's
  httptools protocol through an in-memory transport (no sockets), answered 202 by a bare ASGI
  app, with `switchboard.server.GuardedProtocol` (header cap, header and body timeouts) against
  uvicorn's plain `HttpToolsProtocol` with the `ProxyHeadersMiddleware` it adds by default (what
  `serve` ran before the guard). Rounds alternate the two; the figure is the median difference.
* **The egress guard per delivery attempt**: what `webhook.post` adds to every attempt (the
  destination's host name read from its URL into `egress.HOST`, and reset), and what a new
  connection adds on top (`Policy.address_allowed` in the socket factory and in the resolver
  for each answer). Attempts on a pooled connection pay only the first.

``python -m benchmarks.guard_costs [--requests 20000] [--rounds 7]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from switchboard import egress
from switchboard.config import Settings
from switchboard.server import EdgeLimits, guarded_protocol

_BODY = b'{"type":"order.created","data":{"order_id":1,"total":12.5}}'
REQUEST = (
    b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Authorization: Bearer sk_bench_0123456789abcdef0123456789abcdef\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class _Transport(asyncio.Transport):
    """Enough of a socket transport for uvicorn's protocol: writes are counted, not sent."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.written += 1

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
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _feed(protocol_class: type[HttpToolsProtocol], app: Any, requests: int) -> float:
    """CPU seconds per request of `requests` requests on one connection, answered in turn."""
    config = Config(app, http=protocol_class, proxy_headers=False, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    proto = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = _Transport()
    proto.connection_made(transport)
    start = time.process_time()
    for _ in range(requests):
        proto.data_received(REQUEST)
        # yield until the request's task has answered (an Event would cost both sides more)
        while proto.cycle is not None and not proto.cycle.response_complete:  # noqa: ASYNC110
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # let the finished task's callbacks run
    spent = time.process_time() - start
    proto.connection_lost(None)
    if transport.written < requests:
        raise RuntimeError(f"{transport.written} answers for {requests} requests")
    return spent / requests


def edge_guard(requests: int, rounds: int) -> dict[str, Any]:
    guarded = guarded_protocol(EdgeLimits.from_settings(Settings()))
    plain_app = ProxyHeadersMiddleware(_app, trusted_hosts="127.0.0.1")
    before: list[float] = []
    after: list[float] = []

    async def run() -> None:
        await _feed(guarded, _app, 2000)  # warm-up of both
        await _feed(HttpToolsProtocol, plain_app, 2000)
        for _ in range(rounds):
            before.append(await _feed(HttpToolsProtocol, plain_app, requests))
            after.append(await _feed(guarded, _app, requests))

    import uvloop

    uvloop.run(run())
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    return {
        "plain_us": statistics.median(before) * 1e6,
        "guarded_us": statistics.median(after) * 1e6,
        "difference_us": statistics.median(diffs) * 1e6,
        "rounds": rounds,
    }


def _per_call(fn: Callable[[], Any], n: int, rounds: int) -> float:
    """Median µs of CPU per call of `fn` over `rounds` rounds of `n` calls."""
    out = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        out.append((time.process_time() - start) / n * 1e6)
    return statistics.median(out)


def egress_guard(calls: int, rounds: int) -> dict[str, Any]:
    policy = egress.Policy.parse()  # the default: the built-in denied ranges
    url = "https://hooks.example.com/switchboard/orders"

    def attempt() -> None:  # what webhook.post adds to each attempt
        token = egress.HOST.set(urlsplit(url).hostname)
        egress.HOST.reset(token)

    def connection() -> None:  # the resolver's check of one answer, then the socket's
        policy.address_allowed("93.184.215.14", "hooks.example.com")
        policy.address_allowed("93.184.215.14", "hooks.example.com")

    policy.address_allowed("93.184.215.14")  # builds the cached ranges
    return {
        "per_attempt_us": _per_call(attempt, calls, rounds),
        "per_new_connection_us": _per_call(connection, calls, rounds),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(
        json.dumps(
            {
                "edge_guard_per_request": edge_guard(args.requests, args.rounds),
                "egress_guard": egress_guard(args.requests * 5, args.rounds),
            }
        )
    )


if __name__ == "__main__":
    main()
