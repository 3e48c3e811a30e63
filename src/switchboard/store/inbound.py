"""Inbound state: sources, the log of every request they received, business-dedup claims and
tenants' own mappings.

Written once for both backends on the stores' generic SQL (`fetch`, `fetch_write`, `execute`,
`batch`, with `?` and `?j` placeholders). Booleans come back as 0/1 on SQLite, JSON as text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from switchboard.crypto import Vault
from switchboard.sources import Counters, Source
from switchboard.store.queries import Sql, dumps, load_json
from switchboard.store.subject_keys import blind_tag

# --- sources ---------------------------------------------------------------------------------

_SOURCE_COLUMNS = (
    "id, tenant_id, name, preset, preset_config, secrets, ip_allowlist, mapping, "
    "mapping_version, event_source, dedup_window, enabled, created_us, updated_us, "
    "received, verified, failed_verification, events_produced"
)


def _source_from_row(r: Sequence[Any], vault: Vault) -> Source:
    return Source(
        id=r[0],
        tenant_id=r[1],
        name=r[2],
        preset=r[3],
        preset_config=load_json(r[4]) or {},
        secrets=tuple(vault.open_json(load_json(r[5]), f"sources.secrets:{r[0]}") or ()),
        ip_allowlist=tuple(load_json(r[6]) or ()),
        mapping=r[7],
        mapping_version=r[8],
        event_source=r[9],
        dedup_window=r[10],
        enabled=bool(r[11]),
        created_us=r[12],
        updated_us=r[13],
        counters=Counters(int(r[14]), int(r[15]), int(r[16]), int(r[17])),
    )


async def insert_source(store: Sql, s: Source) -> None:
    await store.execute(
        f"INSERT INTO sources ({_SOURCE_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?j, ?j, ?j, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0)",
        (
            s.id,
            s.tenant_id,
            s.name,
            s.preset,
            dumps(s.preset_config),
            dumps(store.vault.seal_json(list(s.secrets), f"sources.secrets:{s.id}")),
            dumps(list(s.ip_allowlist)),
            s.mapping,
            s.mapping_version,
            s.event_source,
            s.dedup_window,
            s.enabled,
            s.created_us,
            s.updated_us,
        ),
    )


async def update_source(store: Sql, s: Source) -> bool:
    """Write every configurable field (counters are left alone)."""
    count = await store.execute(
        "UPDATE sources SET name = ?, preset = ?, preset_config = ?j, secrets = ?j, "
        "ip_allowlist = ?j, mapping = ?, mapping_version = ?, event_source = ?, "
        "dedup_window = ?, enabled = ?, updated_us = ? WHERE tenant_id = ? AND id = ?",
        (
            s.name,
            s.preset,
            dumps(s.preset_config),
            dumps(store.vault.seal_json(list(s.secrets), f"sources.secrets:{s.id}")),
            dumps(list(s.ip_allowlist)),
            s.mapping,
            s.mapping_version,
            s.event_source,
            s.dedup_window,
            s.enabled,
            s.updated_us,
            s.tenant_id,
            s.id,
        ),
    )
    return count > 0


async def get_source(store: Sql, source_id: str, tenant_id: str | None = None) -> Source | None:
    """A source by id; `tenant_id` None only for the receiving URL (the id is the credential
    there, and the signature check that follows)."""
    if tenant_id is None:
        rows = await store.fetch(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = ?", (source_id,)
        )
    else:
        rows = await store.fetch(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = ? AND tenant_id = ?",
            (source_id, tenant_id),
        )
    return _source_from_row(rows[0], store.vault) if rows else None


async def list_sources(store: Sql, tenant_id: str) -> list[Source]:
    rows = await store.fetch(
        f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE tenant_id = ? ORDER BY name", (tenant_id,)
    )
    return [_source_from_row(r, store.vault) for r in rows]


async def delete_source(store: Sql, tenant_id: str, source_id: str) -> bool:
    return (
        await store.execute(
            "DELETE FROM sources WHERE tenant_id = ? AND id = ?", (tenant_id, source_id)
        )
        > 0
    )


async def add_events_produced(store: Sql, source_id: str, count: int) -> None:
    if count:
        await store.execute(
            "UPDATE sources SET events_produced = events_produced + ? WHERE id = ?",
            (count, source_id),
        )


# --- the request log -------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundRequest:
    id: str  # time-ordered (UUIDv7): also the listing cursor
    tenant_id: str
    source_id: str
    received_us: int
    remote_ip: str | None
    headers: dict[str, str]  # masked with masking.mask_headers
    content_type: str | None
    body: bytes
    verified: bool
    status: str  # see sources.inbound.Status
    verification_error: str | None = None
    mapping: str | None = None  # name@version the request was mapped with
    event_ids: list[str] = field(default_factory=list)
    error: str | None = None

    def public(self, with_body: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "source_id": self.source_id,
            "received_us": self.received_us,
            "remote_ip": self.remote_ip,
            "headers": self.headers,
            "content_type": self.content_type,
            "verified": self.verified,
            "verification_error": self.verification_error,
            "status": self.status,
            "mapping": self.mapping,
            "event_ids": self.event_ids,
            "error": self.error,
            "size": len(self.body),
        }
        kept = _KEPT.fullmatch(self.error or "")
        if kept:  # an unverified request: only its head was kept
            out.update(size=int(kept[1]), body_sha256=kept[2], body_truncated=True)
        if with_body:
            text = self.body.decode("utf-8", errors="replace")
            try:
                out["body"] = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                out["body"] = text
        return out


# Requests that failed verification (or reached a disabled source) come from anyone: they keep
# their (masked) headers, size, SHA-256 and at most the first KiB, and a source keeps only its
# newest `unverified_kept` of them (settings.source_unverified_kept); the counters count them all.
UNVERIFIED = ("failed_verification", "forbidden", "disabled")
UNVERIFIED_BODY = 1024
_KEPT = re.compile(r"body not kept past 1 KiB: (\d+) bytes, sha256 ([0-9a-f]{64})")
_PRUNE_STEP = 50  # rows dropped at most per request: a cap lowered later converges


def unverified(req: InboundRequest) -> InboundRequest:
    """The request as an unverified one is logged: the body cut to its first KiB, and its size
    and SHA-256 said in `error`."""
    if len(req.body) <= UNVERIFIED_BODY:
        return req
    digest = hashlib.sha256(req.body).hexdigest()
    return replace(
        req,
        body=req.body[:UNVERIFIED_BODY],
        error=f"body not kept past 1 KiB: {len(req.body)} bytes, sha256 {digest}",
    )


_REQUEST_COLUMNS = (
    "id, tenant_id, source_id, received_us, remote_ip, headers, content_type, body, verified, "
    "status, verification_error, mapping, event_ids, error"
)


def _request_from_row(r: Sequence[Any]) -> InboundRequest:
    return InboundRequest(
        id=r[0],
        tenant_id=r[1],
        source_id=r[2],
        received_us=r[3],
        remote_ip=r[4],
        headers=load_json(r[5]) or {},
        content_type=r[6],
        body=bytes(r[7] or b""),
        verified=bool(r[8]),
        status=r[9],
        verification_error=r[10],
        mapping=r[11],
        event_ids=load_json(r[12]) or [],
        error=r[13],
    )


async def record_request(
    store: Sql, req: InboundRequest, events_produced: int, unverified_kept: int | None = None
) -> None:
    """Log one received request and bump the source's counters in the same transaction; an
    unverified one (see UNVERIFIED) drops the source's oldest beyond `unverified_kept`."""
    verified = 1 if req.verified else 0
    failed = 1 if req.status in ("failed_verification", "forbidden") else 0
    prune: list[tuple[str, Sequence[Any]]] = []
    if unverified_kept is not None and req.status in UNVERIFIED:
        req = unverified(req)
        # walks the source's newest rows back to its `unverified_kept`-th unverified one: short
        # under a flood of them, and only ever run for an unverified request
        prune.append(
            (
                "DELETE FROM inbound_requests WHERE id IN (SELECT id FROM inbound_requests "
                "WHERE source_id = ? AND status IN (?, ?, ?) ORDER BY id DESC LIMIT ? OFFSET ?)",
                (req.source_id, *UNVERIFIED, _PRUNE_STEP, unverified_kept),
            )
        )
    await store.batch(
        [
            (
                f"INSERT INTO inbound_requests ({_REQUEST_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?j, ?, ?, ?, ?, ?, ?, ?j, ?)",
                (
                    req.id,
                    req.tenant_id,
                    req.source_id,
                    req.received_us,
                    req.remote_ip,
                    dumps(req.headers),
                    req.content_type,
                    req.body,
                    req.verified,
                    req.status,
                    req.verification_error,
                    req.mapping,
                    dumps(req.event_ids),
                    req.error,
                ),
            ),
            (
                "UPDATE sources SET received = received + 1, verified = verified + ?, "
                "failed_verification = failed_verification + ?, "
                "events_produced = events_produced + ? WHERE id = ?",
                (verified, failed, events_produced, req.source_id),
            ),
            *prune,
        ]
    )


async def update_request_outcome(
    store: Sql, request_id: str, status: str, event_ids: list[str], mapping: str | None
) -> None:
    """A reprocess run's result replaces the request's processing outcome."""
    await store.execute(
        "UPDATE inbound_requests SET status = ?, event_ids = ?j, mapping = ?, error = NULL "
        "WHERE id = ?",
        (status, dumps(event_ids), mapping, request_id),
    )


async def list_requests(
    store: Sql,
    tenant_id: str,
    source_id: str,
    *,
    status: str | None = None,
    verified: bool | None = None,
    before_id: str | None = None,
    limit: int = 100,
) -> list[InboundRequest]:
    """Newest first; `before_id` is the last id of the previous page."""
    where = ["tenant_id = ?", "source_id = ?"]
    params: list[Any] = [tenant_id, source_id]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if verified is not None:
        where.append("verified = ?")
        params.append(verified)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    params.append(limit)
    rows = await store.fetch(
        f"SELECT {_REQUEST_COLUMNS} FROM inbound_requests WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT ?",
        params,
    )
    return [_request_from_row(r) for r in rows]


async def get_request(store: Sql, tenant_id: str, request_id: str) -> InboundRequest | None:
    rows = await store.fetch(
        f"SELECT {_REQUEST_COLUMNS} FROM inbound_requests WHERE tenant_id = ? AND id = ?",
        (tenant_id, request_id),
    )
    return _request_from_row(rows[0]) if rows else None


async def verified_requests(
    store: Sql,
    tenant_id: str,
    source_id: str,
    *,
    from_us: int | None,
    to_us: int | None,
    after_id: str | None,
    limit: int,
) -> list[InboundRequest]:
    """Oldest first, verified requests only: what a reprocess run reads, page by page."""
    where = ["tenant_id = ?", "source_id = ?", "verified = ?"]
    params: list[Any] = [tenant_id, source_id, True]
    if from_us is not None:
        where.append("received_us >= ?")
        params.append(from_us)
    if to_us is not None:
        where.append("received_us < ?")
        params.append(to_us)
    if after_id is not None:
        where.append("id > ?")
        params.append(after_id)
    params.append(limit)
    rows = await store.fetch(
        f"SELECT {_REQUEST_COLUMNS} FROM inbound_requests WHERE {' AND '.join(where)} "
        "ORDER BY id LIMIT ?",
        params,
    )
    return [_request_from_row(r) for r in rows]


# --- business-dedup claims -------------------------------------------------------------------


async def blind_keys(store: Sql, tenant_id: str, keys: Sequence[str]) -> list[str]:
    """Claims as stored: ``field:value`` keys hold a phone or an email, so with a master key
    the value is replaced by its blind tag (a keyed HMAC, subject_keys.py): equal values still
    meet, and the table holds no PII."""
    index = await store.subject_keys.index_key(tenant_id)
    if index is None:
        return list(keys)
    out = []
    for key in keys:
        name, _, value = key.partition(":")
        out.append(f"{name}:#{blind_tag(index, f'dedup.{name}', value)}")
    return out


async def claim_dedup_key(
    store: Sql, tenant_id: str, event_type: str, key: str, event_id: str, now_us: int, since_us: int
) -> str | None:
    """Claim `key` for `event_id` unless a claim newer than `since_us` holds it.

    Returns None when the claim is ours (new, or replacing an expired one), else the id of the
    event that holds it. One statement, so two concurrent requests cannot both win.
    """
    [key] = await blind_keys(store, tenant_id, [key])
    rows = await store.fetch_write(
        "INSERT INTO dedup_keys (tenant_id, event_type, key, event_id, created_us) "
        "VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, event_type, key) DO UPDATE "
        "SET event_id = excluded.event_id, created_us = excluded.created_us "
        "WHERE dedup_keys.created_us < ? RETURNING event_id",
        (tenant_id, event_type, key, event_id, now_us, since_us),
    )
    if rows:
        return None
    holder = await store.fetch_write(
        "SELECT event_id FROM dedup_keys WHERE tenant_id = ? AND event_type = ? AND key = ?",
        (tenant_id, event_type, key),
    )
    return str(holder[0][0]) if holder else None


async def find_dedup_holder(
    store: Sql, tenant_id: str, event_type: str, keys: list[str], since_us: int
) -> str | None:
    """The event holding a live claim on any of `keys` (dry runs: nothing is written)."""
    keys = await blind_keys(store, tenant_id, keys)
    marks = ", ".join("?" for _ in keys)
    rows = await store.fetch(
        "SELECT event_id FROM dedup_keys WHERE tenant_id = ? AND event_type = ? "
        f"AND key IN ({marks}) AND created_us >= ? ORDER BY created_us LIMIT 1",
        (tenant_id, event_type, *keys, since_us),
    )
    return str(rows[0][0]) if rows else None


async def release_dedup_keys(
    store: Sql, tenant_id: str, event_type: str, event_id: str, keys: Sequence[str]
) -> None:
    keys = await blind_keys(store, tenant_id, keys)
    marks = ", ".join("?" for _ in keys)
    await store.execute(
        "DELETE FROM dedup_keys WHERE tenant_id = ? AND event_type = ? AND event_id = ? "
        f"AND key IN ({marks})",
        (tenant_id, event_type, event_id, *keys),
    )


# --- tenants' own mappings -------------------------------------------------------------------


async def put_mapping(
    store: Sql, tenant_id: str, name: str, version: str, spec: dict[str, Any], now_us: int
) -> bool:
    """Store a tenant mapping version; False when that version exists already (immutable)."""
    rows = await store.fetch_write(
        "INSERT INTO source_mappings (tenant_id, name, version, spec, created_us) "
        "VALUES (?, ?, ?, ?j, ?) ON CONFLICT (tenant_id, name, version) DO NOTHING "
        "RETURNING name",
        (tenant_id, name, version, dumps(spec), now_us),
    )
    return bool(rows)


async def tenant_mappings(
    store: Sql, tenant_id: str, name: str | None = None
) -> list[dict[str, Any]]:
    if name is None:
        rows = await store.fetch(
            "SELECT spec FROM source_mappings WHERE tenant_id = ? ORDER BY name, created_us",
            (tenant_id,),
        )
    else:
        rows = await store.fetch(
            "SELECT spec FROM source_mappings WHERE tenant_id = ? AND name = ? ORDER BY created_us",
            (tenant_id, name),
        )
    return [load_json(r[0]) for r in rows]
