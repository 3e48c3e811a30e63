"""`switchboard serve --processes N`: one supervising process that owns the listening sockets,
runs N API processes and the delivery worker processes beside them, restarts any that dies, and
drains them all on SIGTERM or SIGINT.

Why the supervisor owns the sockets (and not each child its own SO_REUSEPORT socket): on Linux it
binds N sockets to the one port with SO_REUSEPORT, one per API slot, and hands slot i's socket to
the child in slot i. The kernel spreads new connections over the N sockets by their addresses, so
a burst of connections reaches every child (a single shared socket lets whichever child wakes
first accept the whole burst). Because the parent keeps every socket open, a child that dies
takes no socket with it: connections the kernel queued on its socket wait there until the
restarted child accepts them, instead of being reset as they would be if the socket closed with
the child; and the port is never unbound between restarts. Elsewhere (no SO_REUSEPORT that
balances), one socket is shared by every child.

The children are fresh interpreters (`python -m switchboard serve --fd N`, `… worker`), not
forks: no event loop, thread or connection pool is copied across a fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from switchboard.config import Settings

__all__ = ["Supervisor", "as_child", "bind_sockets"]

log = logging.getLogger("switchboard.supervisor")

BACKLOG = 2048  # connections the kernel queues per socket while its child is busy or restarting
GRACE = 30.0  # seconds children have to drain after SIGTERM before they are killed
STEADY = 10.0  # a child that lived this long was healthy: its next restart is immediate
MAX_BACKOFF = 30.0  # the longest wait before restarting a child that keeps dying at once
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_PR_SET_PDEATHSIG = 1


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address: SO_REUSEPORT sockets on Linux (the kernel
    balances connections over them), else one socket shared by every child."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    balanced = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    out: list[socket.socket] = []
    try:
        for _ in range(count if balanced else 1):
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if balanced:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            address = (address[0], sock.getsockname()[1], *address[2:])  # port 0: the same one
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out


@dataclass
class Child:
    """One supervised process: its role, its slot, how to start it, and its restarts."""

    role: str  # "api" or "worker"
    slot: int
    argv: list[str]
    env: dict[str, str]
    fds: tuple[int, ...] = ()
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0  # deaths in a row within STEADY seconds of starting
    due: float = 0.0  # when a dead child is started again

    @property
    def name(self) -> str:
        return f"{self.role} {self.slot}"


def as_child() -> None:
    """Called first thing by a supervised child (`serve --fd`, `worker --supervised`): take the
    default signal mask back (the supervisor blocks the signals it waits for, and a mask
    survives exec) and, on Linux, ask for SIGTERM when the supervisor dies, so no child outlives
    it holding the port. Done in the child rather than between fork and exec: the supervisor
    runs a log-writing thread, and Python code there is not safe with threads."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the supervisor died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    fn: Callable[[int, int], int] = ctypes.CDLL(None).prctl
    return fn


_PRCTL = _prctl()


@dataclass
class Supervisor:
    """N API processes on the sockets given, W worker processes, supervised until a signal."""

    settings: Settings
    sockets: list[socket.socket]
    workers: int
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    children: list[Child] = field(default_factory=list)
    _own_metrics_dir: str | None = None

    def __post_init__(self) -> None:
        env = dict(self.environ)
        env["SWITCHBOARD_PROCESSES"] = "1"  # a child serves; it never supervises
        if not env.get("PROMETHEUS_MULTIPROC_DIR"):
            # every child writes its counters there, so /metrics in any child adds them all up
            self._own_metrics_dir = tempfile.mkdtemp(prefix="switchboard-metrics-")
            env["PROMETHEUS_MULTIPROC_DIR"] = self._own_metrics_dir
        if not self.settings.ui_secret:
            # one dashboard key for every child: a session signed by one is valid in the others
            env["SWITCHBOARD_UI_SECRET"] = secrets.token_urlsafe(32)
        python = [sys.executable, "-m", "switchboard"]
        for slot in range(self.settings.processes):
            sock = self.sockets[slot % len(self.sockets)]
            fd = sock.fileno()
            api_env = {**env, "SWITCHBOARD_RUN_WORKER": "0"}
            argv = [*python, "serve", "--fd", str(fd)]
            self.children.append(Child("api", slot + 1, argv, api_env, (fd,)))
        for slot in range(self.workers):
            argv = [*python, "worker", "--supervised"]
            self.children.append(Child("worker", slot + 1, argv, dict(env)))

    # -- starting and restarting -------------------------------------------------------------

    def _start(self, child: Child) -> None:
        child.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            child.argv,
            env=child.env,
            pass_fds=child.fds,
            stdin=subprocess.DEVNULL,
        )
        child.started = time.monotonic()
        log.info(
            f"started {child.name} (pid {child.popen.pid})",
            extra={
                "action": "process_started",
                "role": child.role,
                "slot": child.slot,
                "pid": child.popen.pid,
                "restarts": child.restarts,
            },
        )

    def _reap(self, now: float) -> None:
        """Notice children that exited and schedule their restart."""
        for child in self.children:
            if child.popen is None or child.popen.poll() is None:
                continue
            code = child.popen.returncode
            lived = now - child.started
            child.quick_deaths = child.quick_deaths + 1 if lived < STEADY else 0
            wait = (
                min(MAX_BACKOFF, 0.5 * 2 ** (child.quick_deaths - 1)) if child.quick_deaths else 0
            )
            child.due = now + wait
            how = f"signal {-code}" if code < 0 else f"code {code}"
            log.warning(
                f"{child.name} (pid {child.popen.pid}) exited with {how} after {lived:.1f} s; "
                f"restarting it in {wait:g} s",
                extra={
                    "action": "process_died",
                    "role": child.role,
                    "slot": child.slot,
                    "pid": child.popen.pid,
                    "exit": code,
                    "restart_in": wait,
                },
            )
            child.popen = None
            child.restarts += 1

    def _restart_due(self, now: float) -> None:
        for child in self.children:
            if child.popen is None and child.due <= now:
                self._start(child)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Start every child and supervise them until SIGTERM or SIGINT; then drain them.
        Returns the exit code (0 after a clean drain)."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for child in self.children:
                self._start(child)
            while True:
                now = time.monotonic()
                due = [c.due for c in self.children if c.popen is None]
                timeout = max(0.05, min(due) - now) if due else 5.0
                got = signal.sigtimedwait(_SIGNALS, timeout)
                if got is not None and got.si_signo in (signal.SIGTERM, signal.SIGINT):
                    name = signal.Signals(got.si_signo).name
                    log.info(
                        f"{name}: stopping {len(self.children)} processes",
                        extra={"action": "supervisor_stopping", "signal": name},
                    )
                    return self._drain()
                now = time.monotonic()
                self._reap(now)
                self._restart_due(now)
        finally:
            for child in self.children:  # only if the loop itself failed: none is left running
                if child.popen is not None and child.popen.poll() is None:
                    child.popen.kill()
                    child.popen.wait()
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            for sock in self.sockets:
                sock.close()
            if self._own_metrics_dir is not None:
                shutil.rmtree(self._own_metrics_dir, ignore_errors=True)

    def _drain(self) -> int:
        """SIGTERM to every child (each finishes its requests and deliveries in hand), then
        SIGKILL to any still running after GRACE seconds or a second SIGTERM/SIGINT."""
        running = [c for c in self.children if c.popen is not None and c.popen.poll() is None]
        for child in running:
            assert child.popen is not None
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        forced = False
        while running:
            left = deadline - time.monotonic()
            if left <= 0 or forced:
                for child in running:
                    assert child.popen is not None
                    log.warning(
                        f"{child.name} (pid {child.popen.pid}) did not stop: killed",
                        extra={"action": "process_killed", "pid": child.popen.pid},
                    )
                    child.popen.kill()
                    child.popen.wait()
                return 1
            got = signal.sigtimedwait(_SIGNALS, min(left, 1.0))
            if got is not None and got.si_signo in (signal.SIGTERM, signal.SIGINT):
                forced = True
            running = [c for c in running if c.popen is not None and c.popen.poll() is None]
        log.info("every process stopped", extra={"action": "supervisor_stopped"})
        return 0
