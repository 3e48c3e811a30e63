"""The dashboard's live tail: the tenant's newest events on a page that a small script keeps
current through server-sent events. Without JavaScript the page reloads itself instead.

The stream polls the store once a second for events after the last one sent (by `seq`), sends
each as an `ev` message whose id is its `seq` (a reconnecting browser sends it back as
`Last-Event-ID`), and ends after `STREAM_SECONDS`, when the browser reconnects; a key may hold
`MAX_STREAMS` streams at once in a process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from switchboard.api.common import hub
from switchboard.api.contract import Params, Raw, decode_query
from switchboard.envelope import format_us
from switchboard.errors import BadRequest, RateLimited
from switchboard.store import EventQuery, Store
from switchboard.store.deliveries import pattern_fragment
from switchboard.ui.masking import plain, sees_raw, shown
from switchboard.ui.viewer import Pages, Viewer, page

POLL_SECONDS = 1.0
STREAM_SECONDS = 300.0
MAX_STREAMS = 4  # per key and process
BATCH = 100
# Events after a position, oldest first: `seq` is the events table's key, so this walks it.
EVENTS_AFTER = (
    "SELECT seq, id, type, subject, source, status, time_us FROM events "
    "WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
# The same for a key limited by constraints: only the events they match (`{narrowed}`).
EVENTS_AFTER_NARROWED = (
    "SELECT e.seq, e.id, e.type, e.subject, e.source, e.status, e.time_us FROM events e "
    "WHERE e.tenant_id = ? AND e.seq > ? AND ({narrowed}) ORDER BY e.seq LIMIT ?"
)
NEWEST = "SELECT max(seq) FROM events"  # the key's last entry: one index lookup
SEQ_MAX = 2**63 - 1


class After(Params):
    after: Annotated[
        int,
        Meta(ge=0, le=SEQ_MAX, description="Send events after this seq (`Last-Event-ID` wins)."),
    ] = 0


def row_doc(r: Any) -> dict[str, Any]:
    return {
        "seq": int(r[0]),
        "id": r[1],
        "type": r[2],
        "subject": r[3],
        "source": r[4],
        "status": r[5],
        "time": format_us(int(r[6])),
    }


async def shown_rows(request: Request, viewer: Viewer, rows: list[Any]) -> list[dict[str, Any]]:
    """A batch of the stream as `GET /v1/events` would show it: the rows name their events by
    `event_ids`, so the masking reads those events and hides their raw values wherever the
    rows repeat them (a subject that is also a name in the data)."""
    docs = [row_doc(r) for r in rows]
    if not docs or sees_raw(viewer):
        return docs
    doc = {"event_ids": [d["id"] for d in docs], "data": docs}
    masked: list[dict[str, Any]] = (await shown(request, viewer, "/v1/events", doc))["data"]
    return masked


@page("GET /ui/live", "uiLive", "Live tail", "The newest events, kept current by `live.js`.")
async def live_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    query = EventQuery(limit=20, pattern=viewer.constraint)
    events = await hub(request).store.list_events(viewer.tenant_id, query)
    after = max((e.seq for e in events), default=0)
    if after == 0:  # no events yet: start after the newest of any tenant (seq is shared)
        after = int((await hub(request).store.fetch(NEWEST))[0][0] or 0)
    doc = await shown(request, viewer, "/v1/events", {"data": plain(events)})
    return dashboard.render("live.html", viewer, nav="live", events=doc["data"], after=after)


def _start(request: Request) -> int:
    after = decode_query(request, After).after
    raw = request.headers.get("last-event-id")
    if raw is None:
        return after
    if not raw.isdigit() or len(raw) > 19 or int(raw) > SEQ_MAX:
        raise BadRequest("Last-Event-ID: a non-negative integer (an event's seq)")
    return int(raw)


def _after(store: Store, viewer: Viewer, after: int) -> tuple[str, list[Any]]:
    """The query for the next batch: the key's part of the tenant after `after`."""
    if viewer.constraint is None:
        return EVENTS_AFTER, [viewer.tenant_id, after, BATCH]
    params: list[Any] = [viewer.tenant_id, after]
    sql = EVENTS_AFTER_NARROWED.format(
        narrowed=pattern_fragment(viewer.constraint, store.dialect, params)
    )
    return sql, [*params, BATCH]


@page(
    "GET /ui/live/stream",
    "uiLiveStream",
    "Live tail stream",
    f"Server-sent events: one `ev` message per new event of the tenant (id: its `seq`; `after` "
    f"or `Last-Event-ID` says where to start). Ends after {STREAM_SECONDS:.0f} seconds; at most "
    f"{MAX_STREAMS} open per key and process (429).",
    query=After,
    ok=Raw("text/event-stream"),
    refusals={429: f"the key already has {MAX_STREAMS} streams open in this process"},
)
async def stream(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    after = _start(request)
    key_id = viewer.key.id
    if dashboard.streams.get(key_id, 0) >= MAX_STREAMS:
        raise RateLimited(f"this key already has {MAX_STREAMS} live tails open in this process")
    store = hub(request).store

    async def messages() -> AsyncIterator[bytes]:
        nonlocal after
        dashboard.streams[key_id] = dashboard.streams.get(key_id, 0) + 1
        loop = asyncio.get_running_loop()
        end = loop.time() + STREAM_SECONDS
        try:
            yield b"retry: 2000\n\n"
            while loop.time() < end:
                rows = await store.fetch(*_after(store, viewer, after))
                for doc in await shown_rows(request, viewer, rows):
                    after = int(doc["seq"])
                    yield b"id: %d\nevent: ev\ndata: %s\n\n" % (after, orjson.dumps(doc))
                if len(rows) < BATCH:
                    if not rows:  # skip other tenants' events from here on: each poll stays short
                        newest = (await store.fetch(NEWEST))[0][0]
                        after = max(after, int(newest or 0))
                    yield b": idle\n\n"  # a comment keeps proxies from closing the stream
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            left = dashboard.streams.get(key_id, 1) - 1
            if left:
                dashboard.streams[key_id] = left
            else:
                dashboard.streams.pop(key_id, None)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


HANDLERS = (live_page, stream)
