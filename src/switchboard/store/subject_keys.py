"""PII at rest: each subject's personal data sealed under its own data key.

The key hierarchy: the operator's master key (crypto.py) wraps one random AES-256 key per
(tenant, subject) — a row of ``subject_keys`` made the first time the subject's PII is stored —
and that data key seals every PII value of the subject's events (AES-256-GCM). An event with PII
and no subject gets a key of its own (kind ``event``, owner ``[source, id]``), so it too can be
shredded alone. Deleting a key row is crypto-shredding: every copy of the values it sealed
(replicas, dumps, backups) stays unreadable once the row is gone from the live database.

What is sealed: the value at each PII path of the event's catalog type (an object or array as
one value), and the IP and user agent of the context of those same events. A sealed value is a
JSON string, ``sbpii1.<blind tag>.<base64 of nonce + ciphertext>``, bound (associated data) to
its tenant, owner, event and path, so a value copied into another event, subject or tenant does
not open. The blind tag is a keyed HMAC of the normalized value (email lowercased, phone and
CPF/CNPJ digits only) under the tenant's index key (kind ``index``, also wrapped by the master
key): equality filters compare it in SQL without the plaintext (patterns.py).

Reading: every path that turns rows into Events passes them through `open`, which fetches the
keys of the owners present in one query — a key that was shredded, in this process or another,
is absent from that answer, so no read outlives a shred (unwrapped keys are cached by their
wrapped text, which only a live row hands back). A value whose key is gone reads as null.
Sealing reuses a key it used in the last SEAL_TTL seconds without a query (ingest's hot path);
an erasure waits SEAL_TTL before it answers, so after its receipt no process seals with the
destroyed key. Without a master key nothing is sealed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switchboard.crypto import KEY_BYTES, SealError
from switchboard.envelope import Event, now_us
from switchboard.pii import PiiClass

if TYPE_CHECKING:
    from switchboard.crypto import Vault


class Sql(Protocol):
    """What the keys need of a store (queries.Sql, which names this module's class)."""

    vault: Vault

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    async def fetch_write(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    async def batch(self, statements: list[tuple[str, Sequence[Any]]]) -> list[int]: ...


log = logging.getLogger(__name__)

PREFIX = "sbpii1."
_NONCE = 12
TAG_HEX = 32  # characters of the blind tag kept (128 bits of the HMAC)
SYSTEM_PREFIX = "switchboard."  # the hub's own events: ids and counts, never sealed
# the context keys that hold a person's network identity (erasure removes them too)
CONTEXT_PII: dict[str, PiiClass] = {
    "ip": PiiClass.IP,
    "ip_address": PiiClass.IP,
    "user_agent": PiiClass.FREE_TEXT,
    "userAgent": PiiClass.FREE_TEXT,
}
_CHUNK = 200  # owners per IN (…) list
_CACHE_MAX = 20_000  # unwrapped keys kept in memory
SEAL_TTL = 2.0  # seconds a data key just used for sealing is used again without a query

# (tenant, type) -> the type's PII paths with their classes ({} for none or an unknown type)
PiiLookup = Callable[[str, str], Awaitable[Mapping[str, PiiClass]]]
Owner = tuple[str, str]  # (kind, owner)
INDEX: Owner = ("index", "")


def owner_of(e: Event) -> Owner:
    """Whose key seals `e`'s PII: its subject's, else its own."""
    if e.subject:
        return ("subject", e.subject)
    return ("event", orjson.dumps([e.source, e.id]).decode())


def normalize(value: str, cls: PiiClass) -> str:
    """The form equality compares: emails lowercased, numbers as their digits."""
    text = value.strip()
    if cls == PiiClass.EMAIL:
        return text.lower()
    if cls in (PiiClass.PHONE, PiiClass.CPF, PiiClass.CNPJ):
        digits = "".join(c for c in text if c.isdigit())
        return digits or text
    return text


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_place(tenant_id: str, kind: str, owner: str) -> str:
    return f"subject_keys:{tenant_id}:{kind}:{owner}"


def _aad(e: Event) -> bytes:
    """What every sealed value of `e` is bound to, before its path: tenant, owner, event."""
    kind, owner = owner_of(e)
    return orjson.dumps([e.tenant_id, kind, owner, e.source, e.id])


def _walk(data: Any, parts: list[str]) -> Iterator[tuple[Any, Any]]:
    """(container, key) pairs holding the value at a dotted path; arrays are stepped into."""
    if isinstance(data, list):
        for item in data:
            yield from _walk(item, parts)
        return
    if not isinstance(data, dict) or not parts or parts[0] not in data:
        return
    if len(parts) == 1:
        yield data, parts[0]
    else:
        yield from _walk(data[parts[0]], parts[1:])


def _has_sealed(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(PREFIX)
    if isinstance(value, dict):
        return any(_has_sealed(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_sealed(v) for v in value)
    return False


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class Keys:
    """The data keys an operation holds: owner → AES-GCM, and the tenant's index key."""

    def __init__(self, aead: dict[Owner, AESGCM], index: bytes | None) -> None:
        self.aead = aead
        self.index = index

    def tag(self, path: str, value: Any, cls: PiiClass) -> str:
        """The blind tag of one value at `path`; '' for values equality cannot test."""
        if self.index is None or not isinstance(value, str):
            return ""
        return blind_tag(self.index, path, normalize(value, cls))


@functools.lru_cache(maxsize=1024)
def _mac(index_key: bytes) -> hmac.HMAC:
    # keyed once: a copy costs a sixth of a one-shot hmac.digest (OpenSSL 3 looks the digest up)
    return hmac.new(index_key, digestmod=hashlib.sha256)


def blind_tag(index_key: bytes, path: str, normalized: str) -> str:
    """HMAC-SHA-256 of the path and the normalized value under the tenant's index key."""
    mac = _mac(index_key).copy()
    mac.update(f"{path}\0{normalized}".encode())
    return mac.hexdigest()[:TAG_HEX]


class SubjectKeys:
    """The store's side of PII encryption: seals events' rows, opens loaded events, shreds."""

    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self.pii_paths: PiiLookup | None = None  # set by the Hub (the catalog)
        self._unwrapped: dict[tuple[str, str, str, str], bytes] = {}
        # keys sealing has just used, reused for SEAL_TTL without asking the store: an erasure
        # waits that long before it answers, so no process seals with a key it destroyed
        self._recent: dict[tuple[str, Owner], tuple[float, AESGCM]] = {}
        self._index_keys: dict[str, bytes] = {}  # never shredded: kept

    @property
    def enabled(self) -> bool:
        return self.sql.vault.enabled

    # -- keys ------------------------------------------------------------------------------------

    def _unwrap(self, tenant_id: str, kind: str, owner: str, wrapped: str) -> bytes | None:
        at = (tenant_id, kind, owner, wrapped)
        key = self._unwrapped.get(at)
        if key is None:
            vault = self.sql.vault
            try:
                key = vault.open(wrapped, key_place(tenant_id, kind, owner))
            except SealError as exc:
                log.warning("subject key does not open", extra={"error": str(exc)})
                return None
            if len(self._unwrapped) >= _CACHE_MAX:
                self._unwrapped.clear()
            self._unwrapped[at] = key
        return key

    async def _fetch(self, tenant_id: str, owners: set[Owner], write: bool) -> dict[Owner, bytes]:
        found: dict[Owner, bytes] = {}
        names = sorted({o for _, o in owners})
        fetch = self.sql.fetch_write if write else self.sql.fetch
        for i in range(0, len(names), _CHUNK):
            chunk = names[i : i + _CHUNK]
            rows = await fetch(
                "SELECT kind, owner, wrapped FROM subject_keys WHERE tenant_id = ? "
                f"AND owner IN ({', '.join('?' * len(chunk))})",
                [tenant_id, *chunk],
            )
            for kind, owner, wrapped in rows:
                if (kind, owner) in owners:
                    key = self._unwrap(tenant_id, kind, owner, wrapped)
                    if key is not None:
                        found[kind, owner] = key
        return found

    async def keys(self, tenant_id: str, owners: set[Owner], create: bool) -> Keys:
        """The live keys of `owners` (and the tenant's index key); with `create`, the missing
        ones are made first (a concurrent maker's key wins: the second read takes it)."""
        wanted = owners | {INDEX}
        found = await self._fetch(tenant_id, wanted, write=False)
        missing = wanted - found.keys()
        if create and missing:
            vault = self.sql.vault
            now = now_us()
            made = {
                owner: os.urandom(KEY_BYTES) for owner in sorted(missing)
            }  # (kind, owner) -> key
            inserted = await self.sql.batch(
                [
                    (
                        "INSERT INTO subject_keys (tenant_id, kind, owner, wrapped, created_us) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, kind, owner) DO NOTHING",
                        (
                            tenant_id,
                            kind,
                            owner,
                            vault.seal(key, key_place(tenant_id, kind, owner)),
                            now,
                        ),
                    )
                    for (kind, owner), key in made.items()
                ]
            )
            lost = set()
            for (owner, key), n in zip(made.items(), inserted, strict=True):
                if n:  # ours is stored: no need to read it back
                    found[owner] = key
                else:  # a concurrent maker's key won: take it
                    lost.add(owner)
            if lost:
                found.update(await self._fetch(tenant_id, lost, write=True))
        index = found.pop(INDEX, None)
        return Keys({o: AESGCM(k) for o, k in found.items()}, index)

    async def index_key(self, tenant_id: str, create: bool = True) -> bytes | None:
        """The tenant's blind-index key (None without a master key)."""
        if not self.enabled:
            return None
        return (await self.keys(tenant_id, set(), create)).index

    async def _sealing_keys(self, tenant_id: str, wanted: set[Owner]) -> Keys:
        """The keys to seal with: those used in the last SEAL_TTL seconds, the others from the
        store (made when missing)."""
        now = time.monotonic()
        aead: dict[Owner, AESGCM] = {}
        for owner in wanted:
            hit = self._recent.get((tenant_id, owner))
            if hit is not None and hit[0] > now:
                aead[owner] = hit[1]
        index = self._index_keys.get(tenant_id)
        missing = wanted - aead.keys()
        if missing or index is None:
            fresh = await self.keys(tenant_id, missing, create=True)
            if len(self._recent) >= _CACHE_MAX:
                self._recent.clear()
            for owner, key in fresh.aead.items():
                self._recent[tenant_id, owner] = (now + SEAL_TTL, key)
                aead[owner] = key
            index = fresh.index
            if index is not None:
                if len(self._index_keys) >= _CACHE_MAX:
                    self._index_keys.clear()
                self._index_keys[tenant_id] = index
        return Keys(aead, index)

    def forget(self, tenant_id: str, subject: str) -> None:
        """Drop a shredded subject's key from this process's sealing cache."""
        self._recent.pop((tenant_id, ("subject", subject)), None)

    def shred_statement(self, tenant_id: str, subject: str) -> tuple[str, tuple[Any, ...]]:
        """The DELETE that destroys `subject`'s data key (run in the erasure's transaction)."""
        return (
            "DELETE FROM subject_keys WHERE tenant_id = ? AND kind = 'subject' AND owner = ?",
            (tenant_id, subject),
        )

    # -- events ----------------------------------------------------------------------------------

    async def _classes(self, e: Event) -> Mapping[str, PiiClass]:
        if self.pii_paths is None or e.type.startswith(SYSTEM_PREFIX):
            return {}
        return await self.pii_paths(e.tenant_id, e.type)

    async def sealed(self, events: list[Event]) -> list[Event]:
        """`events` as they are stored: the PII of those whose type declares some sealed (the
        list itself when there is nothing to seal)."""
        if not self.enabled or self.pii_paths is None:
            return events
        targets: list[dict[str, PiiClass] | None] = []
        owners: dict[str, set[Owner]] = {}
        for e in events:
            classes = await self._classes(e)
            present = {
                p: c
                for p, c in classes.items()
                if any(ct[k] is not None for ct, k in _walk(e.data, p.split(".")))
            }
            if classes:
                present.update(
                    (f"context.{k}", c)
                    for k, c in CONTEXT_PII.items()
                    if e.context.get(k) is not None
                )
            targets.append(present or None)
            if present:
                owners.setdefault(e.tenant_id, set()).add(owner_of(e))
        if not owners:
            return events
        keys: dict[str, Keys] = {}
        for tenant_id, wanted in owners.items():
            for _ in range(3):  # a key made and shredded at once (an erasure racing): again
                keys[tenant_id] = await self._sealing_keys(tenant_id, wanted)
                if wanted <= keys[tenant_id].aead.keys():
                    break
        return [
            e if present is None else self._seal(e, present, keys[e.tenant_id])
            for e, present in zip(events, targets, strict=True)
        ]

    def _seal(self, e: Event, present: Mapping[str, PiiClass], keys: Keys) -> Event:
        owner = owner_of(e)
        aead = keys.aead.get(owner)
        if aead is None:  # made a moment ago and shredded since: nothing to seal it with
            raise SealError(f"the data key of the event's subject is gone; send {e.id} again")
        data, context = _copy(e.data), dict(e.context)
        bound = _aad(e)
        for path, cls in present.items():
            if path.startswith("context."):
                root, parts = context, [path.removeprefix("context.")]
            else:
                root, parts = data, path.split(".")
            for container, key in _walk(root, parts):
                value = container[key]
                if value is None or is_sealed(value):
                    continue
                nonce = os.urandom(_NONCE)
                blob = aead.encrypt(nonce, orjson.dumps(value), bound + path.encode())
                tag = keys.tag(path, value, cls)
                container[key] = f"{PREFIX}{tag}.{base64.b64encode(nonce + blob).decode()}"
        return msgspec.structs.replace(e, data=data, context=context)

    async def open(self, events: list[Event]) -> list[Event]:
        """`events` with their sealed values opened; a value whose key is gone (shredded) or
        that does not open where it is (moved) reads as null."""
        sealed = [i for i, e in enumerate(events) if _has_sealed(e.data) or _has_sealed(e.context)]
        if not sealed:
            return events
        owners: dict[str, set[Owner]] = {}
        for i in sealed:
            owners.setdefault(events[i].tenant_id, set()).add(owner_of(events[i]))
        keys: dict[str, Keys] = {}
        for tenant_id, wanted in owners.items():
            if self.enabled:
                keys[tenant_id] = await self.keys(tenant_id, wanted, create=False)
            else:  # no master key: nothing opens
                keys[tenant_id] = Keys({}, None)
        out = list(events)
        for i in sealed:
            e = events[i]
            aead = keys[e.tenant_id].aead.get(owner_of(e))
            bound = _aad(e)
            out[i] = msgspec.structs.replace(
                e,
                data=self._opened(e.data, bound, aead, ""),
                context=self._opened(e.context, bound, aead, "context"),
            )
        return out

    def _opened(self, value: Any, bound: bytes, aead: AESGCM | None, path: str) -> Any:
        if isinstance(value, str):
            if not value.startswith(PREFIX):
                return value
            if aead is None:
                return None
            blob = base64.b64decode(value[len(PREFIX) :].partition(".")[2])
            try:
                plain = aead.decrypt(blob[:_NONCE], blob[_NONCE:], bound + path.encode())
            except InvalidTag:
                return None  # moved here from another event, subject or tenant
            return orjson.loads(plain)
        if isinstance(value, dict):
            return {
                k: self._opened(v, bound, aead, f"{path}.{k}" if path else k)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._opened(v, bound, aead, path) for v in value]
        return value


# -- filters on sealed fields ---------------------------------------------------------------------

# what SQL can still test on a sealed value: equality (by its blind tag) and presence
_REFUSED = ("prefix", "suffix", "wildcard", "equals-ignore-case", "anything-but", "numeric", "cidr")


def blind_spec(
    spec: Mapping[str, Any],
    pii: Mapping[str, frozenset[PiiClass]],
    index_key: bytes,
    keep_plain: bool,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A filter pattern's spec whose string equalities on PII paths also (or, without
    `keep_plain`, only) match the blind tag of the value: an alternative ``{"prefix":
    "sbpii1.<tag>."}``, which SQL answers on the sealed text and which never matches a
    plaintext. What a ciphertext cannot answer (prefix, suffix, wildcard, case folding,
    anything-but, numeric ranges) on a PII path raises PatternError naming the field. The spec
    has been compiled once already (patterns.compile_pattern), so its shape is known good."""
    from switchboard.patterns import PatternError

    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "$or":
            out[key] = [blind_spec(b, pii, index_key, keep_plain, prefix) for b in value]
            continue
        path = (*prefix, *key.split("."))
        if isinstance(value, Mapping):
            out[key] = blind_spec(value, pii, index_key, keep_plain, path)
            continue
        dotted = ".".join(path)
        classes = pii.get(dotted)
        if classes is None:
            out[key] = value
            continue
        items: list[Any] = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping):
                refused = [op for op in item if op in _REFUSED]
                if refused:
                    raise PatternError(
                        f"{dotted}: {refused[0]!r} cannot be tested on a PII field, which is "
                        "sealed at rest; only equality and exists are (docs/privacy.md)"
                    )
                items.append(item)
                continue
            if keep_plain or not isinstance(item, str):
                items.append(item)
            if isinstance(item, str):
                for cls in sorted(classes):
                    tag = blind_tag(index_key, dotted.removeprefix("data."), normalize(item, cls))
                    items.append({"prefix": f"{PREFIX}{tag}."})
        out[key] = items
    return out
