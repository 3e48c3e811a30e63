"""The delivery worker: claim due deliveries, send them through their channel, record every
attempt, and reschedule, dead-letter or disable by the retry policy.

Fairness: each cycle visits every tenant with due work and claims a share for each; no tenant
holds more than its share of the worker (SWITCHBOARD_WORKER_TENANT_SHARE even alone, an equal
part while others are due), so a tenant whose endpoint hangs leaves the rest to the others;
inside a tenant, high priority goes first. Isolation: every destination has its own
concurrency cap, rate limit and circuit breaker, so a failing destination only ever holds its
own deliveries back.

This module holds the loop, the claims and the per-destination senders; the lines and the
destination state are values in `delivery_lanes.py`, and what happens after a send (judging,
recording, disabling, internal events) is in `delivery_outcomes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable

import msgspec

from switchboard import breaker as brk
from switchboard import retry
from switchboard.channels import Channel, Destination, Outbound, SendResult
from switchboard.config import Settings
from switchboard.delivery_lanes import DestState, Job, Lane
from switchboard.delivery_outcomes import STATUS, Recording
from switchboard.envelope import Event, new_id
from switchboard.gate import Cleared, Gate, Wait
from switchboard.metrics import Metrics
from switchboard.router import Route, RouteCache
from switchboard.shared import SharedLoads
from switchboard.store import Store
from switchboard.store.deliveries import Attempt, Delivery, DeliveryStore
from switchboard.tracing import Tracing

log = logging.getLogger("switchboard.delivery")
_DEST_TTL = 2.0
_TENANTS_TTL = 0.1


class Worker(Recording):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        channels: dict[str, Channel],
        routes: RouteCache,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        breaker_config: brk.BreakerConfig | None = None,
        policy: retry.Policy | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracing = tracing
        self.id = new_id()  # this worker's heartbeat row
        self.store = store
        self.deliveries = DeliveryStore(store)
        self.gate = Gate(store, settings)
        self.channels = channels
        self.routes = routes
        self.clock = clock
        self.rng = rng or random.Random()
        self.breaker_config = breaker_config or brk.BreakerConfig()
        self.policy = policy or retry.Policy()
        self.internal = {s.strip() for s in settings.internal_events.split(",") if s.strip()}
        self.wakeup = asyncio.Event()
        self._dests: dict[str, DestState] = {}
        self._dest_loads: SharedLoads[str, DestState | None] = SharedLoads()
        self._lanes: dict[str, Lane] = {}
        self._held = 0  # claimed deliveries not yet sent: queued in lanes or being sent
        self._tenant_held: dict[str, int] = {}  # the same, per tenant
        # most one tenant may hold: a share of the capacity, equal among the tenants due
        self._tenant_cap = max(1, int(settings.worker_concurrency * settings.worker_tenant_share))
        self._refill_at = self._tenant_cap // 2  # a tenant holding this few claims again
        self._active: dict[str, Job] = {}  # being sent right now
        self._returning: set[str] = set()  # taken out of a line, being given back
        self._loop_exited: asyncio.Event | None = None  # set when run()'s loop has ended
        self._tasks: set[asyncio.Future[None]] = set()  # senders, attempt writes, follow-ups
        self._stopping = False
        self._last_recover = 0.0
        self._last_expiry = 0.0
        self._tenants: list[str] = []  # tenants with due work, as last queried
        self._tenants_until = 0.0

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and send until `stop()`; then let in-flight sends finish (or release them)."""
        listen = getattr(self.store, "listen", None)
        listener = asyncio.create_task(listen(self.wakeup.set)) if listen else None
        beats = asyncio.create_task(self._heartbeats(), name="worker-heartbeat")
        self._loop_exited = asyncio.Event()
        try:
            await self._loop()
        finally:
            self._loop_exited.set()
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _loop(self) -> None:
        while not self._stopping:
            # cleared before the claim, never after: a commit landing while the claim is under
            # way (its look for due tenants already taken) leaves the wake-up set, and the
            # wait below returns at once instead of sleeping a whole poll on new deliveries
            self.wakeup.clear()
            try:
                claimed = await self.claim_once()
            except Exception:  # the store is down: keep the loop alive and try again
                log.exception("claim failed", extra={"action": "claim_failed"})
                claimed = 0
            if claimed == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), self.settings.worker_poll)

    def stats(self) -> dict[str, int]:
        """What the heartbeat reports: destinations whose breaker is not closed, work held."""
        return {
            "open_breakers": sum(
                1 for d in self._dests.values() if d.breaker.state is not brk.State.CLOSED
            ),
            "held": self._held,
        }

    async def _heartbeats(self) -> None:
        """Write this worker's heartbeat row every SWITCHBOARD_HEARTBEAT_SECONDS (for /status
        and the open-breaker gauge); rows of workers silent for a day are removed."""
        from switchboard.store.observe import ObserveStore

        beats = ObserveStore(self.store)
        started = self.now_us()
        try:
            while True:
                try:
                    await beats.beat(self.id, started, self.now_us(), self.stats())
                except Exception:  # the store is down: the claim loop says so already
                    log.debug("heartbeat failed", exc_info=True)
                await asyncio.sleep(max(0.05, self.settings.heartbeat_seconds))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(beats.forget(self.id, self.now_us() - 86_400_000_000))

    async def stop(self, grace: float = 10.0) -> None:
        """Graceful shutdown: no new claims; deliveries not yet started go back to the queue at
        once, sends under way finish within `grace` seconds, the rest are cancelled and
        released back to the queue too."""
        self._stopping = True
        self.wakeup.set()
        try:
            if self._loop_exited is not None:  # a claim under way lands in the lines first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._loop_exited.wait(), grace)
            await self._give_back(self._unqueue(lambda job: True))
            # senders start attempt writes as they finish: wait for those too
            deadline = time.monotonic() + grace
            while self._tasks and (left := deadline - time.monotonic()) > 0:
                await asyncio.wait(list(self._tasks), timeout=left)
            if (left := deadline - time.monotonic()) > 0:  # successes written without a future
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.deliveries.writer.flush(), left)
            cut, pending = [*self._active, *self._returning], list(self._tasks)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if cut:
                await self.deliveries.release(cut, self.now_us())
        finally:
            await self.deliveries.close()

    async def claim_once(self) -> int:
        """One cycle: recover expired leases, claim a fair share per tenant, start the sends."""
        now = self.clock()
        if now - self._last_recover > 5:
            self._last_recover = now
            recovered = await self.deliveries.recover_expired(self.now_us())
            if recovered:
                log.warning(
                    "recovered deliveries", extra={"action": "lease_expired", "count": recovered}
                )
        await self._expire_queued()
        free = self.settings.worker_concurrency - self._held
        if free <= 0 and len(self._tenant_held) <= 1 and len(self._tenants) <= 1:
            return 0  # full with one tenant's work, and no other was due at the last look
        # Under a backlog every claim comes back full and the list of tenants with due work
        # cannot shrink: it is reused for up to _TENANTS_TTL instead of queried every cycle
        # (the query was half of a claim cycle's wall time). A new tenant waits at most that.
        fresh = not self._tenants or time.monotonic() >= self._tenants_until
        if fresh:
            self._tenants = await self.deliveries.tenants_with_due(self.now_us())
            self._tenants_until = time.monotonic() + _TENANTS_TTL
        tenants = list(self._tenants)
        if not tenants:
            return 0
        self.rng.shuffle(tenants)
        capacity = self.settings.worker_concurrency
        alone = max(1, int(capacity * self.settings.worker_tenant_share))
        self._tenant_cap = cap = (
            alone if len(tenants) == 1 else min(alone, max(1, capacity // len(tenants)))
        )
        # a tenant claims again once it has a quarter of the worker to fill (as many as a
        # lone tenant without a cap did), or half its share when that is smaller
        self._refill_at = max(cap - capacity // 4, cap // 2)
        if len(tenants) > 1 and free < cap:
            # someone due may be below its share while the worker is full: what tenants hold
            # beyond theirs and have not started sending goes back to the queue
            free += await self._give_back_over(cap)
        if free <= 0:
            return 0
        share = max(1, free // len(tenants))
        lease = self.now_us() + int(self.settings.lease_seconds * 1_000_000)
        full = [d for d, lane in self._lanes.items() if lane.known and len(lane.jobs) >= lane.depth]
        claimed = 0
        for tenant in tenants:
            if free - claimed <= 0:
                break
            ask = min(share, free - claimed, cap - self._tenant_held.get(tenant, 0))
            if ask <= 0:  # at its share already: not dry, just waiting for its sends
                continue
            unreadable: list[tuple[Delivery, str]] = []
            batch = await self.deliveries.claim(tenant, self.now_us(), lease, ask, full, unreadable)
            if len(batch) + len(unreadable) < ask:
                self._tenants = []  # a tenant ran dry: ask again next cycle
            for delivery, reason in unreadable:
                claimed += 1
                await self._crashed(delivery, reason)
            claimed_at = time.monotonic()
            for delivery, event in batch:
                claimed += 1
                self._enqueue(Job(delivery, event, claimed_at))
        await self._trim(list(self._lanes.values()))
        return claimed

    async def _trim(self, lanes: list[Lane]) -> None:
        """Give back what a claim put in a line past its depth (newest first, unsent): the
        next claims skip that destination until its line has room again."""
        excess: list[Job] = []
        for lane in lanes:
            if lane.known:
                while len(lane.jobs) > lane.depth:
                    excess.append(lane.jobs.pop())
        self._unhold(excess)
        await self._give_back(excess)

    async def _give_back_over(self, cap: int) -> int:
        """Give back the queued (unsent) deliveries of tenants holding more than `cap`, newest
        first; sends under way are left to finish. Returns how many went back."""
        over = {t: n - cap for t, n in self._tenant_held.items() if n > cap}
        if not over:
            return 0
        taken: list[Job] = []
        for lane in self._lanes.values():
            left = over.get(lane.tenant, 0)
            while left > 0 and lane.jobs:
                taken.append(lane.jobs.pop())
                left -= 1
            if lane.tenant in over:
                over[lane.tenant] = left
        self._unhold(taken)
        await self._give_back(taken)
        return len(taken)

    def _unhold(self, jobs: list[Job]) -> None:
        """`jobs` leave the worker's hands (sent, or given back unsent)."""
        self._held -= len(jobs)
        for job in jobs:
            self._unhold_one(job.delivery.tenant_id)

    def _unhold_one(self, tenant: str) -> int:
        """One of `tenant`'s deliveries leaves the worker's hands; returns what it still holds."""
        left = self._tenant_held[tenant] - 1
        if left:
            self._tenant_held[tenant] = left
        else:
            del self._tenant_held[tenant]
        return left

    async def _give_back(self, jobs: list[Job]) -> None:
        """Return claimed deliveries that were taken out of their lines unsent to the queue,
        due at once, with no attempt spent (the caller has already taken them off `_held`)."""
        if not jobs:
            return
        ids = [j.delivery.id for j in jobs]
        self._returning.update(ids)
        try:
            await self.deliveries.release(ids, self.now_us())
        except asyncio.CancelledError:
            raise  # still listed as returning: stop() gives them back
        except Exception:  # the store is down: their leases expire and they come back
            log.exception("release failed", extra={"action": "release_failed"})
        self._returning.difference_update(ids)
        self.wakeup.set()  # room for other deliveries

    async def settle(self) -> None:
        """Wait for the sends already started (and the writes of their attempts)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.deliveries.writer.flush()  # successes are written without a future to wait on

    async def drain(self, within: float = 30.0) -> int:
        """Process everything due now and wait for it (tests and the CLI use this)."""
        total = 0
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            n = await self.claim_once()
            total += n
            if self._tasks:
                await self.settle()
            elif n == 0:
                break
        await self.deliveries.writer.flush()
        return total

    # -- lanes: per-destination senders ---------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        dest_id = job.delivery.destination_id
        lane = self._lanes.get(dest_id)
        if lane is None:
            # until the destination is loaded one sender runs; it raises the limit after
            state = self._dests.get(dest_id)
            if state is None:
                lane = self._lanes[dest_id] = Lane(job.delivery.tenant_id, 1, known=False)
            else:
                limit = max(1, state.destination.concurrency)
                lane = self._lanes[dest_id] = Lane(job.delivery.tenant_id, limit, True)
        lane.jobs.append(job)
        self._held += 1
        tenant = job.delivery.tenant_id
        self._tenant_held[tenant] = self._tenant_held.get(tenant, 0) + 1
        self._start_senders(dest_id, lane)

    def _start_senders(self, dest_id: str, lane: Lane, waited: bool = False) -> None:
        if self._stopping:  # what is still queued goes back to the queue unsent
            return
        while lane.jobs and lane.senders < lane.limit:
            job = lane.jobs.popleft()
            job.waited = waited
            lane.senders += 1
            self._spawn(self._sender(dest_id, lane, job), f"sender-{dest_id}")

    async def _sender(self, dest_id: str, lane: Lane, job: Job) -> None:
        """Send jobs of one lane, one at a time, until it is empty (or over its limit)."""
        try:
            while True:
                if not lane.known and (state := await self._destination(dest_id)) is not None:
                    lane.limit, lane.known = max(1, state.destination.concurrency), True
                    await self._trim([lane])
                    self._start_senders(dest_id, lane, waited=True)
                delivery = job.delivery
                self._active[delivery.id] = job
                try:
                    await self.process(delivery, job.event, job.claimed_at if job.waited else None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception(
                        "delivery crashed",
                        extra={"action": "delivery_crashed", "delivery_id": delivery.id},
                    )
                    await self._crashed(delivery, f"{type(exc).__name__}: {exc}")
                finally:
                    self._active.pop(delivery.id, None)
                    self._held -= 1
                    # a quarter of the capacity is free (and the tenant has room in its share):
                    # claim more now, while the lines still hold work for the whole claim
                    # cycle, rather than at the next poll
                    if (
                        self._unhold_one(delivery.tenant_id) <= self._refill_at
                        and self._held <= self.settings.worker_concurrency * 3 // 4
                    ):
                        self.wakeup.set()
                state = self._dests.get(dest_id)
                if state is not None:
                    lane.limit = max(1, state.destination.concurrency)
                if self._stopping or not lane.jobs or lane.senders > lane.limit:
                    return
                job = lane.jobs.popleft()
                job.waited = True
                if lane.senders < lane.limit:  # the limit was just learnt, or raised
                    self._start_senders(dest_id, lane, waited=True)
        finally:
            lane.senders -= 1
            if lane.senders == 0 and not lane.jobs and self._lanes.get(dest_id) is lane:
                del self._lanes[dest_id]

    def _unqueue(self, expired: Callable[[Job], bool]) -> list[Job]:
        """Take the jobs `expired` picks out of every lane (each lane is in claim order, so
        only a prefix is looked at)."""
        taken: list[Job] = []
        for lane in self._lanes.values():
            while lane.jobs and expired(lane.jobs[0]):
                taken.append(lane.jobs.popleft())
        self._unhold(taken)
        return taken

    async def _expire_queued(self) -> None:
        """A delivery waits in its lane only while the claim's lease still covers its send;
        past that it goes back to the queue unsent (no attempt is spent), so a slow
        destination's backlog is never sent twice by another worker."""
        now = time.monotonic()
        if not self._lanes or now - self._last_expiry < 1.0:
            return
        self._last_expiry = now

        def expired(job: Job) -> bool:
            state = self._dests.get(job.delivery.destination_id)
            timeout = state.destination.timeout if state is not None else 30.0
            return self._budget(job.claimed_at, timeout, now) <= 0

        await self._give_back(self._unqueue(expired))

    def _budget(self, claimed_at: float, timeout: float, now: float) -> float:
        return self.settings.lease_seconds - timeout - 2 - (now - claimed_at)

    # -- one delivery --------------------------------------------------------------------------

    def breaker_state(self, dest_id: str) -> str | None:
        """This worker's circuit breaker for a destination (closed, open, half_open), or None
        when it has not sent to it lately. The dashboard shows it; each worker has its own."""
        state = self._dests.get(dest_id)
        return None if state is None else state.breaker.state.value

    def _cached_destination(self, dest_id: str) -> DestState | None:
        state = self._dests.get(dest_id)
        return state if state is not None and state.expires > time.monotonic() else None

    async def _destination(self, dest_id: str) -> DestState | None:
        state = self._cached_destination(dest_id)
        if state is not None:
            return state
        # one read per destination at a time, shared by every send that found it expired
        return await self._dest_loads.get(dest_id, lambda: self._load_destination(dest_id))

    async def _load_destination(self, dest_id: str) -> DestState | None:
        found = await self.deliveries.destination_state(dest_id)
        now = time.monotonic()
        if found is None:
            self._dests.pop(dest_id, None)
            return None
        dest, failing_since = found
        # stored before the operator lowered a maximum: the maximum holds all the same
        s = self.settings
        if (
            dest.concurrency > s.max_destination_concurrency
            or dest.timeout > s.max_destination_timeout
        ):
            dest = dataclasses.replace(
                dest,
                concurrency=min(dest.concurrency, s.max_destination_concurrency),
                timeout=min(dest.timeout, s.max_destination_timeout),
            )
        # another send may have built the state while we awaited: share it (its breaker and
        # rate buckets are the destination's, not this send's)
        state = self._dests.get(dest_id)
        if state is None:
            state = DestState(dest, now + _DEST_TTL)
            if dest.rate_per_second:
                state.tokens_s = dest.rate_per_second
            if dest.rate_per_minute:
                state.tokens_m = dest.rate_per_minute
            state.stamp = self.clock()
            self._dests[dest_id] = state
        else:
            state.destination = dest
            state.expires = now + _DEST_TTL
        state.failing_since_us = failing_since
        return state

    async def process(
        self, delivery: Delivery, event: Event, claimed_at: float | None = None
    ) -> None:
        # the cache is read without an await: a send per delivery, and most find it fresh
        state = self._cached_destination(delivery.destination_id) or await self._destination(
            delivery.destination_id
        )
        now_us = self.now_us()
        if state is None or not state.destination.enabled:
            reason = "destination deleted" if state is None else "destination disabled"
            await self.deliveries.cancel(delivery, reason, now_us)
            return
        dest = state.destination
        # The schedule's first item is the delay before the first attempt, counted from when
        # the delivery was made; it waits pending, no attempt spent. Only the very first
        # attempt waits: a retry from the DLQ or by hand is sent at once.
        if delivery.attempts == 0 and dest.retry_schedule and dest.retry_schedule[0] > 0:
            first_us = delivery.created_us + int(dest.retry_schedule[0] * 1_000_000)
            if first_us > now_us:
                await self._postpone(delivery, first_us / 1_000_000, None)
                return
        # the caller (the destination's sender) holds the slot. A delivery that waited for it
        # (`claimed_at` given) is sent only while the claim's lease still covers the send;
        # past that it goes back to the queue unsent (no attempt is spent), so a slow
        # destination's backlog is never sent twice by another worker.
        if claimed_at is not None and self._budget(claimed_at, dest.timeout, time.monotonic()) <= 0:
            await self._postpone(delivery, self.clock(), None)
            return
        now = self.clock()
        allowed, state.breaker = brk.allow(state.breaker, self.breaker_config, now=now)
        if not allowed:
            reopen = (state.breaker.opened_at or now) + self.breaker_config.open_for
            await self._postpone(delivery, max(reopen, now + 1), "circuit open")
            return
        wait = state.rate_wait(now)
        if wait > 0:
            await self._postpone(delivery, now + wait, None)
            return
        channel = self.channels.get(dest.kind)
        if channel is None:
            await self.deliveries.cancel(delivery, f"no channel for kind {dest.kind!r}", now_us)
            return
        transform = None
        cleared: Cleared | None = None
        sent_by: Route | None = None
        if delivery.route_id:
            tenant = delivery.tenant_id
            for route in self.routes.cached(tenant) or await self.routes.routes(tenant):
                if route.id == delivery.route_id:
                    transform = route.transform
                    sent_by = route
                    # consent, preferences, address: asked right before the send (gate.py)
                    if route.checks_people:
                        verdict = await self.gate.clear(route, dest, event, self.clock())
                        if isinstance(verdict, str):
                            await self.gate.people.suppress(delivery.id, verdict, now_us)
                            return
                        if isinstance(verdict, Wait):  # quiet hours: due again at their end
                            await self._postpone(delivery, verdict.until, "quiet hours")
                            return
                        cleared = verdict
        out = Outbound(
            delivery_id=delivery.id,
            attempt=delivery.attempts + 1,
            event=event.to_json() if cleared is None else {**event.to_json(), **cleared.extra},
            body_template=(cleared.body_template if cleared else None) or transform,
            replay=delivery.replay_id is not None,
            headers=cleared.headers if cleared is not None else {},
        )
        if cleared is not None:
            dest = cleared.destination
        if dest.kind == "email" and self.settings.tracking_secret and "tracking" in dest.config:
            stamp = await self.gate.stamp(
                dest, event, delivery.id, delivery.event_seq, sent_by, self.clock()
            )
            out = msgspec.structs.replace(out, stamp=stamp)
        started = self.clock()
        if self.tracing is not None and self.tracing.enabled:
            result, latency_ms = await self._traced_send(channel, dest, out, delivery, event)
        else:
            t0 = time.perf_counter()
            result = await channel.send(dest, out)
            latency_ms = (time.perf_counter() - t0) * 1000
        # judged now (the breaker must see this outcome before the sender's next send);
        # written in the background, so the sender takes its next job while it commits
        self._record(
            delivery,
            event,
            state,
            result,
            self._judge(delivery, state, result, started, latency_ms),
        )

    async def _traced_send(
        self, channel: Channel, dest: Destination, out: Outbound, delivery: Delivery, event: Event
    ) -> tuple[SendResult, float]:
        """The send inside an attempt span of the event's trace; a webhook's `traceparent`
        names that span, so the receiver's own spans hang under it."""
        assert self.tracing is not None
        with self.tracing.attempt(
            event.trace_id,
            event.context.get("traceparent"),
            **{
                "switchboard.delivery_id": delivery.id,
                "switchboard.destination_id": dest.id,
                "switchboard.channel": dest.kind,
                "switchboard.attempt": out.attempt,
                "switchboard.event_id": event.id,
            },
        ) as (span, parent):
            t0 = time.perf_counter()
            result = await channel.send(dest, msgspec.structs.replace(out, traceparent=parent))
            latency_ms = (time.perf_counter() - t0) * 1000
            if result.status is not None:
                span.set_attribute("http.response.status_code", result.status)
            if not result.ok:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, result.error or "failed"))
        return result, latency_ms

    async def _crashed(self, delivery: Delivery, why: str) -> None:
        """Finish a delivery whose handling raised (a stored value this version cannot render,
        a channel's bug): a failed attempt with the error is recorded and the retry schedule
        decides, as for any failure, so it never stays 'sending' to be claimed and crash again
        at every lease's end. If even that cannot be written (the store is down), the lease
        brings it back."""
        n = delivery.attempts + 1
        now = self.clock()
        now_us = int(now * 1_000_000)
        message = ("internal error: " + why).replace("\x00", "")[:1000]
        status, next_us = "dead", now_us
        try:
            state = self._dests.get(delivery.destination_id) or await self._destination(
                delivery.destination_id
            )
            decision = retry.decide(
                n - delivery.retry_base,
                retry.Outcome(status=None, error="other", retry_after=None),
                self._policy(state.destination) if state is not None else self.policy,
                now=now,
                rng=self.rng,
            )
            status = STATUS[decision.verdict]
            next_us = now_us + int((decision.delay or 0) * 1_000_000)
        except Exception:  # the schedule itself is what breaks: no retry then
            log.exception("retry decision failed", extra={"action": "retry_decision_failed"})
        attempt = Attempt(
            delivery_id=delivery.id,
            n=n,
            tenant_id=delivery.tenant_id,
            started_us=now_us,
            latency_ms=0.0,
            ok=False,
            status_code=None,
            error="other",
            message=message,
            response=None,
            request_headers=None,
        )
        statements = self.deliveries.finish_statements(
            delivery, attempt, status, next_us, message, None, now_us
        )
        try:
            await self.deliveries.writer.submit(statements)
        except Exception as exc:
            self._write_failed(delivery.id, exc)
