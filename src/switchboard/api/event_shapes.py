"""The shapes of the event endpoints: each way an event may be submitted to POST /v1/events
and its answer, then the parameters and answers of the reads (listings, timelines, metrics).

The ingest fast path does not decode through these models: `envelope.build_event` checks each
event by hand (faster, and a batch answers each event at its own index instead of refusing the
whole request). The models state the same rules for the published document, and
`tests/unit/test_event_shapes.py` holds them to the parser on a set of samples.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from switchboard.api.common import MAX_TYPE_GLOBS
from switchboard.api.contract import Model, Params
from switchboard.api.models import ErrorDetail, EventStatus
from switchboard.envelope import MAX_ID_LEN, TYPE_RE, Event, format_us

MAX_BATCH = 1000  # Settings.max_batch_events' default, as the document quotes it
MAX_FILTER = 8192  # characters of a `filter` pattern (the request line is bounded anyway)

TypeName = Annotated[
    str,
    Meta(
        pattern=TYPE_RE.pattern,
        description="The catalog type name: lowercase letters, digits, '.', '_' and '-'.",
        examples=["purchase_made"],
    ),
]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LEN)]
# Ids and names in an envelope: a non-empty text of at most 200 characters; a JSON number is
# taken as its text (`"id": 42` is the id "42"), as the systems behind the legacy shapes send.
Text = NonEmpty | int | float
Time = Annotated[
    datetime,
    Meta(tz=True, description="ISO 8601 with a timezone, e.g. 2026-01-05T10:00:00-03:00."),
]
Payload = dict[str, Any]


class Actor(Struct, kw_only=True):
    """Who caused an event."""

    id: Annotated[Text, Meta(description="The actor's id.")] | None = None
    type: Annotated[Text, Meta(description="Its kind: user, system, clinic…")] | None = None


class Envelope(Struct, kw_only=True):
    """The native event envelope; fields it does not name are ignored."""

    type: TypeName
    data: Annotated[Payload, Meta(description="The payload, validated by the catalog.")]
    id: (
        Annotated[Text, Meta(description="Unique per (tenant, source); a UUIDv7 if absent.")] | None
    ) = None
    version: (
        Annotated[
            Text, Meta(description="The catalog version; the newest that validates if absent.")
        ]
        | None
    ) = None
    time: Annotated[Time, Meta(description="When it happened (default: when received).")] | None = (
        None
    )
    source: (
        Annotated[Text, Meta(description="The system that emitted it (default: the key's source).")]
        | None
    ) = None
    subject: (
        Annotated[Text, Meta(description="Who or what it is about, e.g. a customer id.")] | None
    ) = None
    actor: (
        Annotated[Actor | NonEmpty, Meta(description="Who caused it; a string is the actor's id.")]
        | None
    ) = None
    trace_id: Annotated[Text, Meta(description="Generated if absent.")] | None = None
    correlation_id: Annotated[Text, Meta(description="Defaults to the event id.")] | None = None
    causation_id: (
        Annotated[Text, Meta(description="The id of the event that caused this one.")] | None
    ) = None
    context: (
        Annotated[Payload, Meta(description="Request metadata: ip, user_agent, utm_*…")] | None
    ) = None


class BaseEventMetadata(Struct, kw_only=True):
    """BaseEvent's metadata: it becomes the context (ipAddress → ip, userAgent → user_agent,
    requestId → request_id); its `source` is the event's source when the event names none."""

    source: Text | None = None


class BaseEvent(Struct, kw_only=True):
    """The legal-practice plan's BaseEvent, read when a body has `eventType` and `payload` and
    no `type`; fields it does not name are ignored."""

    eventType: TypeName
    payload: Annotated[Payload, Meta(description="Becomes `data`.")]
    eventId: Annotated[Text, Meta(description="Becomes `id`.")] | None = None
    eventVersion: Annotated[Text, Meta(description="Becomes `version`.")] | None = None
    timestamp: Time | None = None
    actor: Annotated[Text, Meta(description="The actor's id.")] | None = None
    actorType: Annotated[Text, Meta(description="The actor's kind.")] | None = None
    organizationId: (
        Annotated[Text, Meta(description="Becomes `subject` and context.organization_id.")] | None
    ) = None
    source: Text | None = None
    metadata: BaseEventMetadata | None = None
    trace_id: Text | None = None
    correlation_id: Text | None = None
    causation_id: Text | None = None


class EmitEvent(Struct, kw_only=True):
    """The clinic checklist's emitEvent({...}) arguments, read when a body has `eventType` and
    neither `type` nor `payload`; fields it does not name are ignored."""

    eventType: TypeName
    actor: (
        Annotated[
            Text,
            Meta(
                description="The actor's kind (clinic, system, customer, ai); with clinic or "
                "customer, clinicId or customerId is the actor's id."
            ),
        ]
        | None
    ) = None
    clinicId: Annotated[Text, Meta(description="Becomes context.clinic_id.")] | None = None
    customerId: Annotated[Text, Meta(description="Becomes `subject`.")] | None = None
    timestamp: Time | None = None
    eventId: Annotated[Text, Meta(description="Becomes `id`.")] | None = None
    version: Text | None = None
    source: Text | None = None
    metadata: Annotated[Payload, Meta(description="Becomes `data`.")] | None = None
    context: Payload | None = None
    trace_id: Text | None = None
    correlation_id: Text | None = None
    causation_id: Text | None = None


class CloudEvent(Struct, kw_only=True):
    """A CloudEvents 1.0 event in structured mode. `data` that is not an object is kept as
    {"value": …} and `data_base64` as {"data_base64": …}; extension attributes go to the
    context (a W3C `traceparent` also sets the trace id, `correlationid` and `causationid`
    the correlation and causation ids)."""

    specversion: Literal["1.0"]
    id: NonEmpty
    source: NonEmpty
    type: TypeName
    time: Time | None = None
    subject: Text | None = None
    datacontenttype: Annotated[Any, Meta(description="Kept in the context.")] = None
    dataschema: Annotated[Any, Meta(description="Kept in the context.")] = None
    data: Any = None
    data_base64: Annotated[Any, Meta(description="Base64 of binary data.")] = None
    traceparent: Annotated[Any, Meta(description="W3C trace context: sets the trace id.")] = None


# Which shape a body is read as: `type` makes it native; else `eventType` with `payload` a
# BaseEvent, `eventType` alone an emitEvent. The schemas say so, so no body fits two.
NATIVE = Annotated[
    Envelope,
    Meta(
        examples=[
            {
                "type": "purchase_made",
                "subject": "cust-42",
                "actor": {"id": "clinic-7", "type": "clinic"},
                "data": {
                    "value": 480.0,
                    "currency": "BRL",
                    "items": [{"categoria": "estetica_facial", "qty": 1, "price": 480.0}],
                },
            }
        ]
    ),
]
_NOT_NATIVE = {"not": {"required": ["type"]}}
_NOT_LEGAL = {"not": {"anyOf": [{"required": ["type"]}, {"required": ["payload"]}]}}
LEGAL = Annotated[BaseEvent, Meta(extra_json_schema=_NOT_NATIVE)]
CLINIC = Annotated[EmitEvent, Meta(extra_json_schema=_NOT_LEGAL)]
_REF = "#/components/schemas/{}"  # the components generated from the models above
# A batch answers each event at its own index, so a malformed item is rejected there while the
# others go on (a 202; a 422 only when every one is rejected).
EventBatch = Annotated[
    list[
        Annotated[
            Any,
            Meta(
                description="An event in one of the shapes; a malformed one is rejected at its "
                "index.",
                extra_json_schema={
                    "anyOf": [
                        {"$ref": _REF.format("Envelope")},
                        {"$ref": _REF.format("BaseEvent"), **_NOT_NATIVE},
                        {"$ref": _REF.format("EmitEvent"), **_NOT_LEGAL},
                    ]
                },
            ),
        ]
    ],
    Meta(min_length=1, max_length=MAX_BATCH, description="A batch of events."),
]
CloudEventBatch = Annotated[
    list[
        Annotated[
            Any,
            Meta(
                description="A CloudEvent; a malformed one is rejected at its index.",
                extra_json_schema={"$ref": _REF.format("CloudEvent")},
            ),
        ]
    ],
    Meta(min_length=1, max_length=MAX_BATCH, description="A CloudEvents batch."),
]


class IngestHeaders(Params):
    """The headers ingest reads beyond the key. CloudEvents binary mode (a `ce-specversion`
    header, the other attributes in `ce-*` headers, the body the data) is said in the
    operation's description and its `*/*` body, not as a parameter: the document cannot tie
    the JSON bodies' schema to a header's presence, so a fuzzer would send the header with a
    JSON body and take the data for a violation."""

    idempotency_key: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=255,
                description="Replays the stored response for 24 h instead of ingesting again.",
            ),
        ]
        | UnsetType
    ) = field(name="Idempotency-Key", default=UNSET)


class IngestResult(Model):
    index: Annotated[int, Meta(ge=0, description="Position in the request.")]
    status: Literal["accepted", "duplicate", "rejected"]
    id: str | None = None
    original_received_at: (
        Annotated[
            str, Meta(description="For a duplicate.", extra_json_schema={"format": "date-time"})
        ]
        | None
    ) = None
    errors: list[ErrorDetail] | None = None
    validation: Literal["warned", "quarantined"] | None = None
    warnings: list[ErrorDetail] | None = None


class IngestResponse(Model):
    results: list[IngestResult]
    accepted: Annotated[int, Meta(ge=0)]
    duplicates: Annotated[int, Meta(ge=0)]
    rejected: Annotated[int, Meta(ge=0)]


# --- the reads -----------------------------------------------------------------------------------

Id = Annotated[str, Meta(max_length=MAX_ID_LEN)]
TimeText = Annotated[
    str,
    Meta(max_length=64, extra_json_schema={"format": "date-time"}),
]


class Listing(Params):
    """The filters every listing of events takes."""

    type: Annotated[
        list[Annotated[str, Meta(max_length=2000, pattern=r"^[a-z0-9_.*?,\-]*(?!\n)$")]],
        Meta(
            max_length=MAX_TYPE_GLOBS,
            description="Event types (repeat or comma-separate; globs such as lead.*); at most "
            f"{MAX_TYPE_GLOBS}.",
        ),
    ] = field(default_factory=list)
    source: Annotated[Id, Meta(description="Exact source.")] | UnsetType = UNSET
    trace_id: Annotated[Id, Meta(description="Exact trace id.")] | UnsetType = UNSET
    correlation_id: Annotated[Id, Meta(description="Exact correlation id.")] | UnsetType = UNSET
    from_: Annotated[TimeText, Meta(description="Events at or after (ISO 8601).")] | UnsetType = (
        field(name="from", default=UNSET)
    )
    to: Annotated[TimeText, Meta(description="Events before (ISO 8601).")] | UnsetType = UNSET
    filter: (
        Annotated[
            str,
            Meta(
                max_length=MAX_FILTER,
                description='A JSON filter pattern, e.g. {"data.method":["pix"]} (see '
                f"docs/filters.md); at most {MAX_FILTER} characters.",
                extra_json_schema={"contentMediaType": "application/json"},
            ),
        ]
        | UnsetType
    ) = UNSET
    cursor: (
        Annotated[str, Meta(max_length=200, description="The next_cursor of the previous page.")]
        | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000, description="Page size (default 100).")] = 100


Status = Annotated[EventStatus, Meta(description="Validation outcome.")]


class TimelineQuery(Listing):
    status: Status | UnsetType = UNSET


class QuarantineQuery(Listing):
    subject: Annotated[Id, Meta(description="Exact subject.")] | UnsetType = UNSET
    actor: Annotated[Id, Meta(description="Exact actor id.")] | UnsetType = UNSET


class EventsQuery(QuarantineQuery):
    status: Status | UnsetType = UNSET


class EventPath(Params):
    event_id: Annotated[Id, Meta(description="The event's id.")]


class SourceQuery(Params):
    source: (
        Annotated[Id, Meta(description="The event's source, when one id exists under several.")]
        | UnsetType
    ) = UNSET


class ActorPath(Params):
    actor: Annotated[Id, Meta(description="The actor id.")]


class MetricsQuery(Params):
    granularity: Annotated[Literal["minute", "hour", "day"], Meta(description="Bucket size.")] = (
        "hour"
    )
    from_: Annotated[TimeText, Meta(description="Events at or after (ISO 8601).")] | UnsetType = (
        field(name="from", default=UNSET)
    )
    to: Annotated[TimeText, Meta(description="Events before (ISO 8601).")] | UnsetType = UNSET


Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]


class EventActor(Model):
    id: str | None
    type: str | None


class StoredEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A stored event with its validation outcome."""

    id: str
    type: str
    version: Annotated[str | None, Meta(description="The catalog version it validated against.")]
    time: Timestamp
    received_at: Timestamp
    source: str
    subject: str | None
    actor: EventActor | None
    trace_id: str
    correlation_id: str | None
    causation_id: str | None
    context: dict[str, Any]
    data: dict[str, Any]
    status: EventStatus
    validation_errors: list[ErrorDetail] | None = None  # only when there are some


class EventPage(Model):
    data: list[StoredEvent]
    next_cursor: (
        Annotated[str, Meta(description="Pass as ?cursor= for the next page; null at the end.")]
        | None
    )


class TypeCount(Model):
    total: Annotated[int, Meta(ge=0)]
    by_outcome: dict[str, Annotated[int, Meta(ge=0)]]


class Bucket(Model):
    start: Timestamp
    total: Annotated[int, Meta(ge=0)]
    by_type: dict[str, TypeCount]


class Metrics(Model):
    granularity: Literal["minute", "hour", "day"]
    from_: Timestamp = field(name="from")
    to: Timestamp
    buckets: list[Bucket]


class Resubmitted(Model):
    id: str
    status: Literal["accepted", "warned"]
    version: str | None


class StillQuarantined(Model):
    id: str
    status: Literal["quarantined"]
    errors: list[ErrorDetail]


def stored_event(e: Event) -> StoredEvent:
    """The public shape of a stored event (the same as `Event.to_json`, which the delivery
    payloads use; tests/unit/test_event_shapes.py holds the two together)."""
    return StoredEvent(
        id=e.id,
        type=e.type,
        version=e.version,
        time=format_us(e.time_us),
        received_at=format_us(e.received_us),
        source=e.source,
        subject=e.subject,
        actor=EventActor(id=e.actor_id, type=e.actor_type)
        if (e.actor_id or e.actor_type)
        else None,
        trace_id=e.trace_id,
        correlation_id=e.correlation_id,
        causation_id=e.causation_id,
        context=e.context,
        data=e.data,
        status=e.status,  # type: ignore[arg-type]  # the store holds only these
        validation_errors=[error_detail(d) for d in e.errors] if e.errors else None,
    )


def error_detail(d: dict[str, Any]) -> ErrorDetail:
    return ErrorDetail(path=str(d.get("path", "")), message=str(d.get("message", "")))
