"""Automations and their runs: PUT/GET/DELETE /v1/automations/{name}, GET /v1/automations,
GET /v1/automations/{name}/runs, GET /v1/runs/{id}, POST /v1/runs/{id}/cancel. Typed endpoints
(see `api/contract.py`); the document's own shape is in `api/automation_document.py`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard.api.automation_document import (
    DOCUMENT_REF,
    NAME_PATTERN,
    AutomationDocument,
    check_document,
)
from switchboard.api.common import hub, principal, read_json
from switchboard.api.contract import (
    Body,
    Model,
    Params,
    decode_body,
    decode_path,
    decode_query,
    endpoint,
    respond,
    routes_of,
)
from switchboard.api.purposes import check_declared
from switchboard.automation_runs import Run
from switchboard.automations import MAX_DOCUMENT_BYTES, MAX_SCHEDULES
from switchboard.envelope import format_us, now_us
from switchboard.errors import Conflict, NotFound, Unprocessable
from switchboard.store import Scope

TAG = "automations"
MAX_RUN_ID = 100  # a run id is a UUIDv7 (36 characters); longer is no run's
RunStatus = Literal["running", "completed", "stopped", "cancelled", "failed"]


class AutomationPath(Params):
    name: Annotated[str, Meta(pattern=NAME_PATTERN, description="The automation's name.")]


class VersionQuery(Params):
    version: (
        Annotated[int, Meta(ge=1, le=2**31 - 1, description="A version number.")] | UnsetType
    ) = UNSET


class RunsQuery(Params):
    status: Annotated[RunStatus, Meta(description="Run status.")] | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=1000, description="Page size (default 100).")] = 100


class RunPath(Params):
    run_id: Annotated[str, Meta(min_length=1, max_length=MAX_RUN_ID, description="The run id.")]


class CancelIn(Body):
    reason: Annotated[str, Meta(max_length=200, description="Kept in the run's reason.")] | None = (
        None
    )


class StoredAutomation(Model):
    name: str
    version: Annotated[
        int, Meta(description="Each PUT adds a version; a run keeps the one it started with.")
    ]
    updated_at: Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
    spec: Annotated[
        dict[str, Any],
        Meta(
            description="The document as it was stored.",
            extra_json_schema={"$ref": DOCUMENT_REF},
        ),
    ]


class StoredAutomations(Model):
    data: list[StoredAutomation]


class RunTrigger(Model):
    id: str | None
    type: str | None
    subject: str | None


class AutomationRun(Model):
    id: str
    automation: str
    version: int
    status: RunStatus
    reason: Annotated[str | None, Meta(description="Why the run stopped, was cancelled or failed.")]
    trigger: RunTrigger
    next_step_at: Annotated[str | None, Meta(extra_json_schema={"format": "date-time"})]
    waiting_until: Annotated[str | None, Meta(extra_json_schema={"format": "date-time"})]
    steps: Annotated[
        list[dict[str, Any]],
        Meta(description="What each step did and when (`step`, `at`): delivery ids, events."),
    ]
    matched: Annotated[dict[str, Any], Meta(description="Step id → the event it matched.")]
    created_at: Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
    ended_at: Annotated[str | None, Meta(extra_json_schema={"format": "date-time"})]


class AutomationRuns(Model):
    data: list[AutomationRun]


def stored_automation(
    name: str, version: int, spec: dict[str, Any], created_us: int
) -> StoredAutomation:
    return StoredAutomation(name=name, version=version, updated_at=format_us(created_us), spec=spec)


def run_view(run: Run) -> AutomationRun:
    until = run.deadline_us or run.until_us
    return AutomationRun(
        id=run.id,
        automation=run.automation,
        version=run.version,
        status=run.status,  # type: ignore[arg-type]  # a Status, whose values are RunStatus
        reason=run.reason,
        trigger=RunTrigger(
            id=run.trigger.get("id"),
            type=run.trigger.get("type"),
            subject=run.trigger.get("subject"),
        ),
        next_step_at=format_us(run.due_us) if run.due_us is not None else None,
        waiting_until=format_us(until) if until else None,
        steps=[
            {**{k: v for k, v in h.items() if k != "at_us"}, "at": format_us(h["at_us"])}
            for h in run.history
        ],
        matched=run.matched,
        created_at=format_us(run.created_us),
        ended_at=format_us(run.ended_us) if run.ended_us is not None else None,
    )


@endpoint(
    "GET /v1/automations",
    "listAutomations",
    TAG,
    "List automations",
    "The current version of each automation of the tenant.",
    scope="read",
    ok={200: (StoredAutomations, "OK")},
)
async def list_automations(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).automations.current(p.tenant())
    return respond(StoredAutomations(data=[stored_automation(*r) for r in rows]))


@endpoint(
    "PUT /v1/automations/{name}",
    "putAutomation",
    TAG,
    "Create or change an automation",
    "Validates the document (every problem with its path, 422) and stores it as a new "
    f"version; runs already started keep their version. JSON only, at most {MAX_DOCUMENT_BYTES} "
    "bytes (`switchboard automations apply` reads YAML files).",
    scope="manage",
    path=AutomationPath,
    body=AutomationDocument,
    ok={200: (StoredAutomation, "A new version."), 201: (StoredAutomation, "Created.")},
    errors=(422,),
)
async def put_automation(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    name = decode_path(request, AutomationPath).name
    # JSON only: the CLI turns YAML files into JSON (YAML aliases could expand a small body
    # into a huge document here). The document is stored as it came, so it is read as JSON
    # and checked against the model and the parser rather than decoded into the model.
    spec = await read_json(request, MAX_DOCUMENT_BYTES)
    auto = check_document(spec, name)
    tenant = p.tenant()
    await check_declared(h.store, tenant, auto.requires_consent, "/requires_consent")
    names = {d.name for d in await h.deliveries.list_destinations(tenant)}
    missing = [
        {
            "path": f"{op.path}/destination",
            "message": f"no destination {op.destination!r} in this tenant",
        }
        for op in auto.ops
        if op.kind == "send" and op.destination not in names
    ]
    if missing:
        raise Unprocessable(
            "invalid automation: " + "; ".join(m["message"] for m in missing), details=missing
        )
    if auto.schedule is not None:
        # a limit per tenant on scheduled automations (each fires on its own; the interval of
        # each is bounded by the parser)
        had = await h.automations.get(tenant, name)
        already = had is not None and isinstance(had[1].get("on"), dict)
        if not already and await h.automations.count_schedules(tenant) >= MAX_SCHEDULES:
            problem = {
                "path": "/on/schedule",
                "message": f"the tenant has {MAX_SCHEDULES} scheduled automations, the limit",
            }
            raise Unprocessable(f"invalid automation: {problem['message']}", details=[problem])
    existed = await h.automations.get(tenant, name) is not None
    version = await h.automations.put(tenant, name, spec, now_us())
    h.automation_cache.forget(tenant)
    h.routes.forget(tenant)  # the transforms of its send steps travel as routes
    return respond(stored_automation(name, version, spec, now_us()), 200 if existed else 201)


@endpoint(
    "GET /v1/automations/{name}",
    "getAutomation",
    TAG,
    "Get an automation",
    "The current version, or `?version=`.",
    scope="read",
    path=AutomationPath,
    query=VersionQuery,
    ok={200: (StoredAutomation, "OK")},
    errors=(404,),
)
async def get_automation(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = decode_path(request, AutomationPath).name
    version = decode_query(request, VersionQuery).version or None
    got = await hub(request).automations.get(p.tenant(), name, version)
    if got is None:
        raise NotFound("no automation with that name (and version) in this tenant")
    return respond(stored_automation(name, *got))


@endpoint(
    "DELETE /v1/automations/{name}",
    "deleteAutomation",
    TAG,
    "Delete an automation",
    "No new runs start; runs already started finish on their version.",
    scope="manage",
    path=AutomationPath,
    ok={204: (None, "Done; no body.")},
    errors=(404,),
)
async def delete_automation(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    name = decode_path(request, AutomationPath).name
    if not await h.automations.delete(p.tenant(), name, now_us()):
        raise NotFound("no automation with that name in this tenant")
    h.automation_cache.forget(p.tenant())
    return Response(status_code=204)


@endpoint(
    "GET /v1/automations/{name}/runs",
    "listAutomationRuns",
    TAG,
    "List an automation's runs",
    "Newest first.",
    scope="read",
    path=AutomationPath,
    query=RunsQuery,
    ok={200: (AutomationRuns, "OK")},
    errors=(404,),
)
async def list_runs(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = decode_path(request, AutomationPath).name
    q = decode_query(request, RunsQuery)
    runs = await hub(request).automations.runs(p.tenant(), name, q.status or None, q.limit)
    return respond(AutomationRuns(data=[run_view(r) for r in runs]))


@endpoint(
    "GET /v1/runs/{run_id}",
    "getRun",
    TAG,
    "Get a run",
    "Its status, reason, each step with its time, matched event and delivery.",
    scope="read",
    path=RunPath,
    ok={200: (AutomationRun, "OK")},
    errors=(404,),
)
async def get_run(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    run_id = decode_path(request, RunPath).run_id
    run = await hub(request).automations.load(run_id, p.tenant())
    if run is None:
        raise NotFound("no run with that id in this tenant")
    return respond(run_view(run))


@endpoint(
    "POST /v1/runs/{run_id}/cancel",
    "cancelRun",
    TAG,
    "Cancel a run",
    "Durably: the run ends `cancelled` and takes no further step. The body is optional.",
    scope="manage",
    path=RunPath,
    body=CancelIn,
    body_required=False,
    ok={200: (AutomationRun, "OK")},
    errors=(404, 409),
)
async def cancel_run(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    run_id = decode_path(request, RunPath).run_id
    reason = "cancelled by request"
    if request.headers.get("content-length") not in (None, "0"):
        body = await decode_body(request, CancelIn, 4096)
        if body.reason is not None:
            reason = f"cancelled by request: {body.reason}"
    if not await h.automations.cancel(p.tenant(), run_id, reason, now_us()):
        run = await h.automations.load(run_id, p.tenant())
        if run is None:
            raise NotFound("no run with that id in this tenant")
        raise Conflict(f"the run has already ended ({run.status})")
    run = await h.automations.load(run_id, p.tenant())
    assert run is not None
    return respond(run_view(run))


# (a literal path before a {param} one where they could meet: none here)
routes = routes_of(
    list_automations,
    put_automation,
    get_automation,
    delete_automation,
    list_runs,
    get_run,
    cancel_run,
)
