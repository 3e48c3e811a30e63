"""Prometheus metrics: the counters and histograms each process keeps, and the `/metrics` page.

Two kinds of figure, kept two ways so that several API and worker processes add up correctly:

- What happens in a process (events ingested, requests answered, attempts made) is counted in
  that process with prometheus-client. With several processes on one machine, set
  `PROMETHEUS_MULTIPROC_DIR` (before start-up: the library reads it at import) and every process
  writes its counters to files there, which any process's `/metrics` adds up. Processes on other
  machines are separate scrape targets, summed by Prometheus.
- What the store holds (due backlog, DLQ, disabled destinations, replays, runs, timers, live
  workers and their open breakers) is read from the store at scrape time, so every process
  answers the same figure for the whole hub and nothing is double counted inside one process.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"  # the type label of every type the catalog does not know
# request and attempt latencies: 1 ms to 30 s (a destination's longest timeout)
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The process's counters and histograms. One per hub, in a registry of its own (no global
    state: tests run several hubs in one process). With `tenant_labels`, ingest, delivery and
    attempt series carry a `tenant` label; otherwise they are totals."""

    def __init__(self, tenant_labels: bool = False, enabled: bool = True) -> None:
        self.tenant_labels = tenant_labels
        self.enabled = enabled
        # labelled children's adders by metric and labels (see `_counter` below)
        self._children: dict[tuple[Any, ...], Any] = {}
        # The API's counting, added up here until a scrape of this process reads it (or, in
        # multiprocess mode, where other processes read the files, added to the values at once):
        # by labels, events ingested, and requests' [sum of seconds, count per bucket...].
        self._deferred = multiprocess_dir() is None and _values_reachable()
        self._ingested: dict[tuple[str, ...], int] = {}
        self._answered: dict[tuple[Any, ...], list[float]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        t: tuple[str, ...] = ("tenant",) if tenant_labels else ()
        reg = self.registry
        self.ingest = Counter(
            "switchboard_ingest_events",
            "Events submitted, by outcome (accepted, warned, quarantined, duplicate, rejected) "
            "and type (catalog types only; any other is `other`).",
            (*t, "outcome", "type"),
            registry=reg,
        )
        self.requests = Histogram(
            "switchboard_http_request_duration_seconds",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.deliveries = Counter(
            "switchboard_deliveries",
            "Attempts' results as the delivery's new status (succeeded, retrying, dead), by "
            "channel.",
            (*t, "status", "channel"),
            registry=reg,
        )
        self.attempts = Histogram(
            "switchboard_attempt_duration_seconds",
            "Delivery attempts' latency, by channel and whether the attempt succeeded.",
            ("channel", "ok"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    def ingested(self, tenant: str, counts: dict[tuple[str, str], int]) -> None:
        """One request's events: {(outcome, type label): count}."""
        if not self.enabled:
            return
        pending = self._ingested
        for (outcome, etype), n in counts.items():
            labels = (tenant, outcome, etype) if self.tenant_labels else (outcome, etype)
            pending[labels] = pending.get(labels, 0) + n
        if not self._deferred or len(pending) > 1_000:
            self._flush()

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        labels = (method, route, status)
        row = self._answered.get(labels)
        if row is None:
            if len(self._answered) > 1_000:
                self._flush()
            row = self._answered[labels] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[0] += seconds
        row[1 + bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the last: +Inf
        if not self._deferred:
            self._flush()

    def attempt(self, tenant: str, channel: str, status: str, ok: bool, seconds: float) -> None:
        if not self.enabled:
            return
        labels = (tenant, status, channel) if self.tenant_labels else (status, channel)
        self._counter(self.deliveries, labels)(1)
        total, buckets = self._observer(self.attempts, (channel, "true" if ok else "false"))
        total(seconds)
        if buckets:
            buckets[bisect_left(LATENCY_BUCKETS, seconds)](1)

    def _flush(self) -> None:
        """The API's counting so far into prometheus-client's values."""
        ingested, self._ingested = self._ingested, {}
        answered, self._answered = self._answered, {}
        for labels, n in ingested.items():
            self._counter(self.ingest, labels)(n)
        for labels, row in answered.items():
            total, buckets = self._observer(self.requests, labels)
            total(row[0])  # (without `buckets`, `observe`: one request, as nothing is deferred)
            if buckets:
                for add, times in zip(buckets, row[1:], strict=True):
                    if times:
                        add(times)

    # Counting is on every request's path. The API's requests and events are added up in plain
    # dicts and handed over when this process is scraped; each labelled child is looked up once
    # and kept as the `inc` of the values it adds to: `labels()` validates and locks on every
    # call, and the child's own `inc`/`observe` check it is a child, lock per value and (a
    # histogram) walk the buckets in Python, which made counting a third of what ingest added
    # since the guards (Python opcodes per request, counted). The values are prometheus-client's
    # own (in multiprocess mode, its files, written at once), so `/metrics` reads them as it
    # would have; with a client whose children lack them, counting uses its public API.

    def _counter(self, metric: Any, labels: tuple[Any, ...]) -> Callable[[float], None]:
        key = (metric, *labels)
        inc = self._children.get(key)
        if inc is None:
            child = self._labelled(metric, labels)
            value: Any = getattr(child, "_value", None)
            inc = self._children[key] = value.inc if hasattr(value, "inc") else child.inc
        return inc  # type: ignore[no-any-return]

    def _observer(
        self, metric: Any, labels: tuple[Any, ...]
    ) -> tuple[Callable[[float], None], list[Callable[[float], None]] | None]:
        """A histogram child as (add to the sum, [add to bucket i]): bucket i is the first whose
        bound is at least the value, `bisect_left` over the bounds (+Inf last, as the client's).
        With a client whose children lack those values: (its `observe`, None)."""
        key = (metric, *labels)
        got = self._children.get(key)
        if got is None:
            child = self._labelled(metric, labels)
            got = self._children[key] = _adders(child) or (child.observe, None)
        return got

    def _labelled(self, metric: Any, labels: tuple[Any, ...]) -> Any:
        if len(self._children) > 100_000:  # tenant labels on a very large hub
            self._children.clear()
        return metric.labels(*(str(v) for v in labels))

    def exposition(self, gauges: Iterable[Metric]) -> bytes:
        """The `/metrics` page: this process's (or, in multiprocess mode, every local
        process's) counters, then the store's gauges read for this scrape."""
        self._flush()
        if multiprocess_dir():
            counted = CollectorRegistry()
            MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
        else:
            counted = self.registry
        store = CollectorRegistry()
        store.register(_Fixed(list(gauges)))
        return generate_latest(counted) + generate_latest(store)


def _adders(child: Any) -> tuple[Callable[[float], None], list[Callable[[float], None]]] | None:
    """A latency histogram child's (add to the sum, [add to bucket i]), if the client's child
    keeps them as this module expects (prometheus-client 0.20 and later do)."""
    total: Any = getattr(child, "_sum", None)
    buckets = getattr(child, "_buckets", None)
    bounds = getattr(child, "_upper_bounds", None)
    if (
        hasattr(total, "inc")
        and bounds == [*LATENCY_BUCKETS, float("inf")]
        and isinstance(buckets, list)
        and len(buckets) == len(bounds)
        and all(hasattr(b, "inc") for b in buckets)
    ):
        return total.inc, [b.inc for b in buckets]
    return None


def _values_reachable() -> bool:
    """Whether counts can be added up and handed over later: a histogram's buckets take a sum
    of counts only through the values (`observe` adds one at a time)."""
    probe = Histogram("probe", "", ("x",), buckets=LATENCY_BUCKETS, registry=None)
    return _adders(probe.labels("x")) is not None


class _Fixed(Collector):
    """Metric families computed before the scrape (the store is read asynchronously)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


@dataclass
class Snapshot:
    """The store's figures at one moment, for the gauges and for `/status`. Figures by tenant
    are {tenant: value}; they are summed unless tenant labels are on."""

    now_us: int
    due: dict[str, int] = field(default_factory=dict)
    oldest_due_us: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    dead_recent: dict[str, int] = field(default_factory=dict)
    disabled: dict[str, int] = field(default_factory=dict)
    replays: list[tuple[str, str, str, int, int, int]] = field(default_factory=list)
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    oldest_timer_us: dict[str, int] = field(default_factory=dict)
    workers_alive: int = 0
    open_breakers: int = 0

    def backlog_age(self) -> float:
        """Seconds the oldest due delivery of any tenant has waited (0 without any)."""
        if not self.oldest_due_us:
            return 0.0
        return max(0.0, (self.now_us - min(self.oldest_due_us.values())) / 1e6)


def gauges(snap: Snapshot, tenant_labels: bool) -> list[Metric]:
    """The store's figures as Prometheus gauge families."""
    out: list[Metric] = []

    def per_tenant(name: str, doc: str, values: dict[str, Any], age: bool = False) -> None:
        labels = ["tenant"] if tenant_labels else []
        fam = GaugeMetricFamily(name, doc, labels=labels)

        def value(v: Any) -> float:
            return max(0.0, (snap.now_us - v) / 1e6) if age else float(v)

        if tenant_labels:
            for tenant, v in sorted(values.items()):
                fam.add_metric([tenant], value(v))
        elif age:
            fam.add_metric([], value(min(values.values())) if values else 0.0)
        else:
            fam.add_metric([], float(sum(values.values())))
        out.append(fam)

    per_tenant(
        "switchboard_backlog_due_deliveries",
        "Deliveries due now (pending or retrying, their time come) and not yet claimed.",
        snap.due,
    )
    per_tenant(
        "switchboard_backlog_oldest_due_seconds",
        "How long the oldest due delivery has waited.",
        snap.oldest_due_us,
        age=True,
    )
    per_tenant("switchboard_dlq_deliveries", "Dead deliveries (the DLQ).", snap.dead)
    per_tenant(
        "switchboard_disabled_destinations",
        "Destinations disabled (by hand or by the hub).",
        snap.disabled,
    )
    per_tenant(
        "switchboard_automation_timers_pending", "Automation runs with a timer set.", snap.timers
    )
    per_tenant(
        "switchboard_automation_timer_lateness_seconds",
        "How long past its due time the most overdue timer is (0 when none is overdue).",
        snap.oldest_timer_us,
        age=True,
    )
    runs = GaugeMetricFamily(
        "switchboard_automation_runs",
        "Automation runs by status.",
        labels=["tenant", "status"] if tenant_labels else ["status"],
    )
    summed: dict[str, int] = {}
    for (tenant, status), n in sorted(snap.runs.items()):
        if tenant_labels:
            runs.add_metric([tenant, status], n)
        else:
            summed[status] = summed.get(status, 0) + n
    for status, n in sorted(summed.items()):
        runs.add_metric([status], n)
    out.append(runs)
    # a replay is an operator's job, few at a time: labelled by its id and tenant always
    for name, doc, pos in (
        ("switchboard_replay_scanned_events", "Events a running replay has scanned.", 3),
        ("switchboard_replay_matched_events", "Events a running replay has matched.", 4),
        ("switchboard_replay_created_deliveries", "Deliveries a running replay has made.", 5),
    ):
        fam = GaugeMetricFamily(name, doc, labels=["tenant", "replay"])
        for r in snap.replays:
            fam.add_metric([r[1], r[0]], float(r[pos]))
        out.append(fam)
    out.append(
        GaugeMetricFamily(
            "switchboard_workers_alive",
            "Workers whose heartbeat is recent.",
            value=snap.workers_alive,
        )
    )
    out.append(
        GaugeMetricFamily(
            "switchboard_circuit_breakers_open",
            "Destinations whose circuit breaker is open, summed over live workers.",
            value=snap.open_breakers,
        )
    )
    return out
