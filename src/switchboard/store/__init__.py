"""The Store interface: everything the hub keeps, behind one protocol.

``store/sqlite.py`` (embedded, default) and ``store/postgres.py`` (production) implement it; the
same contract suite in ``tests/contract/`` runs against both. Driver exceptions never leave this
package: they become ``StoreError``/``StoreUnavailable``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.crypto import Vault
from switchboard.envelope import Event, format_us
from switchboard.records import NewDelivery, Wake
from switchboard.store.unit import Unit

if TYPE_CHECKING:
    from switchboard.store.subject_keys import SubjectKeys


class Scope(StrEnum):
    INGEST = "ingest"  # send events
    READ = "read"  # query events, timelines, metrics, catalog
    MANAGE = "manage"  # change the catalog, routes, destinations, keys of its tenant
    PII = "pii"  # see personal data unmasked, erase and export a subject (with manage)
    ADMIN = "admin"  # everything, in every tenant (admin keys have no tenant)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    unknown_types: str = "reject"  # reject | accept events whose type is not in the catalog
    created_us: int = 0


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str | None  # None for admin keys
    name: str
    prefix: str  # the first characters of the key, kept in clear to find it and show it
    hash: str  # sha256 of the whole key
    scopes: tuple[str, ...]
    created_us: int
    revoked_us: int | None = None
    source: str | None = None  # default `source` for events sent with this key
    # a filter-language pattern: every event the key sends must match it, and every read it
    # makes is narrowed by it (None: the whole tenant)
    constraints: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "source": self.source,
            "constraints": self.constraints,
            "created_at": format_us(self.created_us),
            "revoked": self.revoked_us is not None,
        }


@dataclass(frozen=True)
class Appended:
    """The store's answer for one event of an append."""

    status: str  # accepted | duplicate
    id: str
    seq: int
    received_us: int  # for a duplicate: when the original arrived


@dataclass(frozen=True)
class Cursor:
    """Keyset position for newest-first listings: (time_us, seq) of the last row returned."""

    time_us: int
    seq: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.time_us}:{self.seq}".encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            t, s = base64.urlsafe_b64decode(text.encode()).decode().split(":")
            return cls(int(t), int(s))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError("cursor is not one this API returned") from exc


@dataclass(frozen=True)
class EventQuery:
    """Filters of an event listing; every field narrows, None means any."""

    types: tuple[str, ...] = ()  # exact names or globs like "billing.*"
    source: str | None = None
    subject: str | None = None
    actor_id: str | None = None
    trace_id: str | None = None
    correlation_id: str | None = None
    status: str | None = None
    from_us: int | None = None  # inclusive, on event time
    to_us: int | None = None  # exclusive
    pattern: Any = None  # a compiled patterns.Pattern, rendered to SQL by the store
    cursor: Cursor | None = None
    limit: int = 100


@dataclass(frozen=True)
class MetricRow:
    bucket_us: int
    type: str
    status: str
    count: int


@dataclass(frozen=True)
class StoredType:
    """A catalog entry as stored: the parsed spec's dict form plus where it came from."""

    scope: str  # a tenant id, or "*" for the shared catalog every tenant sees
    name: str
    catalog: str
    spec: dict[str, Any]
    updated_us: int = 0


@dataclass(frozen=True)
class Health:
    ok: bool
    backend: str
    revision: str | None
    head: str | None
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class CommitHook(Protocol):
    """Rows to write with an event in its group commit, only if the event is new (an
    automation run it starts: store/automations.py)."""

    def statements(self, seq: int, received_us: int) -> list[tuple[str, tuple[Any, ...]]]: ...


# what a commit writes with a new event: its routed deliveries, its automations' rows, wake-ups
Planned = NewDelivery | CommitHook | Wake


def group_statements(
    statements: list[tuple[str, tuple[Any, ...]]],
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Statements grouped by their SQL, in order of first appearance, for `executemany`: a
    commit's hooks write many rows of few shapes (a run before its waits)."""
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for sql, params in statements:
        groups.setdefault(sql, []).append(params)
    return list(groups.items())


class Store(Protocol):
    backend: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def health(self, counts: bool = True) -> Health: ...

    # tenants and keys
    async def create_tenant(self, tenant: Tenant) -> Tenant: ...
    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...
    async def list_tenants(self) -> list[Tenant]: ...
    async def set_unknown_types(self, tenant_id: str, policy: str) -> None: ...
    async def create_key(self, key: ApiKey) -> None: ...
    async def keys_by_prefix(self, prefix: str) -> list[ApiKey]: ...
    async def list_keys(self, tenant_id: str | None) -> list[ApiKey]: ...
    async def revoke_key(self, tenant_id: str | None, key_id: str, now_us: int) -> bool: ...

    # events
    dialect: str
    vault: Vault  # seals credentials at rest (crypto.py)
    subject_keys: SubjectKeys  # seals events' PII; every read of events opens it
    # called on the event loop after a commit whose wake-ups made waiting runs due (the hub's
    # engine looks then); a commit whose events matched no waiting run calls nothing
    on_woken: Callable[[], None] | None

    async def append(
        self, events: list[Event], plans: Sequence[Sequence[Planned]] | None = None
    ) -> list[Appended]:
        """Store events durably (group commit); return once committed, in input order.

        `plans[i]` are the deliveries routed from `events[i]` (and the automation runs it
        starts); they are written in the same transaction, and only if the event is new (a
        duplicate routes nothing)."""
        ...

    async def get_event(
        self, tenant_id: str, event_id: str, source: str | None
    ) -> Event | None: ...
    async def list_events(self, tenant_id: str, query: EventQuery) -> list[Event]: ...
    async def set_event_status(
        self,
        tenant_id: str,
        seq: int,
        status: str,
        errors: list[dict[str, str]],
        version: str | None,
    ) -> None: ...
    async def metrics(
        self, tenant_id: str, bucket_us: int, from_us: int, to_us: int, pattern: Any = None
    ) -> list[MetricRow]:
        """Counts per bucket, type and outcome; `pattern` (compiled) narrows the events counted
        (a constrained key's constraints)."""
        ...

    # catalog
    async def put_type(self, stored: StoredType) -> None: ...
    async def get_type(self, scope: str, name: str) -> StoredType | None: ...
    async def list_types(self, scopes: tuple[str, ...]) -> list[StoredType]: ...
    async def ensure_data_index(self, path: str) -> bool:
        """Create an expression index on data->>path where the backend supports it."""
        ...

    # idempotency keys
    # generic SQL for the feature repositories: `?` placeholders, `?j` for JSON text
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
    def transaction(self, *, joined: bool = True) -> AbstractAsyncContextManager[Unit]:
        """One transaction for a whole change (store/unit.py): every statement of this context
        (reads too) goes into it once joined; committed when the block ends, rolled back when
        it raises."""
        ...

    async def get_idempotent(
        self, tenant_id: str, key: str, now_us: int
    ) -> tuple[int, bytes, str | None] | None:
        """(status, body, the request's SHA-256) stored for an unexpired key."""
        ...

    async def put_idempotent(
        self,
        tenant_id: str,
        key: str,
        status: int,
        body: bytes,
        expires_us: int,
        request_sha256: str,
    ) -> None: ...
