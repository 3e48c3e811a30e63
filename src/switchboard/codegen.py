"""Typed event definitions generated from a catalog: every type's latest JSON Schema becomes a
TypeScript interface (for the TypeScript SDK's `Client<Events>`) or a Python `TypedDict` (with an
`Emitter` protocol the Python SDK's clients satisfy). Pure: a catalog in, source text out.

Objects are closed: a field the schema does not list is a compile error, even where JSON Schema
would let it through, because a typo is what such a field almost always is. A schema construct
with no faithful static type (`allOf`, `$ref`, `patternProperties`) becomes `unknown` / `Any`:
less strict, never wrong.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from switchboard.catalog import CatalogSpec, EventTypeSpec

_TS_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*(?!\n)$")
# Names the generated modules use themselves: a type called "record" or "any" gets a suffix.
_TS_TAKEN = {"Events", "EventType", "Record", "Array", "Object", "String", "Number", "Boolean"}
_PY_TAKEN = {"Any", "Literal", "NotRequired", "Protocol", "TypedDict", "Final", "Emitter"}
_PY_TAKEN |= {"EventType", "VERSIONS", "overload"}


class Lang(StrEnum):
    """A language `generate` writes."""

    TYPESCRIPT = "typescript"  # one .ts module: an interface per type and the `Events` map
    PYTHON = "python"  # one .py module: a TypedDict per type and the `Emitter` protocol


def generate(catalog: CatalogSpec, lang: Lang) -> str:
    """The source text of one module with the types of every event type in `catalog`."""
    if lang is Lang.TYPESCRIPT:
        return typescript(catalog)
    return python(catalog)


class _Names:
    """Unique PascalCase names: "billing.payment_received" → "BillingPaymentReceived"."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = set(taken)

    def new(self, *parts: str) -> str:
        base = "".join(
            word[:1].upper() + word[1:]
            for part in parts
            for word in re.split(r"[^0-9A-Za-z]+", part)
            if word
        )
        if not base or not base[0].isalpha():
            base = "T" + base
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}{n}"
        self._taken.add(name)
        return name


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    if isinstance(schema.get("properties"), Mapping) or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def _scalars(values: Any) -> list[Any] | None:
    """The values of an enum/const when every one can be a literal type, else None."""
    if not isinstance(values, list) or not values:
        return None
    ok = all(v is None or isinstance(v, str | bool | int) for v in values)
    return values if ok else None


def _literal_values(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return _scalars([schema["const"]])
    return _scalars(schema.get("enum"))


def _alternatives(schema: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and all(isinstance(o, Mapping) for o in options):
            return options
    return None


def _note(schema: Mapping[str, Any]) -> str:
    """A field's description and format, for a comment."""
    text = str(schema.get("description") or "").strip()
    fmt = schema.get("format")
    if isinstance(fmt, str):
        text = f"{text} (format: {fmt})" if text else f"format: {fmt}"
    return " ".join(text.split())


def _is_open(schema: Mapping[str, Any]) -> bool:
    """Fields beyond `properties` are declared welcome (by a schema or `true`)."""
    extra = schema.get("additionalProperties")
    return extra is True or isinstance(extra, Mapping) or "patternProperties" in schema


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# TypeScript


def _ts_comment(text: str, indent: str) -> list[str]:
    safe = text.replace("*/", "* /")  # a description must not end the comment early
    return [f"{indent}/** {safe} */"] if text else []


def _ts_key(key: str) -> str:
    return key if _TS_IDENTIFIER.match(key) else json.dumps(key, ensure_ascii=False)


def _ts(schema: Any, indent: str) -> str:
    """The TypeScript type of a value matching `schema`."""
    if not isinstance(schema, Mapping) or schema.get("$ref") is not None or "allOf" in schema:
        return "unknown"
    literals = _literal_values(schema)
    if literals is not None:
        return " | ".join(_dedupe([json.dumps(v, ensure_ascii=False) for v in literals]))
    options = _alternatives(schema)
    if options is not None:
        return " | ".join(_dedupe([_ts_member(_ts(o, indent)) for o in options]))
    parts: list[str] = []
    for t in _types(schema):
        if t == "string":
            parts.append("string")
        elif t in ("integer", "number"):
            parts.append("number")
        elif t == "boolean":
            parts.append("boolean")
        elif t == "null":
            parts.append("null")
        elif t == "array":
            items = schema.get("items")
            item = _ts(items, indent) if isinstance(items, Mapping) else "unknown"
            parts.append(f"Array<{item}>")
        elif t == "object":
            parts.append(_ts_object(schema, indent))
    return " | ".join(_dedupe(parts)) or "unknown"


def _ts_member(text: str) -> str:
    return f"({text})" if " | " in text and not text.startswith("{") else text


def _ts_object(schema: Mapping[str, Any], indent: str) -> str:
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if not isinstance(props, Mapping) or not props:
        if isinstance(extra, Mapping):
            return f"Record<string, {_ts(extra, indent)}>"
        if extra is False:
            return "Record<string, never>"
        return "Record<string, unknown>"
    return "{\n" + "\n".join(_ts_fields(schema, indent + "  ")) + f"\n{indent}}}"


def _ts_fields(schema: Mapping[str, Any], indent: str) -> list[str]:
    props = schema.get("properties")
    required = set(schema.get("required") or [])
    lines: list[str] = []
    for key, sub in (props or {}).items():
        optional = "" if key in required else "?"
        note = _note(sub) if isinstance(sub, Mapping) else ""
        lines += _ts_comment(note, indent)
        lines.append(f"{indent}{_ts_key(key)}{optional}: {_ts(sub, indent)};")
    if _is_open(schema):
        # an index signature must admit every listed field's type too
        lines.append(f"{indent}[key: string]: unknown;")
    return lines


def _ts_type(name: str, spec: EventTypeSpec) -> list[str]:
    schema = spec.latest().schema
    doc = " ".join(spec.description.split())
    lines = _ts_comment(f"`{spec.name}` {spec.latest().version}: {doc}".strip(), "")
    props = schema.get("properties")
    if "object" in _types(schema) and isinstance(props, Mapping) and props:
        lines.append(f"export interface {name} {{")
        lines += _ts_fields(schema, "  ")
        lines.append("}")
    else:
        kind = _ts(schema, "") if "object" in _types(schema) else "Record<string, unknown>"
        lines.append(f"export type {name} = {kind};")
    return lines


def typescript(catalog: CatalogSpec) -> str:
    """One TypeScript module: an interface per event type, the `Events` map from each type name
    to its data (for `new Client<Events>(…)`), `EventType` and each type's latest `versions`."""
    names = _Names(_TS_TAKEN)
    named = [(names.new(t.name), t) for t in catalog.types]
    title = json.dumps(catalog.name, ensure_ascii=False)
    lines = [
        f"// Event types of the catalog {title}, generated by",
        "// `switchboard catalog codegen --lang typescript`. Do not edit: generate it again.",
        "//",
        '// import { Client } from "@switchboard-hub/client";',
        "// const hub = new Client<Events>({ url, apiKey }); // emit() now checks types and fields",
        "",
    ]
    for name, spec in named:
        lines += [*_ts_type(name, spec), ""]
    lines.append("/** Each event type of the catalog, mapped to its `data`. */")
    lines.append("export interface Events {")
    for name, spec in named:
        lines.append(f"  {json.dumps(spec.name)}: {name};")
    lines += ["}", "", "export type EventType = keyof Events;", ""]
    lines.append("/** The latest version of each type, the one these definitions describe. */")
    lines.append("export const versions = {")
    for _, spec in named:
        lines.append(f"  {json.dumps(spec.name)}: {json.dumps(spec.latest().version)},")
    lines.append("} as const satisfies Record<EventType, string>;")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Python


class _PyModule:
    """Collects TypedDict definitions, each one before its first use."""

    def __init__(self) -> None:
        self.names = _Names(_PY_TAKEN)
        self.blocks: list[list[str]] = []

    def type_of(self, schema: Any, hint: str) -> str:
        """The Python type of a value matching `schema`; `hint` names nested TypedDicts."""
        if not isinstance(schema, Mapping) or schema.get("$ref") is not None or "allOf" in schema:
            return "Any"
        literals = _literal_values(schema)
        if literals is not None:
            return f"Literal[{', '.join(_dedupe([repr(v) for v in literals]))}]"
        options = _alternatives(schema)
        if options is not None:
            return " | ".join(_dedupe([self.type_of(o, hint) for o in options]))
        parts: list[str] = []
        for t in _types(schema):
            if t == "string":
                parts.append("str")
            elif t == "integer":
                parts.append("int")
            elif t == "number":
                parts.append("float")
            elif t == "boolean":
                parts.append("bool")
            elif t == "null":
                parts.append("None")
            elif t == "array":
                items = schema.get("items")
                item = self.type_of(items, f"{hint}Item") if isinstance(items, Mapping) else "Any"
                parts.append(f"list[{item}]")
            elif t == "object":
                parts.append(self.object_type(schema, hint))
        return " | ".join(_dedupe(parts)) or "Any"

    def object_type(self, schema: Mapping[str, Any], hint: str) -> str:
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, Mapping) and props and not _is_open(schema):
            return self.typed_dict(self.names.new(hint), schema, "")
        if isinstance(extra, Mapping) and not props:
            return f"dict[str, {self.type_of(extra, f'{hint}Value')}]"
        return "dict[str, Any]"  # open objects: a TypedDict would refuse the extra fields

    def typed_dict(self, name: str, schema: Mapping[str, Any], doc: str) -> str:
        props: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        fields: list[tuple[str, str, str]] = []
        for key, sub in props.items():
            hint = f"{name}_{key}" if key.isascii() else f"{name}Field{len(fields)}"
            annotation = self.type_of(sub, hint)
            if key not in required:
                annotation = f"NotRequired[{annotation}]"
            fields.append((key, annotation, _note(sub) if isinstance(sub, Mapping) else ""))
        block: list[str]
        if all(k.isidentifier() and not keyword.iskeyword(k) for k, _, _ in fields):
            block = [f"class {name}(TypedDict):"]
            if doc:
                block.append(f"    {_py_docstring(doc)}")
            for key, annotation, note in fields:
                block += [f"    # {line}" for line in _wrap(note)]
                block.append(f"    {key}: {annotation}")
            if not fields and not doc:
                block.append("    pass")
        else:  # a key Python cannot spell as a name ("from", "e-mail"): the functional form
            block = [f"# {line}" for line in _wrap(doc)]
            block.append(f"{name} = TypedDict(")
            block.append(f"    {name!r},")
            block.append("    {")
            for key, annotation, note in fields:
                block += [f"        # {line}" for line in _wrap(note)]
                block.append(f"        {key!r}: {annotation},")
            block += ["    },", ")"]
        self.blocks.append(block)
        return name


def _wrap(text: str, width: int = 90) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _py_docstring(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{escaped}"""'


def python(catalog: CatalogSpec) -> str:
    """One Python module: a TypedDict per event type, `EventType`, `VERSIONS`, and an `Emitter`
    protocol whose `emit` overloads pair each type name with its TypedDict. `Client` and
    `AsyncClient` satisfy it: `events: Emitter = Client(…)` makes mypy check every emit."""
    module = _PyModule()
    named: list[tuple[str, EventTypeSpec]] = []
    for spec in catalog.types:
        name = module.names.new(spec.name)
        schema = spec.latest().schema
        doc = f"`{spec.name}` {spec.latest().version}: {' '.join(spec.description.split())}"
        props = schema.get("properties")
        if isinstance(props, Mapping) and props and not _is_open(schema):
            module.typed_dict(name, schema, doc)
        else:
            module.blocks.append([f"# {line}" for line in _wrap(doc)])
            module.blocks[-1].append(f"{name} = {module.type_of(schema, name + 'Data')}")
            if module.blocks[-1][-1].endswith("= Any"):
                module.blocks[-1][-1] = f"{name} = dict[str, Any]"
        named.append((name, spec))
    lines = [
        f'"""Event types of the catalog {catalog.name!r}, generated by',
        "`switchboard catalog codegen --lang python`. Do not edit: generate it again.",
        "",
        "    from switchboard.client import Client",
        "    events: Emitter = Client(url, api_key)  # mypy now checks each emit's type and fields",
        '"""',
        "",
        "from typing import Any, Final, Literal, NotRequired, Protocol, TypedDict, overload",
        "",
    ]
    for block in module.blocks:
        lines += ["", *block, ""]
    literal_types = ", ".join(repr(spec.name) for _, spec in named)
    lines += ["", f"EventType = Literal[{literal_types}]", ""]
    lines.append("# The latest version of each type, the one these definitions describe.")
    lines.append("VERSIONS: Final[dict[str, str]] = {")
    lines += [f"    {spec.name!r}: {spec.latest().version!r}," for _, spec in named]
    lines += ["}", "", ""]
    lines.append("class Emitter(Protocol):")
    lines.append('    """`emit` of `switchboard.client` clients, typed by the catalog."""')
    overload = len(named) > 1
    for name, spec in named:
        lines.append("")
        if overload:
            lines.append("    @overload")
        lines.append("    def emit(")
        lines.append(f"        self, type: Literal[{spec.name!r}], data: {name}, **envelope: Any")
        lines.append("    ) -> str: ...")
    return "\n".join(lines) + "\n"
