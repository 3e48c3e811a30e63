"""A hostile tenant's pattern: wildcards match without backtracking, and a pattern's size is
bounded when it is compiled (docs/security.md, "Filter patterns")."""

from __future__ import annotations

import json
import multiprocessing
import random
import re
from typing import Any

import pytest

from switchboard.patterns import LIMITS, PatternError, compile_pattern, match, parse_pattern

pytestmark = pytest.mark.security

EVIL = "*a*a*a*a*a*a*a*a*a*a*a*a*b"  # a regex of this backtracks exponentially on "aaa…"


def _run(fn: Any, conn: Any) -> None:
    conn.send(fn())


def finishes(fn: Any, bound: float = 60.0) -> Any:
    """Run `fn` in a child process and return its result; fail if it is still running after
    `bound` seconds. The bound is generous for what takes milliseconds: it is not a timing
    assertion, it turns a runaway match (a backtracking regex holds the GIL, so a thread could
    not be abandoned) into a failure instead of a hung suite."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(fn, child), daemon=True)
    proc.start()
    try:
        assert parent.poll(bound), "the match is still running"
        return parent.recv()
    finally:
        proc.kill()
        proc.join()


@pytest.mark.parametrize("length", [31, 10_000, 200_000])
def test_the_backtracking_wildcard_returns_on_long_inputs(length: int) -> None:
    pattern = compile_pattern({"data.s": [{"wildcard": EVIL}]})
    assert finishes(lambda: match(pattern, {"data": {"s": "a" * length}})) is False
    assert finishes(lambda: match(pattern, {"data": {"s": "a" * length + "b"}})) is True


def test_many_stars_against_a_long_string_return() -> None:
    evil = "*" + "a*" * 200 + "b"  # 402 characters, inside max_string
    pattern = compile_pattern({"data.s": [{"wildcard": evil}]})
    assert finishes(lambda: match(pattern, {"data": {"s": "a" * 100_000}})) is False
    anything_but = compile_pattern({"data.s": [{"anything-but": {"wildcard": evil}}]})
    assert finishes(lambda: match(anything_but, {"data": {"s": "a" * 100_000}})) is True


def _regex_glob(glob: str, text: str) -> bool:
    """What the wildcard means, by a regex (fine on short strings): the reference."""
    parts, run, chars = [], [], iter(glob)
    for ch in chars:
        if ch == "\\":
            run.append(next(chars))
        elif ch == "*":
            parts.append("".join(run))
            run = []
        else:
            run.append(ch)
    parts.append("".join(run))
    return re.fullmatch(".*".join(map(re.escape, parts)), text, re.DOTALL) is not None


def test_linear_wildcard_agrees_with_the_regex_reference() -> None:
    rng = random.Random(13)
    for _ in range(3000):
        glob = "".join(rng.choice("ab*\\") for _ in range(rng.randint(0, 8)))
        if glob.endswith("\\") and not glob.endswith("\\\\"):
            glob += "*"
        try:
            pattern = compile_pattern({"s": [{"wildcard": glob}]})
        except PatternError:
            continue
        text = "".join(rng.choice("ab*\\\n") for _ in range(rng.randint(0, 9)))
        assert match(pattern, {"s": text}) == _regex_glob(glob, text), (glob, text)


def _nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaf": [1]}
    for i in range(depth - 1):
        spec = {f"k{i}": spec}
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_nested(LIMITS.max_depth + 1), "levels deep (limit max_depth)"),
        ({"data." + ".".join("x" * 11): [1]}, "levels deep (limit max_depth)"),
        (
            {"$or": [{"$or": [{"$or": [_nested(LIMITS.max_depth - 2)]}]}]},
            "levels deep (limit max_depth)",
        ),
        ({"data.x": list(range(101))}, "data.x: 101 alternatives; at most 100"),
        (
            {"data.x": [{"anything-but": list(range(101))}]},
            "data.x[0].anything-but: 101 excluded values; at most 100",
        ),
        ({"$or": [{"a": [i]} for i in range(101)]}, "$or: 101 branches; at most 100"),
        (
            {"data.x": [{"wildcard": "a" * 513}]},
            "data.x[0].wildcard: a string of 513 characters; at most 512 (limit max_string)",
        ),
        ({"data.x": ["a" * 513]}, "data.x[0]: a string of 513 characters; at most 512"),
        ({"data.x": [{"anything-but": ["a" * 600]}]}, "data.x[0].anything-but[0]: a string"),
        ({"data.x": [{"prefix": "a" * 513}]}, "(limit max_string)"),
        ({"data": {"k" * 513: [1]}}, "data: a field name of 513 characters"),
        (
            {f"data.f{i}": list(range(100)) for i in range(10)},
            "data.f9[90]: the pattern has more than 1000 fields",
        ),
    ],
)
def test_each_size_limit_is_named_with_its_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)):
        compile_pattern(spec)


def test_patterns_at_the_limits_compile() -> None:
    compile_pattern(_nested(LIMITS.max_depth))
    compile_pattern({"data.x": list(range(100)), "data.y": [{"wildcard": "a*" * 256}]})
    compile_pattern({f"data.f{i}": list(range(98)) for i in range(10)})


def test_a_stored_pattern_compiles_without_limits() -> None:
    compile_pattern({"data.x": list(range(500))}, None)


def test_deeply_nested_json_in_a_query_is_a_pattern_error() -> None:
    with pytest.raises(PatternError, match="limit max_depth"):
        parse_pattern("[" * 100_000)
    with pytest.raises(PatternError, match="limit max_depth"):
        parse_pattern(json.dumps(_nested(50)))


def test_a_backtracking_type_glob_in_a_route_returns() -> None:
    from switchboard.envelope import build_event
    from switchboard.router import parse_route

    route = parse_route(
        {"name": "r", "destinations": ["d"], "types": [EVIL]},
        route_id="r",
        tenant_id="t",
        destination_ids={"d": "d"},
    )
    event = build_event(
        {"type": "a" * 199, "data": {}}, tenant_id="t", default_source="s", received_us=1
    )
    assert finishes(lambda: route.matches(event)) is False
