"""The WhatsApp Cloud API's subscription handshake on a source's receiving URL.

Before Meta sends webhooks to a callback URL it checks it with a ``GET`` carrying
``hub.mode=subscribe``, ``hub.verify_token`` (the token typed into the app's settings) and
``hub.challenge``; the URL proves it is the one meant by answering the challenge as the body.
A source with preset ``whatsapp_cloud`` keeps that token in ``preset_config.verify_token``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping

from switchboard.sources import Source

__all__ = ["HandshakeRefused", "answer_handshake"]

_CHALLENGE_RE = re.compile(r"[A-Za-z0-9._\-]{1,200}")


class HandshakeRefused(Exception):
    """The handshake is not answered; `status` is the HTTP status, the message names the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answer_handshake(source: Source | None, params: Mapping[str, str]) -> str:
    """The challenge to echo, or HandshakeRefused: 404 for no enabled whatsapp_cloud source,
    400 for a malformed request, 403 for a wrong verify token."""
    if source is None or not source.enabled or source.preset != "whatsapp_cloud":
        raise HandshakeRefused(404, "no WhatsApp Cloud source with this id")
    if params.get("hub.mode") != "subscribe":
        raise HandshakeRefused(400, "hub.mode: must be subscribe")
    challenge = params.get("hub.challenge", "")
    if not _CHALLENGE_RE.fullmatch(challenge):
        raise HandshakeRefused(400, "hub.challenge: 1 to 200 letters, digits, '.', '_' or '-'")
    expected = source.preset_config.get("verify_token")
    given = params.get("hub.verify_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8")
    ):
        raise HandshakeRefused(403, "hub.verify_token: does not match the source's verify token")
    return challenge
