"""The acceptance tier's machinery: the hub as real subprocesses (`switchboard serve`,
`switchboard worker`), webhook receivers and a TCP proxy on 127.0.0.1, and direct reads of the
database the hub writes. Every process a test starts is SIGKILLed in teardown, pass or fail."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from switchboard.auth import mint_key
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.store import Tenant
from switchboard.store.backends import open_store
from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "switchboard")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    check: Callable[[], Awaitable[T]], within: float, what: str, every: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `within` s.
    The pause between polls only paces the polling: correctness rests on the condition."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


# -- the hub as subprocesses ------------------------------------------------------------------


_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """Linux: the hub gets SIGKILL if pytest itself dies (killed, not just failed), so no
    process outlives a run even when fixture teardown never gets to run. Runs in the child
    between fork and exec, so it only calls a function looked up beforehand."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class HubProcess:
    """One `switchboard serve` or `switchboard worker` process; output goes to a log file (a
    pipe nobody reads would fill up and stall the hub)."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.role = role
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._offset = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['SWITCHBOARD_PORT']}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> HubProcess:
        assert not self.alive, f"{self.role} is already running"
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [CLI, self.role],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        return self

    async def ready(self, within: float = 30.0) -> HubProcess:
        """Wait until the API answers /health, or the worker says it runs."""

        async def up() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.role} exited early:\n{self.tail()}")
            if self.role == "worker":
                return "worker running" in self.output()
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(self.url + "/health", timeout=aiohttp.ClientTimeout(total=2)) as r,
                ):
                    return r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await wait_until(up, within, f"{self.role} to start", every=0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer stops it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def output(self) -> str:
        """What this process wrote since its latest start."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """A fresh database with one tenant and key, and the hub processes run against it."""

    backend: str
    database_url: str
    tmp: Path
    tenant: str
    key: str
    processes: list[HubProcess] = field(default_factory=list)

    def env(self, **settings: Any) -> dict[str, str]:
        """SWITCHBOARD_* for a test hub: rate limits and internal events off, fast polling;
        keyword arguments override (database_url="…", lease_seconds=3, …)."""
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "host": "127.0.0.1",
            "port": free_port(),
            "key_rate": 0,
            "tenant_rate": 0,
            "worker_poll": 0.1,
            "internal_events": "",
            "log_level": "INFO",
            "egress_allow": "127.0.0.0/8",  # the test receivers listen on loopback
            **settings,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env.update({f"SWITCHBOARD_{k.upper()}": str(v) for k, v in values.items()})
        return env

    def spawn(self, role: str, **settings: Any) -> HubProcess:
        """Start `switchboard <role>` (not yet waited for: call `ready()`)."""
        n = len(self.processes)
        process = HubProcess(role, self.env(**settings), self.tmp / f"{role}-{n}.log")
        self.processes.append(process)
        return process.start()

    def kill_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.kill()

    async def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the hub's database directly (`?` placeholders), bypassing the hub."""
        if self.backend == "sqlite":
            path = self.database_url.removeprefix("sqlite:///")

            def read() -> list[tuple[Any, ...]]:
                with contextlib.closing(sqlite3.connect(path, timeout=15)) as conn:
                    return [tuple(r) for r in conn.execute(sql, args).fetchall()]

            return await asyncio.to_thread(read)
        numbered = iter(range(1, 1000))
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(re.sub(r"\?", lambda _: f"${next(numbered)}", sql), *args)
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    async def delivery_statuses(self) -> dict[str, int]:
        rows = await self.query(
            "SELECT status, count(*) FROM deliveries WHERE tenant_id = ? GROUP BY status",
            self.tenant,
        )
        return {status: int(n) for status, n in rows}


async def _make_cluster(backend: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with fresh_database(backend, tmp_path) as url:
        store = open_store(Settings(database_url=url))
        await store.open()  # migrates
        try:
            tenant = "fault"
            await store.create_tenant(Tenant(tenant, "Fault tests", "accept", now_us()))
            key, record = mint_key(tenant, "fault", ["ingest", "read", "manage"])
            await store.create_key(record)
        finally:
            await store.close()
        cluster = Cluster(backend, url, tmp_path, tenant, key)
        try:
            yield cluster
        finally:
            cluster.kill_all()  # before the database is dropped


@pytest.fixture
async def pg_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async for cluster in _make_cluster("postgres", tmp_path):
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    async for c in _make_cluster(request.param, tmp_path):
        yield c


# -- talking to the hub -----------------------------------------------------------------------


@dataclass
class Client:
    """An HTTP client for one hub URL and key, with a timeout on every call (a hang fails)."""

    session: aiohttp.ClientSession
    url: str
    key: str
    timeout: float = 15.0

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method,
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.call(method, path, body)
        assert status in (200, 201, 202), (method, path, status, answer)
        return answer

    async def webhook(self, receiver: Receiver, name: str = "hook", **extra: Any) -> None:
        """A webhook destination to `receiver` and a route of every event to it."""
        await self.ok(
            "POST",
            "/v1/destinations",
            {"name": name, "kind": "webhook", "config": {"url": receiver.url}, **extra},
        )
        await self.ok("POST", "/v1/routes", {"name": name, "types": ["*"], "destinations": [name]})

    async def deliveries(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every delivery of the tenant through GET /v1/deliveries (or /v1/dlq), all pages."""
        out: list[dict[str, Any]] = []
        path = "/v1/dlq" if status == "dead" else "/v1/deliveries"
        params = f"?status={status}&limit=1000" if status and status != "dead" else "?limit=1000"
        cursor = None
        while True:
            page = await self.ok("GET", path + params + (f"&cursor={cursor}" if cursor else ""))
            out += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return out


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def event(event_id: str, n: int = 0) -> dict[str, Any]:
    return {"id": event_id, "type": "fault.tested", "data": {"n": n}}


# -- a webhook receiver -----------------------------------------------------------------------


@dataclass
class Hit:
    """One request the receiver saw."""

    webhook_id: str
    event_id: str
    attempt: int
    status: int = 0  # what it answered; 0 while held, or when the sender went away meanwhile


class Receiver:
    """A webhook receiver on a fixed port that can hold requests, fail a share of them at
    random, or go down (new connections refused, kept-alive ones answered 503 and closed)."""

    def __init__(self, seed: int = 5) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.hits: list[Hit] = []
        self.hold = 0.0  # seconds each request is held before it is answered
        self.fail_ratio = 0.0  # share of requests answered 503, at random
        self.down = False
        self.in_flight = 0  # requests held right now
        self.rng = random.Random(seed)
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        await self._runner.setup()
        await self.come_up()

    async def come_up(self) -> None:
        self.down = False
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    async def go_down(self) -> None:
        self.down = True
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        hit = Hit(
            request.headers.get("webhook-id", ""),
            request.headers.get("x-switchboard-event-id", ""),
            int(request.headers.get("x-switchboard-attempt", "0")),
        )
        self.hits.append(hit)
        if self.down:
            hit.status = 503
            response = web.Response(status=503, text="down")
            response.force_close()
            return response
        self.in_flight += 1
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
        finally:
            self.in_flight -= 1
        hit.status = 503 if self.rng.random() < self.fail_ratio else 200
        return web.Response(status=hit.status, text="ok" if hit.status == 200 else "flaky")

    def accepted(self) -> set[str]:
        """webhook-ids the receiver answered 2xx."""
        return {h.webhook_id for h in self.hits if h.status == 200}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.close()


# -- a TCP proxy that can cut the hub off its database ----------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. `cut()` resets every proxied connection and
    refuses new ones (the server died, or a firewall rejects); `freeze()` accepts and keeps
    connections but lets no byte through (a silent network partition). `restore()` heals
    either: a frozen connection has lost bytes, so it is reset then, as a client's timeout
    would have ended it anyway."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.frozen = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._reset_all()

    def freeze(self) -> None:
        self.frozen = True

    async def restore(self) -> None:
        if self.frozen:
            self.frozen = False
            self._reset_all()
        await self.start()

    async def close(self) -> None:
        self.frozen = False
        await self.cut()

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # an RST, as when a network path or a server dies
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.frozen:
                    continue  # swallowed, as by a partition
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
