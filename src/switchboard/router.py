"""Routes × event → planned deliveries. The planning is pure; the cache around it reads the store.

A route names event type globs, sources, a filter pattern, destinations, a priority, an optional
transform (a Jinja2 template producing the webhook body) and an optional ordering key (a dotted
path into the event: deliveries that share a key reach a destination in order).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard import patterns, templates
from switchboard.envelope import Event
from switchboard.messages import NAME_RE
from switchboard.people import PURPOSE_RE, QuietHours, parse_quiet_hours
from switchboard.shared import SharedLoads

INTERNAL_PREFIX = "switchboard."  # the hub's own events (delivery_dead, …)
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
MAX_TYPE_GLOB = 200  # characters in one type glob, as long as an event type may be
_TTL = 1.0  # seconds a tenant's routes are cached; a route change reaches every node within it


@dataclass(frozen=True)
class Route:
    id: str
    tenant_id: str
    name: str
    types: tuple[str, ...] = ("*",)
    sources: tuple[str, ...] = ()
    filter: patterns.Pattern | None = None
    destinations: tuple[str, ...] = ()  # destination ids
    transform: str | None = None
    priority: int = 1
    ordering_key: str | None = None
    enabled: bool = True
    spec: dict[str, Any] = field(default_factory=dict)  # as submitted, for reading back
    requires_consent: tuple[str, ...] = ()  # purposes the event's subject must have granted
    preferences: bool = False  # the subject's preferences (topic x channel) may opt it out
    to_recipient: bool = False  # `to: recipient`: address the subject's profile contact point
    template: str | None = None  # a message template's name (messages.py), by channel and locale
    quiet_hours: QuietHours | None = None  # non-critical deliveries wait for the window's end

    @property
    def checks_people(self) -> bool:
        """The worker asks the recipient layer before sending (people.py)."""
        return (
            bool(self.requires_consent)
            or self.preferences
            or self.to_recipient
            or bool(self.template)
            or self.quiet_hours is not None
        )

    def matches(self, event: Event, doc: dict[str, Any] | None = None) -> bool:
        if not self.enabled:
            return False
        if event.type.startswith(INTERNAL_PREFIX) and not any(
            t.startswith(INTERNAL_PREFIX) for t in self.types
        ):
            return False  # internal events reach only routes that name them explicitly
        if not any(t == event.type or fnmatch.fnmatchcase(event.type, t) for t in self.types):
            return False
        if self.sources and event.source not in self.sources:
            return False
        if self.filter is not None:
            return patterns.match(self.filter, doc if doc is not None else event.match_doc())
        return True


@dataclass(frozen=True)
class Planned:
    """A delivery to create if (and only if) its event is stored."""

    destination_id: str
    route_id: str | None
    priority: int
    ordering_key: str | None


class RouteError(ValueError):
    """A route spec is invalid; `problems` name the fields."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def parse_route(
    spec: dict[str, Any],
    *,
    route_id: str,
    tenant_id: str,
    destination_ids: dict[str, str],
    stored: bool = False,
) -> Route:
    """Validate a route spec; `destination_ids` maps names (and ids) to ids for this tenant.

    `stored` is for a route read back from the store: it passed the size limits of patterns and
    templates when it was saved, and is not refused later because an operator lowered one.
    """
    problems: list[str] = []
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        problems.append("name: required, a string")
    types = spec.get("types", ["*"])
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        problems.append("types: a list of event type names or globs")
        types = []
    elif not stored:
        # globs run through fnmatch, whose regexes use atomic groups (Python 3.11+): no
        # backtracking blow-up, so only their size needs a bound
        limit = patterns.LIMITS.max_alternatives
        if len(types) > limit:
            problems.append(f"types: {len(types)} globs; at most {limit} (limit max_alternatives)")
        problems += [
            f"types[{i}]: {len(t)} characters; at most {MAX_TYPE_GLOB} (limit max_string)"
            for i, t in enumerate(types)
            if len(t) > MAX_TYPE_GLOB
        ]
    sources = spec.get("sources", [])
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        problems.append("sources: a list of source names")
        sources = []
    compiled = None
    if spec.get("filter") is not None:
        if not isinstance(spec["filter"], dict):
            problems.append("filter: must be a pattern object")
        else:
            try:
                compiled = patterns.compile_pattern(
                    spec["filter"], None if stored else patterns.LIMITS
                )
            except patterns.PatternError as exc:
                problems.append(f"filter.{exc}")
    dests = spec.get("destinations")
    if isinstance(dests, str):
        dests = [dests]
    ids: list[str] = []
    if not isinstance(dests, list) or not dests:
        problems.append("destinations: at least one destination name")
    else:
        for i, d in enumerate(dests):
            if not isinstance(d, str) or d not in destination_ids:
                problems.append(f"destinations[{i}]: no destination {d!r} in this tenant")
            else:
                ids.append(destination_ids[d])
    priority = spec.get("priority", "normal")
    if not isinstance(priority, str) or priority not in PRIORITIES:
        problems.append("priority: one of high, normal, low")
    transform = spec.get("transform")
    if transform is not None and not stored:
        try:
            templates.check(str(transform))
        except templates.TemplateProblem as exc:
            problems.append(f"transform: {exc}")
    ordering_key = spec.get("ordering_key")
    if ordering_key is not None and not isinstance(ordering_key, str):
        problems.append("ordering_key: a dotted path such as 'subject' or 'data.invoice_id'")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append("enabled: true or false")
    requires = spec.get("requires_consent", [])
    if isinstance(requires, str):
        requires = [requires]
    if (
        not isinstance(requires, list)
        or len(requires) > 10
        or not all(isinstance(p, str) and PURPOSE_RE.match(p) for p in requires)
    ):
        problems.append("requires_consent: a list of at most 10 purposes such as 'marketing'")
        requires = []
    to = spec.get("to")
    if to not in (None, "recipient"):
        problems.append("to: 'recipient' (the event subject's contact point), or absent")
    template = spec.get("template")
    if template is not None and (not isinstance(template, str) or not NAME_RE.match(template)):
        problems.append("template: the name of a message template such as 'client_welcome'")
    quiet = None
    if spec.get("quiet_hours") is not None:
        try:
            quiet = parse_quiet_hours(spec["quiet_hours"])
        except ValueError as exc:
            problems.append(f"quiet_hours: {exc}")
    prefs = spec.get("preferences", False)
    if not isinstance(prefs, bool):
        problems.append("preferences: true or false")
    if problems:
        raise RouteError(problems)
    return Route(
        id=route_id,
        tenant_id=tenant_id,
        name=str(name),
        types=tuple(types),
        sources=tuple(sources),
        filter=compiled,
        destinations=tuple(dict.fromkeys(ids)),
        transform=transform,
        priority=PRIORITIES[priority],
        ordering_key=ordering_key,
        enabled=enabled,
        spec=spec,
        requires_consent=tuple(dict.fromkeys(requires)),
        preferences=prefs,
        to_recipient=to == "recipient",
        template=template,
        quiet_hours=quiet,
    )


def plan(routes: list[Route], event: Event, only: set[str] | None = None) -> list[Planned]:
    """The deliveries an event makes: one per (route, destination), first route wins when two
    routes name the same destination. `only` restricts to some destination ids (replays)."""
    out: dict[str, Planned] = {}
    doc: dict[str, Any] | None = None
    for route in routes:
        if not route.enabled:
            continue
        if route.filter is not None and doc is None:
            doc = event.match_doc()
        if not route.matches(event, doc):
            continue
        key = None
        if route.ordering_key:
            value = lookup(doc if doc is not None else event.match_doc(), route.ordering_key)
            key = None if value is None else str(value)
        for dest in route.destinations:
            if (only is None or dest in only) and dest not in out:
                out[dest] = Planned(dest, route.id, route.priority, key)
    return list(out.values())


class RouteCache:
    """Each tenant's enabled routes, re-read at most every second."""

    def __init__(self, load: Callable[[str], Awaitable[list[Route]]]) -> None:
        self._load = load
        self._cache: dict[str, tuple[float, list[Route]]] = {}
        self._loads: SharedLoads[str, list[Route]] = SharedLoads()
        self._generation: dict[str, int] = {}  # bumped by `forget`

    def cached(self, tenant_id: str) -> list[Route] | None:
        """The tenant's routes if they are cached and fresh, without awaiting a load."""
        hit = self._cache.get(tenant_id)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    async def routes(self, tenant_id: str) -> list[Route]:
        now = time.monotonic()
        hit = self._cache.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation.get(tenant_id, 0)
        routes = await self._loads.get(tenant_id, lambda: self._load(tenant_id))
        if self._generation.get(tenant_id, 0) == generation:  # not forgotten meanwhile
            self._cache[tenant_id] = (now + _TTL, routes)
        return routes

    def forget(self, tenant_id: str) -> None:
        """Routes changed: the next caller loads them afresh, not from a load already running."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._cache.pop(tenant_id, None)
        self._loads.forget(tenant_id)
