"""The dashboard's replay screen: a form, its dry run (how many events and deliveries, a
sample), then the run and its progress. The spec is checked by the same function as
`POST /v1/replays`, so the limits and messages are the API's."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any
from urllib.parse import quote

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from switchboard import replay
from switchboard.api.common import hub
from switchboard.api.contract import Params, decode_path
from switchboard.api.deliveries import _replay_spec
from switchboard.errors import ApiError, NotFound
from switchboard.patterns import both, compile_pattern
from switchboard.store import Scope
from switchboard.ui import actions
from switchboard.ui.masking import shown
from switchboard.ui.viewer import Form, Pages, Viewer, action, form_body, page

FIELDS = ("types", "from", "to", "destination")
TEXT = {"type": "string"}


class ReplayPath(Params):
    replay_id: Annotated[str, Meta(max_length=100, description="The replay's id.")]


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


@page("GET /ui/replays", "uiReplayForm", "Replay form", "Choose the events to send again.")
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


@action(
    "POST /ui/replays",
    "uiReplay",
    "Dry-run or run a replay",
    "With `dry_run`: the counts and a sample, nothing sent; with `run`: starts the replay and "
    "redirects to its progress page (`manage`). The form carries the session's `csrf` token; "
    "the spec is checked as `POST /v1/replays` checks it.",
    scope=Scope.MANAGE,
    body=form_body(
        types={"type": "string", "description": "Type globs, comma-separated."},
        **{"from": TEXT, "to": TEXT},
        destination={"type": "string", "description": "A destination's name (else: routes)."},
        dry_run=TEXT,
        run=TEXT,
    ),
    again="The dry run's counts and sample, or the form again naming the field to fix.",
)
async def submit(dashboard: Pages, request: Request, viewer: Viewer, form: Form) -> Response:
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
    async with actions.audited_action(request, viewer, "/v1/replays") as after:
        started = await replay.start(h, spec)
        after["id"] = started["id"]
    return RedirectResponse(f"/ui/replays/{started['id']}", status_code=303)


@page(
    "GET /ui/replays/{replay_id}",
    "uiReplayProgress",
    "Replay progress",
    "A replay's status and counts; reloads itself while it runs.",
    path=ReplayPath,
    refusals={404: "no such replay in this tenant"},
)
async def progress(dashboard: Pages, request: Request, viewer: Viewer) -> Response:
    replay_id = decode_path(request, ReplayPath).replay_id
    job = await replay.get(hub(request), viewer.tenant_id, replay_id)
    if job is None:
        raise NotFound(f"no replay with id {replay_id!r} in this tenant")
    job = await shown(request, viewer, f"/v1/replays/{quote(replay_id, safe='')}", job)
    return dashboard.render("replay.html", viewer, nav="replays", job=job)


HANDLERS = (form_page, submit, progress)
