"""The filter language: every operator, nesting, arrays, missing fields and error paths."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from switchboard.patterns import (
    Pattern,
    PatternError,
    SqlFragment,
    compile_pattern,
    match,
    parse_pattern,
    to_sql,
)
from switchboard.store import EventQuery
from switchboard.store.queries import list_events_sql

PAYMENT = {
    "type": "payment_processed",
    "source": "pagarme",
    "actor": {"id": None, "type": "system"},
    "context": {"utm_source": "google_ads", "ip": "10.1.2.3"},
    "data": {
        "method": "pix",
        "status": "failed",
        "amount": 15000,
        "ratio": 0.5,
        "paid": False,
        "note": None,
        "email": "Ana@Clinic.com",
        "customer": {"id": "c-1", "tags": ["vip", "new"]},
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B7"}],
    },
}


def ok(spec: dict[str, Any], doc: dict[str, Any] = PAYMENT) -> bool:
    return match(compile_pattern(spec), doc)


@pytest.mark.parametrize(
    ("alternative", "expected"),
    [
        ("pix", True),
        ("PIX", False),
        ({"prefix": "pi"}, True),
        ({"prefix": "ix"}, False),
        ({"suffix": "ix"}, True),
        ({"suffix": "pi"}, False),
        ({"equals-ignore-case": "PiX"}, True),
        ({"equals-ignore-case": "pi"}, False),
        ({"wildcard": "p*"}, True),
        ({"wildcard": "*x"}, True),
        ({"wildcard": "p*i"}, False),
        ({"wildcard": "pix"}, True),
        ({"anything-but": "card"}, True),
        ({"anything-but": "pix"}, False),
        ({"anything-but": ["card", "pix"]}, False),
        ({"anything-but": {"prefix": "ca"}}, True),
        ({"anything-but": {"prefix": "pi"}}, False),
        ({"anything-but": {"suffix": "ix"}}, False),
        ({"anything-but": {"equals-ignore-case": "PIX"}}, False),
        ({"anything-but": {"wildcard": "c*"}}, True),
        ({"exists": True}, True),
        ({"exists": False}, False),
        ({"numeric": [">", 0]}, False),
    ],
)
def test_each_operator_on_a_string_field(alternative: Any, expected: bool) -> None:
    assert ok({"data": {"method": [alternative]}}) is expected


@pytest.mark.parametrize(
    ("comparisons", "expected"),
    [
        ([">", 10000], True),
        ([">", 15000], False),
        ([">=", 15000], True),
        (["<", 15000], False),
        (["<=", 15000.0], True),
        (["=", 15000], True),
        (["=", 15000.0], True),
        (["!=", 15000], False),
        ([">", 0, "<=", 20000], True),
        ([">", 0, "<", 15000], False),
    ],
)
def test_numeric_comparisons(comparisons: list[Any], expected: bool) -> None:
    assert ok({"data.amount": [{"numeric": comparisons}]}) is expected


def test_numbers_compare_equal_across_int_and_float() -> None:
    assert ok({"data.amount": [15000.0]})
    assert ok({"data.ratio": [{"numeric": ["=", 0.5]}]})
    assert ok({"data.amount": [15000]}, {"data": {"amount": 15000.0}})


def test_booleans_are_not_numbers() -> None:
    assert not ok({"data.paid": [0]})
    assert not ok({"data.paid": [{"numeric": ["<", 1]}]})
    assert ok({"data.paid": [False]})
    assert not ok({"data.amount": [True]}, {"data": {"amount": 1}})
    assert not ok({"data.amount": [1]}, {"data": {"amount": True}})


def test_strings_are_not_numbers() -> None:
    assert not ok({"data.amount": ["15000"]})
    assert not ok({"data.code": [{"numeric": [">", 1]}]}, {"data": {"code": "5"}})


def test_null_is_a_value_that_exists() -> None:
    assert ok({"data.note": [None]})
    assert ok({"data.note": [{"exists": True}]})
    assert ok({"data.note": [{"anything-but": "x"}]})
    assert not ok({"data.note": [{"anything-but": [None]}]})
    assert not ok({"data.note": [{"prefix": ""}]})


def test_missing_field_matches_only_exists_false() -> None:
    for alternative in ["x", None, {"prefix": ""}, {"anything-but": "x"}, {"exists": True}]:
        assert not ok({"data.nope": [alternative]}), alternative
    assert ok({"data.nope": [{"exists": False}]})
    assert ok({"data.nope.deeper": [{"exists": False}]})
    assert ok({"data.method.deeper": [{"exists": False}]})  # a string has no fields


def test_a_scalar_leaf_is_shorthand_for_a_one_element_list() -> None:
    assert compile_pattern({"type": "payment_processed"}).root == (
        compile_pattern({"type": ["payment_processed"]}).root
    )
    assert ok({"type": "payment_processed", "data.method": "pix", "data.paid": False})
    assert not ok({"data.method": "card"})


def test_dotted_keys_equal_nesting() -> None:
    nested = compile_pattern({"data": {"customer": {"id": ["c-1"]}}})
    dotted = compile_pattern({"data.customer.id": ["c-1"]})
    mixed = compile_pattern({"data": {"customer.id": ["c-1"]}})
    assert nested.root == dotted.root == mixed.root
    assert match(dotted, PAYMENT)
    assert not ok({"data.customer.id": ["c-2"]})


def test_all_keys_must_match() -> None:
    assert ok({"type": ["payment_processed"], "data": {"method": ["pix"], "status": ["failed"]}})
    assert not ok({"type": ["payment_processed"], "data": {"method": ["pix"], "status": ["ok"]}})


def test_or_at_the_top_level() -> None:
    spec = {"$or": [{"data.method": ["card"]}, {"data.amount": [{"numeric": [">", 10000]}]}]}
    assert ok(spec)
    spec["$or"][1] = {"data.amount": [{"numeric": [">", 20000]}]}
    assert not ok(spec)


def test_or_nested_inside_a_field_is_relative_to_it() -> None:
    assert ok({"data": {"$or": [{"method": ["card"]}, {"customer.id": ["c-1"]}]}})
    assert not ok({"data": {"$or": [{"method": ["card"]}, {"customer.id": ["c-2"]}]}})
    assert ok({"type": ["payment_processed"], "$or": [{"source": ["x"]}, {"source": ["pagarme"]}]})


def test_an_array_leaf_matches_when_any_element_matches() -> None:
    assert ok({"data.customer.tags": ["vip"]})
    assert ok({"data.customer.tags": [{"prefix": "ne"}]})
    assert not ok({"data.customer.tags": ["old"]})
    assert ok({"data.customer.tags": [{"anything-but": "vip"}]})  # "new" is not vip
    assert not ok({"data.tags": ["vip"]}, {"data": {"tags": []}})
    assert ok({"data.tags": [{"exists": True}]}, {"data": {"tags": []}})


def test_arrays_of_objects_are_searched_element_by_element() -> None:
    assert ok({"data.items.sku": ["B7"]})
    assert ok({"data.items.qty": [{"numeric": [">", 1]}]})
    # Like EventBridge, conditions on one array need not hold for the same element.
    assert ok({"data.items": {"sku": ["B7"], "qty": [2]}})
    assert not ok({"data.items.sku": ["A1"]}, {"data": {"items": [[{"sku": "A1"}]]}})


def test_nested_arrays_are_not_flattened_at_the_leaf() -> None:
    assert not ok({"data.tags": ["vip"]}, {"data": {"tags": [["vip"]]}})


def test_objects_and_arrays_never_equal_a_value() -> None:
    assert not ok({"data.customer": [{"anything-but": "x"}]})
    assert ok({"data.customer": [{"exists": True}]})


def test_wildcard_escapes_and_special_characters() -> None:
    doc = {"data": {"s": "a*b.c%_[x]?\n"}}
    assert ok({"data.s": [{"wildcard": "a\\*b.c%_[x]?*"}]}, doc)
    assert not ok({"data.s": [{"wildcard": "a\\*c*"}]}, doc)
    assert ok({"data.s": [{"wildcard": "*\n"}]}, doc)
    assert ok({"data.s": [{"wildcard": "a*b*c*x*"}]}, doc)


def test_equals_ignore_case_folds_ascii_letters_only() -> None:
    assert ok({"data.city": [{"equals-ignore-case": "SAO PAULO"}]}, {"data": {"city": "Sao Paulo"}})
    assert not ok({"data.city": [{"equals-ignore-case": "são"}]}, {"data": {"city": "SÃO"}})
    assert ok({"data.city": [{"equals-ignore-case": "sÃo"}]}, {"data": {"city": "SÃO"}})


def test_cidr_matches_addresses_in_the_network() -> None:
    assert ok({"context.ip": [{"cidr": "10.0.0.0/8"}]})
    assert not ok({"context.ip": [{"cidr": "192.168.0.0/16"}]})
    assert not ok({"context.ip": [{"cidr": "10.0.0.0/8"}]}, {"context": {"ip": "not-an-ip"}})
    assert ok({"context.ip": [{"cidr": "2001:db8::/32"}]}, {"context": {"ip": "2001:db8::1"}})


def test_envelope_fields_match_like_any_other() -> None:
    assert ok({"actor.type": ["system"], "actor.id": [None]})
    assert ok({"type": [{"wildcard": "payment_*"}], "source": [{"anything-but": "stripe"}]})


def test_the_empty_pattern_matches_everything() -> None:
    assert ok({}, {})
    assert to_sql(compile_pattern({}), "sqlite") == SqlFragment("TRUE", [])


def test_parse_pattern_reads_json() -> None:
    pattern = parse_pattern('{"data": {"method": ["pix"]}}')
    assert isinstance(pattern, Pattern)
    assert match(pattern, PAYMENT)
    assert pattern.spec == {"data": {"method": ["pix"]}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "pattern: invalid JSON"),
        ("[1]", "pattern: expected a JSON object"),
        ('{"data.x": [NaN]}', "NaN is not a JSON number"),
        ('{"data.x": [{"between": [1, 2]}]}', "data.x[0]: unknown operator 'between'"),
    ],
)
def test_parse_pattern_errors_are_pattern_errors(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)):
        parse_pattern(text)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"data": {"amount": [{"between": [1, 2]}]}}, "data.amount[0]: unknown operator 'between'"),
        ({"data.amount": [{"numeric": [">"]}]}, "data.amount[0].numeric: expected [op, number]"),
        ({"data.amount": [{"numeric": [">", 1, "<"]}]}, "data.amount[0].numeric: expected"),
        ({"data.amount": [{"numeric": ["~", 1]}]}, "data.amount[0].numeric[0]: unknown comparison"),
        (
            {"data.amount": [{"numeric": [">", "1"]}]},
            "data.amount[0].numeric[1]: expected a number",
        ),
        (
            {"data.amount": [{"numeric": [">", True]}]},
            "data.amount[0].numeric[1]: expected a number",
        ),
        ({"data.amount": [{"numeric": [">", float("inf")]}]}, "numeric[1]: numbers must be finite"),
        ({"data.amount": []}, "data.amount: the list of alternatives is empty"),
        ({"data": {"x": [[1]]}}, "data.x[0]: lists cannot nest"),
        ({"data": {"x": [{"prefix": 1}]}}, "data.x[0].prefix: expected a string"),
        ({"data": {"x": [{"prefix": "a", "suffix": "b"}]}}, "data.x[0]: an operator object"),
        ({"data": {"x": [{"exists": "yes"}]}}, "data.x[0].exists: expected true or false"),
        ({"data": {"x": [{"anything-but": []}]}}, "data.x[0].anything-but: the list"),
        ({"data": {"x": [{"anything-but": {"numeric": []}}]}}, "unknown operator 'numeric'"),
        ({"data": {"x": [{"anything-but": [{"a": 1}]}]}}, "anything-but[0]: expected a string"),
        ({"data": {"x": [{"cidr": "10.0.0.0/33"}]}}, "data.x[0].cidr: "),
        ({"data": {"x": [{}]}}, "data.x[0]: an operator object has exactly one key"),
        ({"data": {}}, "data: an empty mapping"),
        ({"data..x": [1]}, "data..x: empty segment"),
        ({"$and": [{"a": [1]}]}, "$and: unknown operator"),
        ({"$or": []}, "$or: expected a non-empty list"),
        ({"$or": [{"a": [1]}, 3]}, "$or[1]: expected a non-empty mapping"),
        ({"$or": [{"a": [{"nope": 1}]}]}, "$or[0].a[0]: unknown operator 'nope'"),
        ({"data": {"amount": {"numeric": [">", 0]}}}, "data.amount.numeric: operator 'numeric'"),
        ({"data": {"x": {1: [1]}}}, "data.x: keys must be strings"),
        ({"data": {"x": object()}}, "data.x: expected a string, number"),
    ],
)
def test_malformed_patterns_name_the_path(spec: Any, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_pattern(spec)


def test_a_non_mapping_pattern_is_rejected() -> None:
    with pytest.raises(PatternError, match="pattern: expected a mapping"):
        compile_pattern(["type"])  # type: ignore[arg-type]
    with pytest.raises(PatternError):
        compile_pattern({"data": "not a mapping but a scalar is a leaf"} | {"x": {"y": 3j}})


def test_pattern_error_is_a_value_error() -> None:
    assert issubclass(PatternError, ValueError)


def test_to_sql_binds_values_and_numbers_postgres_placeholders_from_start() -> None:
    pattern = compile_pattern({"type": ["x'; DROP TABLE events; --"], "data.a": [{"prefix": "p"}]})
    pg = to_sql(pattern, "postgres", start=4)
    assert "DROP" not in pg.sql
    assert "$4::text" in pg.sql and "$1" not in pg.sql
    assert pg.params[0] == "x'; DROP TABLE events; --"
    lite = to_sql(pattern, "sqlite")
    assert "DROP" not in lite.sql and "$" not in lite.sql.replace("'$", "")
    assert lite.sql.count("?") == len(lite.params)


def test_to_sql_names_the_trace_id_hash_for_postgres_index() -> None:
    """PostgreSQL's trace index holds hashtext(trace_id) (migration 0019): an exact trace id is
    found through the hash and decided by the trace id itself, bound once; other matches on it,
    and SQLite, compare the column alone."""
    pattern = compile_pattern({"trace_id": ["abc", {"prefix": "ab"}]})
    pg = to_sql(pattern, "postgres", table="e")
    assert "hashtext(e.trace_id) = hashtext($1::text) AND e.trace_id = $1::text" in pg.sql
    assert pg.sql.count("hashtext(e.trace_id)") == 1  # not for the prefix
    assert pg.params == ["abc", "ab"]
    lite = to_sql(pattern, "sqlite")
    assert "hashtext" not in lite.sql and lite.params[0] == "abc"


def test_list_events_by_trace_names_each_stores_trace_index() -> None:
    pg, pg_params = list_events_sql("postgres", "t1", EventQuery(trace_id="abc", limit=5))
    assert "hashtext(trace_id) = hashtext($2) AND trace_id = $3" in pg
    assert pg_params == ["t1", "abc", "abc", 5]
    lite, lite_params = list_events_sql("sqlite", "t1", EventQuery(trace_id="abc", limit=5))
    assert "hashtext" not in lite and "trace_id = ?" in lite
    assert lite_params == ["t1", "abc", 5]


def test_to_sql_rejects_a_bad_alias_and_dialect() -> None:
    pattern = compile_pattern({"type": ["x"]})
    with pytest.raises(ValueError, match="alias"):
        to_sql(pattern, "sqlite", table="e; drop")
    with pytest.raises(ValueError, match="dialect"):
        to_sql(pattern, "mysql")  # type: ignore[arg-type]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 2 else 6)
    if choice == 0:
        return rng.choice(["pix", "card", "PIX", "", "a*b"])
    if choice == 1:
        return rng.choice([0, 1, 5, 5.0, -2.5, 10000])
    if choice == 2:
        return rng.choice([True, False])
    if choice == 3:
        return None
    if choice in (4, 5):
        return rng.choice(["pi", "x", "ca"])
    if choice in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {k: _random_value(rng, depth + 1) for k in rng.sample(["a", "b"], rng.randrange(3))}


def test_property_or_of_two_patterns_is_the_union_and_anything_but_the_complement() -> None:
    rng = random.Random(7)
    alternatives: list[Any] = [
        "pix",
        5,
        None,
        True,
        {"prefix": "p"},
        {"numeric": [">", 1]},
        {"wildcard": "*a*"},
        {"equals-ignore-case": "PIX"},
    ]
    for _ in range(300):
        doc = {"data": {"a": _random_value(rng), "b": _random_value(rng)}}
        left = {"data.a": [rng.choice(alternatives)]}
        right = {"data.b": [rng.choice(alternatives)]}
        assert ok({"$or": [left, right]}, doc) == (ok(left, doc) or ok(right, doc))
        assert ok(left | right, doc) == (ok(left, doc) and ok(right, doc))
        value = doc["data"]["a"]
        if not isinstance(value, dict | list):  # a single scalar: anything-but is the complement
            excluded = rng.choice(["pix", 5, None, True])
            assert ok({"data.a": [{"anything-but": excluded}]}, doc) != ok(
                {"data.a": [excluded]}, doc
            )


def test_both_matches_exactly_what_each_matches() -> None:
    from switchboard.patterns import both, compile_pattern

    clinic = compile_pattern({"context": {"clinic_id": ["c-17"]}})
    kinds = [
        {"type": ["lead.created"]},
        {"$or": [{"type": ["lead.created"]}, {"subject": ["p-1"]}]},
        {"context": {"clinic_id": [{"prefix": "c-"}]}, "$or": [{"subject": ["p-1"]}]},
        {},
    ]
    docs = [
        {"type": t, "subject": s, "context": {"clinic_id": c}}
        for t in ("lead.created", "lead.lost")
        for s in ("p-1", "p-2")
        for c in ("c-17", "c-18")
    ]
    constraints = [clinic, compile_pattern({"$or": [{"context": {"clinic_id": ["c-17"]}}]})]
    for constraint in constraints:
        for spec in kinds:
            other = compile_pattern(spec)
            combined = both(other, constraint)
            assert combined is not None
            again = compile_pattern(combined.spec, None)  # what a stored replay compiles
            for doc in docs:
                expected = match(other, doc) and match(constraint, doc)
                assert match(combined, doc) is expected, (spec, doc)
                assert match(again, doc) is expected
    assert both(None, clinic) is clinic and both(clinic, None) is clinic
