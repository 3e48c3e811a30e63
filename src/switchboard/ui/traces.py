"""The dashboard's trace view: everything one trace caused (its events, their deliveries and
attempts, and the automation runs they started) in time order, built by the same code as
`GET /v1/traces/{trace_id}` and masked as that answer is."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub
from switchboard.api.contract import Params, decode_path
from switchboard.api.observe import TRACE_ID_MAX, narrowed, timeline
from switchboard.errors import NotFound
from switchboard.store.observe import TRACE_MAX_EVENTS
from switchboard.ui.masking import shown
from switchboard.ui.viewer import Pages, Viewer, page


class TracePath(Params):
    trace_id: Annotated[str, Meta(max_length=TRACE_ID_MAX, description="The trace's id.")]


@page(
    "GET /ui/traces/{trace_id}",
    "uiTrace",
    "Trace",
    "The events of one trace, their deliveries and attempts and the automation runs they "
    f"started, in time order (its first {TRACE_MAX_EVENTS:,} events); a trace with no event "
    "in this tenant answers 404.",
    path=TracePath,
    refusals={404: "no event of this trace in this tenant"},
)
async def trace(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    trace_id = decode_path(request, TracePath).trace_id
    t = narrowed(await h.observe.trace(viewer.tenant_id, trace_id), viewer.principal)
    if not t.events:
        raise NotFound(f"no event with trace id {trace_id!r} in this tenant")
    doc = await shown(
        request,
        viewer,
        f"/v1/traces/{quote(trace_id, safe='')}",
        {"trace_id": trace_id, "timeline": msgspec.to_builtins(timeline(t))},
    )
    names = {x.id: x.name for x in await h.deliveries.list_destinations(viewer.tenant_id)}
    return d.render(
        "trace.html",
        viewer,
        nav="events",
        trace_id=doc["trace_id"],
        items=doc["timeline"],
        counts={
            "events": len(t.events),
            "deliveries": len(t.deliveries),
            "attempts": len(t.attempts),
            "automation runs": len(t.runs),
        },
        truncated=t.truncated,
        names=names,
    )


HANDLERS = (trace,)
