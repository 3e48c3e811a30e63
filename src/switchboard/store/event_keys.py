"""PostgreSQL's dedup keys: the one uuid per event that `event_keys` holds unique (migration 0017).

The events table is partitioned by month, and a unique index across it would have to hold the
month, so `event_keys` keeps one row per event: its key, its seq and its month's `received_us`.
The key is two halves of SHA-256, 8 bytes each:

- the first of (tenant_id, id): every event of a tenant with that id, whatever its source, lies
  in one range of keys, so GET /v1/events/{id} without a source is one index range scan;
- the second of (tenant_id, id, source): it tells apart the sources that share an id.

A 16-byte uuid is narrower than the three texts it stands for (migration 0013 kept them whole,
heap and index), and its width does not grow with a client's long ids. Two different
(tenant, source, id) share a key only if both halves collide: 2^-128 for two ids, 2^-64 for one
id under two sources; and every read and every "duplicate" answer compares the event's own
columns, so a collision could refuse an event loudly, never answer with another one.

Migration 0017 computes the same key in SQL (`sha256` of the UTF-8 bytes, NUL-separated: no
text in PostgreSQL holds a NUL, so the encoding is unambiguous).
"""

from __future__ import annotations

import hashlib


def _bytes(text: str) -> bytes:
    # surrogatepass: a text PostgreSQL cannot hold fails at the INSERT, as before, not here
    return text.encode("utf-8", "surrogatepass")


def event_key(tenant_id: str, source: str, event_id: str) -> str:
    """The key of one event, as the 32 hex digits asyncpg takes for a uuid: SHA-256 of
    tenant_id NUL id, its first 8 bytes; then SHA-256 of tenant_id NUL id NUL source, its
    first 8 (one hash object fed twice: the hub pays this per event, about 1.4 µs)."""
    h = hashlib.sha256(_bytes(f"{tenant_id}\x00{event_id}"))
    first = h.digest()
    h.update(_bytes(f"\x00{source}"))
    return (first[:8] + h.digest()[:8]).hex()


def id_range(tenant_id: str, event_id: str) -> tuple[str, str]:
    """The first and last key an event of `tenant_id` with `event_id` can have, any source."""
    half = hashlib.sha256(_bytes(f"{tenant_id}\x00{event_id}")).hexdigest()[:16]
    return half + "0" * 16, half + "f" * 16


# The key in SQL, of columns (or expressions) tenant_id, source and id: what migration 0017
# filled the existing rows with; a test holds it equal to `event_key`.
KEY_SQL = (
    "encode(substring(sha256(convert_to({t}, 'UTF8') || '\\x00'::bytea || convert_to({i}, 'UTF8'))"
    " FROM 1 FOR 8) || substring(sha256(convert_to({t}, 'UTF8') || '\\x00'::bytea || "
    "convert_to({i}, 'UTF8') || '\\x00'::bytea || convert_to({s}, 'UTF8')) FROM 1 FOR 8), "
    "'hex')::uuid"
)
