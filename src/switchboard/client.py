"""The Python SDK: `emit` business events from an application without waiting on the network.

`AsyncClient` queues encoded events and one background task POSTs them to `/v1/events` in
batches, retrying transient failures with backoff; `Client` runs one `AsyncClient` on a private
event loop in a daemon thread, for sync code (Django, Flask, scripts).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, NamedTuple, Self

import aiohttp
import orjson
import uuid_utils

log = logging.getLogger("switchboard.client")

MAX_BATCH_EVENTS: Final = 1_000  # the hub's per-request limit
MAX_BODY_BYTES: Final = 1024 * 1024  # the hub's per-request body limit (1 MiB)
ENVELOPE_FIELDS: Final = frozenset(
    {
        "id",
        "version",
        "time",
        "source",
        "subject",
        "actor",
        "trace_id",
        "correlation_id",
        "causation_id",
        "context",
    }
)
_LOGGED_BODY_CHARS: Final = 1_000  # enough of an error body to fix the request, no more


# --- pure decisions -------------------------------------------------------------------------


class Outcome(StrEnum):
    """What one HTTP answer means for the batch that was sent."""

    RESULTS = "results"  # 2xx or 422: the body holds a result per event
    RETRY = "retry"  # 429, 5xx, connection error, timeout: send the same batch again later
    SPLIT = "split"  # 413 on a multi-event batch: the hub's limit is lower; send halves
    FAIL = "fail"  # any other status: the request itself is wrong; repeating cannot help


def classify(status: int | None, batch_len: int) -> Outcome:
    """Map an HTTP status (None: no answer at all) to what the sender does next."""
    if status is None or status == 429 or status >= 500:
        return Outcome.RETRY
    if 200 <= status < 300 or status == 422:
        return Outcome.RESULTS
    if status == 413 and batch_len > 1:
        return Outcome.SPLIT
    return Outcome.FAIL


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt + 1` (attempt counts from 0).

    Exponential backoff with full jitter, uniform in [0, min(cap, base * 2**attempt)], so many
    clients recovering from one outage do not retry in lockstep. A server's Retry-After is a
    floor: the hub asked us to stay away that long, so we do, even beyond `cap`.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 60))
    delay = rng() * ceiling
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; an HTTP-date or garbage is ignored (backoff applies instead)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


class Queued(NamedTuple):
    """One encoded event waiting to be sent."""

    id: str
    type: str
    body: bytes  # the JSON envelope, encoded once at emit time


def encode_event(
    type: str, data: Mapping[str, Any], envelope: Mapping[str, Any], *, source: str | None = None
) -> Queued:
    """Build and encode one envelope; wrong arguments raise here, in the caller's code.

    Raises TypeError for a non-str type, non-mapping data, an unknown envelope field or a value
    JSON cannot encode; ValueError for a naive `time` or an event larger than one request.
    """
    if not isinstance(type, str) or not type:
        raise TypeError(f"event type must be a non-empty str, not {type!r}")
    if not isinstance(data, Mapping):
        raise TypeError(f"event data must be a mapping, not {data.__class__.__name__}")
    unknown = envelope.keys() - ENVELOPE_FIELDS
    if unknown:
        raise TypeError(
            f"unknown envelope field(s) {sorted(unknown)}; known: {sorted(ENVELOPE_FIELDS)}"
        )
    event: dict[str, Any] = {k: v for k, v in envelope.items() if v is not None}
    event_id = event.get("id")
    # A time-ordered id generated here, before the first attempt, is what lets the hub
    # deduplicate an event whose 202 was lost and that the sender therefore posts again.
    event["id"] = str(uuid_utils.uuid7()) if event_id is None else str(event_id)
    event["type"] = type
    event["data"] = dict(data)
    when = event.get("time")
    if when is None:
        when = datetime.now(UTC)  # when it happened, not when the queue got round to it
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("event time must carry a timezone (use datetime.now(UTC))")
        event["time"] = when.isoformat()
    if source is not None:
        event.setdefault("source", source)
    try:
        body = orjson.dumps(event)
    except TypeError as exc:
        raise TypeError(f"event {type!r} cannot be encoded as JSON: {exc}") from exc
    if len(body) > MAX_BODY_BYTES - 2:
        raise ValueError(f"event {type!r} is {len(body)} bytes encoded; the limit is 1 MiB")
    return Queued(event["id"], type, body)


# --- the async client -----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ClientStats:
    """Counters since the client was made; `queued == sent + rejected + failed + pending`."""

    queued: int = 0  # taken into the queue by emit
    sent: int = 0  # the hub answered accepted or duplicate
    rejected: int = 0  # the hub answered rejected (invalid event); logged, never retried
    dropped: int = 0  # not queued: the queue was full or the client closed
    failed: int = 0  # given up: retries exhausted, a non-retryable 4xx, or closed while pending
    retries: int = 0  # requests sent again after a retryable failure


class _Answer(NamedTuple):
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    body: bytes
    retry_after: float | None
    error: str  # why there was no answer, for the log


class AsyncClient:
    """Queue events with `emit` and send them in the background; see docs/sdk.md.

    Not thread-safe: call it from the event loop it runs on. Sync code uses `Client`.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        source: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        max_retries: int = 8,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        if not api_key:
            raise ValueError("api_key is empty")
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be within 1..{MAX_BATCH_EVENTS}")
        if max_queue < 1 or max_retries < 0 or timeout <= 0 or flush_interval < 0:
            raise ValueError("max_queue ≥ 1, max_retries ≥ 0, timeout > 0, flush_interval ≥ 0")
        self._endpoint = url.rstrip("/") + "/v1/events"
        # The key lives only in this header dict: never in a log record or a repr.
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._source = source
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._max_retries = max_retries
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._session = session
        self._owns_session = session is None
        self._queue: deque[Queued] = deque()
        self._stats = ClientStats()
        self._settled = 0  # events whose fate is known (sent, rejected or failed)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (settled target, flush)
        self._wake = asyncio.Event()  # set on emit, flush and close
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dropping = False  # inside a run of drops: log the first one, not every one

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    def emit(self, type: str, data: Mapping[str, Any], **envelope: Any) -> str:
        """Queue one event and return its id at once; the network is never awaited here.

        `envelope` takes id, version, time, source, subject, actor, trace_id, correlation_id,
        causation_id and context. A full queue drops the event (counted, logged); only wrong
        arguments raise (TypeError, or ValueError for a naive time or an oversized event).
        """
        event = self._encode(type, data, envelope)
        self._enqueue(event)
        return event.id

    # A timeout argument, not asyncio.timeout(): running out of time is not an error here; it
    # logs and returns, so a request handler can flush without guarding it.
    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every event emitted so far was sent or given up.

        On timeout it logs and returns (the events stay queued): it never raises for transport
        trouble, so it is safe at the end of a request or a job. Compare `stats` to know more.
        """
        target = self._stats.queued
        if self._settled >= target:
            return
        self._ensure_sender()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._wake.set()
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            log.warning(
                "flush timed out after %ss with %d event(s) pending",
                timeout,
                target - self._settled,
                extra={"action": "flush_timeout", "event_count": target - self._settled},
            )
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((target, waiter))

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (as flush)
        """Flush, stop the sender and close the session this client opened.

        With a timeout, whatever is still unsent when it expires is counted as failed.
        Later emits are dropped.
        """
        if self._closing:
            return
        await self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            if self._settled < self._stats.queued:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = self._stats.queued - self._settled
        if pending:
            self._queue.clear()
            log.error(
                "closed with %d event(s) unsent",
                pending,
                extra={"action": "closed_unsent", "event_count": pending},
            )
            self._settle(pending, "failed")
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- queue -----------------------------------------------------------------------------

    def _encode(self, type: str, data: Mapping[str, Any], envelope: Mapping[str, Any]) -> Queued:
        return encode_event(type, data, envelope, source=self._source)

    def _enqueue(self, event: Queued) -> None:
        if self._closing or len(self._queue) >= self._max_queue:
            self._drop(event, "client closed" if self._closing else "queue full")
            return
        if self._dropping:
            self._dropping = False
            log.warning(
                "queue has room again after %d drop(s) in total",
                self._stats.dropped,
                extra={"action": "queue_recovered"},
            )
        self._queue.append(event)
        self._stats.queued += 1
        self._wake.set()
        self._ensure_sender()

    def _drop(self, event: Queued, reason: str) -> None:
        self._stats.dropped += 1
        if not self._dropping:
            self._dropping = True
            log.warning(
                "event dropped (%s); further drops are only counted",
                reason,
                extra={"action": "event_dropped", "event_id": event.id, "event_type": event.type},
            )

    def _ensure_sender(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next emit or flush inside one starts the sender
        self._task = loop.create_task(self._run(), name="switchboard-client-sender")

    def _urgent(self) -> bool:
        return self._closing or bool(self._waiters)

    def _settle(self, count: int, outcome: str) -> None:
        if outcome == "sent":
            self._stats.sent += count
        elif outcome == "rejected":
            self._stats.rejected += count
        else:
            self._stats.failed += count
        self._settled += count
        for target, waiter in self._waiters:
            if target <= self._settled and not waiter.done():
                waiter.set_result(None)

    def _take_batch(self) -> list[Queued]:
        batch: list[Queued] = []
        size = 2  # the brackets
        while self._queue and len(batch) < self._batch_size:
            grown = size + len(self._queue[0].body) + (1 if batch else 0)
            if batch and grown > MAX_BODY_BYTES:
                break
            batch.append(self._queue.popleft())
            size = grown
        return batch

    # -- sender ----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = loop.time() + self._flush_interval
            while len(self._queue) < self._batch_size and not self._urgent():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            batch = self._take_batch()
            settled_before = self._settled
            try:
                await self._deliver(batch)
            except Exception:  # one bad batch must not stop the sender for the whole process
                log.exception(
                    "sender failed on a batch of %d",
                    len(batch),
                    extra={"action": "sender_error", "event_count": len(batch)},
                )
                self._settle(len(batch) - (self._settled - settled_before), "failed")

    async def _deliver(self, batch: list[Queued]) -> None:
        body = b"[" + b",".join(event.body for event in batch) + b"]"
        attempt = 0
        while True:
            answer = await self._post(body)
            outcome = classify(answer.status, len(batch))
            if outcome is Outcome.RESULTS:
                self._apply_results(batch, answer)
                return
            if outcome is Outcome.SPLIT:
                half = len(batch) // 2
                await self._deliver(batch[:half])
                await self._deliver(batch[half:])
                return
            if outcome is Outcome.FAIL:
                log.error(
                    "hub refused a batch of %d with HTTP %s: %s",
                    len(batch),
                    answer.status,
                    _excerpt(answer.body),
                    extra={
                        "action": "batch_failed",
                        "status": answer.status,
                        "event_count": len(batch),
                        "first_event_id": batch[0].id,
                    },
                )
                self._settle(len(batch), "failed")
                return
            reason = answer.error or f"HTTP {answer.status}"
            if attempt >= self._max_retries:
                log.error(
                    "gave up on a batch of %d after %d retries: %s",
                    len(batch),
                    attempt,
                    reason,
                    extra={
                        "action": "batch_given_up",
                        "status": answer.status,
                        "event_count": len(batch),
                        "first_event_id": batch[0].id,
                    },
                )
                self._settle(len(batch), "failed")
                return
            delay = retry_delay(
                attempt,
                base=self._backoff_base,
                cap=self._backoff_max,
                retry_after=answer.retry_after,
            )
            attempt += 1
            self._stats.retries += 1
            log.warning(
                "retry %d of a batch of %d in %.2fs: %s",
                attempt,
                len(batch),
                delay,
                reason,
                extra={
                    "action": "batch_retry",
                    "status": answer.status,
                    "attempt": attempt,
                    "delay": delay,
                },
            )
            await asyncio.sleep(delay)

    async def _post(self, body: bytes) -> _Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self._endpoint, data=body, headers=self._headers, timeout=self._timeout
            ) as response:
                content = await response.read()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                return _Answer(response.status, content, retry_after, "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Answer(None, b"", None, f"{exc.__class__.__name__}: {exc}".rstrip(": "))

    def _apply_results(self, batch: list[Queued], answer: _Answer) -> None:
        try:
            payload = orjson.loads(answer.body)
            results = {r["index"]: r for r in payload["results"] if isinstance(r, dict)}
        except (orjson.JSONDecodeError, TypeError, KeyError):
            ok = answer.status is not None and answer.status < 300
            log.warning(
                "HTTP %s without per-event results: %s",
                answer.status,
                _excerpt(answer.body),
                extra={
                    "action": "unexpected_response",
                    "status": answer.status,
                    "event_count": len(batch),
                },
            )
            # A 2xx means the hub took the request; anything else cannot be trusted as sent.
            self._settle(len(batch), "sent" if ok else "failed")
            return
        # An index missing from the results takes the request's verdict: 2xx took it, 422 did not.
        missing = {"status": "accepted" if answer.status != 422 else "rejected"}
        for index, event in enumerate(batch):
            result = results.get(index, missing)
            if result.get("status") != "rejected":  # accepted, duplicate, or newer wording
                self._settle(1, "sent")
                continue
            errors = result.get("errors") or []
            where = "; ".join(
                f"{e.get('path', '')}: {e.get('message', '')}"
                for e in errors
                if isinstance(e, dict)
            )
            log.warning(
                "event %s (%s) rejected: %s",
                event.id,
                event.type,
                where or result,
                extra={
                    "action": "event_rejected",
                    "event_id": event.id,
                    "event_type": event.type,
                    "errors": errors,
                },
            )
            self._settle(1, "rejected")


def _excerpt(body: bytes) -> str:
    return body[:_LOGGED_BODY_CHARS].decode("utf-8", "replace")


# --- the sync client ------------------------------------------------------------------------


class Client:
    """The sync face of `AsyncClient`: one of them on a private loop in a daemon thread.

    `emit` is thread-safe and never waits on the network. Takes the same arguments as
    `AsyncClient` except `session` (a session belongs to one loop, and this loop is private),
    plus `exit_timeout`: how long the interpreter-exit hook flushes before giving up.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        source: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        max_retries: int = 8,
        timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        exit_timeout: float = 2.0,
    ) -> None:
        self._client = AsyncClient(
            url,
            api_key,
            source=source,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        self._exit_timeout = exit_timeout
        self._closed = False
        self._lock = threading.Lock()  # one close, even from two threads
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="switchboard-client", daemon=True
        )
        self._thread.start()
        atexit.register(self._at_exit)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        return self._client.stats

    def emit(self, type: str, data: Mapping[str, Any], **envelope: Any) -> str:
        """Queue one event and return its id; see `AsyncClient.emit`."""
        event = self._client._encode(type, data, envelope)  # wrong arguments raise right here
        if self._closed:
            self._client._drop(event, "client closed")
            return event.id
        try:
            self._loop.call_soon_threadsafe(self._client._enqueue, event)
        except RuntimeError:  # closed by another thread a moment ago
            self._client._drop(event, "client closed")
        return event.id

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything emitted so far was sent or given up (or the timeout)."""
        if self._closed:
            return
        asyncio.run_coroutine_threadsafe(self._client.flush(timeout), self._loop).result()

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the sender and the private loop. Later emits are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._at_exit)
        try:
            asyncio.run_coroutine_threadsafe(self._client.close(timeout), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _at_exit(self) -> None:
        try:
            self.close(self._exit_timeout)
        except Exception:  # the process is exiting; a traceback here helps nobody
            log.exception("closing at exit failed", extra={"action": "exit_close_failed"})

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
