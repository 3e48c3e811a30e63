"""The circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.breaker import Breaker, BreakerConfig, State, allow, failure_ratio, record

CFG = BreakerConfig(window=60, min_calls=10, failure_ratio=0.5, open_for=30, half_open_probes=1)


def feed(b: Breaker, results: list[bool], *, start: float, step: float = 1.0) -> Breaker:
    for i, ok in enumerate(results):
        b = record(b, CFG, ok, now=start + i * step)
    return b


def opened(at: float = 100.0) -> Breaker:
    b = feed(Breaker(), [False] * 10, start=at - 9)
    assert b.state is State.OPEN and b.opened_at == at
    return b


def test_new_breaker_is_closed_and_allows() -> None:
    ok, b = allow(Breaker(), CFG, now=0)
    assert ok and b == Breaker()


def test_does_not_open_before_min_calls() -> None:
    b = feed(Breaker(), [False] * 9, start=0)
    assert b.state is State.CLOSED
    assert failure_ratio(b, CFG, now=9) == 1.0


def test_opens_when_ratio_reached_after_min_calls() -> None:
    b = feed(Breaker(), [True] * 5 + [False] * 4, start=0)
    assert b.state is State.CLOSED
    b = record(b, CFG, False, now=9)  # 5 failures of 10 = 0.5
    assert b.state is State.OPEN
    assert b.opened_at == 9
    assert tuple(b.outcomes) == ()


def test_stays_closed_below_ratio() -> None:
    b = feed(Breaker(), [True, True, False] * 10, start=0)
    assert b.state is State.CLOSED
    assert failure_ratio(b, CFG, now=29) == pytest.approx(1 / 3)


def test_stays_open_until_open_for_elapsed() -> None:
    b = opened(at=100)
    for now in (100, 110, 129.9):
        ok, same = allow(b, CFG, now=now)
        assert not ok and same == b


def test_late_result_while_open_changes_nothing() -> None:
    b = opened(at=100)
    assert record(b, CFG, True, now=105) == b


def test_half_open_allows_one_probe() -> None:
    ok, b = allow(opened(at=100), CFG, now=130)
    assert ok and b.state is State.HALF_OPEN and b.probes_in_flight == 1
    ok, again = allow(b, CFG, now=131)
    assert not ok and again == b


def test_half_open_allows_configured_number_of_probes() -> None:
    cfg = BreakerConfig(open_for=30, half_open_probes=3)
    b = Breaker(state=State.OPEN, opened_at=0)
    answers = []
    for now in (30, 31, 32, 33):
        ok, b = allow(b, cfg, now=now)
        answers.append(ok)
    assert answers == [True, True, True, False]
    assert b.probes_in_flight == 3


def test_probe_success_closes_and_resets_window() -> None:
    _, b = allow(opened(at=100), CFG, now=130)
    b = record(b, CFG, True, now=131)
    assert b == Breaker()
    assert b.state is State.CLOSED
    # A fresh window: one failure does not reopen it.
    assert record(b, CFG, False, now=132).state is State.CLOSED


def test_probe_failure_reopens() -> None:
    _, b = allow(opened(at=100), CFG, now=130)
    b = record(b, CFG, False, now=131)
    assert b.state is State.OPEN and b.opened_at == 131
    ok, _ = allow(b, CFG, now=160)
    assert not ok
    ok, b = allow(b, CFG, now=161)
    assert ok and b.state is State.HALF_OPEN


def test_lost_probe_does_not_wedge_the_breaker() -> None:
    _, b = allow(opened(at=100), CFG, now=130)
    ok, _ = allow(b, CFG, now=159)
    assert not ok
    ok, b = allow(b, CFG, now=160)  # the first probe never reported back
    assert ok and b.state is State.HALF_OPEN and b.probes_in_flight == 1


def test_window_slides_old_failures_out() -> None:
    b = feed(Breaker(), [False] * 9, start=0)  # t=0..8
    # 61 s later those failures are outside the 60 s window.
    b = record(b, CFG, False, now=69)
    assert b.state is State.CLOSED
    assert tuple(b.outcomes) == ((69, False),)
    assert failure_ratio(b, CFG, now=200) == 0.0


def test_failures_spread_beyond_window_do_not_open() -> None:
    b = feed(Breaker(), [False] * 30, start=0, step=7)  # at most 9 in any 60 s window
    assert b.state is State.CLOSED
    assert len(b.outcomes) <= 9


def test_window_is_bounded_by_max_calls() -> None:
    cfg = BreakerConfig(max_calls=20)
    b = Breaker()
    for i in range(1000):
        b = record(b, cfg, True, now=i * 0.01)
    assert len(b.outcomes) == 20


def test_config_validation() -> None:
    for kwargs in (
        {"window": 0},
        {"min_calls": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"half_open_probes": 0},
        {"min_calls": 50, "max_calls": 10},
    ):
        with pytest.raises(ValueError):
            BreakerConfig(**kwargs)


@given(
    calls=st.lists(
        st.tuples(st.floats(min_value=0, max_value=40, allow_nan=False), st.booleans()),
        max_size=300,
    ),
    max_calls=st.integers(min_value=10, max_value=40),
)
def test_closed_breaker_opens_exactly_when_the_window_says_so(
    calls: list[tuple[float, bool]], max_calls: int
) -> None:
    """The incremental window (O(1) per call) against a recount of the whole window."""
    cfg = BreakerConfig(window=60, min_calls=10, failure_ratio=0.5, max_calls=max_calls)
    b, now, seen = Breaker(), 0.0, []
    for gap, ok in calls:
        now += gap
        seen.append((now, ok))
        window = [o for o in seen if o[0] > now - cfg.window][-cfg.max_calls :]
        fails = sum(1 for _, good in window if not good)
        should_open = len(window) >= cfg.min_calls and fails / len(window) >= cfg.failure_ratio
        b = record(b, cfg, ok, now=now)
        if should_open:
            assert b.state is State.OPEN
            break
        assert b.state is State.CLOSED
        assert tuple(b.outcomes) == tuple(window) and b.failures == fails
