"""Copies the example folders kept at the repository root (catalogs, provider mappings, message
templates, example routes and automations) into the built package as `switchboard/data/`, so an
installed wheel has them; `switchboard.resources` finds them there, or at the root of a source
tree. Everything else about the build is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("catalogs", "mappings", "templates", "examples")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "switchboard" / "data"
        for name in SHIPPED:
            if (ROOT / name).is_dir():
                shutil.copytree(
                    ROOT / name,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )


setup(cmdclass={"build_py": BuildWithData})
