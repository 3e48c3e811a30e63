"""Data subjects' rights: `GET /v1/subjects/{subject}/export` and `DELETE /v1/subjects/{subject}`
(subjects.py does the work; the timeline lives with the other event reads in api/events.py)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from switchboard import subjects
from switchboard.api.common import JSONResponse, hub, principal
from switchboard.errors import BadRequest
from switchboard.people import recipient_problem
from switchboard.store import Scope

log = logging.getLogger("switchboard.subjects")


def _subject(request: Request) -> str:
    subject: str = request.path_params["subject"]
    if (problem := recipient_problem(subject)) is not None:
        raise BadRequest(problem, details=[{"path": "subject", "message": problem}])
    return subject


async def export_subject(request: Request) -> Response:
    """Everything held about the subject; masked like every answer unless the key has `pii`."""
    p = await principal(request, Scope.READ)
    return JSONResponse(await subjects.export(hub(request), p.tenant(), _subject(request)))


async def erase_subject(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    p.require(Scope.PII)  # erasing is acting on personal data: both scopes
    receipt = await subjects.erase_subject(hub(request), p.tenant(), _subject(request))
    log.info(
        "subject erased",
        extra={"action": "subject_erased", "tenant_id": p.tenant(), "receipt_id": receipt.id},
    )
    return JSONResponse(receipt.to_json())


routes = [
    HttpRoute("/v1/subjects/{subject}/export", export_subject, methods=["GET"]),
    HttpRoute("/v1/subjects/{subject}", erase_subject, methods=["DELETE"]),
]
