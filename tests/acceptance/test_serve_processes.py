"""`switchboard serve --processes 2` on PostgreSQL, as a subprocess: requests land on both API
processes, a child killed with SIGKILL under load is restarted and no acknowledged event is lost
(stored, and delivered by the supervised worker), /metrics adds up every child without any
setting, and SIGTERM stops them all. On SQLite, --processes 2 is refused."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import (
    CLI,
    ROOT,
    Client,
    Cluster,
    HubProcess,
    Receiver,
    event,
    wait_until,
)

TOKEN = "scrape-token-for-the-processes-test"


def _children(parent: int) -> dict[int, str]:
    """pid → role ("api" or "worker") of the supervisor's living children, from /proc."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != parent or stat[0] == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        out[int(entry.name)] = "api" if b"serve" in argv else "worker"
    return out


def _metrics_dir(pid: int) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR the supervisor gave its child `pid`."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [v.split(b"=", 1)[1] for v in env if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert found, "the supervisor set no PROMETHEUS_MULTIPROC_DIR for its children"
    return Path(found[0].decode())


def _accepted_by(folder: Path, pid: int) -> float:
    """Events that the process `pid` counted as accepted: its own counter file, alone."""
    path = folder / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    total = 0.0
    for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
        for s in metric.samples:
            if s.name == "switchboard_ingest_events_total" and s.labels["outcome"] == "accepted":
                total += s.value
    return total


async def _post_alone(url: str, key: str, doc: dict[str, object]) -> int:
    """One request on a connection of its own (the kernel picks a socket per connection)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            url + "/v1/events",
            json=doc,
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=15),
        ) as resp,
    ):
        return resp.status


async def _scraped_accepted(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(
        url + "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=aiohttp.ClientTimeout(total=15),
    ) as resp:
        assert resp.status == 200
        text = await resp.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "switchboard_ingest_events_total" and s.labels.get("outcome") == "accepted"
    )


@pytest.mark.postgres
@pytest.mark.fault
@pytest.mark.slow
async def test_two_api_processes_share_the_port_survive_a_kill_and_stop_together(
    pg_cluster: Cluster, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    cluster = pg_cluster
    env = cluster.env(processes=2, worker_processes=1, metrics_token=TOKEN, heartbeat_seconds=0.5)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the supervisor must make one itself
    hub = HubProcess("serve", env, cluster.tmp / "serve-processes.log")
    cluster.processes.append(hub)
    await hub.start().ready(within=60)
    assert hub.proc is not None
    supervisor = hub.proc.pid

    async def three_children() -> dict[int, str] | None:
        kids = _children(supervisor)
        return kids if sorted(kids.values()) == ["api", "api", "worker"] else None

    kids = await wait_until(three_children, 60, "two API processes and a worker")
    apis = sorted(pid for pid, role in kids.items() if role == "api")
    folder = _metrics_dir(apis[0])
    client = Client(http, hub.url, cluster.key)
    await client.webhook(receiver)

    # 40 requests, each on a new connection: the kernel spreads them over both sockets
    statuses = await asyncio.gather(
        *(_post_alone(hub.url, cluster.key, event(f"spread-{i}", i)) for i in range(40))
    )
    assert statuses == [202] * 40
    by_pid = {pid: _accepted_by(folder, pid) for pid in apis}
    assert all(n > 0 for n in by_pid.values()), f"requests did not reach both: {by_pid}"
    assert sum(by_pid.values()) == 40

    # /metrics adds up both processes whichever one answers the scrape
    for _ in range(6):
        assert await _scraped_accepted(http, hub.url) == 40

    # load from 8 clients, each on new connections; SIGKILL one API process in the middle
    acknowledged: list[str] = []
    refused = 0
    counter = itertools.count()
    stop = asyncio.Event()

    async def sender() -> None:
        nonlocal refused
        while not stop.is_set():
            eid = f"load-{next(counter)}"
            try:
                status = await _post_alone(hub.url, cluster.key, event(eid))
            except (aiohttp.ClientError, TimeoutError):
                refused += 1  # cut off by the kill: never acknowledged, so nothing promised
                continue
            if status == 202:
                acknowledged.append(eid)
            else:
                refused += 1

    senders = [asyncio.create_task(sender()) for _ in range(8)]
    try:
        await wait_until(lambda: _at_least(acknowledged, 100), 60, "100 events under load")
        victim = apis[0]
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> list[int] | None:
            now = [p for p, r in _children(supervisor).items() if r == "api"]
            return now if len(now) == 2 and victim not in now else None

        apis = sorted(await wait_until(restarted, 60, "the killed API process to be replaced"))
        fresh = next(p for p in apis if p not in by_pid)
        before = len(acknowledged)
        await wait_until(lambda: _at_least(acknowledged, before + 200), 60, "load after restart")

        async def served_by_fresh() -> bool:
            return _accepted_by(folder, fresh) > 0

        await wait_until(served_by_fresh, 60, "the restarted process to take requests")
    finally:
        stop.set()
        await asyncio.gather(*senders)

    assert "process_died" in hub.output() and f"pid {victim}" in hub.output()
    ids = [f"spread-{i}" for i in range(40)] + acknowledged
    rows = await cluster.query("SELECT id FROM events WHERE tenant_id = ?", cluster.tenant)
    stored = {r[0] for r in rows}
    missing = set(ids) - stored
    assert not missing, f"{len(missing)} acknowledged events not stored: {sorted(missing)[:5]}"

    async def all_delivered() -> bool:
        got = {h.event_id for h in receiver.hits if h.status == 200}
        return set(ids) <= got

    await wait_until(all_delivered, 120, f"{len(ids)} acknowledged events at the receiver")

    # SIGTERM to the supervisor: every child drains and exits, then the supervisor with 0
    children = list(_children(supervisor))
    hub.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(hub.proc.wait, 60) == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not folder.exists(), "the supervisor's own metrics folder is removed at exit"


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


def test_processes_above_one_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'hub.db'}"
    done = subprocess.run(
        [CLI, "serve", "--processes", "2", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--processes 2 needs PostgreSQL" in done.stderr
    assert "one writer" in done.stderr
