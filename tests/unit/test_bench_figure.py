"""The benchmark table's arithmetic: a figure's ratio against its ceiling, and its verdict."""

from __future__ import annotations

from benchmarks.run import REFERENCE, Figure


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
