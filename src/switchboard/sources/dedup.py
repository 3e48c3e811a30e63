"""Business deduplication: one lead per phone or email within a window, whatever its event id.

A mapping declares keys per event type (``lead.created`` on ``phone`` and ``email``). `keys_for`
turns an event's data into normalized keys (pure); `Deduplicator.check` claims them in the store
atomically. An event that shares any key with a live claim of another event is a duplicate: it is
still stored, with ``context.duplicate_of`` set to the original's id, and the router skips it.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from typing import Any

from switchboard.sources.mappings import DedupSpec, normalize_phone
from switchboard.store import inbound as sql

__all__ = ["Deduplicator", "Verdict", "keys_for", "normalize_key"]


def normalize_key(value: Any, normalizer: str) -> str | None:
    """The comparable form of one key value, or None when it gives nothing to compare."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    match normalizer:
        case "phone":
            digits = normalize_phone(text)
            return digits if digits and len(digits) >= 8 else None
        case "email":
            return text.lower() if "@" in text else None
        case "lower":
            return text.lower()
        case _:
            return text


def keys_for(spec: DedupSpec, data: AbcMapping[str, Any]) -> list[str]:
    """``field:value`` keys of an event's data, in the spec's order, without repeats."""
    keys: list[str] = []
    for name, normalizer in spec.keys:
        value = normalize_key(data.get(name), normalizer)
        if value is not None and f"{name}:{value}" not in keys:
            keys.append(f"{name}:{value}")
    return keys


@dataclass(frozen=True)
class Verdict:
    duplicate_of: str | None  # the original event's id, when this is a business duplicate
    keys: tuple[str, ...]  # the keys this event claimed (released again if it is not stored)


class Deduplicator:
    """Claims business keys in the store; one instance per request or reprocess run."""

    def __init__(self, store: Any, tenant_id: str, now_us: int) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.now_us = now_us

    async def check(
        self,
        spec: DedupSpec,
        event_id: str,
        data: AbcMapping[str, Any],
        window: int | None,
        *,
        dry_run: bool = False,
    ) -> Verdict:
        """Claim `event_id`'s keys, or name the live original that holds one of them.

        A retry of the same event (same id) finds its own claims and is not a duplicate; the
        event-id deduplication of ingest answers it. With `dry_run` nothing is written.
        """
        keys = keys_for(spec, data)
        if not keys:
            return Verdict(None, ())
        seconds = spec.window if window is None else window
        since = self.now_us - seconds * 1_000_000
        if dry_run:
            holder = await sql.find_dedup_holder(self.store, self.tenant_id, spec.type, keys, since)
            return Verdict(holder if holder != event_id else None, ())
        claimed: list[str] = []
        for key in keys:
            holder = await sql.claim_dedup_key(
                self.store, self.tenant_id, spec.type, key, event_id, self.now_us, since
            )
            if holder is None or holder == event_id:
                claimed.append(key)
                continue
            await self.release(spec.type, event_id, tuple(claimed))
            return Verdict(holder, ())
        return Verdict(None, tuple(claimed))

    async def release(self, event_type: str, event_id: str, keys: tuple[str, ...]) -> None:
        """Drop claims of an event that was not stored after all (rejected by the catalog)."""
        if keys:
            await sql.release_dedup_keys(self.store, self.tenant_id, event_type, event_id, keys)
