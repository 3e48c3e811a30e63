"""The composition root: builds the store, catalog, routing, ingest, auth and the delivery worker
from one Settings object and hands them down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import aiohttp

from switchboard.auth import Authenticator, RateLimiter
from switchboard.automation_engine import AutomationCache, Engine
from switchboard.channels import ChannelContext
from switchboard.channels.registry import build_channels
from switchboard.config import Settings
from switchboard.delivery import Worker
from switchboard.egress import Policy, connector
from switchboard.errors import ConfigError
from switchboard.ingest import Ingestor
from switchboard.metrics import Metrics
from switchboard.registry import Registry
from switchboard.replay import resume_replays
from switchboard.router import Route, RouteCache, parse_route
from switchboard.shared import SharedLoads
from switchboard.store import Store, Tenant
from switchboard.store.automations import AutomationStore
from switchboard.store.backends import open_store
from switchboard.store.deliveries import DeliveryStore
from switchboard.store.observe import ObserveStore
from switchboard.store.sealed import check_keys
from switchboard.store.unit import detached
from switchboard.templates import Budget, Renderer
from switchboard.tracing import Tracing

_TENANT_TTL = 5.0


GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """For a started `serve` or `worker` process: move every object alive (modules, catalogs,
    schemas, pools) out of the garbage collector's view (`gc.freeze`), so a full collection
    scans only what requests created since and no longer pauses the event loop for tens of
    milliseconds; and collect the youngest generation every 10,000 allocations instead of 700,
    since a 100-event request allocates thousands of objects that die young anyway."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class Hub:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        self.registry = Registry(self.store)
        # the catalog says which of an event's values the store seals (store/subject_keys.py)
        self.store.subject_keys.pii_paths = self.registry.pii_classes
        self.metrics = Metrics(
            tenant_labels=settings.metrics_tenant_labels == 1, enabled=settings.metrics == 1
        )
        self.observe = ObserveStore(self.store)
        self.tracing = Tracing(settings)
        self.deliveries = DeliveryStore(self.store)
        self.routes = RouteCache(self.load_routes)
        self.automations = AutomationStore(self.store)
        self.automation_cache = AutomationCache(
            self.automations, settings.automation_max_running, self.deliveries
        )
        self.engine = Engine(self, self.automations, self.automation_cache)
        # a commit whose wake-ups made waiting runs due wakes the engine (only such a commit)
        self.store.on_woken = self.engine.wakeup.set
        self.ingestor = Ingestor(
            self.store,
            self.registry,
            self.routes,
            self._wake_worker,
            self.automation_cache,
            metrics=self.metrics,
            tracing=self.tracing,
            on_woken=self.engine.wakeup.set,
        )
        self.auth = Authenticator(self.store)
        # every outbound connection of every channel goes through this policy (egress.py)
        self.egress = Policy.parse(settings.egress_allow, settings.egress_deny)
        self.limiter = RateLimiter(
            settings.key_rate,
            settings.key_burst,
            settings.tenant_rate,
            settings.tenant_burst,
            settings.source_rate,
            settings.source_burst,
            settings.source_ip_rate,
            settings.source_ip_burst,
        )
        self.worker: Worker | None = None
        self.session: aiohttp.ClientSession | None = None
        self.renderer: Renderer | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[Any]] = set()
        self.running_replays: set[str] = set()  # replay jobs this process is running
        self._tenants: dict[str, tuple[float, Tenant | None]] = {}
        self._tenant_loads: SharedLoads[str, Tenant | None] = SharedLoads()

    async def open(self, *, worker: bool | None = None) -> None:
        await self.store.open()
        try:
            await check_keys(self.store)  # sealed credentials need their master key: say so now
        except ConfigError:
            await self.store.close()
            raise
        # One client sends for every tenant, so it keeps no cookies: a cookie one tenant's
        # endpoint sets must never go out with another tenant's delivery to the same host.
        self.session = aiohttp.ClientSession(
            connector=connector(self.egress, limit=0, limit_per_host=0, ttl_dns_cache=300),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.renderer = Renderer(
            Budget(self.settings.template_max_output, self.settings.template_timeout)
        )
        channels = build_channels(
            ChannelContext(
                self.session, inbox=self.deliveries, egress=self.egress, renderer=self.renderer
            )
        )
        self.worker = Worker(
            self.settings,
            self.store,
            channels,
            self.routes,
            metrics=self.metrics,
            tracing=self.tracing,
        )
        run = self.settings.run_worker if worker is None else worker
        if run:
            self._worker_task = asyncio.create_task(self.worker.run(), name="delivery-worker")
            self._engine_task = asyncio.create_task(self.engine.run(), name="automation-engine")
            from switchboard.retention_job import retention_loop

            self.spawn(resume_replays(self))
            if self.settings.alert_interval > 0:
                from switchboard.alerts import Alerts

                self.spawn(Alerts(self).run())
            self.spawn(retention_loop(self))

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        if self._engine_task is not None:
            await self.engine.stop()
            self._engine_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._engine_task
        if self._worker_task is not None and self.worker is not None:
            await self.worker.stop()
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        if self.session is not None:
            await self.session.close()
        if self.renderer is not None:
            self.renderer.close()
        await self.store.close()
        # the last export is a blocking HTTP post: off the event loop, which may serve its target
        await asyncio.to_thread(self.tracing.close)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A background job owned by the hub (cancelled on close)."""
        task = detached(coro)  # never inside the transaction of the change that started it
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    def _wake_worker(self) -> None:
        """New deliveries were committed: the worker looks now. (The engine is woken apart,
        by commits that start or wake runs: a route's delivery leaves it nothing to do, and
        its own sends must not wake it for a claim that finds nothing.)"""
        if self.worker is not None:
            self.worker.wakeup.set()

    async def load_routes(self, tenant_id: str) -> list[Route]:
        routes = []
        for route_id, _, spec in await self.deliveries.list_routes(tenant_id):
            ids = spec.get("destination_ids", [])
            stored = {**spec, "destinations": ids}
            routes.append(
                parse_route(
                    stored,
                    route_id=route_id,
                    tenant_id=tenant_id,
                    destination_ids={i: i for i in ids},
                    stored=True,
                )
            )
        return routes + await self.automation_cache.routes(tenant_id)

    async def tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant record, cached briefly: it is read on every ingest request."""
        now = time.monotonic()
        hit = self._tenants.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        # one query however many requests find the entry expired together
        return await self._tenant_loads.get(tenant_id, lambda: self._load_tenant(tenant_id))

    async def _load_tenant(self, tenant_id: str) -> Tenant | None:
        """Read the tenant and cache it before the callers sharing the load resume."""
        now = time.monotonic()
        tenant = await self.store.get_tenant(tenant_id)
        self._tenants[tenant_id] = (now + _TENANT_TTL, tenant)
        return tenant
