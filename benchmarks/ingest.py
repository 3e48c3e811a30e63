"""Figures 1 and 2: ingest throughput over HTTP (wrk) beside its ceilings.

1 event per request: the hub (`switchboard serve`, a fresh database per run) vs the ceiling app
(the same uvicorn, answering 202 after parsing the same body). 100 events per request: the hub vs
`raw_insert` writing the same rows with the store's own SQL into a fresh database.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.config import Config
from benchmarks.profiling import Profiler


def _checked(summary: dict[str, Any], what: str) -> float:
    if summary["errors"]:
        raise RuntimeError(f"{what}: wrk saw errors: {summary}")
    if summary["requests"] == 0:
        raise RuntimeError(f"{what}: wrk completed no request")
    return float(summary["events_per_s"])


def _stored_events(url: str, key: str) -> int:
    _, body = h.http("GET", url + "/health/detailed", key=key)
    return int(body["store"]["counts"]["events"])


def hub_ingest(
    cfg: Config,
    work: Path,
    kind: str,
    run: int,
    batch: int,
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    """One wrk run against a hub on a fresh database; events/s and the wrk summary."""
    name = f"ingest{batch}_{kind}_{run}"
    with h.provisioned(kind, work, name) as (db, key):
        admin = h.admin_key(db)  # counts stored events through /health/detailed
        with h.hub(work, db, name=f"hub-{name}") as (url, proc):
            conns = cfg.connections if batch == 1 else cfg.batch_connections
            h.run_wrk(url, key, batch=batch, connections=conns, duration=1, tag=f"warm{run}")
            stored_before = _stored_events(url, admin)
            if profiler is not None:
                profiler.start(proc.pid, f"ingest{batch}-{kind}", cfg.duration)
            summary = h.run_wrk(
                url, key, batch=batch, connections=conns, duration=cfg.duration, tag=f"r{run}"
            )
            if profiler is not None:
                profiler.stop()
            rate = _checked(summary, name)
            stored = _stored_events(url, admin) - stored_before
            # wrk counts answered requests; requests cut off at its deadline may be stored too
            if stored < summary["events"]:
                raise RuntimeError(
                    f"{name}: wrk got {summary['events']} events acknowledged, "
                    f"the store holds {stored}"
                )
    return {"value": rate, "wrk": summary}


def ceiling_ingest(cfg: Config, work: Path, run: int, batch: int) -> dict[str, Any]:
    with h.ceiling_app(work) as (url, _):
        conns = cfg.connections if batch == 1 else cfg.batch_connections
        h.run_wrk(url, "x", batch=batch, connections=conns, duration=1, tag=f"warm{run}")
        summary = h.run_wrk(
            url, "x", batch=batch, connections=conns, duration=cfg.duration, tag=f"c{run}"
        )
    return {"value": _checked(summary, "ceiling"), "wrk": summary}


def bare_ingest(cfg: Config, work: Path, kind: str, run: int) -> dict[str, Any]:
    """`bare_ingest` (parse, envelope, durable append; nothing else) on a fresh database, driven
    like the hub: the durable floor of figure 1."""
    name = f"bare_{kind}_{run}"
    with h.provisioned(kind, work, name) as (db, _):
        port = h.free_port()
        argv = [sys.executable, "-m", "benchmarks.bare_ingest", db, "bench", str(port)]
        url = f"http://127.0.0.1:{port}"
        with h.running(name, argv, work, health=url + "/health"):
            h.run_wrk(url, "x", batch=1, connections=cfg.connections, duration=1, tag=f"w{run}")
            before = h.http("GET", url + "/_count")[1]["events"]
            summary = h.run_wrk(
                url, "x", batch=1, connections=cfg.connections, duration=cfg.duration, tag=f"b{run}"
            )
            stored = h.http("GET", url + "/_count")[1]["events"] - before
        rate = _checked(summary, name)
        if stored < summary["events"]:
            raise RuntimeError(f"{name}: {summary['events']} acknowledged, {stored} stored")
    return {"value": rate, "wrk": summary}


def raw_insert(
    work: Path, db: str, tenant: str, rows: int, batch: int, tag: str, seconds: float
) -> dict[str, Any]:
    args = (db, tenant, str(rows), str(batch), tag, str(seconds))
    return h.run_module("benchmarks.raw_insert", *args, timeout=seconds + 600)


def raw_batched(cfg: Config, work: Path, kind: str, run: int) -> dict[str, Any]:
    """The ceiling of figure 2: the same rows, the same schema, a fresh database, no HTTP."""
    with h.provisioned(kind, work, f"raw_{kind}_{run}") as (db, _):
        result = raw_insert(work, db, "bench", cfg.raw_rows, 1000, f"raw{run}", cfg.duration)
    return {"value": result["rows_per_s"], "raw": result}
