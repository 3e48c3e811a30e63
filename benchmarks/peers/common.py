"""What both peers share: their settings (from the environment the runner sets), the events
table, and the signed webhook request (Standard Webhooks, `switchboard.signing`, as the hub's)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from switchboard import signing

DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "")
TOKEN = os.environ.get("PEER_TOKEN", "")  # the API's bearer token
TARGET = os.environ.get("PEER_TARGET", "")  # the webhook URL (the benchmark's receiver)
SECRET = os.environ.get("PEER_SECRET", "")  # the webhook signing secret (whsec_…)
MAX_ATTEMPTS = 8  # then the delivery is given up: the hub's default schedule has 8 attempts

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id text PRIMARY KEY,
    type text NOT NULL,
    body jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)
"""


def signed_request(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt: the event as JSON, signed per attempt; the
    webhook-id is the event id, so the receiver counts a retried delivery once."""
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        **signing.standard_headers(str(event["id"]), int(time.time()), body, [SECRET]),
    }
    return body, headers
