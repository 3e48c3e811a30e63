"""What a delivery worker keeps per destination: its line of claimed deliveries (sent by at most
the destination's concurrency of sender coroutines) and its in-memory state (limits, rate
buckets, the circuit breaker). Values only; `delivery.Worker` does the I/O around them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from switchboard import breaker as brk
from switchboard.envelope import Event
from switchboard.records import Destination
from switchboard.store.deliveries import Delivery

# A destination's line holds at most this many times its concurrency: a slow destination with a
# deep backlog must not fill the worker's capacity and starve every other destination. It must
# also cover a claim's round trip: a busy worker's claim takes tens of milliseconds, and a line
# of four times the concurrency ran dry while the next claim was on its way (its senders quit
# and were started again for every claim).
LANE_DEPTH = 8


@dataclass(slots=True)
class Job:
    """A claimed delivery waiting for (or taken by) one of its destination's senders."""

    delivery: Delivery
    event: Event
    claimed_at: float  # time.monotonic() of the claim: the lease runs from here
    waited: bool = False  # queued behind the destination's other sends before it was taken


class Lane:
    """One destination's claimed deliveries, in claim order, sent by at most `limit` sender
    coroutines at a time (the destination's concurrency). Senders are long-lived: each takes
    the next job as soon as its request is answered, so a busy destination costs no task, lock
    or timer per delivery."""

    __slots__ = ("jobs", "known", "limit", "senders", "tenant")

    def __init__(self, tenant: str, limit: int, known: bool) -> None:
        self.tenant = tenant  # the destination's
        self.jobs: deque[Job] = deque()
        self.senders = 0
        self.limit = limit
        self.known = known  # the limit is the destination's, not the guess of 1

    @property
    def depth(self) -> int:
        """Most deliveries the line holds waiting (see LANE_DEPTH)."""
        return self.limit * LANE_DEPTH


@dataclass
class DestState:
    """What a worker keeps per destination: limits and the breaker, all in memory."""

    destination: Destination
    expires: float
    failing_since_us: int | None = None
    breaker: brk.Breaker = field(default_factory=brk.Breaker)
    tokens_s: float = 0.0
    tokens_m: float = 0.0
    stamp: float = 0.0

    def rate_wait(self, now: float) -> float:
        """Take one token from the per-second and per-minute buckets; else seconds to wait."""
        d = self.destination
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        wait = 0.0
        if d.rate_per_second:
            self.tokens_s = min(d.rate_per_second, self.tokens_s + elapsed * d.rate_per_second)
            if self.tokens_s < 1:
                wait = max(wait, (1 - self.tokens_s) / d.rate_per_second)
        if d.rate_per_minute:
            per_s = d.rate_per_minute / 60
            self.tokens_m = min(d.rate_per_minute, self.tokens_m + elapsed * per_s)
            if self.tokens_m < 1:
                wait = max(wait, (1 - self.tokens_m) / per_s)
        if wait == 0.0:
            if d.rate_per_second:
                self.tokens_s -= 1
            if d.rate_per_minute:
                self.tokens_m -= 1
        return wait
