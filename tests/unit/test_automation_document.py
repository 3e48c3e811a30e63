"""The automation document's model (api/automation_document.py) against the parser: every
example the repository ships fits it, and what only the model refuses is a 422 naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from switchboard.api.automation_document import AutomationDocument, check_document
from switchboard.api.openapi import openapi_document
from switchboard.automations import from_yaml, parse_automation
from switchboard.errors import Unprocessable

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "automations"
SIMPLE: dict[str, Any] = {"name": "a", "on": "x.y", "steps": [{"send": {"destination": "d"}}]}


def _documents() -> list[Any]:
    docs = []
    for file in sorted(EXAMPLES.glob("*/automations.yaml")):
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        for doc in loaded["automations"] if isinstance(loaded, dict) else loaded:
            docs.append(json.loads(json.dumps(from_yaml(doc), default=str)))
    return docs


def test_every_shipped_example_fits_the_model() -> None:
    docs = _documents()
    assert len(docs) >= 10
    for doc in docs:
        parse_automation(doc)
        msgspec.convert(doc, type=AutomationDocument)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"description": 5}, "/description"),
        ({"enabled": "yes"}, "/enabled"),
        ({"steps": [{"send": {"destination": "d" * 201}}]}, "/steps/0/send/destination"),
        # the parser's \d takes any script's digits; the model (and its published pattern) not
        ({"steps": [{"wait": "\u0663h"}]}, "/steps/0/wait"),
        (
            {"steps": [{"if": {"type": ["x"]}, "then": [{"wait": "1h", "extra": 1}]}]},
            "/steps/0/then/0/extra",
        ),
    ],
)
def test_what_only_the_model_refuses_is_a_422_naming_the_field(
    change: dict[str, Any], path: str
) -> None:
    with pytest.raises(Unprocessable) as caught:
        check_document({**SIMPLE, **change}, "a")
    assert [d["path"] for d in caught.value.details] == [path]


def test_the_parser_lists_every_problem_before_the_model_is_asked() -> None:
    bad = {**SIMPLE, "description": 5, "steps": [{"wait": "2 hours"}, {"wait": "0s"}]}
    with pytest.raises(Unprocessable) as caught:
        check_document(bad, "a")
    assert [d["path"] for d in caught.value.details] == ["/steps/0/wait", "/steps/1/wait"]


def test_the_published_step_is_a_union_of_kinds() -> None:
    schemas = openapi_document()["components"]["schemas"]
    steps = schemas["AutomationDocument"]["properties"]["steps"]["items"]
    kinds = {tuple(alt["required"]) for alt in steps["oneOf"]}
    assert kinds == {("wait",), ("wait_for",), ("send",), ("emit",), ("if",), ("digest",)}
    assert steps["$ref"] == "#/components/schemas/Step"
