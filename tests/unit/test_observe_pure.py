"""The pure parts of observability: alert conditions, percentiles, statistics and gauges."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchboard.alerts import Measures, judge
from switchboard.api.observe import delivery_stats, percentile
from switchboard.config import Settings
from switchboard.metrics import Metrics, Snapshot, gauges
from switchboard.store.observe import AttemptRow

S = Settings(alert_backlog=10, alert_dlq_growth=3, alert_error_rate=0.5, alert_min_attempts=4)


def test_each_condition_fires_at_its_threshold_and_not_below() -> None:
    m = Measures(
        due={"a": 10, "b": 9},
        dead_recent={"a": 2, "b": 3},
        attempts={"a": (4, 2), "b": (3, 3), "c": (10, 4)},
    )
    fired = {(f.tenant_id, f.alert) for f in judge(m, S)}
    # b's 3 failures of 3 attempts are too few attempts to judge; c's 40 % is under the rate
    assert fired == {("a", "backlog_high"), ("b", "dlq_growth"), ("a", "error_rate")}


def test_a_zero_threshold_turns_its_alert_off() -> None:
    off = Settings(alert_backlog=0, alert_dlq_growth=0)
    assert judge(Measures({"a": 10**6}, {"a": 10**6}, {}), off) == []


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) == 0.0


def test_delivery_stats_group_by_destination_and_type() -> None:
    rows = [
        AttemptRow("d1", "a.b", "x", 1, False, 10.0),
        AttemptRow("d1", "a.b", "x", 2, True, 20.0),
        AttemptRow("d1", "a.b", "y", 1, True, 30.0),
        AttemptRow("d2", "a.b", "z", 1, True, 5.0),
    ]
    out = {(r.destination_id, r.type): r for r in delivery_stats(rows)}
    d1 = out["d1", "a.b"]
    assert (d1.deliveries, d1.attempts, d1.succeeded, d1.retries) == (2, 3, 2, 1)
    assert d1.success_rate == round(2 / 3, 4)
    assert (d1.latency_ms.p50, d1.latency_ms.p95, d1.latency_ms.mean) == (20.0, 30.0, 20.0)
    assert out["d2", "a.b"].success_rate == 1.0


def _samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }


def test_gauges_sum_tenants_unless_labelled_and_age_from_the_oldest() -> None:
    now = 100_000_000
    snap = Snapshot(
        now_us=now,
        due={"a": 2, "b": 3},
        oldest_due_us={"a": now - 4_000_000, "b": now - 1_000_000},
        runs={("a", "running"): 1, ("b", "running"): 2, ("b", "completed"): 5},
        replays=[("rp1", "a", "running", 10, 4, 4)],
    )
    text = Metrics().exposition(gauges(snap, tenant_labels=False))
    s = _samples(text)
    assert s["switchboard_backlog_due_deliveries", frozenset()] == 5
    assert s["switchboard_backlog_oldest_due_seconds", frozenset()] == 4.0
    assert s["switchboard_automation_runs", frozenset({("status", "running")})] == 3
    assert (
        s["switchboard_replay_scanned_events", frozenset({("tenant", "a"), ("replay", "rp1")})]
        == 10
    )
    labelled = _samples(Metrics(tenant_labels=True).exposition(gauges(snap, tenant_labels=True)))
    assert labelled["switchboard_backlog_due_deliveries", frozenset({("tenant", "b")})] == 3


def test_two_hubs_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.ingested("t", {("accepted", "other"): 3})
    s = _samples(second.exposition([]))
    assert (
        s.get(
            (
                "switchboard_ingest_events_total",
                frozenset({("outcome", "accepted"), ("type", "other")}),
            )
        )
        is None
    )
    s = _samples(first.exposition([]))
    assert (
        s[
            "switchboard_ingest_events_total",
            frozenset({("outcome", "accepted"), ("type", "other")}),
        ]
        == 3
    )


@pytest.mark.parametrize("deferred", [True, False], ids=["one-process", "multiprocess-mode"])
def test_counting_adds_what_the_clients_own_api_would(deferred: bool) -> None:
    """The hub adds up the API's counts until a scrape (one process) or adds them at once (the
    multiprocess mode's files), into its children's values directly; the page it answers is the
    one prometheus-client's `inc`/`observe` would give, bucket bounds included, and a second
    scrape counts nothing twice."""
    ours, theirs = Metrics(), Metrics()
    ours._deferred = deferred
    latencies = (0.0, 0.001, 0.0010001, 0.003, 2.5, 29.999, 30.0, 30.5, 1e9)
    for seconds in latencies:
        ours.request("POST", "/v1/events", 202, seconds)
        theirs.requests.labels("POST", "/v1/events", "202").observe(seconds)
    ours.ingested("t", {("accepted", "other"): 3, ("duplicate", "other"): 1})
    ours.ingested("t", {("accepted", "other"): 2})
    theirs.ingest.labels("accepted", "other").inc(5)
    theirs.ingest.labels("duplicate", "other").inc(1)
    ours.attempt("t", "webhook", "retrying", False, 0.04)
    theirs.deliveries.labels("retrying", "webhook").inc()
    theirs.attempts.labels("webhook", "false").observe(0.04)

    def counted(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {k: v for k, v in _samples(m.exposition([])).items() if "_created" not in k[0]}

    got = counted(ours)
    assert got == counted(theirs)
    assert counted(ours) == got
    ours.request("POST", "/v1/events", 202, 0.002)
    theirs.requests.labels("POST", "/v1/events", "202").observe(0.002)
    assert counted(ours) == counted(theirs)
    le = frozenset({("method", "POST"), ("route", "/v1/events"), ("status", "202")})
    assert got["switchboard_http_request_duration_seconds_bucket", le | {("le", "0.001")}] == 2
    assert got["switchboard_http_request_duration_seconds_bucket", le | {("le", "30.0")}] == 7
    assert got["switchboard_http_request_duration_seconds_count", le] == len(latencies)


def test_every_reference_of_the_document_resolves() -> None:
    """The trace's timeline refers to the events and deliveries areas' own schemas by name
    (`StoredEvent`, `Delivery`, `Attempt`): renaming one must not leave a dangling reference."""
    import json
    import re

    from switchboard.api.openapi import openapi_document

    doc = openapi_document()
    refs = set(re.findall(r"#/components/(\w+)/(\w+)", json.dumps(doc)))
    assert ("schemas", "StoredEvent") in refs
    assert [r for r in refs if r[1] not in doc["components"][r[0]]] == []
