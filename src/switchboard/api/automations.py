"""Automations and their runs: PUT/GET/DELETE /v1/automations/{name}, GET /v1/automations,
GET /v1/automations/{name}/runs, GET /v1/runs/{id}, POST /v1/runs/{id}/cancel."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard.api.common import JSONResponse, hub, principal, query_int, read_json
from switchboard.api.purposes import check_declared
from switchboard.automation_runs import Status
from switchboard.automations import (
    MAX_DOCUMENT_BYTES,
    MAX_SCHEDULES,
    NAME_RE,
    AutomationError,
    parse_automation,
)
from switchboard.envelope import format_us, now_us
from switchboard.errors import BadRequest, Conflict, NotFound, Unprocessable
from switchboard.store import Scope
from switchboard.store.automations import run_json


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not NAME_RE.match(name):
        raise NotFound("no automation with that name in this tenant")
    return name


def automation_json(
    name: str, version: int, spec: dict[str, Any], created_us: int
) -> dict[str, Any]:
    return {"name": name, "version": version, "updated_at": format_us(created_us), "spec": spec}


async def put_automation(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    name = _name(request)
    # JSON only: the CLI turns YAML files into JSON (YAML aliases could expand a small body
    # into a huge document here)
    spec = await read_json(request, MAX_DOCUMENT_BYTES)
    try:
        auto = parse_automation(spec, name=name)
    except AutomationError as exc:
        raise Unprocessable(f"invalid automation: {exc}", details=exc.problems) from None
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
    body = automation_json(name, version, spec, now_us())
    return JSONResponse(body, status_code=200 if existed else 201)


async def get_automation(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    name = _name(request)
    version = None
    if "version" in request.query_params:
        version = query_int(request, "version", 1, 1, 2**31 - 1)
    got = await hub(request).automations.get(p.tenant(), name, version)
    if got is None:
        raise NotFound("no automation with that name (and version) in this tenant")
    return JSONResponse(automation_json(name, *got))


async def list_automations(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    rows = await hub(request).automations.current(p.tenant())
    return JSONResponse({"data": [automation_json(*r) for r in rows]})


async def delete_automation(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    if not await h.automations.delete(p.tenant(), _name(request), now_us()):
        raise NotFound("no automation with that name in this tenant")
    h.automation_cache.forget(p.tenant())
    return Response(status_code=204)


async def list_runs(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    status = request.query_params.get("status")
    if status is not None and status not in set(Status):
        allowed = ", ".join(s.value for s in Status)
        raise BadRequest(
            f"query parameter 'status' must be one of {allowed}",
            details=[{"path": "?status", "message": f"one of {allowed}"}],
        )
    limit = query_int(request, "limit", 100, 1, 1000)
    runs = await hub(request).automations.runs(p.tenant(), _name(request), status, limit)
    return JSONResponse({"data": [run_json(r) for r in runs]})


async def get_run(request: Request) -> Response:
    p = await principal(request, Scope.READ)
    run = await hub(request).automations.load(request.path_params["run_id"], p.tenant())
    if run is None:
        raise NotFound("no run with that id in this tenant")
    return JSONResponse(run_json(run))


async def cancel_run(request: Request) -> Response:
    h = hub(request)
    p = await principal(request, Scope.MANAGE)
    run_id = request.path_params["run_id"]
    reason = "cancelled by request"
    if request.headers.get("content-length") not in (None, "0"):
        body = await read_json(request, 4096)
        if isinstance(body, dict) and isinstance(body.get("reason"), str):
            reason = f"cancelled by request: {body['reason'][:200]}"
    if not await h.automations.cancel(p.tenant(), run_id, reason, now_us()):
        run = await h.automations.load(run_id, p.tenant())
        if run is None:
            raise NotFound("no run with that id in this tenant")
        raise Conflict(f"the run has already ended ({run.status})")
    run = await h.automations.load(run_id, p.tenant())
    assert run is not None
    return JSONResponse(run_json(run))


routes = [
    HttpRoute("/v1/automations", list_automations, methods=["GET"]),
    HttpRoute("/v1/automations/{name}", put_automation, methods=["PUT"]),
    HttpRoute("/v1/automations/{name}", get_automation, methods=["GET"]),
    HttpRoute("/v1/automations/{name}", delete_automation, methods=["DELETE"]),
    HttpRoute("/v1/automations/{name}/runs", list_runs, methods=["GET"]),
    HttpRoute("/v1/runs/{run_id}", get_run, methods=["GET"]),
    HttpRoute("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
]
