"""The dashboard's event pages: the search, one event with its deliveries and attempts, and a
subject's timeline. Each reads what its API twin reads, narrowed by the key's constraints and
shown masked as the API would answer (`masking.shown`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub, type_glob_problem
from switchboard.api.contract import Params, decode_path, decode_query
from switchboard.api.contract_extra import SubjectPath
from switchboard.auth import within_constraints
from switchboard.envelope import MAX_ID_LEN
from switchboard.errors import BadRequest, NotFound
from switchboard.store import Cursor, EventQuery
from switchboard.ui.masking import link_subjects, plain, shown
from switchboard.ui.viewer import Pages, Viewer, page

PAGE = 50  # events per page
TIMELINE = 200  # events on a subject's timeline


class EventSearch(Params):
    type: Annotated[
        str, Meta(max_length=MAX_ID_LEN, description="A type name or a glob (`lead.*`).")
    ] = ""
    subject: Annotated[str, Meta(max_length=MAX_ID_LEN, description="Whom it is about.")] = ""
    trace_id: Annotated[str, Meta(max_length=MAX_ID_LEN, description="The trace's id.")] = ""
    cursor: Annotated[
        str, Meta(max_length=200, description="Where the previous page ended (its link).")
    ] = ""


class EventPath(Params):
    event_id: Annotated[str, Meta(max_length=MAX_ID_LEN, description="The event's id.")]


@page(
    "GET /ui/events",
    "uiEvents",
    "Event search",
    "The tenant's events, newest first, searched by type (or glob), subject and trace id.",
    query=EventSearch,
)
async def events(d: Pages, request: Request, viewer: Viewer) -> Response:
    q = decode_query(request, EventSearch)
    search = {"type": q.type.strip(), "subject": q.subject.strip(), "trace_id": q.trace_id.strip()}
    cursor = None
    if q.cursor:
        try:
            cursor = Cursor.decode(q.cursor)
        except ValueError as exc:
            raise BadRequest(f"cursor: {exc}") from None
    if search["type"] and (problem := type_glob_problem(search["type"])) is not None:
        raise BadRequest(f"type: {problem}")
    query = EventQuery(
        types=(search["type"],) if search["type"] else (),
        subject=search["subject"] or None,
        trace_id=search["trace_id"] or None,
        cursor=cursor,
        limit=PAGE,
        pattern=viewer.constraint,
    )
    rows = await hub(request).store.list_events(viewer.tenant_id, query)
    older = None
    if len(rows) == PAGE:
        last = rows[-1]
        older = "?" + urlencode({**search, "cursor": Cursor(last.time_us, last.seq).encode()})
    # the search as typed is echoed masked too: the page shows what `GET /v1/events` would
    doc = await shown(request, viewer, "/v1/events", {"data": plain(rows), "search": search})
    return d.render(
        "events.html",
        viewer,
        nav="events",
        events=link_subjects(rows, doc["data"]),
        search=doc["search"],
        trace_link=bool(search["trace_id"]) and doc["search"]["trace_id"] == search["trace_id"],
        older=older,
    )


@page(
    "GET /ui/events/{event_id}",
    "uiEvent",
    "Event detail",
    "One event with its deliveries and their attempts, linked to its trace and its subject's "
    "timeline; another tenant's id answers 404.",
    path=EventPath,
    refusals={404: "no such event in this tenant"},
)
async def event(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    event_id = decode_path(request, EventPath).event_id
    found = await h.store.get_event(viewer.tenant_id, event_id, None)
    if found is None or not within_constraints(viewer.principal, found):
        raise NotFound(f"no event with id {event_id!r} in this tenant")
    names = {dest.id: dest.name for dest in await h.deliveries.list_destinations(viewer.tenant_id)}
    deliveries = [
        (dl, await h.deliveries.attempts(viewer.tenant_id, dl.id))
        for dl in await h.deliveries.for_event(viewer.tenant_id, found.seq)
    ]
    doc = await shown(
        request,
        viewer,
        f"/v1/events/{quote(event_id, safe='')}",
        {"event": plain(found), "envelope": found.to_json(), "deliveries": plain(deliveries)},
    )
    shown_event = link_subjects([found], [doc["event"]])[0]
    return d.render(
        "event.html",
        viewer,
        nav="events",
        event=shown_event,
        envelope=doc["envelope"],
        deliveries=doc["deliveries"],
        names=names,
        trace_link=shown_event.get("trace_id") == found.trace_id,
    )


@page(
    "GET /ui/subjects/{subject}",
    "uiSubject",
    "Subject timeline",
    "The latest 200 events about one subject, each linked to its trace.",
    path=SubjectPath,
)
async def subject(d: Pages, request: Request, viewer: Viewer) -> Response:
    name = decode_path(request, SubjectPath).subject
    rows = await hub(request).store.list_events(
        viewer.tenant_id, EventQuery(subject=name, limit=TIMELINE, pattern=viewer.constraint)
    )
    doc = await shown(
        request,
        viewer,
        f"/v1/subjects/{quote(name, safe='')}/timeline",
        {"subject": name, "data": plain(rows)},
    )
    for stored, row in zip(rows, doc["data"], strict=True):
        row["trace_link"] = row.get("trace_id") == stored.trace_id
    return d.render(
        "subject.html", viewer, nav="events", subject=doc["subject"], events=doc["data"]
    )


HANDLERS = (events, event, subject)
