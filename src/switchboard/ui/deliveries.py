"""The dashboard's delivery pages: every delivery, filtered by status, destination and event
type; one delivery with its event and attempts; and the dead-letter queue with its bulk retry
and archive. Reads are narrowed by the key's constraints and shown masked as the API's
`/v1/deliveries` and `/v1/dlq` answers are."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from switchboard.api.common import hub, type_glob_problem
from switchboard.api.contract import Params, decode_path, decode_query
from switchboard.api.models import DELIVERY_STATUSES
from switchboard.auth import within_constraints
from switchboard.envelope import MAX_ID_LEN, now_us
from switchboard.errors import BadRequest, NotFound
from switchboard.store import Scope
from switchboard.ui import actions, queries
from switchboard.ui.masking import plain, shown
from switchboard.ui.viewer import Form, Pages, Viewer, action, form_body, page

PAGE = 50  # deliveries per page
DLQ_PAGE = 100  # dead deliveries on the DLQ page
MAX_IDS = 1000  # deliveries one action may name
CURSOR_MAX = 2**63  # a stored microsecond time, as the stores keep it


class DeliverySearch(Params):
    status: Annotated[
        str, Meta(max_length=20, description="One of " + ", ".join(DELIVERY_STATUSES) + ".")
    ] = ""
    destination: Annotated[
        str, Meta(max_length=MAX_ID_LEN, description="A destination's name or id.")
    ] = ""
    type: Annotated[
        str, Meta(max_length=MAX_ID_LEN, description="The event's type, or a glob (`lead.*`).")
    ] = ""
    cursor: Annotated[
        str, Meta(max_length=200, description="Where the previous page ended (its link).")
    ] = ""


class DeliveryPath(Params):
    delivery_id: Annotated[str, Meta(max_length=MAX_ID_LEN, description="The delivery's id.")]


class DoneQuery(Params):
    done: Annotated[str, Meta(max_length=100, description="What the last action did.")] = ""


def _before(cursor: str) -> tuple[int, str] | None:
    if not cursor:
        return None
    try:
        at, delivery_id = cursor.split(":", 1)
        before = (int(at), delivery_id)
    except ValueError:
        raise BadRequest("cursor: not one this page made") from None
    if not 0 <= before[0] < CURSOR_MAX:
        raise BadRequest("cursor: not one this page made")
    return before


@page(
    "GET /ui/deliveries",
    "uiDeliveries",
    "Deliveries",
    "The tenant's deliveries, most recently changed first, 50 a page, filtered by status, "
    "destination and event type.",
    query=DeliverySearch,
)
async def deliveries(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    q = decode_query(request, DeliverySearch)
    search = {"status": q.status, "destination": q.destination.strip(), "type": q.type.strip()}
    if search["status"] and search["status"] not in DELIVERY_STATUSES:
        raise BadRequest("status: one of " + ", ".join(DELIVERY_STATUSES))
    dests = await h.deliveries.list_destinations(viewer.tenant_id)
    dest_id = None
    if search["destination"]:
        found = next((x for x in dests if search["destination"] in (x.id, x.name)), None)
        if found is None:
            raise BadRequest(f"destination: no destination {search['destination']!r}")
        dest_id = found.id
    if search["type"] and (problem := type_glob_problem(search["type"])) is not None:
        raise BadRequest(f"type: {problem}")
    rows = await h.deliveries.listing(
        viewer.tenant_id,
        status=search["status"] or None,
        destination_id=dest_id,
        types=(search["type"],) if search["type"] else (),
        pattern=viewer.constraint,
        before=_before(q.cursor),
        limit=PAGE,
    )
    older = None
    if len(rows) == PAGE:
        last = rows[-1][0]
        older = "?" + urlencode({**search, "cursor": f"{last.updated_us}:{last.id}"})
    doc = await shown(request, viewer, "/v1/deliveries", {"data": plain(rows)})
    return d.render(
        "deliveries.html",
        viewer,
        nav="deliveries",
        rows=doc["data"],
        search=search,
        statuses=DELIVERY_STATUSES,
        destinations=dests,
        names={x.id: x.name for x in dests},
        older=older,
    )


@page(
    "GET /ui/deliveries/{delivery_id}",
    "uiDelivery",
    "Delivery detail",
    "One delivery: its event, destination, status and every attempt (time, result, status "
    "code, latency, error, the answer's start); another tenant's id answers 404.",
    path=DeliveryPath,
    refusals={404: "no such delivery in this tenant"},
)
async def delivery(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    delivery_id = decode_path(request, DeliveryPath).delivery_id
    found = await h.deliveries.get(viewer.tenant_id, delivery_id)
    event = None
    if found is not None:
        event = await queries.event_by_seq(h.store, viewer.tenant_id, found.event_seq)
    if found is None or event is None or not within_constraints(viewer.principal, event):
        raise NotFound(f"no delivery with id {delivery_id!r} in this tenant")
    dest = await h.deliveries.get_destination(viewer.tenant_id, found.destination_id)
    attempts = await h.deliveries.attempts(viewer.tenant_id, found.id)
    doc = await shown(
        request,
        viewer,
        f"/v1/deliveries/{quote(delivery_id, safe='')}",
        {"delivery": plain(found), "event": plain(event), "attempts": plain(attempts)},
    )
    return d.render(
        "delivery.html",
        viewer,
        nav="deliveries",
        delivery=doc["delivery"],
        event=doc["event"],
        attempts=doc["attempts"],
        destination=dest.name if dest else found.destination_id,
    )


# -- the dead-letter queue -------------------------------------------------------------------


@page(
    "GET /ui/dlq",
    "uiDlq",
    "Dead-letter queue",
    "Dead deliveries, with retry and archive for keys with `manage`.",
    query=DoneQuery,
)
async def dlq(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    done = decode_query(request, DoneQuery).done
    rows = await h.deliveries.listing(
        viewer.tenant_id, status="dead", pattern=viewer.constraint, limit=DLQ_PAGE
    )
    names = {x.id: x.name for x in await h.deliveries.list_destinations(viewer.tenant_id)}
    doc = await shown(request, viewer, "/v1/dlq", {"data": plain(rows)})
    return d.render("dlq.html", viewer, nav="dlq", rows=doc["data"], names=names, done=done)


async def _picked(request: Request, viewer: Viewer, form: Form) -> list[str]:
    """The selected deliveries, those of them the key may see when it has constraints."""
    ids = form.get("ids") or []
    if not ids:
        raise BadRequest("ids: select at least one delivery")
    if len(ids) > MAX_IDS:
        raise BadRequest(f"ids: at most {MAX_IDS:,} deliveries at once")
    if viewer.constraint is not None:
        ids = await hub(request).deliveries.visible(viewer.tenant_id, ids, viewer.constraint)
    return ids


PICKED: dict[str, Any] = {
    "ids": {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": MAX_IDS,
        "description": "The dead deliveries' ids (the form's ticked boxes).",
    }
}


@action(
    "POST /ui/dlq/retry",
    "uiDlqRetry",
    "Retry dead deliveries",
    "Requeues the selected deliveries (`manage`). The form carries the session's `csrf` token.",
    scope=Scope.MANAGE,
    body=form_body(**PICKED),
)
async def dlq_retry(d: Pages, request: Request, viewer: Viewer, form: Form) -> Response:
    h = hub(request)
    ids = await _picked(request, viewer, form)
    async with actions.audited_action(request, viewer, "/v1/dlq/retry") as after:
        n = await h.deliveries.requeue(viewer.tenant_id, ids, now_us()) if ids else 0
        after.update(ids=ids, requeued=n)
    if h.worker is not None:
        h.worker.wakeup.set()
    return RedirectResponse("/ui/dlq?" + urlencode({"done": f"{n} requeued"}), 303)


@action(
    "POST /ui/dlq/archive",
    "uiDlqArchive",
    "Archive dead deliveries",
    "Archives the selected deliveries (`manage`). The form carries the session's `csrf` token.",
    scope=Scope.MANAGE,
    body=form_body(**PICKED),
)
async def dlq_archive(d: Pages, request: Request, viewer: Viewer, form: Form) -> Response:
    h = hub(request)
    ids = await _picked(request, viewer, form)
    async with actions.audited_action(request, viewer, "/v1/dlq/archive") as after:
        n = await h.deliveries.archive(viewer.tenant_id, ids, now_us()) if ids else 0
        after.update(ids=ids, archived=n)
    return RedirectResponse("/ui/dlq?" + urlencode({"done": f"{n} archived"}), 303)


HANDLERS = (deliveries, delivery, dlq, dlq_retry, dlq_archive)
