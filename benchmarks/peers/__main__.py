"""`python -m benchmarks.peers`: the hub beside issue 21's peers, same machine, same run, same job.

    python -m benchmarks.peers                    1 run of each figure, 1,000 events/s offered
    python -m benchmarks.peers --runs 3           the median of 3 runs (about 3 times as long)
    python -m benchmarks.peers --quick            1 run, small counts (about 3 minutes)
    python -m benchmarks.peers --rate 300         a lower open-loop rate (a busy 2-core machine)
    python -m benchmarks.peers --only hub,celery  a subset of the systems

Each system runs as the same topology: one API process and one worker process on one fresh
PostgreSQL database, delivering to the benchmark's receiver (`benchmarks.receiver`, 127.0.0.1).
The hub is `switchboard serve` (its worker off) + `switchboard worker`; the peers are uvicorn
serving `benchmarks.peers.api` + a Celery or a Procrastinate worker. For each:

- ingest events/s: wrk with `ingest.lua` (1 event per request, the hub's figure's load), the
  worker stopped; every acknowledged event must be in the table afterwards.
- deliveries/s: the queue pre-loaded the same way (wrk for a few seconds, worker stopped), then
  the worker starts; (count - 1) / (last arrival - first arrival) at the receiver.
- accepted → received p50/p99: `open_loop` at `--rate` events/s for `--seconds`, worker running.
- CPU per event: user + system CPU of the API and worker processes (and their children) and of
  the PostgreSQL backends serving the run's database, over the latency run, per delivered event.
  Redis is one server shared by the machine: its CPU is reported apart (`redis_cpu_us`).
- lost on SIGKILL: `open_loop` at `--rate` for `--seconds`; once a third of its events arrived,
  the API process is SIGKILLed and started again at once; then the events acknowledged (202) but
  never received (waiting until all arrived or none arrived for 15 s, at most 120 s).

Bounded: every wait has a limit; every process, database and Redis key it makes is removed.
Writes benchmarks/results/peers.json and peers.md (quick-peers.* with --quick) and prints the
table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness as h
from benchmarks.delivery import _NO_INTERNAL, _percentile, _rate, _wire
from switchboard.signing import generate_secret

RESULTS = Path(__file__).resolve().parent.parent / "results"
SYSTEMS = ("hub", "celery", "procrastinate")
CONCURRENCY = 64  # the hub destination's concurrency = each peer worker's
SETTLE = 120  # seconds the latency and SIGKILL runs wait for the last acknowledged events
UNANSWERED_MS = 30_000.0  # a request open_loop gave up on waited at least this long
LATENCY_KEYS = ("p50", "p99", "p50_at_least", "p99_at_least", "missing", "cpu_us_per_event")
REDIS_URL = os.environ.get("SWITCHBOARD_BENCH_REDIS", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Settings:
    quick: bool
    runs: int
    duration: float  # seconds of each wrk ingest run (after a 1 s warm-up)
    connections: int
    preload_seconds: float  # seconds of wrk filling the queue for the deliveries figure
    rate: int  # open-loop events/s (latency and SIGKILL runs)
    seconds: float  # open-loop seconds


# -- one system, up --------------------------------------------------------------------------


@dataclass
class Up:
    """A system running on its own database: its API (restartable) and maybe its worker."""

    name: str
    system: str
    db: str
    url: str
    key: str
    port: int
    api_argv: list[str]
    api_env: dict[str, str]
    worker_argv: list[str]
    worker_env: dict[str, str]
    work: Path
    api: h.Proc | None = None
    worker: h.Proc | None = None

    def start_api(self) -> h.Proc:
        self.api = h.start(f"{self.name}-api", self.api_argv, self.work, self.api_env)
        h.wait_http(self.url + "/health", self.api)
        return self.api

    def start_worker(self) -> None:
        self.worker = h.start(f"{self.name}-worker", self.worker_argv, self.work, self.worker_env)

    def stop(self) -> None:
        for proc in (self.worker, self.api):
            if proc is not None:
                proc.stop()


def _peer_env(kind: str, db: str, token: str, target: str, secret: str, tag: str) -> dict[str, str]:
    return {
        "PEER_KIND": kind,
        "PEER_DATABASE_URL": db,
        "PEER_TOKEN": token,
        "PEER_TARGET": target,
        "PEER_SECRET": secret,
        "PEER_BROKER": REDIS_URL,
        "PEER_QUEUE": tag,
        "PYTHONPATH": str(h.ROOT),  # console scripts (procrastinate) do not put the cwd on the path
    }


def _redis_cleanup(tag: str) -> None:
    """Remove the run's Redis keys: its queue and kombu's bindings for it (`_kombu.binding.…`),
    and its entries in kombu's table of unacknowledged messages, if any are left."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
        if keys:
            client.delete(*keys)
        if client.type("unacked") == b"hash":
            mine = [k for k, v in client.hscan_iter("unacked") if tag.encode() in v]
            if mine:
                client.hdel("unacked", *mine)
                client.zrem("unacked_index", *mine)
    finally:
        client.close()


async def _sql(db: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(db)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _count_events(db: str) -> int:
    return int(asyncio.run(_sql(db, "SELECT count(*) FROM events"))[0][0])


@contextlib.contextmanager
def up(system: str, work: Path, name: str, receiver: str, worker: bool) -> Iterator[Up]:
    """`system` on a fresh database with its API (and its worker when `worker`), wired to send
    to `receiver`; everything stopped and dropped afterwards."""
    from benchmarks.peers.common import SCHEMA

    tag = f"sbpeer-{os.getpid()}-{name}"
    with contextlib.ExitStack() as stack:
        if system == "hub":  # a copy of a migrated, provisioned database
            db, key = stack.enter_context(h.provisioned("postgres", work, name))
        else:
            db = stack.enter_context(h.fresh_database("postgres", work, name))
        port = h.free_port()
        url = f"http://127.0.0.1:{port}"
        secret = generate_secret()
        if system == "hub":
            api_argv = [str(h.BIN / "switchboard"), "serve"]
            api_env = h.hub_env(db, port, **_NO_INTERNAL)
            worker_argv = [str(h.BIN / "switchboard"), "worker"]
            worker_env = h.hub_env(db, 0, **_NO_INTERNAL)
        else:
            key = secrets.token_urlsafe(24)
            env = _peer_env(system, db, key, receiver + "/hook", secret, tag)
            asyncio.run(_sql(db, SCHEMA))
            if system == "procrastinate":
                app = "benchmarks.peers.procrastinate_peer.app"
                schema = [str(h.BIN / "procrastinate"), "--app", app, "schema", "--apply"]
                subprocess.run(schema, env={**os.environ, **env}, check=True, capture_output=True)
                worker_argv = [str(h.BIN / "procrastinate"), "--app", app, "worker"]
                worker_argv += ["--concurrency", str(CONCURRENCY)]
            else:
                stack.callback(_redis_cleanup, tag)
                worker_argv = [str(h.BIN / "celery"), "-A", "benchmarks.peers.celery_peer"]
                worker_argv += ["worker", "-P", "gevent", "-c", str(CONCURRENCY)]
                worker_argv += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
            api_argv = [sys.executable, "-m", "uvicorn", "benchmarks.peers.api:app"]
            api_argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
            api_argv += ["--log-level", "warning"]
            api_env = worker_env = env
        u = Up(name, system, db, url, key, port, api_argv, api_env, worker_argv, worker_env, work)
        stack.callback(u.stop)
        u.start_api()
        if system == "hub":
            _wire(url, key, receiver, CONCURRENCY, secret)
        if worker:
            u.start_worker()
        yield u


# -- CPU accounting ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _descendants(pids: list[int]) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _cpu_snapshot(u: Up) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds so far of the system's processes, and of its database's backends."""
    roots = [p.pid for p in (u.api, u.worker) if p is not None]
    rows = asyncio.run(
        _sql(
            u.db,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()",
        )
    )
    return {p: _cpu(p) for p in _descendants(roots)}, {int(r[0]): _cpu(int(r[0])) for r in rows}


def _redis_cpu() -> float:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# -- the figures ---------------------------------------------------------------------------------


def _wrk(u: Up, s: Settings, seconds: float, tag: str) -> dict[str, Any]:
    return h.run_wrk(u.url, u.key, batch=1, connections=s.connections, duration=seconds, tag=tag)


def ingest(system: str, s: Settings, work: Path, run: int) -> float:
    name = f"ingest_{system}_{run}"
    with h.receiver(work) as (receiver, _), up(system, work, name, receiver, worker=False) as u:
        _wrk(u, s, 1, f"warm{run}")
        before = _count_events(u.db)
        summary = _wrk(u, s, s.duration, f"r{run}")
        stored = _count_events(u.db) - before
    if summary["errors"] or not summary["requests"]:
        raise RuntimeError(f"{name}: wrk saw errors: {summary}")
    if stored < summary["events"]:
        raise RuntimeError(f"{name}: {summary['events']} acknowledged, {stored} stored")
    return float(summary["events_per_s"])


def deliveries(system: str, s: Settings, work: Path, run: int) -> dict[str, Any]:
    name = f"deliver_{system}_{run}"
    with h.receiver(work) as (receiver, _), up(system, work, name, receiver, worker=False) as u:
        _wrk(u, s, s.preload_seconds, f"pre{run}")
        n = _count_events(u.db)
        h.http("POST", receiver + "/_reset")
        u.start_worker()
        stats = h.wait_count(receiver, n, within=300)
    return {"value": _rate(stats), "deliveries": n}


def _open_loop(u: Up, s: Settings, tag: str, out: Path) -> list[str]:
    args = (u.url, u.key, str(s.rate), str(s.seconds), tag, str(out))
    return [sys.executable, "-m", "benchmarks.open_loop", *args]


def _settle(receiver: str, n: int, quiet: float = 15, within: float = SETTLE) -> None:
    """Wait until the receiver has `n` events, or none arrived for `quiet` s, or `within` s."""
    seen, still, deadline = -1, time.monotonic(), time.monotonic() + within
    while time.monotonic() < deadline and time.monotonic() - still < quiet:
        count = h.http("GET", receiver + "/_stats")[1]["count"]
        if count >= n:
            return
        if count != seen:
            seen, still = count, time.monotonic()
        time.sleep(0.2)


def _unreceived(receiver: str, ids: set[str], quiet: float = 15) -> list[str]:
    """The ids among `ids` the receiver has not had once none of them arrived for `quiet` s (or
    SETTLE s passed). By id, not by count: a request cut off by the kill may have been stored and
    delivered without its 202, and would stand in for an acknowledged event still on its way."""
    missing, still, deadline = set(ids), time.monotonic(), time.monotonic() + SETTLE
    while missing and time.monotonic() < deadline and time.monotonic() - still < quiet:
        _, arrivals = h.http("GET", receiver + "/_arrivals")
        left = missing - {a["event_id"] for a in arrivals.values()}
        if left != missing:
            missing, still = left, time.monotonic()
        time.sleep(0.5)
    return sorted(missing)


def latency(system: str, s: Settings, work: Path, run: int) -> dict[str, Any]:
    name = f"latency_{system}_{run}"
    acks_file = work / f"{name}-acks.json"
    with h.receiver(work) as (receiver, _), up(system, work, name, receiver, worker=True) as u:
        warm = dict(s.__dict__, rate=200, seconds=1.0)
        h.run_module(*_open_loop(u, Settings(**warm), f"w{run}", acks_file)[2:], timeout=60)
        h.wait_count(receiver, 200, within=60)
        h.http("POST", receiver + "/_reset?keep_bodies=1")
        cpu0, redis0 = _cpu_snapshot(u), _redis_cpu()
        try:
            summary = h.run_module(
                *_open_loop(u, s, f"l{run}", acks_file)[2:], timeout=s.seconds + 90
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"not sustained: {s.rate}/s offered ({exc.stderr[-200:]})") from exc
        acks: dict[str, float] = json.loads(acks_file.read_text())["acks"]
        _settle(receiver, len(acks))
        stopped = time.time()  # when we stopped waiting for the rest
        cpu1, redis1 = _cpu_snapshot(u), _redis_cpu()
        time.sleep(0.2)
        _, arrivals = h.http("GET", receiver + "/_arrivals")
    waits = [(a["at"] - acks[a["event_id"]]) * 1000 for a in arrivals.values()
             if a["event_id"] in acks]  # fmt: skip
    # requests the API never answered (open_loop gave up 30 s after the last was sent) are a
    # system that does not keep up with the rate, not a broken run: they count as waits
    unanswered = summary.get("unanswered", 0)
    failed = [e for e in summary["errors"] if "unanswered" not in e]
    if failed or not waits:
        raise RuntimeError(f"not sustained: {s.rate}/s offered: {summary}")
    own, pg = (
        sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in after.items())
        for before, after in zip(cpu0, cpu1, strict=True)
    )
    # an event acknowledged and not received, or never acknowledged, waited at least until we
    # stopped waiting (from its 202; from 30 s after the last request for an unanswered one):
    # the percentiles over those bounds are lower bounds of the true ones
    arrived = {a["event_id"] for a in arrivals.values()}
    bounds = [(stopped - at) * 1000 for event_id, at in acks.items() if event_id not in arrived]
    missing = len(bounds) + unanswered
    bounds += [UNANSWERED_MS] * unanswered
    p50, p99 = (_percentile(waits + bounds, q) for q in (0.50, 0.99))
    exact = not bounds
    return {
        "p50": p50 if exact else None,
        "p99": p99 if exact else None,
        "p50_at_least": None if exact else p50,
        "p99_at_least": None if exact else p99,
        "missing": missing,
        "unanswered": unanswered,
        "events": len(waits),
        "late_sends": summary["late"],
        "cpu_us_per_event": (own + pg) / len(waits) * 1e6,
        "pg_cpu_us_per_event": pg / len(waits) * 1e6,
        "redis_cpu_us_per_event": (redis1 - redis0) / len(waits) * 1e6,
    }


def killed(system: str, s: Settings, work: Path, run: int, ingest: float | None) -> dict[str, Any]:
    """Events acknowledged but never received when the API process is SIGKILLed once. Offered at
    `--rate`, or at half the system's ingest measured in this run if that is lower: a rate it
    cannot accept would leave nothing acknowledged to lose."""
    name = f"kill_{system}_{run}"
    if ingest is not None and ingest / 2 < s.rate:
        s = Settings(**dict(s.__dict__, rate=max(1, int(ingest / 2))))
    acks_file = work / f"{name}-acks.json"
    with h.receiver(work) as (receiver, _), up(system, work, name, receiver, worker=True) as u:
        h.http("POST", receiver + "/_reset?keep_bodies=1")
        gen = h.start(f"{name}-load", _open_loop(u, s, f"k{run}", acks_file), work)
        try:
            # the kill falls mid-traffic: once a third of the events arrived, or half the send
            # window passed with deliveries flowing (a slow system: nothing may have arrived yet)
            third, t0 = int(s.rate * s.seconds) // 3, time.monotonic()
            while gen.popen.poll() is None and time.monotonic() - t0 < s.seconds + 60:
                count = h.http("GET", receiver + "/_stats")[1]["count"]
                if count >= third or (count and time.monotonic() - t0 >= s.seconds / 2):
                    break
                time.sleep(0.05)
            api = u.api
            assert api is not None
            os.kill(api.pid, signal.SIGKILL)
            api.popen.wait(10)
            u.start_api()
            gen.popen.wait(s.seconds + 60)
        finally:
            gen.stop()
        acks: dict[str, float] = json.loads(acks_file.read_text())["acks"]
        lost = _unreceived(receiver, set(acks))
        jobs = _jobs(u, lost) if lost and system == "procrastinate" else None
    if not acks:
        raise RuntimeError(f"{name}: no event was acknowledged: {gen.tail(500)}")
    out = {"acknowledged": len(acks), "lost": len(lost), "lost_sample": lost[:5], "rate": s.rate}
    return out | ({"lost_jobs": jobs} if jobs is not None else {})


def _jobs(u: Up, ids: list[str]) -> list[dict[str, Any]]:
    """Where the lost events' Procrastinate jobs stand (a retry still waiting is late, not lost)."""
    import asyncpg

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(u.db)
        try:
            rows = await conn.fetch(
                "SELECT args->'event'->>'id' AS id, status::text, attempts, "
                "scheduled_at > now() AS waiting FROM procrastinate_jobs "
                "WHERE args->'event'->>'id' = ANY($1::text[])",
                ids,
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(fetch())


# -- the report ----------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    xs = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def measure(system: str, s: Settings, work: Path) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    for run in range(s.runs):
        r: dict[str, Any] = {}
        seconds: dict[str, float] = {}  # elapsed per figure, set-up and settling included
        r["seconds"] = seconds
        for what, fn in (("ingest", ingest), ("deliveries", deliveries), ("latency", latency),
                         ("killed", killed)):  # fmt: skip
            t0 = time.monotonic()
            try:
                out = (
                    killed(system, s, work, run, r.get("ingest"))
                    if fn is killed
                    else fn(system, s, work, run)
                )
            except Exception as exc:  # a failure is recorded, the run goes on
                errors.append(f"{what}: {str(exc)[:300]}")
                h.say(f"{system} {what}, run {run + 1} FAILED: {exc}")
                continue
            finally:
                seconds[what] = round(time.monotonic() - t0, 1)
            if what == "ingest":
                r["ingest"] = out
            elif what == "deliveries":
                r["deliveries"] = out["value"]
            elif what == "latency":
                r.update({k: out[k] for k in LATENCY_KEYS})
                r["redis_cpu_us_per_event"] = out["redis_cpu_us_per_event"]
                r["pg_cpu_us_per_event"] = out["pg_cpu_us_per_event"]
            else:
                r.update(acknowledged=out["acknowledged"], lost=out["lost"], kill_rate=out["rate"])
                r["lost_sample"] = out["lost_sample"]
                if "lost_jobs" in out:
                    r["lost_jobs"] = out["lost_jobs"]
            h.say(f"{system} {what}, run {run + 1}: {out}")
        runs.append(r)
    keys = ("ingest", "deliveries", *LATENCY_KEYS)
    keys += ("redis_cpu_us_per_event", "pg_cpu_us_per_event", "kill_rate")
    summary: dict[str, Any] = {k: _median(runs, k) for k in keys}
    summary["lost"] = sum(r.get("lost", 0) for r in runs)
    summary["acknowledged"] = sum(r.get("acknowledged", 0) for r in runs)
    return {"system": system, "summary": summary, "runs": runs, "errors": errors}


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"# Switchboard beside its peers ({'quick' if s['quick'] else 'full'} run)",
        "",
        f"`{report['command']}` — {report['finished']}, {report['seconds']:.0f} s, "
        f"{'median of ' + str(s['runs']) + ' runs' if s['runs'] > 1 else '1 run'}; "
        f"load average at start {report['load']}.",
        "",
        f"| system | ingest events/s | deliveries/s | accepted → received p50 / p99 at "
        f"{s['rate']:,}/s | CPU per event | lost on API SIGKILL |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["systems"]:
        m = r["summary"]
        cpu = _fmt(m["cpu_us_per_event"], ",.0f") + " µs"
        if m.get("pg_cpu_us_per_event") is not None:
            cpu += f", PostgreSQL {m['pg_cpu_us_per_event']:,.0f} of them"
        if r["system"] == "celery" and m["redis_cpu_us_per_event"] is not None:
            cpu += f" (+ Redis {m['redis_cpu_us_per_event']:,.0f} µs)"
        wait = f"{_fmt(m['p50'], '.1f')} / {_fmt(m['p99'], '.1f')} ms"
        if m["p99"] is None and m.get("p99_at_least") is not None:
            wait = (
                f"p50 ≥ {m['p50_at_least']:,.0f} / p99 ≥ {m['p99_at_least']:,.0f} ms "
                f"({m['missing']:,.0f} never answered or never received)"
            )
        lines.append(
            f"| {LABELS[r['system']]} | {_fmt(m['ingest'], ',.0f')} | "
            f"{_fmt(m['deliveries'], ',.0f')} | {wait} | {cpu} | "
            f"{m['lost']} of {m['acknowledged']:,} (at {_fmt(m['kill_rate'], ',.0f')}/s) |"
        )
    for r in report["systems"]:
        lines += [f"\n{r['system']}: {' '.join(e.split())[:160]}" for e in r["errors"]]
    hub = next((r["summary"] for r in report["systems"] if r["system"] == "hub"), None)
    if hub:
        lines += ["", "Hub vs each peer (goal: ingest and deliveries ≥ 3×, p99 ≤ ⅓, nothing lost):"]
        for r in report["systems"]:
            m = r["summary"]
            if r["system"] == "hub":
                continue
            parts = []
            for key, label in (("ingest", "ingest"), ("deliveries", "deliveries")):
                if hub[key] and m[key]:
                    parts.append(f"{label} {hub[key] / m[key]:.2f}×")
            if hub["p99"] and m["p99"]:
                parts.append(f"p99 {hub['p99'] / m['p99']:.2f} of theirs")
            elif hub["p99"] and m.get("p99_at_least"):
                # theirs is at least the bound: the hub's share of it is at most this
                parts.append(f"p99 at most {hub['p99'] / m['p99_at_least']:.2f} of theirs")
            lines.append(f"- {LABELS[r['system']]}: " + ", ".join(parts))
    lines.append("")
    return "\n".join(lines)


LABELS = {
    "hub": "Switchboard (serve + 1 worker)",
    "celery": "FastAPI + asyncpg + Celery/Redis",
    "procrastinate": "FastAPI + asyncpg + Procrastinate",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, small counts")
    parser.add_argument("--rate", type=int, default=1000, help="open-loop events/s (1,000)")
    # one run by default: `make bench` runs this after benchmarks.run and must stay under 20 min
    parser.add_argument("--runs", type=int, default=1, help="runs of each figure (1)")
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems, comma-separated")
    args = parser.parse_args()
    systems = [x for x in args.only.split(",") if x]
    if not set(systems) <= set(SYSTEMS) or not 1 <= args.rate <= 5000:
        parser.error(f"--only takes {', '.join(SYSTEMS)}; --rate 1..5000")
    if not h.pg_available():
        raise SystemExit(f"PostgreSQL is not reachable at {h.PG_ADMIN_URL}: the peers need it")
    quick = args.quick
    s = Settings(
        quick=quick,
        runs=max(1, min(args.runs, 9)),
        duration=3 if quick else 10,
        connections=64,
        preload_seconds=2 if quick else 4,
        rate=args.rate,
        seconds=4 if quick else 10,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    h.ensure_wrk()
    started = time.time()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with h.workdir() as tmp:
        results = [measure(system, s, Path(tmp)) for system in systems]
    command = "python -m benchmarks.peers" + " ".join([""] + [a for a in sys.argv[1:]])
    report = {
        "command": command.strip(),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": time.time() - started,
        "load": load,
        "cores": os.cpu_count(),
        "settings": s.__dict__,
        "systems": results,
    }
    stem = "quick-peers" if quick else "peers"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
