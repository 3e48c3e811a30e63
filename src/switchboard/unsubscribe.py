"""Signed one-click unsubscribe links (RFC 8058): a token names (tenant, recipient, topic,
channel) and carries an HMAC-SHA256 of them under `SWITCHBOARD_UNSUBSCRIBE_SECRET`, so the
endpoint needs no API key and a token cannot be altered to opt someone else out. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson

from switchboard.config import Settings

MAX_TOKEN = 2048  # characters; a longer one is refused before any work
_SIG_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return _b64(mac[:_SIG_BYTES])


def token(secret: str, tenant_id: str, recipient_id: str, topic: str, channel: str) -> str:
    payload = _b64(orjson.dumps([tenant_id, recipient_id, topic, channel]))
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: str, text: str) -> tuple[str, str, str, str] | None:
    """(tenant, recipient, topic, channel) of a token this hub signed; None for any other."""
    if not secret or len(text) > MAX_TOKEN or text.count(".") != 1:
        return None
    payload, sig = text.split(".")
    # bytes: compare_digest refuses non-ASCII text with a TypeError (a 500 on a crafted link)
    if not hmac.compare_digest(sig.encode(), _sign(secret, payload).encode()):
        return None
    try:
        value = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, str) for v in value)):
        return None
    return value[0], value[1], value[2], value[3]


def link(
    settings: Settings, tenant_id: str, recipient_id: str, topic: str, channel: str
) -> str | None:
    """The unsubscribe URL for one (recipient, topic, channel); None without a secret."""
    if not settings.unsubscribe_secret:
        return None
    base = settings.public_url.rstrip("/") or f"http://{settings.host}:{settings.port}"
    signed = token(settings.unsubscribe_secret, tenant_id, recipient_id, topic, channel)
    return f"{base}/v1/unsubscribe/{signed}"
