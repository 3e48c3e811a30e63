"""The dashboard's source pages: the tenant's inbound sources with their counters, one
source's request log (filtered by status), and one request with its masked headers, its body
and the events it produced. Shown as `GET /v1/sources…` answers show them: the sources as
configuration, the requests masked for keys without `pii`."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub
from switchboard.api.contract import Params, decode_path, decode_query
from switchboard.api.models import INBOUND_STATUSES
from switchboard.api.sources import source_view
from switchboard.errors import BadRequest, NotFound
from switchboard.sources import Source
from switchboard.store import inbound as sql
from switchboard.ui.masking import shown
from switchboard.ui.viewer import Pages, Viewer, page

PAGE = 50  # requests per page of a source's log
ID_MAX = 100  # a source's or a request's id (src_… and a UUIDv7 are far shorter)
SourceId = Annotated[str, Meta(max_length=ID_MAX, description="The source's id (`src_…`).")]


class SourcePath(Params):
    source_id: SourceId


class RequestPath(Params):
    source_id: SourceId
    request_id: Annotated[str, Meta(max_length=ID_MAX, description="The request's id.")]


class RequestSearch(Params):
    status: Annotated[
        str, Meta(max_length=30, description="One of " + ", ".join(INBOUND_STATUSES) + ".")
    ] = ""
    cursor: Annotated[
        str, Meta(max_length=ID_MAX, description="Where the previous page ended (its link).")
    ] = ""


async def _source(request: Request, viewer: Viewer, source_id: str) -> Source:
    found = await sql.get_source(hub(request).store, source_id, viewer.tenant_id)
    if found is None:
        raise NotFound(f"no source with id {source_id!r} in this tenant")
    return found


@page(
    "GET /ui/sources",
    "uiSources",
    "Sources",
    "The tenant's inbound sources: preset, mapping, state and counters of requests received, "
    "verified, refused and the events they produced.",
)
async def sources(d: Pages, request: Request, viewer: Viewer) -> Response:
    rows = await sql.list_sources(hub(request).store, viewer.tenant_id)
    return d.render(
        "sources.html", viewer, nav="sources", rows=[source_view(s, request) for s in rows]
    )


@page(
    "GET /ui/sources/{source_id}",
    "uiSource",
    "Source request log",
    "One source and its inbound requests, newest first, 50 a page, filtered by status; "
    "another tenant's source answers 404.",
    path=SourcePath,
    query=RequestSearch,
    refusals={404: "no such source in this tenant"},
)
async def source(d: Pages, request: Request, viewer: Viewer) -> Response:
    src = await _source(request, viewer, decode_path(request, SourcePath).source_id)
    q = decode_query(request, RequestSearch)
    if q.status and q.status not in INBOUND_STATUSES:
        raise BadRequest("status: one of " + ", ".join(INBOUND_STATUSES))
    found = await sql.list_requests(
        hub(request).store,
        viewer.tenant_id,
        src.id,
        status=q.status or None,
        before_id=q.cursor or None,
        limit=PAGE,
    )
    older = None
    if len(found) == PAGE:
        older = "?" + urlencode({"status": q.status, "cursor": found[-1].id})
    doc = await shown(
        request,
        viewer,
        f"/v1/sources/{quote(src.id, safe='')}/requests",
        {"data": [r.public(with_body=False) for r in found]},
    )
    return d.render(
        "source.html",
        viewer,
        nav="sources",
        source=source_view(src, request),
        requests=doc["data"],
        chosen=q.status,
        statuses=INBOUND_STATUSES,
        older=older,
    )


@page(
    "GET /ui/sources/{source_id}/requests/{request_id}",
    "uiSourceRequest",
    "Inbound request",
    "One request a source received: its status, verification, masked headers, body and the "
    "events it produced.",
    path=RequestPath,
    refusals={404: "no such request on this source in this tenant"},
)
async def inbound_request(d: Pages, request: Request, viewer: Viewer) -> Response:
    p = decode_path(request, RequestPath)
    src = await _source(request, viewer, p.source_id)
    found = await sql.get_request(hub(request).store, viewer.tenant_id, p.request_id)
    if found is None or found.source_id != src.id:
        raise NotFound(f"no request with id {p.request_id!r} on this source")
    doc = await shown(
        request,
        viewer,
        f"/v1/sources/{quote(src.id, safe='')}/requests/{quote(found.id, safe='')}",
        found.public(),
    )
    return d.render(
        "source_request.html",
        viewer,
        nav="sources",
        source=source_view(src, request),
        req=doc,
        body_is_text=isinstance(doc.get("body"), str),
    )


HANDLERS = (sources, source, inbound_request)
