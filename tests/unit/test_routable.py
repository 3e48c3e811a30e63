"""Which accepted events make deliveries at ingest: not quarantined ones, not business duplicates
(the same rule replays apply)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from switchboard.envelope import build_event
from switchboard.ingest import routable
from switchboard.router import RouteError, parse_route

ROUTES = [
    parse_route(
        {"name": "all", "types": ["*"], "destinations": ["sink"]},
        route_id="r1",
        tenant_id="t",
        destination_ids={"sink": "d1"},
    )
]


def _event(context: dict[str, Any], status: str = "accepted") -> Any:
    e = build_event(
        {"type": "lead.created", "data": {}, "context": context},
        tenant_id="t",
        default_source="s",
        received_us=1,
    )
    return msgspec.structs.replace(e, status=status)


def test_an_ordinary_event_is_routed() -> None:
    assert [d.destination_id for d in routable(ROUTES, _event({}))] == ["d1"]


def test_a_business_duplicate_is_not_routed() -> None:
    assert routable(ROUTES, _event({"duplicate_of": "evt-1"})) == []


def test_a_null_duplicate_of_is_not_a_duplicate() -> None:
    assert len(routable(ROUTES, _event({"duplicate_of": None}))) == 1


def test_a_quarantined_event_is_not_routed() -> None:
    assert routable(ROUTES, _event({}, status="quarantined")) == []


def test_a_stored_route_loads_even_if_it_breaks_todays_limits() -> None:
    # saved before a limit existed (or was lowered): it must keep routing, not fail to load
    spec = {
        "name": "old",
        "destinations": ["d"],
        "filter": {"data.x": list(range(500))},
        "transform": "{{ data.__class__ and '{}' }}",
        "types": ["x" * 300],
    }
    route = parse_route(spec, route_id="r", tenant_id="t", destination_ids={"d": "d"}, stored=True)
    assert route.filter is not None
    with pytest.raises(RouteError):
        parse_route(spec, route_id="r", tenant_id="t", destination_ids={"d": "d"})
