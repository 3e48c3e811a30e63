"""`switchboard events trace` against a real `serve`: an event sent with `emit` and its
timeline, as a table and as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.test_cli import hub_env, run

__all__ = ["hub_env"]  # the fixture, used by name below


def test_events_trace_shows_an_emitted_events_timeline(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    env = hub_env
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    data = {"value": 10, "currency": "BRL", "items": [{"categoria": "x", "qty": 1, "price": 10}]}
    answer = json.loads(run(env, "emit", "purchase_made", json.dumps(data), "--json").stdout)
    event_id = answer["results"][0]["id"]
    trace_id = json.loads(run(env, "events", "get", event_id).stdout)["trace_id"]

    shown = run(env, "events", "trace", trace_id)
    assert "purchase_made" in shown.stdout and event_id in shown.stdout
    lines = run(env, "events", "trace", trace_id, "--json").stdout.splitlines()
    items = [json.loads(line) for line in lines]
    assert [i["kind"] for i in items] == ["event"]
    assert items[0]["event"]["id"] == event_id

    missing = run(env, "events", "trace", "no-such-trace", ok=False)
    assert missing.returncode == 1 and "no event with trace_id" in missing.stderr
