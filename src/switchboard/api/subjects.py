"""Data subjects' rights: `GET /v1/subjects/{subject}/export` and `DELETE /v1/subjects/{subject}`
(subjects.py does the work; the timeline lives with the other event reads in api/events.py).
Typed endpoints (see `api/contract.py`)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from switchboard import subjects
from switchboard.api.common import hub, principal
from switchboard.api.contract import Model, decode_path, endpoint, respond, routes_of
from switchboard.api.contract_extra import SubjectPath
from switchboard.api.recipients import Consent, PreferenceItem, Recipient
from switchboard.store import Scope

log = logging.getLogger("switchboard.subjects")
TAG = "subjects"
Count = Annotated[int, Meta(ge=0)] | UnsetType  # absent from receipts older than the count


class ErasureReceipt(Model):
    id: Annotated[str, Meta(description="The receipt's id; the export lists the subject's.")]
    subject: str
    erased_at: Annotated[str, Meta(description="ISO 8601.")]
    events_scrubbed: Count = UNSET
    recipient_deleted: bool | UnsetType = UNSET
    preferences_deleted: Count = UNSET
    consents_scrubbed: Count = UNSET
    inbox_items_deleted: Count = UNSET
    deliveries_cancelled: Count = UNSET
    attempts_scrubbed: Count = UNSET
    runs_cancelled: Count = UNSET
    requests_scrubbed: Count = UNSET
    key_destroyed: Annotated[
        bool | UnsetType,
        Meta(
            description="The subject's data key was destroyed: its PII sealed at rest, in "
            "every copy of the database, can no longer be read (false: no key was held)."
        ),
    ] = UNSET


class ExportedDelivery(Model):
    id: str
    event_id: str | None
    destination_id: str
    status: str
    attempts: int
    created_at: str
    updated_at: str


class SubjectExport(Model):
    subject: str
    exported_at: Annotated[str, Meta(description="ISO 8601.")]
    recipient: Annotated[Recipient | None, Meta(description="The profile, if any.")]
    preferences: list[PreferenceItem]
    consents: Annotated[list[Consent], Meta(description="The consent ledger, newest first.")]
    inbox: Annotated[
        list[dict[str, Any]],
        Meta(description="The in-app items, as `GET /v1/inbox/{recipient}` lists them."),
    ]
    events: Annotated[
        list[dict[str, Any]],
        Meta(
            description="The subject's events, newest first (at most 100,000).",
            extra_json_schema={"items": {"$ref": "#/components/schemas/StoredEvent"}},
        ),
    ]
    events_truncated: Annotated[bool, Meta(description="More events exist than were exported.")]
    deliveries: Annotated[list[ExportedDelivery], Meta(description="The events' deliveries.")]
    erasures: Annotated[list[ErasureReceipt], Meta(description="Earlier erasure receipts.")]


def _subject(request: Request) -> str:
    return decode_path(request, SubjectPath).subject


@endpoint(
    "GET /v1/subjects/{subject}/export",
    "exportSubject",
    TAG,
    "Everything held about a subject",
    "The profile, preferences, consents, inbox, events (newest first, at most 100,000), "
    "their deliveries and earlier erasure receipts, as one JSON document (LGPD art. 18 "
    "II and V). PII is masked unless the key also has the `pii` scope.",
    scope="read",
    path=SubjectPath,
    ok={200: (SubjectExport, "OK")},
    errors=(404,),  # a subject no route matches
)
async def export_subject(request: Request) -> Response:
    """Everything held about the subject; masked like every answer unless the key has `pii`."""
    p = await principal(request, Scope.READ)
    found = await subjects.export(hub(request), p.tenant(), _subject(request))
    # the events (up to 100,000) and inbox items are documents already shaped by their own
    # areas: passed through, not converted value by value (10 times the cost of the answer)
    passed = {"events": found.pop("events"), "inbox": found.pop("inbox")}
    typed = msgspec.convert({**found, "events": [], "inbox": []}, SubjectExport)
    return respond(msgspec.structs.replace(typed, **passed))


@endpoint(
    "DELETE /v1/subjects/{subject}",
    "eraseSubject",
    TAG,
    "Erase a subject's personal data",
    "Deletes the profile, preferences and inbox items, cancels pending deliveries and "
    "running automations, clears receivers' answers and the raw provider requests of "
    "the subject's events, and leaves the events as skeletons with their PII fields "
    "null (LGPD art. 18 VI). Needs the `pii` scope as well.",
    scope="manage",
    path=SubjectPath,
    ok={200: (ErasureReceipt, "The receipt: what was erased, as counts.")},
    errors=(404,),  # a subject no route matches
)
async def erase_subject(request: Request) -> Response:
    p = await principal(request, Scope.MANAGE)
    p.require(Scope.PII)  # erasing is acting on personal data: both scopes
    receipt = await subjects.erase_subject(hub(request), p.tenant(), _subject(request))
    log.info(
        "subject erased",
        extra={"action": "subject_erased", "tenant_id": p.tenant(), "receipt_id": receipt.id},
    )
    return respond(msgspec.convert(receipt.to_json(), ErasureReceipt))


routes = routes_of(export_subject, erase_subject)
