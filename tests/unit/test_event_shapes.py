"""The published shapes of POST /v1/events against the parser that ingest really runs: the
fast path checks events by hand (`envelope.build_event`), the document is generated from the
models in `api/event_shapes.py`, and on every sample both must accept or both refuse."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import msgspec
import pytest

from switchboard.api.catalog import PiiClassName
from switchboard.api.event_shapes import BaseEvent, EmitEvent, Envelope, stored_event
from switchboard.api.openapi import openapi_document
from switchboard.envelope import EnvelopeError, Event, build_event
from switchboard.pii import PiiClass
from switchboard.sources import cloudevents

T = "2026-01-05T10:00:00-03:00"
LONG = "x" * 201
SAMPLES: list[tuple[str, Any, bool]] = [
    # native
    ("minimal", {"type": "a", "data": {}}, True),
    (
        "every field",
        {
            "type": "order.created",
            "data": {"n": 1},
            "id": "e1",
            "version": "1.0",
            "time": T,
            "source": "shop",
            "subject": "cust-1",
            "actor": {"id": "u1", "type": "user"},
            "trace_id": "t",
            "correlation_id": "c",
            "causation_id": "k",
            "context": {"ip": "1.2.3.4"},
        },
        True,
    ),
    ("numbers as ids", {"type": "a", "data": {}, "id": 42, "subject": 1.5}, True),
    ("nulls are absent", {"type": "a", "data": {}, "id": None, "actor": None, "time": None}, True),
    ("unknown fields ignored", {"type": "a", "data": {}, "whatever": [1]}, True),
    ("actor as a string", {"type": "a", "data": {}, "actor": "u1"}, True),
    ("actor with a number id", {"type": "a", "data": {}, "actor": {"id": 7}}, True),
    ("eventType beside type is native", {"type": "a", "eventType": "b", "data": {}}, True),
    ("UTC time", {"type": "a", "data": {}, "time": "2026-01-05T13:00:00Z"}, True),
    ("no type", {"data": {}}, False),
    ("type not a name", {"type": "Order Created", "data": {}}, False),
    ("type a number", {"type": 5, "data": {}}, False),
    ("no data", {"type": "a"}, False),
    ("data a list", {"type": "a", "data": [1]}, False),
    ("data a string", {"type": "a", "data": "x"}, False),
    ("context a list", {"type": "a", "data": {}, "context": [1]}, False),
    ("id empty", {"type": "a", "data": {}, "id": ""}, False),
    ("id too long", {"type": "a", "data": {}, "id": LONG}, False),
    ("id a boolean", {"type": "a", "data": {}, "id": True}, False),
    ("id an object", {"type": "a", "data": {}, "source": {"x": 1}}, False),
    ("actor empty", {"type": "a", "data": {}, "actor": ""}, False),
    ("actor too long", {"type": "a", "data": {}, "actor": LONG}, False),
    ("actor a number", {"type": "a", "data": {}, "actor": 5}, False),
    ("actor id too long", {"type": "a", "data": {}, "actor": {"id": LONG}}, False),
    ("time without a zone", {"type": "a", "data": {}, "time": "2026-01-05T10:00:00"}, False),
    ("time not a time", {"type": "a", "data": {}, "time": "yesterday"}, False),
    ("time a number", {"type": "a", "data": {}, "time": 1700000000}, False),
    # the legal-practice plan's BaseEvent
    (
        "BaseEvent",
        {
            "eventId": "b1",
            "eventType": "case.opened",
            "eventVersion": "1.0",
            "timestamp": T,
            "actor": "lawyer-1",
            "actorType": "user",
            "organizationId": "org-1",
            "payload": {"case": 1},
            "metadata": {"ipAddress": "1.2.3.4", "source": "app"},
        },
        True,
    ),
    ("BaseEvent minimal", {"eventType": "a", "payload": {}}, True),
    ("BaseEvent payload a list", {"eventType": "a", "payload": [1]}, False),
    ("BaseEvent metadata a list", {"eventType": "a", "payload": {}, "metadata": [1]}, False),
    ("BaseEvent bad type", {"eventType": "A B", "payload": {}}, False),
    (
        "BaseEvent organization too long",
        {"eventType": "a", "payload": {}, "organizationId": LONG},
        False,
    ),
    (
        "BaseEvent naive timestamp",
        {"eventType": "a", "payload": {}, "timestamp": "2026-01-05"},
        False,
    ),
    # the clinic checklist's emitEvent arguments
    (
        "emitEvent",
        {
            "eventType": "appointment.booked",
            "actor": "clinic",
            "clinicId": "clinic-7",
            "customerId": "cust-42",
            "timestamp": T,
            "eventId": "x1",
            "metadata": {"slot": "10:00"},
        },
        True,
    ),
    ("emitEvent minimal", {"eventType": "a"}, True),
    ("emitEvent number clinic", {"eventType": "a", "clinicId": 7, "actor": "clinic"}, True),
    ("emitEvent metadata a list", {"eventType": "a", "metadata": [1]}, False),
    ("emitEvent context a list", {"eventType": "a", "context": [1]}, False),
    ("emitEvent context a string", {"eventType": "a", "context": "ab"}, False),
    ("emitEvent clinicId an object", {"eventType": "a", "clinicId": {"x": 1}}, False),
    ("emitEvent customer too long", {"eventType": "a", "customerId": LONG}, False),
    ("emitEvent bad type", {"eventType": "Booked!"}, False),
    # not an event at all
    ("a number", 5, False),
    ("a string", "event", False),
]


_WHERE: dict[str, Any] = {"tenant_id": "t", "default_source": "s", "received_us": 1}


def _parser_accepts(doc: Any) -> bool:
    try:
        build_event(doc, **_WHERE)
    except EnvelopeError:
        return False
    return True


def _model_accepts(doc: Any) -> bool:
    """The models, read the way the document's anyOf reads them."""
    if not isinstance(doc, dict):
        return False
    if "type" in doc or "eventType" not in doc:
        shape: type[Any] = Envelope
    else:
        shape = BaseEvent if "payload" in doc else EmitEvent
    try:
        msgspec.convert(doc, shape)
    except msgspec.ValidationError:
        return False
    return True


def _published() -> jsonschema_rs.Draft202012Validator:
    doc = openapi_document()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


@pytest.mark.parametrize(("name", "doc", "valid"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_the_parser_the_models_and_the_document_agree(name: str, doc: Any, valid: bool) -> None:
    assert _parser_accepts(doc) is valid, "parser"
    assert _model_accepts(doc) is valid, "models"
    assert _published().is_valid(doc) is valid, "document"


def test_a_batch_publishes_each_item_as_one_of_the_shapes() -> None:
    items = [doc for _, doc, valid in SAMPLES if valid]
    assert _published().is_valid(items)
    for _, doc, valid in SAMPLES:
        if not valid:
            assert not _published().is_valid([items[0], doc]), doc
    assert not _published().is_valid([])
    assert not _published().is_valid([items[0]] * 1001)


def test_the_stored_event_model_is_the_same_shape_as_to_json() -> None:
    event = Event(
        tenant_id="t",
        id="e1",
        type="a",
        version="1.0",
        time_us=1_700_000_000_000_000,
        received_us=1_700_000_000_000_001,
        source="s",
        subject=None,
        actor_id="u1",
        actor_type=None,
        trace_id="tr",
        correlation_id="e1",
        causation_id=None,
        context={"ip": "1.2.3.4"},
        data={"n": [1, {"x": None}]},
        status="warned",
        errors=[{"path": "/data/n", "message": "m"}],
    )
    assert msgspec.to_builtins(stored_event(event)) == event.to_json()
    bare = msgspec.structs.replace(event, actor_id=None, errors=[], status="accepted")
    assert msgspec.to_builtins(stored_event(bare)) == bare.to_json()


def test_the_catalog_model_names_every_pii_class() -> None:
    assert set(PiiClassName.__args__) == {c.value for c in PiiClass}  # type: ignore[attr-defined]


CE = {"specversion": "1.0", "id": "c1", "source": "/shop", "type": "order.created"}
CLOUD_SAMPLES: list[tuple[str, Any, bool]] = [
    ("minimal", CE, True),
    (
        "every attribute",
        {
            **CE,
            "time": T,
            "subject": "cust-1",
            "datacontenttype": "application/json",
            "data": {"n": 1},
            "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "myextension": 5,
        },
        True,
    ),
    ("data not an object", {**CE, "data": [1, 2]}, True),
    ("binary data", {**CE, "data_base64": "AAEC"}, True),
    ("a number subject", {**CE, "subject": 7}, True),
    ("another specversion", {**CE, "specversion": "0.3"}, False),
    ("no id", {k: v for k, v in CE.items() if k != "id"}, False),
    ("empty source", {**CE, "source": ""}, False),
    ("type not a name", {**CE, "type": "Order Created"}, False),
    ("id too long", {**CE, "id": LONG}, False),
    ("time without a zone", {**CE, "time": "2026-01-05T10:00:00"}, False),
    ("not an object", [CE], False),
]


@pytest.mark.parametrize(("name", "doc", "valid"), CLOUD_SAMPLES, ids=[s[0] for s in CLOUD_SAMPLES])
def test_cloudevents_parser_and_document_agree(name: str, doc: Any, valid: bool) -> None:
    try:
        build_event(cloudevents.from_structured(doc), **_WHERE)
        parsed = True
    except EnvelopeError:
        parsed = False
    document = openapi_document()
    media = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    schema = {**media[cloudevents.STRUCTURED]["schema"], "components": document["components"]}
    published = jsonschema_rs.Draft202012Validator(schema, validate_formats=True).is_valid(doc)
    assert (parsed, published) == (valid, valid)


def test_the_catalog_body_names_every_pii_class_it_takes() -> None:
    schema = openapi_document()["components"]["schemas"]["EventTypeIn"]
    described = schema["properties"]["pii_classes"]["anyOf"][0]["description"]
    assert all(c.value in described for c in PiiClass), described
