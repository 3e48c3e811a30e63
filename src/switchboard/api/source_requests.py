"""A source's request log and the reprocessing of its logged requests through a mapping version.
Typed endpoints (`api/contract.py`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType, field
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub
from switchboard.api.contract import (
    Body,
    Model,
    Params,
    decode_body,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.sources import (
    ID_PATTERN,
    TAG,
    InboundStatus,
    SourceCounters,
    SourcePath,
    Text,
    counters,
    inbound,
    own_source,
)
from switchboard.envelope import EnvelopeError, parse_time
from switchboard.errors import BadRequest, NotFound
from switchboard.store import Scope
from switchboard.store import inbound as sql

__all__ = ["routes"]


class InboundRequest(Model):
    id: str
    source_id: str
    received_us: int
    remote_ip: str | None
    headers: Annotated[dict[str, str], Meta(description="Credentials masked.")]
    content_type: str | None
    verified: bool
    verification_error: str | None
    status: InboundStatus
    mapping: Annotated[str | None, Meta(description="name@version")]
    event_ids: list[str]
    error: str | None
    size: Annotated[int, Meta(ge=0, description="The body's size in bytes.")]
    body_sha256: Annotated[
        str | UnsetType, Meta(description="An unverified request's: only its first KiB is kept.")
    ] = UNSET
    body_truncated: bool | UnsetType = UNSET
    body: Annotated[Any | UnsetType, Meta(description="The parsed JSON, or the text.")] = UNSET


class InboundRequests(Model):
    data: list[InboundRequest]
    next_cursor: Annotated[str | None, Meta(description="Pass as `cursor` for the next page.")]
    counters: SourceCounters


class RequestsQuery(Params):
    status: Annotated[InboundStatus | UnsetType, Meta(description="Outcome.")] = UNSET
    verified: Annotated[bool | UnsetType, Meta(description="Verification passed.")] = UNSET
    body: Annotated[bool, Meta(description="Include bodies (default true).")] = True
    cursor: (
        Annotated[
            str,
            Meta(max_length=100, pattern=ID_PATTERN, description="The next_cursor of a page."),
        ]
        | UnsetType
    ) = UNSET
    limit: Annotated[int, Meta(ge=1, le=500, description="Page size (default 50).")] = 50


class RequestPath(SourcePath):
    request_id: Annotated[
        str, Meta(max_length=100, pattern=ID_PATTERN, description="The request id.")
    ]


@endpoint(
    "GET /v1/sources/{source_id}/requests",
    "listSourceRequests",
    TAG,
    "A source's request log",
    "Received requests, newest first, with the source's counters.",
    scope="read",
    path=SourcePath,
    query=RequestsQuery,
    ok={200: (InboundRequests, "OK")},
    errors=(400, 404),
)
async def list_requests(request: Request) -> Response:
    source = await own_source(request, Scope.READ)
    q = decode_query(request, RequestsQuery)
    found = await sql.list_requests(
        hub(request).store,
        source.tenant_id,
        source.id,
        status=None if q.status is UNSET else q.status,
        verified=None if q.verified is UNSET else q.verified,
        before_id=None if q.cursor is UNSET else q.cursor,
        limit=q.limit,
    )
    return respond(
        InboundRequests(
            data=[msgspec.convert(r.public(q.body), InboundRequest) for r in found],
            next_cursor=found[-1].id if len(found) == q.limit else None,
            counters=counters(source),
        )
    )


@endpoint(
    "GET /v1/sources/{source_id}/requests/{request_id}",
    "getSourceRequest",
    TAG,
    "Get a logged request",
    "One received request with headers (secrets masked) and body.",
    scope="read",
    path=RequestPath,
    ok={200: (InboundRequest, "OK")},
    errors=(404,),
)
async def get_request(request: Request) -> Response:
    source = await own_source(request, Scope.READ)
    request_id = decode_path(request, RequestPath).request_id
    found = await sql.get_request(hub(request).store, source.tenant_id, request_id)
    if found is None or found.source_id != source.id:
        raise NotFound("no request with that id on this source")
    return respond(msgspec.convert(found.public(), InboundRequest))


Time = Annotated[
    str,
    Meta(max_length=64, extra_json_schema={"format": "date-time"}),
]


class ReprocessIn(Body):
    mapping: Annotated[Text | None, Meta(description="Default: the source's mapping.")] = None
    mapping_version: Annotated[Text | None, Meta(description="Default: the newest.")] = None
    from_: Annotated[Time | None, Meta(description="Requests received at or after (ISO 8601).")] = (
        field(name="from", default=None)
    )
    to: Annotated[Time | None, Meta(description="Requests received before (ISO 8601).")] = None
    dry_run: Annotated[bool, Meta(description="Count and sample, store nothing.")] = True
    limit: Annotated[int, Meta(ge=1, le=100_000, description="Requests at most.")] = 10_000


class ReprocessSample(Model):
    request_id: str
    result: dict[str, Any]
    event: dict[str, Any]


class ReprocessResult(Model):
    mapping: Annotated[str, Meta(description="name@version")]
    dry_run: bool
    counts: dict[str, Annotated[int, Meta(ge=0)]]
    samples: list[ReprocessSample]


@endpoint(
    "POST /v1/sources/{source_id}/reprocess",
    "reprocessSource",
    TAG,
    "Reprocess logged requests",
    "Runs stored verified requests through a mapping version (dry run by default): counts and "
    "sample events. The mapping (the body's or the source's) must exist (404).",
    scope="manage",
    path=SourcePath,
    body=ReprocessIn,
    ok={200: (ReprocessResult, "OK")},
    errors=(404,),
)
async def reprocess(request: Request) -> Response:
    source = await own_source(request, Scope.MANAGE)
    body = await decode_body(request, ReprocessIn, 65536)
    name = body.mapping or source.mapping
    if name is None:
        raise BadRequest(
            "the source has no mapping: name one",
            details=[{"path": "/mapping", "message": "is required: the source has none"}],
        )
    bounds: dict[str, int | None] = {}
    for key, raw in (("from", body.from_), ("to", body.to)):
        try:
            bounds[key] = None if raw is None else parse_time(raw, f"/{key}")
        except EnvelopeError as exc:
            raise BadRequest(f"{key}: {exc.errors[0]['message']}", details=exc.errors) from None
    pipeline = inbound(request)
    mapping = await pipeline.mapping(source.tenant_id, name, body.mapping_version)
    if mapping is None:
        raise NotFound(f"mapping {name}@{body.mapping_version or 'latest'} does not exist")
    tenant = await hub(request).tenant(source.tenant_id)
    assert tenant is not None  # the source belongs to the caller's tenant
    result = await pipeline.reprocess(
        source,
        tenant,
        mapping,
        from_us=bounds["from"],
        to_us=bounds["to"],
        dry_run=body.dry_run,
        limit=body.limit,
    )
    return respond(msgspec.convert(result, ReprocessResult))


routes = routes_of(
    list_requests,
    get_request,
    reprocess,
)
