"""A per-destination circuit breaker as a state machine (time is passed in).

CLOSED lets calls through and watches the failure ratio over a sliding window; past the ratio it
goes OPEN and refuses calls for `open_for` seconds; then HALF_OPEN lets a few probes through, and
the first probe result closes it again or re-opens it.

`allow` and `record` return the breaker to keep. A closed breaker's window is a deque that
`record` updates in place, in O(1): it runs once per delivery, and building a new tuple of up to
`max_calls` outcomes each time cost the worker several microseconds per delivery.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum

__all__ = ["Breaker", "BreakerConfig", "State", "allow", "failure_ratio", "record"]


class State(StrEnum):
    CLOSED = "closed"  # calls flow; outcomes are counted
    OPEN = "open"  # calls are refused until open_for has passed
    HALF_OPEN = "half_open"  # a few probe calls decide whether to close or re-open


@dataclass(frozen=True)
class BreakerConfig:
    window: float = 60.0  # seconds of outcomes the failure ratio is computed over
    min_calls: int = 10  # fewer calls than this in the window never open the breaker
    failure_ratio: float = 0.5  # open when failures / calls reaches this
    open_for: float = 30.0  # seconds to stay open before probing
    half_open_probes: int = 1  # calls let through at once while half-open
    # Bounds the window for busy destinations: only the latest max_calls outcomes are kept.
    max_calls: int = 100

    def __post_init__(self) -> None:
        if self.window <= 0 or self.open_for < 0:
            raise ValueError("window must be positive and open_for non-negative")
        if self.min_calls < 1 or self.half_open_probes < 1:
            raise ValueError("min_calls and half_open_probes must be at least 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.max_calls < self.min_calls:
            raise ValueError("max_calls must be at least min_calls")


@dataclass(slots=True)
class Breaker:
    state: State = State.CLOSED
    opened_at: float | None = None  # when it last went OPEN
    # (time, ok) inside the window, oldest first; CLOSED only (updated in place by `record`)
    outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    failures: int = 0  # how many of `outcomes` failed, kept in step with them
    probes_in_flight: int = 0  # HALF_OPEN: probes allowed and not yet recorded
    probes_since: float | None = None  # HALF_OPEN: when the current probes were let through


def _window(
    outcomes: deque[tuple[float, bool]], cfg: BreakerConfig, now: float
) -> tuple[tuple[float, bool], ...]:
    start = now - cfg.window
    kept = tuple(o for o in outcomes if o[0] > start)
    return kept[-cfg.max_calls :]


def failure_ratio(b: Breaker, cfg: BreakerConfig, *, now: float) -> float:
    """Failures / calls in the window at `now` (0.0 with no calls); for metrics and logs."""
    window = _window(b.outcomes, cfg, now)
    if not window:
        return 0.0
    return sum(1 for _, ok in window if not ok) / len(window)


def allow(b: Breaker, cfg: BreakerConfig, *, now: float) -> tuple[bool, Breaker]:
    """May a call go out now? Returns the answer and the (possibly changed) breaker."""
    if b.state is State.CLOSED:
        return True, b
    if b.state is State.OPEN:
        opened_at = b.opened_at if b.opened_at is not None else now
        if now - opened_at < cfg.open_for:
            return False, b
        return True, replace(b, state=State.HALF_OPEN, probes_in_flight=1, probes_since=now)
    # HALF_OPEN
    if b.probes_in_flight < cfg.half_open_probes:
        return True, replace(b, probes_in_flight=b.probes_in_flight + 1)
    # A probe whose result never came back (worker killed) must not wedge the breaker: after
    # another open_for, let a fresh round of probes through.
    since = b.probes_since if b.probes_since is not None else now
    if now - since >= cfg.open_for:
        return True, replace(b, probes_in_flight=1, probes_since=now)
    return False, b


def record(b: Breaker, cfg: BreakerConfig, ok: bool, *, now: float) -> Breaker:
    """The breaker after a call finished with `ok` at `now` (a closed one is updated in place)."""
    if b.state is State.OPEN:
        # A call let through before the breaker opened finished late; it changes nothing.
        return b
    if b.state is State.HALF_OPEN:
        # Any result while half-open is taken as the probe's (a late pre-open call is not told
        # apart; at worst it closes or re-opens one probe early).
        if ok:
            return Breaker()
        return Breaker(state=State.OPEN, opened_at=now)
    outcomes = b.outcomes
    outcomes.append((now, ok))
    failures = b.failures + (not ok)
    # drop from the front what left the window (by age or past max_calls): usually 0 or 1
    start = now - cfg.window
    while outcomes[0][0] <= start or len(outcomes) > cfg.max_calls:
        failures -= not outcomes.popleft()[1]
    b.failures = failures
    if len(outcomes) >= cfg.min_calls and failures / len(outcomes) >= cfg.failure_ratio:
        return Breaker(state=State.OPEN, opened_at=now)
    return b
