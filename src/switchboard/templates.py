"""Message templates: Jinja2 in a sandbox, with the event in scope, under a budget.

Names available in a template: ``event`` (the public JSON of the event), ``data`` (its payload),
``subject``, ``type``, ``time``, and ``recipient`` and ``unsubscribe_url`` when the recipient
layer adds them to a delivery. Templates are compiled once and cached.

A template is tenant code, so every render runs under a budget (docs/security.md, "Templates"):

- **time**: every loop iteration, call, filter and intercepted operator checks a deadline
  (``Budget.timeout``). Jinja compiles templates to Python, so this is cooperative and exact
  enough: nothing a template can write runs long between two checks except a single built-in
  call, and those are bounded by the next point.
- **size**: the output is capped (``Budget.max_output`` characters, counted over ``generate()``
  chunks), and every step that could build a big value in one go is checked *before* it runs:
  ``*`` and ``+`` on strings and lists, ``**`` on integers, ``%`` and ``format`` widths, the
  width and count arguments of ``center``/``indent``/``wordwrap``/``truncate``/``batch``/``slice``
  and of ``ljust``/``rjust``/``zfill``/``expandtabs``, ``replace`` and ``join``; ``~`` and the
  result of every call are checked after (one step can then overshoot by at most 2×).
- **place**: ``Renderer`` runs renders in a small thread pool, never on the event loop that
  serves ingest. A thread cannot be killed, but it does not need to be: the budget stops the
  render itself. We chose threads over a process pool because a typical render takes tens of
  microseconds and a process round trip (pickling the event both ways) costs ten times that on
  every templated delivery; the cooperative budget gives the same bound without it.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from jinja2 import Environment, TemplateError, Undefined, nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

T = TypeVar("T")

MAX_SOURCE = 32_768  # characters in one template's source


class TemplateProblem(ValueError):
    """A template failed to compile or render; the message says where."""


class OverBudget(TemplateProblem):
    """A render went over its time or size budget."""


@dataclass(frozen=True)
class Budget:
    """What one render may cost (settings SWITCHBOARD_TEMPLATE_MAX_OUTPUT / _TIMEOUT)."""

    max_output: int = 262_144  # characters of output, and of any one value built on the way
    timeout: float = 1.0  # seconds of work


class _Meter:
    """The budget of the render running on this thread."""

    __slots__ = ("budget", "deadline")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.deadline = time.monotonic() + budget.timeout

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(
                f"template over budget: the render took longer than {self.budget.timeout:g} s "
                "(SWITCHBOARD_TEMPLATE_TIMEOUT)"
            )

    def size(self, n: int, what: str) -> None:
        if n > self.budget.max_output:
            raise OverBudget(
                f"template over budget: {what} of {n} characters or items is over the limit of "
                f"{self.budget.max_output} (SWITCHBOARD_TEMPLATE_MAX_OUTPUT)"
            )


_local = threading.local()


def _meter() -> _Meter:
    meter: _Meter | None = getattr(_local, "meter", None)
    # outside a render (Jinja folds constants when it compiles): a fresh default budget
    return meter if meter is not None else _Meter(Budget())


class _metered:
    """Set the thread's meter for one render (nested renders keep the outer one)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.outer: _Meter | None = None

    def __enter__(self) -> _Meter:
        outer: _Meter | None = getattr(_local, "meter", None)
        self.outer = outer
        if outer is not None:
            return outer
        meter = _Meter(self.budget)
        _local.meter = meter
        return meter

    def __exit__(self, *exc: object) -> None:
        _local.meter = self.outer


# ---------------------------------------------------------------------------------------------
# Checks before a step that could build a big value in one go.

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_NESTED = re.compile(r"\{[^{}]*:[^{}]*\{")
_FORMAT_SPEC = re.compile(r"\{[^{}:]*:([^{}]*)\}")
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
_INT_BITS = 65_536  # an integer result may have at most this many bits (~20,000 digits)


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_widths(m: _Meter, values: Iterable[Any], what: str) -> None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            m.size(v, what)


def _check_format(m: _Meter, text: str) -> None:
    if _FORMAT_NESTED.search(text):
        raise OverBudget("template refused: a width from an argument ('{:{}}') is not allowed")
    for spec in _FORMAT_SPEC.finditer(text):
        for number in re.findall(r"\d+", spec[1]):
            m.size(int(number), "a format width")


def _check_printf(m: _Meter, text: str) -> None:
    for match in _PRINTF.finditer(text):
        for number in match.groups():
            if number == "*":
                raise OverBudget("template refused: '*' widths in % formats are not allowed")
            if number:
                m.size(int(number), "a format width")


def _check_replace(m: _Meter, s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        count = s.count(old) if old else len(s) + 1
        m.size(len(s) + count * max(0, len(new) - len(old)), "a replace result")


def _check_join(m: _Meter, sep: Any, items: Any) -> None:
    if isinstance(sep, str) and hasattr(items, "__len__"):
        m.size(len(items) * len(sep), "a join result")


def _check_binop(m: _Meter, operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _sized(seq) and isinstance(n, int):
                m.size(len(seq) * n, "a repeated string or list")
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and left.bit_length() + right.bit_length() > _INT_BITS:
            raise OverBudget("template over budget: a product of huge integers")
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
        if ints and right * left.bit_length() > _INT_BITS:
            raise OverBudget("template over budget: a power of over 65536 bits")
    elif operator == "+":
        if _sized(left) and _sized(right):
            m.size(len(left) + len(right), "a sum of strings or lists")
    elif operator == "%" and isinstance(left, str):
        _check_printf(m, left)


def _check_result(m: _Meter, value: Any) -> Any:
    if _sized(value):
        m.size(len(value), "a value")
    return value


def _guard_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that ticks the meter and checks its arguments and result."""

    @functools.wraps(f)  # keeps `jinja_pass_arg` (pass_context & co.) in __dict__
    def guarded(*args: Any, **kwargs: Any) -> Any:
        m = _meter()
        m.tick()
        # the leading arguments may be a context or environment; find the value after them
        plain = [a for a in args if not isinstance(a, Context | Environment | EvalContext)]
        if name in _WIDTH_FILTERS:
            _check_widths(m, [*plain[1:], *kwargs.values()], f"the {name} filter's argument")
        elif name == "replace" and len(plain) >= 3:
            _check_replace(m, str(plain[0]), plain[1], plain[2])
        elif name == "join" and plain:
            _check_join(m, plain[1] if len(plain) > 1 else kwargs.get("d", ""), plain[0])
        elif name == "format" and plain and isinstance(plain[0], str):
            _check_printf(m, plain[0])
        return _check_result(m, f(*args, **kwargs))

    return guarded


def _each(iterable: Iterable[T]) -> Iterator[T]:
    """Wraps the iterable of every `{% for %}`: one tick per iteration."""
    m = _meter()
    for item in iterable:
        m.tick()
        yield item


def _sized_concat(value: T) -> T:
    """Wraps every `~`: its result is checked (the operands were checked when built)."""
    return _check_result(_meter(), value)  # type: ignore[no-any-return]


class _Metering(NodeTransformer):
    """Rewrites a parsed template so loops and `~` go through the meter."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_sb_each", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "_sb_sized", [], [], None, None, lineno=node.lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with the budget wired into calls, operators, loops and filters."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters["tojson"] = _tojson
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_sb_each"] = _each
        self.filters["_sb_sized"] = _sized_concat
        for name in ("lipsum", "cycler", "joiner"):  # lipsum(n=10**9) builds text in one call
            self.globals.pop(name, None)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        return _Metering().visit(tree)  # type: ignore[no-any-return]

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # the sandbox hands `"…".format` out wrapped, so `call` never sees the string: check
        # its widths when the attribute is read
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str):
            _check_format(_meter(), owner)
        return super().wrap_str_format(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        m = _meter()
        m.tick()
        _check_binop(m, operator, left, right)
        return _check_result(m, super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        m = _meter()
        m.tick()
        owner = getattr(__obj, "__self__", None)
        method = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if method in _WIDTH_METHODS:
                _check_widths(m, [*args, *kwargs.values()], f"str.{method}'s argument")
            elif method == "replace" and len(args) >= 2:
                _check_replace(m, owner, args[0], args[1])
            elif method == "join" and args:
                _check_join(m, owner, args[0])
            elif method in ("format", "format_map"):
                _check_format(m, owner)
        return _check_result(m, super().call(__context, __obj, *args, **kwargs))


def _tojson(value: Any) -> str:
    return orjson.dumps(value).decode()


_LENIENT = _Sandbox(undefined=Undefined, autoescape=False)
_HTML = _Sandbox(undefined=Undefined, autoescape=True)


class _Forbidden(NodeTransformer):
    """Finds what a template may not use, to refuse it when it is saved."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            self.problems.append(f"line {node.lineno}: attribute {node.attr!r} is not allowed")
        elif isinstance(node, nodes.Include | nodes.Extends | nodes.Import | nodes.FromImport):
            self.problems.append(
                f"line {node.lineno}: include, extends and import are not available"
            )
        for child in node.iter_child_nodes():
            self.generic_visit(child)
        return node


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool) -> Any:
    try:
        return (_HTML if html else _LENIENT).from_string(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not compile: {exc}") from exc


def check(source: str) -> None:
    """Raise TemplateProblem if the template is too long, does not compile, or uses what the
    sandbox would refuse anyway (private attributes, include/extends/import)."""
    if len(source) > MAX_SOURCE:
        raise TemplateProblem(f"template of {len(source)} characters; at most {MAX_SOURCE}")
    _compile(source, False)
    finder = _Forbidden()
    finder.generic_visit(_LENIENT.parse(source))
    if finder.problems:
        raise TemplateProblem("template refused: " + "; ".join(finder.problems))


_LIFTED = ("recipient", "unsubscribe_url", "sms")  # what gate.py (and the SMS gateway) add


def scope(event: dict[str, Any]) -> dict[str, Any]:
    names = {
        "event": event,
        "data": event.get("data", {}),
        "subject": event.get("subject"),
        "type": event.get("type"),
        "time": event.get("time"),
    }
    # also at the top level, and only when present: absent, they stay undefined (render empty)
    names.update((k, event[k]) for k in _LIFTED if k in event)
    if "steps" in event:  # an automation's emit: the events its steps matched or collected
        names["steps"] = event["steps"]
    return names


def render(
    source: str, event: dict[str, Any], *, html: bool = False, budget: Budget | None = None
) -> str:
    """Render a template with the event in scope (HTML templates autoescape), under `budget`
    (or the budget of the render this one is part of, see `Renderer.run`)."""
    with _metered(budget or Budget()) as m:
        try:
            out: list[str] = []
            size = 0
            for chunk in _compile(source, html).generate(scope(event)):
                size += len(chunk)
                m.size(size, "the output")
                out.append(chunk)
            return "".join(out)
        except TemplateProblem:
            raise
        except Exception as exc:  # a template is user code: any error it raises is its own
            raise TemplateProblem(f"template failed: {type(exc).__name__}: {exc}") from exc


def render_json(source: str, event: dict[str, Any], *, budget: Budget | None = None) -> Any:
    """Render a transform template whose output must be JSON (a reshaped webhook body)."""
    text = render(source, event, budget=budget)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TemplateProblem(f"transform output is not JSON: {exc}") from exc


class Renderer:
    """Runs template work off the event loop, each call under one budget.

    Channels hand it the whole step that renders (``run(self.payload, config, out)``), so a
    delivery's several templates share one budget and one thread hop.
    """

    def __init__(self, budget: Budget | None = None, threads: int = 4) -> None:
        self.budget = budget or Budget()
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with _metered(self.budget):
            return fn(*args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a render thread under this renderer's budget."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="sb-template")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run, fn, args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
