"""`switchboard serve` as a user runs it has the connection guards (header size, slow clients,
forwarding headers): the CLI starts the server from the same configuration as the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "switchboard")

pytestmark = pytest.mark.security


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'guards.db'}",
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_MAX_HEADER_BYTES": "2048",
        "SWITCHBOARD_HEADER_TIMEOUT": "0.5",
        "SWITCHBOARD_RUN_WORKER": "0",
    }
    server = subprocess.Popen([CLI, "serve"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("the hub did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(30)  # a server that never closes fails the test instead of hanging it
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_serve_answers_431_to_a_big_header(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 431")


def test_serve_closes_a_connection_that_trickles_its_headers(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # and then nothing more
        assert _answer(sock).startswith(b"HTTP/1.1 408")
