"""What the audit log records about a change, decided from values: the action's name from the
route that served it, and the before/after documents with every credential masked."""

from __future__ import annotations

from typing import Any

from switchboard.masking import mask_secret, mask_url, mask_value, sensitive_header

_VERBS = {"PUT": "put", "PATCH": "update", "DELETE": "delete"}
# names that contain a sensitive word but hold no secret: ids and the shown key prefix
_PLAIN_NAMES = frozenset({"id", "key_id", "prefix", "keys", "scopes", "secret_kind"})
_SECRET_PREFIXES = ("whsec_", "sbs_")  # generated signing secrets: shown as their kind only
_KEY_PREFIX = "sb_"  # the hub's API keys
_MAX_DEPTH = 32


def action_name(method: str, path: str) -> str:
    """`destinations.update` for ``PATCH /v1/destinations/{ref}``: the resource (the first
    literal segment), any further literal segments, and the verb; a POST to a collection is
    `create`, a POST to a named action is that action (`dlq.retry`, `runs.cancel`)."""
    literals = [s for s in path.removeprefix("/v1/").split("/") if s and not s.startswith("{")]
    resource, rest = (literals[0] if literals else "root"), literals[1:]
    if method == "POST":
        return ".".join([resource, *rest]) if rest else f"{resource}.create"
    return ".".join([resource, *rest, _VERBS.get(method, method.lower())])


def mask_document(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON document safe to keep: values under credential-like names (`secret`,
    `token`, `password`, `authorization`, …), anything shaped like one of the hub's own keys
    or secrets, and the credentials inside URLs are masked."""
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, item in value.items():
            if isinstance(name, str) and name.lower() in _PLAIN_NAMES:
                out[name] = item
            elif isinstance(item, str) and item.startswith(_SECRET_PREFIXES):
                out[name] = mask_secret(item)
            elif (
                isinstance(name, str)
                and sensitive_header(name)
                and isinstance(item, str | int | float)
                and not isinstance(item, bool)
            ):
                out[name] = mask_value(str(item))
            else:
                out[name] = mask_document(item, depth + 1)
        return out
    if isinstance(value, list):
        return [mask_document(item, depth + 1) for item in value]
    if isinstance(value, str):
        if value.startswith(_SECRET_PREFIXES):
            return mask_secret(value)
        if value.startswith(_KEY_PREFIX):
            return mask_value(value)
        if value.startswith(("http://", "https://")):
            return mask_url(value)
    return value
