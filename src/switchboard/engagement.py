"""Email engagement (pure): a destination's `tracking` settings, the signed tokens of its open
pixel and tracked links, the rewriting of a message's HTML, and the event an open or a click
becomes.

A token names everything the public endpoints need (tenant, recipient, delivery, campaign, the
event type to record, and for a link its id and target URL) and carries an HMAC-SHA256 of it under
`SWITCHBOARD_TRACKING_SECRET`, so they take no API key, look nothing up, and a click can only go
to the URL this hub wrote into the message: no open redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from switchboard.envelope import TYPE_RE

__all__ = [
    "MAX_LINKS",
    "MAX_TOKEN",
    "MAX_URL",
    "Mark",
    "Stamp",
    "Tracking",
    "campaign_of",
    "event_for",
    "parse_tracking",
    "rewrite",
    "token",
    "verify",
]

MAX_TOKEN = 4096  # characters; a longer token is refused before any work
MAX_URL = 2048  # characters of a link's target; a longer link is left as it is (not tracked)
MAX_LINKS = 100  # the most links one message may have rewritten (`tracking.max_links`)
DEFAULT_LINKS = 50
MAX_HTML = 2 * 1024 * 1024  # characters; a larger HTML body is sent untracked
MIN_WINDOW, MAX_WINDOW, DEFAULT_WINDOW = 60, 7 * 86400, 3600  # seconds
MAX_USER_AGENT = 300
_SIG_BYTES = 16
_DOMAIN = b"switchboard-engagement:"  # a token of another signer never verifies here
_LINK_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PATH = re.compile(r"[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,7}")
_KEYS = {
    "opens",
    "clicks",
    "opened_type",
    "clicked_type",
    "window",
    "campaign_path",
    "max_links",
}
# messaging channels (whatsapp, whatsapp_cloud, sms): replies to their messages
_REPLY_KEYS = {"replies", "replied_type", "campaign_path"}
# linear scans: an <a …> start tag, then its href and data-link-id attributes
_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_DATA_ID = re.compile(r"""\sdata-link-id\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # spaces and control characters: no URL has them
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@dataclass(frozen=True)
class Tracking:
    """A destination's `config.tracking`: what to track and which event types to record."""

    opens: bool = False
    clicks: bool = False
    opened_type: str = "campaign_opened"
    clicked_type: str = "campaign_clicked"
    window: int = DEFAULT_WINDOW  # seconds: repeats within one window count once
    campaign_path: str = "data.campaign_id"
    max_links: int = DEFAULT_LINKS
    replies: bool = False  # messaging channels: a reply to the message records `replied_type`
    replied_type: str = "campaign_replied"

    @property
    def on(self) -> bool:
        return self.opens or self.clicks


def _seconds(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) > 1 and value[:-1].isdigit() and len(value) < 12:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(value[-1])
        if unit:
            return int(value[:-1]) * unit
    return None


def parse_tracking(raw: Any, *, email: bool = True) -> tuple[Tracking | None, list[str]]:
    """(the settings or None when absent, problems each naming its `config.tracking.*` field).
    An email destination tracks opens and clicks; a messaging one (`email=False`) replies."""
    if raw is None:
        return None, []
    example = "{opens: true, clicks: true}" if email else "{replies: true}"
    if not isinstance(raw, dict):
        return None, [f"config.tracking: must be an object such as {example}"]
    known = _KEYS if email else _REPLY_KEYS
    problems = [
        f"config.tracking.{k}: unknown field (known: {', '.join(sorted(known))})"
        for k in sorted(set(raw) - known)
    ]
    values: dict[str, Any] = {}
    for name in ("opens", "clicks", "replies"):
        if name in raw:
            if not isinstance(raw[name], bool):
                problems.append(f"config.tracking.{name}: true or false")
            else:
                values[name] = raw[name]
    for name in ("opened_type", "clicked_type", "replied_type"):
        if name in raw:
            if not isinstance(raw[name], str) or not TYPE_RE.match(raw[name]):
                example = f"campaign_{name[:-5]}"
                problems.append(f"config.tracking.{name}: an event type name such as {example}")
            else:
                values[name] = raw[name]
    if "window" in raw:
        window = _seconds(raw["window"])
        if window is None or not MIN_WINDOW <= window <= MAX_WINDOW:
            problems.append(
                f"config.tracking.window: a duration from {MIN_WINDOW}s to 7d, such as 1h"
            )
        else:
            values["window"] = window
    if "campaign_path" in raw:
        path = raw["campaign_path"]
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            problems.append("config.tracking.campaign_path: a dotted path such as data.campaign_id")
        else:
            values["campaign_path"] = path
    if "max_links" in raw:
        n = raw["max_links"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LINKS:
            problems.append(f"config.tracking.max_links: a whole number from 1 to {MAX_LINKS}")
        else:
            values["max_links"] = n
    return (None if problems else Tracking(**values)), problems


def _lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def campaign_of(
    event: dict[str, Any], tracking: Tracking, automation: str | None, route: str | None
) -> str | None:
    """The campaign a message belongs to: the event's `campaign_path` (default
    `data.campaign_id`), its `context.campaign_id`, the automation whose step sent it, or the
    route's name; None when it has none of them (the message then goes out untracked)."""
    for value in (
        _lookup(event, tracking.campaign_path),
        _lookup(event, "context.campaign_id"),
        automation,
        route,
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and 0 < len(value) <= 200 and "\x00" not in value:
            return value
    return None


# --- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """What one token says: an open (`o`) or a click (`c`) of one delivered message."""

    kind: Literal["o", "c"]
    tenant_id: str
    subject: str | None
    delivery_id: str
    campaign_id: str
    type: str  # the event type to record
    sent: int  # epoch seconds the message was sent: dedupe windows count from it
    window: int  # seconds
    link_id: str | None = None
    url: str | None = None

    def as_list(self) -> list[Any]:
        head = [self.kind, self.tenant_id, self.subject, self.delivery_id, self.campaign_id]
        tail = [self.link_id, self.url] if self.kind == "c" else []
        return [*head, self.type, self.sent, self.window, *tail]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sign(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()
    return _b64(mac[:_SIG_BYTES])


def token(secret: str, mark: Mark) -> str:
    payload = _b64(orjson.dumps(mark.as_list()))
    return f"{payload}.{_sign(secret, payload)}"


def _text(value: Any, most: int = 200) -> bool:
    return isinstance(value, str) and 0 < len(value) <= most


def verify(secret: str, text: str) -> Mark | None:
    """The mark of a token this hub signed; None for any other (too long, altered, another key)."""
    if not secret or len(text) > MAX_TOKEN or text.count(".") != 1:
        return None
    payload, sig = text.split(".")
    # bytes: compare_digest refuses non-ASCII text with a TypeError
    if not hmac.compare_digest(sig.encode(), _sign(secret, payload).encode()):
        return None
    try:
        v = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(v, list) or len(v) not in (8, 10) or v[0] not in ("o", "c"):
        return None
    if not all(_text(x) for x in (v[1], v[3], v[4], v[5])) or not (v[2] is None or _text(v[2])):
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (v[6], v[7])):
        return None
    if v[0] == "c" and (len(v) != 10 or not _text(v[8], 64) or not _text(v[9], MAX_URL)):
        return None
    link = (v[8], v[9]) if v[0] == "c" else (None, None)
    return Mark(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], *link)


def safe_url(url: str) -> bool:
    """An absolute http(s) URL with a host, no control characters, within MAX_URL."""
    if len(url) > MAX_URL or _CONTROL.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


# --- the message's HTML -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """What the worker hands the email channel to track one message: everything a token needs
    but the link. `base` is the hub's public URL; links already under it are left alone."""

    secret: str = ""
    base: str = ""
    tenant_id: str = ""
    subject: str | None = None
    delivery_id: str = ""
    campaign_id: str = ""
    tracking: Tracking = Tracking()
    sent: int = 0

    def __repr__(self) -> str:  # never print the secret
        return f"Stamp(delivery_id={self.delivery_id!r}, campaign_id={self.campaign_id!r})"

    def mark(
        self, kind: Literal["o", "c"], link_id: str | None = None, url: str | None = None
    ) -> Mark:
        t = self.tracking
        etype = t.opened_type if kind == "o" else t.clicked_type
        return Mark(
            kind,
            self.tenant_id,
            self.subject,
            self.delivery_id,
            self.campaign_id,
            etype,
            self.sent,
            t.window,
            link_id,
            url,
        )

    def pixel_url(self) -> str:
        return f"{self.base}/v1/engagement/open/{token(self.secret, self.mark('o'))}"

    def link_url(self, link_id: str, url: str) -> str:
        return f"{self.base}/v1/engagement/click/{token(self.secret, self.mark('c', link_id, url))}"


def rewrite(body: str, stamp: Stamp) -> tuple[str, int]:
    """The HTML with its http(s) links pointing at the hub's click endpoint (at most
    `tracking.max_links`; the others, and mailto:, tel:, anchors and the hub's own links, as
    they were) and the open pixel before `</body>`; and how many links were rewritten. A body
    over MAX_HTML characters is returned as it is."""
    if len(body) > MAX_HTML or not stamp.tracking.on:
        return body, 0
    rewritten = 0
    limit = stamp.tracking.max_links if stamp.tracking.clicks else 0

    def anchor(found: re.Match[str]) -> str:
        nonlocal rewritten
        tag = found.group(0)
        href = _HREF.search(tag)
        if href is None or rewritten >= limit:
            return tag
        raw = next((g for g in href.groups() if g is not None), "")
        url = html.unescape(raw).strip()
        if not safe_url(url) or (stamp.base and url.startswith(stamp.base + "/")):
            return tag
        rewritten += 1
        named = _DATA_ID.search(tag)
        given = next((g for g in named.groups() if g is not None), "") if named else ""
        link_id = given if _LINK_ID.fullmatch(given) else f"link_{rewritten}"
        new = f' href="{html.escape(stamp.link_url(link_id, url))}"'
        return tag[: href.start()] + new + tag[href.end() :]

    out = _ANCHOR.sub(anchor, body) if limit else body
    if stamp.tracking.opens:
        pixel = (
            f'<img src="{html.escape(stamp.pixel_url())}" width="1" height="1" alt="" '
            'style="border:0;width:1px;height:1px">'
        )
        ends = list(_BODY_END.finditer(out))
        out = out[: ends[-1].start()] + pixel + out[ends[-1].start() :] if ends else out + pixel
    return out, rewritten


# --- what an open or a click records --------------------------------------------------------


def event_for(mark: Mark, now: int, user_agent: str | None) -> dict[str, Any]:
    """The event an open or a click records. Its id is the same for every repeat within one
    window (counted from when the message was sent), so ingest stores the first and answers the
    others as duplicates: a scanner's prefetch and the reader's own open count once."""
    bucket = max(0, now - mark.sent) // max(1, mark.window)
    key = f"{mark.kind}:{mark.tenant_id}:{mark.delivery_id}:{mark.link_id or ''}:{bucket}"
    data: dict[str, Any] = {"campaign_id": mark.campaign_id, "delivery_id": mark.delivery_id}
    if mark.kind == "c":
        data["link_id"] = mark.link_id
        data["url"] = mark.url
    agent = (user_agent or "")[:MAX_USER_AGENT]
    if agent:
        data["device"] = "mobile" if re.search(r"Mobi|Android|iPhone|iPad", agent) else "desktop"
    event: dict[str, Any] = {
        "id": "eng_" + hashlib.sha256(key.encode()).hexdigest()[:32],
        "type": mark.type,
        "data": data,
        "actor": {"type": "customer", **({"id": mark.subject} if mark.subject else {})},
        "context": {"delivery_id": mark.delivery_id, "campaign_id": mark.campaign_id},
    }
    if agent:
        event["context"]["user_agent"] = agent
    if mark.subject:
        event["subject"] = mark.subject
    return event


MAX_REPLY_TEXT = 4096  # characters of the reply kept in `message_text`


def reply_event(
    reply: dict[str, Any],
    *,
    delivery_id: str,
    campaign_id: str,
    replied_type: str,
    channel: str,
    recipient: str | None,
) -> dict[str, Any]:
    """The campaign event a reply to a campaign message records: of the campaign's recipient
    (the delivered event's subject, else the reply's), caused by the reply. Its id comes from
    the reply's, so a provider's retry or a reprocessing of the reply stores it once."""
    raw = reply.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    subject = recipient or reply.get("subject")
    out: dict[str, Any] = {
        "id": "rpl_" + hashlib.sha256(f"{reply['id']}:{replied_type}".encode()).hexdigest()[:32],
        "type": replied_type,
        "data": {"campaign_id": campaign_id, "delivery_id": delivery_id, "channel": channel},
        "actor": {"type": "customer", **({"id": subject} if subject else {})},
        "causation_id": str(reply["id"]),
        "context": {
            "delivery_id": delivery_id,
            "campaign_id": campaign_id,
            "reply_event_id": str(reply["id"]),
            **{k: v for k, v in reply.get("context", {}).items() if k == "inbound_request_id"},
        },
    }
    text = data.get("text")
    if isinstance(text, str) and text:
        out["data"]["message_text"] = text[:MAX_REPLY_TEXT]
    if subject:
        out["subject"] = subject
    if reply.get("time"):
        out["time"] = reply["time"]
    return out
