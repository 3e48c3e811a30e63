"""The package's import graph, read from the source with `ast` (every import, including those
inside functions and under TYPE_CHECKING): no module reaches itself through its imports, and
imports point downward through the layers below.

A new top-level module goes into one of the layers; a new module inside a package (`store/`,
`channels/`, `api/`, `cli/`, `sources/`) takes its package's layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "switchboard"

# Bottom to top. A module may import its own layer and the layers below, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        # values and pure decisions: no store, no network loop
        "core",
        (
            "switchboard",
            "switchboard.errors",
            "switchboard.envelope",
            "switchboard.config",
            "switchboard.egress",
            "switchboard.masking",
            "switchboard.audit",
            "switchboard.retention",
            "switchboard.metrics",
            "switchboard.tracing",
            "switchboard.crypto",
            "switchboard.pii",
            "switchboard.patterns",
            "switchboard.templates",
            "switchboard.retry",
            "switchboard.breaker",
            "switchboard.shared",
            "switchboard.people",
            "switchboard.signing",
            "switchboard.logs",
            "switchboard.messages",
            "switchboard.unsubscribe",
            "switchboard.engagement",
            "switchboard.records",
            "switchboard.resources",
            "switchboard.catalog",
            "switchboard.codegen",
            "switchboard.automations",
            "switchboard.automation_runs",
            "switchboard.client",
            "switchboard.sources",  # the verification presets (the package's __init__)
            "switchboard.sources.functions",
            "switchboard.sources.mappings",
            "switchboard.sources.cloudevents",
            "switchboard.sources.segment",
        ),
    ),
    ("store", ("switchboard.store",)),
    ("channels", ("switchboard.channels",)),
    (
        # the event's way through the hub: routing, ingest, delivery, replay, automations
        "engine",
        (
            "switchboard.registry",
            "switchboard.router",
            "switchboard.auth",
            "switchboard.gate",
            "switchboard.ingest",
            "switchboard.delivery_lanes",
            "switchboard.delivery_outcomes",
            "switchboard.delivery",
            "switchboard.replay",
            "switchboard.retention_job",
            "switchboard.alerts",
            "switchboard.automation_engine",
            "switchboard.automation_sim",
            "switchboard.sources.dedup",
            "switchboard.sources.leads",
            "switchboard.sources.replies",
        ),
    ),
    # the composition root, and what needs all of it
    ("hub", ("switchboard.hub", "switchboard.sources.inbound", "switchboard.subjects")),
    (
        "interfaces",
        (
            "switchboard.api",
            "switchboard.ui",
            "switchboard.server",
            "switchboard.supervisor",
            "switchboard.cli",
            "switchboard.__main__",
            "switchboard.codegen_cli",
        ),
    ),
]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The package's modules that module `name` imports anywhere in its source."""
    path, is_package = MODULES[name]
    here = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # `from switchboard.store import sqlite` imports a module, not a name
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(module: str) -> int | None:
    """The index of the layer naming the module or its nearest enclosing package."""
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, names) in enumerate(LAYERS):
        for prefix in names:
            inside = module.startswith(prefix + ".") and prefix != "switchboard"
            if (module == prefix or inside) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source() -> None:
    # the reader sees imports inside functions, under TYPE_CHECKING, and relative ones
    assert "switchboard.store.postgres" in GRAPH["switchboard.store.backends"]  # in a function
    assert "switchboard.channels.webhook" in GRAPH["switchboard.channels.slack"]
    assert "switchboard.records" in GRAPH["switchboard.store.deliveries"]
    assert "switchboard.hub" in GRAPH["switchboard.api"]


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others() -> None:
    circles = _cycles(GRAPH)
    described = [
        " ↔ ".join(c) + ": " + "; ".join(f"{m} → {sorted(GRAPH[m] & set(c))}" for m in c)
        for c in circles
    ]
    assert not circles, "import circles:\n" + "\n".join(described)


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"add these modules to a layer in {Path(__file__).name}: {missing}"


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("switchboard.store", "switchboard.channels"),
        ("switchboard.store", "switchboard.delivery"),
        ("switchboard.store", "switchboard.hub"),
        ("switchboard.store", "switchboard.api"),
        ("switchboard.channels", "switchboard.hub"),
        ("switchboard.replay", "switchboard.hub"),
        ("switchboard.records", "switchboard.store"),
    ],
)
def test_layers_are_ordered(lower: str, higher: str) -> None:
    low, high = _layer(lower), _layer(higher)
    assert low is not None and high is not None
    assert low < high


def test_imports_point_downward() -> None:
    upward = []
    for module, imported in sorted(GRAPH.items()):
        mine = _layer(module)
        for other in sorted(imported):
            theirs = _layer(other)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} ({LAYERS[mine][0]}) imports {other} ({LAYERS[theirs][0]})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)
