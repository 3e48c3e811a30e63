"""`codegen`: a catalog's latest schemas as TypeScript interfaces and Python TypedDicts.
That the output compiles, for every example catalog: tests/acceptance/test_typescript_sdk.py.
"""

from __future__ import annotations

from typing import Any

from switchboard.catalog import CatalogSpec, EventTypeSpec, TypeVersion
from switchboard.codegen import Lang, generate


def _catalog(*types: tuple[str, dict[str, Any]]) -> CatalogSpec:
    specs = tuple(
        EventTypeSpec(
            name=name,
            description=f"About {name}.",
            owner=None,
            mode="enforce",
            pii=(),
            index=(),
            versions=(
                TypeVersion("1.0", {"properties": {"old": {"type": "string"}}}, ()),
                TypeVersion("2.0", schema, ()),
            ),
        )
        for name, schema in types
    )
    return CatalogSpec("test", "", None, (), "reject", specs)


LEAD = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": {"type": "string", "description": "Form */ or link"},
        "device": {"type": ["string", "null"]},
        "channel": {"enum": ["pos", "online"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["qty"],
                "properties": {"qty": {"type": "integer"}, "price": {"type": "number"}},
            },
        },
        "changes": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "extra": {"type": "object", "properties": {"a": {}}, "additionalProperties": True},
        "gênero": {"type": "string", "format": "email"},
    },
}


def test_typescript_interface_from_the_latest_version_with_optional_fields() -> None:
    text = generate(_catalog(("lead.created", LEAD)), Lang.TYPESCRIPT)
    assert "/** `lead.created` 2.0: About lead.created. */" in text
    assert "export interface LeadCreated {" in text
    assert "old" not in text  # version 1.0's field
    assert "  /** Form * / or link */\n  source: string;" in text  # a description cannot end it
    assert "  device?: string | null;" in text
    assert '  channel?: "pos" | "online";' in text
    assert "  items?: Array<{\n    qty: number;\n    price?: number;\n  }>;" in text
    assert "  changes?: Record<string, boolean>;" in text
    assert "  extra?: {\n    a?: unknown;\n    [key: string]: unknown;\n  };" in text
    assert '  /** format: email */\n  "gênero"?: string;' in text
    assert 'export interface Events {\n  "lead.created": LeadCreated;\n}' in text
    assert '"lead.created": "2.0",' in text


def test_python_typed_dicts_nested_first_and_open_objects_as_dicts() -> None:
    text = generate(_catalog(("lead.created", LEAD)), Lang.PYTHON)
    item = text.index("class LeadCreatedItemsItem(TypedDict):")
    assert item < text.index("class LeadCreated(TypedDict):")
    assert "    qty: int\n    price: NotRequired[float]\n" in text
    assert "    source: str\n" in text
    assert "    device: NotRequired[str | None]\n" in text
    assert "    channel: NotRequired[Literal['pos', 'online']]\n" in text
    assert "    items: NotRequired[list[LeadCreatedItemsItem]]\n" in text
    assert "    changes: NotRequired[dict[str, bool]]\n" in text
    assert "    extra: NotRequired[dict[str, Any]]\n" in text  # open: a TypedDict would refuse
    assert "    gênero: NotRequired[str]\n" in text
    assert "EventType = Literal['lead.created']" in text
    # one type: a plain method (an overload needs two)
    assert "    def emit(\n        self, type: Literal['lead.created'], data: LeadCreated," in text
    assert "@overload" not in text


def test_names_that_collide_or_are_not_identifiers() -> None:
    keyword_keys = {"type": "object", "properties": {"from": {"type": "string"}, "e-mail": {}}}
    catalog = _catalog(
        ("a.b_c", {"type": "object"}),
        ("a_b.c", {"type": "object"}),
        ("any", keyword_keys),
        ("events", {"type": "object"}),
    )
    ts = generate(catalog, Lang.TYPESCRIPT)
    assert "export type ABC = Record<string, unknown>;" in ts
    assert "export type ABC2 = Record<string, unknown>;" in ts
    assert "export type Events2 = Record<string, unknown>;" in ts  # `Events` is the map's
    assert '  "e-mail"?: unknown;' in ts
    py = generate(catalog, Lang.PYTHON)
    assert "ABC = dict[str, Any]" in py and "ABC2 = dict[str, Any]" in py
    # "any" must not shadow typing.Any; `from` is a keyword: the functional form
    assert "Any2 = TypedDict(\n    'Any2',\n    {\n        'from': NotRequired[str]," in py
    assert py.count("@overload") == 4
