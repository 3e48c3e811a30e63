"""The dashboard's replay screen: a form, its dry run (how many events and deliveries, a
sample), then the run and its progress. The spec is checked by the same function as
`POST /v1/replays`, so the limits and messages are the API's."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from switchboard import replay
from switchboard.api.common import hub
from switchboard.api.deliveries import _replay_spec
from switchboard.errors import ApiError, NotFound
from switchboard.patterns import both, compile_pattern
from switchboard.ui import actions
from switchboard.ui.masking import shown
from switchboard.ui.viewer import Pages, Viewer

FIELDS = ("types", "from", "to", "destination")


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


async def _names(request: Request, tenant_id: str) -> tuple[dict[str, str], dict[str, str]]:
    h = hub(request)
    dests: dict[str, str] = {}
    for d in await h.deliveries.list_destinations(tenant_id):
        dests[d.name] = dests[d.id] = d.id
    routes: dict[str, str] = {}
    for rid, name, _ in await h.deliveries.list_routes(tenant_id):
        routes[name] = routes[rid] = rid
    return dests, routes


def _body(values: dict[str, str], dry_run: bool) -> dict[str, Any]:
    types = [t.strip() for t in values["types"].split(",") if t.strip()]
    body: dict[str, Any] = {"types": types, "dry_run": dry_run}
    for field in ("from", "to"):
        if values[field]:
            body[field] = values[field]
    if values["destination"]:
        body["destinations"] = [values["destination"]]
    return body


async def form_page(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    return await _render(dashboard, request, viewer, dict.fromkeys(FIELDS, ""), None, "")


async def _render(
    dashboard: Pages,
    request: Request,
    viewer: Viewer,
    values: dict[str, str],
    plan: dict[str, Any] | None,
    error: str,
    status: int = 200,
) -> Response:
    dests = await hub(request).deliveries.list_destinations(viewer.tenant_id)
    return dashboard.render(
        "replays.html",
        viewer,
        status,
        nav="replays",
        values=values,
        plan=plan,
        error=error,
        destinations=dests,
        names={d.id: d.name for d in dests},
    )


async def submit(
    dashboard: Pages, request: Request, viewer: Viewer, form: dict[str, list[str]]
) -> Response:
    """The dry run (the `dry_run` button) or the run itself (the `run` button)."""
    values = {name: _first(form, name) for name in FIELDS}
    dry = "run" not in form
    dests, routes = await _names(request, viewer.tenant_id)
    try:
        spec, _ = _replay_spec(_body(values, dry), viewer.tenant_id, dests, routes)
    except ApiError as exc:
        return await _render(dashboard, request, viewer, values, None, str(exc), exc.status)
    if viewer.constraint is not None:  # a constrained key replays only the events it may see
        mine = both(
            compile_pattern(spec.pattern, None) if spec.pattern else None, viewer.constraint
        )
        spec = dataclasses.replace(spec, pattern=dict(mine.spec) if mine else None)
    h = hub(request)
    if dry:
        plan = await shown(request, viewer, "/v1/replays", await replay.dry_run(h, spec))
        return await _render(dashboard, request, viewer, values, plan, "")
    started = await replay.start(h, spec)
    await actions.audited(request, viewer, "/v1/replays", {"id": started["id"]})
    return RedirectResponse(f"/ui/replays/{started['id']}", status_code=303)


async def progress(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    replay_id = request.path_params["replay_id"]
    job = await replay.get(hub(request), viewer.tenant_id, replay_id)
    if job is None:
        raise NotFound(f"no replay with id {replay_id!r} in this tenant")
    job = await shown(request, viewer, f"/v1/replays/{quote(replay_id, safe='')}", job)
    return dashboard.render("replay.html", viewer, nav="replays", job=job)
