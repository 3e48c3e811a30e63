"""The dashboard's session cookie and CSRF tokens. Pure: values in, values out.

A session names the API key that signed in (its id and its prefix, never the key itself), the
expiry and a random nonce, signed with HMAC-SHA256 under the dashboard's secret. The key is
looked up on every request, so revoking it ends its sessions. The CSRF token of a session is an
HMAC of its nonce: a page can only carry it if it was rendered for that session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

COOKIE = "sb_session"
LOGIN_COOKIE = "sb_login"  # the sign-in form's own CSRF token (there is no session yet)
MAX_COOKIE = 1024  # characters; a longer cookie is refused before any work
_SIG_BYTES = 32


@dataclass(frozen=True)
class Session:
    key_id: str
    prefix: str
    expires_us: int
    nonce: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}:{payload}".encode(), hashlib.sha256).digest())


def new_session(key_id: str, prefix: str, expires_us: int) -> Session:
    return Session(key_id, prefix, expires_us, secrets.token_urlsafe(16))


def encode(secret: bytes, session: Session) -> str:
    payload = _b64(
        orjson.dumps([session.key_id, session.prefix, session.expires_us, session.nonce])
    )
    return f"{payload}.{_mac(secret, 'session', payload)}"


def decode(secret: bytes, cookie: str | None, now_us: int) -> Session | None:
    """The session a cookie carries, or None when it is missing, altered or expired."""
    if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
        return None
    payload, sig = cookie.split(".")
    if not hmac.compare_digest(sig, _mac(secret, "session", payload)):
        return None
    try:
        value = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not (
        isinstance(value, list)
        and len(value) == 4
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and isinstance(value[2], int)
        and isinstance(value[3], str)
    ):
        return None
    if value[2] <= now_us:
        return None
    return Session(value[0], value[1], value[2], value[3])


def csrf_token(secret: bytes, nonce: str) -> str:
    """The token every form of the session carries (and the sign-in form, for its nonce)."""
    return _mac(secret, "csrf", nonce)


def csrf_ok(secret: bytes, nonce: str | None, sent: str | None) -> bool:
    if not nonce or not sent:
        return False
    return hmac.compare_digest(sent, csrf_token(secret, nonce))
