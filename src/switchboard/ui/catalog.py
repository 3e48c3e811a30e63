"""The dashboard's catalog browser: the event types the tenant sees (the shared catalog and its
own), and one type's versions with their schemas and examples. Read-only."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub
from switchboard.api.contract import Params, decode_path
from switchboard.envelope import MAX_ID_LEN
from switchboard.errors import NotFound
from switchboard.registry import SHARED
from switchboard.ui.viewer import Pages, Viewer, page


class TypePath(Params):
    name: Annotated[str, Meta(max_length=MAX_ID_LEN, description="The event type's name.")]


@page("GET /ui/catalog", "uiCatalog", "Catalog browser", "The event types the tenant sees.")
async def types_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    rows = await hub(request).registry.list(viewer.tenant_id)
    types = sorted(rows, key=lambda t: t.name)
    return dashboard.render("catalog.html", viewer, nav="catalog", types=types, shared=SHARED)


@page(
    "GET /ui/catalog/{name}",
    "uiEventType",
    "Event type",
    "One type's versions, schemas and examples; another tenant's own type is 404.",
    path=TypePath,
    refusals={404: "no such type in the tenant's catalog"},
)
async def type_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    name = decode_path(request, TypePath).name
    store = hub(request).store
    row = await store.get_type(viewer.tenant_id, name) or await store.get_type(SHARED, name)
    if row is None:
        raise NotFound(f"no event type {name!r} in this tenant's catalog")
    versions = list(reversed(row.spec.get("versions") or []))  # the newest first
    return dashboard.render(
        "event_type.html", viewer, nav="catalog", t=row, versions=versions, shared=SHARED
    )


HANDLERS = (types_page, type_page)
