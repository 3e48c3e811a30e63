"""The supervisor's pieces with real sockets and real child processes: one port for every API
slot, and a child that keeps dying at once waits longer each time before it is started again."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import time

from switchboard.config import Settings
from switchboard.supervisor import MAX_BACKOFF, Supervisor, bind_sockets


def test_every_slot_gets_its_own_socket_on_one_port() -> None:
    sockets = bind_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(sockets) == 3 and len(ports) == 1
        assert all(s.get_inheritable() for s in sockets)
        # a connection to the port is queued on one of them and waits there to be accepted
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            for s in sockets:
                s.setblocking(False)
            accepted = []
            deadline = time.monotonic() + 5
            while not accepted and time.monotonic() < deadline:
                for s in sockets:
                    with contextlib.suppress(BlockingIOError):
                        accepted.append(s.accept()[0])
            assert len(accepted) == 1
            accepted[0].close()
    finally:
        for s in sockets:
            s.close()


def test_a_child_that_keeps_dying_at_once_is_restarted_after_a_growing_pause() -> None:
    s = Settings(database_url="postgresql://127.0.0.1/unused", processes=1)
    sockets = bind_sockets("127.0.0.1", 0, 1)
    sup = Supervisor(s, sockets, workers=0, environ={"PATH": "/usr/bin:/bin"})
    try:
        child = sup.children[0]
        assert child.role == "api" and "--fd" in child.argv
        assert child.env["SWITCHBOARD_PROCESSES"] == "1"  # a child never supervises in turn
        assert child.env["SWITCHBOARD_RUN_WORKER"] == "0"
        assert len(child.env["SWITCHBOARD_UI_SECRET"]) >= 32  # one key for every child
        child.argv = [sys.executable, "-c", "raise SystemExit(3)"]  # dies at once, every time
        waits = []
        for _ in range(4):
            sup._start(child)
            assert child.popen is not None
            child.popen.wait(30)
            now = time.monotonic()
            sup._reap(now)
            assert child.popen is None
            waits.append(child.due - now)
        assert waits == [0.5, 1.0, 2.0, 4.0]
        assert child.restarts == 4
        child.quick_deaths = 20
        sup._start(child)
        assert child.popen is not None
        child.popen.wait(30)
        sup._reap(time.monotonic())
        assert child.due - time.monotonic() <= MAX_BACKOFF
    finally:
        for sock in sockets:
            sock.close()
        if sup._own_metrics_dir is not None:
            shutil.rmtree(sup._own_metrics_dir, ignore_errors=True)
