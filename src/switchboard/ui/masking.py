"""What a dashboard page may show its viewer: the same masked values the JSON API answers with.

A page hands the values it is about to render to `shown`, as plain data (`plain` turns the
store's structs into dicts with the same field names, which the templates read the same way).
For a key without the `pii` scope they go through `api.privacy.mask_answer` under the path of
the API call that answers the same question, so the dashboard and the API cannot disagree
about what a key may see; a key with `pii` gets them untouched, at no cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request

from switchboard.api.common import hub
from switchboard.api.privacy import mask_answer, sees_pii
from switchboard.envelope import Event
from switchboard.ui.viewer import Viewer


def plain(value: Any) -> Any:
    """Store structs (events, deliveries, attempts), tuples and lists of them as dicts and
    lists: the shape `mask_answer` walks."""
    return msgspec.to_builtins(value)


def sees_raw(viewer: Viewer) -> bool:
    return sees_pii(viewer.principal)


async def shown(request: Request, viewer: Viewer, api_path: str, doc: Any) -> Any:
    """`doc` as the API answer to `api_path` would show it to the viewer's key."""
    if sees_raw(viewer):
        return doc
    return await mask_answer(hub(request), viewer.tenant_id, api_path, doc)


def link_subjects(raw: Sequence[Event], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` (shown) with `subject_link`: whether the subject is shown as stored, so that its
    timeline link leads somewhere (a masked subject is shown as text, without the link)."""
    for stored, event in zip(raw, events, strict=True):
        event["subject_link"] = event.get("subject") == stored.subject
    return events
