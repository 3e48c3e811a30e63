"""Built-in alerts, published as the tenant's own events so routes send them anywhere (Slack,
Discord, email, a webhook) like any other event.

Every SWITCHBOARD_ALERT_INTERVAL seconds each worker process measures, per tenant, the due
backlog, the deliveries gone dead within the window and the share of failed attempts within it.
A measure over its threshold opens an episode and publishes `switchboard.alert.<name>` once; when
it is back under, the episode closes and `switchboard.alert.resolved` is published. Episodes are
rows (`alert_episodes`) claimed with an insert that only one process can win, so several workers
checking at once still publish each transition once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import uuid_utils

from switchboard.config import Settings
from switchboard.envelope import Event, format_us, new_id, now_us
from switchboard.ingest import routable
from switchboard.records import NewDelivery

if TYPE_CHECKING:
    from switchboard.delivery import Worker
    from switchboard.router import RouteCache
    from switchboard.store import Store
    from switchboard.store.observe import ObserveStore


class Host(Protocol):
    """What the alerts use of the running hub (`hub.Hub`, which starts them and so sits above)."""

    settings: Settings
    store: Store
    routes: RouteCache
    observe: ObserveStore
    worker: Worker | None


log = logging.getLogger("switchboard.alerts")
ALERT_PREFIX = "switchboard.alert."
RESOLVED = ALERT_PREFIX + "resolved"
SOURCE = "switchboard"


@dataclass(frozen=True)
class Measures:
    """One check's figures, per tenant."""

    due: dict[str, int]
    dead_recent: dict[str, int]
    attempts: dict[str, tuple[int, int]]  # (attempts, failed) within the window


@dataclass(frozen=True)
class Firing:
    tenant_id: str
    alert: str  # backlog_high | dlq_growth | error_rate
    value: float
    threshold: float


def judge(m: Measures, s: Settings) -> list[Firing]:
    """The alerts whose condition holds now (pure: the loop does the I/O)."""
    out = []
    for tenant, n in m.due.items():
        if s.alert_backlog and n >= s.alert_backlog:
            out.append(Firing(tenant, "backlog_high", n, s.alert_backlog))
    for tenant, n in m.dead_recent.items():
        if s.alert_dlq_growth and n >= s.alert_dlq_growth:
            out.append(Firing(tenant, "dlq_growth", n, s.alert_dlq_growth))
    for tenant, (n, failed) in m.attempts.items():
        if n >= max(1, s.alert_min_attempts) and failed / n >= s.alert_error_rate:
            out.append(Firing(tenant, "error_rate", round(failed / n, 4), s.alert_error_rate))
    return sorted(out, key=lambda f: (f.tenant_id, f.alert))


class Alerts:
    def __init__(self, hub: Host, settings: Settings | None = None) -> None:
        self.hub = hub
        self.settings = settings or hub.settings

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the store is down: try again at the next check
                log.exception("alert check failed", extra={"action": "alert_check_failed"})
            await asyncio.sleep(self.settings.alert_interval)

    async def measure(self, now: int) -> Measures:
        obs = self.hub.observe
        since = now - int(self.settings.alert_window * 1e6)
        snap = await obs.snapshot(now, int(self.settings.alert_window * 1e6), 0)
        return Measures(snap.due, snap.dead_recent, await obs.attempt_outcomes(since))

    async def check(self) -> list[str]:
        """One check: open and close episodes, publish their events; the types published.
        An alert opens only in a tenant with a route that receives it: nothing is stored, and
        no episode kept, where nobody listens."""
        now = now_us()
        firing = judge(await self.measure(now), self.settings)
        published = []
        held = {(f.tenant_id, f.alert) for f in firing}
        for f in firing:
            event = self._event(
                f.tenant_id,
                ALERT_PREFIX + f.alert,
                {
                    "alert": f.alert,
                    "value": f.value,
                    "threshold": f.threshold,
                    "window_seconds": self.settings.alert_window,
                    "opened_at": format_us(now),
                },
            )
            plans = routable(await self.hub.routes.routes(f.tenant_id), event)
            if not plans:
                continue
            if not await self.hub.observe.open_episode(
                f.tenant_id, f.alert, now, f.value, event.id
            ):
                continue  # already open: an episode alerts once
            await self._store(event, plans)
            published.append(event.type)
        for tenant, alert in await self.hub.observe.open_episodes():
            if (tenant, alert) in held:
                continue
            closed = await self.hub.observe.close_episode(tenant, alert)
            if closed is None:
                continue
            opened_us, opened_id = closed
            event = self._event(
                tenant,
                RESOLVED,
                {
                    "alert": alert,
                    "alert_event_id": opened_id,
                    "opened_at": format_us(opened_us),
                    "resolved_at": format_us(now),
                    "duration_seconds": round((now - opened_us) / 1e6, 3),
                },
                causation_id=opened_id,
            )
            await self._store(event, routable(await self.hub.routes.routes(tenant), event))
            published.append(RESOLVED)
        return published

    def _event(
        self, tenant_id: str, etype: str, data: dict[str, Any], causation_id: str | None = None
    ) -> Event:
        at = now_us()
        return Event(
            tenant_id=tenant_id,
            id=new_id(),
            type=etype,
            version=None,
            time_us=at,
            received_us=at,
            source=SOURCE,
            subject=None,
            actor_id="switchboard",
            actor_type="system",
            trace_id=uuid_utils.uuid4().hex,
            correlation_id=data["alert"],
            causation_id=causation_id,
            context={},
            data=data,
        )

    async def _store(self, event: Event, plans: list[NewDelivery]) -> None:
        """Store the alert event with the deliveries its routes make (internal events reach
        only routes that name a `switchboard.` type)."""
        await self.hub.store.append([event], [plans])
        log.warning(
            "alert",
            extra={
                "action": "alert",
                "tenant_id": event.tenant_id,
                "type": event.type,
                "event_id": event.id,
            },
        )
        if self.hub.worker is not None:
            self.hub.worker.wakeup.set()
