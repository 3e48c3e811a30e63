"""The benchmark table's arithmetic: a figure's ratio against its ceiling, and its verdict."""

from __future__ import annotations

from typing import Any

from benchmarks.run import MEASURED, REFERENCE, Figure, peer_rows


def test_paired_runs_give_the_median_of_each_runs_ratio() -> None:
    # the machine slowed down for the third run: both sides of that run moved together
    fig = Figure("k", "label", "events/s", "ratio >= 0.45", paired=True)
    fig.values += [10.0, 5.0, 8.0]
    fig.ceilings += [20.0, 10.0, 40.0]
    assert fig.ratio() == 0.5
    assert fig.passed() is True


def test_unpaired_runs_divide_the_medians() -> None:
    fig = Figure("k", "label", "events/s", "ratio >= 0.45")
    fig.values += [10.0, 5.0, 8.0]
    fig.ceilings += [20.0, 10.0, 40.0]
    assert fig.ratio() == 0.4
    assert fig.passed() is False


def test_a_reference_figure_has_a_ratio_and_no_verdict() -> None:
    fig = Figure("k", "label", "events/s", REFERENCE, paired=True)
    fig.values += [3.0]
    fig.ceilings += [4.0]
    assert fig.ratio() == 0.75
    assert fig.passed() is None


def test_a_measured_figure_has_a_ratio_and_no_verdict() -> None:
    fig = Figure("k", "label", "events/s", MEASURED, paired=True)
    fig.values += [3.0]
    fig.ceilings += [4.0]
    assert fig.ratio() == 0.75
    assert fig.passed() is None


def _peers_report(hub_lost: int, celery_p99: float | None) -> dict[str, Any]:
    def system(name: str, ingest: float, deliveries: float, p99: float | None, lost: int) -> Any:
        summary = {"ingest": ingest, "deliveries": deliveries, "p99": p99, "lost": lost,
                   "acknowledged": 900, "kill_rate": 1000}  # fmt: skip
        return {"system": name, "summary": summary}

    return {
        "settings": {"rate": 1000},
        "systems": [
            system("hub", 2100.0, 2600.0, 15.0, hub_lost),
            system("celery", 450.0, 1000.0, celery_p99, 0),
            system("procrastinate", 300.0, 150.0, 900.0, 0),
        ],
    }


def test_the_hub_against_each_peer_is_judged_by_issue_21s_goals() -> None:
    lost = Figure("peers_lost_hub", "lost", "events", "lost <= 0")
    figs = {f.key: f for f in peer_rows(_peers_report(0, 80.0), lost)}
    assert figs["peers_ingest_celery"].ratio() == 2100.0 / 450.0
    assert figs["peers_ingest_celery"].passed() is True
    assert figs["peers_deliveries_celery"].passed() is False  # 2.6×, under the 3× goal
    assert figs["peers_p99_celery"].ratio() == 15.0 / 80.0
    assert figs["peers_p99_celery"].passed() is True
    assert figs["peers_p99_procrastinate"].passed() is True
    assert figs["peers_lost_hub"].passed() is True


def test_a_lost_event_or_an_unmeasured_peer_shows() -> None:
    lost = Figure("peers_lost_hub", "lost", "events", "lost <= 0")
    figs = {f.key: f for f in peer_rows(_peers_report(1, None), lost)}
    assert figs["peers_lost_hub"].passed() is False
    assert figs["peers_p99_celery"].skipped is not None
    assert figs["peers_p99_celery"].passed() is None


def test_a_peers_lower_bound_judges_the_hub_only_where_any_true_value_would() -> None:
    lost = Figure("peers_lost_hub", "lost", "events", "lost <= 0")
    report = _peers_report(0, None)
    celery = report["systems"][1]["summary"]
    celery.update(p99_at_least=60.0, missing=40)  # 40 requests never answered or received
    figs = {f.key: f for f in peer_rows(report, lost)}
    assert figs["peers_p99_celery"].ratio() == 15.0 / 60.0
    assert figs["peers_p99_celery"].passed() is True
    assert "a lower bound: 40 never answered or received" in figs["peers_p99_celery"].ceiling_label
    celery.update(p99_at_least=30.0)  # theirs may be anything from 30 ms: 15 is not ⅓ of that
    figs = {f.key: f for f in peer_rows(report, lost)}
    assert figs["peers_p99_celery"].passed() is False
