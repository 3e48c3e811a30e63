"""Figures 3 and 4: webhook deliveries/s beside a raw aiohttp client, and accepted → received
latency at a fixed offered rate.

Throughput: N events are stored with a route to a webhook destination while no worker runs
(`SWITCHBOARD_RUN_WORKER=0`); then `switchboard worker` starts and the receiver timestamps every
arrival. The rate is (N - 1) / (last arrival - first arrival), for the hub's worker and for
`raw_sender` alike, so neither includes process start-up.

Internal delivery events are off (`SWITCHBOARD_INTERNAL_EVENTS=""`): the route matches `*`, so
each `switchboard.delivery_succeeded` event would be delivered too and double the traffic.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.config import Config
from benchmarks.events import document
from benchmarks.profiling import Profiler
from switchboard.signing import generate_secret

_NO_INTERNAL = {"SWITCHBOARD_INTERNAL_EVENTS": ""}


def _wire(url: str, key: str, receiver: str, concurrency: int, secret: str) -> None:
    status, body = h.http(
        "POST",
        url + "/v1/destinations",
        {
            "name": "sink",
            "kind": "webhook",
            "config": {"url": receiver + "/hook"},
            "secrets": [secret],
            "concurrency": concurrency,
        },
        key,
    )
    if status != 201:
        raise RuntimeError(f"creating the destination: {status} {body}")
    status, body = h.http(
        "POST",
        url + "/v1/routes",
        {"name": "all", "types": ["*"], "destinations": ["sink"]},
        key,
    )
    if status not in (200, 201):
        raise RuntimeError(f"creating the route: {status} {body}")


def _preload(url: str, key: str, count: int, tag: str, batch: int = 500) -> None:
    for start in range(0, count, batch):
        docs = [document(f"{tag}-{n}", n) for n in range(start, min(count, start + batch))]
        status, body = h.http("POST", url + "/v1/events", docs, key, timeout=60)
        if status != 202 or body["accepted"] != len(docs):
            raise RuntimeError(f"pre-loading events: {status} {str(body)[:300]}")


def _rate(stats: dict[str, Any]) -> float:
    span = stats["last"] - stats["first"]
    return (stats["count"] - 1) / span if span > 0 else 0.0


@dataclass(frozen=True)
class Queue:
    """A database holding `cfg.deliveries` due webhook deliveries to `receiver`, stored by a hub
    that has stopped again. Runs drain copies of it, never it."""

    db: str
    receiver: str


@contextlib.contextmanager
def queue(cfg: Config, work: Path, kind: str, name: str) -> Iterator[Queue]:
    """A `Queue` and its receiver, running for the block."""
    with h.provisioned(kind, work, name) as (db, key), h.receiver(work) as (receiver, _):
        with h.hub(work, db, name=f"hub-{name}", **_NO_INTERNAL) as (url, _):
            _wire(url, key, receiver, cfg.delivery_concurrency, generate_secret())
            _preload(url, key, cfg.deliveries, name)
        yield Queue(db, receiver)


@contextlib.contextmanager
def _queued(
    cfg: Config, work: Path, kind: str, name: str, made: Queue | None
) -> Iterator[tuple[str, str]]:
    """A fresh copy of `made`'s database (of one made here when None) and its receiver, reset;
    yields (database URL, receiver URL). Copying the queue instead of filling one per run saves
    a hub start and `cfg.deliveries` events over HTTP for each run of the hub and the floor."""
    with contextlib.ExitStack() as stack:
        if made is None:
            made = stack.enter_context(queue(cfg, work, kind, name + "_queue"))
        db = stack.enter_context(h.copied(kind, work, name, made.db))
        h.http("POST", made.receiver + "/_reset")
        yield db, made.receiver


def hub_deliveries(
    cfg: Config,
    work: Path,
    kind: str,
    run: int,
    profiler: Profiler | None = None,
    made: Queue | None = None,
) -> dict[str, Any]:
    n = cfg.deliveries
    name = f"deliver_{kind}_{run}"
    with _queued(cfg, work, kind, name, made) as (db, receiver):
        env = h.hub_env(db, 0, **_NO_INTERNAL)
        with h.running(f"worker-{name}", [str(h.BIN / "switchboard"), "worker"], work, env) as w:
            if profiler is not None:  # from the first arrival: start-up is not the hot path
                h.wait_count(receiver, 1, within=60)
                profiler.start(w.pid, f"deliver-{kind}", 5)
            stats = h.wait_count(receiver, n, within=300)
            if profiler is not None:
                profiler.stop()
    return {"value": _rate(stats), "receiver": stats}


def bare_deliveries(
    cfg: Config, work: Path, kind: str, run: int, made: Queue | None = None
) -> dict[str, Any]:
    """The same queue drained by `bare_worker`: claim, send, record, nothing else."""
    n = cfg.deliveries
    with _queued(cfg, work, kind, f"bare_{kind}_{run}", made) as (db, receiver):
        args = (db, "bench", str(n), str(cfg.delivery_concurrency))
        worker = h.run_module("benchmarks.bare_worker", *args, timeout=330)
        stats = h.wait_count(receiver, n, within=30)
    if worker["failures"]:
        raise RuntimeError(f"bare worker: {worker}")
    return {"value": _rate(stats), "receiver": stats, "worker": worker}


def raw_deliveries(cfg: Config, work: Path, run: int) -> dict[str, Any]:
    n = cfg.deliveries
    with h.receiver(work) as (receiver, _):
        args = (receiver + "/hook", str(n), str(cfg.delivery_concurrency), generate_secret())
        sender = h.run_module("benchmarks.raw_sender", *args, timeout=300)
        stats = h.wait_count(receiver, n, within=30)
    if sender["failures"]:
        raise RuntimeError(f"raw sender: {sender}")
    return {"value": _rate(stats), "receiver": stats, "sender": sender}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(cfg: Config, work: Path, kind: str, run: int, split: bool = False) -> dict[str, Any]:
    """Open-loop ingest at `latency_rate` events/s into a hub that runs its worker, or with
    `split` into `switchboard serve` with `SWITCHBOARD_RUN_WORKER=0` beside one `switchboard
    worker` process (the scale-out topology: each process gets its own core)."""
    name = f"latency_{kind}{'_split' if split else ''}_{run}"
    acks_file = work / f"{name}-acks.json"
    with contextlib.ExitStack() as stack:
        db, key = stack.enter_context(h.provisioned(kind, work, name))
        receiver, _ = stack.enter_context(h.receiver(work))
        env = {**_NO_INTERNAL, "SWITCHBOARD_RUN_WORKER": "0" if split else "1"}
        url, _ = stack.enter_context(h.hub(work, db, name=f"hub-{name}", **env))
        if split:
            worker_env = h.hub_env(db, 0, **_NO_INTERNAL)
            argv = [str(h.BIN / "switchboard"), "worker"]
            stack.enter_context(h.running(f"worker-{name}", argv, work, worker_env))
        _wire(url, key, receiver, cfg.delivery_concurrency, generate_secret())
        _preload(url, key, 200, f"warm{run}", batch=1)  # warm caches and connections
        h.wait_count(receiver, 200, within=30)
        h.http("POST", receiver + "/_reset?keep_bodies=1")
        summary = h.run_module(
            "benchmarks.open_loop",
            *(url, key, str(cfg.latency_rate), str(cfg.latency_seconds), f"l{run}", str(acks_file)),
            timeout=cfg.latency_seconds + 90,
        )
        acks: dict[str, float] = json.loads(acks_file.read_text())["acks"]
        h.wait_count(receiver, len(acks), within=60)
        time.sleep(0.2)
        _, arrivals = h.http("GET", receiver + "/_arrivals")
    accepted_to_received: list[float] = []
    sent_to_received: list[float] = []
    for a in arrivals.values():
        ack = acks.get(a["event_id"])
        if ack is not None:
            accepted_to_received.append((a["at"] - ack) * 1000)
        if a["sent_at"] is not None:
            sent_to_received.append((a["at"] - a["sent_at"]) * 1000)
    if summary["errors"] or not accepted_to_received:
        raise RuntimeError(f"latency run: {summary}")
    return {
        "p50": _percentile(accepted_to_received, 0.50),
        "p99": _percentile(accepted_to_received, 0.99),
        "sent_p50": _percentile(sent_to_received, 0.50),
        "sent_p99": _percentile(sent_to_received, 0.99),
        "max": max(accepted_to_received),
        "events": len(accepted_to_received),
        "generator": summary,
    }
