"""Webhooks: an HTTP POST of the event as JSON, signed per Standard Webhooks.

Headers: ``webhook-id`` (the delivery id, the same on every attempt), ``webhook-timestamp``,
``webhook-signature`` (``v1,<base64>`` per active secret), W3C ``traceparent``, and
``x-switchboard-*`` correlation headers; plus the destination's own headers. Redirects are not
followed: a 3xx is a failure the receiver must fix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from switchboard import egress, masking, signing, templates
from switchboard.channels import ChannelContext, Destination, Outbound, SendResult, truncate
from switchboard.channels.fields import template_failure

_RESERVED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}


def check_url(url: Any, field: str = "url") -> list[str]:
    if not isinstance(url, str):
        return [f"config.{field}: required, an http(s) URL"]
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1" and the like: an unclosed IPv6 bracket
        return [f"config.{field}: not a valid URL: {url[:60]!r}"]
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"config.{field}: must be an http(s) URL, got {url[:60]!r}"]
    return []


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    seconds: float,
    credentials: Collection[str] = (),
    method: str = "POST",
) -> SendResult:
    """POST and classify the outcome; never raises for transport problems. The attempt keeps
    the headers with credentials masked (by name, and every header named in `credentials`)."""
    shown = masking.mask_headers(headers, credentials)
    # the socket hook reads the destination's host name from here (egress.HOST)
    token = egress.HOST.set(urlsplit(url).hostname)
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as resp:
            text = await resp.text(errors="replace")
            return SendResult(
                ok=200 <= resp.status < 300,
                status=resp.status,
                retry_after=resp.headers.get("Retry-After"),
                response=truncate(text),
                message=None if 200 <= resp.status < 300 else f"HTTP {resp.status}",
                request_headers=shown,
            )
    except TimeoutError:
        return SendResult(
            False, error="timeout", message=f"no answer in {seconds} s", request_headers=shown
        )
    except aiohttp.ClientConnectionError as exc:
        denied = egress.denied_in(exc)
        if denied is not None:  # nothing was sent: no headers, no answer to keep
            return SendResult(False, error="egress_denied", message=str(denied))
        return SendResult(
            False, error="connection", message=_scrub(exc, url), request_headers=shown
        )
    except (aiohttp.ClientError, ValueError, asyncio.IncompleteReadError) as exc:
        return SendResult(False, error="other", message=_scrub(exc, url), request_headers=shown)
    finally:
        egress.HOST.reset(token)


def _scrub(exc: BaseException, url: str) -> str:
    """The error's text, with the URL (which may carry a token) masked if it shows up."""
    text = str(exc) or type(exc).__name__
    return text.replace(url, masking.mask_url(url, last_segment=True)) if url in text else text


class WebhookChannel:
    kind = "webhook"

    def __init__(self, ctx: ChannelContext) -> None:
        self.ctx = ctx

    def check_config(self, config: dict[str, Any]) -> list[str]:
        problems = check_url(config.get("url"))
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            problems.append("config.headers: must map header names to strings")
        elif _RESERVED & {k.lower() for k in headers}:
            problems.append("config.headers: may not set the signature or content-type headers")
        return problems

    async def send(self, destination: Destination, out: Outbound) -> SendResult:
        event = out.event
        if out.body_template:
            try:
                payload = await self.ctx.renderer.run(
                    templates.render_json, out.body_template, event
                )
            except templates.TemplateProblem as exc:
                return template_failure(exc)
        else:
            payload = event
        body = orjson.dumps(payload)
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "Switchboard-Webhooks/0.1",
            **destination.config.get("headers", {}),
            "traceparent": out.traceparent
            or signing.traceparent(str(event.get("trace_id") or out.delivery_id)),
            "x-switchboard-event-id": str(event.get("id")),
            "x-switchboard-event-type": str(event.get("type")),
            "x-switchboard-attempt": str(out.attempt),
        }
        if event.get("correlation_id"):
            headers["x-switchboard-correlation-id"] = str(event["correlation_id"])
        if out.replay:
            headers["x-switchboard-replay"] = "true"
        if destination.secrets:
            headers.update(signing.standard_headers(out.delivery_id, ts, body, destination.secrets))
        else:
            headers.update({"webhook-id": out.delivery_id, "webhook-timestamp": str(ts)})
        return await post(
            self.ctx.session,
            destination.config["url"],
            body,
            headers,
            destination.timeout,
            credentials=destination.config.get("headers", {}).keys(),  # the tenant's own headers
        )
