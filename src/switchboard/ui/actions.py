"""The dashboard's actions in the audit log: a DLQ retry or archive, or a replay started from a
page is the same change as through the API, so it leaves the same entry (docs/privacy.md,
"Audit log"), with the signed-in key as its author."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from switchboard.api.common import hub
from switchboard.audit import action_name
from switchboard.envelope import new_id, now_us
from switchboard.store.audit import AuditEntry, append
from switchboard.ui.viewer import Viewer


async def audited(request: Request, viewer: Viewer, api_path: str, after: dict[str, Any]) -> None:
    """Record an action the dashboard took, named as the API route it mirrors (`api_path`)."""
    client = request.client
    entry = AuditEntry(
        id=new_id(),
        tenant_id=viewer.tenant_id,
        at_us=now_us(),
        key_id=viewer.key.id,
        key_name=viewer.key.name,
        ip=client.host if client else None,
        action=action_name("POST", api_path),
        method="POST",
        path=request.url.path,
        status=303,
        before=None,
        after={"via": "dashboard", **after},
    )
    await append(hub(request).store, entry)
