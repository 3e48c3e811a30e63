"""Encryption at rest: destination and source credentials sealed with AES-256-GCM under the
operator's master key.

A sealed value is text, ``sbenc1.<key id>.<base64 of nonce + ciphertext>``, stored where the
clear JSON used to be (a JSON string in a JSON column). The key id (8 hex digits of a hash of the
key) says which master key sealed it, so a hub holding the current key and the previous ones can
read everything while `switchboard crypto rotate-master` re-seals row by row: no downtime. Each
value is bound to its place (table, column, row id) as associated data, so a ciphertext copied
into another row, or another tenant's, does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switchboard.errors import ConfigError, SwitchboardError

PREFIX = "sbenc1."
KEY_BYTES = 32  # AES-256
_NONCE = 12


class SealError(SwitchboardError):
    """A sealed value cannot be opened with the configured master keys."""


def new_master_key() -> str:
    """A fresh master key as the settings take it: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def parse_key(name: str, text: str) -> bytes:
    """A base64 master key, checked; the error names the variable (or file) it came from."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{name} is not base64; create a key with `switchboard crypto new-key`"
        ) from None
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{name} must hold {KEY_BYTES} bytes (base64 of 32 random bytes), got {len(key)}"
        )
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"switchboard master key id\0" + key).hexdigest()[:8]


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(value: str) -> str:
    return value[len(PREFIX) :].split(".", 1)[0]


class Vault:
    """The master keys: the current one seals, it and the previous ones open."""

    def __init__(self, current: bytes | None, previous: Sequence[bytes] = ()) -> None:
        self.current = current
        self._keys = {key_id(k): AESGCM(k) for k in previous}
        self.current_id: str | None = None
        if current is not None:
            self.current_id = key_id(current)
            self._keys[self.current_id] = AESGCM(current)

    @classmethod
    def from_settings(cls, settings: Any) -> Vault:
        current = None
        if settings.master_key:
            current = parse_key("SWITCHBOARD_MASTER_KEY", settings.master_key)
        elif settings.master_key_file:
            path = Path(settings.master_key_file)
            try:
                text = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"SWITCHBOARD_MASTER_KEY_FILE: cannot read {path}: {exc}"
                ) from None
            current = parse_key(f"SWITCHBOARD_MASTER_KEY_FILE ({path})", text)
        previous = [
            parse_key("SWITCHBOARD_MASTER_KEY_PREVIOUS", k)
            for k in settings.master_key_previous.split(",")
            if k.strip()
        ]
        return cls(current, previous)

    @property
    def enabled(self) -> bool:
        return self.current is not None

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    def seal(self, plaintext: bytes, place: str) -> str:
        assert self.current is not None and self.current_id is not None
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self.current_id].encrypt(nonce, plaintext, place.encode())
        return f"{PREFIX}{self.current_id}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, value: str, place: str) -> bytes:
        kid, _, blob = value[len(PREFIX) :].partition(".")
        aead = self._keys.get(kid)
        if aead is None:
            raise SealError(
                f"{place} was sealed with master key {kid}, which is not configured: set "
                "SWITCHBOARD_MASTER_KEY (or _FILE) to it, or list it in "
                "SWITCHBOARD_MASTER_KEY_PREVIOUS"
            )
        raw = base64.b64decode(blob)
        try:
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], place.encode())
        except InvalidTag:
            raise SealError(f"{place}: the sealed value is damaged or was moved") from None

    # JSON values: what the stores write in their JSON columns

    def seal_json(self, value: Any, place: str) -> Any:
        """`value` sealed as a JSON string when a master key is set; else `value` unchanged."""
        if self.current is None:
            return value
        return self.seal(orjson.dumps(value), place)

    def open_json(self, stored: Any, place: str) -> Any:
        """A stored JSON value, opened if it was sealed (values stored in clear pass)."""
        if is_sealed(stored):
            return orjson.loads(self.open(stored, place))
        return stored

    def reseal(self, stored: Any, place: str) -> Any | None:
        """`stored` sealed under the current key, or None when it already is."""
        if is_sealed(stored) and sealed_key_id(stored) == self.current_id:
            return None
        return self.seal(orjson.dumps(self.open_json(stored, place)), place)
