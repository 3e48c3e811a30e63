"""The dashboard's actions in the audit log: a DLQ retry or archive, or a replay started from a
page is the same change as through the API, so it leaves the same entry (docs/privacy.md,
"Audit log"), with the signed-in key as its author."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request

from switchboard.api.common import hub
from switchboard.audit import action_name
from switchboard.envelope import new_id, now_us
from switchboard.store.audit import AuditEntry, audited
from switchboard.ui.viewer import Viewer


@asynccontextmanager
async def audited_action(
    request: Request, viewer: Viewer, api_path: str
) -> AsyncIterator[dict[str, Any]]:
    """Take a dashboard action in the block, named as the API route it mirrors (`api_path`):
    what the block puts in the yielded dict is the entry's `after`, and the entry commits in
    the same transaction as the action's writes (neither without the other)."""
    after: dict[str, Any] = {"via": "dashboard"}
    async with audited(hub(request).store) as change:
        yield after
        client = request.client
        change.entry = AuditEntry(
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
            after=after,
        )
