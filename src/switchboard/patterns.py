"""The one filter language: EventBridge-style patterns, compiled once into a matcher and into SQL.

``compile_pattern`` validates a pattern and turns it into small frozen records plus a tree of
closures; ``match`` runs the closures over a document, and ``to_sql`` renders the same records as a
``WHERE`` fragment over the ``events`` table that selects exactly the rows ``match`` would accept
(for documents shaped like ``Event.match_doc()``). The semantics are spelled out in docs/filters.md.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeAlias

__all__ = [
    "LIMITS",
    "Limits",
    "Pattern",
    "PatternError",
    "SqlFragment",
    "both",
    "compile_pattern",
    "match",
    "parse_pattern",
    "to_sql",
]


class PatternError(ValueError):
    """The pattern is malformed; the message starts with the path of the offending part."""


# ---------------------------------------------------------------------------------------------
# The compiled form: frozen records the matcher and the SQL renderer both read.

Scalar: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True)
class Exact:
    value: Scalar


@dataclass(frozen=True)
class Prefix:
    value: str


@dataclass(frozen=True)
class Suffix:
    value: str


@dataclass(frozen=True)
class IgnoreCase:
    value: str  # already lowered (ASCII A-Z only)


@dataclass(frozen=True)
class Wildcard:
    parts: tuple[str, ...]  # literal runs; a `*` sits between each pair


@dataclass(frozen=True)
class Numeric:
    comparisons: tuple[tuple[str, int | float], ...]


@dataclass(frozen=True)
class AnythingBut:
    excluded: tuple[Exact, ...] | Prefix | Suffix | IgnoreCase | Wildcard


@dataclass(frozen=True)
class Exists:
    present: bool


@dataclass(frozen=True)
class Cidr:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


Alternative: TypeAlias = Exact | Prefix | Suffix | IgnoreCase | Wildcard | Numeric | AnythingBut
ValueOrExists: TypeAlias = Alternative | Exists | Cidr


@dataclass(frozen=True)
class Leaf:
    """The field at ``path`` must satisfy at least one alternative."""

    path: tuple[str, ...]
    alternatives: tuple[ValueOrExists, ...]


@dataclass(frozen=True)
class AnyOf:
    """``$or``: at least one branch must match."""

    branches: tuple[AllOf, ...]


@dataclass(frozen=True)
class AllOf:
    """A mapping: every condition must match."""

    conditions: tuple[Leaf | AnyOf, ...]


Doc: TypeAlias = Mapping[str, Any]
_Matcher: TypeAlias = Callable[[Doc], bool]


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern. ``spec`` is the validated source (JSON-serializable) for storage."""

    spec: Mapping[str, Any]
    root: AllOf = field(compare=False, repr=False)
    matcher: _Matcher = field(compare=False, repr=False)


@dataclass(frozen=True)
class SqlFragment:
    """A boolean SQL expression and its bound parameters, in placeholder order."""

    sql: str
    params: list[Any]


# ---------------------------------------------------------------------------------------------
# Size limits: a pattern is tenant input, so its size is bounded where it enters.


@dataclass(frozen=True)
class Limits:
    """The largest pattern ``compile_pattern`` accepts (docs/filters.md, "Size limits").

    Matching costs at most O(total nodes × length of the event); these bound the first factor.
    """

    max_depth: int = 10  # nested objects and `$or`s, counted from the top
    max_alternatives: int = 100  # items in one list: alternatives, anything-but values, `$or`
    max_string: int = 512  # characters in one string: a value, an operator's text, a field name
    max_nodes: int = 1000  # fields, alternatives and `$or` branches in the whole pattern


LIMITS = Limits()


class _Budget:
    """Counts nodes while a pattern compiles and refuses the first one past a limit."""

    def __init__(self, limits: Limits | None) -> None:
        self.limits = limits
        self.nodes = 0

    def node(self, where: str) -> None:
        self.nodes += 1
        if self.limits is not None and self.nodes > self.limits.max_nodes:
            raise PatternError(
                f"{where or 'pattern'}: the pattern has more than {self.limits.max_nodes} "
                "fields, alternatives and $or branches (limit max_nodes)"
            )

    def depth(self, depth: int, where: str) -> None:
        if self.limits is not None and depth > self.limits.max_depth:
            raise PatternError(
                f"{where or 'pattern'}: nested more than {self.limits.max_depth} levels deep "
                "(limit max_depth)"
            )

    def items(self, count: int, what: str, where: str) -> None:
        if self.limits is not None and count > self.limits.max_alternatives:
            raise PatternError(
                f"{where}: {count} {what}; at most {self.limits.max_alternatives} "
                "(limit max_alternatives)"
            )

    def string(self, text: str, what: str, where: str) -> None:
        if self.limits is not None and len(text) > self.limits.max_string:
            raise PatternError(
                f"{where or 'pattern'}: {what} of {len(text)} characters; at most "
                f"{self.limits.max_string} (limit max_string)"
            )


# ---------------------------------------------------------------------------------------------
# Validation and compilation.

_OPERATORS = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
    }
)
_STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_NUMERIC_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _where(path: str, suffix: str) -> str:
    return f"{path}{suffix}" if path else suffix.lstrip(".")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scalar(value: object, where: str, b: _Budget) -> Scalar:
    if isinstance(value, str):
        b.string(value, "a string", where)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise PatternError(f"{where}: numbers must be finite")
        return value
    raise PatternError(f"{where}: expected a string, number, boolean or null")


def _check_string(value: object, where: str, b: _Budget) -> str:
    if not isinstance(value, str):
        raise PatternError(f"{where}: expected a string, got {type(value).__name__}")
    b.string(value, "a string", where)
    return value


def _wildcard(text: str, where: str) -> Wildcard:
    parts: list[str] = []
    run: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            if nxt is None:
                raise PatternError(f"{where}: a trailing backslash escapes nothing")
            run.append(nxt)
        elif ch == "*":
            parts.append("".join(run))
            run = []
        else:
            run.append(ch)
    parts.append("".join(run))
    return Wildcard(tuple(parts))


def _string_operator(
    name: str, value: object, where: str, b: _Budget
) -> Prefix | Suffix | IgnoreCase | Wildcard:
    text = _check_string(value, where, b)
    if name == "prefix":
        return Prefix(text)
    if name == "suffix":
        return Suffix(text)
    if name == "equals-ignore-case":
        return IgnoreCase(text.translate(_ASCII_LOWER))
    return _wildcard(text, where)


def _numeric(value: object, where: str) -> Numeric:
    if not isinstance(value, list) or len(value) not in (2, 4):
        raise PatternError(f"{where}: expected [op, number] or [op, number, op, number]")
    comparisons: list[tuple[str, int | float]] = []
    for i in range(0, len(value), 2):
        op, number = value[i], value[i + 1]
        if not isinstance(op, str) or op not in _NUMERIC_OPS:
            raise PatternError(f"{where}[{i}]: unknown comparison {op!r}; use = != < <= > >=")
        if not _is_number(number):
            raise PatternError(f"{where}[{i + 1}]: expected a number, got {number!r}")
        if isinstance(number, float) and not math.isfinite(number):
            raise PatternError(f"{where}[{i + 1}]: numbers must be finite")
        comparisons.append((op, number))
    return Numeric(tuple(comparisons))


def _anything_but(value: object, where: str, b: _Budget) -> AnythingBut:
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise PatternError(f"{where}: expected one of {', '.join(_STRING_OPERATORS)}")
        ((name, inner),) = value.items()
        if name not in _STRING_OPERATORS:
            raise PatternError(f"{where}: unknown operator {name!r} inside anything-but")
        return AnythingBut(_string_operator(name, inner, f"{where}.{name}", b))
    if isinstance(value, list):
        if not value:
            raise PatternError(f"{where}: the list of excluded values is empty")
        b.items(len(value), "excluded values", where)
        for i in range(len(value)):
            b.node(f"{where}[{i}]")
        return AnythingBut(
            tuple(Exact(_check_scalar(v, f"{where}[{i}]", b)) for i, v in enumerate(value))
        )
    return AnythingBut((Exact(_check_scalar(value, where, b)),))


def _alternative(item: object, where: str, b: _Budget) -> ValueOrExists:
    b.node(where)
    if not isinstance(item, Mapping):
        if isinstance(item, list):
            raise PatternError(f"{where}: lists cannot nest; write the values in one list")
        return Exact(_check_scalar(item, where, b))
    if len(item) != 1:
        raise PatternError(f"{where}: an operator object has exactly one key, got {len(item)}")
    ((name, value),) = item.items()
    at = f"{where}.{name}"
    if name in _STRING_OPERATORS:
        return _string_operator(name, value, at, b)
    if name == "numeric":
        return _numeric(value, at)
    if name == "anything-but":
        return _anything_but(value, at, b)
    if name == "exists":
        if not isinstance(value, bool):
            raise PatternError(f"{at}: expected true or false")
        return Exists(value)
    if name == "cidr":
        try:
            return Cidr(ipaddress.ip_network(_check_string(value, at, b), strict=False))
        except ValueError as exc:
            raise PatternError(f"{at}: {exc}") from exc
    raise PatternError(f"{where}: unknown operator {name!r}")


def _leaf(path: tuple[str, ...], value: object, where: str, b: _Budget) -> Leaf:
    if path[-1] in _OPERATORS:
        raise PatternError(
            f"{where}: operator {path[-1]!r} must sit inside a list of alternatives, "
            f'e.g. {{"amount": [{{"{path[-1]}": ...}}]}}'
        )
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PatternError(f"{where}: the list of alternatives is empty")
    b.items(len(items), "alternatives", where)
    alts = tuple(
        _alternative(item, f"{where}[{i}]" if isinstance(value, list) else where, b)
        for i, item in enumerate(items)
    )
    return Leaf(path, alts)


def _all_of(spec: object, prefix: tuple[str, ...], where: str, b: _Budget, depth: int) -> AllOf:
    b.depth(depth, where)
    if not isinstance(spec, Mapping):
        raise PatternError(f"{where or 'pattern'}: expected a mapping, got {type(spec).__name__}")
    if not spec and prefix:
        raise PatternError(f"{where}: an empty mapping matches nothing useful")
    conditions: list[Leaf | AnyOf] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise PatternError(f"{where or 'pattern'}: keys must be strings, got {key!r}")
        b.string(key, "a field name", where)
        at = _where(where, f".{key}")
        b.node(at)
        if key == "$or":
            if not isinstance(value, list) or not value:
                raise PatternError(f"{at}: expected a non-empty list of patterns")
            b.items(len(value), "branches", at)
            branches = []
            for i, branch in enumerate(value):
                if not isinstance(branch, Mapping) or not branch:
                    raise PatternError(f"{at}[{i}]: expected a non-empty mapping")
                b.node(f"{at}[{i}]")
                branches.append(_all_of(branch, prefix, f"{at}[{i}]", b, depth + 1))
            conditions.append(AnyOf(tuple(branches)))
            continue
        if key.startswith("$"):
            raise PatternError(f"{at}: unknown operator {key!r}; only $or is supported")
        segments = key.split(".")
        if any(not s for s in segments):
            raise PatternError(f"{at}: empty segment in field name {key!r}")
        path = prefix + tuple(segments)
        if isinstance(value, Mapping):
            conditions.extend(_all_of(value, path, at, b, depth + len(segments)).conditions)
        else:
            b.depth(depth + len(segments), at)
            conditions.append(_leaf(path, value, at, b))
    return AllOf(tuple(conditions))


def compile_pattern(spec: Mapping[str, Any], limits: Limits | None = LIMITS) -> Pattern:
    """Validate ``spec`` and compile it; raise PatternError naming the path of the first fault.

    ``limits`` bounds the pattern's size; None only for patterns that passed them when they were
    saved (a stored route is not refused later because a limit was lowered).
    """
    root = _all_of(spec, (), "", _Budget(limits), 0)
    try:
        source = json.loads(json.dumps(spec, allow_nan=False))
    except (TypeError, ValueError) as exc:  # pragma: no cover - _all_of already checked the values
        raise PatternError(f"pattern: not JSON-serializable: {exc}") from exc
    return Pattern(spec=source, root=root, matcher=_compile_all(root))


def both(first: Pattern | None, second: Pattern | None) -> Pattern | None:
    """A pattern that matches what both match (None stands for "anything"): a request's filter
    narrowed by its key's constraints. Each passed the size limits on its own, so the pair is
    compiled without them."""
    if first is None or second is None:
        return first or second
    return compile_pattern(_and_spec(first.spec, second.spec), None)


def _and_spec(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One spec for `a` AND `b`. A mapping already ANDs its keys, and a one-branch `$or` is its
    branch, so `{"$or": [a], **b}` says it whenever `b` has no `$or` of its own (or `a` has
    none: the other way round). When both have one, `b`'s branches each take `a`:
    a ∧ rest ∧ (b1 ∨ b2) = rest ∧ ((a ∧ b1) ∨ (a ∧ b2))."""
    if not a or not b:
        return dict(a or b)
    if "$or" not in b:
        return {"$or": [dict(a)], **b}
    if "$or" not in a:
        return {"$or": [dict(b)], **a}
    rest = {k: v for k, v in b.items() if k != "$or"}
    return {"$or": [_and_spec(a, branch) for branch in b["$or"]], **rest}


def _reject_constant(name: str) -> Any:
    raise PatternError(f"pattern: {name} is not a JSON number")


def parse_pattern(text: str) -> Pattern:
    """Parse a JSON pattern (e.g. from ``?filter=``) and compile it."""
    try:
        spec = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PatternError(f"pattern: invalid JSON: {exc}") from exc
    except ValueError as exc:  # an integer of more digits than Python converts (4,300)
        raise PatternError(f"pattern: {exc}") from None
    except RecursionError:  # `[[[[…` thousands deep: the decoder gives up before any limit
        raise PatternError(
            f"pattern: nested more than {LIMITS.max_depth} levels deep (limit max_depth)"
        ) from None
    if not isinstance(spec, dict):
        raise PatternError(f"pattern: expected a JSON object, got {type(spec).__name__}")
    return compile_pattern(spec)


# ---------------------------------------------------------------------------------------------
# The matcher: closures built once per pattern.


def _resolve(doc: Any, path: tuple[str, ...]) -> list[Any]:
    """The nodes at ``path``; an array met on the way contributes its object elements."""
    node: Any = doc
    for depth, key in enumerate(path):  # fast path: plain objects all the way down
        if type(node) is dict and key in node:
            node = node[key]
        elif isinstance(node, list | Mapping):
            return _resolve_slow([node], path[depth:])
        else:
            return []
    return [node]


def _resolve_slow(nodes: list[Any], path: tuple[str, ...]) -> list[Any]:
    for key in path:
        found: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                found.extend(e[key] for e in node if isinstance(e, Mapping) and key in e)
            elif isinstance(node, Mapping) and key in node:
                found.append(node[key])
        if not found:
            return found
        nodes = found
    return nodes


def _is_scalar(value: object) -> bool:
    return not isinstance(value, Mapping | list)


def _starts_with(prefix: str) -> Callable[[str], bool]:
    return lambda s: s.startswith(prefix)


def _ends_with(suffix: str) -> Callable[[str], bool]:
    return lambda s: s.endswith(suffix)


def _equals_lowered(lowered: str) -> Callable[[str], bool]:
    return lambda s: s.translate(_ASCII_LOWER) == lowered


def _string_test(alt: Prefix | Suffix | IgnoreCase | Wildcard) -> Callable[[str], bool]:
    if isinstance(alt, Prefix):
        return _starts_with(alt.value)
    if isinstance(alt, Suffix):
        return _ends_with(alt.value)
    if isinstance(alt, IgnoreCase):
        return _equals_lowered(alt.value)
    return _glob(alt.parts)


def _glob(parts: tuple[str, ...]) -> Callable[[str], bool]:
    """A matcher for ``part0*part1*…*partN`` without backtracking.

    A regex (``part0.*part1.*…``) backtracks: ``*a*a*a…*b`` against ``"a" * 31`` took seconds.
    With only ``*`` between literal runs, taking each middle run at its leftmost place after the
    previous one is never worse than any later place, so one left-to-right pass decides: the
    first run is a prefix, the last a suffix, and each middle run is a ``str.find`` that starts
    where the previous one ended. The cost is O(len(s) × len(pattern)) at worst and O(len(s)) in
    practice; it never grows with the number of stars.
    """
    if len(parts) == 1:
        (whole,) = parts
        return lambda s: s == whole
    head, middle, tail = parts[0], parts[1:-1], parts[-1]
    fixed = len(head) + len(tail)

    def test(s: str) -> bool:
        if len(s) < fixed or not s.startswith(head) or not s.endswith(tail):
            return False
        pos, end = len(head), len(s) - len(tail)
        for part in middle:
            found = s.find(part, pos, end)
            if found < 0:
                return False
            pos = found + len(part)
        return True

    return test


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _exact_test(values: Sequence[Exact]) -> Callable[[Any], bool]:
    strings = frozenset(v.value for v in values if isinstance(v.value, str))
    numbers = frozenset(v.value for v in values if _is_number(v.value))
    bools = frozenset(v.value for v in values if isinstance(v.value, bool))
    null = any(v.value is None for v in values)

    def test(c: Any) -> bool:
        if isinstance(c, str):
            return c in strings
        if isinstance(c, bool):
            return c in bools
        if isinstance(c, int | float):
            return c in numbers
        return c is None and null

    return test


def _value_test(alt: Alternative | Cidr) -> Callable[[Any], bool]:
    if isinstance(alt, Exact):
        return _exact_test([alt])
    if isinstance(alt, Prefix | Suffix | IgnoreCase | Wildcard):
        test = _string_test(alt)
        return lambda c: isinstance(c, str) and test(c)
    if isinstance(alt, Numeric):
        checks = [(_COMPARE[op], n) for op, n in alt.comparisons]
        return lambda c: _is_number(c) and all(cmp(c, n) for cmp, n in checks)
    if isinstance(alt, Cidr):
        network = alt.network

        def in_network(c: Any) -> bool:
            if not isinstance(c, str):
                return False
            try:
                return ipaddress.ip_address(c) in network
            except ValueError:
                return False

        return in_network
    excluded = alt.excluded
    inner = _exact_test(excluded) if isinstance(excluded, tuple) else _value_test(excluded)
    return lambda c: _is_scalar(c) and not inner(c)


def _compile_leaf(leaf: Leaf) -> _Matcher:
    path = leaf.path
    existence = frozenset(a.present for a in leaf.alternatives if isinstance(a, Exists))
    exact = [a for a in leaf.alternatives if isinstance(a, Exact)]
    others = [a for a in leaf.alternatives if not isinstance(a, Exact | Exists)]
    tests = ([_exact_test(exact)] if exact else []) + [_value_test(a) for a in others]

    def leaf_matches(doc: Doc) -> bool:
        nodes = _resolve(doc, path)
        if existence and (bool(nodes) in existence):
            return True
        for node in nodes:
            for c in node if isinstance(node, list) else (node,):
                for test in tests:
                    if test(c):
                        return True
        return False

    return leaf_matches


def _compile_all(node: AllOf) -> _Matcher:
    parts = [_compile_leaf(c) if isinstance(c, Leaf) else _compile_any(c) for c in node.conditions]
    if len(parts) == 1:
        return parts[0]
    return lambda doc: all(p(doc) for p in parts)


def _compile_any(node: AnyOf) -> _Matcher:
    branches = [_compile_all(b) for b in node.branches]
    if len(branches) == 1:
        return branches[0]
    return lambda doc: any(b(doc) for b in branches)


def match(pattern: Pattern, doc: Mapping[str, Any]) -> bool:
    """True when ``doc`` satisfies ``pattern``."""
    return pattern.matcher(doc)


# ---------------------------------------------------------------------------------------------
# SQL: the same records rendered over the `events` table.

Dialect: TypeAlias = Literal["sqlite", "postgres"]

_COLUMNS = {
    ("id",): "id",
    ("type",): "type",
    ("version",): "version",
    ("source",): "source",
    ("subject",): "subject",
    ("trace_id",): "trace_id",
    ("correlation_id",): "correlation_id",
    ("causation_id",): "causation_id",
    ("actor", "id"): "actor_id",
    ("actor", "type"): "actor_type",
}
_JSON_COLUMNS = ("data", "context")
_MARK = re.compile("\x00(\\d+)\x00")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?!\n)$")


class _Params:
    """Collects parameters; placeholders are markers, numbered in text order at render time."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.values: list[tuple[Any, str]] = []

    def text(self, value: str) -> str:
        self.values.append((value, "text"))
        return f"\x00{len(self.values) - 1}\x00"

    def num(self, value: int | float) -> str:
        if self.dialect == "postgres" and isinstance(value, float):
            # repr is the shortest decimal that round-trips, so numeric compares like Python does
            self.values.append((Decimal(repr(value)), "numeric"))
        else:
            self.values.append((value, "numeric"))
        return f"\x00{len(self.values) - 1}\x00"

    def render(self, sql: str, start: int) -> SqlFragment:
        params: list[Any] = []
        numbers: dict[int, int] = {}

        def place(m: re.Match[str]) -> str:
            index = int(m.group(1))
            value, kind = self.values[index]
            if self.dialect == "sqlite":
                params.append(value)
                return "?"
            if index not in numbers:
                numbers[index] = start + len(params)
                params.append(value)
            return f"${numbers[index]}::{kind}"

        return SqlFragment(_MARK.sub(place, sql), params)


@dataclass(frozen=True)
class _Cand:
    """SQL expressions describing one candidate value of a field."""

    is_text: str
    text: str
    is_number: str
    number: str
    bool_text: str  # 'true' / 'false' for a boolean, NULL otherwise
    is_null: str
    is_scalar: str


def _column_cand(col: str) -> _Cand:
    return _Cand(
        is_text=f"{col} IS NOT NULL",
        text=col,
        is_number="FALSE",
        number="NULL",
        bool_text="NULL",
        is_null=f"{col} IS NULL",
        is_scalar="TRUE",
    )


_SQLITE_CAND = _Cand(
    is_text="_sbc.type = 'text'",
    text="_sbc.value",
    is_number="_sbc.type IN ('integer', 'real')",
    number="_sbc.value",
    bool_text="(CASE WHEN _sbc.type IN ('true', 'false') THEN _sbc.type END)",
    is_null="_sbc.type = 'null'",
    is_scalar="_sbc.type NOT IN ('array', 'object')",
)

_PG_CAND = _Cand(
    is_text="jsonb_typeof(_sbc.j) = 'string'",
    text="(_sbc.j #>> '{}')",
    is_number="jsonb_typeof(_sbc.j) = 'number'",
    number="(CASE WHEN jsonb_typeof(_sbc.j) = 'number' THEN (_sbc.j #>> '{}')::numeric END)",
    bool_text="(CASE WHEN jsonb_typeof(_sbc.j) = 'boolean' THEN _sbc.j #>> '{}' END)",
    is_null="jsonb_typeof(_sbc.j) = 'null'",
    is_scalar="jsonb_typeof(_sbc.j) NOT IN ('array', 'object')",
)


def _string_sql(alt: Prefix | Suffix | IgnoreCase | Wildcard, text: str, p: _Params) -> str:
    pg = p.dialect == "postgres"
    if isinstance(alt, Prefix):
        v = p.text(alt.value)
        if pg:
            return f"starts_with({text}, {v})"
        return f"substr({text}, 1, length({v})) = {p.text(alt.value)}"
    if isinstance(alt, Suffix):
        if pg:
            v = p.text(alt.value)
            return f"right({text}, char_length({v})) = {v}"
        a, b, c = (p.text(alt.value) for _ in range(3))
        tail = f"substr({text}, length({text}) - length({b}) + 1)"
        return f"(length({text}) >= length({a}) AND {tail} = {c})"
    if isinstance(alt, IgnoreCase):
        v = p.text(alt.value)
        if pg:  # translate, not lower(): lower() follows the database locale, Python does not
            upper, lower = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
            return f"translate({text}, '{upper}', '{lower}') = {v}"
        return f"lower({text}) = {v}"  # stock SQLite lower() folds ASCII only, like the matcher
    if pg:
        escaped = [re.sub(r"([\\%_])", r"\\\1", part) for part in alt.parts]
        return f"{text} LIKE {p.text('%'.join(escaped))}"
    escaped = [re.sub(r"([*?\[])", r"[\1]", part) for part in alt.parts]
    return f"{text} GLOB {p.text('*'.join(escaped))}"


def _exact_sql(alt: Exact, c: _Cand, p: _Params) -> str:
    v = alt.value
    if v is None:
        return c.is_null
    if isinstance(v, bool):
        return f"{c.bool_text} = {p.text('true' if v else 'false')}"
    if isinstance(v, str):
        return f"({c.is_text} AND {c.text} = {p.text(v)})"
    return f"({c.is_number} AND {c.number} = {p.num(v)})"


_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _alt_sql(alt: Alternative | Cidr, c: _Cand, p: _Params, where: str) -> str:
    if isinstance(alt, Exact):
        return _exact_sql(alt, c, p)
    if isinstance(alt, Prefix | Suffix | IgnoreCase | Wildcard):
        return f"({c.is_text} AND {_string_sql(alt, c.text, p)})"
    if isinstance(alt, Numeric):
        tests = " AND ".join(f"{c.number} {_SQL_OPS[op]} {p.num(n)}" for op, n in alt.comparisons)
        return f"({c.is_number} AND {tests})"
    if isinstance(alt, Cidr):
        raise PatternError(f"{where}: cidr filters are not available in queries, only in routes")
    ex = alt.excluded
    if isinstance(ex, tuple):
        inner = " OR ".join(_exact_sql(e, c, p) for e in ex)
    else:
        inner = f"({c.is_text} AND {_string_sql(ex, c.text, p)})"
    return f"({c.is_scalar} AND NOT COALESCE(({inner}), FALSE))"


def _column_alt_sql(alt: Alternative | Cidr, c: _Cand, p: _Params, where: str, column: str) -> str:
    """`_alt_sql` over an envelope column; PostgreSQL's trace index holds the trace id's hash
    (migration 0019), so an exact trace id names the hash for it, and the trace id decides."""
    if (
        column == "trace_id"
        and p.dialect == "postgres"
        and isinstance(alt, Exact)
        and isinstance(alt.value, str)
    ):
        v = p.text(alt.value)
        return f"({c.is_text} AND hashtext({c.text}) = hashtext({v}) AND {c.text} = {v})"
    return _alt_sql(alt, c, p, where)


def _nodes_sql(col: str, keys: tuple[str, ...], p: _Params, where: str) -> str:
    """A subquery yielding one row (column j) per node at ``keys`` inside a JSON column."""
    sql = f"SELECT {col} AS j"
    for depth, key in enumerate(keys):
        if p.dialect == "sqlite":
            if '"' in key or "\\" in key:
                raise PatternError(f"{where}: field names with '\"' or '\\' cannot be queried")
            obj = "(CASE WHEN _sbe.type = 'object' THEN _sbe.value END)"
            json_path = '$."' + key + '"'
            sql = (
                f"SELECT {obj} -> {p.text(json_path)} AS j FROM ({sql}) AS _sbn{depth}, "
                f"json_each(CASE json_type(_sbn{depth}.j) WHEN 'array' THEN _sbn{depth}.j "
                f"WHEN 'object' THEN json_array(json(_sbn{depth}.j)) ELSE '[]' END) AS _sbe "
                f"WHERE {obj} -> {p.text(json_path)} IS NOT NULL"
            )
        else:
            k = p.text(key)
            sql = (
                f"SELECT _sbe.j -> {k} AS j FROM ({sql}) AS _sbn{depth}, "
                f"jsonb_array_elements(CASE jsonb_typeof(_sbn{depth}.j) WHEN 'array' "
                f"THEN _sbn{depth}.j WHEN 'object' THEN jsonb_build_array(_sbn{depth}.j) "
                f"ELSE '[]'::jsonb END) AS _sbe(j) WHERE _sbe.j -> {k} IS NOT NULL"
            )
    return sql


def _leaf_sql(leaf: Leaf, p: _Params, table: str) -> str:
    where = ".".join(leaf.path)
    column = _COLUMNS.get(leaf.path)
    existence = [a for a in leaf.alternatives if isinstance(a, Exists)]
    values = [a for a in leaf.alternatives if not isinstance(a, Exists)]
    parts: list[str] = []
    if column is not None:
        # Event.match_doc() always carries these keys (null when unset): they always exist.
        parts += ["TRUE" if e.present else "FALSE" for e in existence]
        cand = _column_cand(table + column)
        parts += [_column_alt_sql(a, cand, p, where, column) for a in values]
        return "(" + " OR ".join(parts) + ")"
    head = leaf.path[0]
    if head == "time":
        raise PatternError("time: filter time with from/to, not with a pattern")
    if head not in _JSON_COLUMNS:
        raise PatternError(f"{where}: not an event field; use data.* or context.* for payloads")
    col = table + head
    for e in existence:
        exists = f"EXISTS ({_nodes_sql(col, leaf.path[1:], p, where)})"
        parts.append(exists if e.present else f"NOT {exists}")
    if values:
        nodes = _nodes_sql(col, leaf.path[1:], p, where)
        if p.dialect == "sqlite":
            cands = (
                f"SELECT 1 FROM ({nodes}) AS _sbl, json_each(CASE json_type(_sbl.j) "
                f"WHEN 'array' THEN _sbl.j ELSE json_array(json(_sbl.j)) END) AS _sbc"
            )
            cand = _SQLITE_CAND
        else:
            cands = (
                f"SELECT 1 FROM ({nodes}) AS _sbl, jsonb_array_elements(CASE "
                f"jsonb_typeof(_sbl.j) WHEN 'array' THEN _sbl.j ELSE jsonb_build_array(_sbl.j) "
                f"END) AS _sbc(j)"
            )
            cand = _PG_CAND
        tests = " OR ".join(_alt_sql(a, cand, p, where) for a in values)
        parts.append(f"EXISTS ({cands} WHERE {tests})")
    return "(" + " OR ".join(parts) + ")"


def _all_sql(node: AllOf, p: _Params, table: str) -> str:
    if not node.conditions:
        return "TRUE"
    parts = [
        _leaf_sql(c, p, table)
        if isinstance(c, Leaf)
        else "(" + " OR ".join(_all_sql(b, p, table) for b in c.branches) + ")"
        for c in node.conditions
    ]
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def check_queryable(pattern: Pattern) -> None:
    """Raise PatternError unless both stores can answer `pattern` as a query, so a filter a
    query cannot use is refused the same way on SQLite and PostgreSQL, before any store work."""
    for dialect in ("sqlite", "postgres"):
        to_sql(pattern, dialect)


def to_sql(
    pattern: Pattern, dialect: Dialect, *, start: int = 1, table: str | None = None
) -> SqlFragment:
    """A WHERE fragment over `events` selecting what ``match`` accepts on ``Event.match_doc()``.

    ``table`` qualifies the column names (an alias such as ``"e"``) when the query joins.
    Raises PatternError for what SQL cannot answer exactly: ``time`` and ``cidr`` filters, fields
    outside the envelope columns, ``data`` and ``context``, and (SQLite) keys with ``"`` or ``\\``.
    """
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    if table is not None and not _IDENT.match(table):
        raise ValueError(f"table alias {table!r} is not a plain identifier")
    p = _Params(dialect)
    sql = _all_sql(pattern.root, p, f"{table}." if table else "")
    return p.render(sql, start)
