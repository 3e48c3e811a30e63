"""Credentials are write-only: how every API answer, attempt record and request log shows them.

A credential shows at most its last 4 characters (``…wxyz``, and only when it is 16 characters
or longer, so at most a quarter of it); a signing secret shows only its kind (``whsec_…``). The
rules are pure functions of the values, so a masked value sent back unchanged (a client that
GETs a destination and PUTs it back) can be recognised and the stored credential kept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["mask_headers", "mask_secret", "mask_url", "mask_value", "sensitive_header"]

MASK = "…"
_SHOWN_FROM = 16  # shorter credentials show nothing of themselves
_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "apikey"})
_SECRET_KINDS = ("whsec_", "sbs_")  # generated-secret prefixes: say the kind, not the secret

_SENSITIVE_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SENSITIVE_PARTS = (
    "secret",
    "token",
    "signature",
    "key",
    "password",
    "passwd",
    "auth",
    "credential",
    "session",
    "private",
)
# a path segment this long mixing letters and digits is taken for a token (Slack, Discord,
# Z-API and many receivers put the credential in the URL path)
_TOKENISH = re.compile(r"(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9_\-.~%]{16,}")


def mask_value(value: str) -> str:
    """``Bearer …wxyz``: an auth scheme word is kept, then at most the last 4 characters."""
    scheme, sep, rest = value.partition(" ")
    if sep and scheme.lower() in _SCHEMES:
        return f"{scheme} {_tail(rest.strip())}"
    return _tail(value)


def _tail(value: str) -> str:
    return MASK + value[-4:] if len(value) >= _SHOWN_FROM else MASK


def mask_secret(secret: str) -> str:
    """A signing secret or token of a destination or source: its kind prefix only."""
    for kind in _SECRET_KINDS:
        if secret.startswith(kind):
            return kind + MASK
    return MASK


@functools.lru_cache(maxsize=4096)  # header names repeat: decide once per name
def sensitive_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SENSITIVE_NAMES or any(p in lowered for p in _SENSITIVE_PARTS)


def mask_headers(
    headers: Mapping[str, str],
    also: Collection[str] = (),
    secrets: Collection[str] = (),
) -> dict[str, str]:
    """A copy of `headers` safe to show: credential headers (by name, or named in `also`, or
    carrying one of `secrets`) keep at most their last 4 characters."""
    lowered_also = {n.lower() for n in also} if also else None
    masked: dict[str, str] = {}
    for name, value in headers.items():
        if (
            sensitive_header(name)
            or (lowered_also is not None and name.lower() in lowered_also)
            or (secrets and any(s and s in value for s in secrets))
        ):
            masked[name] = mask_value(value)
        else:
            masked[name] = value
    return masked


def mask_url(url: str, *, last_segment: bool = False) -> str:
    """The URL with its credentials masked: a password in it, credential query values, and
    token-like path segments (with `last_segment`, the last segment whatever it looks like:
    Slack's and Discord's webhook URLs end in their token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _tail(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    segments = parts.path.split("/")
    for i, segment in enumerate(segments):
        is_last = i == len(segments) - 1 or (i == len(segments) - 2 and segments[-1] == "")
        if segment and ((last_segment and is_last) or _TOKENISH.fullmatch(segment)):
            segments[i] = _tail(segment)
    pairs = []
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, value = pair.partition("=")
        if eq and (sensitive_header(unquote_plus(name)) or _TOKENISH.fullmatch(value)):
            value = _tail(unquote_plus(value))
        pairs.append(name + eq + value)
    query = "&".join(pairs)
    return urlunsplit((parts.scheme, netloc, "/".join(segments), query, parts.fragment))


def restore_masked(new: Any, old: Any, masked_old: Any) -> Any:
    """`new` with every value equal to its masked stored form replaced by the stored value:
    sending back what an answer showed keeps the credential instead of storing ``…wxyz``."""
    if isinstance(new, dict) and isinstance(old, dict) and isinstance(masked_old, dict):
        return {
            k: restore_masked(v, old[k], masked_old[k]) if k in old and k in masked_old else v
            for k, v in new.items()
        }
    if isinstance(new, str) and new == masked_old and masked_old != old:
        return old
    return new
