"""An open-loop load generator for the latency figure: POSTs one event per request on a fixed
schedule (request i leaves at t0 + i/rate, whether or not earlier ones were answered), each event
carrying its send time in ``data.sent_at``; records when each was acknowledged (202).

Run: ``python -m benchmarks.open_loop URL KEY RATE SECONDS TAG OUT.json``; writes
``{"sent", "ok", "errors", "late", "unanswered", "acks": {event_id: ack time}}`` to OUT.json and
prints a summary line. Bounded: RATE x SECONDS requests, then it waits at most 30 s for answers;
requests still unanswered then are cancelled and counted (a server that cannot keep up with RATE
falls further behind with every second, so its backlog says so).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import orjson
import uvloop

from benchmarks.events import document


async def generate(url: str, key: str, rate: float, seconds: float, tag: str) -> dict[str, object]:
    total = int(rate * seconds)
    acks: dict[str, float] = {}
    errors: list[str] = []
    late = 0  # requests that left more than 5 ms after their slot (the generator fell behind)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> None:
            event_id = f"{tag}-{i}"
            doc = document(event_id, i)
            doc["data"]["sent_at"] = time.time()
            try:
                async with session.post(
                    url + "/v1/events",
                    data=orjson.dumps(doc),
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    await resp.read()
                    if resp.status == 202:
                        acks[event_id] = time.time()
                    else:
                        errors.append(f"HTTP {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(type(exc).__name__)

        tasks = []
        t0 = time.perf_counter()
        for i in range(total):
            slot = t0 + i / rate
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            tasks.append(asyncio.create_task(one(i)))
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            errors.insert(0, f"{len(pending)} unanswered 30 s after the last was sent")
    return {
        "sent": total,
        "ok": len(acks),
        "errors": errors[:20],
        "late": late,
        "unanswered": len(pending),
        "acks": acks,
    }


def main() -> None:
    url, key, rate, seconds, tag, out = sys.argv[1:7]
    result = uvloop.run(generate(url, key, float(rate), float(seconds), tag))
    with open(out, "wb") as f:
        f.write(orjson.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k != "acks"}))


if __name__ == "__main__":
    main()
