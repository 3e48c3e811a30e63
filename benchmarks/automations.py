"""Automation figures, in one process and one run (ratios, not absolute goals):

- timers: N due runs fired by the engine (claim, advance, save) against a raw
  claim-and-update of the same rows (the claim statement, then one UPDATE per row), three
  rounds of each in turns on the same rows; the round with the median ratio;
- ingest: single-event ingests while W runs wait on the ingested type (each event runs its
  wake-up statement in the group commit) against the same ingests in a tenant without
  automations, in turns (five waiting rounds, each between two plain ones, against their
  mean); the round with the median ratio;
- lateness: timers coming due at 1,000/s for 5 s, fired by the engine's own loop on the wall
  clock: how late each fired after its time (p50, p99, max);
- first send: triggers ingested at 500/s for 5 s, each starting a run whose first step sends to
  a real HTTP receiver on 127.0.0.1 (the delivery worker running): the time from the ingest call
  to the receiver's request (p50, p99).

Run: ``python -m benchmarks.automations DATABASE_URL [TIMERS] [WAITING] [EVENTS] [SECONDS]``
(SECONDS: of due timers, and of triggers; 5 by default); prints JSON lines. The database should
be fresh (a new SQLite file, or an empty PostgreSQL database). `make bench` runs it once per run
and store on a fresh database (benchmarks/run.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from switchboard.automation_engine import FakeClock, SystemClock
from switchboard.config import Settings
from switchboard.envelope import new_id, now_us
from switchboard.hub import Hub
from switchboard.store import Store, Tenant
from switchboard.store.queries import dumps

TIMER = {"name": "timer", "on": "bench.timer", "steps": [{"wait": "1s"}]}


def waiter(awaited: str, match: str) -> dict[str, Any]:
    """The automation `waiter`: started by `bench.start`, it waits up to 30 days for an event of
    type `awaited` with the trigger's value at `match`."""
    return {
        "name": "waiter",
        "on": "bench.start",
        "steps": [{"wait_for": {"type": awaited, "match": match, "within": "30d"}}],
    }


WAITER = waiter("bench.reply", "data.k")
_RUN = (
    "INSERT INTO automation_runs (id, tenant_id, automation, version, trigger_seq, status, "
    "reason, state, dedupe_key, rev, due_us, created_us, updated_us, ended_us) "
    "VALUES (?, ?, ?, 1, ?, 'running', NULL, ?j, NULL, 0, ?, ?, ?, NULL)"
)
_WAIT = (
    "INSERT INTO automation_waits (run_id, slot, tenant_id, type, match_key) "
    "VALUES (?, 'step', ?, ?, ?)"
)


async def _apply(hub: Hub, tenant: str, spec: dict[str, Any]) -> None:
    await hub.automations.put(tenant, spec["name"], spec, now_us())
    hub.automation_cache.forget(tenant)


async def _trigger_seq(hub: Hub, tenant: str, etype: str) -> int:
    t = await hub.store.get_tenant(tenant)
    assert t is not None
    await hub.ingestor.ingest([{"id": "trigger", "type": etype, "data": {"k": -1}}], t, "bench")
    rows = await hub.store.fetch(
        "SELECT seq FROM events WHERE tenant_id = ? AND id = 'trigger'", (tenant,)
    )
    return int(rows[0][0])


async def _due_runs(hub: Hub, tenant: str, name: str, seq: int, n: int, state: Any) -> list[str]:
    ids = [new_id() for _ in range(n)]
    past = now_us() - 10_000_000
    rows = [(i, tenant, name, seq, dumps(state), past, past, past) for i in ids]
    for start in range(0, n, 5000):
        await hub.store.batch_many([(_RUN, rows[start : start + 5000])])
    return ids


async def waiting_runs(
    store: Store, tenant: str, seq: int, n: int, awaited: str, key: Callable[[int], str]
) -> None:
    """N runs of `waiter` (triggered by the event `seq`) waiting on `awaited`, one run and one
    wait each as the engine writes them, due when their 30 days are up; wait k's key is key(k).
    Written with their due time: a bulk UPDATE after would leave as many dead rows."""
    later = now_us() + 30 * 86_400_000_000
    state = dumps({"pc": 0, "deadline_us": later, "matched": {}, "history": []})
    created = now_us()
    ids = [new_id() for _ in range(n)]
    for start in range(0, n, 5000):
        chunk = ids[start : start + 5000]
        runs: list[Sequence[Any]] = [
            (i, tenant, "waiter", seq, state, later, created, created) for i in chunk
        ]
        waits: list[Sequence[Any]] = [
            (i, tenant, awaited, key(start + k)) for k, i in enumerate(chunk)
        ]
        await store.batch_many([(_RUN, runs), (_WAIT, waits)])


async def timers(hub: Hub, n: int, rounds: int = 3) -> dict[str, Any]:
    """The engine against the raw claim-and-update on the same rows, in turns (`rounds` of
    each, the rows made due again before each), so a machine whose load drifts hits both alike;
    the figure is the round with the median ratio."""
    await hub.store.create_tenant(Tenant("timers", "timers", "accept", now_us()))
    seq = await _trigger_seq(hub, "timers", "bench.timer")  # before the automation: no run
    await _apply(hub, "timers", TIMER)
    state = {"pc": 0, "until_us": now_us() - 5_000_000, "matched": {}, "history": []}
    await _due_runs(hub, "timers", "timer", seq, n, state)
    engine = hub.engine
    engine.batch = 500
    due_again = (
        "UPDATE automation_runs SET status = 'running', due_us = ?, ended_us = NULL, state = ?j "
        "WHERE tenant_id = 'timers'"
    )
    measured = []
    for round_ in range(rounds):
        if round_:  # every run due again, at its wait, as written
            await hub.store.execute(due_again, (now_us() - 1_000_000, dumps(state)))
        engine.clock = FakeClock(now_us())
        t0 = time.perf_counter()
        fired = 0
        while claimed := await engine.tick():
            fired += claimed
        engine_s = time.perf_counter() - t0
        # the raw baseline on the same rows: due again, claimed, one UPDATE each
        await hub.store.execute(due_again, (now_us() - 1_000_000, dumps(state)))
        t0 = time.perf_counter()
        raw = 0
        while claimed_rows := await hub.automations.claim(now_us(), 60_000_000, 500):
            await hub.store.batch(
                [
                    (
                        "UPDATE automation_runs SET status = 'completed', due_us = NULL, "
                        "rev = rev + 1 WHERE id = ? AND rev = ?",
                        (run_id, rev),
                    )
                    for run_id, rev in claimed_rows
                ]
            )
            raw += len(claimed_rows)
        raw_s = time.perf_counter() - t0
        if fired != n or raw != n:
            raise RuntimeError(f"fired {fired} and {raw} of {n} due runs")
        measured.append((fired / engine_s / (raw / raw_s), fired / engine_s, raw / raw_s))
    ratio, engine_per_s, raw_per_s = sorted(measured)[len(measured) // 2]
    return {
        "figure": "timers",
        "timers": n,
        "rounds": [round(r, 3) for r, _, _ in measured],
        "engine_per_s": round(engine_per_s),
        "raw_claim_update_per_s": round(raw_per_s),
        "ratio": round(ratio, 3),
    }


async def _ingest_rate(
    hub: Hub, tenant: str, events: int, offset: int, concurrency: int = 64
) -> float:
    t = await hub.store.get_tenant(tenant)
    assert t is not None
    queue = iter(range(events))

    async def client() -> None:
        for n in queue:
            await hub.ingestor.ingest(
                [{"id": f"r{offset}-{n}", "type": "bench.reply", "data": {"k": n + 10_000_000}}],
                t,
                "b",
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return events / (time.perf_counter() - t0)


async def ingest(hub: Hub, waiting: int, events: int, rounds: int = 5) -> dict[str, Any]:
    for tenant in ("plain", "waiting"):
        await hub.store.create_tenant(Tenant(tenant, tenant, "accept", now_us()))
    seq = await _trigger_seq(hub, "waiting", "bench.start")
    await _apply(hub, "waiting", WAITER)
    await waiting_runs(hub.store, "waiting", seq, waiting, "bench.reply", lambda k: f"[{k}]")
    # PostgreSQL: the bulk insert's vacuum and statistics now, as a database that gained its
    # waiting runs over time has them, not by autovacuum in the middle of a round (~0.4 s)
    if hub.store.dialect == "postgres":
        await hub.store.execute("VACUUM ANALYZE automation_runs, automation_waits")
    for tenant in ("plain", "waiting"):  # warm-up: caches loaded, statements prepared
        await _ingest_rate(hub, tenant, min(500, events), offset=-1)
    # in turns, plain first and last: each waiting round against the mean of the plain rounds
    # on either side of it, so a drift (the load, or the database growing round by round)
    # hits both sides alike; the figure is the round with the median ratio
    plains = [await _ingest_rate(hub, "plain", events, offset=0)]
    measured = []
    for round_ in range(rounds):
        with_waits = await _ingest_rate(hub, "waiting", events, offset=round_)
        plains.append(await _ingest_rate(hub, "plain", events, offset=round_ + 1))
        plain = (plains[-2] + plains[-1]) / 2
        measured.append((with_waits / plain, plain, with_waits))
    ratio, plain, with_waits = sorted(measured)[len(measured) // 2]
    return {
        "figure": "ingest_with_waiting_runs",
        "waiting_runs": waiting,
        "events": events,
        "rounds": [round(r, 3) for r, _, _ in measured],
        "plain_per_s": round(plain),
        "with_waiting_per_s": round(with_waits),
        "ratio": round(ratio, 3),
    }


def _percentiles(values_us: list[int]) -> dict[str, float]:
    ordered = sorted(values_us)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000, 1)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] / 1000, 1)}


async def lateness(hub: Hub, rate: int = 1000, seconds: float = 5.0) -> dict[str, Any]:
    """Timers due at `rate` per second, fired by `Engine.run` on the wall clock."""
    await hub.store.create_tenant(Tenant("late", "late", "accept", now_us()))
    seq = await _trigger_seq(hub, "late", "bench.timer")
    await _apply(hub, "late", {**TIMER, "name": "late-timer"})
    n = int(rate * seconds)
    start = now_us() + 2_000_000  # after the rows are written
    rows = []
    for i in range(n):
        due = start + i * 1_000_000 // rate
        state = {"pc": 0, "until_us": due, "matched": {}, "history": []}
        rows.append((new_id(), "late", "late-timer", seq, dumps(state), due, due, due))
    for at in range(0, n, 5000):
        await hub.store.batch_many([(_RUN, rows[at : at + 5000])])
    engine = hub.engine
    engine.clock = SystemClock()
    engine.batch = 500
    task = asyncio.create_task(engine.run())
    try:
        while True:
            left = await hub.store.fetch(
                "SELECT count(*) FROM automation_runs WHERE tenant_id = 'late' "
                "AND status = 'running'",
                (),
            )
            if left[0][0] == 0:
                break
            await asyncio.sleep(0.2)
    finally:
        await engine.stop()
        await task
        engine._stopping = False
    created = await hub.store.fetch(
        "SELECT created_us, state FROM automation_runs WHERE tenant_id = 'late'", ()
    )
    late = []
    for due, raw in created:
        state = json.loads(raw) if isinstance(raw, str) else raw
        late.append(max(0, state["history"][0]["at_us"] - due))
    return {"figure": "timer_lateness", "timers": n, "due_per_s": rate, **_percentiles(late)}


class _Receiver:
    """An aiohttp receiver on 127.0.0.1 that timestamps each request by its event id."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        self.expected = 0
        self.everything = asyncio.Event()
        self.port = 0
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            self.received.setdefault(body["id"], now_us())
            if len(self.received) >= self.expected:
                self.everything.set()
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._runner.cleanup()


class _Claims:
    """When the worker's claims return each delivery (delivery id → µs), and how many claim
    statements ran (how many came back empty): the worker's own claim, timed around."""

    def __init__(self, hub: Hub) -> None:
        assert hub.worker is not None
        deliveries = hub.worker.deliveries
        claim = deliveries.claim
        self.at: dict[str, int] = {}
        self.calls = self.empty = 0
        self.took: list[int] = []  # each claim statement's time, µs

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = now_us()
            got = await claim(*args, **kwargs)
            t = now_us()
            self.took.append(t - t0)
            self.calls += 1
            self.empty += not got
            for delivery, _ in got:
                self.at[delivery.id] = t
            return got

        deliveries.claim = timed  # type: ignore[method-assign]


async def _first_send_setup(hub: Hub, receiver: _Receiver, concurrency: int) -> None:
    """Tenant `first`: an automation whose first step sends to the receiver; tenant `routed`:
    a plain route of the same type to the same receiver."""
    from switchboard.channels import Destination

    url = f"http://127.0.0.1:{receiver.port}/hook"
    for tenant in ("first", "routed"):
        await hub.store.create_tenant(Tenant(tenant, tenant, "accept", now_us()))
        await hub.deliveries.put_destination(
            Destination(
                f"dst_{tenant}", tenant, "hook", "webhook", {"url": url}, concurrency=concurrency
            ),
            now_us(),
        )
    await _apply(
        hub, "first", {"name": "go", "on": "bench.go", "steps": [{"send": {"destination": "hook"}}]}
    )
    await hub.deliveries.put_route(
        "routed",
        "rt_routed",
        "all",
        {"name": "all", "types": ["bench.go"], "destination_ids": ["dst_routed"]},
        now_us(),
    )
    hub.routes.forget("routed")


async def _paced(
    hub: Hub,
    tenant_id: str,
    prefix: str,
    rate: int,
    seconds: float,
    receiver: _Receiver,
    claimed: _Claims,
) -> dict[str, Any]:
    """Ingest `rate` triggers a second for `seconds` (the i-th at i / rate s, each its own call)
    and wait for the receiver; the pieces of each trigger's wait, p50/p99 in ms."""
    tenant = await hub.store.get_tenant(tenant_id)
    assert tenant is not None and hub.worker is not None
    n = int(rate * seconds)
    receiver.received.clear()
    receiver.expected = n
    receiver.everything.clear()
    sent: dict[str, int] = {}
    acked: dict[str, int] = {}
    cpu0 = time.process_time()
    calls0, empty0 = claimed.calls, claimed.empty
    claimed.took.clear()
    t0 = time.perf_counter()
    lag: list[int] = []  # how late the client's loop started each call (the machine, not us)

    async def one(i: int, due: float) -> None:
        event_id = f"{prefix}-{i}"
        sent[event_id] = now_us()
        lag.append(int(max(0.0, time.perf_counter() - due) * 1_000_000))
        await hub.ingestor.ingest([{"id": event_id, "type": "bench.go", "data": {}}], tenant, "b")
        acked[event_id] = now_us()

    tasks = []
    for i in range(n):  # paced: the i-th trigger at i / rate seconds
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.everything.wait(), 60)
    received = dict(receiver.received)
    cpu_us = (time.process_time() - cpu0) * 1_000_000 / n
    calls, empty = claimed.calls - calls0, claimed.empty - empty0
    claims = claimed.at
    await hub.worker.deliveries.writer.flush()
    rows = await hub.store.fetch(
        "SELECT e.id, d.id, d.created_us, a.started_us FROM deliveries d "
        "JOIN events e ON e.seq = d.event_seq "
        "LEFT JOIN attempts a ON a.delivery_id = d.id AND a.n = 1 "
        "WHERE d.tenant_id = ? AND e.id LIKE ?",
        (tenant_id, prefix + "-%"),
    )
    pieces: dict[str, list[int]] = {
        "call_to_ack": [],
        "ack_to_claimed": [],
        "claimed_to_send": [],
        "send_to_received": [],
    }
    for event_id, delivery_id, _created, started in rows:
        if event_id not in received or delivery_id not in claims or started is None:
            continue
        pieces["call_to_ack"].append(acked[event_id] - sent[event_id])
        pieces["ack_to_claimed"].append(max(0, claims[delivery_id] - acked[event_id]))
        pieces["claimed_to_send"].append(started - claims[delivery_id])
        pieces["send_to_received"].append(received[event_id] - started)
    waits = [received[k] - sent[k] for k in sent if k in received]
    out: dict[str, Any] = {
        "triggers": n,
        "per_s": rate,
        "received": len(received),
        **_percentiles(waits),
        "client_lag_p99_ms": _percentiles(lag)["p99_ms"],
        # the process's CPU (every thread: client, hub, receiver) per trigger
        "cpu_us_per_trigger": round(cpu_us),
        "claims": calls,  # claim statements the worker ran in the round
        "empty_claims": empty,
        "claim_statement_ms": [
            _percentiles(claimed.took)["p50_ms"],
            _percentiles(claimed.took)["p99_ms"],
        ],
    }
    for name, values in pieces.items():
        if values:
            got = _percentiles(values)
            out[name + "_ms"] = [got["p50_ms"], got["p99_ms"]]
    return out


async def first_send(
    hub: Hub, rate: int = 500, seconds: float = 5.0, rounds: int = 1, concurrency: int = 10
) -> list[dict[str, Any]]:
    """Trigger → first send received, with the delivery worker and the engine running, and in
    turns with it the same ingest → received through a plain route (same receiver, same rate):
    if both are slow the time is the delivery worker's, if only the first, the automation's.
    Each figure is split into its pieces: the ingest call until it returns (the commit),
    until the worker's claim returns the delivery, until its send starts, until received."""
    receiver = _Receiver()
    await receiver.start()
    try:
        await _first_send_setup(hub, receiver, concurrency)
        claims = _Claims(hub)
        out = []
        for round_ in range(rounds):
            for figure, tenant in (("trigger_to_first_send", "first"), ("route", "routed")):
                got = await _paced(
                    hub, tenant, f"{tenant}{round_}", rate, seconds, receiver, claims
                )
                out.append(
                    {"figure": figure, "round": round_ + 1, "concurrency": concurrency, **got}
                )
                await asyncio.sleep(0.5)  # the engine completes the runs; the writer drains
        return out
    finally:
        await receiver.stop()


async def main(url: str, n_timers: int, waiting: int, events: int, seconds: float) -> None:
    settings = _settings(url)
    hub = Hub(settings)
    await hub.open(worker=False)
    try:
        # each line says how long its part took, set-up (the due or waiting runs) included
        for part in (
            lambda: timers(hub, n_timers),
            lambda: ingest(hub, waiting, events),
            lambda: lateness(hub, seconds=seconds),
        ):
            t0 = time.perf_counter()
            line = await part()
            line["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(line), flush=True)
    finally:
        await hub.close()
    await first_sends(settings, 1, seconds)


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url, key_rate=0, tenant_rate=0, internal_events="", egress_allow="127.0.0.0/8"
    )


async def first_sends(
    settings: Settings, rounds: int, seconds: float, concurrency: int = 10
) -> None:
    hub = Hub(settings)
    await hub.open(worker=True)  # the delivery worker and the engine, as `switchboard serve`
    try:
        got = await first_send(hub, seconds=seconds, rounds=rounds, concurrency=concurrency)
        for line in got:
            print(json.dumps(line), flush=True)
    finally:
        await hub.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) > 1 and args[1] == "--first-send":
        # URL --first-send [ROUNDS] [SECONDS] [CONCURRENCY (the destination's; 10 by default)]
        asyncio.run(
            first_sends(
                _settings(args[0]),
                int(args[2]) if len(args) > 2 else 3,
                float(args[3]) if len(args) > 3 else 5.0,
                int(args[4]) if len(args) > 4 else 10,
            )
        )
        sys.exit(0)
    asyncio.run(
        main(
            args[0],
            int(args[1]) if len(args) > 1 else 20_000,
            int(args[2]) if len(args) > 2 else 100_000,
            int(args[3]) if len(args) > 3 else 5_000,
            float(args[4]) if len(args) > 4 else 5.0,
        )
    )
