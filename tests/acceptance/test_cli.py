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
        "SWITCHBOARD_EGRESS_ALLOW": "127.0.0.0/8",  # receivers here listen on loopback
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
    assert emitted.stdout.startswith("accepted purchase_made ")
    bad = run(env, "emit", "purchase_made", json.dumps({"value": "caro"}), ok=False)
    assert bad.returncode == 1 and "/data/value" in bad.stderr
    answer = run(env, "emit", "purchase_made", json.dumps({"value": "caro"}), "--json", ok=False)
    assert json.loads(answer.stdout)["results"][0]["status"] == "rejected"
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
    assert "would replay 1 events into 1 deliveries" in dry.stdout
    done = run(env, "replay", "--type", "purchase_made", "--destination", "inbox")
    assert "done: 1 events, 1 deliveries" in done.stdout
    stats = run(env, "dlq", "stats", "--json")
    assert json.loads(stats.stdout)["total"] == 0
    keys = run(env, "keys", "list", "--tenant", "clinic")
    assert "ingest" in keys.stdout and env["SWITCHBOARD_API_KEY"] not in keys.stdout


# -- the first hour (issue 22): every point as a user meets it ---------------------------------


class _Receiver:
    """A webhook receiver on 127.0.0.1 in a thread: answers `status` to every POST."""

    def __init__(self, status: int = 200) -> None:
        import http.server
        import threading

        outer = self
        self.status = status
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.hits += 1
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hook_file(tmp_path: Path, url: str, schedule: str = "0,1s") -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        "destinations:\n"
        f"  - name: crm\n    kind: webhook\n    config: {{url: '{url}'}}\n"
        f"    retry_schedule: '{schedule}'\n"
        "routes:\n"
        "  - name: everything\n    types: ['*']\n    destinations: [crm]\n",
        encoding="utf-8",
    )
    return path


def _wait_for(check, within: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def _rows(proc: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_hub_commands_find_the_hub_where_serve_listens(hub_env: dict[str, str]) -> None:
    env = {k: v for k, v in hub_env.items() if k != "SWITCHBOARD_URL"}
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    listed = run(env, "events", "list")  # SWITCHBOARD_PORT alone, as `serve` reads it
    assert "time (UTC)" in listed.stdout


def test_an_unreachable_hub_is_one_line_naming_the_url_and_the_variable() -> None:
    port = free_port()
    env = {**os.environ, "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_API_KEY": "sb_x"}
    env.pop("SWITCHBOARD_URL", None)
    proc = run(env, "events", "list", ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"http://127.0.0.1:{port}" in lines[0] and "SWITCHBOARD_URL" in lines[0]
    env["SWITCHBOARD_URL"] = f"http://127.0.0.1:{port}/"
    proc = run(env, "dlq", "stats", ok=False)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_quickstart_prints_the_exports_and_reuses_the_demo_tenant(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'qs.db'}",
        "SWITCHBOARD_PORT": str(port),
    }
    first = run(env, "quickstart", "--no-serve")
    export = [line for line in first.stdout.splitlines() if line.startswith("export ")]
    assert export and f"SWITCHBOARD_URL=http://127.0.0.1:{port}" in export[0]
    key = export[0].split("SWITCHBOARD_API_KEY=")[1]
    assert key.startswith("sb_")
    master = tmp_path / "master.key"  # beside the database, the owner's only
    assert master.exists() and master.stat().st_mode & 0o077 == 0
    assert f"SWITCHBOARD_MASTER_KEY_FILE={master}" in first.stderr
    second = run(env, "quickstart", "--no-serve")
    assert "created the master key" not in second.stderr  # the same key, found again
    assert "reusing tenant demo" in second.stderr
    assert "switchboard keys create --tenant demo" in second.stderr
    assert "sb_" not in second.stdout + second.stderr  # no second key minted, none shown
    keys = _rows(run(env, "keys", "list", "--tenant", "demo", "--json"))
    assert len(keys) == 1
    assert sorted(keys[0]["scopes"]) == ["ingest", "manage", "pii", "read"]  # the demo reads back


def test_database_commands_name_their_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url}
    run(env, "migrate")
    for args in (
        ["keys", "create", "--tenant", "demo"],
        ["catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "demo"],
        ["keys", "revoke", "key_nope"],
    ):
        proc = run(env, *args, ok=False)
        assert proc.returncode == 1
        assert url in proc.stderr and "SWITCHBOARD_DATABASE_URL" in proc.stderr, proc.stderr
    env["SWITCHBOARD_DATABASE_URL"] = f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x"
    proc = run(env, "tenants", "list", ok=False)
    assert "127.0.0.1" in proc.stderr and "hunter2" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for group in ("tenants", "keys", "catalog", "migrate", "quickstart"):
        assert "SWITCHBOARD_DATABASE_URL" in run(env, group, "--help").stdout, group
    assert "SWITCHBOARD_DATABASE_URL" in run(env, "keys", "create", "--help").stdout
    top = run(env, "--help").stdout
    assert "Database commands" in top and "Hub commands" in top


def test_version() -> None:
    proc = run(dict(os.environ), "--version")
    assert proc.stdout.startswith("switchboard ")


def test_a_failure_the_dlq_round_trip_and_a_replay_with_the_cli(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    env = hub_env
    dead_port = free_port()  # nothing listens here yet: every attempt is refused
    applied = run(
        env, "routes", "apply", str(_hook_file(tmp_path, f"http://127.0.0.1:{dead_port}/"))
    )
    assert "created destination crm" in applied.stdout
    assert "signing secret of crm (shown once): whsec_" in applied.stdout
    again = run(env, "routes", "apply", str(_hook_file(tmp_path, f"http://127.0.0.1:{dead_port}/")))
    assert "whsec_" not in again.stdout  # shown once, on creation
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    emitted = run(
        env, "emit", "purchase_made", json.dumps({"value": 1, "currency": "BRL", "items": []})
    )
    event_id = emitted.stdout.split()[-1]
    dead = _wait_for(lambda: _rows(run(env, "dlq", "list", "--json")))
    delivery_id = str(dead[0]["id"])
    # tables: whole ids, destination names
    table_out = run(env, "dlq", "list").stdout
    assert delivery_id in table_out and " crm " in table_out and "dst_" not in table_out
    listed = run(env, "deliveries", "list", "--event", event_id).stdout
    assert delivery_id in listed and "crm" in listed
    watched = run(env, "deliveries", "attempts", delivery_id, "--watch", ok=False)
    assert watched.returncode == 1 and "is dead" in watched.stderr
    assert len(_rows(run(env, "deliveries", "attempts", delivery_id, "--json"))) == 2
    tail = run(
        env,
        "events",
        "tail",
        "--since",
        "10m",
        "--type",
        "switchboard.delivery_*",
        "--max-seconds",
        "1",
    )
    assert "switchboard.delivery_dead" in tail.stdout
    assert "destination_name=crm" in tail.stdout  # the hub's events in words, not dst_ ids
    # retrying: an unknown id fails, no ids asks (here: refuses without a terminal)
    unknown = run(env, "dlq", "retry", "dlv_nope", ok=False)
    assert unknown.returncode == 1 and "dlv_nope" in unknown.stderr
    refused = run(env, "dlq", "retry", ok=False)
    assert refused.returncode == 2 and "--all" in refused.stderr
    receiver = _Receiver()
    try:
        run(env, "destinations", "update", "crm", "--config", json.dumps({"url": receiver.url}))
        assert "requeued 1" in run(env, "dlq", "retry", "--all").stdout
        ok = run(env, "deliveries", "attempts", delivery_id, "--watch")
        assert "is succeeded" in ok.stderr
        replayed = run(
            env, "replay", "--type", "purchase_*", "--from", "1h", "--destination", "crm"
        )
        assert "done: 1 events, 1 deliveries" in replayed.stdout
        _wait_for(lambda: receiver.hits >= 2)
    finally:
        receiver.close()


def test_every_listing_has_json(hub_env: dict[str, str], tmp_path: Path) -> None:
    env = hub_env
    run(env, "routes", "apply", str(_hook_file(tmp_path, "http://127.0.0.1:9/")))
    run(
        env,
        "sources",
        "create",
        "form",
        "--preset",
        "token",
        "--preset-config",
        '{"headers": ["X-Form-Token"]}',
    )
    for args in (
        ["tenants", "list"],
        ["keys", "list"],
        ["events", "list"],
        ["routes", "list"],
        ["destinations", "list"],
        ["sources", "list"],
        ["deliveries", "list"],
        ["dlq", "list"],
    ):
        proc = run(env, *args, "--json")
        for line in proc.stdout.splitlines():
            assert isinstance(json.loads(line), dict), (args, line)
    assert json.loads(run(env, "dlq", "stats", "--json").stdout)["total"] == 0
    assert _rows(run(env, "destinations", "list", "--json"))[0]["name"] == "crm"
    assert _rows(run(env, "sources", "list", "--json"))[0]["name"] == "form"


def test_routes_apply_names_the_item_that_failed(hub_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "destinations:\n"
        "  - name: ok\n    kind: inbox\n    config: {recipient_path: subject}\n"
        "  - name: bad-hook\n    kind: webhook\n    config: {url: 'ftp://x'}\n",
        encoding="utf-8",
    )
    proc = run(hub_env, "routes", "apply", str(path), ok=False)
    assert proc.returncode == 1
    assert "destinations[1] (bad-hook)" in proc.stderr and "config.url" in proc.stderr


def test_times_are_relative_or_iso_and_a_bad_one_shows_an_example(
    hub_env: dict[str, str],
) -> None:
    env = hub_env
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    body = json.dumps({"value": 1, "currency": "BRL", "items": []})
    run(env, "emit", "purchase_made", body, "--subject", "s-1", "--source", "pos")
    assert "s-1" in run(env, "events", "list", "--since", "1h").stdout
    assert "s-1" in run(env, "events", "list", "--from", "2d", "--to", "2099-01-01").stdout
    assert "s-1" not in run(env, "events", "list", "--to", "2d").stdout
    bad = run(env, "events", "list", "--from", "yesterday", ok=False)
    assert bad.returncode == 2 and "2d" in bad.stderr and "T09:00:00Z" in bad.stderr
    bad = run(env, "replay", "--from", "soon", "--dry-run", ok=False)
    assert bad.returncode == 2 and "30m" in bad.stderr


def test_events_list_filters_and_repeatable_type_globs(hub_env: dict[str, str]) -> None:
    env = hub_env
    run(env, "catalog", "apply", "catalogs/clinic-loyalty", "--tenant", "clinic")
    body = json.dumps({"value": 1, "currency": "BRL", "items": []})
    for n in range(3):
        run(env, "emit", "purchase_made", body, "--subject", f"s-{n}", "--source", f"pos{n % 2}")
    assert len(_rows(run(env, "events", "list", "--subject", "s-1", "--json"))) == 1
    assert len(_rows(run(env, "events", "list", "--source", "pos0", "--json"))) == 2
    both = run(env, "events", "list", "--type", "purchase_*", "--type", "nothing.here", "--json")
    assert len(_rows(both)) == 3
    assert _rows(run(env, "events", "list", "--type", "nothing.*", "--json")) == []
    page = run(env, "events", "list", "--limit", "2")
    assert "more: --cursor " in page.stderr
    cursor = page.stderr.split("--cursor ")[1].split()[0]
    rest = _rows(run(env, "events", "list", "--limit", "2", "--cursor", cursor, "--json"))
    assert len(rest) == 1
    line = run(env, "events", "list").stdout.splitlines()[1]
    assert "purchase_made" in line and "{" not in line  # compact: no data blobs
    tail_help = run(env, "events", "tail", "--help").stdout
    assert "switchboard.delivery_" in tail_help and "internal" in tail_help
