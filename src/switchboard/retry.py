"""The retry policy: given an attempt's outcome, decide what happens next (pure; never sleeps).

The delivery loop records an attempt, asks `decide`, and then marks the delivery succeeded,
schedules it `delay` seconds later, dead-letters it, or disables the destination.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "DEFAULT_SCHEDULE",
    "Decision",
    "Outcome",
    "Policy",
    "ScheduleError",
    "Verdict",
    "decide",
    "parse_retry_after",
    "schedule_from_spec",
]

DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
"""Seconds before attempts 1..8: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"  # the receiver accepted it (2xx); the delivery is done
    RETRY = "retry"  # try again after `Decision.delay` seconds
    DEAD = "dead"  # out of attempts; move the delivery to the dead-letter queue
    DISABLE = "disable"  # the receiver said 410 Gone; stop delivering to this destination


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced."""

    status: int | None = None  # HTTP status, None if no response arrived
    error: Literal["timeout", "connection", "egress_denied", "other", "template_error"] | None = (
        None
    )
    retry_after: str | None = None  # the raw Retry-After header: seconds or an HTTP-date


@dataclass(frozen=True)
class Policy:
    """How often and how long to retry; a destination may override the schedule."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE  # delay before attempt 1..n (index 0 = first)
    jitter: float = 0.2  # each delay varies uniformly within ±jitter × delay
    min_backoff_throttled: float = 60.0  # floor after a 429 or a timeout without Retry-After
    max_retry_after: float = 86400.0  # a receiver's Retry-After is capped at this

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("retry schedule may not be empty")
        if any(not math.isfinite(d) or d < 0 for d in self.schedule):
            raise ValueError("retry schedule delays must be finite and non-negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.min_backoff_throttled < 0 or self.max_retry_after < 0:
            raise ValueError("backoff limits must be non-negative")


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float | None  # seconds until the next attempt, when verdict is RETRY
    reason: str  # short and human-readable, stored on the delivery


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date), or None if invalid.

    A date in the past gives 0. A date without a zone is taken as UTC.
    """
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _describe(outcome: Outcome) -> str:
    if outcome.status is not None:
        return f"http {outcome.status}"
    if outcome.error == "connection":
        return "connection error"
    return outcome.error or "no response"


def decide(
    attempt: int, outcome: Outcome, policy: Policy, *, now: float, rng: random.Random
) -> Decision:
    """Decide what follows attempt number `attempt` (1 after the first try).

    `now` is only used to read a Retry-After HTTP-date; `rng` is drawn from exactly once per RETRY
    decision, so a seeded generator gives the same delays every run.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    status = outcome.status
    if status is not None and 200 <= status < 300:
        return Decision(Verdict.SUCCEEDED, None, f"http {status}")
    if status == 410:
        return Decision(Verdict.DISABLE, None, "http 410: the receiver is gone")

    if outcome.error == "egress_denied":  # the same address would be refused again: no retry
        return Decision(Verdict.DEAD, None, "egress_denied: the destination's address is denied")
    why = _describe(outcome)
    if outcome.error == "template_error":  # the same template fails the same way: no retry
        return Decision(Verdict.DEAD, None, "template_error")
    if attempt >= len(policy.schedule):
        return Decision(Verdict.DEAD, None, f"{why}; gave up after {attempt} attempts")

    base = policy.schedule[attempt]
    delay = base * (1 + rng.uniform(-policy.jitter, policy.jitter))

    # Retry-After and throttling are floors: never come back earlier than the receiver asked.
    floor = 0.0
    retry_after = (
        parse_retry_after(outcome.retry_after, now) if outcome.retry_after is not None else None
    )
    if retry_after is not None:
        floor = min(retry_after, policy.max_retry_after)
        why += f", retry-after {floor:g}s"
    elif status == 429 or outcome.error == "timeout":
        floor = policy.min_backoff_throttled
    return Decision(Verdict.RETRY, max(delay, floor, 0.0), why)


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ITEM = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")

MAX_DELAY = 7 * 86400.0
"""The longest delay one schedule item may ask for (7 days): the worker turns every delay into a
due time in microseconds, and a delay like 1e308 s overflows that and crashed it."""
MAX_ITEMS = 30
"""The most items a schedule may have (30 attempts)."""
_MAX_ITEM_TEXT = 32  # characters in one string item; "604800s" needs 7, so 32 is generous


class ScheduleError(ValueError):
    """A retry schedule is invalid; ``index`` is the offending item's position (None: the whole)."""

    def __init__(self, index: int | None, problem: str) -> None:
        super().__init__(problem if index is None else f"item {index}: {problem}")
        self.index = index
        self.problem = problem


def _parse_item(item: object) -> float:
    """Seconds for one item; raises ValueError saying why (without the item's position)."""
    if isinstance(item, bool) or not isinstance(item, int | float | str):
        shown = type(item).__name__ if isinstance(item, list | dict) else repr(item)
        raise ValueError(
            f"bad retry schedule item {shown}: expected a number of seconds or a "
            "duration string such as 30s, 5m, 2h"
        )
    if isinstance(item, int | float):
        if not math.isfinite(item) or item < 0:
            raise ValueError(f"bad retry schedule item {item!r}: must be finite and non-negative")
        seconds = float(item)
    else:
        if len(item) > _MAX_ITEM_TEXT:
            raise ValueError(
                f"bad retry schedule item of {len(item)} characters: at most {_MAX_ITEM_TEXT}"
            )
        match = _ITEM.fullmatch(item.strip().lower())
        if match is None:
            raise ValueError(
                f"bad retry schedule item {item!r}: expected a number with an optional unit "
                "s, m, h or d (like 30s, 5m, 2h)"
            )
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds > MAX_DELAY:
        raise ValueError(
            f"bad retry schedule item {item!r}: at most {MAX_DELAY:.0f} s (7 days) per item"
        )
    return seconds


def schedule_from_spec(spec: object) -> tuple[float, ...]:
    """Parse a per-destination schedule such as ``"0,5s,5m,30m,2h"`` (or a list of numbers and
    duration strings) into seconds. Raises ScheduleError naming the item: each is a finite,
    non-negative number of seconds or a duration string, at most 7 days; at most 30 items."""
    if isinstance(spec, str):
        items: list[object] = list(spec.split(","))
    elif isinstance(spec, list | tuple):
        items = list(spec)
    else:
        raise ScheduleError(
            None, 'expected a list of delays or a comma-separated string like "0,5s,5m"'
        )
    if not items:
        raise ScheduleError(None, "retry schedule may not be empty")
    if len(items) > MAX_ITEMS:
        raise ScheduleError(None, f"{len(items)} items, at most {MAX_ITEMS}")
    schedule: list[float] = []
    for i, item in enumerate(items):
        try:
            schedule.append(_parse_item(item))
        except ValueError as exc:
            raise ScheduleError(i, str(exc)) from None
    return tuple(schedule)
