"""The delivery ceiling: a raw aiohttp client (uvloop) sending the requests the webhook channel
sends — the event as JSON, Standard Webhooks signature per request, the same headers — at a fixed
concurrency, with nothing around it (no queue, no database, no retries).

Run: ``python -m benchmarks.raw_sender URL COUNT CONCURRENCY SECRET``; prints a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import orjson
import uvloop

from benchmarks.events import stored
from switchboard import signing


async def send_all(url: str, count: int, concurrency: int, secret: str) -> dict[str, float]:
    events = [stored("bench", "raw", n).to_json() for n in range(count)]
    next_index = 0
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, failures
        while next_index < count:
            event = events[next_index]
            msg_id = f"raw_{next_index}"
            next_index += 1
            body = orjson.dumps(event)
            headers = {
                "content-type": "application/json",
                "user-agent": "Switchboard-Webhooks/0.1",
                "traceparent": signing.traceparent(str(event["trace_id"])),
                "x-switchboard-event-id": str(event["id"]),
                "x-switchboard-event-type": str(event["type"]),
                "x-switchboard-attempt": "1",
                **signing.standard_headers(msg_id, int(time.time()), body, [secret]),
            }
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                await resp.text()
                failures += not 200 <= resp.status < 300

    t0 = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    # no cookie jar, as the hub's client (one client for every tenant keeps no cookies)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"sent": count, "failures": failures, "seconds": elapsed, "per_s": count / elapsed}


def main() -> None:
    url, count, concurrency, secret = sys.argv[1:5]
    result = uvloop.run(send_all(url, int(count), int(concurrency), secret))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
