"""The generated catalog docs in docs/catalog/ match the YAML in catalogs/ (regenerate with
`switchboard catalog docs catalogs/NAME --out docs/catalog/NAME`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.catalog import load_catalog_dir, render_docs

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = sorted(p for p in (ROOT / "catalogs").iterdir() if (p / "catalog.yaml").exists())


@pytest.mark.parametrize("folder", CATALOGS, ids=[p.name for p in CATALOGS])
def test_committed_catalog_docs_are_current(folder: Path) -> None:
    files = render_docs(load_catalog_dir(folder))
    out = ROOT / "docs" / "catalog" / folder.name
    for name, text in files.items():
        assert (out / name).read_text(encoding="utf-8") == text, f"{folder.name}/{name} is stale"
