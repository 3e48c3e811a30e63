"""Retention's pure policy: durations, the floor, cutoffs, type overrides."""

from __future__ import annotations

import pytest

from switchboard.catalog import CatalogError, event_type_to_dict, parse_event_type
from switchboard.retention import (
    DAY_US,
    RetentionError,
    effective_days,
    event_cutoffs,
    parse_retention,
    type_retentions,
)
from switchboard.store import StoredType


def test_durations_round_up_never_down() -> None:
    assert parse_retention("30 days") == 30
    assert parse_retention("1 day") == 1
    assert parse_retention("6 weeks") == 42
    assert parse_retention("18 months") == 18 * 31  # at least 18 calendar months
    assert parse_retention("12 Months") == 372 >= 366
    assert parse_retention("2 years") == 732
    assert parse_retention(400) == 400


@pytest.mark.parametrize("bad", ["", "18", "18 fortnights", "-1 days", "0 days", 0, True, 1.5, []])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(RetentionError):
        parse_retention(bad)


def test_the_floor_raises_what_is_set_and_leaves_unset_alone() -> None:
    assert effective_days(30, 365) == 365
    assert effective_days(500, 365) == 500
    assert effective_days(None, 365) is None  # nothing set: kept forever


def test_cutoffs_per_type_and_default() -> None:
    now = 1_000 * DAY_US
    c = event_cutoffs(now, {"essay.graded": 10, "lead.created": 500}, 100, 30)
    assert c.by_type == {"essay.graded": now - 30 * DAY_US, "lead.created": now - 500 * DAY_US}
    assert c.default_us == now - 100 * DAY_US
    assert event_cutoffs(now, {}, None, 30).default_us is None


def test_a_tenant_type_overrides_the_shared_one() -> None:
    stored = [
        StoredType("*", "a.b", "shared", {"retention": "12 months"}),
        StoredType("*", "c.d", "shared", {"retention": 90}),
        StoredType("t1", "c.d", "own", {}),  # the tenant's own c.d has no retention
        StoredType("t1", "e.f", "own", {"retention": "30 days"}),
    ]
    assert type_retentions(stored) == {"a.b": 372, "e.f": 30}


def test_catalog_types_carry_their_retention() -> None:
    doc = {
        "name": "essay.graded",
        "retention": "18 months",
        "versions": [{"version": "1.0", "schema": {"type": "object"}}],
    }
    spec = parse_event_type(doc)
    assert spec.retention == "18 months"
    assert parse_event_type(event_type_to_dict(spec)) == spec
    with pytest.raises(CatalogError, match="retention"):
        parse_event_type({**doc, "retention": "forever"})
