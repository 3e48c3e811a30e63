"""The example folders shipped with the package: catalogs, provider mappings, message templates,
and the example routes and automations.

In the repository they sit at its root, where they are edited and reviewed. A built wheel carries
copies of them inside the package, as `switchboard/data/<name>` (`setup.py` copies them), so an
installed hub finds them without the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = ("catalogs", "mappings", "templates", "examples")


def shipped(name: str) -> Path:
    """The folder of shipped examples called `name` (one of SHIPPED): inside the installed
    package when it has one, else at the root of the source tree this module runs from."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped folder {name!r}; one of {', '.join(SHIPPED)}")
    packaged = resources.files("switchboard") / "data" / name
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / name
