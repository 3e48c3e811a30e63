"""How long the hub keeps what it stores, and the worker's job that forgets the rest.

Events are kept per event type (`retention: 18 months` in the catalog), else for the tenant's
default, never for less than the operator's floor (SWITCHBOARD_RETENTION_FLOOR_DAYS), and
forever when nothing is set. Delivery attempts, the inbound request log and the audit log have
their own retention settings. The policy is pure (`parse_retention`, `event_cutoffs`); the job
(`run_once`, `retention_loop`) deletes in small chunks, each its own short transaction.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from switchboard.errors import SwitchboardError

DAY_US = 86_400_000_000
# A month counts as 31 days and a year as 366: a retention is a promise to keep data at least
# that long, so the rounding keeps a little more, never less.
_UNITS = {"day": 1, "week": 7, "month": 31, "year": 366}
_TEXT = re.compile(r"^\s*(\d{1,5})\s*(day|week|month|year)s?\s*(?!\n)$", re.IGNORECASE)
MAX_DAYS = 36_600  # a hundred years: anything longer is "forever" and should be left unset


class RetentionError(SwitchboardError):
    """The retention is not a duration such as `18 months`."""


def parse_retention(value: Any) -> int:
    """Days of `value`: a whole number of days, or text like `30 days`, `6 weeks`,
    `18 months`, `2 years`."""
    if isinstance(value, bool):
        raise RetentionError(f"{value!r} is not a duration such as '18 months'")
    if isinstance(value, int):
        days = value
    elif isinstance(value, str) and (m := _TEXT.match(value)):
        days = int(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        raise RetentionError(
            f"{value!r} is not a duration such as '18 months' (days, weeks, months, years)"
        )
    if not 1 <= days <= MAX_DAYS:
        raise RetentionError(f"{value!r} must be between 1 day and 100 years")
    return days


@dataclass(frozen=True)
class Cutoffs:
    """What to forget in one tenant: events of each listed type before its cutoff, and the
    events of every other type before `default_us` (None: keep them)."""

    by_type: dict[str, int]  # event type -> cutoff (µs): events before it go
    default_us: int | None


def effective_days(days: int | None, floor_days: int) -> int | None:
    """A set retention raised to the operator's floor; unset stays unset (kept forever)."""
    if days is None:
        return None
    return max(days, floor_days)


def event_cutoffs(
    now_us: int, type_days: dict[str, int], tenant_days: int | None, floor_days: int
) -> Cutoffs:
    by_type = {}
    for name, days in type_days.items():
        kept = effective_days(days, floor_days)
        assert kept is not None
        by_type[name] = now_us - kept * DAY_US
    default = effective_days(tenant_days, floor_days)
    return Cutoffs(by_type, None if default is None else now_us - default * DAY_US)


def type_retentions(stored: list[Any]) -> dict[str, int]:
    """Days per event type from the stored catalog entries (`StoredType`s) of a tenant: the
    shared catalog's, overridden by the tenant's own type of the same name."""
    shared: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for t in stored:
        (shared if t.scope == "*" else own)[t.name] = t.spec.get("retention")
    days = {}
    for name, raw in {**shared, **own}.items():
        if raw is None:
            continue
        try:
            days[name] = parse_retention(raw)
        except RetentionError:  # it was checked when the type was saved
            continue
    return days


FEWEST = 50  # rows of the smallest chunk


class Pace:
    """Chunk sizes for the deletes. Each chunk is one transaction; with a `budget` (SQLite,
    whose only writer a chunk holds whole) a chunk is kept near `budget` seconds (halved when
    one took longer, down to FEWEST rows; doubled up to `most` rows when one took under half),
    and after each chunk
    the job waits as long as the chunk took, leaving the writer to ingest at least half the
    time. Without one (PostgreSQL) every chunk is `most` rows."""

    def __init__(self, most: int, budget: float) -> None:
        self.most = most
        self.budget = budget
        self.size = min(most, FEWEST) if budget > 0 else most

    async def drain(self, step: Callable[..., Awaitable[int]], *args: Any, **kw: Any) -> int:
        """Run `step(*args, chunk=size, **kw)` until a chunk comes back short; the rows deleted."""
        total = 0
        while True:
            size = self.size
            started = time.perf_counter()
            n = await step(*args, chunk=size, **kw)
            took = time.perf_counter() - started
            total += n
            if self.budget > 0:
                if took > self.budget:
                    # not below FEWEST: a commit's own cost (the fsync) does not shrink with it
                    self.size = max(min(self.most, FEWEST), size // 2)
                elif took < self.budget / 2:
                    self.size = min(self.most, size * 2)
            if n < size:
                return total
            await asyncio.sleep(min(took, 1.0) if self.budget > 0 else 0)
