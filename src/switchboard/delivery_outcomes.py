"""The half of the delivery worker after a send: judge the attempt (the retry policy, the
breaker, the destination's failing streak), hand it to the group writer, and once committed log
it, disable a destination that calls for it and publish the internal events.

`delivery.Worker` builds on `Recording`; the attributes declared here are set by its constructor.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from switchboard import breaker as brk
from switchboard import retry
from switchboard.channels import Destination, SendResult
from switchboard.config import Settings
from switchboard.delivery_lanes import DestState
from switchboard.envelope import Event, new_id
from switchboard.ingest import routable
from switchboard.metrics import Metrics
from switchboard.router import RouteCache
from switchboard.store import Store
from switchboard.store.deliveries import Attempt, Delivery, DeliveryStore

log = logging.getLogger("switchboard.delivery")
INTERNAL_SOURCE = "switchboard"
STATUS = {  # a retry verdict -> the delivery's next status
    retry.Verdict.SUCCEEDED: "succeeded",
    retry.Verdict.RETRY: "retrying",
    retry.Verdict.DEAD: "dead",
    retry.Verdict.DISABLE: "dead",
}
# a delivery's status after an attempt -> the internal event it publishes (delivery_<kind>)
INTERNAL_KIND = {"succeeded": "succeeded", "retrying": "failed", "dead": "dead"}


@dataclass(slots=True)
class Judged:
    """What `Worker._judge` decided about one attempt, for `Worker._record` to write."""

    attempt: Attempt
    verdict: retry.Verdict
    next_us: int
    error: str | None
    now_us: int
    health: str | None

    @property
    def status(self) -> str:
        """The delivery's next status."""
        return STATUS[self.verdict]


class Recording:
    """Judging and recording attempts; the base of `delivery.Worker`."""

    settings: Settings
    store: Store
    deliveries: DeliveryStore
    routes: RouteCache
    clock: Callable[[], float]
    rng: random.Random
    breaker_config: brk.BreakerConfig
    policy: retry.Policy
    internal: set[str]
    wakeup: asyncio.Event
    _tasks: set[asyncio.Future[None]]  # senders, attempt writes, follow-ups
    metrics: Metrics | None

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _postpone(self, delivery: Delivery, at: float, reason: str | None) -> None:
        statements = self.deliveries.finish_statements(
            delivery,
            None,
            "pending" if delivery.attempts == 0 else "retrying",
            int(at * 1_000_000),
            reason or delivery.last_error,
            None,
            self.now_us(),
        )
        await self.deliveries.writer.submit(statements)

    def _judge(
        self,
        delivery: Delivery,
        state: DestState,
        result: SendResult,
        started: float,
        latency_ms: float,
    ) -> Judged:
        """An attempt's outcome: its record, the delivery's next state, and the destination's
        breaker and failing streak updated at once (in memory)."""
        n = delivery.attempts + 1
        now = self.clock()
        now_us = int(now * 1_000_000)
        state.breaker = brk.record(state.breaker, self.breaker_config, result.ok, now=now)
        attempt = Attempt(
            delivery_id=delivery.id,
            n=n,
            tenant_id=delivery.tenant_id,
            started_us=int(started * 1_000_000),
            latency_ms=latency_ms,
            ok=result.ok,
            status_code=result.status,
            error=result.error,
            message=result.message,
            response=result.response or None,
            request_headers=result.request_headers or None,
        )
        if result.ok:  # channels judge success themselves (an SMTP 250 is not an HTTP 2xx)
            verdict, next_us, error = retry.Verdict.SUCCEEDED, now_us, None
        else:
            decision = retry.decide(
                n - delivery.retry_base,  # the schedule starts over at a manual/DLQ retry
                retry.Outcome(
                    status=result.status, error=result.error, retry_after=result.retry_after
                ),
                self._policy(state.destination),
                now=now,
                rng=self.rng,
            )
            verdict = decision.verdict
            next_us = now_us + int((decision.delay or 0) * 1_000_000)
            error = result.message or decision.reason
        # the destination's failing streak is written only when it starts or ends
        health = None
        if result.ok and state.failing_since_us is not None:
            health, state.failing_since_us = "ok", None
        elif not result.ok and state.failing_since_us is None:
            health, state.failing_since_us = "failing", now_us
        return Judged(attempt, verdict, next_us, error, now_us, health)

    def _policy(self, dest: Destination) -> retry.Policy:
        if not dest.retry_schedule:
            return self.policy
        return retry.Policy(
            schedule=dest.retry_schedule,
            jitter=self.policy.jitter,
            min_backoff_throttled=self.policy.min_backoff_throttled,
            max_retry_after=self.policy.max_retry_after,
        )

    def _record(
        self, delivery: Delivery, event: Event, state: DestState, result: SendResult, j: Judged
    ) -> None:
        """Hand the attempt and the delivery's new state to the group writer. Once committed,
        log it, and disable the destination or publish internal events if it calls for that
        (the only part that needs a task of its own); a success that calls for none of these
        is handed over with nothing to wait on."""
        if self.metrics is not None:
            self.metrics.attempt(
                delivery.tenant_id,
                state.destination.kind,
                j.status,
                result.ok,
                j.attempt.latency_ms / 1000,
            )
        statements = self.deliveries.finish_statements(
            delivery,
            j.attempt,
            j.status,
            j.next_us,
            j.error,
            result.provider_id,
            j.now_us,
            j.health,
        )
        if (
            result.ok
            and INTERNAL_KIND[j.status] not in self.internal
            and not log.isEnabledFor(logging.DEBUG)
        ):
            # Nothing to do once committed but notice a failed write: no future, no callback,
            # and nothing held but the delivery's id. Holding the event, the reply and the
            # attempt until the commit (a few hundred deliveries at a time) kept them alive
            # through the garbage collector's young generation, at 4-12 % of the worker's CPU
            # per delivery (benchmarks/README.md, "Successes handed to the writer with nothing
            # held").
            self.deliveries.writer.submit(
                statements, functools.partial(self._write_failed, delivery.id)
            )
            return
        write = self.deliveries.writer.submit(statements)
        self._tasks.add(write)
        after = functools.partial(self._recorded, delivery, event, state, result, j)
        write.add_done_callback(functools.partial(self._committed, delivery.id, after))

    def _committed(
        self, delivery_id: str, after: Callable[[], None], fut: asyncio.Future[None]
    ) -> None:
        self._tasks.discard(fut)
        if fut.cancelled():
            return
        if (exc := fut.exception()) is not None:
            self._write_failed(delivery_id, exc)
            return
        after()

    def _write_failed(self, delivery_id: str, exc: BaseException) -> None:
        # the delivery stays 'sending': its lease expires and it is sent again
        log.error(
            "attempt not recorded",
            extra={"action": "attempt_write_failed", "delivery_id": delivery_id, "error": str(exc)},
        )

    def _recorded(
        self, delivery: Delivery, event: Event, state: DestState, result: SendResult, j: Judged
    ) -> None:
        dest = state.destination
        level = logging.DEBUG if result.ok else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "attempt",
                extra={
                    "action": "delivery_attempt",
                    "tenant_id": delivery.tenant_id,
                    "delivery_id": delivery.id,
                    "event_id": event.id,
                    "trace_id": event.trace_id,
                    "destination_id": dest.id,
                    "attempt": j.attempt.n,
                    "ok": result.ok,
                    "status_code": result.status,
                    "outcome": j.status,
                    "latency_ms": round(j.attempt.latency_ms, 2),
                },
            )
        failing_since = state.failing_since_us
        reason = None
        if j.verdict is retry.Verdict.DISABLE:
            reason = f"the endpoint answered {result.status} Gone"
        elif (
            failing_since is not None
            and j.now_us - failing_since > self.settings.disable_after * 1e6
        ):
            reason = f"failing without a success for {self.settings.disable_after:.0f} s"
        kind = INTERNAL_KIND[j.status]
        internal = kind in self.internal and event.source != INTERNAL_SOURCE
        if reason or internal:
            self._spawn(
                self._follow_up(
                    delivery, event, state, result, j, reason, kind if internal else None
                ),
                f"follow-up-{delivery.id}",
            )

    async def _follow_up(
        self,
        delivery: Delivery,
        event: Event,
        state: DestState,
        result: SendResult,
        j: Judged,
        reason: str | None,
        kind: str | None,
    ) -> None:
        """Disable the destination (with its event) and publish the attempt's internal event."""
        dest = state.destination
        if reason and await self.deliveries.disable_destination(dest.id, reason, j.now_us):
            state.expires = 0
            log.warning(
                "destination disabled",
                extra={
                    "action": "destination_disabled",
                    "destination_id": dest.id,
                    "reason": reason,
                },
            )
            await self.publish(
                event,
                "switchboard.destination_disabled",
                {"destination_id": dest.id, "destination_name": dest.name, "reason": reason},
            )
        if kind is not None:
            await self.publish(
                event,
                f"switchboard.delivery_{kind}",
                {
                    "delivery_id": delivery.id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "destination_id": dest.id,
                    "destination_name": dest.name,
                    "attempts": j.attempt.n,
                    "status_code": result.status,
                    "error": j.error,
                },
            )

    async def publish(self, cause: Event, etype: str, data: dict[str, Any]) -> None:
        """Publish an internal event in the cause's tenant, routed like any other (routes can
        match `switchboard.*`, e.g. a Slack alert on dead deliveries). Internal events never
        produce further internal events, so no loop can form."""
        now_us = self.now_us()
        ev = Event(
            tenant_id=cause.tenant_id,
            id=new_id(),
            type=etype,
            version=None,
            time_us=now_us,
            received_us=now_us,
            source=INTERNAL_SOURCE,
            subject=cause.subject,
            actor_id="switchboard",
            actor_type="system",
            trace_id=cause.trace_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
            context={},
            data=data,
        )
        routes = await self.routes.routes(cause.tenant_id)
        plans = routable(routes, ev)
        try:
            await self.store.append([ev], [plans])
        except Exception:
            log.exception(
                "internal event lost", extra={"action": "internal_event_failed", "type": etype}
            )
        self.wakeup.set()
