"""The ASGI application: routes from each resource module, one error translation, lifespan."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from switchboard.api import (
    admin,
    audit,
    automations,
    catalog,
    deliveries,
    engagement,
    events,
    health,
    mappings,
    messages,
    observe,
    purposes,
    recipients,
    retention,
    segment,
    source_requests,
    sources,
    subjects,
    webhooks,
)
from switchboard.api.common import READ_METHODS, Deadlines, JSONResponse
from switchboard.api.openapi import openapi_document
from switchboard.api.privacy import redact_answers
from switchboard.config import Settings
from switchboard.errors import ApiError, StoreError, StoreUnavailable
from switchboard.hub import Hub, tune_gc
from switchboard.metrics import Metrics
from switchboard.ui import routes as dashboard_routes

log = logging.getLogger("switchboard.api")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _store_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable", extra={"action": "store_unavailable", "error": str(exc)})
        return JSONResponse(
            {"error": {"code": "unavailable", "message": "the store is unavailable; retry"}},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    log.error("store error", extra={"action": "store_error", "error": str(exc)})
    return JSONResponse(
        {"error": {"code": "store_error", "message": "the store failed; retry later"}},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = exc.headers
    if exc.status_code == 405:  # Allow lists every method of the path (RFC 9110), not only
        # those of the first of its routes, as Starlette's own answer does
        allowed = {
            method
            for route in request.app.routes
            if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        }
        headers = {"Allow": ", ".join(sorted(allowed))}
    return JSONResponse(
        {"error": {"code": code, "message": exc.detail}},
        status_code=exc.status_code,
        headers=headers,
    )


# Our errors → their JSON answers: Starlette's exception handlers, and the ingest fast path.
ERROR_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    ApiError: _api_error,
    StoreError: _store_error,
    HTTPException: _http_error,
}
_HANDLED = tuple(ERROR_HANDLERS)


class IndexedHeaders(Headers):
    """Starlette's request headers with an index by name. Starlette scans the raw list on every
    lookup, and an ingest request looks up seven names (key, tenant, idempotency key, content
    type, length and encoding, CloudEvents mode). The first of repeated headers wins, as in
    Starlette."""

    def __init__(self, scope: Scope) -> None:  # Headers(scope=scope), and the index
        raw = self._list = scope["headers"] = list(scope["headers"])
        # built from the end, so that the first of repeated names is the one kept
        self._index: dict[bytes, bytes] = dict(reversed(raw))

    def __getitem__(self, key: str) -> str:
        value = self._index.get(_RAW_NAMES.get(key) or _raw_name(key))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and (_RAW_NAMES.get(key) or _raw_name(key)) in self._index

    def get(self, key: str, default: Any = None) -> Any:
        value = self._index.get(_RAW_NAMES.get(key) or _raw_name(key))
        return default if value is None else value.decode("latin-1")


class IngestRequest(Request):
    """The Request of the ingest fast path: its headers are IndexedHeaders, read as a plain
    attribute (Starlette's `headers` is a property that tests for them on every read, and an
    ingest request reads them seven times)."""

    headers = None  # type: ignore[assignment]  # (a class value: the instance's attribute wins)

    def __init__(self, scope: Scope, receive: Receive) -> None:
        super().__init__(scope, receive)
        self.headers = self._headers = IndexedHeaders(scope=scope)


# header name as asked -> as ASGI carries it (lowercase bytes): the code asks the same few names
# on every request, so a look-up here replaces a lower() and an encode() per look-up
_RAW_NAMES: dict[str, bytes] = {}


def _raw_name(key: str) -> bytes:
    raw = _RAW_NAMES.get(key)
    if raw is None:
        raw = key.lower().encode("latin-1")
        if len(_RAW_NAMES) < 256:  # names are the code's own; bounded all the same
            _RAW_NAMES[key] = raw
    return raw


class SwitchboardApp(Starlette):
    """The Starlette app, with `POST /v1/events` — the hot path — handed straight to its handler.

    Starlette's router and its two exception middlewares cost 10–25 % of an ingest request's
    Python time (measured in-process); the errors they would translate are translated here the
    same way, and anything else still reaches uvicorn as a 500. Every other request goes
    through `privacy.redact_answers`, which masks PII for keys without the `pii` scope."""

    _answer: ASGIApp | None = None

    # endpoint -> its route's path template, the `route` label of the request histogram
    templates: dict[Any, str]
    metrics: Metrics  # the hub's (read once per request: `state` looks names up in Python)
    switchboard_hub: Hub  # app.state.hub, read by `common.hub` without `state`'s look-up
    deadlines: Deadlines  # the ingest timeout of the requests in flight on the fast path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if no answer starts, uvicorn sends a 500
        if (
            scope["method"] == "POST"
            and scope["path"] == "/v1/events"
            and not scope.get("root_path")
        ):  # straight to its handler (inline: one coroutine less per event sent), answered
            # within SWITCHBOARD_INGEST_TIMEOUT (`common.Deadlines`: `events.ingest`'s `within`
            # without its task, future and timer per request)
            scope["app"] = self
            request = IngestRequest(scope, receive)
            deadlines = self.deadlines
            late = deadlines.enter(lambda: self._late(request, send, started))
            try:
                try:
                    response = await events.ingest_request(request, self.switchboard_hub)
                except _HANDLED as exc:
                    if late.fired:
                        raise
                    handler = next(h for kind, h in ERROR_HANDLERS.items() if isinstance(exc, kind))
                    response = await handler(request, exc)
                finally:
                    deadlines.leave(late)
                if not late.fired:
                    await response(scope, receive, send)
                    status = response.status_code
            except BaseException as exc:
                if not late.fired:
                    raise
                # the deadline passed: the 503 is answered, and this was the work unwinding
                if not isinstance(exc, asyncio.CancelledError):
                    log.info("abandoned request ended with %r", exc)
            finally:
                if not late.fired:
                    self.metrics.request(
                        "POST", "/v1/events", status, time.perf_counter() - started
                    )
            if late.fired and late.answering is not None:
                await late.answering  # sent before this request ends (uvicorn would add a 500)
            return

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        if self._answer is None:
            self._answer = redact_answers(super().__call__, self.state.hub)
        try:
            if scope["method"] not in READ_METHODS:
                # every change goes past the audit log (it records those of manage/admin keys)
                await audit.record(
                    self._answer, self.router.routes, self.state.hub, scope, receive, sending
                )
            else:
                await self._answer(scope, receive, sending)
        finally:
            route = self.templates.get(scope.get("endpoint"), "other")
            self.metrics.request(scope["method"], route, status, time.perf_counter() - started)

    async def _late(self, request: Request, send: Send, started: float) -> None:
        """The 503 of a request whose deadline passed, sent while its work unwinds."""
        exc = StoreUnavailable(
            f"the store did not confirm within {self.deadlines.seconds:g} s; "
            "retry with the same event ids"
        )
        response = await _store_error(request, exc)
        try:
            await response(request.scope, request.receive, send)
        finally:
            self.metrics.request(
                "POST", "/v1/events", response.status_code, time.perf_counter() - started
            )


def create_app(settings: Settings, hub_: Hub | None = None, *, freeze: bool = False) -> Starlette:
    """The app; `freeze` (the `serve` command sets it) hides the started process's heap from
    the garbage collector, see `tune_gc`."""
    the_hub = hub_ or Hub(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await the_hub.open()
        if freeze:
            tune_gc()
        try:
            yield
        finally:
            await the_hub.close()

    app = SwitchboardApp(
        routes=[
            *health.routes,
            *events.routes,
            *catalog.routes,
            *admin.routes,
            *deliveries.routes,
            *sources.routes,
            *webhooks.routes,
            *source_requests.routes,
            *mappings.routes,
            *segment.routes,
            *automations.routes,
            *recipients.routes,
            *engagement.routes,
            *messages.routes,
            *purposes.routes,
            *subjects.routes,
            *observe.routes,
            *audit.routes,
            *retention.routes,
            *dashboard_routes(settings),
        ],
        exception_handlers=dict(ERROR_HANDLERS),
        lifespan=lifespan,
    )
    app.state.hub = the_hub
    app.state.openapi_document = openapi_document  # for GET /openapi.json (api/health.py)
    app.metrics = the_hub.metrics
    app.switchboard_hub = the_hub
    app.deadlines = Deadlines(settings.ingest_timeout)
    app.templates = {
        r.endpoint: r.path for r in app.routes if isinstance(r, Route) and r.path != "/v1/events"
    }
    return app
