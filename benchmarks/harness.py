"""Process plumbing for the benchmarks: ports, subprocesses (the hub exactly as `switchboard
serve` runs it, the ceiling app, the receiver), fresh databases, tenants and keys, and wrk.

Every process the harness starts is stopped by the harness, by its own pid, in a `finally`.
Everything listens on and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "SWITCHBOARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
LOOPBACK = "127.0.0.0/8"  # benchmark receivers listen here; the egress guard refuses it by default
LUA = Path(__file__).resolve().parent / "ingest.lua"


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- HTTP helpers (stdlib, for setup and control calls; never on a measured path) ---------------


def http(
    method: str,
    url: str,
    body: Any = None,
    key: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - 127.0.0.1 only
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def wait_http(url: str, proc: Proc, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {proc.tail()}")
        with contextlib.suppress(OSError):
            status, _ = http("GET", url, timeout=2.0)
            if status < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {within} s: {proc.tail()}")


# -- subprocesses ------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; only this process."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def start(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=str(ROOT)
        )
    return Proc(name, popen, log)


@contextlib.contextmanager
def running(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None,
            health: str | None = None) -> Iterator[Proc]:  # fmt: skip
    proc = start(name, argv, workdir, env)
    try:
        if health:
            wait_http(health, proc)
        yield proc
    finally:
        proc.stop()


def run_module(module: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run a benchmark helper (`python -m benchmarks.…`) to completion; the JSON object its last
    output line holds."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def hub_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    """The hub's settings for a benchmark: rate limits off (they would cap the figure)."""
    env = {
        "SWITCHBOARD_DATABASE_URL": database_url,
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_HOST": "127.0.0.1",
        "SWITCHBOARD_KEY_RATE": "0",
        "SWITCHBOARD_TENANT_RATE": "0",
        "SWITCHBOARD_RUN_WORKER": "0",
        "SWITCHBOARD_EGRESS_ALLOW": LOOPBACK,  # the receivers listen on this machine
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def hub(
    workdir: Path, database_url: str, name: str = "hub", **extra: str
) -> Iterator[tuple[str, Proc]]:
    """`switchboard serve` as a subprocess; yields its base URL and process."""
    port = free_port()
    with running(
        name,
        [str(BIN / "switchboard"), "serve"],
        workdir,
        hub_env(database_url, port, **extra),
        health=f"http://127.0.0.1:{port}/health",
    ) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextlib.contextmanager
def ceiling_app(workdir: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    with running(
        "ceiling",
        [sys.executable, "-m", "benchmarks.ceiling_app", str(port)],
        workdir,
        health=f"http://127.0.0.1:{port}/health",
    ) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextlib.contextmanager
def receiver(workdir: Path) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    with running(
        "receiver",
        [sys.executable, "-m", "benchmarks.receiver", str(port)],
        workdir,
        health=f"http://127.0.0.1:{port}/_stats",
    ) as proc:
        yield f"http://127.0.0.1:{port}", proc


def wait_count(receiver_url: str, n: int, within: float) -> dict[str, Any]:
    """Poll the receiver until it has `n` distinct deliveries (or `within` seconds pass)."""
    deadline = time.monotonic() + within
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, stats = http("GET", receiver_url + "/_stats")
        if stats["count"] >= n:
            return stats
        time.sleep(0.05)
    raise RuntimeError(f"the receiver got {stats.get('count')} of {n} within {within} s")


# -- databases ---------------------------------------------------------------------------------


def pg_available() -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def pg_url(db: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db


async def _pg_admin(sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def pg_version() -> str:
    return str(asyncio.run(_pg_admin("SHOW server_version"))[0][0])


@contextlib.contextmanager
def fresh_database(
    kind: str, workdir: Path, name: str, template: str | None = None
) -> Iterator[str]:
    """A new empty database for one run (a file for SQLite, CREATE DATABASE for PostgreSQL),
    removed afterwards; yields its SWITCHBOARD_DATABASE_URL. On PostgreSQL, `template` (another
    fresh database's URL) makes it a copy of that one instead (CREATE DATABASE … TEMPLATE)."""
    if kind == "sqlite":
        path = workdir / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(path) + suffix).unlink()
        return
    db = f"sb_bench_{os.getpid()}_{name}".lower()
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    asyncio.run(_pg_admin(f'CREATE DATABASE "{db}"{copy}'))
    try:
        yield pg_url(db)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


def provision(database_url: str, tenant: str = "bench") -> str:
    """Migrate the store, create a tenant that accepts unknown types, and mint a key with every
    tenant scope; returns the key (through the Store API, as `switchboard keys create` does)."""
    from switchboard.auth import mint_key
    from switchboard.config import Settings
    from switchboard.envelope import now_us
    from switchboard.store import Tenant
    from switchboard.store.backends import open_store

    async def run() -> str:
        store = open_store(Settings.from_env({}, database_url=database_url))
        await store.open()
        try:
            await store.create_tenant(Tenant(tenant, tenant, "accept", now_us()))
            secret, record = mint_key(tenant, "bench", ["ingest", "read", "manage"])
            await store.create_key(record)
            return secret
        finally:
            await store.close()

    return asyncio.run(run())


# (backend, work directory) → a database migrated and provisioned once, and its key
_TEMPLATES: dict[tuple[str, str], tuple[str, str]] = {}


def _template(kind: str, workdir: Path) -> tuple[str, str]:
    """The provisioned database `provisioned` copies, made at its first use; a PostgreSQL one is
    dropped when the process exits (a SQLite one goes with the work directory)."""
    found = _TEMPLATES.get((kind, str(workdir)))
    if found is not None:
        return found
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'template.db'}"
    else:
        db = f"sb_bench_{os.getpid()}_template_{len(_TEMPLATES)}"
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(_pg_admin(f'CREATE DATABASE "{db}"'))
        atexit.register(
            lambda: asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        )
        url = pg_url(db)
    _TEMPLATES[kind, str(workdir)] = found = (url, provision(url))
    return found


@contextlib.contextmanager
def provisioned(kind: str, workdir: Path, name: str) -> Iterator[tuple[str, str]]:
    """A fresh database as `fresh_database` makes it, then `provision`ed; yields (URL, key). It
    is a copy of one provisioned once per backend (CREATE DATABASE … TEMPLATE; SQLite's backup
    API), so a run does not wait for the migrations (about 1.3 s per database on a quiet
    machine, and a full run makes some 60 databases)."""
    template, key = _template(kind, workdir)
    with copied(kind, workdir, name, template) as db:
        yield db, key


@contextlib.contextmanager
def copied(kind: str, workdir: Path, name: str, source: str) -> Iterator[str]:
    """A fresh database holding a copy of `source` (a database nothing is connected to), removed
    afterwards: CREATE DATABASE … TEMPLATE on PostgreSQL, SQLite's backup API."""
    if kind != "sqlite":
        with fresh_database(kind, workdir, name, template=source) as db:
            yield db
        return
    with fresh_database(kind, workdir, name) as db:
        original = sqlite3.connect(source.removeprefix("sqlite:///"))
        target = sqlite3.connect(db.removeprefix("sqlite:///"))
        try:
            original.backup(target)
        finally:
            target.close()
            original.close()
        yield db


def admin_key(database_url: str) -> str:
    """Mint an admin key (it reads `/health/detailed`'s row counts, which tenant keys do not)."""
    from switchboard.auth import mint_key
    from switchboard.config import Settings
    from switchboard.store.backends import open_store

    async def run() -> str:
        store = open_store(Settings.from_env({}, database_url=database_url))
        await store.open()
        try:
            secret, record = mint_key(None, "bench-admin", ["admin"])
            await store.create_key(record)
            return secret
        finally:
            await store.close()

    return asyncio.run(run())


# -- wrk ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    say("wrk is missing: installing it with `apt-get install -y wrk`")
    cmd = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo", *cmd]
    if subprocess.run(cmd, check=False, capture_output=True).returncode != 0:
        say("apt-get install failed; running `apt-get update` first")
        subprocess.run([*cmd[:-3], "update"], check=False, capture_output=True)
        subprocess.run(cmd, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed; install it and run again")
    return found


def run_wrk(
    url: str,
    key: str,
    *,
    batch: int,
    connections: int,
    duration: float,
    tag: str,
    threads: int = 1,
) -> dict[str, Any]:
    """One wrk run against POST {url}/v1/events; its summary (requests, errors, latency)."""
    wrk = ensure_wrk()
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"{url}/v1/events",
        "--",
        key,
        str(batch),
        tag,
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            summary["seconds"] = summary["duration_us"] / 1e6
            summary["events"] = summary["requests"] * batch
            summary["events_per_s"] = summary["events"] / summary["seconds"]
            summary["errors"] = sum(
                summary[k] for k in ("status_errors", "connect", "read", "write", "timeout")
            )
            return summary
    raise RuntimeError(f"wrk printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="switchboard-bench-")
