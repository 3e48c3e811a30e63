"""Reaching the real services the tests use; a missing service skips locally, fails in CI."""

from __future__ import annotations

import os
import socket

import pytest

PG_URL = os.environ.get("SWITCHBOARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or fail, when SWITCHBOARD_REQUIRE_SERVICES=1 as in CI) if the service is down."""
    if service_up(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and SWITCHBOARD_REQUIRE_SERVICES=1 makes it required")
    pytest.skip(reason)


def require_postgres() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_URL
