"""A data subject's rights (LGPD art. 18): everything the hub holds about one subject, exported
in one document, and erased on request.

Erasure keeps the events as skeletons — their type, time, source and ids stay, so counts and
metrics still add up — with every PII path of their catalog type set to null (an event whose
type the catalog does not know loses its whole `data`, since nothing says which of it is
personal; the hub's own `switchboard.*` events lose their error text) and the IP and user agent
of their `context` removed. What exists only for the person goes: the recipient profile and
preferences, inbox items made from or for the subject, pending deliveries (cancelled), running
automations (cancelled), the first bytes of receivers' answers to its deliveries, and the raw
provider requests its events were mapped from. Consent records stay as the proof of what was
agreed, without IP and user agent. The receipt is stored, so the erasure can be shown later.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.envelope import Event, format_us, new_id, now_us
from switchboard.pii import erase
from switchboard.store import Cursor, EventQuery
from switchboard.store.automations import cancel_runs
from switchboard.store.people import PeopleStore
from switchboard.store.queries import dumps, load_json
from switchboard.store.subject_keys import SEAL_TTL

if TYPE_CHECKING:
    from switchboard.hub import Hub

_PAGE = 500  # events read per query while exporting or erasing
EXPORT_MAX_EVENTS = 100_000  # an export past this says `truncated`
_CONTEXT_PII = ("ip", "user_agent", "userAgent", "ip_address")
_CHUNK = 200  # ids per IN (…) list
SYSTEM_PREFIX = "switchboard."  # the hub's own events (delivery outcomes), no tenant data


@dataclass(frozen=True)
class Receipt:
    id: str
    subject: str
    erased_at: str
    events_scrubbed: int
    recipient_deleted: bool
    preferences_deleted: int
    consents_scrubbed: int
    inbox_items_deleted: int
    deliveries_cancelled: int
    attempts_scrubbed: int
    runs_cancelled: int
    requests_scrubbed: int
    key_destroyed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def subject_events(hub: Hub, tenant_id: str, subject: str, limit: int) -> list[Event]:
    """The subject's events, newest first, at most `limit`."""
    found: list[Event] = []
    cursor: Cursor | None = None
    while len(found) < limit:
        page = await hub.store.list_events(
            tenant_id,
            EventQuery(subject=subject, cursor=cursor, limit=min(_PAGE, limit - len(found))),
        )
        found += page
        if len(page) < _PAGE:
            break
        cursor = Cursor(page[-1].time_us, page[-1].seq)
    return found


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


async def export(hub: Hub, tenant_id: str, subject: str) -> dict[str, Any]:
    """Everything held about `subject` in `tenant_id`, as one JSON document."""
    people = PeopleStore(hub.store)
    events = await subject_events(hub, tenant_id, subject, EXPORT_MAX_EVENTS + 1)
    truncated = len(events) > EXPORT_MAX_EVENTS
    events = events[:EXPORT_MAX_EVENTS]
    seqs = [e.seq for e in events]
    deliveries: list[dict[str, Any]] = []
    by_seq = {e.seq: e.id for e in events}
    for chunk in _chunks(seqs):
        rows = await hub.store.fetch(
            "SELECT id, event_seq, destination_id, status, attempts, created_us, updated_us "
            f"FROM deliveries WHERE tenant_id = ? AND event_seq IN ({_marks(chunk)})",
            [tenant_id, *chunk],
        )
        deliveries += [
            {
                "id": r[0],
                "event_id": by_seq.get(r[1]),
                "destination_id": r[2],
                "status": r[3],
                "attempts": r[4],
                "created_at": format_us(r[5]),
                "updated_at": format_us(r[6]),
            }
            for r in rows
        ]
    erasures = await hub.store.fetch(
        "SELECT receipt FROM subject_erasures WHERE tenant_id = ? AND subject = ? "
        "ORDER BY erased_us",
        (tenant_id, subject),
    )
    return {
        "subject": subject,
        "exported_at": format_us(now_us()),
        "recipient": await people.get(tenant_id, subject),
        "preferences": [asdict(p) for p in await people.preferences(tenant_id, subject)],
        "consents": await people.consents(tenant_id, subject, 10_000),
        "inbox": await hub.deliveries.inbox(tenant_id, subject, False, 10_000),
        "events": [e.to_json() for e in events],
        "events_truncated": truncated,
        "deliveries": deliveries,
        "erasures": [load_json(r[0]) for r in erasures],
    }


async def erase_subject(hub: Hub, tenant_id: str, subject: str) -> Receipt:
    """Erase `subject`'s personal data in `tenant_id` (see the module docstring)."""
    now = now_us()
    store = hub.store
    events = await subject_events(hub, tenant_id, subject, 2**62)
    seqs = [e.seq for e in events]
    ids = {e.id for e in events}
    # (what it counts, sql, params): one batch, one transaction
    work: list[tuple[str, str, Any]] = []
    for e in events:
        skeleton = await _skeleton(hub, e)
        if skeleton is not None:
            work.append(
                (
                    "events",
                    "UPDATE events SET data = ?j, context = ?j WHERE tenant_id = ? AND seq = ?",
                    (dumps(skeleton[0]), dumps(skeleton[1]), tenant_id, e.seq),
                )
            )
    delivery_ids: list[str] = []
    for chunk in _chunks(seqs):
        delivery_ids += [
            r[0]
            for r in await store.fetch(
                f"SELECT id FROM deliveries WHERE tenant_id = ? AND event_seq IN ({_marks(chunk)})",
                [tenant_id, *chunk],
            )
        ]
        work.append(
            (
                "deliveries",
                "UPDATE deliveries SET status = 'cancelled', last_error = 'subject erased', "
                "next_attempt_us = ?, updated_us = ? WHERE tenant_id = ? "
                f"AND status IN ('pending', 'retrying', 'dead') AND event_seq IN ({_marks(chunk)})",
                [now, now, tenant_id, *chunk],
            )
        )
        # the same cancel as a consent withdrawal's: waits, digest items, a held key go too
        *clear, cancel = cancel_runs(
            tenant_id, f"trigger_seq IN ({_marks(chunk)})", chunk, "subject erased", now
        )
        work += [("", sql, params) for sql, params in clear]
        work.append(("runs", *cancel))
    for chunk in _chunks(sorted(ids)):
        # business-dedup claims of its events hold its phone or email (a WhatsApp lead's number)
        work.append(
            (
                "",
                f"DELETE FROM dedup_keys WHERE tenant_id = ? AND event_id IN ({_marks(chunk)})",
                [tenant_id, *chunk],
            )
        )
    for chunk in _chunks(delivery_ids):
        work.append(
            (
                "attempts",
                "UPDATE attempts SET response = NULL, message = NULL "
                f"WHERE tenant_id = ? AND delivery_id IN ({_marks(chunk)})",
                [tenant_id, *chunk],
            )
        )
        work.append(
            (
                "inbox",
                f"DELETE FROM inbox_items WHERE tenant_id = ? AND delivery_id IN ({_marks(chunk)})",
                [tenant_id, *chunk],
            )
        )
    work.append(
        (
            "inbox",
            "DELETE FROM inbox_items WHERE tenant_id = ? AND recipient = ?",
            (tenant_id, subject),
        )
    )
    requests = [
        r[0]
        for r in await store.fetch(
            "SELECT id, event_ids FROM inbound_requests WHERE tenant_id = ?", (tenant_id,)
        )
        if ids.intersection(load_json(r[1]) or ())
    ]
    for chunk in _chunks(requests):
        work.append(
            (
                "requests",
                "UPDATE inbound_requests SET body = ?, error = 'body erased with its subject' "
                f"WHERE tenant_id = ? AND id IN ({_marks(chunk)})",
                [b"", tenant_id, *chunk],
            )
        )
    work += [
        # crypto-shredding: the key that sealed the subject's PII, in this database and every
        # backup of it (store/subject_keys.py)
        ("key", *store.subject_keys.shred_statement(tenant_id, subject)),
        (
            "recipient",
            "DELETE FROM recipients WHERE tenant_id = ? AND id = ?",
            (tenant_id, subject),
        ),
        (
            "preferences",
            "DELETE FROM preferences WHERE tenant_id = ? AND recipient_id = ?",
            (tenant_id, subject),
        ),
        (
            "consents",
            "UPDATE consents SET ip = NULL, user_agent = NULL "
            "WHERE tenant_id = ? AND recipient_id = ?",
            (tenant_id, subject),
        ),
    ]
    results = await store.batch([(sql, params) for _, sql, params in work])
    n: dict[str, int] = {}
    for (label, _, _), count in zip(work, results, strict=True):
        n[label] = n.get(label, 0) + count
    if n["key"]:
        # every process may seal with a key it used in the last SEAL_TTL seconds: once that has
        # passed, none seals with the destroyed one (a later event of the subject gets a new key)
        store.subject_keys.forget(tenant_id, subject)
        await asyncio.sleep(SEAL_TTL)
    receipt = Receipt(
        id=new_id(),
        subject=subject,
        erased_at=format_us(now),
        events_scrubbed=n.get("events", 0),
        recipient_deleted=n["recipient"] > 0,
        preferences_deleted=n["preferences"],
        consents_scrubbed=n["consents"],
        inbox_items_deleted=n["inbox"],
        deliveries_cancelled=n.get("deliveries", 0),
        attempts_scrubbed=n.get("attempts", 0),
        runs_cancelled=n.get("runs", 0),
        requests_scrubbed=n.get("requests", 0),
        key_destroyed=n["key"] > 0,
    )
    await store.execute(
        "INSERT INTO subject_erasures (id, tenant_id, subject, erased_us, receipt) "
        "VALUES (?, ?, ?, ?, ?j)",
        (receipt.id, tenant_id, subject, now, orjson.dumps(receipt.to_json()).decode()),
    )
    return receipt


async def _skeleton(hub: Hub, e: Event) -> tuple[Any, Any] | None:
    """The event's data and context without personal data; None when there is none."""
    spec = await hub.registry.lookup(e.tenant_id, e.type)
    if spec is not None:
        data = erase(e.data, spec.pii)
    elif e.type.startswith(SYSTEM_PREFIX):  # the hub's own: ids and counts, and an error text
        data = erase(e.data, ("error",))
    else:
        data = {}
    context = e.context
    if isinstance(context, dict) and any(k in context for k in _CONTEXT_PII):
        context = {k: v for k, v in context.items() if k not in _CONTEXT_PII}
    if data == e.data and context == e.context:
        return None
    return data, context
