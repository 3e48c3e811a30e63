"""The retention job: a pass over every tenant's events and the logs, in paced chunks
(`retention.py` holds the rules it applies; docs/privacy.md, "Retention")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from switchboard.config import Settings
from switchboard.envelope import now_us as clock_us
from switchboard.errors import StoreError
from switchboard.retention import DAY_US, Cutoffs, Pace, event_cutoffs, type_retentions
from switchboard.store import Store
from switchboard.store import partitions as months
from switchboard.store import retention as sql
from switchboard.store.audit import expire as expire_audit

log = logging.getLogger("switchboard.retention")


class Host(Protocol):
    """What the job uses of the running hub (`hub.Hub`, which starts it and so sits above)."""

    settings: Settings
    store: Store


async def run_once(hub: Host, now_us: int) -> dict[str, int]:
    """One pass over every tenant and log; the rows deleted, by kind."""
    settings, store = hub.settings, hub.store
    # SQLite has one writer, which a chunk holds whole; PostgreSQL locks only the chunk's rows
    budget = settings.retention_chunk_ms / 1000 if store.backend == "sqlite" else 0.0
    pace = Pace(max(1, settings.retention_chunk), budget)
    deleted = {"events": 0, "attempts": 0, "inbound_requests": 0, "audit_log": 0}
    rules: dict[str, Cutoffs] = {}
    for tenant_id, tenant_days in await sql.tenant_retentions(store):
        type_days = type_retentions(await store.list_types(("*", tenant_id)))
        rules[tenant_id] = event_cutoffs(
            now_us, type_days, tenant_days, settings.retention_floor_days
        )
    if store.backend == "postgres":
        # whole months first (store/partitions.py): what is left is deleted row by row below
        try:
            deleted["events"] += await months.upkeep(cast(Any, store), now_us, rules)
        except StoreError:  # the chunked deletes below still run; the months at the next pass
            log.exception("partition upkeep failed", extra={"action": "retention_failed"})
    for tenant_id, cutoffs in rules.items():
        for name, cutoff in cutoffs.by_type.items():
            deleted["events"] += await pace.drain(
                sql.expire_events, store, tenant_id, cutoff, type_=name
            )
        if cutoffs.default_us is not None:
            deleted["events"] += await pace.drain(
                sql.expire_events,
                store,
                tenant_id,
                cutoffs.default_us,
                except_types=tuple(cutoffs.by_type),
            )
    logs: tuple[tuple[str, int, Callable[..., Awaitable[int]]], ...] = (
        ("attempts", settings.attempt_retention_days, sql.expire_attempts),
        ("inbound_requests", settings.inbound_retention_days, sql.expire_inbound),
        ("audit_log", settings.audit_retention_days, expire_audit),
    )
    for kind, days, expire in logs:
        if days:
            deleted[kind] += await pace.drain(expire, store, now_us - days * DAY_US)
    log.info("retention pass", extra={"action": "retention", **deleted})
    return deleted


async def retention_loop(hub: Host) -> None:
    """The worker's background job: a pass every SWITCHBOARD_RETENTION_INTERVAL seconds."""
    interval = hub.settings.retention_interval
    if interval <= 0:
        return
    while True:
        try:
            await run_once(hub, clock_us())
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed pass is retried at the next interval, never fatal
            log.exception("retention pass failed", extra={"action": "retention_failed"})
        await asyncio.sleep(interval)
