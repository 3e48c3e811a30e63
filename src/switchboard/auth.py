"""API keys: minting (shown once, stored hashed), authentication with a short cache, scopes,
and the token buckets that rate-limit keys and tenants."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from switchboard.envelope import Event, new_id, now_us
from switchboard.errors import Forbidden, RateLimited, Unauthorized
from switchboard.patterns import Pattern, PatternError, compile_pattern, match, to_sql
from switchboard.shared import SharedLoads
from switchboard.store import ApiKey, Scope, Store

KEY_PREFIX_LEN = 11  # "sb_" + 8 characters, kept in clear to find and show the key
_CACHE_SECONDS = 5.0  # a revoked key stops working within this many seconds on every node


# CPython's own SHA-256 when it has one (the same digest): OpenSSL's sets up a digest context
# per call, a third of what authenticating a request costs
_sha256: Any = hashlib.sha256
for _module in ("_sha2", "_sha256"):  # Python 3.12+, 3.11
    with contextlib.suppress(ImportError):
        _sha256 = importlib.import_module(_module).sha256
        break


def hash_key(key: str) -> str:
    return str(_sha256(key.encode()).hexdigest())


def mint_key(
    tenant_id: str | None,
    name: str,
    scopes: Iterable[str],
    source: str | None = None,
    constraints: dict[str, Any] | None = None,
) -> tuple[str, ApiKey]:
    """A new key: (the secret to show once, the record to store)."""
    scope_list = tuple(sorted({Scope(s).value for s in scopes}))
    if not scope_list:
        raise ValueError("a key needs at least one scope")
    if Scope.ADMIN in scope_list and tenant_id is not None:
        raise ValueError("the admin scope is only for keys without a tenant")
    secret = "sb_" + secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    record = ApiKey(
        id=new_id(),
        tenant_id=tenant_id,
        name=name,
        prefix=secret[:KEY_PREFIX_LEN],
        hash=hash_key(secret),
        scopes=scope_list,
        created_us=now_us(),
        source=source,
        constraints=constraints,
    )
    return secret, record


_ADMIN = Scope.ADMIN  # (a StrEnum member read off its class is a descriptor call in 3.11)
_constraints: dict[str, Pattern] = {}  # key id -> its compiled constraints


def check_constraints(spec: Any) -> dict[str, Any]:
    """A key's `constraints` as stored, or ValueError saying why not: a non-empty filter
    pattern (docs/filters.md) within the size limits of a route's, that SQL can answer
    exactly, since every read the key makes is narrowed by it in SQL."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError(
            "constraints must be a non-empty filter pattern object, such as "
            '{"context": {"clinic_id": ["c-17"]}}: not a non-empty object'
        )
    try:
        pattern = compile_pattern(spec)
        to_sql(pattern, "sqlite")
        to_sql(pattern, "postgres")
    except PatternError as exc:
        raise ValueError(f"constraints: {exc}") from None
    return dict(pattern.spec)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key and the tenant it acts in."""

    key: ApiKey
    tenant_id: str | None

    def require(self, scope: Scope) -> None:
        if _ADMIN in self.key.scopes:
            return
        if scope not in self.key.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")

    @property
    def constraint(self) -> Pattern | None:
        """The key's constraints, compiled (None: the whole tenant). A key's constraints never
        change after it is made, so each is compiled once per process."""
        if self.key.constraints is None:
            return None
        compiled = _constraints.get(self.key.id)
        if compiled is None:
            if len(_constraints) > 10_000:
                _constraints.clear()
            # it passed the pattern limits when the key was made
            compiled = _constraints[self.key.id] = compile_pattern(self.key.constraints, None)
        return compiled

    def tenant(self) -> str:
        if self.tenant_id is None:
            raise Forbidden(
                "an admin key must name the tenant with the X-Switchboard-Tenant header"
            )
        return self.tenant_id


def within_constraints(p: Principal, event: Event) -> bool:
    """Whether the caller's key may see `event` (always, for a key without constraints)."""
    constraint = p.constraint
    return constraint is None or match(constraint, event.match_doc())


class Authenticator:
    def __init__(self, store: Store) -> None:
        self.store = store
        # digest -> (expiry, the key or None, the Principal of a tenant's key: the same for
        # every request made with it)
        self._cache: dict[str, tuple[float, ApiKey | None, Principal | None]] = {}
        # one look-up per key however many requests find its entry expired together
        self._loads: SharedLoads[str, ApiKey | None] = SharedLoads()
        self._generation = 0  # bumped by forget(): a look-up begun before is not cached

    async def _lookup(self, token: str, digest: str) -> ApiKey | None:
        """Find the key and cache the answer before the callers sharing the look-up resume (a
        request arriving in between finds it cached, not a second look-up to run)."""
        generation = self._generation
        now = time.monotonic()
        key = None
        for candidate in await self.store.keys_by_prefix(token[:KEY_PREFIX_LEN]):
            if hmac.compare_digest(candidate.hash, digest) and candidate.revoked_us is None:
                key = candidate
        if self._generation == generation:  # no key was revoked meanwhile
            if len(self._cache) > 10_000:
                self._cache.clear()
            own = Principal(key, key.tenant_id) if key and key.tenant_id is not None else None
            self._cache[digest] = (now + _CACHE_SECONDS, key, own)
        return key

    async def authenticate(self, authorization: str | None, admin_tenant: str | None) -> Principal:
        if not authorization:
            raise Unauthorized()
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if not token or scheme.lower() != "bearer":
            raise Unauthorized("send the API key as `Authorization: Bearer <key>`")
        digest = hash_key(token)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            if hit[2] is not None:
                return hit[2]
            key = hit[1]
        else:
            key = await self._loads.get(digest, lambda: self._lookup(token, digest))
        if key is None:
            raise Unauthorized("unknown or revoked API key")
        if key.tenant_id is None:
            return Principal(key, admin_tenant)
        return Principal(key, key.tenant_id)

    def forget(self) -> None:
        self._cache.clear()
        self._generation += 1
        self._loads.forget_if(lambda _: True)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    full_at: float  # when it will have refilled: from then on it can be forgotten


_PRUNE_AT = 50_000  # buckets kept before the refilled ones are dropped (source URLs are public)


@dataclass
class RateLimiter:
    """Token buckets per API key and per tenant, counted in events (a batch costs its events),
    and per source and per client address on the public source URLs, counted in requests (in
    this process)."""

    key_rate: float
    key_burst: float
    tenant_rate: float
    tenant_burst: float
    source_rate: float = 0.0
    source_burst: float = 0.0
    source_ip_rate: float = 0.0
    source_ip_burst: float = 0.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _take(self, name: str, rate: float, burst: float, cost: float, now: float) -> float:
        """Take `cost` tokens; return 0 or the seconds to wait before it would succeed."""
        if rate <= 0:
            return 0.0
        b = self._buckets.get(name)
        if b is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            b = self._buckets[name] = _Bucket(burst, now, now)
        b.tokens = min(burst, b.tokens + (now - b.stamp) * rate)
        b.stamp = now
        if b.tokens >= cost:
            b.tokens -= cost
            b.full_at = now + (burst - b.tokens) / rate
            return 0.0
        return (cost - b.tokens) / rate

    def _give_back(self, name: str, cost: float, burst: float) -> None:
        b = self._buckets.get(name)
        if b is not None:
            b.tokens = min(burst, b.tokens + cost)

    def _prune(self, now: float) -> None:
        """Forget buckets that are full again: a new one starts full, so nothing changes."""
        for name in [n for n, b in self._buckets.items() if b.full_at <= now]:
            del self._buckets[name]

    def check(self, key_id: str, tenant_id: str, cost: int, now: float | None = None) -> None:
        """Take `cost` events from the key's and the tenant's buckets, or raise RateLimited.
        A request of more events than a bucket holds could never pass: its 429 says the most
        that may be sent at once, without a Retry-After."""
        # (plain comparisons first: this runs on every ingest request, and a limit that is off
        # takes nothing, so its bucket's name is not even made)
        key_on, tenant_on = self.key_rate > 0, self.tenant_rate > 0
        if not (key_on or tenant_on):
            return
        if key_on and cost > self.key_burst:
            _too_big(cost, self.key_burst, "this API key")
        if tenant_on and cost > self.tenant_burst:
            _too_big(cost, self.tenant_burst, "this tenant")
        now = time.monotonic() if now is None else now
        wait = self._take("k:" + key_id, self.key_rate, self.key_burst, cost, now) if key_on else 0
        if not wait and tenant_on:
            wait = self._take("t:" + tenant_id, self.tenant_rate, self.tenant_burst, cost, now)
            if wait:  # the request is refused: give the key its tokens back
                self._give_back("k:" + key_id, cost, self.key_burst)
        if wait:
            _refuse(wait, "rate limit exceeded")

    def check_source(self, source_id: str, remote: str | None, now: float | None = None) -> None:
        """One request to a source's public URL: from the source's bucket and the client
        address's (an IPv6 client counts by its /64, which one host usually holds whole)."""
        now = time.monotonic() if now is None else now
        address = "ip:" + _client_net(remote)
        wait = self._take(address, self.source_ip_rate, self.source_ip_burst, 1, now)
        if wait:
            _refuse(wait, "too many requests from this address to source URLs")
        wait = self._take("s:" + source_id, self.source_rate, self.source_burst, 1, now)
        if wait:
            self._give_back(address, 1, self.source_ip_burst)
            _refuse(wait, "too many requests to this source")


def _client_net(remote: str | None) -> str:
    if not remote:
        return "-"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _too_big(cost: int, burst: float, whose: str) -> None:
    most = int(burst)
    raise RateLimited(
        f"{cost} events in one request, but {whose} may send at most {most} at once (its "
        f"rate-limit burst): split the batch into requests of at most {most} events",
        details=[{"path": "", "message": f"at most {most} events at once"}],
    )


def _refuse(wait: float, why: str) -> None:
    seconds = max(1, int(wait + 0.999))
    raise RateLimited(f"{why}; retry in {seconds} s", headers={"Retry-After": str(seconds)})
