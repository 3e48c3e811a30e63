"""Outbound webhook signing and inbound signature verification (pure: values in, values out).

Outbound deliveries are signed the Standard Webhooks way (https://www.standardwebhooks.com, what
Svix uses). Inbound provider webhooks are checked by a `Preset`: Standard Webhooks, Stripe, GitHub,
a generic HMAC, a static token (Asaas, the WPP gateway, Z-API), Twilio's signature over the URL and
the form, or nothing. Every check takes the current time as an argument, compares in constant
time, and accepts any of several secrets, so a secret can be rotated with the old and new one
active side by side.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from switchboard.errors import SwitchboardError
from switchboard.masking import mask_headers  # re-exported: the channels and sources use it

__all__ = [
    "PRESETS",
    "HmacSpec",
    "Preset",
    "SignatureError",
    "check_ip",
    "decode_secret",
    "generate_secret",
    "mask_headers",
    "sign_standard",
    "standard_headers",
    "traceparent",
    "verify",
    "verify_github",
    "verify_hmac",
    "verify_standard",
    "verify_stripe",
    "verify_token",
    "verify_twilio",
]

SignatureReason = Literal[
    "missing_header",
    "bad_signature",
    "stale_timestamp",
    "bad_format",
    "ip_not_allowed",
    "no_secret",
]


class SignatureError(SwitchboardError):
    """The webhook signature could not be verified."""

    def __init__(self, reason: SignatureReason, message: str | None = None) -> None:
        super().__init__(message or reason.replace("_", " "))
        self.reason: SignatureReason = reason


# --- helpers ---------------------------------------------------------------------------------

_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _get(lowered: Mapping[str, str], *names: str) -> str | None:
    """The first non-empty value among `names` (already lowercase)."""
    for name in names:
        value = lowered.get(name)
        if value:
            return value.strip()
    return None


def _require(lowered: Mapping[str, str], *names: str) -> str:
    value = _get(lowered, *names)
    if value is None:
        raise SignatureError("missing_header", f"missing header {names[0]}")
    return value


def _active(secrets: Sequence[str]) -> list[str]:
    active = [s for s in secrets if s]
    if not active:
        raise SignatureError("no_secret", "no secret is configured for this source")
    return active


def _check_timestamp(raw: str, now: int, tolerance: int) -> int:
    # 12 digits reach the year 33658; more would only be refused as stale, after Python's
    # integer conversion (which refuses past 4,300 digits) had done the work
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise SignatureError("bad_format", "timestamp is not an integer number of seconds")
    timestamp = int(raw)
    if abs(now - timestamp) > tolerance:
        raise SignatureError("stale_timestamp", f"timestamp is more than {tolerance}s from now")
    return timestamp


def _any_equal(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    # Compare every pair (no early exit) so timing says nothing about which secret matched.
    matched = False
    for e in expected:
        for g in given:
            matched |= hmac.compare_digest(e, g)
    return matched


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- Standard Webhooks -----------------------------------------------------------------------


def generate_secret() -> str:
    """A new Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return _SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(24)).decode("ascii")


@functools.lru_cache(maxsize=4096)  # one decode per secret, not per signed request
def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a Standard Webhooks secret.

    Like the reference `standardwebhooks` library, the ``whsec_`` prefix is optional and the rest is
    always base64 (padding optional). Raises ValueError for an empty or non-base64 secret.
    """
    body = secret.removeprefix(_SECRET_PREFIX)
    key = _b64decode(body)
    if key is None:
        raise ValueError("webhook secret is not base64 (expected whsec_<base64>)")
    if not key:
        raise ValueError("webhook secret may not be empty")
    return key


def _standard_mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_standard(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: ``v1,<base64>`` per secret, space-separated."""
    active = [s for s in secrets if s]
    if not active:
        raise ValueError("at least one secret is needed to sign a webhook")
    return " ".join(
        "v1," + base64.b64encode(_standard_mac(decode_secret(s), msg_id, timestamp, body)).decode()
        for s in active
    )


def standard_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one outbound attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard(msg_id, timestamp, body, secrets),
    }


def verify_standard(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int = 300,
) -> None:
    """Check a Standard Webhooks (or Svix: ``svix-*`` headers) signature; raise SignatureError."""
    active = _active(secrets)
    lowered = _lower(headers)
    msg_id = _require(lowered, "webhook-id", "svix-id")
    raw_ts = _require(lowered, "webhook-timestamp", "svix-timestamp")
    raw_sig = _require(lowered, "webhook-signature", "svix-signature")
    timestamp = _check_timestamp(raw_ts, now, tolerance)

    given: list[bytes] = []
    for item in raw_sig.split():
        version, _, value = item.partition(",")
        decoded = _b64decode(value) if version == "v1" else None
        if decoded:
            given.append(decoded)
    if not given:
        raise SignatureError("bad_format", "no v1 signature in webhook-signature")
    try:
        keys = [decode_secret(s) for s in active]
    except ValueError as exc:
        raise SignatureError("no_secret", str(exc)) from exc
    expected = [_standard_mac(k, msg_id, timestamp, body) for k in keys]
    if not _any_equal(expected, given):
        raise SignatureError("bad_signature", "no signature matches")


# --- Stripe and GitHub -----------------------------------------------------------------------


def _hex_mac(secret: str, data: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), data, digest).hexdigest().encode()


def verify_stripe(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    tolerance: int = 300,
) -> None:
    """Check a ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>]`` header (HMAC-SHA256 of ``t.body``).

    Stripe uses the whole ``whsec_…`` string as the key (it is not base64-decoded).
    """
    active = _active(secrets)
    raw = _require(_lower(headers), "stripe-signature")
    raw_ts: str | None = None
    given: list[bytes] = []
    for item in raw.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            raw_ts = value
        elif key == "v1":
            given.append(value.lower().encode())
    if raw_ts is None or not given:
        raise SignatureError("bad_format", "Stripe-Signature needs t= and at least one v1=")
    _check_timestamp(raw_ts, now, tolerance)
    signed = raw_ts.encode() + b"." + body
    if not _any_equal([_hex_mac(s, signed) for s in active], given):
        raise SignatureError("bad_signature", "no signature matches")


def verify_github(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` (HMAC-SHA256 of the body)."""
    active = _active(secrets)
    raw = _require(_lower(headers), "x-hub-signature-256")
    if not raw.startswith("sha256="):
        raise SignatureError("bad_format", "X-Hub-Signature-256 must start with sha256=")
    given = raw.removeprefix("sha256=").lower().encode()
    if not _any_equal([_hex_mac(s, body) for s in active], [given]):
        raise SignatureError("bad_signature", "no signature matches")


# --- generic HMAC and static tokens ----------------------------------------------------------


@dataclass(frozen=True)
class HmacSpec:
    """How a provider signs: which header, digest, encoding, prefix, and what is signed."""

    header: str
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" before the digest
    signed: Literal["body", "timestamp.body"] = "body"
    timestamp_header: str | None = None  # when set, the timestamp is also checked for staleness
    tolerance: int = 300

    def __post_init__(self) -> None:
        if self.signed == "timestamp.body" and not self.timestamp_header:
            raise ValueError("HmacSpec: signed='timestamp.body' needs a timestamp_header")


def verify_hmac(
    spec: HmacSpec,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
) -> None:
    """Check a provider's HMAC signature described by `spec` (secrets are used as UTF-8 bytes)."""
    active = _active(secrets)
    lowered = _lower(headers)
    raw = _require(lowered, spec.header.lower())
    if not raw.startswith(spec.prefix):
        raise SignatureError("bad_format", f"{spec.header} must start with {spec.prefix!r}")
    value = raw[len(spec.prefix) :]

    data = body
    if spec.timestamp_header:
        raw_ts = _require(lowered, spec.timestamp_header.lower())
        _check_timestamp(raw_ts, now, spec.tolerance)
        if spec.signed == "timestamp.body":
            data = raw_ts.encode() + b"." + body

    digests = [hmac.new(s.encode(), data, spec.algorithm).digest() for s in active]
    if spec.encoding == "hex":
        expected = [d.hex().encode() for d in digests]
        given = value.lower().encode()
    else:
        expected = digests
        decoded = _b64decode(value)
        if decoded is None:
            raise SignatureError("bad_format", f"{spec.header} is not base64")
        given = decoded
    if not _any_equal(expected, [given]):
        raise SignatureError("bad_signature", "no signature matches")


def verify_token(
    header_names: Sequence[str], headers: Mapping[str, str], secrets: Sequence[str]
) -> None:
    """Check a static shared token sent in any of `header_names` (Asaas, WPP gateway, Z-API)."""
    active = _active(secrets)
    lowered = _lower(headers)
    given = [v.encode() for n in header_names if (v := _get(lowered, n.lower())) is not None]
    if not given:
        raise SignatureError("missing_header", f"missing header {header_names[0]}")
    if not _any_equal([s.encode() for s in active], given):
        raise SignatureError("bad_signature", "token does not match")


MAX_TWILIO_PARAMS = 200  # a status callback carries about 15; more is not Twilio


def twilio_signature(url: str, params: Sequence[tuple[str, str]], token: str) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 of HMAC-SHA1, keyed with the auth token, over the
    full URL it called followed by every POST parameter's name and value, sorted by name."""
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), "sha1").digest()).decode()


def verify_twilio(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], url: str
) -> None:
    """Check a Twilio callback (a form POST) against the URL Twilio was given to call."""
    active = _active(secrets)
    value = _get(_lower(headers), "x-twilio-signature")
    if value is None:
        raise SignatureError("missing_header", "missing header X-Twilio-Signature")
    if not url:
        raise SignatureError("no_secret", "the source has no URL to check Twilio's signature on")
    given = _b64decode(value)
    if given is None:
        raise SignatureError("bad_format", "X-Twilio-Signature is not base64")
    try:
        params = parse_qsl(
            body.decode(),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=MAX_TWILIO_PARAMS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError("bad_format", f"the body is not a form: {exc}") from None
    expected = [base64.b64decode(twilio_signature(url, params, s)) for s in active]
    if not _any_equal(expected, [given]):
        raise SignatureError("bad_signature", "no signature matches")


def check_ip(remote: str, allowlist: Sequence[str]) -> None:
    """Raise SignatureError('ip_not_allowed') unless `remote` is in one of the CIDRs.

    An empty allowlist allows every address. A malformed allowlist entry raises ValueError (it is
    a configuration mistake, not a bad request).
    """
    if not allowlist:
        return
    networks = [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in allowlist]
    try:
        address = ipaddress.ip_address(remote.strip())
    except ValueError as exc:
        raise SignatureError("ip_not_allowed", f"{remote!r} is not an IP address") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # "::ffff:10.0.0.1" from a dual-stack socket
    if not any(address in network for network in networks):
        raise SignatureError("ip_not_allowed", f"{address} is not in the allowlist")


# --- presets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """How a source's inbound webhooks are verified."""

    kind: Literal["standard", "stripe", "github", "hmac", "token", "twilio", "none"]
    hmac: HmacSpec | None = None  # kind="hmac"
    token_headers: tuple[str, ...] = ()  # kind="token": any of these headers carries the token
    tolerance: int = 300  # standard and stripe timestamps

    def __post_init__(self) -> None:
        if self.kind == "hmac" and self.hmac is None:
            raise ValueError("Preset(kind='hmac') needs an HmacSpec")
        if self.kind == "token" and not self.token_headers:
            raise ValueError("Preset(kind='token') needs token_headers")


PRESETS: Mapping[str, Preset] = {
    "standard": Preset("standard"),
    "svix": Preset("standard"),
    "stripe": Preset("stripe"),
    "github": Preset("github"),
    "asaas": Preset("token", token_headers=("asaas-access-token", "x-asaas-access-token")),
    "wpp_gateway": Preset("token", token_headers=("x-gateway-secret",)),
    "zapi": Preset("token", token_headers=("client-token",)),
    "whatsapp_cloud": Preset("github"),  # X-Hub-Signature-256 with the Meta app secret
    "pagarme": Preset("hmac", hmac=HmacSpec("x-hub-signature", "sha1", "hex", "sha1=")),
    "twilio": Preset("twilio"),
    "none": Preset("none"),
}
"""Named presets for the providers the seed systems use; sources refer to them by name."""


def verify(
    preset: Preset,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: int,
    url: str = "",
) -> None:
    """Verify an inbound webhook with `preset`; raise SignatureError on any failure. `url` is
    the address the provider called (Twilio signs it)."""
    match preset.kind:
        case "standard":
            verify_standard(headers, body, secrets, now=now, tolerance=preset.tolerance)
        case "stripe":
            verify_stripe(headers, body, secrets, now=now, tolerance=preset.tolerance)
        case "github":
            verify_github(headers, body, secrets)
        case "hmac":
            assert preset.hmac is not None  # checked in Preset.__post_init__
            verify_hmac(preset.hmac, headers, body, secrets, now=now)
        case "token":
            verify_token(preset.token_headers, headers, secrets)
        case "twilio":
            verify_twilio(headers, body, secrets, url)
        case "none":
            return


# --- logging and tracing ---------------------------------------------------------------------

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def _hex_id(value: str, pattern: re.Pattern[str], length: int, salt: str) -> str:
    candidate = value.strip().lower().replace("-", "")  # a UUID keeps its digits
    if pattern.fullmatch(candidate) and candidate.strip("0"):
        return candidate
    # W3C forbids all-zero ids; a hash of anything else is stable across attempts and processes.
    digest = hashlib.sha256((salt + value).encode()).hexdigest()[:length]
    return digest if digest.strip("0") else "1".rjust(length, "0")


def traceparent(trace_id: str, span_id: str | None = None) -> str:
    """A W3C ``traceparent`` value, ``00-<32 hex>-<16 hex>-01`` (sampled).

    A trace id that is already 32 hex digits (or a UUID) is used as is; anything else is hashed to
    a stable one. Without a span id the parent id is derived from the trace id.
    """
    trace = _hex_id(trace_id, _HEX32, 32, "")
    if span_id is None:
        span = _hex_id("span:" + trace, _HEX16, 16, "")  # never 16 hex, so always hashed
    else:
        span = _hex_id(span_id, _HEX16, 16, "span:")
    return f"00-{trace}-{span}-01"
