"""The real CLI as a user runs it: tenants, keys, serve, emit, routes, replay, catalog."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "switchboard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def hub_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_URL": f"http://127.0.0.1:{port}",
        "SWITCHBOARD_WORKER_POLL": "0.05",
    }
    run(env, "migrate")
    run(env, "tenants", "create", "clinic", "--unknown-types", "reject")
    key = run(env, "keys", "create", "--tenant", "clinic", "--scopes", "ingest,read,manage")
    env["SWITCHBOARD_API_KEY"] = key.stdout.strip().splitlines()[-1]
    server = subprocess.Popen([CLI, "serve"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the hub did not start") from None
            time.sleep(0.05)
    try:
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def test_catalog_lint_and_docs_from_the_cli(tmp_path: Path) -> None:
    env = dict(os.environ)
    lint = run(env, "catalog", "lint", "catalogs/clinic-loyalty", "catalogs/legal-practice")
    assert "0 problems" in lint.stdout
    run(env, "catalog", "docs", "catalogs/essay-platform", "--out", str(tmp_path / "docs"))
    index = (tmp_path / "docs" / "README.md").read_text(encoding="utf-8")
    assert "consentimento_registrado" in index
    page = (tmp_path / "docs" / "consentimento_registrado.md").read_text(encoding="utf-8")
    assert "versao_termo" in page


def test_a_user_session_end_to_end(hub_env: dict[str, str], tmp_path: Path) -> None:
    env = hub_env
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    emitted = run(
        env,
        "emit",
        "purchase_made",
        json.dumps(
            {
                "value": 120.5,
                "currency": "BRL",
                "items": [{"categoria": "estetica", "qty": 1, "price": 120.5}],
            }
        ),
        "--subject",
        "cust-9",
    )
    assert '"accepted"' in emitted.stdout
    bad = run(env, "emit", "purchase_made", json.dumps({"value": "caro"}), ok=False)
    assert bad.returncode == 1 and "/data/value" in bad.stdout
    listed = run(env, "events", "list", "--type", "purchase_*")
    assert "cust-9" in listed.stdout
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "destinations:\n"
        "  - name: inbox\n    kind: inbox\n    config: {recipient_path: subject}\n"
        "routes:\n"
        "  - name: purchases\n    types: [purchase_made]\n    destinations: [inbox]\n",
        encoding="utf-8",
    )
    applied = run(env, "routes", "apply", str(routes))
    assert "created destination inbox" in applied.stdout
    again = run(env, "routes", "apply", str(routes))
    assert "updated destination inbox" in again.stdout
    dry = run(env, "replay", "--type", "purchase_made", "--destination", "inbox", "--dry-run")
    assert json.loads(dry.stdout)["events"] == 1
    done = run(env, "replay", "--type", "purchase_made", "--destination", "inbox")
    assert "done: 1 events, 1 deliveries" in done.stdout
    stats = run(env, "dlq", "stats")
    assert json.loads(stats.stdout)["total"] == 0
    keys = run(env, "keys", "list", "--tenant", "clinic")
    assert "ingest" in keys.stdout and env["SWITCHBOARD_API_KEY"] not in keys.stdout
