"""Event types, their versioned JSON Schemas and the checks around them: parsing catalog folders,
compatibility between versions, linting, validating `data`, and Markdown docs.

Everything here is pure except `load_catalog_dir`, which reads YAML files. The module is longer
than the style's ~500-line split point because the parser, the diff and the docs share one private
schema walker; splitting them would only move that walker into a fourth module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema_rs
import yaml

from switchboard.errors import SwitchboardError
from switchboard.people import PeopleSpec, parse_people, people_to_dict
from switchboard.pii import PiiClass, field_classes

Mode = Literal["enforce", "warn", "quarantine"]
MODES: tuple[Mode, ...] = ("enforce", "warn", "quarantine")
SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?!\n)$")
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(?!\n)$")
_DATA_PATH = re.compile(r"^[^\W\d]\w*(\.[^\W\d]\w*)*(?!\n)$")  # Unicode letters: "gênero"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_TYPE_KEYS = {"name", "description", "owner", "mode", "pii", "pii_classes", "index", "versions"}
_TYPE_KEYS |= {"profile", "consent", "critical", "category", "preferences"}  # people.py's
_TYPE_KEYS |= {"retention"}  # retention.py reads it: how long the type's events are kept
# Read-only keys the HTTP API adds when it returns a type; tolerated so GET → edit → PUT works.
_SERVER_KEYS = {"catalog", "scope", "indexed", "updated_at"}
_CATALOG_KEYS = {"name", "description", "naming_convention", "naming_exceptions", "unknown_types"}


class CatalogError(SwitchboardError):
    """The catalog is invalid."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(f"{where}: " + "; ".join(problems))


@dataclass(frozen=True)
class TypeVersion:
    version: str  # "MAJOR.MINOR" or "MAJOR.MINOR.PATCH"
    schema: dict[str, Any]  # JSON Schema 2020-12 of the event's `data`
    examples: tuple[dict[str, Any], ...]  # each one a `data` object


@dataclass(frozen=True)
class EventTypeSpec:
    name: str
    description: str
    owner: str | None
    mode: Mode
    pii: tuple[str, ...]  # dotted paths inside `data`
    index: tuple[str, ...]  # dotted `data` paths the store indexes
    versions: tuple[TypeVersion, ...]  # ascending
    people: PeopleSpec | None = None  # profile / consent / critical / category (people.py)
    pii_classes: tuple[tuple[str, str], ...] = ()  # pii path -> class named by the catalog

    def pii_fields(self) -> dict[str, PiiClass]:
        """Every PII path with its masking class (pii.py)."""
        return field_classes(self.pii, dict(self.pii_classes))

    retention: str | None = None  # "18 months": how long its events are kept (retention.py)

    def latest(self) -> TypeVersion:
        return self.versions[-1]

    def resolve(self, version: str | None) -> TypeVersion | None:
        """None → latest; "1" → latest 1.x; "1.0" also matches "1.0.0"; unknown → None."""
        if version is None:
            return self.latest()
        if version.isdigit():
            same_major = [v for v in self.versions if parse_version(v.version)[0] == int(version)]
            return same_major[-1] if same_major else None
        try:
            wanted = parse_version(version)
        except CatalogError:
            return None
        return next((v for v in self.versions if parse_version(v.version) == wanted), None)


@dataclass(frozen=True)
class CatalogSpec:
    name: str
    description: str
    naming_convention: str | None
    naming_exceptions: tuple[str, ...]
    unknown_types: Literal["reject", "accept"]
    types: tuple[EventTypeSpec, ...]


@dataclass(frozen=True)
class LintProblem:
    type: str  # the event type's name (or the catalog's, for catalog-wide problems)
    message: str
    severity: Literal["error", "warning"]


@dataclass(frozen=True)
class ValidationIssue:
    path: str  # JSON pointer relative to the event, e.g. "/data/email"
    message: str


def parse_version(v: str) -> tuple[int, int, int]:
    match = _VERSION.match(v) if isinstance(v, str) else None
    if match is None:
        raise CatalogError("version", [f"{v!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH"])
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


# ---------------------------------------------------------------------------------------------
# Parsing


def _json_problems(value: Any, path: str) -> Iterator[str]:
    """YAML turns unquoted dates into datetime objects, which JSON cannot carry."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                yield f"{path}: key {key!r} is not a string"
            else:
                yield from _json_problems(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_problems(item, f"{path}[{i}]")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        yield f"{path}: {type(value).__name__} is not a JSON value (quote it in YAML)"


def _schema_problem(schema: dict[str, Any]) -> str | None:
    declared = schema.get("$schema")
    if declared is not None and declared.rstrip("#") != SCHEMA_2020_12:
        return f"$schema must be {SCHEMA_2020_12} (only Draft 2020-12 is supported)"
    try:
        jsonschema_rs.Draft202012Validator(schema)
    except ValueError as exc:  # jsonschema_rs.ValidationError is a ValueError
        first = str(getattr(exc, "message", None) or exc).splitlines()[0]
        return f"not a valid JSON Schema: {first}"
    return None


def _str_list(doc: Mapping[str, Any], key: str, problems: list[str]) -> tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        problems.append(f"{key}: must be a list of strings")
        return ()
    return tuple(value)


def _parse_version_entry(entry: Any, at: str, problems: list[str]) -> TypeVersion | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{at}: must be a mapping with version, schema and examples")
        return None
    for key in sorted(set(entry) - {"version", "schema", "examples"}):
        problems.append(f"{at}.{key}: unknown field")
    version = entry.get("version")
    if not isinstance(version, str):
        problems.append(f'{at}.version: must be a quoted string such as "1.0", got {version!r}')
        return None
    if _VERSION.match(version) is None:
        problems.append(f"{at}.version: {version!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH")
        return None
    schema = entry.get("schema")
    if not isinstance(schema, Mapping):
        problems.append(f"{at}.schema: must be a JSON Schema object")
        return None
    bad_json = list(_json_problems(schema, f"{at}.schema"))
    problems.extend(bad_json)
    if not bad_json and (why := _schema_problem(dict(schema))):
        problems.append(f"{at}.schema: {why}")
    examples = entry.get("examples") or []
    if not isinstance(examples, list):
        problems.append(f"{at}.examples: must be a list of `data` objects")
        examples = []
    for j, example in enumerate(examples):
        if not isinstance(example, Mapping):
            problems.append(f"{at}.examples[{j}]: must be an object (a `data` payload)")
        else:
            problems.extend(_json_problems(example, f"{at}.examples[{j}]"))
    return TypeVersion(version, dict(schema), tuple(dict(e) for e in examples))


def parse_event_type(doc: Mapping[str, Any], *, where: str = "<api>") -> EventTypeSpec:
    """Build an EventTypeSpec from a YAML file's or an HTTP body's mapping; every problem found
    is reported at once, each naming its field path."""
    if not isinstance(doc, Mapping):
        raise CatalogError(where, ["an event type must be a mapping"])
    problems: list[str] = []
    for key in sorted(set(doc) - _TYPE_KEYS - _SERVER_KEYS):
        problems.append(f"{key}: unknown field")
    name = doc.get("name")
    if not isinstance(name, str) or not _TYPE_NAME.match(name):
        problems.append(f"name: {name!r} is not a lowercase dotted name such as 'lead.created'")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        problems.append("description: must be a string")
    owner = doc.get("owner")
    if owner is not None and not isinstance(owner, str):
        problems.append("owner: must be a string")
    mode = doc.get("mode", "enforce")
    if mode not in MODES:
        problems.append(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    pii = _str_list(doc, "pii", problems)
    index = _str_list(doc, "index", problems)
    for key, paths in (("pii", pii), ("index", index)):
        for i, p in enumerate(paths):
            if not _DATA_PATH.match(p):
                problems.append(f"{key}[{i}]: {p!r} is not a dotted data path such as 'a.b'")
    pii_classes = _pii_classes(doc, pii, problems)
    people = parse_people(doc, problems)
    retention = doc.get("retention")
    if retention is not None:
        from switchboard.retention import RetentionError, parse_retention

        try:
            parse_retention(retention)
        except RetentionError as exc:
            problems.append(f"retention: {exc}")
        retention = str(retention)
    raw_versions = doc.get("versions")
    versions: list[TypeVersion] = []
    if not isinstance(raw_versions, list) or not raw_versions:
        problems.append("versions: must be a non-empty list")
    else:
        for i, entry in enumerate(raw_versions):
            parsed = _parse_version_entry(entry, f"versions[{i}]", problems)
            if parsed is not None:
                versions.append(parsed)
        keys = [parse_version(v.version) for v in versions]
        if len(set(keys)) != len(keys):
            problems.append("versions: the same version is listed twice")
        elif keys != sorted(keys):
            problems.append("versions: must be listed in ascending order")
    if problems:
        raise CatalogError(where, problems)
    return EventTypeSpec(
        name=cast(str, name),
        description=description,
        owner=owner,
        mode=cast(Mode, mode),
        pii=pii,
        index=index,
        versions=tuple(versions),
        people=people,
        pii_classes=pii_classes,
        retention=retention,
    )


def _pii_classes(
    doc: Mapping[str, Any], pii: tuple[str, ...], problems: list[str]
) -> tuple[tuple[str, str], ...]:
    """``pii_classes: {path: class}``: the masking class of PII paths whose name does not say
    it (a path absent here is classified by its last segment, see pii.classify)."""
    value = doc.get("pii_classes") or {}
    if not isinstance(value, Mapping):
        problems.append("pii_classes: must be a mapping of a pii path to its class")
        return ()
    known = ", ".join(c.value for c in PiiClass)
    out = []
    for path, cls in value.items():
        if path not in pii:
            problems.append(f"pii_classes.{path}: not one of the type's pii paths")
        elif cls not in {c.value for c in PiiClass}:
            problems.append(f"pii_classes.{path}: {cls!r} is not a PII class ({known})")
        else:
            out.append((str(path), str(cls)))
    return tuple(sorted(out))


def event_type_to_dict(spec: EventTypeSpec) -> dict[str, Any]:
    """The stored/JSON form; `parse_event_type` reads it back to an equal spec."""
    return {
        "name": spec.name,
        "description": spec.description,
        "owner": spec.owner,
        "mode": spec.mode,
        "pii": list(spec.pii),
        **({"pii_classes": dict(spec.pii_classes)} if spec.pii_classes else {}),
        "index": list(spec.index),
        "versions": [
            {"version": v.version, "schema": v.schema, "examples": list(v.examples)}
            for v in spec.versions
        ],
        **people_to_dict(spec.people),
        **({"retention": spec.retention} if spec.retention is not None else {}),
    }


def _read_yaml(file: Path, label: str) -> Any:
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise CatalogError(label, [f"invalid YAML at{line}: {exc.problem}"]) from None
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(label, [f"cannot read: {exc}"]) from None


def load_catalog_dir(path: Path) -> CatalogSpec:
    """Read `catalog.yaml` and `types/*.yaml`; problems of every file are reported together,
    each prefixed with the file it was found in."""
    head_file = path / "catalog.yaml"
    if not head_file.is_file():
        raise CatalogError(str(path), ["catalog.yaml: file not found"])
    head = _read_yaml(head_file, str(head_file))
    problems: list[str] = []
    if not isinstance(head, Mapping):
        raise CatalogError(str(head_file), ["must be a mapping"])
    for key in sorted(set(head) - _CATALOG_KEYS):
        problems.append(f"catalog.yaml: {key}: unknown field")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        problems.append("catalog.yaml: name: required string")
    description = head.get("description") or ""
    convention = head.get("naming_convention")
    if convention is not None:
        try:
            naming_regex(convention)
        except CatalogError as exc:
            problems.append(f"catalog.yaml: naming_convention: {exc.problems[0]}")
    head_problems: list[str] = []
    exceptions = _str_list(head, "naming_exceptions", head_problems)
    problems += [f"catalog.yaml: {p}" for p in head_problems]
    unknown = head.get("unknown_types", "reject")
    if unknown not in ("reject", "accept"):
        problems.append(f"catalog.yaml: unknown_types: {unknown!r} is not reject or accept")

    types: list[EventTypeSpec] = []
    files = sorted([*path.glob("types/*.yaml"), *path.glob("types/*.yml")])
    if not files:
        problems.append("types/: no *.yaml files")
    for file in files:
        label = str(file.relative_to(path))
        try:
            types.append(parse_event_type(_read_yaml(file, label), where=label))
        except CatalogError as exc:
            problems += [f"{label}: {p}" for p in exc.problems]
    seen: set[str] = set()
    for t in types:
        if t.name in seen:
            problems.append(f"types/: {t.name} is defined twice")
        seen.add(t.name)
    if problems:
        raise CatalogError(str(path), problems)
    return CatalogSpec(
        name=cast(str, name),
        description=str(description),
        naming_convention=convention,
        naming_exceptions=exceptions,
        unknown_types=cast(Literal["reject", "accept"], unknown),
        types=tuple(sorted(types, key=lambda t: t.name)),
    )


# ---------------------------------------------------------------------------------------------
# Compatibility


def _ptr(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {str(x) for x in t}
    return None


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        if old != new:
            out.append(f"{path}: schema changed from {json.dumps(old)} to {json.dumps(new)}")
        return
    old_t, new_t = _types(old), _types(new)
    if new_t is not None:
        accepted = new_t | ({"integer"} if "number" in new_t else set())
        if old_t is None:
            out.append(f"{path}: type now restricted to {'|'.join(sorted(new_t))}")
        elif old_t - accepted:
            was, now = "|".join(sorted(old_t)), "|".join(sorted(new_t))
            out.append(f"{path}: type changed from {was} to {now}")
    if isinstance(new.get("enum"), list):
        old_enum = old.get("enum")
        if not isinstance(old_enum, list):
            out.append(f"{path}: now restricted to the values {new['enum']}")
        elif removed := [v for v in old_enum if v not in new["enum"]]:
            out.append(f"{path}: enum values removed: {', '.join(map(json.dumps, removed))}")
    if "const" in new and old.get("const", object()) != new["const"]:
        out.append(f"{path}: now must be {json.dumps(new['const'])}")
    for key, tighter in (
        ("maximum", -1),
        ("exclusiveMaximum", -1),
        ("maxLength", -1),
        ("maxItems", -1),
        ("minimum", 1),
        ("exclusiveMinimum", 1),
        ("minLength", 1),
        ("minItems", 1),
    ):
        o, n = old.get(key), new.get(key)
        if isinstance(n, int | float) and (not isinstance(o, int | float) or (n - o) * tighter > 0):
            out.append(f"{path}: {key} tightened to {n}")
    if new.get("pattern") is not None and new.get("pattern") != old.get("pattern"):
        out.append(f"{path}: pattern changed to {new['pattern']!r}")
    old_props = old.get("properties") or {}
    new_props = new.get("properties") or {}
    old_req, new_req = set(old.get("required") or []), set(new.get("required") or [])
    for name in sorted(new_req - old_req):
        what = "became required" if name in old_props else "new required field"
        out.append(f"{path}/{_ptr(name)}: {what}")
    for name, old_sub in old_props.items():
        if name not in new_props:
            out.append(f"{path}/{_ptr(name)}: property removed")
        else:
            _diff(old_sub, new_props[name], f"{path}/{_ptr(name)}", out)
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        out.append(f"{path}: additionalProperties closed (unlisted fields now rejected)")
    if isinstance(new.get("items"), Mapping):
        _diff(old.get("items") or {}, new["items"], f"{path}/*", out)


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` breaks producers or consumers written against `old`; each entry names the
    `data` path (JSON pointer, "*" for every array item). Only structural keywords are compared:
    a change inside `$ref`, `anyOf` or `oneOf` is not seen."""
    out: list[str] = []
    _diff(old, new, "/data", out)
    return out


def check_versions(existing: EventTypeSpec | None, incoming: EventTypeSpec) -> list[str]:
    """Problems with replacing `existing` by `incoming`: versions out of order, a stored version
    changed or dropped, a breaking change without a new major version."""
    problems: list[str] = []
    keys = [parse_version(v.version) for v in incoming.versions]
    if keys != sorted(set(keys)):
        problems.append("versions must be listed in strictly ascending order")
    stored = {parse_version(v.version): v for v in (existing.versions if existing else ())}
    new = {parse_version(v.version): v for v in incoming.versions}
    for key, old_v in stored.items():
        if key not in new:
            problems.append(f"version {old_v.version} is stored but missing; versions are kept")
        elif new[key].schema != old_v.schema:
            problems.append(
                f"version {old_v.version} already exists with a different schema; "
                "publish the change as a new version"
            )
    combined = {**new, **stored}
    ordered = sorted(combined)
    for key in sorted(set(new) - set(stored)):
        earlier = [k for k in ordered if k < key and k[0] == key[0]]
        if not earlier:
            continue
        prev = combined[earlier[-1]]
        for change in breaking_changes(prev.schema, new[key].schema):
            problems.append(
                f"version {new[key].version} breaks {prev.version} at {change}; "
                "a breaking change needs a new major version"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Validation and linting


class Validator:
    """A compiled Draft 2020-12 validator for one version's `data`; formats are annotations only
    unless `validate_formats` is set."""

    def __init__(self, schema: dict[str, Any], *, validate_formats: bool = False) -> None:
        try:
            self._compiled = jsonschema_rs.Draft202012Validator(
                schema, validate_formats=validate_formats
            )
        except ValueError as exc:
            message = str(getattr(exc, "message", None) or exc).splitlines()[0]
            raise CatalogError("schema", [f"not a valid JSON Schema: {message}"]) from None

    def validate(self, data: Any) -> list[ValidationIssue]:
        issues = []
        for err in self._compiled.iter_errors(data):
            path = "/data" + "".join(f"/{_ptr(str(p))}" for p in err.instance_path)
            message = str(err.message)
            missing = getattr(err.kind, "property", None)
            if isinstance(missing, str) and "required" in message:
                # Point at the missing field itself: that is what the sender has to add.
                path, message = f"{path}/{_ptr(missing)}", "is a required property"
            issues.append(ValidationIssue(path, message))
        return issues


def naming_regex(convention: str) -> re.Pattern[str]:
    """A convention such as "{domain}.{object}_{past_tense_verb}" as an anchored regex:
    `{object}` is snake_case words, every other placeholder is one lowercase word, and the text
    between placeholders is literal. A convention starting with "^" is a regex already."""
    if not isinstance(convention, str) or not convention:
        raise CatalogError("naming_convention", ["must be a non-empty string"])
    if convention.startswith("^"):
        try:
            return re.compile(convention)
        except re.error as exc:
            raise CatalogError("naming_convention", [f"invalid regex: {exc}"]) from None
    parts, last = ["^"], 0
    for match in _PLACEHOLDER.finditer(convention):
        parts.append(re.escape(convention[last : match.start()]))
        word = "[a-z][a-z0-9]*"
        parts.append(f"{word}(?:_[a-z0-9]+)*" if match.group(1) == "object" else word)
        last = match.end()
    if last == 0:
        raise CatalogError("naming_convention", [f"{convention!r} has no {{placeholder}}"])
    parts += [re.escape(convention[last:]), "$"]
    return re.compile("".join(parts))


@dataclass(frozen=True)
class _Field:
    path: str  # dotted; "[]" marks a step into array items, e.g. "items[].qty"
    schema: Mapping[str, Any]
    required: bool


def _fields(schema: Mapping[str, Any], prefix: str = "") -> Iterator[_Field]:
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return
    required = set(schema.get("required") or [])
    for key, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        path = f"{prefix}{key}"
        yield _Field(path, sub, key in required)
        yield from _fields(sub, f"{path}.")
        items = sub.get("items")
        if isinstance(items, Mapping):
            yield from _fields(items, f"{path}[].")


def _field_paths(schema: Mapping[str, Any]) -> set[str]:
    return {f.path.replace("[]", "") for f in _fields(schema)}


def lint(catalog: CatalogSpec) -> list[LintProblem]:
    problems: list[LintProblem] = []
    pattern = naming_regex(catalog.naming_convention) if catalog.naming_convention else None
    names = {t.name for t in catalog.types}
    for exception in catalog.naming_exceptions:
        if exception not in names:
            msg = f"naming exception {exception!r} is not a type of this catalog"
            problems.append(LintProblem(catalog.name, msg, "warning"))
        elif pattern and pattern.match(exception):
            msg = f"naming exception {exception!r} already follows the convention"
            problems.append(LintProblem(catalog.name, msg, "warning"))
    for t in catalog.types:
        if pattern and t.name not in catalog.naming_exceptions and not pattern.match(t.name):
            msg = f"name does not follow the naming convention {catalog.naming_convention!r}"
            problems.append(LintProblem(t.name, msg, "error"))
        if not t.description.strip():
            problems.append(LintProblem(t.name, "no description", "warning"))
        for i, v in enumerate(t.versions):
            if not v.examples:
                problems.append(LintProblem(t.name, f"version {v.version}: no examples", "warning"))
            validator = Validator(v.schema)
            for j, example in enumerate(v.examples):
                for issue in validator.validate(example):
                    where = f"versions[{i}] ({v.version}) examples[{j}]"
                    msg = f"{where}: {issue.path}: {issue.message}"
                    problems.append(LintProblem(t.name, msg, "error"))
        known = _field_paths(t.latest().schema)
        for key, paths in (("pii", t.pii), ("index", t.index)):
            for p in paths:
                if p not in known:
                    msg = f"{key} path {p!r} is not a property of the latest schema"
                    problems.append(LintProblem(t.name, msg, "error"))
    return problems


# ---------------------------------------------------------------------------------------------
# Documentation


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _type_label(schema: Mapping[str, Any]) -> str:
    types = sorted(_types(schema) or [])
    labels = []
    for t in types:
        items = schema.get("items")
        if t == "array" and isinstance(items, Mapping) and _types(items):
            labels.append(f"array of {'|'.join(sorted(_types(items) or []))}")
        else:
            labels.append(t)
    label = " \\| ".join(labels) or ("const" if "const" in schema else "any")
    fmt = schema.get("format")
    return f"{label} ({fmt})" if fmt else label


def _is_pii(path: str, pii: tuple[str, ...]) -> bool:
    plain = path.replace("[]", "")
    return any(plain == p or plain.startswith(f"{p}.") for p in pii)


def _render_type(t: EventTypeSpec) -> str:
    latest = t.latest()
    lines = [f"# `{t.name}`", "", t.description or "_No description._", ""]
    lines += [f"- **Owner:** {t.owner or '—'}", f"- **Mode:** {t.mode}"]
    lines += [f"- **Latest version:** {latest.version}"]
    if t.index:
        lines.append(f"- **Indexed:** {', '.join(f'`{p}`' for p in t.index)}")
    lines += ["", "## Fields", ""]
    rows = list(_fields(latest.schema))
    if rows:
        lines += [
            "| path | type | required | values | PII | description |",
            "|---|---|---|---|---|---|",
        ]
        for f in rows:
            enum = f.schema.get("enum")
            values = ", ".join(f"`{v}`" for v in enum) if isinstance(enum, list) else ""
            cells = [
                f"`{f.path}`",
                _type_label(f.schema),
                "yes" if f.required else "no",
                values,
                "yes" if _is_pii(f.path, t.pii) else "no",
                str(f.schema.get("description") or ""),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    else:
        lines.append("_The schema lists no properties._")
    lines += ["", "## Personal data", ""]
    if t.pii:
        lines += [f"- `{p}`" for p in t.pii]
    else:
        lines.append("None declared.")
    lines += ["", "## Examples", ""]
    for example in latest.examples:
        lines += ["```json", json.dumps(example, indent=2, ensure_ascii=False), "```", ""]
    if not latest.examples:
        lines += ["_None._", ""]
    lines += ["## Versions", ""]
    previous: TypeVersion | None = None
    for v in t.versions:
        if previous is None:
            lines.append(f"- **{v.version}**: first version.")
        else:
            before, after = _field_paths(previous.schema), _field_paths(v.schema)
            changes = [f"added {', '.join(sorted(after - before)) or 'nothing'}"]
            if removed := sorted(before - after):
                changes.append(f"removed {', '.join(removed)}")
            lines.append(f"- **{v.version}**: {'; '.join(changes)}.")
        previous = v
    return "\n".join(lines) + "\n"


def render_docs(catalog: CatalogSpec) -> dict[str, str]:
    """Markdown pages: "README.md" indexing the types, and one "<name>.md" per type."""
    lines = [f"# {catalog.name}", "", catalog.description, ""]
    if catalog.naming_convention:
        lines += [f"Naming convention: `{catalog.naming_convention}`.", ""]
    lines += [f"Unknown event types are {catalog.unknown_types}ed.", ""]
    lines += ["| type | description | owner | mode | latest |", "|---|---|---|---|---|"]
    for t in catalog.types:
        summary = t.description.strip().split("\n")[0]
        cells = [f"[`{t.name}`]({t.name}.md)", summary, t.owner or "—", t.mode]
        lines.append("| " + " | ".join(_cell(c) for c in [*cells, t.latest().version]) + " |")
    files = {"README.md": "\n".join(lines) + "\n"}
    for t in catalog.types:
        files[f"{t.name}.md"] = _render_type(t)
    return files
