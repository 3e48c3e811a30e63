"""`format_us` writes what `datetime.isoformat` writes, exactly, for any microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from switchboard.envelope import format_us

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
LAST = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def reference(us: int) -> str:
    # integer arithmetic throughout: timedelta keeps microseconds exact
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


@given(st.integers(min_value=FIRST, max_value=LAST))
def test_any_instant_formats_like_isoformat(us: int) -> None:
    assert format_us(us) == reference(us)


def test_whole_seconds_and_edges() -> None:
    assert format_us(0) == "1970-01-01T00:00:00Z"
    assert format_us(1) == "1970-01-01T00:00:00.000001Z"
    assert format_us(-1) == "1969-12-31T23:59:59.999999Z"
    assert format_us(1_763_935_140_123_456) == "2025-11-23T21:59:00.123456Z"
    assert format_us(LAST) == "9999-12-31T23:59:59.999999Z"
    assert format_us(FIRST) == "0001-01-01T00:00:00Z"


@given(st.integers(min_value=FIRST // 1_000_000, max_value=LAST // 1_000_000))
def test_the_fallback_calendar_agrees_with_datetime_inside_the_range(seconds: int) -> None:
    from switchboard.envelope import _civil_second

    assert _civil_second(seconds) + "Z" == format_us(seconds * 1_000_000)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_stored_integer_formats_without_raising(us: int) -> None:
    text = format_us(us)
    assert text.endswith("Z")
    if not FIRST <= us <= LAST:
        assert text[0] in "+-"  # an expanded ISO 8601 year


def test_outside_the_range_uses_expanded_years() -> None:
    assert format_us(LAST + 1) == "+10000-01-01T00:00:00Z"
    assert format_us(FIRST - 1) == "+0000-12-31T23:59:59.999999Z"
