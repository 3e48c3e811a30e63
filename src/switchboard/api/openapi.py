"""The OpenAPI 3.1 document for every HTTP route, built once from plain dicts.

`tests/unit/test_openapi.py` checks it against the app's routes, so a new route fails the tests
until it is described here. The limits quoted are the defaults of `Settings`. The module is long
because it is data: components first, then one function of operations per resource module.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from starlette.routing import Route

from switchboard.api import (
    admin,
    audit,
    automations,
    catalog,
    deliveries,
    events,
    messages,
    observe,
    purposes,
    recipients,
    retention,
    sources,
    subjects,
)
from switchboard.api import segment as segment_api
from switchboard.api.common import MAX_TYPE_GLOBS
from switchboard.api.contract import PUBLIC, Endpoint, Raw, endpoints_of
from switchboard.api.models import (
    CHANNEL_RE,
    EVENT_STATUSES,
    INBOUND_STATUSES,
)
from switchboard.envelope import TYPE_GLOB_RE
from switchboard.sources import PRESET_NAMES, segment

__all__ = ["openapi_document"]

Schema = dict[str, Any]
REF = "#/components/schemas/{name}"
Operation = tuple[str, str, dict[str, Any]]  # (path, method, operation object)

TAGS = [
    ("events", "Ingest events (native, legacy shapes, CloudEvents); query, timelines, metrics."),
    ("catalog", "Event types and their versioned JSON Schemas."),
    ("tenants & keys", "Tenants (admin) and the API keys of a tenant."),
    ("destinations & routes", "Where events go (webhook, Slack, WhatsApp…) and which go there."),
    ("deliveries", "One delivery per (event, destination), its attempts, provider receipts."),
    ("dlq", "Dead-lettered deliveries: list, count, retry, archive."),
    ("replays", "Re-route stored events through routes or straight to destinations."),
    ("inbox", "The in-app notification channel's items, per recipient."),
    ("recipients", "The people events are about: profiles, the consent ledger, preferences."),
    ("templates", "Message templates as code: variants per channel and locale, previews."),
    ("sources", "Inbound provider webhooks, their request log and mappings."),
    ("segment", "The Segment HTTP tracking API, for existing Segment clients."),
    (
        "automations",
        "Versioned step documents (wait, wait_for, send, emit, if, digest), triggered by events "
        "or a schedule, and their runs.",
    ),
    ("health", "Liveness, store health and this document."),
    ("subjects", "A data subject's rights: export everything held about them, erase it."),
    ("dashboard", "The web dashboard's HTML pages, signed in with a session cookie."),
]

TYPE_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,199}$"
TYPE_GLOB_PATTERN = TYPE_GLOB_RE.pattern  # a type, or a glob of one with * and ?
CHANNEL_PATTERN = CHANNEL_RE.pattern
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,62}$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,62}$"
SCOPES = ("ingest", "read", "manage", "pii")
ERRORS = {
    400: ("BadRequest", "Malformed JSON, body or parameters; `details` name the fields."),
    401: ("Unauthorized", "No API key, or an unknown or revoked one."),
    403: ("Forbidden", "The key lacks the scope, or an admin key sent no X-Switchboard-Tenant."),
    404: ("NotFound", "Nothing with that id in this tenant."),
    409: ("Conflict", "The change conflicts with what is stored."),
    413: ("PayloadTooLarge", "The body (or batch) is over the limit."),
    415: ("UnsupportedMedia", "The Content-Type is not one this operation reads."),
    422: ("Unprocessable", "Well-formed but invalid; `details` name every problem."),
    429: ("RateLimited", "The key or tenant is over its rate limit; wait Retry-After seconds."),
    431: ("HeadersTooLarge", "The request line and headers are over SWITCHBOARD_MAX_HEADER_BYTES."),
    503: ("Unavailable", "The store is unavailable; retry after Retry-After seconds."),
}


# --- small builders ---------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], *required: str, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": props, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _s(description: str = "", **extra: Any) -> Schema:
    """A string schema."""
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def _null(schema: Schema) -> Schema:
    """`schema` or null (3.1 spells it as a type list)."""
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _int(description: str = "", **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", **extra}
    if description:
        schema["description"] = description
    return schema


def _list(items: Schema) -> Schema:
    return _obj({"data": {"type": "array", "items": items}}, "data")


def _page(items: Schema) -> Schema:
    return {"allOf": [_ref("Page"), _obj({"data": {"type": "array", "items": items}})]}


def _writable(schema: Schema) -> Schema:
    """A PATCH body: the writable properties of `schema`, none required."""
    props = schema["properties"].items()
    return _obj({k: v for k, v in props if not v.get("readOnly")})


def _json(schema: Schema, description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path(name: str, description: str, **schema: Any) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": schema}


def _p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _limit(default: int, hi: int) -> Schema:
    return _query(
        "limit", f"Page size (default {default}).", _int(minimum=1, maximum=hi, default=default)
    )


def _op(
    route: str,
    op_id: str,
    tag: str,
    summary: str,
    description: str,
    *,
    scope: str,
    params: list[Schema] | tuple[Schema, ...] = (),
    body: Schema | None = None,
    content: dict[str, Any] | None = None,
    optional_body: bool = False,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...] = (),
) -> Operation:
    """One operation on `route` ("GET /v1/events") with an API key of `scope`: 401, 403, 503
    and the tenant header come with it; a JSON `body` (or a `content` map) brings 400, 413, 415.
    """
    method, path = route.split(" ")
    params = [*params] if scope == "admin" else [*params, _p("TenantHeader")]
    tenant = "" if scope == "admin" else " (or an admin key naming the tenant)"
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": f"{description} Scope: `{scope}`{tenant}.",
        "security": [{"bearerAuth": [scope]}],
    }
    if params:
        op["parameters"] = params
    codes = {*errors, 400, 401, 403, 503}  # 400: the tenant header and parameters are checked
    if body is not None or content is not None:
        media = content or {"application/json": {"schema": body}}
        op["requestBody"] = {"required": not optional_body, "content": media}
        codes |= {400, 413, 415}
    op["responses"] = {
        **{str(status): response for status, response in ok.items()},
        **{str(c): {"$ref": f"#/components/responses/{ERRORS[c][0]}"} for c in sorted(codes)},
    }
    return path, method.lower(), op


def _version_query() -> Schema:
    return _query("version", "A version number.", _int(minimum=1, maximum=2**31 - 1))


def _ok(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return _json(schema, description)


NO_CONTENT = {"description": "Done; no body."}


# --- components ------------------------------------------------------------------------------


def _source() -> Schema:
    return _obj(
        {
            "id": _s(readOnly=True, examples=["src_…"]),
            "name": _s(pattern=NAME_PATTERN),
            "preset": _s(enum=list(PRESET_NAMES)),
            "preset_config": {"type": "object"},
            "secrets": {"type": "array", "items": _s(), "maxItems": 2},
            "ip_allowlist": {"type": "array", "items": _s("A CIDR."), "maxItems": 100},
            "mapping": _null(_s(maxLength=200)),
            "mapping_version": _null(_s(maxLength=200)),
            "event_source": _s(maxLength=200),
            "dedup_window": _null(_int("Seconds; 0 turns business dedup off.", minimum=0)),
            "enabled": {"type": "boolean", "default": True},
            "url": _s("The public receiving URL.", readOnly=True),
            "counters": {"readOnly": True, **_ref("SourceCounters")},
            "secret": _s("A generated secret, shown once.", readOnly=True),
            "created_us": _int(readOnly=True),
            "updated_us": _int(readOnly=True),
        },
        "name",
        "preset",
    )


def _schemas() -> dict[str, Schema]:
    text = _s(maxLength=200, minLength=1)
    time = _s("ISO 8601 with a timezone.", format="date-time")
    actor = _obj({"id": _null(_s()), "type": _null(_s(examples=["user", "system", "clinic"]))})
    envelope_props: dict[str, Schema] = {
        "id": _s(
            "Unique per (tenant, source); generated (UUIDv7) if absent.", maxLength=200, minLength=1
        ),
        "type": _s("The catalog type name.", pattern=TYPE_PATTERN),
        "version": _s(
            "The catalog version; the newest that validates if absent.", maxLength=200, minLength=1
        ),
        "time": _s("When it happened (default: when received).", format="date-time"),
        "source": _s(
            "The system that emitted it (default: the key's source).", maxLength=200, minLength=1
        ),
        "subject": _s("Who or what it is about, e.g. a customer id.", maxLength=200, minLength=1),
        "actor": {
            "description": "Who caused it; a plain string is the actor's id.",
            "oneOf": [_ref("Actor"), text],
        },
        "trace_id": _s("Generated if absent.", maxLength=200, minLength=1),
        "correlation_id": _s("Defaults to the event id.", maxLength=200, minLength=1),
        "causation_id": _s("The id of the event that caused this one.", maxLength=200, minLength=1),
        "context": {"type": "object", "description": "Request metadata: ip, user_agent, utm_*…"},
        "data": {"type": "object", "description": "The payload, validated by the catalog."},
    }
    stored = {
        **envelope_props,
        "actor": _null(_ref("Actor")),
        "version": _null(_s("The catalog version it validated against.")),
        "subject": _null(_s("Who or what it is about.")),
        "causation_id": _null(_s("The id of the event that caused this one.")),
        "time": time,
        "received_at": time,
        "status": _s(enum=list(EVENT_STATUSES)),
        "validation_errors": {"type": "array", "items": _ref("ErrorDetail")},
    }
    version = _obj(
        {
            "version": _s("MAJOR.MINOR or MAJOR.MINOR.PATCH.", examples=["1.0"]),
            "schema": {"type": "object", "description": "A JSON Schema for `data`."},
            "examples": {"type": "array", "items": {"type": "object"}},
        },
        "version",
        "schema",
    )
    n = _int(minimum=0)
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": _s(examples=["schema_violation", "not_found"]),
                        "message": _s("Says how to fix the request."),
                        "details": {"type": "array", "items": _ref("ErrorDetail")},
                    },
                    "code",
                    "message",
                )
            },
            "error",
        ),
        "ErrorDetail": _obj(
            {"path": _s("A JSON pointer, or ?param.", examples=["/data/email"]), "message": _s()},
            "path",
            "message",
        ),
        "Actor": actor,
        "Envelope": _obj(
            envelope_props,
            "type",
            "data",
            description="The native event envelope.",
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
            ],
        ),
        "CloudEvent": _obj(
            {
                "specversion": _s(enum=["1.0"]),
                "id": _s(),
                "source": _s(),
                "type": _s(),
                "time": time,
                "subject": _s(),
                "datacontenttype": _s(),
                "data": {},
                "data_base64": _s(contentEncoding="base64"),
                "traceparent": _s("W3C trace context; its trace id becomes trace_id."),
            },
            "specversion",
            "id",
            "source",
            "type",
            description="A CloudEvents 1.0 event; extension attributes go to context.",
        ),
        "StoredEvent": _obj(stored, "id", "type", "time", "received_at", "source", "data"),
        "IngestResult": _obj(
            {
                "index": _int("Position in the request.", minimum=0),
                "status": _s(enum=["accepted", "duplicate", "rejected"]),
                "id": _s(),
                "original_received_at": _s("For a duplicate.", format="date-time"),
                "errors": {"type": "array", "items": _ref("ErrorDetail")},
                "validation": _s("warned or quarantined", enum=["warned", "quarantined"]),
                "warnings": {"type": "array", "items": _ref("ErrorDetail")},
            },
            "index",
            "status",
        ),
        "IngestResponse": _obj(
            {
                "results": {"type": "array", "items": _ref("IngestResult")},
                "accepted": n,
                "duplicates": n,
                "rejected": n,
            },
            "results",
            "accepted",
            "duplicates",
            "rejected",
        ),
        "Page": _obj(
            {
                "data": {"type": "array", "items": {}},
                "next_cursor": _null(_s("Pass as ?cursor= for the next page; null at the end.")),
            },
            "data",
            "next_cursor",
        ),
        "Metrics": _obj(
            {
                "granularity": _s(enum=["minute", "hour", "day"]),
                "from": time,
                "to": time,
                "buckets": {
                    "type": "array",
                    "items": _obj(
                        {
                            "start": time,
                            "total": n,
                            "by_type": {
                                "type": "object",
                                "additionalProperties": _obj(
                                    {
                                        "total": n,
                                        "by_outcome": {"type": "object", "additionalProperties": n},
                                    }
                                ),
                            },
                        }
                    ),
                },
            },
        ),
        "EventType": _obj(
            {
                "name": _s(pattern=TYPE_PATTERN, examples=["billing.payment_received"]),
                "description": _s(),
                "owner": _null(_s()),
                "mode": _s(enum=["enforce", "warn", "quarantine"], default="enforce"),
                "pii": {"type": "array", "items": _s("A dotted data path.")},
                "pii_classes": {
                    "type": "object",
                    "description": "A pii path → its masking class, where the path's name "
                    "does not say it.",
                    "additionalProperties": _s(
                        enum=["email", "phone", "cpf", "cnpj", "name", "ip", "free_text"]
                    ),
                },
                "index": {"type": "array", "items": _s("A dotted data path.")},
                "versions": {"type": "array", "items": version, "minItems": 1},
                "scope": _s(enum=["shared", "tenant"], readOnly=True),
                "catalog": _s(readOnly=True),
                "indexed": {"readOnly": True, "description": "On PUT: index paths now built."},
            },
            "name",
            "versions",
        ),
        "Source": _source(),
        "SourceCounters": _obj(
            {"received": n, "verified": n, "failed_verification": n, "events_produced": n}
        ),
        "InboundRequest": _obj(
            {
                "id": _s(),
                "source_id": _s(),
                "received_us": _int(),
                "remote_ip": _null(_s()),
                "headers": {"type": "object", "description": "Secrets masked."},
                "content_type": _null(_s()),
                "verified": {"type": "boolean"},
                "verification_error": _null(_s()),
                "status": _s(enum=list(INBOUND_STATUSES)),
                "mapping": _null(_s("name@version")),
                "event_ids": {"type": "array", "items": _s()},
                "error": _null(_s()),
                "size": n,
                "body": {"description": "The parsed JSON, or the text."},
            },
            "id",
            "status",
        ),
        "WebhookReply": _obj(
            {
                "request_id": _s(),
                "status": _s(enum=list(INBOUND_STATUSES)),
                "events": {"type": "array", "items": {"type": "object"}},
                "errors": {"type": "array", "items": _ref("ErrorDetail")},
                "error": _obj({"code": _s(), "message": _s()}),
            },
        ),
        "Mapping": _obj(
            {
                "name": _s(),
                "version": _s(),
                "description": _s(),
                "origin": _s(enum=["shipped", "tenant"]),
                "spec": {"type": "object", "description": "The mapping document."},
            },
            "name",
            "version",
        ),
        "SegmentMessage": _obj(
            {
                "type": _s(enum=list(segment.TYPES)),
                "event": _s(
                    "track: the event name, normalised (Order Completed → order_completed)"
                ),
                "userId": _s(),
                "anonymousId": _s(),
                "messageId": _s(),
                "timestamp": time,
                "properties": {"type": "object"},
                "traits": {"type": "object"},
                "context": {"type": "object"},
                "writeKey": _s("The write key, if not in Authorization."),
            },
            description="A Segment message (at most 32 KB).",
        ),
        "SegmentError": {
            "allOf": [
                _ref("Error"),
                _obj({"success": {"const": False}, "code": _s(), "message": _s()}),
            ]
        },
        "Health": _obj(
            {
                "status": _s(enum=["ok", "degraded"]),
                "store": _obj(
                    {
                        "backend": _s(enum=["sqlite", "postgres"]),
                        "reachable": {"type": "boolean"},
                        "migrations": _obj(
                            {
                                "current": _null(_s()),
                                "head": _null(_s()),
                                "up_to_date": {"type": "boolean"},
                            }
                        ),
                        "counts": {"type": "object", "additionalProperties": n},
                        "error": _s(),
                    }
                ),
                "backlog": _obj(
                    {
                        "due": n,
                        "oldest_due_seconds": {"type": "number", "minimum": 0},
                    }
                ),
            },
            "status",
        ),
    }


def _components() -> dict[str, Any]:
    retry_after = {
        "description": "Seconds to wait before retrying.",
        "schema": _int(minimum=1),
    }
    responses: dict[str, Any] = {}
    for status, (name, description) in ERRORS.items():
        response = _json(_ref("Error"), description)
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
        responses[name] = response
    return {
        "schemas": _schemas(),
        "responses": responses,
        "headers": {"RetryAfter": retry_after},
        "parameters": {
            "TenantHeader": {
                "name": "X-Switchboard-Tenant",
                "in": "header",
                "description": "Only with an admin key: the tenant to act in.",
                "schema": _s(pattern=TENANT_PATTERN),
            },
            "Type": {
                "name": "type",
                "in": "query",
                "description": "Event types (repeat or comma-separate; globs such as lead.*).",
                "schema": {
                    "type": "array",
                    "items": _s(pattern=TYPE_GLOB_PATTERN),
                    "maxItems": MAX_TYPE_GLOBS,
                },
                "style": "form",
                "explode": True,
            },
            "From": _query("from", "Events at or after (ISO 8601).", _s(format="date-time")),
            "To": _query("to", "Events before (ISO 8601).", _s(format="date-time")),
            "Filter": _query(
                "filter",
                'A JSON filter pattern, e.g. {"data.method":["pix"]} (see docs/filters.md).',
                _s(contentMediaType="application/json"),
            ),
            "Cursor": _query("cursor", "The next_cursor of the previous page.", _s()),
            "EventSource": _query(
                "source", "The event's source, when one id exists under several.", _s()
            ),
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    "An API key: `Authorization: Bearer sb_…`. Scopes: ingest (send events), "
                    "read (query), manage (change the tenant's configuration), admin (every "
                    "tenant; name one with X-Switchboard-Tenant)."
                ),
            },
            "segmentWriteKey": {
                "type": "http",
                "scheme": "basic",
                "description": "Segment's way: the write key (an ingest key) as the username.",
            },
        },
    }


# --- paths, one function per resource module ---------------------------------------------------


def _event_paths() -> list[Operation]:
    event_id = _path("event_id", "The event's id.", maxLength=200)
    listing = [
        _p("Type"),
        _query("source", "Exact source.", _s()),
        _query("subject", "Exact subject.", _s()),
        _query("actor", "Exact actor id.", _s()),
        _query("trace_id", "Exact trace id.", _s()),
        _query("correlation_id", "Exact correlation id.", _s()),
        _query("status", "Validation outcome.", _s(enum=list(EVENT_STATUSES))),
        _p("From"),
        _p("To"),
        _p("Filter"),
        _p("Cursor"),
        _limit(100, 1000),
    ]
    page = _ok(_page(_ref("StoredEvent")), "A page of events, newest first.")
    ce_headers = [
        {
            "name": h,
            "in": "header",
            "description": "CloudEvents binary mode: the body is data, attributes are headers.",
            "schema": _s(),
        }
        for h in ("ce-specversion", "ce-id", "ce-source", "ce-type")
    ]
    many = {"type": "array", "items": _ref("Envelope"), "minItems": 1, "maxItems": 1000}
    ingest = _op(
        "POST /v1/events",
        "ingestEvents",
        "events",
        "Send events",
        "Accept one event or a batch (at most 1000 events, 1 MiB): native envelopes, the "
        "legacy BaseEvent/emitEvent shapes, or CloudEvents (structured, batch or binary mode). "
        "Each event is answered at its index; 422 when every one is rejected.",
        scope="ingest",
        params=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "description": "Replays the stored response for 24 h instead of ingesting again.",
                "schema": _s(maxLength=255),
            },
            *ce_headers,
        ],
        ok={
            202: {
                "description": "Processed; see each result.",
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "true when this is a stored response.",
                        "schema": _s(enum=["true"]),
                    }
                },
                "content": {"application/json": {"schema": _ref("IngestResponse")}},
            },
            422: _ok(_ref("IngestResponse"), "Every event was rejected; see each result."),
        },
        errors=(400, 404, 413, 415, 429),
        content={
            "application/json": {"schema": {"oneOf": [_ref("Envelope"), many]}},
            "application/cloudevents+json": {"schema": _ref("CloudEvent")},
            "application/cloudevents-batch+json": {
                "schema": {"type": "array", "items": _ref("CloudEvent"), "maxItems": 1000}
            },
            "*/*": {"schema": {"description": "CloudEvents binary mode: the data, ce-* headers."}},
        },
    )
    timeline_params = [p for p in listing if p.get("name") not in ("subject", "actor")]
    return [
        ingest,
        _op(
            "GET /v1/events",
            "listEvents",
            "events",
            "List events",
            "Stored events matching every given filter, newest first.",
            scope="read",
            params=listing,
            ok={200: page},
            errors=(400,),
        ),
        _op(
            "GET /v1/events/{event_id}",
            "getEvent",
            "events",
            "Get an event",
            "One stored event with its validation status.",
            scope="read",
            params=[event_id, _p("EventSource")],
            ok={200: _ok(_ref("StoredEvent"))},
            errors=(404,),
        ),
        _op(
            "GET /v1/subjects/{subject}/timeline",
            "subjectTimeline",
            "events",
            "A subject's timeline",
            "Every event about one subject (e.g. a customer), newest first.",
            scope="read",
            params=[_path("subject", "The subject.", maxLength=200), *timeline_params],
            ok={200: page},
            errors=(400,),
        ),
        _op(
            "GET /v1/actors/{actor}/timeline",
            "actorTimeline",
            "events",
            "An actor's timeline",
            "Every event one actor caused, newest first.",
            scope="read",
            params=[_path("actor", "The actor id.", maxLength=200), *timeline_params],
            ok={200: page},
            errors=(400,),
        ),
        _op(
            "GET /v1/metrics/events",
            "eventMetrics",
            "events",
            "Event counts",
            "Counts per time bucket, type and outcome (default: the last 7 days by hour; at "
            "most 10,000 buckets).",
            scope="read",
            params=[
                _query(
                    "granularity",
                    "Bucket size.",
                    _s(enum=["minute", "hour", "day"], default="hour"),
                ),
                _p("From"),
                _p("To"),
            ],
            ok={200: _ok(_ref("Metrics"))},
            errors=(400,),
        ),
        _op(
            "GET /v1/quarantine",
            "listQuarantine",
            "events",
            "List quarantined events",
            "Events stored but not routed because they failed a quarantine-mode type.",
            scope="read",
            params=[p for p in listing if p.get("name") != "status"],
            ok={200: page},
            errors=(400,),
        ),
        _op(
            "POST /v1/quarantine/{event_id}/resubmit",
            "resubmitQuarantined",
            "events",
            "Validate a quarantined event again",
            "After a schema fix: if the event passes now it becomes accepted (stored payloads "
            "are immutable; send a corrected event with a new id to change data).",
            scope="manage",
            params=[event_id, _p("EventSource")],
            ok={
                200: _ok(
                    _obj({"id": _s(), "status": _s(), "version": _null(_s())}),
                    "Accepted now.",
                ),
                422: _ok(
                    _obj(
                        {
                            "id": _s(),
                            "status": {"const": "quarantined"},
                            "errors": {"type": "array", "items": _ref("ErrorDetail")},
                        }
                    ),
                    "Still invalid; stays quarantined.",
                ),
            },
            errors=(404,),
        ),
    ]


def _catalog_paths() -> list[Operation]:
    name = _path("name", "The event type name.", pattern=TYPE_PATTERN)
    return [
        _op(
            "GET /v1/event-types",
            "listEventTypes",
            "catalog",
            "List event types",
            "The tenant's types and the shared catalog's.",
            scope="read",
            ok={200: _ok(_list(_ref("EventType")))},
        ),
        _op(
            "GET /v1/event-types/{name}",
            "getEventType",
            "catalog",
            "Get an event type",
            "The tenant's type of that name, else the shared one.",
            scope="read",
            params=[name],
            ok={200: _ok(_ref("EventType"))},
            errors=(404,),
        ),
        _op(
            "PUT /v1/event-types/{name}",
            "putEventType",
            "catalog",
            "Create or extend an event type",
            "Stored versions must not change incompatibly (409). `?shared=true` writes "
            "the shared catalog and needs the `admin` scope.",
            scope="manage",
            params=[
                name,
                _query("shared", "Write the shared catalog.", {"type": "boolean"}),
            ],
            body=_ref("EventType"),
            ok={200: _ok(_ref("EventType"), "Stored.")},
            errors=(409, 422),
        ),
    ]


def _source_paths() -> list[Operation]:
    source_id = _path("source_id", "The source id (src_…).")
    tag = "sources"
    time = _s(format="date-time")
    return [
        _op(
            "POST /v1/sources",
            "createSource",
            tag,
            "Create a source",
            "A receiving endpoint for a provider's webhooks; a secret is generated (and "
            "shown once) if none is sent.",
            scope="manage",
            body=_ref("Source"),
            ok={201: _ok(_ref("Source"), "Created; `url` is the receiving URL.")},
            errors=(409,),
        ),
        _op(
            "GET /v1/sources",
            "listSources",
            tag,
            "List sources",
            "Every source of the tenant, with counters.",
            scope="read",
            ok={200: _ok(_list(_ref("Source")))},
        ),
        _op(
            "GET /v1/sources/{source_id}",
            "getSource",
            tag,
            "Get a source",
            "One source, secrets masked, with counters.",
            scope="read",
            params=[source_id],
            ok={200: _ok(_ref("Source"))},
            errors=(404,),
        ),
        _op(
            "PATCH /v1/sources/{source_id}",
            "updateSource",
            tag,
            "Change a source",
            "Only the fields sent change (e.g. pin another mapping_version).",
            scope="manage",
            params=[source_id],
            body=_writable(_source()),
            ok={200: _ok(_ref("Source"))},
            errors=(404,),
        ),
        _op(
            "DELETE /v1/sources/{source_id}",
            "deleteSource",
            tag,
            "Delete a source",
            "Its receiving URL answers 404 afterwards.",
            scope="manage",
            params=[source_id],
            ok={204: NO_CONTENT},
            errors=(404,),
        ),
        _op(
            "POST /v1/sources/{source_id}/secrets",
            "rotateSourceSecret",
            tag,
            "Rotate a source's secret",
            "Adds a secret (given or generated) as the newest; the previous one stays valid "
            "until the next rotation. The body may be empty.",
            scope="manage",
            params=[source_id],
            body=_obj({"secret": _null(_s(minLength=1))}),
            optional_body=True,
            ok={200: _ok(_ref("Source"), "Rotated; a generated secret is in `secret`.")},
            errors=(404,),
        ),
        (
            "/v1/sources/{source_id}/webhook",
            "post",
            {
                "operationId": "receiveWebhook",
                "tags": [tag],
                "summary": "Receive a provider webhook",
                "description": "The public receiving URL: no API key; the source's preset "
                "(signature, token, IP allowlist) authenticates it. JSON or form bodies, gzip "
                "allowed, at most 1 MiB. Every request is logged.",
                "security": [],
                "parameters": [source_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {}},
                        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                    },
                },
                "responses": {
                    "200": _ok(_ref("WebhookReply"), "Processed, partial or ignored."),
                    "400": _ok(_ref("WebhookReply"), "The body is neither JSON nor a form."),
                    "401": _ok(_ref("WebhookReply"), "Bad or missing signature or token."),
                    "403": _ok(_ref("WebhookReply"), "The address is not in the allowlist."),
                    "404": _ok(_ref("WebhookReply"), "No such source, or it is disabled."),
                    "413": {"$ref": "#/components/responses/PayloadTooLarge"},
                    "422": _ok(_ref("WebhookReply"), "Every event it produced was rejected."),
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            },
        ),
        _op(
            "GET /v1/sources/{source_id}/requests",
            "listSourceRequests",
            tag,
            "A source's request log",
            "Received requests, newest first, with the source's counters.",
            scope="read",
            params=[
                source_id,
                _query("status", "Outcome.", _s(enum=list(INBOUND_STATUSES))),
                _query("verified", "Verification passed.", {"type": "boolean"}),
                _query("body", "Include bodies (default true).", {"type": "boolean"}),
                _p("Cursor"),
                _limit(50, 500),
            ],
            ok={
                200: _ok(
                    {
                        "allOf": [
                            _page(_ref("InboundRequest")),
                            _obj({"counters": _ref("SourceCounters")}),
                        ]
                    }
                )
            },
            errors=(400, 404),
        ),
        _op(
            "GET /v1/sources/{source_id}/requests/{request_id}",
            "getSourceRequest",
            tag,
            "Get a logged request",
            "One received request with headers (secrets masked) and body.",
            scope="read",
            params=[source_id, _path("request_id", "The request id.")],
            ok={200: _ok(_ref("InboundRequest"))},
            errors=(404,),
        ),
        _op(
            "POST /v1/sources/{source_id}/reprocess",
            "reprocessSource",
            tag,
            "Reprocess logged requests",
            "Runs stored verified requests through a mapping version (dry run by default): "
            "counts and sample events.",
            scope="manage",
            params=[source_id],
            body=_obj(
                {
                    "mapping": _s("Default: the source's mapping."),
                    "mapping_version": _s(),
                    "from": time,
                    "to": time,
                    "dry_run": {"type": "boolean", "default": True},
                    "limit": _int(minimum=1, maximum=100000, default=10000),
                }
            ),
            ok={
                200: _ok(
                    _obj(
                        {
                            "mapping": _s("name@version"),
                            "dry_run": {"type": "boolean"},
                            "counts": {"type": "object", "additionalProperties": _int()},
                            "samples": {"type": "array", "items": {"type": "object"}},
                        }
                    )
                )
            },
            errors=(404,),
        ),
        _op(
            "GET /v1/mappings",
            "listMappings",
            tag,
            "List mappings",
            "The shipped mappings and the tenant's own versions.",
            scope="read",
            ok={200: _ok(_list(_ref("Mapping")))},
        ),
        _op(
            "PUT /v1/mappings/{name}/{version}",
            "putMapping",
            tag,
            "Store a mapping version",
            "A tenant's own mapping version; versions are immutable (409 if it exists).",
            scope="manage",
            params=[_path("name", "Mapping name."), _path("version", "Mapping version.")],
            body={
                "type": "object",
                "description": "The mapping document (see docs/sources.md).",
            },
            ok={201: _ok(_ref("Mapping"), "Stored.")},
            errors=(409,),
        ),
    ]


def _segment_body(kind: str) -> Schema:
    """A message at a call's own URL; a track call needs its event name."""
    if kind != "track":
        return _ref("SegmentMessage")
    return {
        "allOf": [
            _ref("SegmentMessage"),
            {"required": ["event"], "properties": {"event": {"type": "string", "minLength": 1}}},
        ]
    }


def _segment_paths() -> list[Operation]:
    def error(description: str) -> dict[str, Any]:
        return _ok(_ref("SegmentError"), description)

    def op(op_id: str, summary: str, description: str, body: Schema, limit: str) -> dict[str, Any]:
        return {
            "operationId": op_id,
            "tags": ["segment"],
            "summary": summary,
            "description": description
            + f" Body at most {limit}, gzip allowed. The write key is an API key with the "
            "`ingest` scope: Basic-auth username, Bearer token, or `writeKey` in the body.",
            "security": [{"segmentWriteKey": []}, {"bearerAuth": ["ingest"]}, {}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": _ok(_obj({"success": {"const": True}}, "success"), "Accepted."),
                "400": error("Malformed JSON or message."),
                "401": error("No write key, or an unknown one."),
                "403": error("The key lacks the ingest scope."),
                "404": error("The key's tenant does not exist."),
                "413": error("Over the size limit."),
                "429": {
                    **error("Over the rate limit."),
                    "headers": {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
                },
                "503": {"$ref": "#/components/responses/Unavailable"},
            },
        }

    out: list[Operation] = []
    for kind in segment.TYPES:
        for path, suffix in ((kind, ""), (kind[0], "Short")):
            out.append(
                (
                    f"/v1/{path}",
                    "post",
                    op(
                        f"segment{kind.title()}{suffix}",
                        f"Segment {kind}" + (f" (analytics.js /v1/{path})" if suffix else ""),
                        f"One Segment {kind} call, mapped onto an event; a message the catalog "
                        "rejects is logged, the answer stays 200 like Segment's.",
                        _segment_body(kind),
                        "32 KB",
                    ),
                )
            )
    batch = _obj(
        {
            "batch": {"type": "array", "items": _ref("SegmentMessage")},
            "context": {"type": "object", "description": "Merged into every message."},
            "integrations": {"type": "object"},
            "writeKey": _s(),
        },
        "batch",
    )
    for path, op_id in (("batch", "segmentBatch"), ("b", "segmentBatchShort")):
        out.append(
            (
                f"/v1/{path}",
                "post",
                op(
                    op_id,
                    "Segment batch" + (" (analytics.js)" if path == "b" else ""),
                    "Many Segment messages at once; rejected ones are logged, not answered.",
                    batch,
                    "500 KB (32 KB per message)",
                ),
            )
        )
    return out


def _recipient_paths() -> list[Operation]:
    tag = "recipients"
    rid = _path("id", "The recipient: the `subject` of the events about them.", maxLength=200)
    profile = {
        "email": _null(_s("Contact email.", minLength=1, maxLength=500)),
        "phone": _null(_s("Phone / WhatsApp number.", minLength=1, maxLength=500)),
        "locale": _null(_s("Language tag, e.g. pt-BR.", minLength=1, maxLength=500)),
        "timezone": _null(
            _s("IANA time zone, e.g. America/Sao_Paulo.", minLength=1, maxLength=500)
        ),
        "name": _null(_s(minLength=1, maxLength=500)),
        "attributes": {"type": "object", "maxProperties": 50},
    }
    recipient = _obj(
        {
            "id": _s(readOnly=True),
            **profile,
            "created_at": _s(format="date-time", readOnly=True),
            "updated_at": _s(format="date-time", readOnly=True),
        },
        "id",
    )
    purpose = _s("A lowercase word: marketing, processing, …", pattern=r"^[a-z][a-z0-9_]{0,39}$")
    fields = {
        name: _null(_s(maxLength=500))
        for name in ("terms_version", "legal_basis", "origin", "ip", "user_agent")
    }
    consent_in = _obj(
        {
            "purpose": purpose,
            "action": _s(enum=["grant", "withdraw"]),
            "at": _null(
                _s("When the person decided (default: now).", format="date-time", minLength=1)
            ),
            **fields,
        },
        "purpose",
        "action",
        additionalProperties=False,
    )
    consent = _obj(
        {
            "id": _s(),
            "purpose": purpose,
            "action": _s(enum=["grant", "withdraw"]),
            "at": _s(format="date-time"),
            **fields,
            "event_id": _null(_s("The event that recorded it, if any.")),
            "recorded_at": _s(format="date-time"),
        },
        "id",
        "purpose",
        "action",
    )
    prefs = _obj(
        {
            "preferences": {
                "type": "array",
                "maxItems": 200,
                "items": _obj(
                    {
                        "topic": _s(
                            "An event type, a glob of types, or a catalog category.",
                            pattern=TYPE_GLOB_PATTERN,
                            maxLength=200,
                        ),
                        "channel": _s(
                            "A destination kind (email, whatsapp, inbox…) or *.",
                            pattern=CHANNEL_PATTERN,
                        ),
                        "enabled": {"type": "boolean"},
                    },
                    "topic",
                    "enabled",
                    additionalProperties=False,
                ),
            }
        },
        "preferences",
    )
    return [
        _op(
            "GET /v1/recipients/{id}",
            "getRecipient",
            tag,
            "Get a recipient",
            "The profile: contact points, locale, time zone, attributes.",
            scope="read",
            params=[rid],
            ok={200: _ok(recipient)},
            errors=(404,),
        ),
        _op(
            "PUT /v1/recipients/{id}",
            "putRecipient",
            tag,
            "Create or replace a recipient",
            "Fields absent from the body are cleared.",
            scope="manage",
            params=[rid],
            body=_obj(profile),
            ok={200: _ok(recipient, "Replaced."), 201: _ok(recipient, "Created.")},
            errors=(422,),
        ),
        _op(
            "PATCH /v1/recipients/{id}",
            "patchRecipient",
            tag,
            "Change a recipient",
            "Only the fields in the body change; null clears one; attributes merge key by key.",
            scope="manage",
            params=[rid],
            body=_obj(profile),
            ok={200: _ok(recipient)},
            errors=(404, 422),
        ),
        _op(
            "DELETE /v1/recipients/{id}",
            "deleteRecipient",
            tag,
            "Delete a recipient",
            "The profile and preferences are deleted; the consent ledger is kept as proof.",
            scope="manage",
            params=[rid],
            ok={204: NO_CONTENT},
            errors=(404,),
        ),
        _op(
            "GET /v1/recipients/{id}/consents",
            "listConsents",
            tag,
            "The consent ledger of a recipient",
            "Every grant and withdrawal, newest first, and the current state per purpose.",
            scope="read",
            params=[rid, _limit(100, 1000)],
            ok={
                200: _ok(
                    _obj(
                        {
                            "state": {
                                "type": "object",
                                "additionalProperties": _s(enum=["granted", "withdrawn"]),
                            },
                            "data": {"type": "array", "items": consent},
                        },
                        "state",
                        "data",
                    )
                )
            },
        ),
        _op(
            "POST /v1/recipients/{id}/consents",
            "addConsent",
            tag,
            "Record a grant or a withdrawal",
            "Appended to the ledger. A withdrawal cancels the recipient's deliveries still "
            "waiting in routes that require the purpose (reason `consent:<purpose>`).",
            scope="manage",
            params=[rid],
            body=consent_in,
            ok={201: _ok(consent, "Recorded.")},
            errors=(422,),
        ),
        _op(
            "GET /v1/recipients/{id}/preferences",
            "getPreferences",
            tag,
            "A recipient's preferences",
            "Opt-ins and opt-outs per topic and channel.",
            scope="read",
            params=[rid],
            ok={200: _ok(prefs)},
            errors=(404,),  # an id whose route does not match (a stray "/")
        ),
        _op(
            "PUT /v1/recipients/{id}/preferences",
            "putPreferences",
            tag,
            "Replace a recipient's preferences",
            "The most specific preference decides; types marked critical ignore opt-outs.",
            scope="manage",
            params=[rid],
            body=prefs,
            ok={200: _ok(prefs)},
            errors=(422,),
        ),
    ]


def _template_paths() -> list[Operation]:
    tag = "templates"
    name = _path("name", "The template's name.", pattern=r"^[a-z][a-z0-9_.\-]{0,62}$")
    variant = {
        "type": "object",
        "required": ["channel", "locale"],
        "properties": {
            "channel": _s(
                enum=["email", "whatsapp", "slack", "discord", "inbox", "webhook", "sms"]
            ),
            "locale": _s("A language tag: pt-BR, en, es…"),
        },
        "description": "Jinja2 templates per channel field: email subject/html/text, whatsapp "
        "text/buttons, slack text/blocks, discord text, inbox title/body/link, webhook body "
        "(JSON out, sent instead of the route's transform).",
    }
    template = _obj(
        {
            "name": _s(),
            "description": _s(),
            "default_locale": _s("The end of the locale fallback chain."),
            "variants": {"type": "array", "items": variant, "minItems": 1, "maxItems": 50},
            "version": _int("Applied versions count up from 1.", readOnly=True),
            "created_at": _s(format="date-time", readOnly=True),
        },
        "variants",
    )
    rendered = _obj(
        {
            "channel": _s(),
            "locale": _s("The variant the chain chose."),
            "rendered": {"type": "object"},
            "errors": {"type": "array", "items": _s()},
        }
    )
    return [
        _op(
            "GET /v1/templates",
            "listTemplates",
            tag,
            "List templates",
            "Every template of the tenant with its latest version.",
            scope="read",
            ok={200: _ok(_list(_obj({"name": _s(), "version": _int()})))},
        ),
        _op(
            "GET /v1/templates/{name}",
            "getTemplate",
            tag,
            "Get a template",
            "The latest version, or `?version=N`.",
            scope="read",
            params=[
                name,
                _version_query(),
            ],
            ok={200: _ok(template)},
            errors=(404,),
        ),
        _op(
            "PUT /v1/templates/{name}",
            "putTemplate",
            tag,
            "Apply a template",
            "Stored as a new version when it changed (201), answered as is when not (200). "
            "Every field must compile; problems name their path and line.",
            scope="manage",
            params=[name],
            body=template,
            ok={201: _ok(template, "A new version."), 200: _ok(template, "Unchanged.")},
            errors=(422,),
        ),
        _op(
            "POST /v1/templates/{name}/preview",
            "previewTemplate",
            tag,
            "Preview a template",
            "Every channel's variant, chosen by the locale chain (the body's locale, else the "
            "recipient's, else the event's context.locale), rendered for the event.",
            scope="read",
            params=[name],
            body=_obj(
                {
                    "event": {"type": "object"},
                    "recipient": {"type": ["string", "object"]},
                    "locale": _s(),
                },
                "event",
            ),
            ok={
                200: _ok(
                    _obj(
                        {
                            "name": _s(),
                            "version": _int(),
                            "locale": _null(_s()),
                            "chain": {"type": "array", "items": _s()},
                            "variants": {"type": "array", "items": rendered},
                        }
                    )
                )
            },
            errors=(404,),
        ),
    ]


def _health_paths() -> list[Operation]:
    def op(op_id: str, summary: str, description: str, ok: dict[str, Any]) -> dict[str, Any]:
        return {
            "operationId": op_id,
            "tags": ["health"],
            "summary": summary,
            "description": description,
            "security": [],
            "responses": ok,
        }

    token = _path(
        "token",
        "The signed token of the link (base64url, a dot, base64url).",
        maxLength=2048,
        pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$",
    )
    page = {"description": "An HTML page.", "content": {"text/html": {"schema": _s()}}}
    unsubscribe = [
        (
            "/v1/unsubscribe/{token}",
            method,
            {
                "operationId": op_id,
                "tags": ["recipients"],
                "summary": summary,
                "description": description,
                "security": [],
                "parameters": [token],
                "responses": {
                    "200": page,
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "431": {"$ref": "#/components/responses/HeadersTooLarge"},
                },
            },
        )
        for method, op_id, summary, description in (
            (
                "get",
                "unsubscribePage",
                "Unsubscribe page",
                "A link followed in a browser: a page with a button that POSTs. Changes nothing "
                "(mail scanners prefetch links). No API key: the token is signed.",
            ),
            (
                "post",
                "unsubscribe",
                "One-click unsubscribe (RFC 8058)",
                "Opts the recipient out of the link's topic on its channel. Idempotent. "
                "No API key: the token is signed.",
            ),
        )
    ]
    return [
        *unsubscribe,
        (
            "/health",
            "get",
            op(
                "health",
                "Liveness",
                "Answers while the process runs; touches nothing else.",
                {"200": _ok(_obj({"status": {"const": "ok"}}, "status"))},
            ),
        ),
        (
            "/health/detailed",
            "get",
            op(
                "healthDetailed",
                "Store health",
                "Store reachability and migration revision, for anyone; with an admin key "
                "also the row counts (they span every tenant). Any other key is refused.",
                {
                    "200": _ok(_ref("Health"), "Healthy."),
                    "503": _ok(_ref("Health"), "Degraded: the store is unreachable or behind."),
                },
            ),
        ),
        (
            "/openapi.json",
            "get",
            op(
                "openapi",
                "This document",
                "The OpenAPI 3.1 description of the API.",
                {"200": _ok({"type": "object"})},
            ),
        ),
        (
            "/docs",
            "get",
            op(
                "docs",
                "API reference page",
                "Swagger UI over /openapi.json.",
                {"200": {"description": "HTML", "content": {"text/html": {"schema": _s()}}}},
            ),
        ),
        (
            "/docs/assets/{name}",
            "get",
            {
                **op(
                    "docsAsset",
                    "API reference page assets",
                    "Swagger UI's stylesheet, script and icon, served from the installed "
                    "package (no third-party CDN): swagger-ui.css, swagger-ui-bundle.js, "
                    "favicon-32x32.png.",
                    {
                        "200": {"description": "The file."},
                        "404": {"description": "Not one of the page's assets."},
                    },
                ),
                "parameters": [_path("name", "The asset's file name.")],
            },
        ),
    ]


def _automation_paths() -> list[Operation]:
    tag = "automations"
    name = _path("name", "The automation's name.", pattern=NAME_PATTERN)
    run_id = _path("run_id", "The run id.")
    document = _obj(
        {
            "name": _s(pattern=NAME_PATTERN),
            "on": {
                "type": ["string", "array", "object"],
                "items": _s(pattern=TYPE_GLOB_PATTERN),
                "properties": {
                    "schedule": _s(description='Five-field cron, e.g. "0 9 * * *".'),
                    "timezone": _s(description="IANA time zone (default UTC)."),
                },
                "description": "The event type(s) or globs that start a run, or "
                '{"schedule", "timezone"} (at most one fire every 5 minutes).',
            },
            "filter": {"type": "object", "description": "A filter pattern over the trigger."},
            "steps": {
                "type": "array",
                "description": "wait, wait_for, send, emit, if and digest (first step only) "
                "steps (docs/automations.md).",
                "items": {"type": "object"},
            },
            "cancel_on": {"type": "array", "items": {"type": "object"}},
            "dedupe": _obj({"key": _s(), "window": _s()}),
            "debounce": _obj({"key": _s(), "period": _s(), "max_wait": _s()}, "period"),
            "description": _s(),
            "requires_consent": {
                "type": "array",
                "maxItems": 8,
                "items": _s(pattern=r"^[a-z][a-z0-9_]{0,39}$"),
                "description": "Consent purposes the trigger's subject must have granted.",
            },
        },
        "on",
        "steps",
        description="An automation document (at most 64 KiB, 50 steps, durations up to a year).",
    )
    stored = _obj(
        {
            "name": _s(),
            "version": _int("Each PUT adds a version; a run keeps the one it started with."),
            "updated_at": _s(format="date-time"),
            "spec": document,
        },
        "name",
        "version",
        "spec",
    )
    statuses = ["running", "completed", "stopped", "cancelled", "failed"]
    run = _obj(
        {
            "id": _s(),
            "automation": _s(),
            "version": _int(),
            "status": _s(enum=statuses),
            "reason": _null(_s("Why the run stopped, was cancelled or failed.")),
            "trigger": _obj({"id": _s(), "type": _s(), "subject": _null(_s())}),
            "next_step_at": _null(_s(format="date-time")),
            "waiting_until": _null(_s(format="date-time")),
            "steps": {
                "type": "array",
                "description": "What each step did and when: delivery ids, matched events.",
                "items": {"type": "object"},
            },
            "matched": {"type": "object", "description": "Step id → the event it matched."},
            "created_at": _s(format="date-time"),
            "ended_at": _null(_s(format="date-time")),
        },
        "id",
        "status",
    )
    return [
        _op(
            "GET /v1/automations",
            "listAutomations",
            tag,
            "List automations",
            "The current version of each automation of the tenant.",
            scope="read",
            ok={200: _ok(_list(stored))},
        ),
        _op(
            "PUT /v1/automations/{name}",
            "putAutomation",
            tag,
            "Create or change an automation",
            "Validates the document (every problem with its path) and stores it as a new "
            "version; runs already started keep their version.",
            scope="manage",
            params=[name],
            body=document,
            ok={200: _ok(stored, "A new version."), 201: _ok(stored, "Created.")},
            errors=(404, 422),  # 404: a name that is not an automation name
        ),
        _op(
            "GET /v1/automations/{name}",
            "getAutomation",
            tag,
            "Get an automation",
            "The current version, or `?version=`.",
            scope="read",
            params=[
                name,
                _version_query(),
            ],
            ok={200: _ok(stored)},
            errors=(400, 404),
        ),
        _op(
            "DELETE /v1/automations/{name}",
            "deleteAutomation",
            tag,
            "Delete an automation",
            "No new runs start; runs already started finish on their version.",
            scope="manage",
            params=[name],
            ok={204: NO_CONTENT},
            errors=(404,),
        ),
        _op(
            "GET /v1/automations/{name}/runs",
            "listAutomationRuns",
            tag,
            "List an automation's runs",
            "Newest first.",
            scope="read",
            params=[name, _query("status", "Run status.", _s(enum=statuses)), _limit(100, 1000)],
            ok={200: _ok(_list(run))},
            errors=(404,),
        ),
        _op(
            "GET /v1/runs/{run_id}",
            "getRun",
            tag,
            "Get a run",
            "Its status, reason, each step with its time, matched event and delivery.",
            scope="read",
            params=[run_id],
            ok={200: _ok(run)},
            errors=(404,),
        ),
        _op(
            "POST /v1/runs/{run_id}/cancel",
            "cancelRun",
            tag,
            "Cancel a run",
            "Durably: the run ends `cancelled` and takes no further step.",
            scope="manage",
            params=[run_id],
            body=_obj({"reason": _s(maxLength=200)}),
            optional_body=True,
            ok={200: _ok(run)},
            errors=(404, 409),
        ),
    ]


def _purpose_paths() -> list[Operation]:
    tag = "recipients"
    name = _path(
        "name",
        "The purpose: a lowercase word such as marketing.",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
    )
    purpose = _obj(
        {
            "name": _s(),
            "description": _s(maxLength=1000),
            "created_at": _s(format="date-time", readOnly=True),
            "updated_at": _s(format="date-time", readOnly=True),
        },
        "name",
        "description",
    )
    return [
        _op(
            "GET /v1/consent-purposes",
            "listConsentPurposes",
            tag,
            "The tenant's consent purposes",
            "Empty while the tenant has declared none: then any purpose is accepted.",
            scope="read",
            ok={200: _ok(_obj({"data": {"type": "array", "items": purpose}}, "data"))},
        ),
        _op(
            "PUT /v1/consent-purposes/{name}",
            "putConsentPurpose",
            tag,
            "Declare or describe a consent purpose",
            "Once a tenant declares any purpose, consents, routes and automations may name only "
            "declared ones (422 naming the field). At most 100 per tenant.",
            scope="manage",
            params=[name],
            body=_obj({"description": _s(maxLength=1000)}, additionalProperties=False),
            ok={200: _ok(purpose, "Described again."), 201: _ok(purpose, "Declared.")},
            errors=(422,),
        ),
        _op(
            "DELETE /v1/consent-purposes/{name}",
            "deleteConsentPurpose",
            tag,
            "Undeclare a consent purpose",
            "The ledger keeps its records of the purpose.",
            scope="manage",
            params=[name],
            ok={204: NO_CONTENT},
            errors=(404,),
        ),
    ]


def _subject_paths() -> list[Operation]:
    tag = "subjects"
    subject = _path(
        "subject", "The subject: the events' `subject`, the recipient id.", maxLength=200
    )
    count = {"type": "integer", "minimum": 0}
    receipt = _obj(
        {
            "id": _s("The receipt's id; the export lists the subject's receipts."),
            "subject": _s(),
            "erased_at": _s(format="date-time"),
            "events_scrubbed": count,
            "recipient_deleted": {"type": "boolean"},
            "preferences_deleted": count,
            "consents_scrubbed": count,
            "inbox_items_deleted": count,
            "deliveries_cancelled": count,
            "attempts_scrubbed": count,
            "runs_cancelled": count,
            "requests_scrubbed": count,
        },
        "id",
        "subject",
        "erased_at",
    )
    export = _obj(
        {
            "subject": _s(),
            "exported_at": _s(format="date-time"),
            "recipient": {"type": ["object", "null"], "description": "The profile, if any."},
            "preferences": {"type": "array", "items": {"type": "object"}},
            "consents": {"type": "array", "items": {"type": "object"}},
            "inbox": {"type": "array", "items": {"type": "object"}},
            "events": {"type": "array", "items": _ref("StoredEvent")},
            "events_truncated": {"type": "boolean"},
            "deliveries": {"type": "array", "items": {"type": "object"}},
            "erasures": {"type": "array", "items": receipt},
        },
        "subject",
        "events",
    )
    return [
        _op(
            "GET /v1/subjects/{subject}/export",
            "exportSubject",
            tag,
            "Everything held about a subject",
            "The profile, preferences, consents, inbox, events (newest first, at most 100,000), "
            "their deliveries and earlier erasure receipts, as one JSON document (LGPD art. 18 "
            "II and V). PII is masked unless the key also has the `pii` scope.",
            scope="read",
            params=[subject],
            ok={200: _ok(export)},
            errors=(400,),
        ),
        _op(
            "DELETE /v1/subjects/{subject}",
            "eraseSubject",
            tag,
            "Erase a subject's personal data",
            "Deletes the profile, preferences and inbox items, cancels pending deliveries and "
            "running automations, clears receivers' answers and the raw provider requests of "
            "the subject's events, and leaves the events as skeletons with their PII fields "
            "null (LGPD art. 18 VI). Needs the `pii` scope as well.",
            scope="manage",
            params=[subject],
            ok={200: _ok(receipt, "The receipt: what was erased, as counts.")},
        ),
    ]


def _observe_paths() -> list[Operation]:
    """/metrics, /status, traces and delivery statistics (docs/observability.md)."""
    num = {"type": "number"}
    count = {"type": "integer", "minimum": 0}
    component = _obj({"ok": {"type": "boolean"}}, "ok", additionalProperties=True)
    status_body = _obj(
        {
            "status": _s(enum=["ok", "failing"]),
            "components": {"type": "object", "additionalProperties": component},
        },
        "status",
        "components",
    )
    operator = {
        "tags": ["health"],
        "security": [{"bearerAuth": ["admin"]}],
    }
    errors = {str(c): {"$ref": f"#/components/responses/{ERRORS[c][0]}"} for c in (401, 403, 503)}
    item = _obj(
        {
            "kind": _s(enum=["event", "delivery", "attempt", "automation_run"]),
            "at": _s(format="date-time"),
            "event": _ref("StoredEvent"),
            "delivery": _ref("Delivery"),
            "attempt": _ref("Attempt"),
            "run": {"type": "object"},
            "event_id": _s(),
            "delivery_id": _s(),
            "destination_id": _s(),
        },
        "kind",
        "at",
    )
    stats_row = _obj(
        {
            "destination_id": _s(),
            "type": _s(),
            "deliveries": count,
            "attempts": count,
            "succeeded": count,
            "failed": count,
            "success_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "retries": count,
            "latency_ms": _obj({"p50": num, "p95": num, "mean": num}),
        }
    )
    return [
        (
            "/metrics",
            "get",
            {
                **operator,
                "operationId": "prometheusMetrics",
                "summary": "Prometheus metrics",
                "description": "Counters and histograms of this process (of every local "
                "process with PROMETHEUS_MULTIPROC_DIR) and gauges read from the store. An "
                "admin key or SWITCHBOARD_METRICS_TOKEN as a bearer token.",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": _s()}},
                    },
                    **errors,
                },
            },
        ),
        (
            "/status",
            "get",
            {
                **operator,
                "operationId": "status",
                "summary": "Component status",
                "description": "The store, live workers (by heartbeat), the due backlog, DLQ "
                "growth, disabled destinations and open breakers; 503 when any is failing. An "
                "admin key or SWITCHBOARD_METRICS_TOKEN as a bearer token.",
                "responses": {
                    "200": _ok(status_body, "Every component is ok."),
                    **errors,
                    "503": _ok(status_body, "At least one component is failing."),
                },
            },
        ),
        _op(
            "GET /v1/traces/{trace_id}",
            "getTrace",
            "events",
            "A trace's timeline",
            "The events of one trace (the hub's own delivery events included), their "
            "deliveries, attempts and the automation runs they started, in time order.",
            scope="read",
            params=[_path("trace_id", "The trace id.", maxLength=255)],
            ok={
                200: _ok(
                    _obj(
                        {
                            "trace_id": _s(),
                            "events": count,
                            "deliveries": count,
                            "attempts": count,
                            "automation_runs": count,
                            "truncated": {"type": "boolean"},
                            "timeline": {"type": "array", "items": item},
                        }
                    )
                )
            },
            errors=(400, 404),
        ),
        _op(
            "GET /v1/metrics/deliveries",
            "deliveryMetrics",
            "deliveries",
            "Delivery statistics",
            "Attempts per destination and event type over a window (default: the last 24 "
            "hours, at most 31 days): success rate, retries, p50/p95/mean latency.",
            scope="read",
            params=[
                _p("From"),
                _p("To"),
                _query("destination_id", "Only this destination.", _s()),
            ],
            ok={
                200: _ok(
                    _obj(
                        {
                            "from": _s(format="date-time"),
                            "to": _s(format="date-time"),
                            "truncated": {"type": "boolean"},
                            "data": {"type": "array", "items": stats_row},
                        }
                    )
                )
            },
            errors=(400,),
        ),
    ]


def _privacy_retention_audit_paths() -> list[Operation]:
    """The audit log and retention (issue 17, part B)."""
    days = _null(_int(minimum=1))
    policy = _obj(
        {
            "default_days": _null(_int("The tenant's default event retention, as set.")),
            "effective_default_days": _null(_int("The default raised to the floor.")),
            "floor_days": _null(_int("The operator's floor (SWITCHBOARD_RETENTION_FLOOR_DAYS).")),
            "types": {
                "type": "object",
                "description": "Event types with a `retention` of their own in the catalog.",
                "additionalProperties": _obj({"days": days, "effective_days": days}),
            },
            "attempts_days": days,
            "inbound_requests_days": days,
            "audit_log_days": days,
        },
        "default_days",
        "floor_days",
        "types",
    )
    entry = _obj(
        {
            "id": _s("Time-ordered id; the listing's cursor."),
            "tenant_id": _null(_s("The tenant; null for operator actions such as tenants.")),
            "at": _s("When the change was made.", format="date-time"),
            "key_id": _s("The key that made it."),
            "key_name": _null(_s()),
            "ip": _null(_s("The client address (a trusted proxy's X-Forwarded-For).")),
            "action": _s("`<resource>.<verb>` such as `destinations.update`, `dlq.retry`."),
            "method": _s(),
            "path": _s(),
            "status": _int("The answer's status code (a refused change is recorded too)."),
            "before": {"description": "The resource before, credentials masked; or null."},
            "after": {"description": "The answer, credentials masked; or null."},
        },
        "id",
        "at",
        "key_id",
        "action",
        "method",
        "path",
        "status",
    )
    return [
        _op(
            "GET /v1/audit",
            "listAudit",
            "tenants & keys",
            "Read the audit log",
            "Every change a manage or admin key made in the tenant, newest first. An admin key "
            "without the tenant header reads the operator's own actions (creating tenants).",
            scope="manage",
            params=[
                _query("from", "Entries at or after (ISO 8601).", _s(format="date-time")),
                _query("to", "Entries before (ISO 8601).", _s(format="date-time")),
                _query("action", "An action (`keys.create`) or a resource (`keys`).", _s()),
                _p("Cursor"),
                _limit(100, 1000),
            ],
            ok={200: _ok(_page(entry))},
        ),
        _op(
            "GET /v1/retention",
            "getRetention",
            "tenants & keys",
            "How long data is kept",
            "The retention in force: the tenant's default, each event type's own, the floor, "
            "and the retention of attempts, inbound requests and the audit log (null: forever).",
            scope="read",
            ok={200: _ok(policy)},
        ),
        _op(
            "PUT /v1/retention",
            "putRetention",
            "tenants & keys",
            "Set the tenant's default event retention",
            "`default` is a duration (`24 months`, `400 days`) or days, or null to keep events "
            "of types without their own retention forever; it may not be under the floor.",
            scope="manage",
            body=_obj({"default": {"type": ["string", "integer", "null"]}}, "default"),
            ok={200: _ok(policy)},
            errors=(422,),
        ),
    ]


# --- generated from typed endpoints (api/contract.py) ------------------------------------------
# Every route a resource module serves whose handler is declared with @endpoint; their models are
# the schemas below. To convert an area: declare its handlers with @endpoint and Body/Params/Model
# structs, serve them with `routes_of(...)` in the module's `routes`, and delete its
# `_<area>_paths()` and the schemas only it used.
MODULES = (
    events,
    catalog,
    admin,
    deliveries,
    sources,
    segment_api,
    automations,
    recipients,
    messages,
    purposes,
    subjects,
    observe,
    audit,
    retention,
)


def _typed_handlers() -> list[Any]:
    return [
        r.endpoint
        for m in MODULES
        for r in m.routes
        if isinstance(r, Route) and hasattr(r.endpoint, "endpoint")
    ]


def _parameters(model: type[Any] | None, where: str) -> list[Schema]:
    if model is None:
        return []
    (ref,), components = msgspec.json.schema_components([model], ref_template=REF)
    spec = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(spec.get("required", ()))
    out = []
    for name, schema in spec.get("properties", {}).items():
        schema = dict(schema)
        param: Schema = {"name": name, "in": where, "description": schema.pop("description", "")}
        if where == "path" or name in required:
            param["required"] = True
        param["schema"] = schema
        out.append(param)
    return out


def _typed_paths() -> tuple[list[Operation], dict[str, Schema]]:
    """The operations of the typed endpoints and the component schemas of their models."""
    specs = endpoints_of(_typed_handlers())
    types: list[Any] = []
    for e in specs:
        for t in (e.body, *(t for t, _ in e.ok.values())):
            if t is not None and not isinstance(t, Raw) and t not in types:
                types.append(t)
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(map(_key, types), refs, strict=True))
    return [_typed_op(e, ref_of) for e in specs], schemas


def _key(t: Any) -> str:
    return repr(t)  # types such as list[Event] are not hashable the same way every time


def _typed_op(e: Endpoint, ref_of: dict[str, Schema]) -> Operation:
    def media(t: Any, text: str) -> dict[str, Any]:
        if t is None:
            return {"description": text}
        if isinstance(t, Raw):
            return {"description": text, "content": {t.media: {"schema": t.schema}}}
        return _json(ref_of[_key(t)], text)

    params = [
        *_parameters(e.path, "path"),
        *_parameters(e.query, "query"),
        *_parameters(e.headers, "header"),
    ]
    content = None
    if e.body is not None:
        schema = e.body.schema if isinstance(e.body, Raw) else ref_of[_key(e.body)]
        types = (e.body.media,) if isinstance(e.body, Raw) else e.body_media
        content = {m: {"schema": schema} for m in types}
    ok = {status: media(t, text) for status, (t, text) in e.ok.items()}
    if e.scope == PUBLIC:
        op: dict[str, Any] = {
            "operationId": e.op_id,
            "tags": [e.tag],
            "summary": e.summary,
            "description": e.description,
            "security": [{}, *e.security] if e.security else [],
        }
        if params:
            op["parameters"] = params
        codes = {*e.errors, *((400,) if params else ())}
        if content is not None:
            op["requestBody"] = {"required": e.body_required, "content": content}
            codes |= {400, 413, 415}
        op["responses"] = {
            **{str(status): response for status, response in ok.items()},
            **{str(c): {"$ref": f"#/components/responses/{ERRORS[c][0]}"} for c in sorted(codes)},
        }
        return e.url, e.method.lower(), op
    path, method, op = _op(
        e.route,
        e.op_id,
        e.tag,
        e.summary,
        e.description,
        scope=e.scope,
        params=params,
        content=content,
        optional_body=not e.body_required,
        ok=ok,
        errors=e.errors,
    )
    if e.security:
        op["security"] = [*op["security"], *e.security]
    return path, method, op


def _dashboard_paths() -> list[Operation]:
    """The web dashboard (docs/dashboard.md): HTML pages for people, not an API. They take a
    session cookie set by signing in with a tenant's key, never a bearer key."""
    page = {"description": "An HTML page.", "content": {"text/html": {"schema": _s()}}}
    to_sign_in = {"description": "Not signed in: a redirect to `/ui/sign-in`."}
    after = {"description": "Done: a redirect to the page to show next."}
    refused = {
        "description": "An HTML page saying why: no session, a missing or stale CSRF "
        "token, or a key without the scope."
    }
    event_id = _path("event_id", "The event's id (its idempotency id).")
    subject = _path("subject", "Whom the events are about.")

    def op(op_id: str, summary: str, description: str, **extra: Any) -> dict[str, Any]:
        return {
            "operationId": op_id,
            "tags": ["dashboard"],
            "summary": summary,
            "description": description,
            "security": [],
            **extra,
        }

    def view(op_id: str, summary: str, description: str, *params: Schema) -> dict[str, Any]:
        more: dict[str, Any] = {"parameters": list(params)} if params else {}
        return op(op_id, summary, description, responses={"200": page, "303": to_sign_in}, **more)

    form = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": _s()}}}

    def action(op_id: str, summary: str, description: str) -> dict[str, Any]:
        return op(
            op_id,
            summary,
            description + " The form carries the session's `csrf` token.",
            requestBody=form,
            responses={"303": after, "400": refused, "401": refused, "403": refused},
        )

    return [
        (
            "/ui",
            "get",
            view(
                "uiOverview",
                "Dashboard overview",
                "Events per hour and delivery "
                "attempts over the last 24 hours, the backlog and the DLQ size.",
            ),
        ),
        (
            "/ui/static/{name}",
            "get",
            op(
                "uiStatic",
                "Dashboard files",
                "The stylesheet (`dashboard.css`) and the live tail's script (`live.js`).",
                parameters=[_path("name", "`dashboard.css` or `live.js`.")],
                responses={
                    "200": {"description": "The file."},
                    "404": {"description": "Not one of the dashboard's files."},
                },
            ),
        ),
        (
            "/ui/live",
            "get",
            view("uiLive", "Live tail", "The newest events, kept current by `live.js`."),
        ),
        (
            "/ui/live/stream",
            "get",
            op(
                "uiLiveStream",
                "Live tail stream",
                "Server-sent events: one `ev` message per new event of the tenant (id: its "
                "`seq`; `after` or `Last-Event-ID` says where to start). Ends after five "
                "minutes; at most four open per key and process (429).",
                parameters=[_query("after", "Send events after this seq.", _int())],
                responses={
                    "200": {
                        "description": "The stream.",
                        "content": {"text/event-stream": {"schema": _s()}},
                    },
                    "303": to_sign_in,
                    "429": refused,
                },
            ),
        ),
        (
            "/ui/sign-in",
            "get",
            op("uiSignInForm", "Sign-in form", "Asks for an API key.", responses={"200": page}),
        ),
        (
            "/ui/sign-in",
            "post",
            op(
                "uiSignIn",
                "Sign in",
                "Checks the key (a tenant's, with `read`) and sets an HttpOnly, SameSite=Strict "
                "session cookie; a wrong key gets the form again with 401.",
                requestBody=form,
                responses={"303": after, "401": page, "403": refused},
            ),
        ),
        ("/ui/sign-out", "post", action("uiSignOut", "Sign out", "Ends the session.")),
        (
            "/ui/events",
            "get",
            view(
                "uiEvents",
                "Event search",
                "The tenant's events, newest "
                "first, searched by type (or glob), subject and trace id.",
            ),
        ),
        (
            "/ui/events/{event_id}",
            "get",
            view(
                "uiEvent",
                "Event detail",
                "One event with its deliveries and their attempts; "
                "another tenant's id answers 404.",
                event_id,
            ),
        ),
        (
            "/ui/subjects/{subject}",
            "get",
            view(
                "uiSubject", "Subject timeline", "The latest 200 events about one subject.", subject
            ),
        ),
        (
            "/ui/dlq",
            "get",
            view(
                "uiDlq",
                "Dead-letter queue",
                "Dead deliveries, with retry and archive for keys with `manage`.",
            ),
        ),
        (
            "/ui/dlq/retry",
            "post",
            action(
                "uiDlqRetry",
                "Retry dead deliveries",
                "Requeues the selected deliveries (`manage`).",
            ),
        ),
        (
            "/ui/dlq/archive",
            "post",
            action(
                "uiDlqArchive",
                "Archive dead deliveries",
                "Archives the selected deliveries (`manage`).",
            ),
        ),
        (
            "/ui/catalog",
            "get",
            view("uiCatalog", "Catalog browser", "The event types the tenant sees."),
        ),
        (
            "/ui/catalog/{name}",
            "get",
            view(
                "uiEventType",
                "Event type",
                "One type's versions, schemas and examples; another tenant's own type is 404.",
                _path("name", "The event type's name."),
            ),
        ),
        (
            "/ui/replays",
            "get",
            view("uiReplayForm", "Replay form", "Choose the events to send again."),
        ),
        (
            "/ui/replays",
            "post",
            action(
                "uiReplay",
                "Dry-run or run a replay",
                "With `dry_run`: the counts and a sample, nothing sent; with `run`: starts the "
                "replay and redirects to its progress page (`manage`).",
            ),
        ),
        (
            "/ui/replays/{replay_id}",
            "get",
            view(
                "uiReplayProgress",
                "Replay progress",
                "A replay's status and counts; reloads itself while it runs.",
                _path("replay_id", "The replay's id."),
            ),
        ),
        (
            "/ui/destinations",
            "get",
            view(
                "uiDestinations",
                "Destinations",
                "Each destination's state, this process's circuit "
                "breaker, how long it has been failing, its backlog and dead deliveries.",
            ),
        ),
    ]


def _wacloud_paths() -> list[Operation]:
    """The WhatsApp Cloud API's GET handshake on a source's receiving URL."""

    def query(name: str, description: str) -> Schema:
        return {"name": name, "in": "query", "description": description, "schema": _s()}

    text = {"text/plain": {"schema": _s()}}
    return [
        (
            "/v1/sources/{source_id}/webhook",
            "get",
            {
                "operationId": "verifyWebhookSubscription",
                "tags": ["sources"],
                "summary": "Answer Meta's subscription handshake",
                "description": "For a source with preset whatsapp_cloud: echoes hub.challenge "
                "(as text) when hub.mode is subscribe and hub.verify_token is the source's "
                "preset_config.verify_token. No API key.",
                "security": [],
                "parameters": [
                    _path("source_id", "The source id (src_…)."),
                    query("hub.mode", "subscribe"),
                    query("hub.verify_token", "The verify token set in the Meta app."),
                    query("hub.challenge", "Echoed back: letters, digits, '.', '_', '-'."),
                ],
                "responses": {
                    "200": {"description": "The challenge, as the body.", "content": text},
                    "400": _json(_ref("Error"), "hub.mode or hub.challenge is malformed."),
                    "403": _json(_ref("Error"), "hub.verify_token does not match."),
                    "404": _json(_ref("Error"), "No enabled whatsapp_cloud source with this id."),
                    "429": {"$ref": "#/components/responses/RateLimited"},
                },
            },
        )
    ]


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The whole document (cached: treat it as read-only)."""
    typed, typed_schemas = _typed_paths()
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in (
        *typed,
        *_event_paths(),
        *_catalog_paths(),
        *_source_paths(),
        *_segment_paths(),
        *_automation_paths(),
        *_recipient_paths(),
        *_template_paths(),
        *_health_paths(),
        *_purpose_paths(),
        *_subject_paths(),
        *_observe_paths(),
        *_privacy_retention_audit_paths(),
        *_dashboard_paths(),
        *_wacloud_paths(),
    ):
        if method in paths.setdefault(path, {}):
            raise ValueError(f"{method.upper()} {path} is described twice")
        paths[path][method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": "0.1.0",
            "summary": "A self-hosted multi-tenant event hub.",
            "description": "Send events, validate them against a catalog, route them to "
            "destinations, and receive provider webhooks. Errors are JSON: "
            '`{"error": {"code", "message", "details": [{"path", "message"}]}}`.',
        },
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": _with_schemas(_components(), typed_schemas),
    }


def _with_schemas(components: dict[str, Any], generated: dict[str, Schema]) -> dict[str, Any]:
    clash = set(generated) & set(components["schemas"])
    if clash:
        raise ValueError(f"schemas both hand-written and generated: {sorted(clash)}")
    return {**components, "schemas": {**components["schemas"], **generated}}
