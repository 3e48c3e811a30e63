"""The production store: PostgreSQL through an asyncpg pool, with group commit.

Concurrent ``append`` calls queue their events; one committer task writes everything queued in
one transaction (one ``INSERT … SELECT FROM unnest(…)``) and resolves every caller after COMMIT.
Idempotency holds across processes because the primary key of ``event_keys`` on
``(tenant_id, id, source)`` decides: ``ON CONFLICT DO NOTHING`` waits for a concurrent inserter of
the same id and then skips the row. (The events table itself is partitioned by month, which a
unique index across it would have to include; `partitions.py` keeps the months.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec

from switchboard.config import Settings
from switchboard.crypto import Vault
from switchboard.envelope import Event
from switchboard.errors import StoreError, StoreUnavailable
from switchboard.records import NewDelivery, Wake
from switchboard.store import (
    ApiKey,
    Appended,
    EventQuery,
    Health,
    MetricRow,
    Planned,
    StoredType,
    Tenant,
    group_statements,
)
from switchboard.store import migrate as migrations
from switchboard.store.automations import (
    WAKE_ALL_POSTGRES,
    WAKE_INSERTED_POSTGRES,
    RunStart,
    wake_json,
    wake_targets,
)
from switchboard.store.deliveries import INSERT_DELIVERY, delivery_params
from switchboard.store.queries import (
    EVENT_COLUMNS,
    INSERT_COLUMNS,
    KEY_COLUMNS,
    dumps,
    event_from_row,
    key_from_row,
    list_events_sql,
    metrics_sql,
    render,
    take_batch,
    type_from_row,
)
from switchboard.store.subject_keys import SubjectKeys
from switchboard.store.unit import Unit, current, running

log = logging.getLogger("switchboard.store")

# Seconds one statement may run: a cut connection must not hang a request forever.
COMMAND_TIMEOUT = 10.0
# Seconds an index build may run: CREATE INDEX CONCURRENTLY on a large table takes a while.
INDEX_TIMEOUT = 3600.0
# Attempts of one group commit that lost a deadlock against another hub process.
COMMIT_ATTEMPTS = 5

_COLUMN_TYPES = {
    "time_us": "bigint",
    "received_us": "bigint",
    "errors": "jsonb",
    "context": "jsonb",
    "data": "jsonb",
}
_NAMES = [c.strip() for c in INSERT_COLUMNS.split(",")]
# The batch travels as one JSON parameter, the events as msgspec encodes them (an Event's fields
# are named as the columns; json_to_recordset ignores the others, such as seq), not as one array
# per column: asyncpg checks every element of an array parameter in Python (against Iterable,
# Sized and Mapping), which was about a quarter of the ingest process's work.
_RECORD = ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'text')}" for c in _NAMES)
# an event without validation errors stores NULL, as before (the encoder writes [])
_SELECTED = ", ".join(
    "NULLIF(u.errors, '[]'::jsonb)" if c == "errors" else f"u.{c}" for c in _NAMES
)
# One statement for the whole batch. The events table is partitioned by month (migration 0013)
# and a unique index on it would have to hold the month, so the dedup key lives in `event_keys`:
# the batch's keys go in first, in input order (so seq follows it), and only the rows whose key
# went in become events, under the seq their key drew. ``ON CONFLICT DO NOTHING`` there waits for
# a concurrent inserter of the same key and then skips the row, as it did on the events table.
_KEYS = (
    f"WITH u AS MATERIALIZED (SELECT * FROM ROWS FROM (json_to_recordset($1::json) "
    f"AS ({_RECORD})) WITH ORDINALITY AS u({INSERT_COLUMNS}, ord)), "
    "k AS (INSERT INTO event_keys (tenant_id, id, source, seq, received_us) "
    "SELECT u.tenant_id, u.id, u.source, nextval('events_seq_seq'), u.received_us "
    "FROM u ORDER BY u.ord "
    "ON CONFLICT (tenant_id, id, source) DO NOTHING "
    "RETURNING tenant_id, id, source, seq)"
)
_EVENTS = (
    f"INSERT INTO events (seq, {INSERT_COLUMNS}) "
    f"SELECT k.seq, {_SELECTED} FROM k JOIN u "
    "ON u.tenant_id = k.tenant_id AND u.id = k.id AND u.source = k.source "
    "ORDER BY k.seq "
    "RETURNING seq, tenant_id, source, id"
)
_INSERT = f"{_KEYS} {_EVENTS}"
# A commit whose only plans are wake-ups (or deliveries) wakes in the INSERT itself: one round
# trip instead of two (callgrind, 2026-12-05, benchmarks/waiting_instructions.py, 100,000 runs
# waiting: ~3,700 fewer instructions per event on the waiting tenant, 24,100 → 20,500 more than
# on a plain one). Each row carries how many runs the commit woke.
_INSERT_WAKING = (
    f"{_KEYS}, e AS ({_EVENTS}), w AS ({WAKE_INSERTED_POSTGRES}) "
    "SELECT e.seq, e.tenant_id, e.source, e.id, (SELECT count(*) FROM w) AS woke FROM e"
)
_ENCODE = msgspec.json.Encoder()


def batch_json(events: Sequence[Event]) -> str:
    """`_INSERT`'s parameter. A value JSON cannot carry (a lone surrogate from some decoder)
    fails this batch as a StoreError, so its callers are committed one by one, as a value the
    database refuses is."""
    try:
        return _ENCODE.encode(events).decode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise StoreError(f"an event cannot be written: {exc}") from exc


# The originals of the rows the INSERT skipped; a new statement, so under READ COMMITTED it sees
# what a concurrent process committed while our INSERT waited on it.
_ORIGINALS = (
    "SELECT k.tenant_id, k.source, k.id, e.seq, e.received_us "
    "FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, source, id) "
    "JOIN event_keys e ON e.tenant_id = k.tenant_id AND e.id = k.id AND e.source = k.source"
)
# GET /v1/events/{id}: the key's row names the event's seq and month, so one partition is read
_BY_ID = (
    f"SELECT {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))} "
    "FROM event_keys k JOIN events e ON e.seq = k.seq AND e.received_us = k.received_us "
    "WHERE k.tenant_id = $1 AND k.id = $2 AND e.tenant_id = $1"
)
# Each partition of events, the name of its part of data index $1 (the partition's name and
# suffix $2), whether that part is valid (NULL: not there) and whether it is attached to $1.
_DATA_INDEX_PARTS = (
    "SELECT p.relname, p.relname || '_' || $2, c.indisvalid, "
    "EXISTS (SELECT 1 FROM pg_inherits a JOIN pg_class pc ON pc.oid = a.inhparent "
    "WHERE a.inhrelid = c.indexrelid AND pc.relname = $1) "
    "FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhrelid "
    "LEFT JOIN (SELECT x.indisvalid, x.indexrelid, xc.relname FROM pg_index x "
    "JOIN pg_class xc ON xc.oid = x.indexrelid) c ON c.relname = p.relname || '_' || $2 "
    "WHERE h.inhparent = 'events'::regclass ORDER BY p.relname"
)
_TYPE_COLUMNS = "scope, name, catalog, spec, updated_us"
_SEGMENT = re.compile(r"^[A-Za-z0-9_]{1,63}(?!\n)$")

_Key = tuple[str, str, str]  # (tenant_id, source, id)
_Pending = tuple[
    list[Event], "Sequence[Sequence[Planned]] | None", "asyncio.Future[list[Appended]]"
]

_INSERT_DELIVERY = render(INSERT_DELIVERY)
NOTIFY_CHANNEL = "switchboard_deliveries"

# Errors that mean "the database cannot be reached right now" rather than "the query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    # the server's termination notice of an idle connection can leave asyncpg's protocol in a
    # state it refuses to use ("cannot switch to state …"): a fresh connection is the cure
    asyncpg.exceptions.InternalClientError,
    OSError,  # ConnectionError and socket errors
    TimeoutError,  # command_timeout and acquire timeouts (asyncio.TimeoutError is this on 3.11)
)
_DRIVER: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    *_UNAVAILABLE,
)


class _LostBeforeCommit(StoreUnavailable):
    """The connection was lost before COMMIT was sent: nothing was written."""


def _translate(exc: BaseException) -> StoreError:
    """asyncpg/socket exception → StoreUnavailable (reach the database later) or StoreError."""
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL unavailable: {str(exc) or type(exc).__name__}")
    if isinstance(exc, asyncpg.InterfaceError) and re.search(r"clos(ed|ing)", str(exc)):
        return StoreUnavailable(f"PostgreSQL unavailable: {exc}")
    return StoreError(f"PostgreSQL: {exc}")


def _count(status: str) -> int:
    """asyncpg's command tag ("UPDATE 3") → rows affected."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def data_index_name(path: str) -> str:
    """The index name for a dotted data path; unique per path (JSON keys are case-sensitive,
    identifiers are not, and at most 63 bytes long, so such paths get a hash suffix)."""
    name = "ix_events_data_" + path.replace(".", "__").lower()
    if len(name) > 63 or path != path.lower():
        digest = hashlib.sha256(path.encode()).hexdigest()[:10]
        name = name[:52] + "_" + digest
    return name


class _Unit(Unit):
    """A change's transaction on one pooled connection, taken at its first statement."""

    conn: Any = None
    tx: Any = None


class PostgresStore:
    backend = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vault = Vault.from_settings(settings)  # seals credentials at rest (crypto.py)
        self.subject_keys = SubjectKeys(self)  # seals events' PII (store/subject_keys.py)
        self.on_woken: Callable[[], None] | None = None
        # seconds one statement may run (the pool's command_timeout, set when it opens)
        self.statement_timeout = COMMAND_TIMEOUT
        self._pool: Any = None  # asyncpg.Pool once open
        self._pending: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._stopping = False  # close() was called: refuse new appends, drain the queue
        self._closed = False  # the pool is gone

    # -- connections ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self, *, detached: bool = False) -> AsyncIterator[Any]:
        """A pooled connection; driver errors leave as StoreError/StoreUnavailable. Inside a
        change's unit (store/unit.py) it is the unit's connection, each use in a savepoint of
        its transaction (so a refused statement, such as a unique violation the caller answers
        with a 409, leaves the change usable); `detached` takes a pooled one anyway."""
        if self._pool is None or self._closed:
            raise StoreUnavailable("the store is closed")
        unit = None if detached else current(self)
        if unit is not None:
            async with unit.lock:
                try:
                    conn = await self._unit_connection(unit)
                    async with conn.transaction():
                        yield conn
                except _DRIVER as exc:
                    raise _translate(exc) from exc
            return
        pool = self._pool
        try:
            async with pool.acquire(timeout=COMMAND_TIMEOUT) as conn:
                yield conn
        except _DRIVER as exc:
            error = _translate(exc)
            if isinstance(error, StoreUnavailable):
                # After a restart every pooled connection is dead: replace them all at once
                # instead of failing one request per stale connection.
                await pool.expire_connections()
            raise error from exc

    async def _unit_connection(self, unit: Unit) -> Any:
        """The unit's connection, taken from the pool and BEGUN at its first statement."""
        assert isinstance(unit, _Unit)
        if unit.done:
            raise StoreError("the change's transaction has already ended")
        if unit.conn is None:
            conn = await self._pool.acquire(timeout=COMMAND_TIMEOUT)
            try:
                tx = conn.transaction()
                await tx.start()
            except BaseException:
                await self._pool.release(conn)
                raise
            unit.conn, unit.tx = conn, tx
        return unit.conn

    def transaction(self, *, joined: bool = True) -> AbstractAsyncContextManager[_Unit]:
        """A unit for one change (store/unit.py): committed when the block ends, rolled back
        when it raises; `joined=False` arms it for `unit.join()` to take."""
        unit = _Unit(self)
        unit.joined = joined
        return running(unit, self._end)

    async def _end(self, unit: _Unit, commit: bool) -> None:
        async with unit.lock:
            unit.done = True
            if unit.conn is None:
                return
            conn, pool = unit.conn, self._pool
            try:
                if commit:
                    await unit.tx.commit()
                else:
                    await unit.tx.rollback()
            except _DRIVER as exc:
                if commit:
                    raise _translate(exc) from exc
                log.warning("a change's rollback failed; its connection is dropped", exc_info=True)
            finally:
                try:
                    await pool.release(conn)
                except _DRIVER:
                    conn.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled asyncpg connection for work the generic SQL cannot express (DDL under a
        lock timeout, advisory locks: `partitions.py`), never a change's unit's."""
        async with self._connection(detached=True) as conn:
            yield conn

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """A read; retried once when the connection was lost (reads are safe to repeat). Before
        a change's first write the read takes a pooled connection of its own: the change has
        nothing to see yet, and its transaction should not stay open while it calls out."""
        unit = current(self)
        before_writes = isinstance(unit, _Unit) and unit.conn is None
        for attempt in (1, 2):
            try:
                async with self._connection(detached=before_writes) as conn:
                    rows: list[Any] = await conn.fetch(sql, *args)
                    return rows
            except StoreUnavailable:
                if attempt == 2 or self._closed:
                    raise
        raise AssertionError("unreachable")

    async def _execute(self, sql: str, *args: Any) -> str:
        async with self._connection() as conn:
            status: str = await conn.execute(sql, *args)
            return status

    # -- generic SQL for the feature repositories (store/deliveries.py, ...) ------------------

    dialect = "postgres"

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a query written with `?` (and `?j` for JSON text) placeholders."""
        return [tuple(r) for r in await self._fetch(render(sql), *params)]

    async def fetch_write(
        self, sql: str, params: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Any]:
        """Rows of a writing statement (UPDATE … RETURNING); never retried. `durable=False`:
        in a transaction with `synchronous_commit = off` (the commit does not wait for the WAL
        flush; a later synchronous commit flushes it with its own)."""
        async with self._connection() as conn:
            if durable:
                return [tuple(r) for r in await conn.fetch(render(sql), *params)]
            async with conn.transaction():
                await conn.execute("SET LOCAL synchronous_commit = off")
                return [tuple(r) for r in await conn.fetch(render(sql), *params)]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status = await self._execute(render(sql), *params)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def batch(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; their row counts."""
        counts = []
        async with self._connection() as conn, conn.transaction():
            for sql, params in statements:
                status = await conn.execute(render(sql), *params)
                tail = status.rsplit(" ", 1)[-1]
                counts.append(int(tail) if tail.isdigit() else 0)
        return counts

    async def batch_many(self, groups: list[tuple[str, list[Sequence[Any]]]]) -> None:
        """Run each statement over its parameter lists (asyncpg's pipelined `executemany`), all
        in one transaction."""
        async with self._connection() as conn, conn.transaction():
            for sql, rows in groups:
                await conn.executemany(render(sql), rows)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await migrations.upgrade(self.settings.database_url)
        size = max(1, self.settings.db_pool_size)
        try:
            self._pool = await asyncpg.create_pool(
                self.settings.database_url,
                min_size=min(2, size),
                max_size=size,
                command_timeout=self.statement_timeout,
                timeout=COMMAND_TIMEOUT,  # connect timeout
                max_inactive_connection_lifetime=300.0,
            )
        except _DRIVER as exc:
            raise _translate(exc) from exc
        self._closed = self._stopping = False
        self._wakeup = asyncio.Event()
        self._committer = asyncio.create_task(self._commit_loop(), name="postgres-committer")

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever another process commits new deliveries (LISTEN/NOTIFY); runs
        until cancelled, reconnecting after outages. Workers still poll, so a lost notification
        only costs one poll interval."""
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.settings.database_url, timeout=COMMAND_TIMEOUT)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: wake())
                wake()  # anything committed while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except _DRIVER:
                await asyncio.sleep(2)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(*_DRIVER):
                        await asyncio.wait_for(conn.close(), 2)

    async def close(self) -> None:
        self._stopping = True
        if self._committer is not None:
            assert self._wakeup is not None
            self._wakeup.set()
            await self._committer  # drains what is queued before the pool goes away
            self._committer = None
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), COMMAND_TIMEOUT)
            except _DRIVER:  # TimeoutError is among them
                pool.terminate()

    async def health(self, counts: bool = True) -> Health:
        head = migrations.head()
        try:
            rev = await self._fetch("SELECT version_num FROM alembic_version")
            if not counts:  # the migration check alone: no count for unauthenticated callers
                revision = rev[0][0] if rev else None
                return Health(revision == head, self.backend, revision, head)
            small = await self._fetch(
                "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM event_types), "
                # the months' estimates: a partitioned table has none of its own (0013)
                "(SELECT sum(greatest(c.reltuples, 0))::bigint FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass)"
            )
            tenants, types, estimate = small[0]
            # reltuples is -1 before the first ANALYZE and rough on small tables; a small table
            # is cheap to count exactly, a big one is counted by the planner's estimate.
            if estimate is None or estimate < 100_000:
                events = (await self._fetch("SELECT count(*) FROM events"))[0][0]
            else:
                events = estimate
        except StoreError as exc:
            return Health(False, self.backend, None, head, error=str(exc))
        revision = rev[0][0] if rev else None
        return Health(
            revision == head,
            self.backend,
            revision,
            head,
            {"tenants": int(tenants), "events": int(events), "event_types": int(types)},
        )

    # -- group commit --------------------------------------------------------------------------

    async def append(
        self, events: list[Event], plans: Sequence[Sequence[Planned]] | None = None
    ) -> list[Appended]:
        if not events:
            return []
        if self._stopping or self._wakeup is None:
            raise StoreUnavailable("the store is closed")
        if self._committer is None or self._committer.done():
            raise StoreUnavailable("the store's committer has stopped")
        stored = await self.subject_keys.sealed(events)  # PII sealed (store/subject_keys.py)
        fut: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        if current(self) is not None:  # inside a change's unit: in its transaction
            [results] = await self._commit([(stored, plans if plans and any(plans) else None, fut)])
            return results
        self._pending.append((stored, plans if plans and any(plans) else None, fut))
        self._wakeup.set()
        return await fut

    async def _commit_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = take_batch(self._pending, self.settings.commit_max_events)
                await self._resolve(batch)
            if self._stopping:
                return

    async def _resolve(self, batch: list[_Pending]) -> None:
        """Commit a batch and answer its callers; never raises, so the committer survives."""
        try:
            results = await self._commit(batch)
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable) or len(batch) == 1:
                _fail(batch, exc)
                return
            # One caller's bad event (e.g. a NUL character PostgreSQL refuses) must not fail
            # the others that happened to share its transaction: commit each caller alone.
            for item in batch:
                await self._resolve([item])
            return
        except Exception as exc:  # a bug, not the database: report it to every caller
            _fail(batch, exc)
            return
        for (_, _, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    async def _commit(self, batch: list[_Pending]) -> list[list[Appended]]:
        events = [e for evs, _, _ in batch for e in evs]
        planned: dict[_Key, Sequence[Planned]] = {}
        for evs, plans, _ in batch:
            for i, e in enumerate(evs):
                if plans and plans[i]:
                    planned.setdefault((e.tenant_id, e.source, e.id), plans[i])
        reconnected = False
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                found = await self._write_batch(events, planned)
                break
            except _LostBeforeCommit:
                # A stale pooled connection (the database restarted): nothing was written, so
                # one more try on a fresh connection is safe. Only one: a database that is
                # really down should fail the callers quickly, not after several timeouts.
                if reconnected:
                    raise
                reconnected = True
            except StoreError as exc:
                cause = exc.__cause__
                retry = isinstance(
                    cause, asyncpg.DeadlockDetectedError | asyncpg.SerializationError
                )
                if not retry or attempt == COMMIT_ATTEMPTS:
                    raise
                # Another hub process inserted the same ids in another order; back off a little
                # so the two do not collide again in lockstep.
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
        else:
            raise StoreUnavailable("the commit kept failing; try again")
        out: list[list[Appended]] = []
        first: set[_Key] = set()
        for evs, _, _ in batch:
            results: list[Appended] = []
            for e in evs:
                key = (e.tenant_id, e.source, e.id)
                seq, received, inserted = found[key]
                if inserted and key not in first:
                    first.add(key)
                    results.append(Appended("accepted", e.id, seq, received))
                else:
                    results.append(Appended("duplicate", e.id, seq, received))
            out.append(results)
        return out

    async def _write_batch(
        self, events: list[Event], planned: dict[_Key, Sequence[Planned]]
    ) -> dict[_Key, tuple[int, int, bool]]:
        """Insert the first occurrence of each key, and the deliveries routed from the new ones
        (routing is atomic with acceptance); map every key → (seq, received_us, inserted)."""
        unique: dict[_Key, Event] = {}
        for e in events:
            unique.setdefault((e.tenant_id, e.source, e.id), e)
        batch = batch_json(list(unique.values()))
        # the commit's wake-ups, folded into the INSERT when nothing else it writes (a run
        # started, a wait registered) could be one they must see: see WAKE_INSERTED_POSTGRES.
        # Folded, the rows need only the commit's other plans (its deliveries), in `carried`.
        folded: list[tuple[str, str, str, str, str, int]] | None = []
        routed: dict[_Key, list[Planned]] = {}
        for key, plans in planned.items():
            for d in plans:
                if type(d) is Wake:
                    if folded is not None:
                        folded.append((*key, d[1], d[2], unique[key].received_us))
                elif isinstance(d, NewDelivery):
                    routed.setdefault(key, []).append(d)
                else:
                    folded = None
        carried: Mapping[_Key, Sequence[Planned]] = planned if folded is None else routed
        found: dict[_Key, tuple[int, int, bool]] = {}
        committing = False
        woke = False  # the wake-up made waiting runs due
        try:
            async with self._connection() as conn, conn.transaction():
                deliveries: list[tuple[Any, ...]] = []
                hooks: list[tuple[str, tuple[Any, ...]]] = []
                wakes: list[tuple[Wake, int]] = []
                notify = False  # the commit makes deliveries: routed, or an automation's sends
                if folded:
                    rows = await conn.fetch(_INSERT_WAKING, batch, dumps(folded))
                    woke = bool(rows) and rows[0]["woke"] > 0
                else:
                    rows = await conn.fetch(_INSERT, batch)
                for r in rows:
                    key = (r["tenant_id"], r["source"], r["id"])
                    found[key] = (r["seq"], unique[key].received_us, True)
                    if not carried:
                        continue
                    for d in carried.get(key, ()):
                        if isinstance(d, Wake):  # not folded: woken after the commit's writes
                            wakes.append((d, unique[key].received_us))
                            continue
                        if not isinstance(d, NewDelivery):
                            hooks += d.statements(r["seq"], unique[key].received_us)
                            notify = notify or (isinstance(d, RunStart) and d.delivers)
                            continue
                        deliveries.append(
                            delivery_params(replace(d, event_seq=r["seq"]), unique[key].received_us)
                        )
                if deliveries:
                    await conn.executemany(_INSERT_DELIVERY, deliveries)
                if deliveries or notify:
                    # wakes workers in other processes, delivered at COMMIT (and only then)
                    await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
                for sql, rows in group_statements(hooks):
                    await conn.executemany(render(sql), rows)
                if wakes:  # after the commit's runs and their waits: later events wake them too
                    status = await conn.execute(WAKE_ALL_POSTGRES, wake_json(wake_targets(wakes)))
                    woke = status != "UPDATE 0"
                missing = [k for k in unique if k not in found]
                if missing:
                    t, s, i = (list(col) for col in zip(*missing, strict=True))
                    for r in await conn.fetch(_ORIGINALS, t, s, i):
                        found[(r[0], r[1], r[2])] = (r[3], r[4], False)
                # leaving the block sends COMMIT: a connection lost from here on leaves the
                # outcome unknown, and only a client's retry (answered "duplicate") can tell
                committing = True
        except StoreUnavailable as exc:
            if committing:
                raise
            raise _LostBeforeCommit(str(exc)) from exc.__cause__
        lost = [k for k in unique if k not in found]
        if lost:
            # Only possible if the original was deleted between our INSERT and SELECT.
            raise StoreError(f"original of duplicate event {lost[0][2]!r} not found; retry")
        if woke and self.on_woken is not None:  # committed: the engine finds the runs due
            self.on_woken()
        return found

    # -- tenants and keys ----------------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        try:
            await self._execute(
                "INSERT INTO tenants (id, name, unknown_types, created_us) VALUES ($1, $2, $3, $4)",
                tenant.id,
                tenant.name,
                tenant.unknown_types,
                tenant.created_us,
            )
        except StoreError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise StoreError(f"tenant {tenant.id!r} already exists") from exc
            raise
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = await self._fetch(
            "SELECT id, name, unknown_types, created_us FROM tenants WHERE id = $1", tenant_id
        )
        return Tenant(*rows[0]) if rows else None

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._fetch(
            "SELECT id, name, unknown_types, created_us FROM tenants ORDER BY id"
        )
        return [Tenant(*r) for r in rows]

    async def set_unknown_types(self, tenant_id: str, policy: str) -> None:
        await self._execute(
            "UPDATE tenants SET unknown_types = $1 WHERE id = $2", policy, tenant_id
        )

    async def create_key(self, key: ApiKey) -> None:
        await self._execute(
            f"INSERT INTO api_keys ({KEY_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
            key.id,
            key.tenant_id,
            key.name,
            key.prefix,
            key.hash,
            ",".join(key.scopes),
            key.source,
            key.created_us,
            key.revoked_us,
            None if key.constraints is None else dumps(key.constraints),
        )

    async def keys_by_prefix(self, prefix: str) -> list[ApiKey]:
        rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1", prefix)
        return [key_from_row(r) for r in rows]

    async def list_keys(self, tenant_id: str | None) -> list[ApiKey]:
        if tenant_id is None:
            rows = await self._fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_us")
        else:
            rows = await self._fetch(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_us",
                tenant_id,
            )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, tenant_id: str | None, key_id: str, now_us: int) -> bool:
        if tenant_id is None:
            status = await self._execute(
                "UPDATE api_keys SET revoked_us = $1 WHERE id = $2 AND revoked_us IS NULL",
                now_us,
                key_id,
            )
        else:
            status = await self._execute(
                "UPDATE api_keys SET revoked_us = $1 "
                "WHERE id = $2 AND tenant_id = $3 AND revoked_us IS NULL",
                now_us,
                key_id,
                tenant_id,
            )
        return _count(status) > 0

    # -- events --------------------------------------------------------------------------------

    async def get_event(self, tenant_id: str, event_id: str, source: str | None) -> Event | None:
        sql = _BY_ID
        params: list[Any] = [tenant_id, event_id]
        if source is not None:
            sql += " AND k.source = $3"
            params.append(source)
        rows = await self._fetch(sql + " ORDER BY k.seq DESC LIMIT 1", *params)
        if not rows:
            return None
        return (await self.subject_keys.open([event_from_row(rows[0])]))[0]

    async def list_events(self, tenant_id: str, query: EventQuery) -> list[Event]:
        sql, params = list_events_sql("postgres", tenant_id, query)
        return await self.subject_keys.open(
            [event_from_row(r) for r in await self._fetch(sql, *params)]
        )

    async def set_event_status(
        self,
        tenant_id: str,
        seq: int,
        status: str,
        errors: list[dict[str, str]],
        version: str | None,
    ) -> None:
        await self._execute(
            "UPDATE events SET status = $1, errors = $2::jsonb, version = $3 "
            "WHERE tenant_id = $4 AND seq = $5",
            status,
            dumps(errors) if errors else None,
            version,
            tenant_id,
            seq,
        )

    async def metrics(
        self, tenant_id: str, bucket_us: int, from_us: int, to_us: int, pattern: Any = None
    ) -> list[MetricRow]:
        sql, params = metrics_sql("postgres", tenant_id, bucket_us, from_us, to_us, pattern)
        return [MetricRow(*r) for r in await self._fetch(sql, *params)]

    # -- catalog -------------------------------------------------------------------------------

    async def put_type(self, stored: StoredType) -> None:
        await self._execute(
            f"INSERT INTO event_types ({_TYPE_COLUMNS}) "
            "VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (scope, name) DO UPDATE SET "
            "catalog = excluded.catalog, spec = excluded.spec, updated_us = excluded.updated_us",
            stored.scope,
            stored.name,
            stored.catalog,
            dumps(stored.spec),
            stored.updated_us,
        )

    async def get_type(self, scope: str, name: str) -> StoredType | None:
        rows = await self._fetch(
            f"SELECT {_TYPE_COLUMNS} FROM event_types WHERE scope = $1 AND name = $2",
            scope,
            name,
        )
        return type_from_row(rows[0]) if rows else None

    async def list_types(self, scopes: tuple[str, ...]) -> list[StoredType]:
        rows = await self._fetch(
            f"SELECT {_TYPE_COLUMNS} FROM event_types WHERE scope = ANY($1::text[]) "
            "ORDER BY name, scope",
            list(scopes),
        )
        return [type_from_row(r) for r in rows]

    async def ensure_data_index(self, path: str) -> bool:
        """An index on (tenant_id, data #>> '{a,b}') that ingest keeps writing through.

        The events table is partitioned (migration 0013), where CREATE INDEX CONCURRENTLY cannot
        go; so the index is declared on the parent alone (invalid, and instant), built
        CONCURRENTLY on each month's partition and attached, and becomes valid when every
        partition has it. Partitions created later get it with their other indexes. Each step
        is repeatable, so an interrupted build is finished by the next call.

        The path is validated segment by segment (letters, digits, underscore) because it is
        spliced into DDL, where parameters cannot go.
        """
        segments = path.split(".")
        if not path or len(segments) > 8 or not all(_SEGMENT.match(s) for s in segments):
            raise StoreError(
                f"cannot index data path {path!r}: use dotted letters, digits and underscores"
            )
        name = data_index_name(path)
        columns = f"(tenant_id, (data #>> '{{{','.join(segments)}}}'))"
        suffix = hashlib.sha256(name.encode()).hexdigest()[:12]
        # never inside a change's unit: CREATE INDEX CONCURRENTLY cannot run in a transaction
        async with self._connection(detached=True) as conn:
            valid = await conn.fetchval(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = $1",
                name,
            )
            if valid is True:
                return True
            # UniqueViolation: another process created the same index at the same moment
            with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                await conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON ONLY events {columns}")
            parts = await conn.fetch(_DATA_INDEX_PARTS, name, suffix)
            for partition, child, child_valid, attached in parts:
                if child_valid is False:  # a concurrent build that was interrupted
                    await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {child}")
                if not child_valid:
                    with contextlib.suppress(
                        asyncpg.UniqueViolationError, asyncpg.DuplicateTableError
                    ):
                        await conn.execute(
                            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {child} "
                            f"ON {partition} {columns}",
                            timeout=INDEX_TIMEOUT,
                        )
                if not attached:
                    with contextlib.suppress(asyncpg.ObjectInUseError):
                        await conn.execute(f"ALTER INDEX {name} ATTACH PARTITION {child}")
        return True

    # -- idempotency keys ----------------------------------------------------------------------

    async def get_idempotent(
        self, tenant_id: str, key: str, now_us: int
    ) -> tuple[int, bytes, str | None] | None:
        rows = await self._fetch(
            "SELECT status, body, request_sha256 FROM idempotency_keys "
            "WHERE tenant_id = $1 AND key = $2 AND expires_us > $3",
            tenant_id,
            key,
            now_us,
        )
        return (rows[0][0], bytes(rows[0][1]), rows[0][2]) if rows else None

    async def put_idempotent(
        self,
        tenant_id: str,
        key: str,
        status: int,
        body: bytes,
        expires_us: int,
        request_sha256: str,
    ) -> None:
        await self._execute(
            "INSERT INTO idempotency_keys (tenant_id, key, status, body, expires_us, "
            "request_sha256) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, key) DO "
            "UPDATE SET status = excluded.status, body = excluded.body, "
            "expires_us = excluded.expires_us, request_sha256 = excluded.request_sha256",
            tenant_id,
            key,
            status,
            body,
            expires_us,
            request_sha256,
        )


def _fail(batch: list[_Pending], exc: Exception) -> None:
    for _, _, fut in batch:
        if not fut.done():
            fut.set_exception(_caller_error(exc))


def _caller_error(exc: Exception) -> Exception:
    """One exception object per waiting caller (a shared one would grow one traceback)."""
    if isinstance(exc, _LostBeforeCommit):
        error: Exception = StoreUnavailable(str(exc))
    elif isinstance(exc, StoreError):
        error = type(exc)(str(exc))
    else:
        error = StoreError(f"PostgreSQL: {exc}")
    error.__cause__ = exc
    return error
