"""The package stands on its own: a wheel built from the source, installed into a fresh
virtualenv, runs the quickstart from an empty folder with the example catalogs, provider
mappings, message templates and example routes it carries inside itself."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("catalogs", "mappings", "templates", "examples")
# what a build reads: the project files and the folders setup.py copies into the package
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", *SHIPPED)

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the wheel built from a copy of this source tree (the copy keeps the
    build's files out of the working tree). The project's dependencies come from the test's own
    environment through a .pth line, so nothing but the build backend is fetched from the
    package index; the wheel itself is installed with --no-deps."""
    base = tmp_path_factory.mktemp("wheel")
    copy = base / "source"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, copy / name)
    pip = (sys.executable, "-m", "pip")
    _run(*pip, "wheel", "--no-deps", "-q", "-w", base / "dist", copy, cwd=base)
    wheels = list((base / "dist").glob("switchboard-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    python = venv / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base)
        .strip()
        .splitlines()[-1]
    )
    (site / "_switchboard_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(*pip, "--python", python, "install", "-q", "--no-deps", wheels[0], cwd=base)
    return venv


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWITCHBOARD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["SWITCHBOARD_DATABASE_URL"] = f"sqlite:///{tmp / 'hub.db'}"
    return env


def test_the_installed_package_carries_its_example_folders(installed: Path, tmp_path: Path) -> None:
    script = (
        "import switchboard, json\n"
        "from switchboard.resources import SHIPPED, shipped\n"
        "from switchboard.sources.mappings import load_mapping_dir, shipped_dir\n"
        "print(json.dumps({'package': switchboard.__file__,\n"
        "  'folders': {n: str(shipped(n)) for n in SHIPPED},\n"
        "  'mappings': sorted(f'{n}@{v}' for n, v in load_mapping_dir(shipped_dir()))}))\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _run(installed / "bin" / "python", "-c", script, cwd=empty, env=_clean_env(tmp_path))
    found = json.loads(out.strip().splitlines()[-1])
    venv = str(installed.resolve())
    assert found["package"].startswith(venv), found["package"]  # not the source tree
    for name in SHIPPED:
        folder = Path(found["folders"][name])
        assert str(folder).startswith(venv), (name, folder)
        shipped_files = sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
        )
        source_files = sorted(
            p.relative_to(ROOT / name).as_posix()
            for p in (ROOT / name).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        assert shipped_files == source_files, name
    assert any(m.startswith("stripe@") for m in found["mappings"]), found["mappings"]
    assert any(m.startswith("asaas@") for m in found["mappings"]), found["mappings"]


def test_quickstart_from_an_empty_folder_applies_the_shipped_catalogs(
    installed: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _clean_env(tmp_path)
    out = _run(installed / "bin" / "switchboard", "quickstart", "--no-serve", cwd=empty, env=env)
    catalogs = [p for p in (ROOT / "catalogs").iterdir() if (p / "catalog.yaml").exists()]
    assert f"{len(catalogs)} example catalogs applied" in out, out
    assert "export SWITCHBOARD_URL=" in out
    examples = next(line for line in out.splitlines() if "Example routes" in line)
    assert str(installed.resolve()) in examples, examples
    assert list(empty.iterdir()) == []  # nothing was looked for, or left, in the folder
    with sqlite3.connect(tmp_path / "hub.db") as db:
        types = {row[0] for row in db.execute("SELECT name FROM event_types")}
    assert {"lead.created", "segment.identify"} <= types, sorted(types)[:20]
