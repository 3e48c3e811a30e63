"""The dashboard's automation pages: the tenant's automations, one automation's runs by
status, and one run's steps. Runs are shown as `GET /v1/automations/{name}/runs` and
`GET /v1/runs/{id}` answer them, masked for keys without `pii`; a key with constraints sees
only the runs its constraints let it see the trigger event of."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.automations import run_view, stored_automation
from switchboard.api.common import hub
from switchboard.api.contract import Params, decode_path, decode_query
from switchboard.automation_runs import Run, Status
from switchboard.automations import NAME_RE
from switchboard.errors import BadRequest, NotFound
from switchboard.patterns import match
from switchboard.ui.masking import shown
from switchboard.ui.viewer import Pages, Viewer, page

RUNS = 100  # runs on an automation's page, newest first
STATUSES = tuple(s.value for s in Status)


class AutomationPath(Params):
    name: Annotated[str, Meta(max_length=63, description="The automation's name.")]


class RunSearch(Params):
    status: Annotated[
        str, Meta(max_length=20, description="One of " + ", ".join(STATUSES) + ".")
    ] = ""


class RunPath(Params):
    run_id: Annotated[str, Meta(max_length=100, description="The run's id.")]


def _sees(viewer: Viewer, run: Run) -> bool:
    """Whether the key may see a run: that of the trigger events its constraints match."""
    return viewer.constraint is None or match(viewer.constraint, run.trigger)


@page(
    "GET /ui/automations",
    "uiAutomations",
    "Automations",
    "The tenant's automations: each one's trigger, current version and steps.",
)
async def automations(d: Pages, request: Request, viewer: Viewer) -> Response:
    rows = await hub(request).automations.current(viewer.tenant_id)
    return d.render(
        "automations.html", viewer, nav="automations", rows=[stored_automation(*r) for r in rows]
    )


@page(
    "GET /ui/automations/{name}",
    "uiAutomation",
    "Automation runs",
    f"One automation's document and its latest {RUNS} runs, newest first, filtered by status.",
    path=AutomationPath,
    query=RunSearch,
    refusals={404: "no such automation in this tenant"},
)
async def automation(d: Pages, request: Request, viewer: Viewer) -> Response:
    h = hub(request)
    name = decode_path(request, AutomationPath).name
    status = decode_query(request, RunSearch).status
    got = await h.automations.get(viewer.tenant_id, name) if NAME_RE.match(name) else None
    if got is None:
        raise NotFound(f"no automation named {name!r} in this tenant")
    if status and status not in STATUSES:
        raise BadRequest("status: one of " + ", ".join(STATUSES))
    runs = await h.automations.runs(viewer.tenant_id, name, status or None, RUNS)
    doc = await shown(
        request,
        viewer,
        f"/v1/automations/{quote(name, safe='')}/runs",
        {"data": [msgspec.to_builtins(run_view(r)) for r in runs if _sees(viewer, r)]},
    )
    return d.render(
        "automation.html",
        viewer,
        nav="automations",
        automation=stored_automation(name, *got),
        runs=doc["data"],
        chosen=status,
        statuses=STATUSES,
    )


@page(
    "GET /ui/runs/{run_id}",
    "uiRun",
    "Automation run",
    "One run: its trigger, status, what each step did and when, and what it waits for.",
    path=RunPath,
    refusals={404: "no such run in this tenant"},
)
async def run(d: Pages, request: Request, viewer: Viewer) -> Response:
    run_id = decode_path(request, RunPath).run_id
    found = await hub(request).automations.load(run_id, viewer.tenant_id)
    if found is None or not _sees(viewer, found):
        raise NotFound(f"no run with id {run_id!r} in this tenant")
    doc = await shown(
        request, viewer, f"/v1/runs/{quote(run_id, safe='')}", msgspec.to_builtins(run_view(found))
    )
    return d.render("run.html", viewer, nav="automations", run=doc)


HANDLERS = (automations, automation, run)
