"""Automations through the real CLI: the simulator over a seed's stream, apply/list/runs/cancel
against a served hub, and a waiting run's timer firing after the hub was killed with SIGKILL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import Client, Cluster, Receiver, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "switchboard")
EXAMPLES = ROOT / "examples" / "automations"


def run(env: dict[str, str] | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "automations", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_the_simulator_prints_each_seed_timeline() -> None:
    for folder in ("care-integrations", "legal-practice"):
        here = EXAMPLES / folder
        proc = run(
            None, "test", str(here / "automations.yaml"), "--events", str(here / "events.jsonl")
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (here / "expected.txt").read_text(encoding="utf-8")


def test_the_simulator_refuses_an_invalid_document_naming_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\non: a.b\nsteps:\n  - wait: 400d\n", encoding="utf-8")
    events = tmp_path / "e.jsonl"
    events.write_text('{"type": "a.b"}\n', encoding="utf-8")
    proc = run(None, "test", str(bad), "--events", str(events))
    assert proc.returncode == 2
    assert "/steps/0/wait: must be at most a year" in proc.stderr


async def test_apply_runs_cancel_and_a_timer_that_outlives_kill_9(
    cluster: Cluster, receiver: Receiver, tmp_path: Path
) -> None:
    # a connection per request: the CLI calls between ours outlast the hub's keep-alive, and
    # the hub is killed mid-test
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        await _scenario(cluster, receiver, http, tmp_path)


async def _scenario(
    cluster: Cluster, receiver: Receiver, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    hub = cluster.spawn("serve")
    await hub.ready()
    env = {**cluster.env(), "SWITCHBOARD_URL": hub.url, "SWITCHBOARD_API_KEY": cluster.key}
    client = Client(http, hub.url, cluster.key)
    await client.ok(
        "POST",
        "/v1/destinations",
        {"name": "wpp", "kind": "webhook", "config": {"url": receiver.url}},
    )
    doc = tmp_path / "followup.yaml"
    doc.write_text(
        "name: followup\non: service.completed\nsteps:\n  - wait: 8s\n"
        "  - send: {destination: wpp}\n",
        encoding="utf-8",
    )
    applied = run(env, "apply", str(doc))
    assert applied.returncode == 0, applied.stderr
    assert "applied followup v1" in applied.stdout
    assert "followup" in run(env, "list").stdout
    for n in (1, 2):
        await client.ok(
            "POST",
            "/v1/events",
            [{"id": f"svc-{n}", "type": "service.completed", "data": {"n": n}}],
        )

    async def both_waiting() -> bool:
        body = await client.ok("GET", "/v1/automations/followup/runs")
        return len(body["data"]) == 2 and all(r["waiting_until"] for r in body["data"])

    await wait_until(both_waiting, 15, "both runs to wait")
    runs: list[dict[str, Any]] = (await client.ok("GET", "/v1/automations/followup/runs"))["data"]
    cancelled = run(env, "cancel", runs[0]["id"], "--reason", "no longer needed")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    hub.kill()  # SIGKILL while the other run waits on its timer
    hub.start()
    await hub.ready()

    async def delivered() -> bool:
        return len(receiver.accepted()) >= 1

    await wait_until(delivered, 30, "the timer to fire after the restart")
    listed = run(env, "runs", "followup")
    assert listed.returncode == 0 and "completed" in listed.stdout and "cancelled" in listed.stdout
    body = await client.ok("GET", "/v1/automations/followup/runs?status=completed")
    assert [r["id"] for r in body["data"]] == [runs[1]["id"]]
    assert len(receiver.accepted()) == 1  # the cancelled run sent nothing
