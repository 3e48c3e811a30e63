"""SQL shared by both stores, written once and rendered for each placeholder style."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import orjson

from switchboard.crypto import Vault
from switchboard.envelope import Event
from switchboard.store import ApiKey, EventQuery, StoredType

if TYPE_CHECKING:
    from switchboard.store.subject_keys import SubjectKeys

EVENT_COLUMNS = (
    "seq, tenant_id, id, source, type, version, time_us, received_us, subject, actor_id, "
    "actor_type, trace_id, correlation_id, causation_id, status, errors, context, data"
)
INSERT_COLUMNS = (
    "tenant_id, id, source, type, version, time_us, received_us, subject, actor_id, "
    "actor_type, trace_id, correlation_id, causation_id, status, errors, context, data"
)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def load_json(value: Any) -> Any:
    """A JSON column as Python: SQLite and asyncpg (without a codec) hand back text."""
    if value is None or isinstance(value, dict | list):
        return value
    return orjson.loads(value)


KEY_COLUMNS = (
    "id, tenant_id, name, prefix, hash, scopes, source, created_us, revoked_us, constraints"
)


def key_from_row(r: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=r[0],
        tenant_id=r[1],
        name=r[2],
        prefix=r[3],
        hash=r[4],
        scopes=tuple(r[5].split(",")),
        source=r[6],
        created_us=r[7],
        revoked_us=r[8],
        constraints=load_json(r[9]),
    )


def type_from_row(r: Sequence[Any]) -> StoredType:
    return StoredType(r[0], r[1], r[2], load_json(r[3]), r[4])


class Sql(Protocol):
    """The generic SQL every store offers to the feature repositories (deliveries, inbound):
    `?` placeholders, and `?j` for a JSON value sent as text."""

    dialect: str
    vault: Vault  # seals credentials at rest (crypto.py)
    subject_keys: SubjectKeys  # seals events' PII (store/subject_keys.py)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    async def fetch_write(
        self, sql: str, params: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Any]:
        """Rows of a writing statement (UPDATE … RETURNING), never retried. `durable=False`:
        its commit does not wait for the log to reach the disk (a delivery's claim: lost in a
        power cut, the delivery is due again and sent again, as at-least-once allows); a later
        durable commit flushes it with its own, so it is never lost while a later write stays."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    async def batch(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]: ...
    async def batch_many(self, groups: list[tuple[str, list[Sequence[Any]]]]) -> None: ...


def insert_row(e: Event) -> tuple[Any, ...]:
    """The INSERT_COLUMNS values of one event (JSON columns as text)."""
    return (
        e.tenant_id,
        e.id,
        e.source,
        e.type,
        e.version,
        e.time_us,
        e.received_us,
        e.subject,
        e.actor_id,
        e.actor_type,
        e.trace_id,
        e.correlation_id,
        e.causation_id,
        e.status,
        dumps(e.errors) if e.errors else None,
        dumps(e.context),
        dumps(e.data),
    )


def event_from_row(row: Sequence[Any]) -> Event:
    """An EVENT_COLUMNS row → Event."""
    return Event(
        seq=row[0],
        tenant_id=row[1],
        id=row[2],
        source=row[3],
        type=row[4],
        version=row[5],
        time_us=row[6],
        received_us=row[7],
        subject=row[8],
        actor_id=row[9],
        actor_type=row[10],
        trace_id=row[11],
        correlation_id=row[12],
        causation_id=row[13],
        status=row[14],
        errors=load_json(row[15]) or [],
        context=load_json(row[16]),
        data=load_json(row[17]),
    )


def glob_to_like(glob: str) -> str:
    """`billing.*` → `billing.%` with LIKE's own wildcards escaped (ESCAPE '\\')."""
    out = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return out.replace("*", "%").replace("?", "_")


def type_condition(types: Sequence[str], column: str, add: Callable[[Any], str]) -> str:
    """`column` is one of these names or globs (`billing.*`); `add` binds a value and returns
    its placeholder."""
    alts = []
    for t in types:
        if "*" in t or "?" in t:
            alts.append(f"{column} LIKE {add(glob_to_like(t))} ESCAPE '\\'")
        else:
            alts.append(f"{column} = {add(t)}")
    return "(" + " OR ".join(alts) + ")"


def bind(params: list[Any]) -> Callable[[Any], str]:
    """An `add` for SQL written with `?` placeholders: appends to `params`."""

    def add(value: Any) -> str:
        params.append(value)
        return "?"

    return add


class Params:
    """Collects bound parameters and renders placeholders (`?` or `$n`)."""

    def __init__(self, dialect: str, start: int = 1) -> None:
        self.dialect = dialect
        self.values: list[Any] = []
        self._start = start

    def add(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.dialect == "sqlite" else f"${len(self.values) + self._start - 1}"


def trace_condition(dialect: str, add: Callable[[Any], str], trace_id: str) -> str:
    """`trace_id = X` as each store's index finds it: on PostgreSQL that index holds the trace
    id's hash (migration 0019), so the hash is named for it and the trace id decides."""
    if dialect != "postgres":
        return f"trace_id = {add(trace_id)}"
    return f"hashtext(trace_id) = hashtext({add(trace_id)}) AND trace_id = {add(trace_id)}"


def list_events_sql(dialect: str, tenant_id: str, q: EventQuery) -> tuple[str, list[Any]]:
    """SELECT for GET /v1/events and timelines; newest first with a (time_us, seq) keyset."""
    p = Params(dialect)
    where = [f"tenant_id = {p.add(tenant_id)}"]
    if q.types:
        where.append(type_condition(q.types, "type", p.add))
    for column, value in (
        ("source", q.source),
        ("subject", q.subject),
        ("actor_id", q.actor_id),
        ("correlation_id", q.correlation_id),
        ("status", q.status),
    ):
        if value is not None:
            where.append(f"{column} = {p.add(value)}")
    if q.trace_id is not None:
        where.append(trace_condition(dialect, p.add, q.trace_id))
    if q.from_us is not None:
        where.append(f"time_us >= {p.add(q.from_us)}")
    if q.to_us is not None:
        where.append(f"time_us < {p.add(q.to_us)}")
    if q.cursor is not None:
        where.append(f"(time_us, seq) < ({p.add(q.cursor.time_us)}, {p.add(q.cursor.seq)})")
    if q.pattern is not None:
        from switchboard.patterns import to_sql

        frag = to_sql(q.pattern, dialect, start=len(p.values) + 1)  # type: ignore[arg-type]
        p.values.extend(frag.params)
        where.append(f"({frag.sql})")
    limit = p.add(q.limit)
    return (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} "
        f"ORDER BY time_us DESC, seq DESC LIMIT {limit}",
        p.values,
    )


def metrics_sql(
    dialect: str, tenant_id: str, bucket_us: int, from_us: int, to_us: int, pattern: Any = None
) -> tuple[str, list[Any]]:
    """Counts per (time bucket, type, validation outcome) for GET /v1/metrics/events."""
    p = Params(dialect)
    bucket = p.add(bucket_us)
    bucket2 = p.add(bucket_us)
    narrowed = ""
    tenant = p.add(tenant_id)
    since, until = p.add(from_us), p.add(to_us)
    if pattern is not None:
        from switchboard.patterns import to_sql

        frag = to_sql(pattern, dialect, start=len(p.values) + 1)  # type: ignore[arg-type]
        p.values.extend(frag.params)
        narrowed = f"AND ({frag.sql}) "
    sql = (
        f"SELECT (time_us / {bucket}) * {bucket2} AS bucket, type, status, count(*) "
        f"FROM events WHERE tenant_id = {tenant} "
        f"AND time_us >= {since} AND time_us < {until} {narrowed}"
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    return sql, p.values


_PLACEHOLDER = re.compile(r"\?j|\?")


@functools.lru_cache(maxsize=2048)  # statements repeat: rewrite each once, not per call
def render(sql: str) -> str:
    """`?` placeholders → PostgreSQL's `$n`; `?j` (a JSON value sent as text) → `$n::jsonb`."""
    # no cap of our own: PostgreSQL's is 65,535 parameters, and the API's largest id list is 10,000
    counter = itertools.count(1)

    def sub(m: re.Match[str]) -> str:
        n = next(counter)
        return f"${n}::jsonb" if m.group(0) == "?j" else f"${n}"

    return _PLACEHOLDER.sub(sub, sql)


Q = TypeVar("Q", bound=tuple[Any, ...])


def take_batch(pending: list[Q], limit: int) -> tuple[list[Q], list[Q]]:
    """Split a commit queue into the next batch and the rest: queued items in order until their
    first elements (lists of statements or events) add up to `limit`, and always at least one."""
    size = cut = 0
    while cut < len(pending) and size < max(1, limit):
        size += len(pending[cut][0])
        cut += 1
    return pending[:cut], pending[cut:]


def _by_shape(
    callers: list[list[tuple[str, Sequence[Any]]]],
) -> list[tuple[str, list[Sequence[Any]]]]:
    """Callers' statement lists → (sql, [params, ...]) groups for `executemany`. Callers with the
    same sequence of statements (the same "shape") are merged position by position, so each
    caller's own statements keep their order; different callers are independent by contract."""
    shapes: dict[tuple[str, ...], list[list[tuple[str, Sequence[Any]]]]] = {}
    for sts in callers:
        shapes.setdefault(tuple(q for q, _ in sts), []).append(sts)
    groups: list[tuple[str, list[Sequence[Any]]]] = []
    for shape, members in shapes.items():
        for i, sql in enumerate(shape):
            groups.append((sql, [sts[i][1] for sts in members]))
    return groups


Statements = list[tuple[str, Sequence[Any]]]
# who hears of a caller's commit: a future, or (`submit(..., on_error=)`) a function called only
# if its statements fail
Done = asyncio.Future[None] | Callable[[Exception], None]


class GroupWriter:
    """Group commit for small writes: concurrent callers' statements share one transaction, so
    N deliveries finishing together cost one fsync instead of N, and the same statement of many
    callers is sent once with all their parameters (`executemany`: one round trip on
    PostgreSQL). Callers must be independent of each other. Each caller returns only after the
    commit that holds its statements. If a shared transaction fails, each caller's statements
    are retried alone, so one bad write never fails the others."""

    def __init__(self, sql: Sql, max_statements: int = 2000) -> None:
        self.sql = sql
        self.max_statements = max_statements
        self._pending: list[tuple[Statements, Done]] = []
        self._busy = False  # a batch is being written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def write(self, statements: Statements) -> None:
        await self.submit(statements)

    @overload
    def submit(self, statements: Statements) -> asyncio.Future[None]: ...

    @overload
    def submit(self, statements: Statements, on_error: Callable[[Exception], None]) -> None: ...

    def submit(
        self, statements: Statements, on_error: Callable[[Exception], None] | None = None
    ) -> asyncio.Future[None] | None:
        """Queue the statements. Without `on_error`, the future returned is done when their
        transaction has committed. With it, nothing is returned and `on_error` is called only
        if they fail: a caller that need not wait costs no future and no callback (the
        worker's successful sends; `flush` waits for them)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop_forever(), name="group-writer")
        fut: asyncio.Future[None] | None = None
        done: Done
        if on_error is None:
            done = fut = asyncio.get_running_loop().create_future()
        else:
            done = on_error
        self._pending.append((statements, done))
        self._wake.set()
        return fut

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or has failed: each write's
        failure goes to its own caller, never to the one flushing)."""
        if self._pending or self._busy:
            with contextlib.suppress(Exception):  # the store is down: the writes say so
                await self.submit([])  # done after everything queued before it

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = take_batch(self._pending, self.max_statements)
                self._busy = True
                try:
                    await self._write(batch)
                finally:
                    self._busy = False

    async def _write(self, batch: list[tuple[Statements, Done]]) -> None:
        try:
            await self.sql.batch_many(_by_shape([sts for sts, _ in batch if sts]))
        except Exception:
            for sts, done in batch:
                try:
                    await self.sql.batch(sts)
                except Exception as exc:
                    _failed(done, exc)
                else:
                    _committed(done)
            return
        for _, done in batch:
            _committed(done)


def _committed(done: Done) -> None:
    if isinstance(done, asyncio.Future) and not done.done():
        done.set_result(None)


def _failed(done: Done, exc: Exception) -> None:
    if not isinstance(done, asyncio.Future):
        done(exc)
    elif not done.done():
        done.set_exception(exc)
