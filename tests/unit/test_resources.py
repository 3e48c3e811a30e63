"""`switchboard.resources` finds the shipped example folders; from a source checkout, at the root
of the repository (the wheel's copy is checked by tests/acceptance/test_wheel.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.resources import SHIPPED, shipped
from switchboard.sources.mappings import shipped_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_source_checkout_finds_the_folders_at_its_root(name: str) -> None:
    assert shipped(name) == ROOT / name
    assert any(shipped(name).iterdir())


def test_the_shipped_mappings_are_the_mappings_folder() -> None:
    assert shipped_dir() == ROOT / "mappings"


def test_an_unknown_folder_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no shipped folder 'secrets'"):
        shipped("secrets")
