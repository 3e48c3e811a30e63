"""Segment messages and CloudEvents mapped onto the envelope (pure)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.envelope import TYPE_RE, EnvelopeError, build_event, parse_time
from switchboard.sources import cloudevents, segment

RECEIVED = parse_time("2025-03-18T12:00:10Z", "/")


def test_track_maps_onto_the_envelope() -> None:
    native = segment.to_native(
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "m-1",
            "userId": "u-1",
            "anonymousId": "a-1",
            "properties": {"total": 30},
            "context": {"ip": "10.0.0.1"},
            "timestamp": "2025-03-18T12:00:00.000+00:00",
        },
        None,
        RECEIVED,
    )
    assert native["type"] == "order_completed"
    assert native["id"] == "m-1"
    assert native["subject"] == "u-1"
    assert native["data"] == {"total": 30}
    assert native["context"] == {
        "ip": "10.0.0.1",
        "anonymous_id": "a-1",
        "segment_event": "Order Completed",
    }
    event = build_event(native, tenant_id="t", default_source="segment", received_us=RECEIVED)
    assert event.time_us == parse_time("2025-03-18T12:00:00Z", "/")


def test_anonymous_subject_and_clock_skew_correction() -> None:
    native = segment.to_native(
        {
            "event": "Signed Up",
            "anonymousId": "a-9",
            "originalTimestamp": "2025-03-18T11:59:00Z",
            "sentAt": "2025-03-18T11:59:30Z",  # the device clock is 40 s behind the server's
        },
        "track",
        RECEIVED,
    )
    assert native["subject"] == "a-9"
    assert native["time"] == "2025-03-18T11:59:40Z"


@pytest.mark.parametrize(
    ("msg", "etype", "data"),
    [
        (
            {"type": "identify", "userId": "u", "traits": {"email": "a@b.c"}},
            "segment.identify",
            {"email": "a@b.c"},
        ),
        (
            {"type": "page", "userId": "u", "name": "Pricing", "properties": {"url": "/p"}},
            "segment.page",
            {"url": "/p", "name": "Pricing"},
        ),
        ({"type": "screen", "userId": "u", "name": "Home"}, "segment.screen", {"name": "Home"}),
        (
            {"type": "group", "userId": "u", "groupId": "g", "traits": {"plan": "pro"}},
            "segment.group",
            {"group_id": "g", "traits": {"plan": "pro"}},
        ),
        (
            {"type": "alias", "userId": "u", "previousId": "a"},
            "segment.alias",
            {"previous_id": "a", "user_id": "u"},
        ),
    ],
)
def test_other_calls(msg: dict[str, object], etype: str, data: dict[str, object]) -> None:
    native = segment.to_native(msg, None, RECEIVED)
    assert (native["type"], native["data"]) == (etype, data)


def test_bad_segment_messages_name_the_field() -> None:
    with pytest.raises(EnvelopeError) as info:
        segment.to_native({"type": "track"}, None, RECEIVED, "/batch/3")
    assert info.value.errors[0]["path"] == "/batch/3/event"
    with pytest.raises(EnvelopeError) as info:
        segment.to_native({"type": "boom"}, None, RECEIVED)
    assert info.value.errors[0]["path"] == "/type"


@given(st.text(min_size=1, max_size=80))
def test_normalized_event_names_are_valid_types_or_empty(name: str) -> None:
    normalized = segment.normalize_event_name(name)
    assert normalized == "" or TYPE_RE.match(normalized)


def test_short_paths_are_analytics_js_first_letters() -> None:
    assert {k: v for k, v in segment.PATH_TYPES.items() if len(k) == 1} == {
        "t": "track",
        "i": "identify",
        "p": "page",
        "s": "screen",
        "g": "group",
        "a": "alias",
    }


# --- CloudEvents ------------------------------------------------------------------------------


def test_structured_cloudevent_with_extensions() -> None:
    native = cloudevents.from_structured(
        {
            "specversion": "1.0",
            "id": "ce-1",
            "source": "/billing",
            "type": "invoice.paid",
            "time": "2025-03-18T12:00:00Z",
            "subject": "cust-1",
            "datacontenttype": "application/json",
            "data": {"amount": 10},
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "correlationid": "corr-1",
            "tenantregion": "br",
        }
    )
    assert native["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert native["correlation_id"] == "corr-1"
    assert native["context"] == {
        "datacontenttype": "application/json",
        "tenantregion": "br",
        "correlationid": "corr-1",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    event = build_event(native, tenant_id="t", default_source="x", received_us=0)
    assert (event.id, event.source, event.subject) == ("ce-1", "/billing", "cust-1")


def test_cloudevent_errors_and_non_object_data() -> None:
    with pytest.raises(EnvelopeError) as info:
        cloudevents.from_structured({"specversion": "1.0", "type": "a.b"})
    assert {e["path"] for e in info.value.errors} == {"/id", "/source"}
    with pytest.raises(EnvelopeError):
        cloudevents.from_structured({"specversion": "0.3", "id": "1", "source": "s", "type": "t"})
    native = cloudevents.from_structured(
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": [1, 2]}
    )
    assert native["data"] == {"value": [1, 2]}


def test_binary_mode_reads_headers_and_body() -> None:
    native = cloudevents.from_binary(
        {
            "ce-specversion": "1.0",
            "ce-id": "b-1",
            "ce-source": "/x",
            "ce-type": "a.b",
            "ce-subject": "caf%C3%A9",
            "content-type": "application/json",
        },
        b'{"k": 1}',
    )
    assert native["data"] == {"k": 1}
    assert native["subject"] == "café"
    raw = cloudevents.from_binary(
        {
            "ce-specversion": "1.0",
            "ce-id": "b-2",
            "ce-source": "/x",
            "ce-type": "a.b",
            "content-type": "image/png",
        },
        b"\x89PNG",
    )
    assert raw["data"] == {"data_base64": base64.b64encode(b"\x89PNG").decode()}


def test_batch_keeps_broken_events_in_place() -> None:
    out = cloudevents.from_batch(
        [
            {"specversion": "1.0", "id": "1", "source": "s", "type": "a.b"},
            {"specversion": "1.0", "id": "2"},
        ]
    )
    assert out[0]["id"] == "1"
    assert isinstance(out[1], EnvelopeError) and out[1].errors[0]["path"].startswith("/1/")
