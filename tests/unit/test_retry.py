"""The retry policy: schedule, jitter, terminal verdicts, Retry-After and throttling."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from switchboard.retry import (
    DEFAULT_SCHEDULE,
    Decision,
    Outcome,
    Policy,
    ScheduleError,
    Verdict,
    decide,
    parse_retry_after,
    schedule_from_spec,
)

NOW = 1_700_000_000.0
NO_JITTER = Policy(jitter=0.0)
FAIL = Outcome(status=503)


def run(attempt: int, outcome: Outcome, policy: Policy = NO_JITTER, seed: int = 1) -> Decision:
    return decide(attempt, outcome, policy, now=NOW, rng=random.Random(seed))


def test_default_schedule_without_jitter_is_exact() -> None:
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    delays = [run(attempt, FAIL).delay for attempt in range(1, 8)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert all(run(a, FAIL).verdict is Verdict.RETRY for a in range(1, 8))


def test_dead_after_the_eighth_attempt() -> None:
    decision = run(8, FAIL)
    assert decision.verdict is Verdict.DEAD
    assert decision.delay is None
    assert "503" in decision.reason and "8" in decision.reason
    assert run(9, Outcome(error="connection")).verdict is Verdict.DEAD


def test_jitter_stays_within_bounds_and_is_deterministic() -> None:
    policy = Policy()  # jitter 0.2
    rng = random.Random(42)
    seen = set()
    for attempt in range(1, 8):
        base = DEFAULT_SCHEDULE[attempt]
        for _ in range(200):
            delay = decide(attempt, FAIL, policy, now=NOW, rng=rng).delay
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2
            seen.add(round(delay / base, 3))
    assert len(seen) > 50  # it really varies
    first = [decide(3, FAIL, policy, now=NOW, rng=random.Random(7)).delay for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_success_statuses() -> None:
    for status in (200, 201, 202, 204, 299):
        decision = run(1, Outcome(status=status))
        assert decision == Decision(Verdict.SUCCEEDED, None, f"http {status}")
    assert run(8, Outcome(status=200)).verdict is Verdict.SUCCEEDED


def test_gone_disables_the_destination() -> None:
    decision = run(1, Outcome(status=410))
    assert decision.verdict is Verdict.DISABLE and decision.delay is None


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(status=400),
        Outcome(status=404),
        Outcome(status=500),
        Outcome(status=302),
        Outcome(error="connection"),
        Outcome(error="other"),
        Outcome(),
    ],
)
def test_other_failures_retry_on_schedule(outcome: Outcome) -> None:
    decision = run(2, outcome)
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == 300


def test_429_without_retry_after_backs_off_at_least_a_minute() -> None:
    decision = run(1, Outcome(status=429), Policy())
    assert decision.verdict is Verdict.RETRY
    assert decision.delay is not None and decision.delay >= 60
    assert run(3, Outcome(status=429)).delay == 1800  # the schedule wins when longer


def test_timeout_backs_off_at_least_min_backoff() -> None:
    assert run(1, Outcome(error="timeout")).delay == 60
    assert run(1, Outcome(error="timeout"), Policy(jitter=0, min_backoff_throttled=90)).delay == 90


def test_retry_after_seconds_is_honoured() -> None:
    decision = run(1, Outcome(status=429, retry_after="120"))
    assert decision.delay == 120
    assert "retry-after 120s" in decision.reason
    # An explicit short Retry-After on a 429 replaces the 60 s throttling floor.
    assert run(1, Outcome(status=429, retry_after="10")).delay == 10
    # It never shortens the schedule.
    assert run(3, Outcome(status=503, retry_after="10")).delay == 1800


def test_retry_after_http_date_is_relative_to_now() -> None:
    when = datetime.fromtimestamp(NOW + 600, tz=UTC)
    header = format_datetime(when, usegmt=True)
    assert header.endswith("GMT")
    assert run(1, Outcome(status=503, retry_after=header)).delay == 600


def test_retry_after_is_clamped() -> None:
    assert run(1, Outcome(status=503, retry_after="999999")).delay == 86400
    capped = Policy(jitter=0, max_retry_after=3600)
    assert run(1, Outcome(status=503, retry_after="7200"), capped).delay == 3600
    past = format_datetime(datetime.fromtimestamp(NOW - 600, tz=UTC), usegmt=True)
    assert run(1, Outcome(status=503, retry_after=past)).delay == 5


def test_unparseable_retry_after_is_ignored() -> None:
    assert run(1, Outcome(status=429, retry_after="soon")).delay == 60
    assert run(2, Outcome(status=503, retry_after="-5")).delay == 300


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after(" 0 ", NOW) == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 30) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 + 30) == 0
    for bad in ["", "soon", "-1", "nan", "inf", "Wed, 99 Foo 2015"]:
        assert parse_retry_after(bad, NOW) is None, bad


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError):
        run(0, FAIL)


def test_custom_schedule_sets_the_number_of_attempts() -> None:
    policy = Policy(schedule=(0, 10, 20), jitter=0)
    assert [run(a, FAIL, policy).delay for a in (1, 2)] == [10, 20]
    assert run(3, FAIL, policy).verdict is Verdict.DEAD


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        Policy(schedule=())
    with pytest.raises(ValueError):
        Policy(schedule=(0, -1))
    with pytest.raises(ValueError):
        Policy(jitter=1.5)


def test_schedule_from_spec() -> None:
    assert schedule_from_spec("0,5s,5m,30m,2h,5h,10h,10h") == DEFAULT_SCHEDULE
    assert schedule_from_spec(" 0 , 1.5m , 1d ") == (0, 90, 86400)
    assert schedule_from_spec([0, "5s", 30.5, "2H"]) == (0, 5, 30.5, 7200)


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        ("0,5x,5m", "'5x'"),
        ("0,,5m", "''"),
        ("", "''"),
        ("0,-5s", "'-5s'"),
        ([0, "m"], "'m'"),
        ([0, -1.0], "-1.0"),
        ([True], "True"),
    ],
)
def test_schedule_from_spec_names_the_bad_item(spec: str | list[float | str], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        schedule_from_spec(spec)


def test_schedule_from_spec_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="empty"):
        schedule_from_spec([])


@pytest.mark.security
@pytest.mark.parametrize(
    ("spec", "index", "says"),
    [
        ([0, 1e308], 1, "at most 604800 s"),
        ([0, 7 * 86400 + 1], 1, "at most 604800 s"),
        ("0,8d", 1, "at most 604800 s"),
        ([None], 0, "None"),
        ([0, [1, 2]], 1, "list"),
        ([0, {"a": 1}], 1, "dict"),
        ([0, False], 1, "False"),
        ([0, "9" * 100_000], 1, "100000 characters"),
        ([0, float("inf")], 1, "finite"),
        ([0, float("nan")], 1, "finite"),
    ],
)
def test_schedule_items_are_bounded_and_named_by_position(
    spec: list[object] | str, index: int, says: str
) -> None:
    with pytest.raises(ScheduleError, match=says) as caught:
        schedule_from_spec(spec)
    assert caught.value.index == index


@pytest.mark.security
def test_schedule_has_at_most_30_items() -> None:
    assert len(schedule_from_spec([1] * 30)) == 30
    with pytest.raises(ScheduleError, match="31 items, at most 30") as caught:
        schedule_from_spec([1] * 31)
    assert caught.value.index is None
    with pytest.raises(ScheduleError, match="at most 30"):
        schedule_from_spec(",".join(["1s"] * 10_000))


@pytest.mark.security
@pytest.mark.parametrize("spec", [None, 5, {"a": 1}, True])
def test_schedule_that_is_not_a_list_or_string_is_refused(spec: object) -> None:
    with pytest.raises(ScheduleError, match="expected a list"):
        schedule_from_spec(spec)


def test_schedule_of_exactly_seven_days_is_accepted() -> None:
    assert schedule_from_spec([0, "7d", 604800]) == (0, 604800, 604800)


@pytest.mark.security
def test_a_template_error_is_dead_at_once() -> None:
    decision = decide(1, Outcome(error="template_error"), Policy(), now=NOW, rng=random.Random(1))
    assert decision == Decision(Verdict.DEAD, None, "template_error")
