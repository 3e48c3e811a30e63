"""The channel kinds by name, and the config checks usable without a session.

The helpers the channels share live below this module, in `channels/fields.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from switchboard import masking
from switchboard.channels import Channel, ChannelContext

if TYPE_CHECKING:
    from collections.abc import Callable

    import aiohttp

    from switchboard.egress import Policy

__all__ = [
    "KINDS",
    "build_channels",
    "check_destination_config",
    "check_destination_egress",
    "public_config",
]

KINDS = ("webhook", "slack", "discord", "email", "whatsapp", "inbox", "whatsapp_cloud", "sms")


def _classes() -> dict[str, Callable[[ChannelContext], Channel]]:
    # Imported here, not at the top: importing `registry` for a config check need not load
    # aiosmtplib and every other channel's dependencies until a kind is asked for.
    from switchboard.channels.discord import DiscordChannel
    from switchboard.channels.email import EmailChannel
    from switchboard.channels.inbox import InboxChannel
    from switchboard.channels.slack import SlackChannel
    from switchboard.channels.sms import SmsChannel
    from switchboard.channels.webhook import WebhookChannel
    from switchboard.channels.whatsapp import WhatsAppChannel
    from switchboard.channels.whatsapp_cloud import WhatsAppCloudChannel

    return {
        "webhook": WebhookChannel,
        "slack": SlackChannel,
        "discord": DiscordChannel,
        "email": EmailChannel,
        "whatsapp": WhatsAppChannel,
        "inbox": InboxChannel,
        "whatsapp_cloud": WhatsAppCloudChannel,
        "sms": SmsChannel,
    }


def build_channels(ctx: ChannelContext) -> dict[str, Channel]:
    """One instance of every channel kind, sharing the context's session and inbox."""
    return {kind: make(ctx) for kind, make in _classes().items()}


# Config checks never touch the session or the inbox, so a context without them is enough; this
# lets the API and the CLI validate a destination before any session exists.
_NO_SESSION = ChannelContext(session=cast("aiohttp.ClientSession", None))


def check_destination_config(kind: str, config: dict[str, Any]) -> list[str]:
    """Problems with a destination's config, each naming the field (empty: fine)."""
    make = _classes().get(kind)
    if make is None:
        return [f"kind: must be one of {', '.join(KINDS)}, got {kind!r}"]
    if not isinstance(config, dict):
        return ["config: must be an object"]
    return make(_NO_SESSION).check_config(config)


# The config fields a channel connects to: URLs (webhook, slack, discord `url`; whatsapp
# `base_url`) and the SMTP `host`.
_URL_FIELDS = ("url", "base_url")


def check_destination_egress(config: dict[str, Any], policy: Policy) -> list[str]:
    """A destination naming a denied literal address or host name, refused when it is saved;
    a name that resolves into a denied range is refused when the attempt connects."""
    problems = []
    for field in _URL_FIELDS:
        if isinstance(config.get(field), str):
            why = policy.url_problem(config[field])
            if why:
                problems.append(f"config.{field}: {why}")
    if isinstance(config.get("host"), str) and config["host"]:
        why = policy.host_problem(config["host"])
        if why:
            problems.append(f"config.host: {why}")
    return problems


def public_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as API answers show it: credentials in it masked (write-only). The custom
    `headers` of a webhook are all taken for credentials, since their names say nothing sure."""
    shown = dict(config)
    for field in _URL_FIELDS:
        if isinstance(shown.get(field), str):
            # a Slack or Discord webhook URL ends in its token
            last = kind in ("slack", "discord") and field == "url"
            shown[field] = masking.mask_url(shown[field], last_segment=last)
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = {
            k: masking.mask_value(v) if isinstance(v, str) else v
            for k, v in shown["headers"].items()
        }
    if isinstance(shown.get("client_token"), str):
        shown["client_token"] = masking.mask_value(shown["client_token"])
    return shown
