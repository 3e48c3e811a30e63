"""The models of destinations, routes, deliveries, the DLQ, replays and the inbox
(api/delivery_models.py): each violation a 400 naming its field or parameter, what the models
cannot say a 422 naming it, and the document generated from the same models."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest
from starlette.requests import Request

from switchboard.api.contract import decode_body, decode_path, decode_query
from switchboard.api.delivery_models import (
    DeliveryQuery,
    DestinationChange,
    InboxPath,
    InboxQuery,
    Kind,
    NewDestination,
    ReplayIn,
    RoutesIn,
    Status,
)
from switchboard.api.destinations import parse_destination
from switchboard.api.event_shapes import MAX_FILTER
from switchboard.api.models import DELIVERY_STATUSES
from switchboard.api.openapi import openapi_document
from switchboard.channels.registry import KINDS
from switchboard.egress import Policy
from switchboard.errors import BadRequest, Unprocessable


def _request(body: bytes = b"", query: str = "", path_params: Any = None) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": query.encode(),
        "headers": [(b"content-type", b"application/json")],
        "path_params": path_params or {},
    }
    return Request(scope, receive)


def test_the_models_vocabularies_are_the_hubs() -> None:
    assert set(get_args(Kind)) == set(KINDS)
    assert set(get_args(Status)) == set(DELIVERY_STATUSES)


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "?limit"),
        ("limit=1001", "?limit"),
        ("limit=ten", "?limit"),
        ("status=lost", "?status"),
        ("cursor=" + "1" * 201, "?cursor"),
        ("destination=" + "d" * 201, "?destination"),
        ("filter=" + "x" * (MAX_FILTER + 1), "?filter"),
        ("from=" + "2" * 65, "?from"),
        ("&".join(["type=a"] * 51), "?type"),
        ("type=" + "a" * 201, "?type"),
    ],
)
def test_a_listing_query_violating_its_model_is_a_400_naming_the_parameter(
    query: str, path: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_query(_request(query=query), DeliveryQuery)
    (detail,) = caught.value.details
    assert detail["path"] == path or detail["path"].startswith(path + "."), detail


def test_parameters_left_out_are_unset_and_the_limit_defaults() -> None:
    q = decode_query(_request(query="type=a.b&type=c.*&from=2026-01-01T00:00:00Z"), DeliveryQuery)
    assert q.type == ["a.b", "c.*"] and q.from_ == "2026-01-01T00:00:00Z"
    assert q.limit == 100 and q.status is msgspec.UNSET and q.cursor is msgspec.UNSET
    assert decode_query(_request(query="unread=true&limit=500"), InboxQuery).limit == 500
    with pytest.raises(BadRequest) as caught:
        decode_query(_request(query="unread=1"), InboxQuery)
    assert caught.value.details[0]["path"] == "?unread"


def test_an_inbox_recipient_over_its_limit_is_a_400_naming_it() -> None:
    with pytest.raises(BadRequest) as caught:
        decode_path(_request(path_params={"recipient": "u" * 1001}), InboxPath)
    assert caught.value.details[0]["path"] == "recipient"


@pytest.mark.parametrize(
    ("model", "body", "path"),
    [
        (NewDestination, {"kind": "webhook"}, "/name"),
        (NewDestination, {"name": "d", "kind": "pigeon"}, "/kind"),
        (NewDestination, {"name": "d", "kind": "webhook", "timeot": 5}, "/timeot"),
        (DestinationChange, {"secrets": ["a", "b", "c"]}, "/secrets"),
        (DestinationChange, {"timeout": 0}, "/timeout"),
        (DestinationChange, {"concurrency": 1.5}, "/concurrency"),
        (DestinationChange, {"rate_per_second": 200_000}, "/rate_per_second"),
        (DestinationChange, {"retry_schedule": [0, 8 * 86400]}, "/retry_schedule/1"),
        (DestinationChange, {"retry_schedule": [1] * 31}, "/retry_schedule"),
        (DestinationChange, {"enabled": "yes"}, "/enabled"),
        (RoutesIn, {"name": "r", "destinations": ["d"], "priority": "urgent"}, "/priority"),
        (RoutesIn, {"name": "r", "destinations": "d", "sources": [1]}, "/sources"),
        (RoutesIn, {"routes": [{"destinations": ["d"]}]}, "/routes/0/name"),
        (RoutesIn, {"name": "r", "destinations": ["d"], "types": ["a" * 201]}, "/types"),
        (RoutesIn, {"name": "r", "destinations": ["d"], "requires_consent": ["Ads"]}, "/requires"),
        (ReplayIn, {"types": ["Not A Type"]}, "/types"),
        (ReplayIn, {"destinations": ["d"] * 1001}, "/destinations"),
        (ReplayIn, {"dry_run": "yes"}, "/dry_run"),
    ],
)
async def test_a_body_violating_its_model_is_a_400_naming_the_field(
    model: type[Any], body: dict[str, Any], path: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        await decode_body(_request(msgspec.json.encode(body)), model, 1_000_000)
    (detail,) = caught.value.details
    assert detail["path"].startswith(path), detail


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"timeout": 31}, "/timeout"),
        ({"concurrency": 101}, "/concurrency"),
        ({"config": {"url": "ftp://x"}}, "/config/url"),
        ({"config": {"url": "http://127.0.0.1/x"}}, "/config/url"),
        ({"retry_schedule": "0,5s,8d"}, "/retry_schedule/2"),
    ],
)
def test_what_the_model_cannot_say_is_a_422_naming_the_field(
    body: dict[str, Any], path: str
) -> None:
    base = {"name": "d", "kind": "webhook", "config": {"url": "https://example.com/hook"}}
    sent = msgspec.convert({**base, **body}, NewDestination)
    with pytest.raises(Unprocessable) as caught:
        parse_destination(sent, "t", None, Policy.parse(deny="127.0.0.0/8"), 30, 100)
    assert [d["path"] for d in caught.value.details] == [path]


def test_a_destination_patch_changes_only_what_it_sends() -> None:
    made = parse_destination(
        msgspec.convert(
            {"name": "d", "kind": "webhook", "config": {"url": "https://example.com/h"}},
            NewDestination,
        ),
        "t",
        None,
        Policy(),
    )
    assert made.secrets and made.timeout == 10 and made.retry_schedule is None
    changed = parse_destination(
        msgspec.convert({"retry_schedule": "0,5s", "rate_per_second": 2}, DestinationChange),
        "t",
        made,
        Policy(),
    )
    assert (changed.retry_schedule, changed.rate_per_second) == ((0.0, 5.0), 2.0)
    assert (changed.id, changed.name, changed.secrets, changed.config) == (
        made.id,
        made.name,
        made.secrets,
        made.config,
    )
    reset = parse_destination(
        msgspec.convert({"retry_schedule": None, "enabled": False}, DestinationChange),
        "t",
        changed,
        Policy(),
    )
    assert reset.retry_schedule is None and reset.enabled is False
    assert reset.rate_per_second == 2.0


def test_the_document_describes_the_area_from_its_models() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    config = schemas["NewDestination"]["properties"]["config"]["description"]
    assert all(f"{kind}:" in config for kind in KINDS)
    assert schemas["NewDestination"]["required"] == ["name", "kind"]
    assert not schemas["DestinationChange"].get("required")
    assert schemas["DestinationChange"]["additionalProperties"] is False
    listing = doc["paths"]["/v1/deliveries"]["get"]
    params = {p["name"]: p for p in listing["parameters"] if "name" in p}
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert params["status"]["schema"]["enum"] == sorted(DELIVERY_STATUSES)
    assert all("anyOf" not in p["schema"] for p in params.values())  # no null in a query
    assert listing["operationId"] == "listDeliveries"
    replays = doc["paths"]["/v1/replays"]["post"]["responses"]
    assert replays["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Replay")
