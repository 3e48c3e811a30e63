"""The embedded store: SQLite in WAL mode, one writer thread with group commit, reader threads.

Every write goes through one thread and one connection (SQLite allows one writer). Concurrent
``append`` calls queue their events; the committer writes everything queued in one transaction
and resolves every caller after the commit, so N concurrent requests cost one fsync.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

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
from switchboard.store.automations import WAKE_RUN, wake_probes, wake_rows, wake_targets, woken
from switchboard.store.deliveries import INSERT_DELIVERY, delivery_params
from switchboard.store.queries import (
    EVENT_COLUMNS,
    INSERT_COLUMNS,
    KEY_COLUMNS,
    dumps,
    event_from_row,
    insert_row,
    key_from_row,
    list_events_sql,
    metrics_sql,
    take_batch,
    type_from_row,
)
from switchboard.store.subject_keys import SubjectKeys
from switchboard.store.unit import Unit, current, running

T = TypeVar("T")
# sqlite3 binds int, float, str and bytes directly, and sends anything else, None included,
# through its adapter protocol: two failed attribute look-ups, each formatting an
# AttributeError message, for every NULL parameter (about 3,000 instructions each, 2 of a timer
# run's 9 parameters). With an adapter registered for None the look-up is one dict hit; the
# adapter is `{}.get`, which answers None for any argument without a Python frame.
_NO_ADAPTERS: dict[None, None] = {}
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", _NO_ADAPTERS.get))
_INSERT = (
    f"INSERT INTO events ({INSERT_COLUMNS}) VALUES ({', '.join('?' * 17)}) "
    "ON CONFLICT (tenant_id, source, id) DO NOTHING"
)
_ORIGINAL = "SELECT seq, received_us FROM events WHERE tenant_id = ? AND source = ? AND id = ?"


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken at once (BEGIN IMMEDIATE): committed if the block ends,
    rolled back if it raises. Inside a change's unit (store/unit.py) it is a savepoint of it."""
    begin, end, undo = (
        ("SAVEPOINT batch", "RELEASE batch", "ROLLBACK TO batch; RELEASE batch")
        if conn.in_transaction
        else ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
    )
    conn.execute(begin)
    try:
        yield
        conn.execute(end)
    except BaseException:
        for statement in undo.split("; "):
            conn.execute(statement)
        raise


class _Unit(Unit):
    """A change's transaction on the writer connection; BEGIN at its first write, which
    takes the writer from everything else until COMMIT or ROLLBACK."""

    begun = False


# one append() waiting for the group commit: its events, their rows (made on the event loop,
# so the writer thread's turn is only the SQL), their routed deliveries, and its answer
_Queued = tuple[
    list[Event],
    list[tuple[Any, ...]],
    Sequence[Sequence[Planned]] | None,
    asyncio.Future[list[Appended]],
]


class SqliteStore:
    backend = "sqlite"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vault = Vault.from_settings(settings)  # seals credentials at rest (crypto.py)
        self.subject_keys = SubjectKeys(self)  # seals events' PII (store/subject_keys.py)
        self.on_woken: Callable[[], None] | None = None
        self.path = settings.database_url.removeprefix("sqlite:///")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._pending: list[_Queued] = []
        self._wakeup: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        # one user of the writer connection at a time: a statement, a group commit, or a
        # change's whole unit (store/unit.py) from its first statement to its COMMIT
        self._writer_lock = asyncio.Lock()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.settings.sqlite_synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a connection of `pool`: the writer's under the writer lock, or inside the
        change's unit (on the writer, reads included) when one has joined this context. Reads
        before the unit's first write go to the readers: there is nothing of the change to see
        yet, and a change that reads, then calls out (a gateway, say), must not hold the single
        writer while it waits."""
        unit = current(self)
        if unit is not None and (pool is self._writer or (isinstance(unit, _Unit) and unit.begun)):
            return await self._in_unit(unit, fn)
        if pool is self._writer:
            async with self._writer_lock:
                return await self._call(pool, fn)
        return await self._call(pool, fn)

    async def _in_unit(self, unit: Unit, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert isinstance(unit, _Unit)

        def within(c: sqlite3.Connection) -> T:
            if not c.in_transaction:  # SQLite rolled the whole transaction back (disk full, …)
                raise StoreUnavailable("SQLite: the change's transaction was rolled back")
            return fn(c)

        async with unit.lock:
            if unit.done:
                raise StoreError("the change's transaction has already ended")
            if not unit.begun:
                await self._writer_lock.acquire()
                try:
                    await self._call(self._writer, lambda c: c.execute("BEGIN IMMEDIATE"))
                except BaseException:
                    self._writer_lock.release()
                    raise
                unit.begun = True
            return await self._call(self._writer, within)

    def transaction(self, *, joined: bool = True) -> AbstractAsyncContextManager[_Unit]:
        """A unit for one change (store/unit.py): committed when the block ends, rolled back
        when it raises; `joined=False` arms it for `unit.join()` to take."""
        unit = _Unit(self)
        unit.joined = joined
        return running(unit, self._end)

    async def _end(self, unit: _Unit, commit: bool) -> None:
        def finish(c: sqlite3.Connection) -> None:
            if not commit:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                return
            if not c.in_transaction:
                raise StoreUnavailable("SQLite: the change's transaction was rolled back")
            try:
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

        async with unit.lock:
            unit.done = True
            if not unit.begun:
                return
            try:
                await self._call(self._writer, finish)
            finally:
                self._writer_lock.release()

    async def _call(self, pool: ThreadPoolExecutor, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            try:
                return fn(self._connect())
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(pool, call)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._run(self._readers, lambda c: c.execute(sql, params).fetchall())

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        def run(c: sqlite3.Connection) -> int:
            return c.execute(sql, params).rowcount

        return await self._run(self._writer, run)

    # -- generic SQL for the feature repositories (store/deliveries.py, ...) ------------------

    dialect = "sqlite"

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a query written with `?` (and `?j` for JSON text) placeholders."""
        return await self._read(sql.replace("?j", "?"), params)

    async def fetch_write(
        self, sql: str, params: Sequence[Any] = (), *, durable: bool = True
    ) -> list[Any]:
        """Rows of a writing statement (UPDATE … RETURNING), on the writer connection.
        `durable=False`: committed with `synchronous=NORMAL` (no fsync of the WAL; the next
        FULL commit's fsync covers its frames too, the WAL being written in order)."""
        q = sql.replace("?j", "?")
        if durable or self.settings.sqlite_synchronous == "NORMAL":
            return await self._run(self._writer, lambda c: c.execute(q, params).fetchall())

        def run(c: sqlite3.Connection) -> list[Any]:
            c.execute("PRAGMA synchronous=NORMAL")
            try:
                return c.execute(q, params).fetchall()
            finally:  # the writer's other commits (ingest's among them) stay FULL
                c.execute(f"PRAGMA synchronous={self.settings.sqlite_synchronous}")

        return await self._run(self._writer, run)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._write(sql.replace("?j", "?"), params)

    async def batch(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; their row counts."""

        def run(c: sqlite3.Connection) -> list[int]:
            plain: dict[str, str] = {}  # each distinct statement rewritten once (a batch of
            # timer saves repeats one statement hundreds of times)
            with _immediate(c):
                return [
                    c.execute(plain.get(q) or plain.setdefault(q, q.replace("?j", "?")), p).rowcount
                    for q, p in statements
                ]

        return await self._run(self._writer, run)

    async def batch_many(self, groups: list[tuple[str, list[Sequence[Any]]]]) -> None:
        """Run each statement over its parameter lists (`executemany`), all in one transaction."""

        def run(c: sqlite3.Connection) -> None:
            with _immediate(c):
                for q, rows in groups:
                    c.executemany(q.replace("?j", "?"), rows)

        await self._run(self._writer, run)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await migrations.upgrade(self.settings.database_url)
        self._wakeup = asyncio.Event()
        self._committer = asyncio.create_task(self._commit_loop(), name="sqlite-committer")

    async def close(self) -> None:
        self._closed = True
        if self._committer is not None:
            assert self._wakeup is not None
            self._wakeup.set()
            await self._committer
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    async def health(self, counts: bool = True) -> Health:
        try:
            rev = await self._read("SELECT version_num FROM alembic_version")
            rows = (
                await self._read(
                    "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM events), "
                    "(SELECT count(*) FROM event_types)"
                )
                if counts
                else None
            )
        except StoreError as exc:
            return Health(False, self.backend, None, migrations.head(), error=str(exc))
        revision = rev[0][0] if rev else None
        head = migrations.head()
        numbers = {}
        if rows:
            t, e, ty = rows[0]
            numbers = {"tenants": t, "events": e, "event_types": ty}
        return Health(revision == head, self.backend, revision, head, numbers)

    # -- group commit --------------------------------------------------------------------------

    async def append(
        self, events: list[Event], plans: Sequence[Sequence[Planned]] | None = None
    ) -> list[Appended]:
        if not events:
            return []
        if self._closed or self._wakeup is None:
            raise StoreUnavailable("the store is closed")
        fut: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        rows = [insert_row(e) for e in await self.subject_keys.sealed(events)]
        if current(self) is not None:  # inside a change's unit, which holds the writer
            queued = (events, rows, plans if plans and any(plans) else None, fut)
            woke: list[bool] = []
            [results] = await self._run(
                self._writer, partial(self._commit, batch=[queued], woke=woke)
            )
            if woke and self.on_woken is not None:
                # the change's unit commits later: the engine finds the runs due then, or on
                # its next look (a woken run is due at once, never lost)
                self.on_woken()
            return results
        self._pending.append((events, rows, plans if plans and any(plans) else None, fut))
        self._wakeup.set()
        return await fut

    async def _commit_loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = take_batch(self._pending, self.settings.commit_max_events)
                woke: list[bool] = []
                try:
                    results = await self._run(
                        self._writer, partial(self._commit, batch=batch, woke=woke)
                    )
                except Exception as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                if woke and self.on_woken is not None:
                    self.on_woken()
                for (*_, fut), res in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
            if self._closed:
                return

    @staticmethod
    def _commit(
        conn: sqlite3.Connection, *, batch: list[_Queued], woke: list[bool] | None = None
    ) -> list[list[Appended]]:
        """Insert every queued event, and the deliveries routed from the ones that are new, in
        one transaction: routing is atomic with acceptance. `woke` gets an item if the commit's
        wake-ups made waiting runs due."""
        out: list[list[Appended]] = []
        with _immediate(conn):
            # All rows in one executemany (its loop runs in C). This transaction holds the write
            # lock, so the rows with a seq past the old maximum are exactly the ones it inserted;
            # the others were already stored (or repeated within this batch): duplicates.
            before = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            all_rows = [row for _, rows, _, _ in batch for row in rows]
            changes = conn.total_changes
            conn.executemany(_INSERT, all_rows)
            numbered: Iterator[int] | None = None
            inserted: dict[tuple[str, str, str], int] = {}
            if conn.total_changes - changes == len(all_rows) and conn.execute(
                "SELECT max(seq) FROM events"
            ).fetchone()[0] == before + len(all_rows):
                # Every row was new, and SQLite numbered them before+1, before+2, … in the
                # order given (a new rowid is one past the largest): nothing to read back.
                numbered = iter(range(before + 1, before + 1 + len(all_rows)))
            else:
                inserted = {
                    (t, s, i): seq
                    for seq, t, s, i in conn.execute(
                        "SELECT seq, tenant_id, source, id FROM events WHERE seq > ?", (before,)
                    )
                }
            deliveries = []
            hooks: list[tuple[str, tuple[Any, ...]]] = []
            wakes: list[tuple[Wake, int]] = []
            for events, _, plans, _ in batch:
                results = []
                for n, e in enumerate(events):
                    seq: int | None = (
                        next(numbered)
                        if numbered is not None
                        else inserted.pop((e.tenant_id, e.source, e.id), None)
                    )
                    if seq is not None:  # popped: a repeat later in this batch is a duplicate
                        results.append(Appended("accepted", e.id, seq, e.received_us))
                        for d in plans[n] if plans else ():
                            if type(d) is Wake:  # the commonest hook of an awaited type
                                wakes.append((d, e.received_us))
                            elif isinstance(d, NewDelivery):
                                deliveries.append(
                                    delivery_params(replace(d, event_seq=seq), e.received_us)
                                )
                            elif not isinstance(d, Wake):
                                hooks += d.statements(seq, e.received_us)
                    else:
                        seq, received = conn.execute(
                            _ORIGINAL, (e.tenant_id, e.source, e.id)
                        ).fetchone()
                        results.append(Appended("duplicate", e.id, seq, received))
                out.append(results)
            if deliveries:
                conn.executemany(INSERT_DELIVERY, deliveries)
            for sql, rows in group_statements(hooks):
                conn.executemany(sql.replace("?j", "?"), rows)
            if wakes:  # after the commit's runs and their waits: later events wake them too
                found: dict[str, int] = {}
                for keys, (sql, params) in wake_probes(wake_targets(wakes)):
                    woken(found, keys, conn.execute(sql, params).fetchall())
                if found:
                    conn.executemany(WAKE_RUN, wake_rows(found))
                    if woke is not None:
                        woke.append(True)
        return out

    # -- tenants and keys ----------------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        try:
            await self._write(
                "INSERT INTO tenants (id, name, unknown_types, created_us) VALUES (?, ?, ?, ?)",
                (tenant.id, tenant.name, tenant.unknown_types, tenant.created_us),
            )
        except StoreError as exc:
            if "UNIQUE" in str(exc):
                raise StoreError(f"tenant {tenant.id!r} already exists") from exc
            raise
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        rows = await self._read(
            "SELECT id, name, unknown_types, created_us FROM tenants WHERE id = ?", (tenant_id,)
        )
        return Tenant(*rows[0]) if rows else None

    async def list_tenants(self) -> list[Tenant]:
        rows = await self._read(
            "SELECT id, name, unknown_types, created_us FROM tenants ORDER BY id"
        )
        return [Tenant(*r) for r in rows]

    async def set_unknown_types(self, tenant_id: str, policy: str) -> None:
        await self._write("UPDATE tenants SET unknown_types = ? WHERE id = ?", (policy, tenant_id))

    async def create_key(self, key: ApiKey) -> None:
        await self._write(
            f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
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
            ),
        )

    async def keys_by_prefix(self, prefix: str) -> list[ApiKey]:
        rows = await self._read(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?", (prefix,))
        return [key_from_row(r) for r in rows]

    async def list_keys(self, tenant_id: str | None) -> list[ApiKey]:
        if tenant_id is None:
            rows = await self._read(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_us")
        else:
            rows = await self._read(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_us",
                (tenant_id,),
            )
        return [key_from_row(r) for r in rows]

    async def revoke_key(self, tenant_id: str | None, key_id: str, now_us: int) -> bool:
        if tenant_id is None:
            n = await self._write(
                "UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (now_us, key_id),
            )
        else:
            n = await self._write(
                "UPDATE api_keys SET revoked_us = ? "
                "WHERE id = ? AND tenant_id = ? AND revoked_us IS NULL",
                (now_us, key_id, tenant_id),
            )
        return n > 0

    # -- events --------------------------------------------------------------------------------

    async def get_event(self, tenant_id: str, event_id: str, source: str | None) -> Event | None:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ? AND id = ?"
        params: list[Any] = [tenant_id, event_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = await self._read(sql + " ORDER BY seq DESC LIMIT 1", params)
        if not rows:
            return None
        return (await self.subject_keys.open([event_from_row(rows[0])]))[0]

    async def list_events(self, tenant_id: str, query: EventQuery) -> list[Event]:
        sql, params = list_events_sql("sqlite", tenant_id, query)
        return await self.subject_keys.open(
            [event_from_row(r) for r in await self._read(sql, params)]
        )

    async def set_event_status(
        self,
        tenant_id: str,
        seq: int,
        status: str,
        errors: list[dict[str, str]],
        version: str | None,
    ) -> None:
        await self._write(
            "UPDATE events SET status = ?, errors = ?, version = ? WHERE tenant_id = ? AND seq = ?",
            (status, dumps(errors) if errors else None, version, tenant_id, seq),
        )

    async def metrics(
        self, tenant_id: str, bucket_us: int, from_us: int, to_us: int, pattern: Any = None
    ) -> list[MetricRow]:
        sql, params = metrics_sql("sqlite", tenant_id, bucket_us, from_us, to_us, pattern)
        return [MetricRow(*r) for r in await self._read(sql, params)]

    # -- catalog -------------------------------------------------------------------------------

    async def put_type(self, stored: StoredType) -> None:
        await self._write(
            "INSERT INTO event_types (scope, name, catalog, spec, updated_us) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, name) DO UPDATE SET "
            "catalog = excluded.catalog, spec = excluded.spec, updated_us = excluded.updated_us",
            (stored.scope, stored.name, stored.catalog, dumps(stored.spec), stored.updated_us),
        )

    async def get_type(self, scope: str, name: str) -> StoredType | None:
        rows = await self._read(
            "SELECT scope, name, catalog, spec, updated_us FROM event_types "
            "WHERE scope = ? AND name = ?",
            (scope, name),
        )
        return type_from_row(rows[0]) if rows else None

    async def list_types(self, scopes: tuple[str, ...]) -> list[StoredType]:
        marks = ", ".join("?" * len(scopes))
        rows = await self._read(
            "SELECT scope, name, catalog, spec, updated_us FROM event_types "
            f"WHERE scope IN ({marks}) ORDER BY name, scope",
            scopes,
        )
        return [type_from_row(r) for r in rows]

    async def ensure_data_index(self, path: str) -> bool:
        # SQLite could index json_extract() too, but the embedded store serves small installs
        # where the (tenant, type, time) index already bounds the scan; PostgreSQL gets one.
        return False

    # -- idempotency keys ----------------------------------------------------------------------

    async def get_idempotent(
        self, tenant_id: str, key: str, now_us: int
    ) -> tuple[int, bytes, str | None] | None:
        rows = await self._read(
            "SELECT status, body, request_sha256 FROM idempotency_keys "
            "WHERE tenant_id = ? AND key = ? AND expires_us > ?",
            (tenant_id, key, now_us),
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
        await self._write(
            "INSERT INTO idempotency_keys (tenant_id, key, status, body, expires_us, "
            "request_sha256) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, key) DO "
            "UPDATE SET status = excluded.status, body = excluded.body, "
            "expires_us = excluded.expires_us, request_sha256 = excluded.request_sha256",
            (tenant_id, key, status, body, expires_us, request_sha256),
        )
