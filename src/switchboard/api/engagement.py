"""Email engagement: the open pixel (`/v1/engagement/open/{token}`) and tracked links
(`/v1/engagement/click/{token}`) that email destinations with `config.tracking` put in their
messages.

No API key: the signed token (engagement.py) is the authority. Each records an event of the
recipient through ingest (catalog, routing, automations); repeats within the token's window are
the same event, stored once. A HEAD request (link checkers) records nothing. Recording never
stands between a reader and the link: if it fails, the click still redirects.
"""

from __future__ import annotations

import logging
from typing import Annotated

from msgspec import Meta
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from switchboard import engagement
from switchboard.api.common import hub
from switchboard.api.contract import PUBLIC, Params, Raw, decode_path, endpoint, routes_of
from switchboard.envelope import now_us
from switchboard.errors import NotFound

log = logging.getLogger("switchboard.engagement")

TAG = "engagement"
SOURCE = "engagement"  # the `source` of the events opens and clicks record
_NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Referrer-Policy": "no-referrer"}


class TokenPath(Params):
    token: Annotated[
        str,
        Meta(
            min_length=3,
            max_length=engagement.MAX_TOKEN,
            pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?!\n)$",
            description="The signed token the hub wrote into the message (base64url, a dot, "
            f"base64url; at most {engagement.MAX_TOKEN} characters).",
        ),
    ]


def _mark(request: Request, kind: str) -> engagement.Mark:
    text = decode_path(request, TokenPath).token
    mark = engagement.verify(hub(request).settings.tracking_secret, text)
    if mark is None or mark.kind != kind:
        raise NotFound("this tracking link is not valid")
    return mark


async def _record(request: Request, mark: engagement.Mark) -> None:
    if request.method != "GET":
        return
    h = hub(request)
    event = engagement.event_for(mark, now_us() // 1_000_000, request.headers.get("user-agent"))
    extra = {
        "action": "engagement",
        "tenant_id": mark.tenant_id,
        "delivery_id": mark.delivery_id,
        "event_id": event["id"],
        "type": mark.type,
    }
    try:
        tenant = await h.tenant(mark.tenant_id)
        if tenant is None:
            return
        result = await h.ingestor.ingest([event], tenant, SOURCE)
    except Exception:
        log.exception("engagement not recorded", extra={**extra, "action": "engagement_failed"})
        return
    [res] = result.results
    if res["status"] == "rejected":
        log.warning(
            "engagement event rejected",
            extra={**extra, "action": "engagement_rejected", "errors": res.get("errors")},
        )
    else:
        log.info("engagement recorded", extra={**extra, "status": res["status"]})


@endpoint(
    "GET /v1/engagement/open/{token}",
    "trackOpen",
    TAG,
    "Email open pixel",
    "A 1x1 GIF. Fetching it records the message's `tracking.opened_type` event "
    "(`campaign_opened` by default) for its recipient, once per delivery within "
    "`tracking.window`; a HEAD request records nothing. No API key: the token is signed.",
    scope=PUBLIC,
    path=TokenPath,
    ok={200: (Raw("image/gif", {"type": "string", "format": "binary"}), "The GIF.")},
    errors=(404, 431),
)
async def track_open(request: Request) -> Response:
    await _record(request, _mark(request, "o"))
    return Response(engagement.GIF, media_type="image/gif", headers=_NO_CACHE)


@endpoint(
    "GET /v1/engagement/click/{token}",
    "trackClick",
    TAG,
    "Tracked link",
    "A redirect (302) to the URL the signed token carries, and only to it. Following it "
    "records the message's `tracking.clicked_type` event (`campaign_clicked` by default) "
    "for its recipient, once per delivery and link within `tracking.window`; a HEAD request "
    "records nothing. No API key.",
    scope=PUBLIC,
    path=TokenPath,
    ok={302: (None, "To the link's URL (`Location`).")},
    errors=(404, 431),
)
async def track_click(request: Request) -> Response:
    mark = _mark(request, "c")
    if mark.url is None or not engagement.safe_url(mark.url):
        raise NotFound("this tracking link is not valid")
    await _record(request, mark)
    return RedirectResponse(mark.url, status_code=302, headers=_NO_CACHE)


routes = routes_of(track_open, track_click)
