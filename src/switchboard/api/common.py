"""Shared request plumbing: JSON in and out, authentication, parameter parsing, errors."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from switchboard.auth import Principal
from switchboard.envelope import TYPE_GLOB_RE, EnvelopeError, parse_time
from switchboard.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    StoreUnavailable,
    UnsupportedMedia,
)
from switchboard.hub import Hub
from switchboard.patterns import (
    Pattern,
    PatternError,
    check_queryable,
    compile_pattern,
    parse_pattern,
)
from switchboard.store import Scope
from switchboard.store.subject_keys import blind_spec
from switchboard.store.unit import join

JSON_TYPES = ("application/json",)
TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}(?!\n)$")
log = logging.getLogger("switchboard.api")
_abandoned: set[asyncio.Task[Any]] = set()


async def within(seconds: float, work: Coroutine[Any, Any, Response]) -> Response:
    """Answer `work`'s response, or 503 after `seconds` when the store has not confirmed.

    `asyncio.wait_for` would wait for the cancelled work to unwind, and a driver cleaning up a
    connection in a silent network partition can take far longer than the timeout; here the
    work is cancelled and left to unwind on its own, so the answer is on time. Nothing is lost
    by answering early: the client retries with the same event ids, which the store answers as
    duplicates if the abandoned commit did land."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    # `asyncio.wait` without its sets and partials: one waiter, woken by the task or the timer
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(seconds, wake)
    try:
        await waiter
    except asyncio.CancelledError:  # the client went away: stop the work too
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if task.done():
        return task.result()
    task.cancel()
    _abandoned.add(task)  # keep a reference until it unwinds; its outcome is only logged
    task.add_done_callback(_unwound)
    raise StoreUnavailable(
        f"the store did not confirm within {seconds:g} s; retry with the same event ids"
    )


def _unwound(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.info("abandoned request ended with %r", task.exception())


class Late:
    """One request in flight under `Deadlines`: its deadline, its task, and what answers for
    it once the deadline passes (`fired` then)."""

    __slots__ = ("answer", "answering", "deadline", "done", "fired", "task")

    def __init__(
        self,
        deadline: float,
        task: asyncio.Task[Any],
        answer: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.deadline = deadline
        self.task = task
        self.answer = answer
        self.done = False
        self.fired = False
        self.answering: asyncio.Task[None] | None = None  # `answer`, once fired


class Deadlines:
    """`within` for the ingest fast path, without a task, a future and a timer per request.

    The work runs in the request's own task. Every request has the same timeout, so deadlines
    come in the order requests start: they wait in a queue, with one timer for the oldest. When
    a deadline passes before its request is done, the request's task is cancelled and a task of
    its own sends the 503 at once (`answer`), so the answer does not wait for the work to
    unwind (the request then ends without answering again, see `SwitchboardApp`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waiting: deque[Late] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self, answer: Callable[[], Coroutine[Any, Any, None]]) -> Late:
        """Start the current task's clock; `leave` it once its answer is ready."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (an app served by a second loop, as tests may do)
            self._loop, self._timer, self._waiting = loop, None, deque()
        task = asyncio.current_task(loop)
        assert task is not None  # a request runs in a task
        late = Late(loop.time() + self.seconds, task, answer)
        self._waiting.append(late)
        if self._timer is None:
            self._timer = loop.call_at(late.deadline, self._expire)
        return late

    def leave(self, late: Late) -> None:
        late.done = True
        waiting = self._waiting
        while waiting and waiting[0].done:  # the oldest are usually done first
            waiting.popleft()

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = self._waiting
        while waiting and (waiting[0].done or waiting[0].deadline <= now):
            late = waiting.popleft()
            if not late.done:
                late.done = late.fired = True
                late.task.cancel()
                answer = late.answering = loop.create_task(late.answer())
                _abandoned.add(answer)  # a reference until it is sent
                answer.add_done_callback(_abandoned.discard)
        self._timer = loop.call_at(waiting[0].deadline, self._expire) if waiting else None


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class IngestAnswer(JSONResponse):
    """JSONResponse of the ingest hot path (202/422, no headers of its own), with the two
    headers Starlette's `init_headers` would make for it, in its order, made directly: one
    answer per request sent."""

    def __init__(self, content: Any, status_code: int) -> None:
        self.status_code = status_code
        self.background = None
        body = self.body = orjson.dumps(content)
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def hub(request: Request) -> Hub:
    found: Hub | None = getattr(request.scope["app"], "switchboard_hub", None)
    if found is not None:  # the app create_app made (Starlette's `state` is a Python look-up)
        return found
    h: Hub = request.app.state.hub
    return h


# (a StrEnum member read off its class is a descriptor call in Python 3.11: read once here,
# since `principal` compares them on every request)
_READ, _MANAGE = Scope.READ, Scope.MANAGE
_CHANGING = (Scope.MANAGE, Scope.ADMIN)
AUDIT_MARK = "switchboard.audit"  # ASGI scope key: the Principal of a change to audit
AUDIT_PEEK = "switchboard.peek"  # ASGI scope key: the audit's own GET of the `before` document
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def principal(request: Request, scope: Scope) -> Principal:
    """The caller, who must hold `scope`. A change made with the manage or admin scope is
    marked for the audit log (api/audit.py records it once the handler answers, in the same
    transaction as the change)."""
    named = request.headers.get("x-switchboard-tenant")
    if named is not None and not TENANT_ID_RE.match(named):
        raise BadRequest(
            "the X-Switchboard-Tenant header is not a tenant id (lowercase letters, digits, "
            "'-' or '_', at most 63)",
            details=[{"path": "X-Switchboard-Tenant", "message": "not a tenant id"}],
        )
    p = await hub(request).auth.authenticate(request.headers.get("authorization"), named)
    # the answer is masked on its way out unless the key may see PII (api/privacy.py)
    request.scope.setdefault("state", {})["switchboard.principal"] = p
    if request.scope.get("query_string") or request.scope.get("path_params"):
        _refuse_nul(request)  # (ingest has neither: its fast path pays nothing here)
    if scope == _READ and request.scope.get(AUDIT_PEEK) and _MANAGE in p.key.scopes:
        return p  # the audit reads what a manage key is about to change, even without `read`
    p.require(scope)
    if scope in _CHANGING and request.method not in READ_METHODS:
        request.scope[AUDIT_MARK] = p
        join()  # the change's statements from here on share its audit entry's transaction
    return p


def _refuse_nul(request: Request) -> None:
    """PostgreSQL cannot compare text holding NUL: refused here, so both stores answer alike."""
    for where, params in (
        ("path", list(request.path_params.items())),
        ("query", request.query_params.multi_items()),
    ):
        for name, value in params:
            if isinstance(value, str) and "\x00" in value:
                raise BadRequest(
                    f"{where} parameter {name!r} holds a NUL character",
                    details=[{"path": name, "message": "a NUL character is not allowed"}],
                )


# JSON bodies (other than events, which the envelope checks) are refused past this depth: the
# encoders the stores use stop at 254 levels, and no request shape of the API comes close.
MAX_BODY_DEPTH = 64


async def read_json(
    request: Request,
    limit: int,
    types: tuple[str, ...] = JSON_TYPES,
    *,
    checked: bool = True,
    media: str | None = None,
) -> Any:
    """The parsed JSON body, after checking content type and size; `checked` (all but the
    event bodies, whose envelope has its own checks) also refuses a NUL character in any
    string, which PostgreSQL cannot store, and nesting deeper than MAX_BODY_DEPTH, so both
    stores answer the same 400. `media` is the content type when the caller has read it."""
    ctype = media_type(request) if media is None else media
    if ctype not in types:
        raise UnsupportedMedia(
            f"Content-Type must be {' or '.join(types)}, got {ctype or 'nothing'!r}"
        )
    body = await read_body(request, limit)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if checked and (problem := text_problem(doc)) is not None:
        raise BadRequest(
            f"{problem[0]}: {problem[1]}", details=[{"path": problem[0], "message": problem[1]}]
        )
    return doc


def media_type(request: Request) -> str:
    """The request's media type: its Content-Type without parameters, lowercase ('' if none)."""
    ctype: str = request.headers.get("content-type", "")
    if ctype == "application/json":  # as nearly every client sends it: nothing to take off
        return ctype
    return ctype.split(";")[0].strip().lower()


def text_problem(doc: Any, limit: int = MAX_BODY_DEPTH) -> tuple[str, str] | None:
    """(JSON pointer, problem) of the first string holding a NUL character or the first value
    nested deeper than `limit`; None when there is none. Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return path or "/", "a NUL character (\\u0000) is not allowed in text"
        elif isinstance(node, dict | list):
            if depth > limit:
                return path or "/", f"nested more than {limit} levels deep"
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                child = f"{path}/{key}"
                if isinstance(key, str) and "\x00" in key:
                    return child, "a NUL character (\\u0000) is not allowed in a key"
                stack.append((value, child, depth + 1))
    return None


def read_raw(request: Request, limit: int) -> Coroutine[Any, Any, bytes]:
    """The body as sent (still gzipped, if it was), at most `limit` bytes, to await. Later
    reads of the same request get these bytes again (Starlette replays a body it has read).
    (Not a coroutine itself: a body over a declared Content-Length is refused at the call, and
    the read is awaited without a coroutine layer of its own, on every request that sends one.)"""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
    return _received(request, limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body (gunzipped when ``Content-Encoding: gzip``), at most `limit` bytes."""
    body = await read_raw(request, limit)
    encoding = request.headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() == "gzip":
        # a bounded decompression: a small bomb must not expand past the limit in memory
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BadRequest(f"the body is not valid gzip: {exc}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the decompressed body is over the limit of {limit} bytes")
    return body


async def _received(request: Request, limit: int) -> bytes:
    """The body's bytes as they arrive, at most `limit`. The ASGI messages are read here rather
    than through Starlette's `stream()` (an async generator per request, on the ingest path);
    the body is kept as `request.body()` keeps it, so a later reader gets it again."""
    if hasattr(request, "_body") or request._stream_consumed:
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # the server's body timeout closed it, or the client left
            raise RequestTimeout() from None
        return b"".join(chunks)
    receive = request.receive
    message = await receive()
    if message["type"] != "http.request":  # http.disconnect: the server's body timeout closed
        request._is_disconnected = True  # the connection, or the client left
        raise RequestTimeout()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    if message.get("more_body", False):
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                request._is_disconnected = True
                raise RequestTimeout()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
    request._stream_consumed = True
    request._body = body
    return body


def query_choice(request: Request, name: str, allowed: Sequence[str]) -> str | None:
    """A query parameter that is one of `allowed` (the enum the document publishes), or None."""
    raw = request.query_params.get(name)
    if raw is None or raw in allowed:
        return raw
    choices = ", ".join(allowed)
    raise BadRequest(
        f"query parameter '{name}' must be one of {choices}",
        details=[{"path": f"?{name}", "message": f"one of {choices}"}],
    )


def query_bool(request: Request, name: str) -> bool | None:
    """A boolean query parameter: `true` or `false` (as the document publishes it), or None."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequest(
        f"query parameter '{name}' must be true or false",
        details=[{"path": f"?{name}", "message": "true or false"}],
    )


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter '{name}' must be between {lo} and {hi}")
    return value


# Type globs in one query or replay, as in a route (patterns' max_alternatives): each is a term
# of the statement, and SQLite refuses an expression tree deeper than 1,000.
MAX_TYPE_GLOBS = 100


def type_glob_problem(value: Any) -> str | None:
    """Why `value` is not an event type or a glob of one; None when it is."""
    if isinstance(value, str) and TYPE_GLOB_RE.fullmatch(value):
        return None
    return (
        f"{value!r} is not an event type or a glob of one (lowercase letters, digits, "
        "'_', '.' and '-', with '*' and '?')"
    )


def query_types(request: Request) -> tuple[str, ...]:
    """The `type` query parameter: repeated or comma-separated event types and globs."""
    types = tuple(t for raw in request.query_params.getlist("type") for t in raw.split(",") if t)
    if len(types) > MAX_TYPE_GLOBS:
        many = f"{len(types)} types or globs; at most {MAX_TYPE_GLOBS}"
        raise BadRequest(
            f"query parameter 'type': {many}", details=[{"path": "?type", "message": many}]
        )
    for t in types:
        if (problem := type_glob_problem(t)) is not None:
            raise BadRequest(
                f"query parameter 'type': {problem}",
                details=[{"path": "?type", "message": problem}],
            )
    return types


def query_filter(request: Request) -> Pattern | None:
    """The `filter` query parameter: a pattern that both stores can answer as a query (no
    `time` or `cidr` conditions); a 400 naming `?filter` otherwise."""
    return filter_of(request.query_params.get("filter"))


def filter_of(raw: str | None) -> Pattern | None:
    """A `filter` query parameter's text as a queryable pattern (see `query_filter`)."""
    if not raw:
        return None
    try:
        pattern = parse_pattern(raw)
        check_queryable(pattern)
    except PatternError as exc:
        raise BadRequest(
            f"filter: {exc}", details=[{"path": "?filter", "message": str(exc)}]
        ) from None
    return pattern


async def sealed_filter(
    h: Hub, tenant_id: str, pattern: Pattern | None, where: str, keep_plain: bool = True
) -> Pattern | None:
    """`pattern` as the store can answer it over sealed PII (store/subject_keys.py): equality
    on a PII field compares blind tags, and what a ciphertext cannot answer (prefix, wildcard,
    ranges on a PII field) is a 400 naming the field (`where` is the parameter or pointer of
    the filter). Without a master key, or a type with PII, the pattern is answered as it is."""
    if pattern is None or not h.store.subject_keys.enabled:
        return pattern
    pii = await h.registry.tenant_pii(tenant_id)
    if not pii:
        return pattern
    index_key = await h.store.subject_keys.index_key(tenant_id)
    assert index_key is not None  # a master key is set
    try:
        return compile_pattern(blind_spec(pattern.spec, pii, index_key, keep_plain), None)
    except PatternError as exc:
        name = where.lstrip("?/")
        raise BadRequest(f"{name}: {exc}", details=[{"path": where, "message": str(exc)}]) from None


def query_time(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_time(raw.replace(" ", "+"), name)
    except EnvelopeError as exc:
        raise BadRequest(
            f"query parameter '{name}' {exc.errors[0]['message']}",
            details=[{"path": f"?{name}", "message": exc.errors[0]["message"]}],
        ) from None
