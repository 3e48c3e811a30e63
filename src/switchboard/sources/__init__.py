"""Inbound sources: who sends us provider webhooks, how each is verified, and how it is mapped.

A `Source` is a tenant's receiving endpoint (``POST /v1/sources/{id}/webhook``) with a verification
preset (see `signing.PRESETS`), up to two active secrets, an optional IP allowlist, the mapping
version it pins and the `source` name its events get. `parse_source` validates the API/CLI form of
one; the pipeline that receives requests lives in `sources/inbound.py`.
"""

from __future__ import annotations

import ipaddress
import re
import secrets as _secrets
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from switchboard import masking
from switchboard.errors import BadRequest
from switchboard.signing import PRESETS, HmacSpec, Preset, generate_secret

__all__ = [
    "MAX_SECRETS",
    "PRESET_NAMES",
    "Counters",
    "Source",
    "build_preset",
    "mask_secret",
    "new_secret_for",
    "new_source_id",
    "parse_source",
]

MAX_SECRETS = 2  # the current secret and the one being rotated out
PresetName = Literal[
    "standard",
    "svix",
    "stripe",
    "github",
    "hmac",
    "token",
    "asaas",
    "wpp_gateway",
    "zapi",
    "whatsapp_cloud",
    "pagarme",
    "twilio",
    "none",
]
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}(?!\n)$")
_HMAC_FIELDS = {
    "header",
    "algorithm",
    "encoding",
    "prefix",
    "signed",
    "timestamp_header",
    "tolerance",
}


@dataclass(frozen=True)
class Counters:
    received: int = 0  # every request that reached the receiving URL
    verified: int = 0  # requests whose signature/token/IP checks passed
    failed_verification: int = 0  # answered 401 (bad signature) or 403 (IP not allowed)
    events_produced: int = 0  # events stored from this source (including business duplicates)


@dataclass(frozen=True)
class Source:
    id: str
    tenant_id: str
    name: str
    preset: str  # a name of PRESET_NAMES
    # hmac: HmacSpec fields; token: {"headers": [...]}; twilio: {"url"}; tolerance
    preset_config: dict[str, Any]
    secrets: tuple[str, ...]
    ip_allowlist: tuple[str, ...] = ()
    mapping: str | None = None  # mapping name; None stores requests without producing events
    mapping_version: str | None = None  # pinned version; None = the newest one
    event_source: str = "webhook"  # the `source` of the events this source produces
    dedup_window: int | None = None  # seconds; overrides the mapping's business-dedup windows
    enabled: bool = True
    created_us: int = 0
    updated_us: int = 0
    counters: Counters = field(default_factory=Counters)

    def verifier(self) -> Preset:
        return build_preset(self.preset, self.preset_config)


def public_preset_config(config: dict[str, Any]) -> dict[str, Any]:
    """The preset config as API answers show it (api/sources.py): a verify token (WhatsApp
    Cloud) is masked."""
    if isinstance(config.get("verify_token"), str):
        return {**config, "verify_token": masking.mask_value(config["verify_token"])}
    return config


def new_source_id() -> str:
    """Unguessable: the receiving URL is public and carries no API key."""
    return "src_" + _secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def mask_secret(secret: str) -> str:
    return masking.mask_secret(secret)


def new_secret_for(preset: str) -> str | None:
    """A fresh secret in the form the preset expects (None for presets without one)."""
    if preset == "none":
        return None
    if preset in ("standard", "svix"):
        return generate_secret()
    if preset == "whatsapp_cloud":
        return None  # the app secret comes from Meta: the create body must carry it
    return "sbs_" + _secrets.token_urlsafe(32)


def _bad(path: str, message: str) -> BadRequest:
    return BadRequest(
        f"{path.lstrip('/')}: {message}", details=[{"path": path, "message": message}]
    )


def build_preset(name: str, config: dict[str, Any]) -> Preset:
    """The signing.Preset for a source's preset name and its config; raises BadRequest."""
    if name not in PRESET_NAMES:
        raise _bad("/preset", f"must be one of {', '.join(PRESET_NAMES)}")
    tolerance = config.get("tolerance", 300)
    if not isinstance(tolerance, int) or isinstance(tolerance, bool) or not 1 <= tolerance <= 86400:
        raise _bad("/preset_config/tolerance", "must be an integer of seconds from 1 to 86400")
    if name == "hmac":
        unknown = set(config) - _HMAC_FIELDS
        if unknown:
            raise _bad("/preset_config", f"unknown HMAC fields: {', '.join(sorted(unknown))}")
        if not isinstance(config.get("header"), str) or not config["header"]:
            raise _bad("/preset_config/header", "the header that carries the signature is required")
        try:
            spec = HmacSpec(**config)
        except (TypeError, ValueError) as exc:
            raise _bad("/preset_config", str(exc)) from None
        for attr, allowed in (
            ("algorithm", ("sha1", "sha256", "sha512")),
            ("encoding", ("hex", "base64")),
            ("signed", ("body", "timestamp.body")),
        ):
            if getattr(spec, attr) not in allowed:
                raise _bad(f"/preset_config/{attr}", f"must be one of {', '.join(allowed)}")
        return Preset("hmac", hmac=spec)
    if name == "token":
        headers = config.get("headers")
        if (
            not isinstance(headers, list)
            or not headers
            or not all(isinstance(h, str) and h for h in headers)
        ):
            raise _bad("/preset_config/headers", "a list of header names carrying the token")
        return Preset("token", token_headers=tuple(h.lower() for h in headers))
    if name == "whatsapp_cloud":
        check_verify_token(config.get("verify_token"))
    if name == "twilio" and "url" in config:
        url = config["url"]
        if (
            not isinstance(url, str)
            or not url.startswith(("http://", "https://"))
            or len(url) > 2000
        ):
            raise _bad("/preset_config/url", "the http(s) URL Twilio calls (its StatusCallback)")
    preset = PRESETS[name]
    if preset.kind in ("standard", "stripe") and tolerance != preset.tolerance:
        return Preset(preset.kind, tolerance=tolerance)
    return preset


def check_verify_token(token: Any) -> None:
    """The token Meta's subscription handshake must echo: 8 to 200 printable ASCII characters."""
    if (
        not isinstance(token, str)
        or not 8 <= len(token) <= 200
        or not token.isascii()
        or not token.isprintable()
    ):
        raise _bad(
            "/preset_config/verify_token",
            "required for whatsapp_cloud: the verify token set in the Meta app, "
            "8 to 200 printable ASCII characters",
        )


def _str_list(body: dict[str, Any], key: str, limit: int) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(f"/{key}", "must be a list of non-empty strings")
    if len(value) > limit:
        raise _bad(f"/{key}", f"at most {limit} entries")
    return value


def parse_source(body: Any, existing: Source | None = None) -> dict[str, Any]:
    """Validate a create (existing=None) or update body into the fields of a Source.

    Raises BadRequest naming the field. An update only carries the fields it changes.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    known = {
        "name",
        "preset",
        "preset_config",
        "secrets",
        "ip_allowlist",
        "mapping",
        "mapping_version",
        "event_source",
        "dedup_window",
        "enabled",
    }
    unknown = set(body) - known
    if unknown:
        raise _bad("/" + sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    if existing is None or "name" in body:
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _bad("/name", "lowercase letters, digits, '.', '_' or '-' (at most 63)")
        out["name"] = name
    if existing is None and "preset" not in body:
        raise _bad(
            "/preset",
            "is required: "
            + ", ".join(PRESET_NAMES)
            + " ('none' only for trusted internal networks)",
        )
    preset = body.get("preset", existing.preset if existing else None)
    config = body.get("preset_config", existing.preset_config if existing else {}) or {}
    if not isinstance(config, dict):
        raise _bad("/preset_config", "must be an object")
    build_preset(str(preset), config)
    if existing is None and preset == "whatsapp_cloud" and not body.get("secrets"):
        raise _bad("/secrets", "required for whatsapp_cloud: the Meta app secret")
    out["preset"], out["preset_config"] = preset, config
    if "secrets" in body:
        out["secrets"] = tuple(_str_list(body, "secrets", MAX_SECRETS))
    if "ip_allowlist" in body:
        cidrs = _str_list(body, "ip_allowlist", 100)
        for i, cidr in enumerate(cidrs):
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise _bad(f"/ip_allowlist/{i}", f"{cidr!r} is not an IP network (CIDR)") from None
        out["ip_allowlist"] = tuple(c.strip() for c in cidrs)
    for key in ("mapping", "mapping_version", "event_source"):
        if key in body:
            value = body[key]
            if value is not None and (not isinstance(value, str) or not value or len(value) > 200):
                raise _bad(f"/{key}", "must be a non-empty string of at most 200 characters")
            out[key] = value
    if "event_source" in out and out["event_source"] is None:
        raise _bad("/event_source", "may not be null")
    if "dedup_window" in body:
        window = body["dedup_window"]
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= 90 * 86400
        ):
            raise _bad("/dedup_window", "seconds from 0 to 7776000 (90 days), or null")
        out["dedup_window"] = window
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise _bad("/enabled", "must be true or false")
        out["enabled"] = body["enabled"]
    return out
