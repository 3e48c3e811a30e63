"""Issue 21's peers sign their webhooks the hub's way (a receiver that verifies the hub's
deliveries verifies theirs), and the peers' table says when a rate was not sustained. Needs none
of the peers' own dependencies (those are installed by `make bench` only)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from benchmarks.peers import common
from benchmarks.peers.__main__ import markdown

from switchboard.signing import SignatureError, generate_secret, verify_standard


def test_a_peer_delivery_verifies_with_the_hubs_standard_webhooks_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = generate_secret()
    monkeypatch.setattr(common, "SECRET", secret)
    body, headers = common.signed_request({"id": "evt-1", "type": "order.placed", "data": {}})
    assert headers["webhook-id"] == "evt-1"  # one id across retries: counted once
    verify_standard(headers, body, [secret], now=int(time.time()))
    with pytest.raises(SignatureError):
        verify_standard(headers, body + b" ", [secret], now=int(time.time()))
    with pytest.raises(SignatureError):
        verify_standard(headers, body, [generate_secret()], now=int(time.time()))


def _system(name: str, **summary: Any) -> dict[str, Any]:
    keys = ("ingest", "deliveries", "p50", "p99", "missing", "cpu_us_per_event")
    base = dict.fromkeys((*keys, "redis_cpu_us_per_event", "pg_cpu_us_per_event", "kill_rate"))
    return {"system": name, "summary": {**base, "lost": 0, "acknowledged": 0, **summary},
            "errors": []}  # fmt: skip


def test_the_table_puts_the_hub_beside_each_peer_and_says_what_never_arrived() -> None:
    report = {
        "command": "python -m benchmarks.peers --quick",
        "finished": "now",
        "seconds": 1.0,
        "load": "9.0 9.0 9.0",
        "settings": {"quick": True, "runs": 1, "rate": 100},
        "systems": [
            _system("hub", ingest=600.0, deliveries=900.0, p50=10.0, p99=30.0, kill_rate=100),
            _system(
                "celery",
                ingest=100.0,
                deliveries=300.0,
                p50_at_least=50.0,
                p99_at_least=100.0,
                missing=12,
                kill_rate=50,
            ),
        ],
    }
    md = markdown(report)
    # what never came makes its percentiles lower bounds, and says how many
    assert "p50 ≥ 50 / p99 ≥ 100 ms (12 never answered or never received)" in md
    assert "ingest 6.00×, deliveries 3.00×, p99 at most 0.30 of theirs" in md
    assert "| 0 of 0 (at 50/s) |" in md
