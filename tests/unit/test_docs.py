"""The README stays true: every setting is documented, with its default."""

from __future__ import annotations

from pathlib import Path

from switchboard.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_readme_documents_every_setting_with_its_default() -> None:
    for variable, default, _ in Settings.documentation():
        assert f"| `{variable}` | `{default}` |" in README, variable


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
