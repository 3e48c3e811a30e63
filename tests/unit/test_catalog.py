"""The pure catalog code: parsing, versions, compatibility, naming, lint, validation, docs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from switchboard.catalog import (
    CatalogError,
    CatalogSpec,
    EventTypeSpec,
    TypeVersion,
    ValidationIssue,
    Validator,
    breaking_changes,
    check_versions,
    event_type_to_dict,
    lint,
    load_catalog_dir,
    naming_regex,
    parse_event_type,
    parse_version,
    render_docs,
)

LEAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "phone"],
    "properties": {
        "name": {"type": "string"},
        "phone": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "source": {"type": "string", "enum": ["site", "whatsapp"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["qty"],
                "properties": {"qty": {"type": "integer"}, "sku": {"type": "string"}},
            },
        },
    },
}


def lead_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "lead.created",
        "description": "A lead arrived.",
        "owner": "growth",
        "mode": "enforce",
        "pii": ["name", "phone", "email"],
        "index": ["source"],
        "versions": [
            {
                "version": "1.0",
                "schema": copy.deepcopy(LEAD_SCHEMA),
                "examples": [{"name": "Maria", "phone": "+5511999990000", "source": "site"}],
            }
        ],
    }
    doc.update(changes)
    return doc


def spec_with(*versions: tuple[str, dict[str, Any]]) -> EventTypeSpec:
    return EventTypeSpec(
        name="lead.created",
        description="",
        owner=None,
        mode="enforce",
        pii=(),
        index=(),
        versions=tuple(TypeVersion(v, s, ()) for v, s in versions),
    )


def catalog_of(*types: EventTypeSpec, convention: str | None = None) -> CatalogSpec:
    return CatalogSpec("test", "", convention, (), "reject", types)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_event_type_reads_every_field() -> None:
    spec = parse_event_type(lead_doc())
    assert spec.name == "lead.created"
    assert spec.owner == "growth"
    assert spec.pii == ("name", "phone", "email")
    assert spec.index == ("source",)
    assert spec.latest().examples[0]["name"] == "Maria"


def test_parse_error_names_the_source_and_field_path_of_an_invalid_schema() -> None:
    doc = lead_doc()
    doc["versions"][0]["schema"] = {"type": "bogus"}
    with pytest.raises(CatalogError) as info:
        parse_event_type(doc, where="types/lead.yaml")
    assert str(info.value).startswith("types/lead.yaml: ")
    assert info.value.problems[0].startswith("versions[0].schema: not a valid JSON Schema")


def test_parse_reports_all_problems_at_once() -> None:
    doc = lead_doc(mode="strict", pii="email", colour="blue")
    doc["versions"][0]["version"] = 1.0  # unquoted in YAML
    with pytest.raises(CatalogError) as info:
        parse_event_type(doc)
    problems = "\n".join(info.value.problems)
    assert "colour: unknown field" in problems
    assert "mode: 'strict'" in problems
    assert "pii: must be a list of strings" in problems
    assert "versions[0].version: must be a quoted string" in problems


def test_parse_rejects_an_example_that_yaml_turned_into_a_date() -> None:
    import datetime as dt

    doc = lead_doc()
    doc["versions"][0]["examples"] = [{"name": "M", "phone": "1", "at": dt.date(2024, 6, 1)}]
    with pytest.raises(CatalogError, match=r"versions\[0\]\.examples\[0\]\.at: date"):
        parse_event_type(doc)


def test_parse_rejects_versions_out_of_order() -> None:
    doc = lead_doc()
    doc["versions"] = [
        {"version": "2.0", "schema": LEAD_SCHEMA},
        {"version": "1.0", "schema": LEAD_SCHEMA},
    ]
    with pytest.raises(CatalogError, match="ascending"):
        parse_event_type(doc)


def test_event_type_to_dict_round_trips() -> None:
    spec = parse_event_type(lead_doc())
    assert parse_event_type(event_type_to_dict(spec)) == spec


def test_parse_tolerates_the_keys_the_api_adds_when_returning_a_type() -> None:
    doc = {**lead_doc(), "scope": "tenant", "catalog": "api"}
    assert parse_event_type(doc).name == "lead.created"


def test_load_catalog_dir_prefixes_problems_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "types").mkdir()
    (tmp_path / "catalog.yaml").write_text("name: t\nunknown_types: maybe\n")
    (tmp_path / "types" / "a.yaml").write_text("name: a.b\nversions: []\n")
    with pytest.raises(CatalogError) as info:
        load_catalog_dir(tmp_path)
    assert "catalog.yaml: unknown_types: 'maybe' is not reject or accept" in info.value.problems
    assert "types/a.yaml: versions: must be a non-empty list" in info.value.problems


def test_load_catalog_dir_reports_the_line_of_broken_yaml(tmp_path: Path) -> None:
    (tmp_path / "types").mkdir()
    (tmp_path / "catalog.yaml").write_text("name: t\n")
    (tmp_path / "types" / "a.yaml").write_text("name: a\nversions: [\n")
    with pytest.raises(CatalogError, match=r"types/a.yaml.*invalid YAML at line"):
        load_catalog_dir(tmp_path)


# --- versions ----------------------------------------------------------------------------------


def test_parse_version_pads_the_patch_and_rejects_junk() -> None:
    assert parse_version("1.2") == (1, 2, 0)
    assert parse_version("1.2.3") == (1, 2, 3)
    with pytest.raises(CatalogError):
        parse_version("v1")


def test_resolve_picks_latest_latest_of_major_and_equal_versions() -> None:
    spec = spec_with(("1.0", {}), ("1.1", {}), ("2.0.0", {}))
    assert spec.resolve(None) is spec.versions[-1]
    assert spec.resolve("1") is spec.versions[1]
    assert spec.resolve("1.0.0") is spec.versions[0]
    assert spec.resolve("2.0") is spec.versions[2]
    assert spec.resolve("3") is None
    assert spec.resolve("1.5") is None
    assert spec.resolve("latest") is None


# --- compatibility -----------------------------------------------------------------------------


def evolve(**props: Any) -> dict[str, Any]:
    new = copy.deepcopy(LEAD_SCHEMA)
    new.update(props)
    return new


def test_adding_an_optional_field_is_not_breaking() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    new["properties"]["utm_source"] = {"type": "string"}
    assert breaking_changes(LEAD_SCHEMA, new) == []


def test_a_new_required_field_is_breaking() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    new["properties"]["city"] = {"type": "string"}
    new["required"].append("city")
    assert breaking_changes(LEAD_SCHEMA, new) == ["/data/city: new required field"]


def test_a_removed_property_is_breaking() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    del new["properties"]["email"]
    assert breaking_changes(LEAD_SCHEMA, new) == ["/data/email: property removed"]


def test_a_type_change_is_breaking_but_widening_integer_to_number_is_not() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    new["properties"]["phone"] = {"type": "integer"}
    assert breaking_changes(LEAD_SCHEMA, new) == [
        "/data/phone: type changed from string to integer"
    ]
    wider = copy.deepcopy(LEAD_SCHEMA)
    wider["properties"]["items"]["items"]["properties"]["qty"] = {"type": "number"}
    assert breaking_changes(LEAD_SCHEMA, wider) == []


def test_a_removed_enum_value_is_breaking() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    new["properties"]["source"]["enum"] = ["site"]
    assert breaking_changes(LEAD_SCHEMA, new) == ['/data/source: enum values removed: "whatsapp"']


def test_changes_inside_arrays_of_objects_are_seen() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    new["properties"]["items"]["items"]["required"].append("sku")
    assert breaking_changes(LEAD_SCHEMA, new) == ["/data/items/*/sku: became required"]


def test_closing_additional_properties_is_breaking() -> None:
    assert breaking_changes(LEAD_SCHEMA, evolve(additionalProperties=False)) != []


def test_check_versions_refuses_a_breaking_change_in_the_same_major() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    del new["properties"]["email"]
    existing = spec_with(("1.0", LEAD_SCHEMA))
    problems = check_versions(existing, spec_with(("1.0", LEAD_SCHEMA), ("1.1", new)))
    assert len(problems) == 1
    assert "1.1 breaks 1.0" in problems[0]
    assert "/data/email: property removed" in problems[0]
    assert "needs a new major version" in problems[0]


def test_check_versions_accepts_a_breaking_change_in_a_new_major() -> None:
    new = copy.deepcopy(LEAD_SCHEMA)
    del new["properties"]["email"]
    existing = spec_with(("1.0", LEAD_SCHEMA))
    assert check_versions(existing, spec_with(("1.0", LEAD_SCHEMA), ("2.0", new))) == []


def test_check_versions_refuses_a_changed_schema_under_an_existing_version() -> None:
    existing = spec_with(("1.0", LEAD_SCHEMA))
    problems = check_versions(existing, spec_with(("1.0", evolve(required=["name"]))))
    assert problems == [
        "version 1.0 already exists with a different schema; publish the change as a new version"
    ]


def test_check_versions_refuses_dropping_a_stored_version() -> None:
    existing = spec_with(("1.0", LEAD_SCHEMA), ("1.1", LEAD_SCHEMA))
    problems = check_versions(existing, spec_with(("1.1", LEAD_SCHEMA)))
    assert problems == ["version 1.0 is stored but missing; versions are kept"]


def test_check_versions_refuses_versions_out_of_order() -> None:
    problems = check_versions(None, spec_with(("1.1", LEAD_SCHEMA), ("1.0", LEAD_SCHEMA)))
    assert "versions must be listed in strictly ascending order" in problems


# --- naming and lint ---------------------------------------------------------------------------

LEGAL = "{domain}.{object}_{past_tense_verb}"


@pytest.mark.parametrize(
    "name",
    ["auth.user_signed_up", "billing.payment_received", "auth.password_reset_requested"],
)
def test_legal_convention_accepts_domain_object_verb(name: str) -> None:
    assert naming_regex(LEGAL).match(name)


@pytest.mark.parametrize(
    "name",
    ["org.created", "Auth.user_signed_up", "auth.user-signed-up", "auth.user_signed_up.x", "auth"],
)
def test_legal_convention_refuses_other_shapes(name: str) -> None:
    assert not naming_regex(LEGAL).match(name)


def test_a_convention_starting_with_caret_is_a_raw_regex() -> None:
    assert naming_regex("^[a-z]+(_[a-z]+)+$").match("purchase_made")
    assert not naming_regex("^[a-z]+(_[a-z]+)+$").match("purchase")


def test_literal_characters_in_a_convention_are_escaped() -> None:
    assert not naming_regex("{domain}.{verb}").match("leadXcreated")


def test_lint_finds_a_bad_example_with_its_json_path() -> None:
    doc = lead_doc()
    doc["versions"][0]["examples"].append({"name": "Ana", "phone": 11})
    problems = lint(catalog_of(parse_event_type(doc)))
    assert [(p.severity, p.message) for p in problems] == [
        ("error", 'versions[0] (1.0) examples[1]: /data/phone: 11 is not of type "string"')
    ]


def test_lint_finds_a_name_that_breaks_the_convention_unless_excepted() -> None:
    spec = parse_event_type(lead_doc(name="org.created"))
    problems = lint(catalog_of(spec, convention=LEGAL))
    assert [p.type for p in problems if p.severity == "error"] == ["org.created"]
    excepted = CatalogSpec("t", "", LEGAL, ("org.created",), "reject", (spec,))
    assert [p for p in lint(excepted) if p.severity == "error"] == []


def test_lint_finds_pii_and_index_paths_missing_from_the_schema() -> None:
    spec = parse_event_type(lead_doc(pii=["customer.phone"], index=["items.sku", "campaign"]))
    messages = [p.message for p in lint(catalog_of(spec))]
    assert messages == [
        "pii path 'customer.phone' is not a property of the latest schema",
        "index path 'campaign' is not a property of the latest schema",
    ]


def test_lint_warns_about_missing_description_and_examples() -> None:
    doc = lead_doc(description="")
    doc["versions"][0]["examples"] = []
    problems = lint(catalog_of(parse_event_type(doc)))
    assert {(p.severity, p.message) for p in problems} == {
        ("warning", "no description"),
        ("warning", "version 1.0: no examples"),
    }


# --- validation --------------------------------------------------------------------------------


def test_validator_returns_every_error_with_data_paths() -> None:
    issues = Validator(LEAD_SCHEMA).validate(
        {"phone": 5, "source": "fax", "items": [{"qty": "two"}]}
    )
    paths = sorted(i.path for i in issues)
    assert paths == ["/data/items/0/qty", "/data/name", "/data/phone", "/data/source"]
    assert ValidationIssue("/data/name", "is a required property") in issues


def test_validator_accepts_a_valid_payload_and_ignores_formats_by_default() -> None:
    assert Validator(LEAD_SCHEMA).validate({"name": "A", "phone": "1", "email": "nope"}) == []


def test_validator_escapes_json_pointer_characters() -> None:
    schema = {"properties": {"a/b": {"type": "string"}}}
    assert Validator(schema).validate({"a/b": 1})[0].path == "/data/a~1b"


# --- docs --------------------------------------------------------------------------------------


def test_render_docs_lists_types_fields_pii_examples_and_version_changes() -> None:
    doc = lead_doc()
    v2 = copy.deepcopy(LEAD_SCHEMA)
    v2["properties"]["city"] = {"type": "string", "description": "Where the lead lives"}
    del v2["properties"]["email"]
    doc["versions"].append(
        {"version": "2.0", "schema": v2, "examples": [{"name": "B", "phone": "2"}]}
    )
    doc["pii"] = ["name", "phone"]
    files = render_docs(catalog_of(parse_event_type(doc)))
    assert set(files) == {"README.md", "lead.created.md"}
    assert (
        "| [`lead.created`](lead.created.md) | A lead arrived. | growth | enforce | 2.0 |"
        in (files["README.md"])
    )
    page = files["lead.created.md"]
    assert "| path | type | required | values | PII | description |" in page
    assert "| `name` | string | yes |  | yes |  |" in page
    assert "| `source` | string | no | `site`, `whatsapp` | no |  |" in page
    assert "| `items[].qty` | integer | yes |  | no |  |" in page
    assert "| `city` | string | no |  | no | Where the lead lives |" in page
    assert "## Personal data\n\n- `name`\n- `phone`" in page
    assert '```json\n{\n  "name": "B",' in page
    assert "- **2.0**: added city; removed email." in page
