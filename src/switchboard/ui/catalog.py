"""The dashboard's catalog browser: the event types the tenant sees (the shared catalog and its
own), and one type's versions with their schemas and examples. Read-only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.common import hub
from switchboard.errors import NotFound
from switchboard.registry import SHARED
from switchboard.ui.viewer import Pages, Viewer


async def types_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    rows = await hub(request).registry.list(viewer.tenant_id)
    types = sorted(rows, key=lambda t: t.name)
    return dashboard.render("catalog.html", viewer, nav="catalog", types=types, shared=SHARED)


async def type_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    store = hub(request).store
    row = await store.get_type(viewer.tenant_id, name) or await store.get_type(SHARED, name)
    if row is None:
        raise NotFound(f"no event type {name!r} in this tenant's catalog")
    versions = list(reversed(row.spec.get("versions") or []))  # the newest first
    return dashboard.render(
        "event_type.html", viewer, nav="catalog", t=row, versions=versions, shared=SHARED
    )
