"""The TypeScript SDK (sdks/typescript), built with its own compiler from npm, and its Node test
suite run against a real hub on each store; and the types `switchboard catalog codegen` writes,
compiled in both languages for every example catalog.

Node and npm are required: without them these tests skip locally and fail in CI
(SWITCHBOARD_REQUIRE_SERVICES=1), like a missing database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.auth import mint_key
from switchboard.catalog import load_catalog_dir
from switchboard.codegen import Lang, generate
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.store import Tenant
from switchboard.store.backends import open_store
from tests.acceptance.conftest import CLI, ROOT, Cluster

SDK = ROOT / "sdks" / "typescript"
CATALOGS = sorted(p for p in (ROOT / "catalogs").iterdir() if (p / "catalog.yaml").is_file())
NODE_TESTS = ["build/pure.test.js", "build/hub.test.js"]


def _tools() -> tuple[str, str]:
    """node and npm, or a skip (a failure in CI) naming what is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    problem = None
    if node is None or npm is None:
        problem = "node and npm are not installed"
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        if int(version.strip().lstrip("v").split(".")[0]) < 18:
            problem = f"node {version.strip()} is older than 18"
    if problem is None:
        assert node is not None and npm is not None
        return node, npm
    if os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{problem}, and SWITCHBOARD_REQUIRE_SERVICES=1 requires the TypeScript SDK")
    pytest.skip(f"{problem}: the TypeScript SDK tests need them")


def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    where = f"{result.args}:\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, where
    return result.stdout


@pytest.fixture(scope="module")
def sdk() -> Path:
    """The SDK's dev dependencies installed from its lock file, the package and its tests built."""
    _node, npm = _tools()
    # `npm ci` again only when the lock file changed since the last one (CI starts clean)
    stamp = SDK / "node_modules" / ".switchboard-lock-sha256"
    lock = hashlib.sha256((SDK / "package-lock.json").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != lock:
        _ok(_run([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], SDK))
        stamp.write_text(lock)
    _ok(_run([npm, "run", "--silent", "build"], SDK))
    _ok(_run([npm, "run", "--silent", "build:test"], SDK))
    return SDK


def _tsc(sdk: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    """Type-check files as a strict ES module project would (no Node types, as on the edge)."""
    config = files[0].parent / f"tsconfig.{files[-1].stem}.json"
    options = {
        "noEmit": True,
        "strict": True,
        "noUncheckedIndexedAccess": True,
        "target": "es2022",
        "lib": ["es2022", "dom"],
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "types": [],
        "skipLibCheck": True,
    }
    config.write_text(json.dumps({"compilerOptions": options, "files": [str(f) for f in files]}))
    (config.parent / "package.json").write_text('{"type": "module"}')
    return _run([str(sdk / "node_modules" / ".bin" / "tsc"), "-p", str(config)], sdk)


async def _native_tenant(cluster: Cluster) -> str:
    """A second tenant, for POSTing the same objects the SDK sends; its key has the same name
    and no default source, as the cluster's own key."""
    store = open_store(Settings(database_url=cluster.database_url))
    await store.open()
    try:
        await store.create_tenant(Tenant("native", "Native shapes", "accept", now_us()))
        key, record = mint_key("native", "fault", ["ingest", "read"])
        await store.create_key(record)
    finally:
        await store.close()
    return key


@pytest.mark.slow
async def test_node_suite_passes_against_a_real_hub(
    cluster: Cluster, sdk: Path, tmp_path: Path
) -> None:
    """sdks/typescript/test/*.test.ts under `node --test`: batching, retries across a hub
    restart with nothing lost or doubled, Retry-After of a rate-limited key, the clinic and legal
    adapters against the hub's native handling of the same objects, emit/flush/close promises."""
    node, _npm = _tools()
    native_key = await _native_tenant(cluster)
    hub_env = cluster.env()
    hub_env.pop("SWITCHBOARD_PORT")
    env = {
        **os.environ,
        "SWITCHBOARD_TEST_CLI": CLI,
        "SWITCHBOARD_TEST_HUB_ENV": json.dumps(hub_env),
        "SWITCHBOARD_TEST_KEY": cluster.key,
        "SWITCHBOARD_TEST_NATIVE_KEY": native_key,
        "SWITCHBOARD_TEST_TMP": str(tmp_path),
        "SWITCHBOARD_TEST_BACKEND": cluster.backend,
    }
    # A session of its own: whatever the suite started (hubs) goes with it, pass or fail.
    proc = subprocess.Popen(
        [node, "--test", "--test-reporter=tap", *NODE_TESTS],
        cwd=sdk,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=150)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("hub-*.log"))
    summary = dict(re.findall(r"^# (\w+) (\d+)$", output, re.MULTILINE))
    assert proc.returncode == 0 and summary.get("fail") == "0", f"{output[-12000:]}\n{logs}"
    assert summary.get("skipped") == "0" and int(summary.get("pass", "0")) >= 15, output[-3000:]


def _codegen(lang: Lang, out_dir: Path) -> list[Path]:
    """Every example catalog's module: clinic-loyalty's through the CLI, the others through
    the same function directly (a CLI start per catalog would only add seconds)."""
    files = []
    for catalog in CATALOGS:
        name = catalog.name if lang is Lang.TYPESCRIPT else catalog.name.replace("-", "_")
        out = out_dir / f"{name}.{'ts' if lang is Lang.TYPESCRIPT else 'py'}"
        if catalog.name == "clinic-loyalty":
            command = [CLI, "catalog", "codegen", "--lang", lang, str(catalog), "-o", str(out)]
            _ok(_run(command, ROOT))
        else:
            out.write_text(generate(load_catalog_dir(catalog), lang), encoding="utf-8")
        files.append(out)
    return files


def test_generated_typescript_compiles_and_refuses_a_wrong_field(sdk: Path, tmp_path: Path) -> None:
    files = _codegen(Lang.TYPESCRIPT, tmp_path)
    index = json.dumps(str(sdk / "dist" / "index.js"))  # the built package, as users get it
    use = """
import { Client } from %s;
import type { Events, LeadCreated } from "./clinic-loyalty.js";
import { versions } from "./clinic-loyalty.js";
const hub = new Client<Events>({ url: "http://127.0.0.1:1", apiKey: "k" });
const lead: LeadCreated = { source: "landing" };
hub.emit("lead_created", lead, { version: versions.lead_created });
hub.emit("lead_created", { source: "landing", device: "mobile", campaign_id: "c" });
hub.emitEvent({ eventType: "purchase_made", actor: "clinic", clinicId: "c7",
  metadata: { value: 480, currency: "BRL", items: [{ categoria: "f", qty: 1, price: 480 }] } });
"""
    ok = tmp_path / "use_ok.ts"
    ok.write_text(use % index)
    _ok(_tsc(sdk, *files, ok))
    wrong = tmp_path / "use_wrong.ts"
    wrong.write_text(
        (use % index) + 'hub.emit("lead_created", { source: "landing", campaing_id: "c" });\n'
    )
    result = _tsc(sdk, wrong)
    assert result.returncode != 0, "a misspelt field compiled"
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    assert len(errors) == 1 and "use_wrong.ts(11," in errors[0], result.stdout
    assert "'campaing_id' does not exist in type 'LeadCreated'" in errors[0], errors[0]


def test_generated_python_passes_mypy_strict_and_refuses_a_wrong_field(tmp_path: Path) -> None:
    _codegen(Lang.PYTHON, tmp_path)
    use = """
from switchboard.client import AsyncClient, Client

from clinic_loyalty import VERSIONS, Emitter, LeadCreated

events: Emitter = Client("http://127.0.0.1:1", "k")
lead: LeadCreated = {"source": "landing"}
events.emit("lead_created", lead, version=VERSIONS["lead_created"], subject="cust-42")
events.emit("lead_created", {"source": "landing", "device": "mobile", "campaign_id": "c"})
async_events: Emitter = AsyncClient("http://127.0.0.1:1", "k")
"""
    (tmp_path / "use_ok.py").write_text(use)
    # the project's own mypy cache (git-ignored): the SDK and aiohttp are analysed once, not per run
    cache = ROOT / ".mypy_cache" / "codegen"
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", f"--cache-dir={cache}"]
    _ok(_run([*mypy, *(p.name for p in sorted(tmp_path.glob("*.py")))], tmp_path))
    (tmp_path / "use_wrong.py").write_text(
        use + 'wrong: LeadCreated = {"source": "landing", "campaing_id": "c"}\n'
    )
    result = _run([*mypy, "use_wrong.py"], tmp_path)
    assert result.returncode != 0, "a misspelt field passed mypy"
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith("use_wrong.py:11:"), errors[0]
    assert 'Extra key "campaing_id" for TypedDict "LeadCreated"' in errors[0], errors[0]
