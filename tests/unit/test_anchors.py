"""An anchored pattern matches the whole text: Python's `$` also matches before a final newline,
so `^name$` took "name\\n" (an automation, a source or a tenant named with a trailing newline).
Every anchored pattern ends `(?!\\n)$`, which reads the same in Python and in the ECMA-262
dialect of the OpenAPI document, and the hub refuses such text with a 400 naming it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from switchboard.api.openapi import openapi_document
from switchboard.automations import NAME_RE
from switchboard.envelope import TYPE_RE
from switchboard.sources import NAME_RE as SOURCE_NAME_RE

SRC = Path(__file__).resolve().parents[2] / "src" / "switchboard"
ANCHORED = re.compile(r"""r?"\^[^"\n]*\$\"""")


def test_every_anchored_pattern_in_the_source_refuses_a_final_newline() -> None:
    loose = [
        f"{path.relative_to(SRC)}: {found}"
        for path in sorted(SRC.rglob("*.py"))
        for found in ANCHORED.findall(path.read_text(encoding="utf-8"))
        if not found.endswith(r'(?!\n)$"')
    ]
    assert loose == []


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_the_documents_anchored_patterns_refuse_a_final_newline() -> None:
    patterns = _patterns(openapi_document())
    assert len(patterns) > 20
    assert [p for p in patterns if p.endswith("$") and not p.endswith(r"(?!\n)$")] == []


@pytest.mark.parametrize(
    ("pattern", "text"),
    [(TYPE_RE, "order.created"), (NAME_RE, "service-feedback"), (SOURCE_NAME_RE, "zapi")],
)
def test_a_name_with_a_final_newline_does_not_match(pattern: re.Pattern[str], text: str) -> None:
    assert pattern.match(text)
    assert not pattern.match(text + "\n")
    assert not pattern.search(text + "\n")
