"""The live catalog: event types as stored per tenant (and the shared scope "*"), their compiled
validators, and applying catalogs with compatibility checks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from switchboard import catalog as cat
from switchboard.envelope import Event, now_us
from switchboard.errors import Conflict, Unprocessable
from switchboard.people import PeopleSpec
from switchboard.pii import PiiClass
from switchboard.shared import SharedLoads
from switchboard.store import Store, StoredType
from switchboard.store.subject_keys import CONTEXT_PII

SHARED = "*"  # the scope of catalogs every tenant sees; a tenant's own types take precedence
_TTL = 5.0  # seconds a cached type is trusted; other nodes' catalog changes show up within it


class Verdict(msgspec.Struct, frozen=True):
    """What validation decided for one event (a Struct: one is made per event ingested, and a
    frozen dataclass's __init__ is Python)."""

    status: str  # accepted | warned | quarantined | rejected
    version: str | None
    errors: list[dict[str, str]] = msgspec.field(default_factory=list)
    people: PeopleSpec | None = None  # the type's people keys, when it feeds recipients
    catalogued: bool = True  # False for a type the catalog does not know (metrics say "other")


@dataclass
class _Entry:
    spec: cat.EventTypeSpec
    validators: dict[str, cat.Validator]
    pii: dict[str, PiiClass] = field(init=False)  # what the store seals (subject_keys.py)

    def __post_init__(self) -> None:
        self.pii = self.spec.pii_fields() if self.spec.pii else {}

    def validator(self, v: cat.TypeVersion) -> cat.Validator:
        found = self.validators.get(v.version)
        if found is None:
            found = self.validators[v.version] = cat.Validator(v.schema)
        return found


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], tuple[float, _Entry | None]] = {}
        # one query per expired entry, however many ingests find it expired together
        self._loads: SharedLoads[tuple[str, str], _Entry | None] = SharedLoads()
        self._generation = 0  # bumped when a type changes: a load begun before is not cached
        self._pii: dict[str, tuple[float, dict[str, frozenset[PiiClass]]]] = {}

    async def lookup(self, tenant_id: str, name: str) -> cat.EventTypeSpec | None:
        entry = await self._entry(tenant_id, name)
        return entry.spec if entry else None

    async def pii_classes(self, tenant_id: str, name: str) -> dict[str, PiiClass]:
        """The type's PII paths with their classes ({} for none, or an unknown type)."""
        entry = await self._entry(tenant_id, name)
        return entry.pii if entry is not None else {}

    async def _entry(self, tenant_id: str, name: str) -> _Entry | None:
        """The tenant's type, else the shared one; unknown names are cached too, so a flood of
        them costs no queries."""
        now = time.monotonic()
        key = (tenant_id, name)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        return await self._loads.get(key, lambda: self._load(tenant_id, name))

    async def _load(self, tenant_id: str, name: str) -> _Entry | None:
        """Read the type and cache it before the callers sharing the load resume (a request
        arriving in between finds it cached, not a second load to run)."""
        generation = self._generation
        now = time.monotonic()
        stored = await self.store.get_type(tenant_id, name) or await self.store.get_type(
            SHARED, name
        )
        entry = _Entry(cat.parse_event_type(stored.spec, where=name), {}) if stored else None
        if self._generation == generation:  # no type changed meanwhile
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[(tenant_id, name)] = (now + _TTL, entry)
        return entry

    async def validate(self, event: Event, unknown_types: str) -> Verdict:
        hit = self._cache.get((event.tenant_id, event.type))  # `_entry`, without its coroutine
        if hit is not None and hit[0] > time.monotonic():
            entry = hit[1]
        else:
            entry = await self._entry(event.tenant_id, event.type)
        if entry is None:
            if unknown_types == "accept":
                return Verdict("accepted", event.version, catalogued=False)
            return Verdict(
                "rejected",
                event.version,
                [{"path": "/type", "message": f"unknown event type {event.type!r}"}],
                catalogued=False,
            )
        version = entry.spec.resolve(event.version)
        if version is None:
            known = ", ".join(v.version for v in entry.spec.versions)
            return Verdict(
                "rejected",
                event.version,
                [
                    {
                        "path": "/version",
                        "message": f"unknown version {event.version!r} of {event.type}; "
                        f"known: {known}",
                    }
                ],
            )
        issues = entry.validator(version).validate(event.data)
        people = entry.spec.people if entry.spec.people and entry.spec.people.feeds else None
        if not issues:
            return Verdict("accepted", version.version, people=people)
        errors = [{"path": i.path, "message": i.message} for i in issues]
        status = {"enforce": "rejected", "warn": "warned", "quarantine": "quarantined"}[
            entry.spec.mode
        ]
        return Verdict(status, version.version, errors, people)

    async def put(
        self,
        scope: str,
        spec: cat.EventTypeSpec,
        catalog_name: str,
        *,
        max_indexes: int | None = None,
    ) -> list[str]:
        """Store one type after the compatibility check; returns data paths newly indexed.

        ``max_indexes`` bounds the distinct `index` paths of all the scope's own types once this
        one is stored (a tenant's key); None for the operator (admin keys, the CLI).
        """
        if max_indexes is not None and spec.index:
            await self._check_indexes(scope, spec, max_indexes)
        existing = await self.store.get_type(scope, spec.name)
        old = cat.parse_event_type(existing.spec, where=spec.name) if existing else None
        problems = cat.check_versions(old, spec)
        if problems:
            raise Conflict(
                f"{spec.name}: incompatible with the stored versions",
                details=[{"path": f"/{spec.name}", "message": p} for p in problems],
            )
        await self.store.put_type(
            StoredType(scope, spec.name, catalog_name, cat.event_type_to_dict(spec), now_us())
        )
        self._cache = {k: v for k, v in self._cache.items() if k[1] != spec.name}
        self._generation += 1
        self._loads.forget_if(lambda k: k[1] == spec.name)
        self._pii.clear()
        indexed = []
        for path in spec.index:
            if await self.store.ensure_data_index(path):
                indexed.append(path)
        return indexed

    async def _check_indexes(self, scope: str, spec: cat.EventTypeSpec, limit: int) -> None:
        """Every index is on the events table all tenants share (PostgreSQL), and each one is
        written on every tenant's ingest: a tenant may declare only a few."""
        paths = set(spec.index)
        for row in await self.store.list_types((scope,)):
            if row.scope == scope and row.name != spec.name:
                paths.update(p for p in row.spec.get("index") or () if isinstance(p, str))
        if len(paths) > limit:
            raise Unprocessable(
                f"index: this tenant's event types would declare {len(paths)} indexed data "
                f"paths; the limit is {limit} (SWITCHBOARD_TENANT_MAX_INDEXES)",
                details=[
                    {
                        "path": "/index",
                        "message": f"at most {limit} indexed data paths per tenant, "
                        f"{len(paths)} requested (an operator's admin key may add more)",
                    }
                ],
            )

    async def apply(self, scope: str, catalog: cat.CatalogSpec) -> dict[str, Any]:
        """Apply a whole catalog: every type is checked first, then all are written."""
        problems: list[dict[str, str]] = []
        for spec in catalog.types:
            existing = await self.store.get_type(scope, spec.name)
            old = cat.parse_event_type(existing.spec, where=spec.name) if existing else None
            problems += [
                {"path": f"/{spec.name}", "message": p} for p in cat.check_versions(old, spec)
            ]
        if problems:
            raise Conflict(f"catalog {catalog.name!r} is incompatible", details=problems)
        indexed: list[str] = []
        for spec in catalog.types:
            indexed += await self.put(scope, spec, catalog.name)
        if scope != SHARED:
            await self.store.set_unknown_types(scope, catalog.unknown_types)
        return {
            "catalog": catalog.name,
            "types": len(catalog.types),
            "indexed": sorted(set(indexed)),
        }

    async def tenant_pii(self, tenant_id: str) -> dict[str, frozenset[PiiClass]]:
        """Every PII path of the types a tenant sees, as a filter names it (``data.email``),
        with its classes; plus the context fields sealed with them. Cached like the types."""
        now = time.monotonic()
        hit = self._pii.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        found: dict[str, set[PiiClass]] = {}
        for stored in await self.list(tenant_id):
            spec = cat.parse_event_type(stored.spec, where=stored.name)
            for path, cls in spec.pii_fields().items():
                found.setdefault(f"data.{path}", set()).add(cls)
        if found:
            for name, cls in CONTEXT_PII.items():
                found.setdefault(f"context.{name}", set()).add(cls)
        out = {path: frozenset(classes) for path, classes in found.items()}
        if len(self._pii) > 10_000:
            self._pii.clear()
        self._pii[tenant_id] = (now + _TTL, out)
        return out

    async def list(self, tenant_id: str) -> list[StoredType]:
        """The types a tenant sees: its own, then shared ones it does not override."""
        rows = await self.store.list_types((tenant_id, SHARED))
        own = {r.name for r in rows if r.scope == tenant_id}
        return [r for r in rows if r.scope == tenant_id or r.name not in own]
