"""What an operator looks at: `/metrics` (Prometheus), `/status` (each component, 200 or 503),
one trace's timeline and delivery statistics over a window."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.common import JSONResponse, hub, principal, query_time
from switchboard.auth import Principal, within_constraints
from switchboard.envelope import format_us, now_us
from switchboard.errors import BadRequest, NotFound
from switchboard.hub import Hub
from switchboard.metrics import CONTENT_TYPE, Snapshot, gauges
from switchboard.store import Scope
from switchboard.store.observe import Trace

_WINDOW_MAX_US = 31 * 86_400_000_000  # delivery statistics cover at most 31 days
TRACE_ID_MAX = 255


async def _operator(request: Request) -> None:
    """`/metrics` and `/status` span every tenant: an admin key, or the metrics token."""
    token = hub(request).settings.metrics_token
    header = request.headers.get("authorization", "")
    if (
        token
        and header.startswith("Bearer ")
        and hmac.compare_digest(header[7:].strip().encode(), token.encode())
    ):
        return
    await principal(request, Scope.ADMIN)


async def snapshot(h: Hub) -> Snapshot:
    s = h.settings
    return await h.observe.snapshot(
        now_us(), int(s.alert_window * 1e6), int(3 * s.heartbeat_seconds * 1e6)
    )


async def metrics_page(request: Request) -> Response:
    await _operator(request)
    h = hub(request)
    snap = await snapshot(h)
    body = h.metrics.exposition(gauges(snap, h.metrics.tenant_labels))
    return Response(body, media_type=CONTENT_TYPE)


def components(h: Hub, snap: Snapshot | None, error: str | None) -> dict[str, dict[str, Any]]:
    """Each component's state for `/status`; `ok` False makes the answer 503."""
    if snap is None:
        return {"store": {"ok": False, "error": error}}
    s = h.settings
    age = snap.backlog_age()
    growth = sum(snap.dead_recent.values())
    return {
        "store": {"ok": True, "backend": h.store.backend},
        "workers": {"ok": snap.workers_alive > 0, "alive": snap.workers_alive},
        "backlog": {
            "ok": age <= s.status_max_backlog_age,
            "due": sum(snap.due.values()),
            "oldest_due_seconds": round(age, 3),
            "max_age_seconds": s.status_max_backlog_age,
        },
        "dlq": {
            "ok": growth < s.alert_dlq_growth,
            "size": sum(snap.dead.values()),
            "growth": growth,
            "window_seconds": s.alert_window,
        },
        # a disabled destination is the tenant's to fix: reported, never a 503
        "destinations": {"ok": True, "disabled": sum(snap.disabled.values())},
        "breakers": {"ok": True, "open": snap.open_breakers},
    }


async def status(request: Request) -> Response:
    await _operator(request)
    h = hub(request)
    snap: Snapshot | None = None
    error = None
    try:
        snap = await snapshot(h)
    except Exception as exc:  # any store failure is the store component's state
        error = f"{type(exc).__name__}: {exc}"[:300]
    parts = components(h, snap, error)
    ok = all(p["ok"] for p in parts.values())
    return JSONResponse(
        {"status": "ok" if ok else "failing", "components": parts}, status_code=200 if ok else 503
    )


def narrowed(t: Trace, p: Principal) -> Trace:
    """The part of a trace a key may see: the events its constraints match, and the
    deliveries, attempts and runs of those events (the whole trace for a key without)."""
    if p.constraint is None:
        return t
    events = [e for e in t.events if within_constraints(p, e)]
    seqs = {e.seq for e in events}
    deliveries = [d for d in t.deliveries if d.event_seq in seqs]
    ids = {d.id for d in deliveries}
    return Trace(
        events,
        deliveries,
        [a for a in t.attempts if a.delivery_id in ids],
        [r for r in t.runs if r["trigger_seq"] in seqs],
        t.truncated,
    )


def timeline(t: Trace) -> list[dict[str, Any]]:
    """The trace's events, deliveries, attempts and automation runs as one list in time order,
    each item naming its kind (the answer of `GET /v1/traces/{trace_id}`, and the dashboard's
    trace page)."""
    by_seq = {e.seq: e for e in t.events}
    by_id = {d.id: d for d in t.deliveries}
    items: list[tuple[int, int, dict[str, Any]]] = []
    for e in t.events:
        items.append(
            (
                e.received_us,
                0,
                {"kind": "event", "at": format_us(e.received_us), "event": e.to_json()},
            )
        )
    for d in t.deliveries:
        items.append(
            (
                d.created_us,
                1,
                {
                    "kind": "delivery",
                    "at": format_us(d.created_us),
                    "event_id": by_seq[d.event_seq].id,
                    "delivery": d.to_json(),
                },
            )
        )
    for a in t.attempts:
        d = by_id[a.delivery_id]
        items.append(
            (
                a.started_us,
                2,
                {
                    "kind": "attempt",
                    "at": format_us(a.started_us),
                    "delivery_id": a.delivery_id,
                    "destination_id": d.destination_id,
                    "attempt": a.to_json(),
                },
            )
        )
    for r in t.runs:
        run = {k: v for k, v in r.items() if k not in ("created_us", "ended_us", "trigger_seq")}
        run["event_id"] = by_seq[r["trigger_seq"]].id
        run["ended_at"] = format_us(r["ended_us"]) if r["ended_us"] is not None else None
        items.append(
            (
                r["created_us"],
                3,
                {"kind": "automation_run", "at": format_us(r["created_us"]), "run": run},
            )
        )
    items.sort(key=lambda i: (i[0], i[1]))
    return [i[2] for i in items]


def check_trace_id(trace_id: str) -> str:
    if len(trace_id) > TRACE_ID_MAX:
        raise BadRequest(f"path parameter 'trace_id' is longer than {TRACE_ID_MAX} characters")
    return trace_id


async def trace(request: Request) -> Response:
    """GET /v1/traces/{trace_id}: the trace's events, deliveries, attempts and automation runs
    as one timeline in time order (each item names its kind), those a key with constraints
    may see."""
    p = await principal(request, Scope.READ)
    trace_id = check_trace_id(request.path_params["trace_id"])
    t = narrowed(await hub(request).observe.trace(p.tenant(), trace_id), p)
    if not t.events:
        raise NotFound(f"no event with trace_id {trace_id!r} in this tenant")
    return JSONResponse(
        {
            "trace_id": trace_id,
            "events": len(t.events),
            "deliveries": len(t.deliveries),
            "attempts": len(t.attempts),
            "automation_runs": len(t.runs),
            "truncated": t.truncated,
            "timeline": timeline(t),
        }
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-1) by the nearest-rank method; the list is sorted."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def delivery_stats(rows: list[Any]) -> list[dict[str, Any]]:
    """Per (destination, event type): attempts, successes, success rate, retries (attempts
    after a delivery's first), deliveries, p50/p95/mean latency in milliseconds."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        groups.setdefault((r.destination_id, r.type), []).append(r)
    out = []
    for (dest, etype), rs in sorted(groups.items()):
        lat = sorted(r.latency_ms for r in rs)
        ok = sum(1 for r in rs if r.ok)
        out.append(
            {
                "destination_id": dest,
                "type": etype,
                "deliveries": len({r.delivery_id for r in rs}),
                "attempts": len(rs),
                "succeeded": ok,
                "failed": len(rs) - ok,
                "success_rate": round(ok / len(rs), 4),
                "retries": sum(1 for r in rs if r.n > 1),
                "latency_ms": {
                    "p50": round(percentile(lat, 0.5), 2),
                    "p95": round(percentile(lat, 0.95), 2),
                    "mean": round(sum(lat) / len(lat), 2),
                },
            }
        )
    return out


async def deliveries_metrics(request: Request) -> Response:
    """GET /v1/metrics/deliveries: attempt statistics per destination and event type over a
    window (default: the last 24 hours)."""
    p = await principal(request, Scope.READ)
    to_us = query_time(request, "to") or now_us()
    from_us = query_time(request, "from") or (to_us - 86_400_000_000)
    if from_us >= to_us:
        raise BadRequest("query parameter 'from' must be before 'to'")
    if to_us - from_us > _WINDOW_MAX_US:
        raise BadRequest("query parameters 'from' and 'to' span more than 31 days")
    dest = request.query_params.get("destination_id")
    rows, truncated = await hub(request).observe.attempt_rows(p.tenant(), from_us, to_us, dest)
    return JSONResponse(
        {
            "from": format_us(from_us),
            "to": format_us(to_us),
            "truncated": truncated,
            "data": delivery_stats(rows),
        }
    )


routes = [
    Route("/metrics", metrics_page, methods=["GET"]),
    Route("/status", status, methods=["GET"]),
    Route("/v1/traces/{trace_id}", trace, methods=["GET"]),
    Route("/v1/metrics/deliveries", deliveries_metrics, methods=["GET"]),
]
