"""Automations: a tenant's document of steps (wait, wait_for, send, emit, if, digest) run per
trigger event or on a schedule.

This module is the pure part: it parses and validates a document (every problem names its path,
every tenant-supplied duration, pattern and template runs under the limits below) and compiles
the nested steps into a flat program of operations with jumps, so that a run's position is one
integer that stays meaningful for the version it pinned. The interpreter is
``automation_runs.py``; the store, the engine loop and the simulator drive it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter

from switchboard import patterns, templates
from switchboard.envelope import TYPE_GLOB_RE
from switchboard.people import PURPOSE_RE

# Limits on tenant input (docs/automations.md, "Limits"); each has an abuse test.
MAX_STEPS = 50  # operations in one document, counted over every nested branch
MAX_DEPTH = 4  # nesting of `if` inside `if`
MAX_DURATION_US = 366 * 86_400 * 1_000_000  # a wait, `within` or dedupe window: at most a year
MAX_DOCUMENT_BYTES = 65_536  # a document's JSON form
MAX_NESTING = 32  # objects and lists inside each other, anywhere in a document (patterns too)
MAX_MATCH_PATHS = 4  # correlation paths of one wait_for / cancel_on
MAX_CANCEL_ON = 8
MAX_TRIGGER_TYPES = 16
MAX_DIGEST_EVENTS = 1_000  # events one digest collects at most (`digest.max_events`)
DEFAULT_DIGEST_EVENTS = 100
MAX_DIGEST_BYTES = 262_144  # the collected events' JSON, at most (the rest are left out)
MAX_KEY_CHARS = 200  # a digest/debounce/dedupe key longer than this is kept as its SHA-256
MIN_SCHEDULE_INTERVAL_US = 5 * 60_000_000  # a schedule fires at most every 5 minutes
MAX_SCHEDULES = 20  # scheduled automations per tenant (checked when one is applied)
SCHEDULE_EVENT_TYPE = "switchboard.schedule"  # the event a schedule's fire stores (its trigger)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}(?!\n)$")
PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+){0,7}(?!\n)$")
_DURATION_RE = re.compile(
    r"^(?:(\d{1,6})w)?(?:(\d{1,6})d)?(?:(\d{1,7})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?(?!\n)$"
)
_UNIT_US = (7 * 86_400_000_000, 86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000)


def _too_deep(value: Any, limit: int) -> bool:
    """Is `value` nested more than `limit` levels (iteratively: no recursion to exhaust)?"""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


class AutomationError(ValueError):
    """A document is invalid; `problems` are ``{path, message}`` items (JSON-pointer paths)."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['path']}: {p['message']}" for p in problems))
        self.problems = problems


# -- the compiled program -------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    """Which events belong to a run: the same values at `paths` as the trigger has."""

    type: str
    paths: tuple[str, ...]
    filter: patterns.Pattern | None = None


@dataclass(frozen=True)
class Op:
    """One operation of the flat program. `id` is the step's id (or its path in the document)."""

    id: str
    kind: str  # wait | wait_for | send | emit | branch | jump | digest
    duration_us: int | None = None  # wait: a fixed delay
    until_path: str | None = None  # wait: a timestamp in the trigger
    awaited: Correlation | None = None  # wait_for
    within_us: int = 0  # wait_for
    on_event: str = "continue"  # wait_for: continue | stop
    on_timeout: str = "continue"  # wait_for: continue | stop
    destination: str | None = None  # send: a destination name of the tenant
    transform: str | None = None  # send: a Jinja2 template of the body, as a route's transform
    emit_type: str | None = None  # emit
    emit_data: str | None = None  # emit: a Jinja2 template whose output is the JSON data
    emit_subject: str | None = None  # emit: a Jinja2 template of the subject
    condition: patterns.Pattern | None = None  # branch: matched against {trigger, event, steps}
    target: int = 0  # branch: where `else` starts; jump: where to go
    path: str = ""  # where the step is in the document (JSON pointer), for error messages
    delivery_step: str | None = None  # wait_for a delivery status: the send step's id
    delivery_status: str | None = None  # … and the status (or a later one) it waits for
    key_path: str | None = None  # digest: the events of one value here are collected together
    max_events: int = 0  # digest: collected at most


@dataclass(frozen=True)
class Schedule:
    """`on: {schedule: "0 9 * * *", timezone: America/Sao_Paulo}`: cron in a time zone."""

    cron: str
    timezone: str = "UTC"

    def next_after(self, after_us: int) -> int:
        """The first fire time strictly after `after_us` (µs since the epoch)."""
        start = datetime.fromtimestamp(after_us / 1_000_000, tz=ZoneInfo(self.timezone))
        fire = croniter(self.cron, start).get_next(datetime)
        return int(fire.timestamp()) * 1_000_000


@dataclass(frozen=True)
class Debounce:
    """`debounce: {key, period, max_wait}`: one run per key after `period` without a new
    trigger, and at most `max_wait` after the first (so a steady stream cannot starve it)."""

    path: str | None
    period_us: int
    max_wait_us: int


@dataclass(frozen=True)
class Automation:
    name: str
    types: tuple[str, ...]
    filter: patterns.Pattern | None
    ops: tuple[Op, ...]
    cancel_on: tuple[Correlation, ...] = ()
    dedupe_path: str | None = None
    dedupe_window_us: int = 0
    version: int = 0
    schedule: Schedule | None = None
    debounce: Debounce | None = None
    requires_consent: tuple[str, ...] = ()  # purposes (issue 16: a withdrawal cancels runs)
    spec: dict[str, Any] = field(default_factory=dict, compare=False)

    def triggered_by(self, doc: dict[str, Any]) -> bool:
        """Does an event (its `match_doc()`) start a run of this automation?"""
        if not self.triggered_by_type(doc.get("type") or ""):
            return False
        return self.filter is None or patterns.match(self.filter, doc)

    def triggered_by_type(self, etype: str) -> bool:
        """Does an event of this type start a run, if it passes the filter?"""
        if etype.startswith("switchboard.") and not any(
            t.startswith("switchboard.") for t in self.types
        ):
            return False  # the hub's own events start only automations that name them
        return any(t == etype or fnmatch.fnmatchcase(etype, t) for t in self.types)

    def awaited(self) -> list[Correlation]:  # (delivery-status waits are polled, not woken)
        """Every correlation a run of this automation may wait on (for wake-ups at ingest)."""
        return [*self.cancel_on, *(op.awaited for op in self.ops if op.awaited is not None)]

    def destinations(self) -> set[str]:
        return {op.destination for op in self.ops if op.destination}

    @cached_property
    def reads_trigger(self) -> bool:
        """Whether advancing a run may read its trigger event. Only a program of fixed `wait`s,
        `send`s and jumps, without `cancel_on`, never does (a send's transform is the delivery
        worker's); every other step, and any kind added later, counts as reading it, so the
        engine loads and decodes the trigger only for runs that need it."""
        return bool(self.cancel_on) or any(
            not (op.kind in ("send", "jump") or (op.kind == "wait" and op.until_path is None))
            for op in self.ops
        )

    @cached_property
    def keeps_wait_rows(self) -> bool:
        """Whether a run may have rows in automation_waits or automation_digest_items (for
        cancel_on, a wait_for, a digest): only then does its save delete them."""
        return (
            bool(self.cancel_on)
            or self.digest is not None
            or any(op.awaited is not None for op in self.ops)
        )

    @cached_property
    def holds_key(self) -> bool:
        """Whether a run may hold its key (`hold:…`, a digest's or debounce's) until released:
        only then may its save have a key to let go of."""
        return self.digest is not None or self.debounce is not None

    @property
    def digest(self) -> Op | None:
        """The digest step, when the document starts with one."""
        return self.ops[0] if self.ops and self.ops[0].kind == "digest" else None


# -- values ---------------------------------------------------------------------------------


def parse_duration(value: Any) -> int:
    """`90s`, `30m`, `2h`, `1d`, `1w`, `1h30m` (or a number of seconds) → microseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration such as '2h', '30m' or '1d12h'")
    if isinstance(value, int | float):
        if not 0 < value <= MAX_DURATION_US / 1_000_000:
            raise ValueError("a positive number of seconds, at most a year")
        return int(value * 1_000_000)
    m = _DURATION_RE.match(value) if isinstance(value, str) and value else None
    if m is None or not any(m.groups()):
        raise ValueError("a duration such as '2h', '30m' or '1d12h'")
    us = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_US, strict=True) if g)
    if us <= 0:
        raise ValueError("must be longer than zero")
    if us > MAX_DURATION_US:
        raise ValueError("must be at most a year (366d)")
    return us


def format_duration(us: int) -> str:
    """Microseconds → `2h00m`, `1d02h00m`, `45s` (the simulator's timeline)."""
    seconds = us // 1_000_000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h{minutes:02d}m" if hours or minutes or days else f"{secs}s"
    if secs and (hours or minutes or days):
        text += f"{secs:02d}s"
    return f"{days}d{text}" if days else text


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path of a document, or None."""
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def hold_key(doc: dict[str, Any], path: str | None) -> str | None:
    """The text of the value at `path` that a digest, debounce or dedupe groups by (`*` without
    a path; None when the value is missing or not a scalar). A long value is kept as its
    SHA-256, so a tenant's data cannot make index rows of any size."""
    if path is None:
        return "*"
    value = lookup(doc, path)
    if value is None or isinstance(value, dict | list):
        return None
    text = orjson.dumps(value).decode()
    if len(text) > MAX_KEY_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def correlation_key(doc: dict[str, Any], paths: tuple[str, ...]) -> str | None:
    """The canonical text of the values at `paths` (None when one is missing): a wait is found
    by (tenant, type, this key)."""
    values = [lookup(doc, p) for p in paths]
    if any(v is None or isinstance(v, dict | list) for v in values):
        return None
    return orjson.dumps(values).decode()


def _purposes(raw: Any, p: _Parser) -> tuple[str, ...]:
    """`requires_consent: [marketing]`: consent purposes (lowercase words), at most 8."""
    if not isinstance(raw, list) or len(raw) > 8:
        p.fail("/requires_consent", "a list of at most 8 consent purposes such as 'marketing'")
        return ()
    for i, purpose in enumerate(raw):
        if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
            p.fail(f"/requires_consent/{i}", "a consent purpose: a lowercase word")
    return tuple(dict.fromkeys(x for x in raw if isinstance(x, str)))


# -- parsing --------------------------------------------------------------------------------

# a delivery "reached" a status when its status is that one or a later one of the same line
DELIVERY_STATUSES = {
    "succeeded": ("succeeded", "delivered", "read"),  # the destination accepted it
    "delivered": ("delivered", "read"),  # the provider reported it delivered (WhatsApp)
    "read": ("read",),  # the provider reported it read
    "dead": ("dead",),  # every retry failed
}
_TOP = {
    "name",
    "on",
    "filter",
    "steps",
    "cancel_on",
    "dedupe",
    "debounce",
    "requires_consent",
    "description",
    "enabled",
}
_STEP_KINDS = ("wait", "wait_for", "send", "emit", "if", "digest")


def parse_schedule(value: dict[str, Any]) -> Schedule:
    """`{schedule, timezone}` → a Schedule; ValueError (path, message) when it is not usable."""
    for key in value:
        if key not in ("schedule", "timezone"):
            raise _PathError(f"/on/{key}", "unknown field (a schedule has schedule, timezone)")
    cron = value.get("schedule")
    if not isinstance(cron, str) or len(cron) > 100 or len(cron.split()) != 5:
        raise _PathError("/on/schedule", "a cron expression of 5 fields, such as '0 9 * * *'")
    if not croniter.is_valid(cron):
        raise _PathError("/on/schedule", f"not a valid cron expression: {cron!r}")
    tz = value.get("timezone", "UTC")
    try:
        if not isinstance(tz, str) or not tz or len(tz) > 64:
            raise ZoneInfoNotFoundError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise _PathError(
            "/on/timezone", f"an IANA time zone such as America/Sao_Paulo, got {tz!r}"
        ) from None
    schedule = Schedule(" ".join(cron.split()), tz)
    # the shortest gap between fires: over two days of fires (the pattern of minutes and hours
    # repeats daily; days of the month and week only make gaps longer)
    at = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000
    end = at + 2 * 86_400_000_000
    fire = schedule.next_after(at)
    while fire < end:
        following = schedule.next_after(fire)
        if following - fire < MIN_SCHEDULE_INTERVAL_US:
            raise _PathError(
                "/on/schedule",
                f"fires more often than every {MIN_SCHEDULE_INTERVAL_US // 60_000_000} minutes",
            )
        fire = following
    return schedule


class _PathError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Parser:
    def __init__(self) -> None:
        self.problems: list[dict[str, str]] = []
        self.ops: list[Op] = []
        self.ids: set[str] = set()

    def fail(self, path: str, message: str) -> None:
        self.problems.append({"path": path, "message": message})

    def pattern(self, value: Any, path: str) -> patterns.Pattern | None:
        if not isinstance(value, dict):
            self.fail(path, "must be a filter pattern (an object)")
            return None
        try:
            return patterns.compile_pattern(value)
        except patterns.PatternError as exc:
            self.fail(path, f"invalid pattern: {exc}")
        except RecursionError:
            self.fail(path, "the pattern is nested too deeply")
        return None

    def template(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(path, "must be a Jinja2 template (a string)")
            return None
        try:
            templates.check(value)
        except templates.TemplateProblem as exc:
            self.fail(path, str(exc))
            return None
        return value

    def duration(self, value: Any, path: str) -> int:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return 0

    def dotted(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not PATH_RE.match(value):
            self.fail(path, "must be a dotted path such as 'data.service_id' or 'subject'")
            return None
        return value

    def event_type(self, value: Any, path: str, *, glob: bool) -> str | None:
        ok = isinstance(value, str) and TYPE_GLOB_RE.fullmatch(value)
        if ok and not glob and ("*" in value or "?" in value):
            ok = False
        if not ok:
            kind = "an event type or a glob of one" if glob else "an event type (no globs)"
            self.fail(path, f"must be {kind}, got {value!r}")
            return None
        return str(value)

    def correlation(self, value: Any, path: str, *, with_filter: bool) -> Correlation | None:
        if not isinstance(value, dict):
            self.fail(path, "must be an object with 'type' and 'match'")
            return None
        allowed = {"type", "match", "filter", "within"} if with_filter else {"type", "match"}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}/{key}", "unknown field")
        etype = self.event_type(value.get("type"), f"{path}/type", glob=False)
        raw = value.get("match", [])
        raw = [raw] if isinstance(raw, str) else raw
        paths: list[str] = []
        if not isinstance(raw, list) or len(raw) > MAX_MATCH_PATHS:
            self.fail(f"{path}/match", f"a dotted path or a list of at most {MAX_MATCH_PATHS}")
        else:
            for i, p in enumerate(raw):
                if (d := self.dotted(p, f"{path}/match/{i}")) is not None:
                    paths.append(d)
        flt = None
        if with_filter and value.get("filter") is not None:
            flt = self.pattern(value["filter"], f"{path}/filter")
        return Correlation(etype, tuple(paths), flt) if etype else None

    def step_id(self, step: dict[str, Any], path: str) -> str:
        sid = step.get("id")
        if sid is None:
            return path.lstrip("/").replace("/", ".")
        if not isinstance(sid, str) or not NAME_RE.match(sid):
            self.fail(f"{path}/id", "a short lowercase name (letters, digits, '_', '-', '.')")
            return path
        if sid in self.ids:
            self.fail(f"{path}/id", f"the id {sid!r} is used twice")
        self.ids.add(sid)
        return sid

    def steps(self, value: Any, path: str, depth: int) -> None:
        if not isinstance(value, list) or (depth == 0 and not value):
            self.fail(path, "must be a non-empty list of steps")
            return
        if depth > MAX_DEPTH:
            self.fail(path, f"steps are nested more than {MAX_DEPTH} levels deep")
            return
        for i, step in enumerate(value):
            if len(self.ops) > MAX_STEPS:
                self.fail(path, f"more than {MAX_STEPS} steps in one automation")
                return
            self.step(step, f"{path}/{i}", depth)

    def step(self, step: Any, path: str, depth: int) -> None:
        if not isinstance(step, dict):
            self.fail(path, "a step must be an object")
            return
        kinds = [k for k in _STEP_KINDS if k in step]
        if len(kinds) != 1:
            self.fail(path, f"a step has exactly one of {', '.join(_STEP_KINDS)}")
            return
        kind = kinds[0]
        extra = {"wait_for": {"on_event", "on_timeout"}, "if": {"then", "else"}}.get(kind, set())
        for key in step:
            if key not in {kind, "id", *extra}:
                self.fail(f"{path}/{key}", f"unknown field of a {kind} step")
        sid = self.step_id(step, path)
        body = step[kind]
        where = f"{path}/{kind}"
        if kind == "wait":
            if isinstance(body, dict):
                for key in body:
                    if key != "until":
                        self.fail(f"{where}/{key}", "unknown field (a wait has 'until')")
                until = self.dotted(body.get("until"), f"{where}/until")
                self.ops.append(Op(sid, "wait", until_path=until))
            else:
                self.ops.append(Op(sid, "wait", duration_us=self.duration(body, where)))
        elif kind == "wait_for":
            corr, delivery_step, delivery_status = None, None, None
            if isinstance(body, dict) and "delivery" in body:
                delivery_step, delivery_status = self.delivery_wait(body, where)
            else:
                corr = self.correlation(body, where, with_filter=True)
            within = (
                self.duration(body.get("within"), f"{where}/within")
                if isinstance(body, dict)
                else 0
            )
            outcome = {}
            for key in ("on_event", "on_timeout"):
                outcome[key] = step.get(key, "continue")
                if outcome[key] not in ("continue", "stop"):
                    self.fail(f"{path}/{key}", "continue or stop")
            self.ops.append(
                Op(
                    sid,
                    "wait_for",
                    awaited=corr,
                    within_us=within,
                    delivery_step=delivery_step,
                    delivery_status=delivery_status,
                    **outcome,
                )
            )
        elif kind == "send":
            self.send(body, where, sid)
        elif kind == "emit":
            self.emit(body, where, sid)
        elif kind == "digest":
            self.digest(body, where, sid)
        else:
            self.branch(step, path, sid, depth)

    def digest(self, body: Any, where: str, sid: str) -> None:
        """`digest: {key, window, max_events}`: only as the first step (the events it collects
        are those that would have started a run)."""
        if where != "/steps/0/digest":
            self.fail(where, "a digest must be the first step of the automation")
        if not isinstance(body, dict):
            self.fail(where, "must be an object with 'window' (and 'key', 'max_events')")
            return
        for key in body:
            if key not in ("key", "window", "max_events"):
                self.fail(f"{where}/{key}", "unknown field (a digest has key, window, max_events)")
        key_path = None
        if body.get("key") is not None:
            key_path = self.dotted(body["key"], f"{where}/key")
        window = self.duration(body.get("window"), f"{where}/window")
        limit = body.get("max_events", DEFAULT_DIGEST_EVENTS)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_DIGEST_EVENTS
        ):
            self.fail(f"{where}/max_events", f"a whole number from 1 to {MAX_DIGEST_EVENTS}")
            limit = DEFAULT_DIGEST_EVENTS
        self.ops.append(
            Op(sid, "digest", duration_us=window, key_path=key_path, max_events=limit, path=where)
        )

    def delivery_wait(self, body: dict[str, Any], where: str) -> tuple[str | None, str | None]:
        """`{delivery: <send step id>, status: read, within: 4h}`: the step's delivery status."""
        for key in body:
            if key not in ("delivery", "status", "within"):
                self.fail(f"{where}/{key}", "unknown field (delivery, status, within)")
        step = body.get("delivery")
        sends = {op.id for op in self.ops if op.kind == "send"}
        if step not in sends:
            self.fail(f"{where}/delivery", "the id of an earlier send step")
            step = None
        status = body.get("status")
        if status not in DELIVERY_STATUSES:
            self.fail(f"{where}/status", f"one of {', '.join(DELIVERY_STATUSES)}")
            status = None
        return step, status

    def send(self, body: Any, where: str, sid: str) -> None:
        if not isinstance(body, dict):
            self.fail(where, "must be an object with 'destination'")
            return
        for key in body:
            if key not in ("destination", "transform"):
                self.fail(f"{where}/{key}", "unknown field (a send has destination, transform)")
        dest = body.get("destination")
        if not isinstance(dest, str) or not dest:
            self.fail(f"{where}/destination", "required: a destination name of this tenant")
            dest = None
        transform = None
        if body.get("transform") is not None:
            transform = self.template(body["transform"], f"{where}/transform")
        self.ops.append(Op(sid, "send", destination=dest, transform=transform, path=where))

    def emit(self, body: Any, where: str, sid: str) -> None:
        if not isinstance(body, dict):
            self.fail(where, "must be an object with 'type'")
            return
        for key in body:
            if key not in ("type", "data", "subject"):
                self.fail(f"{where}/{key}", "unknown field (an emit has type, data, subject)")
        etype = self.event_type(body.get("type"), f"{where}/type", glob=False)
        data = body.get("data", "{{ data | tojson }}")
        if isinstance(data, dict):  # a literal object: its JSON is the template
            data = orjson.dumps(data).decode()
        data = self.template(data, f"{where}/data")
        subject = None
        if body.get("subject") is not None:
            subject = self.template(body["subject"], f"{where}/subject")
        self.ops.append(Op(sid, "emit", emit_type=etype, emit_data=data, emit_subject=subject))

    def branch(self, step: dict[str, Any], path: str, sid: str, depth: int) -> None:
        condition = self.pattern(step["if"], f"{path}/if")
        at = len(self.ops)
        self.ops.append(Op(sid, "branch", condition=condition))
        self.steps(step.get("then", []), f"{path}/then", depth + 1)
        jump_at = None
        if step.get("else"):
            jump_at = len(self.ops)
            self.ops.append(Op(f"{sid}.end", "jump"))
        else_at = len(self.ops)
        if step.get("else"):
            self.steps(step["else"], f"{path}/else", depth + 1)
        self.ops[at] = Op(sid, "branch", condition=condition, target=else_at)
        if jump_at is not None:
            self.ops[jump_at] = Op(f"{sid}.end", "jump", target=len(self.ops))


def from_yaml(doc: Any) -> Any:
    """A document as YAML 1.1 loaded it, with `on:` back as a key (PyYAML reads a bare `on`
    as the boolean true)."""
    if isinstance(doc, dict) and True in doc and "on" not in doc:
        doc = {("on" if k is True else k): v for k, v in doc.items()}
    return doc


def parse_automation(spec: Any, *, name: str | None = None, version: int = 0) -> Automation:
    """Validate a document (the parsed YAML/JSON) and compile it; AutomationError lists every
    problem with its path. `name`, when given (the URL's), must agree with the document's."""
    if not isinstance(spec, dict):
        raise AutomationError([{"path": "/", "message": "an automation is an object"}])
    try:
        size = len(orjson.dumps(spec))
    except TypeError:
        raise AutomationError([{"path": "/", "message": "keys must be strings"}]) from None
    if size > MAX_DOCUMENT_BYTES:
        raise AutomationError(
            [{"path": "/", "message": f"the document is over {MAX_DOCUMENT_BYTES} bytes"}]
        )
    if _too_deep(spec, MAX_NESTING):
        raise AutomationError(
            [{"path": "/", "message": f"the document is nested more than {MAX_NESTING} levels"}]
        )
    p = _Parser()
    for key in spec:
        if key not in _TOP:
            p.fail(f"/{key}", "unknown field")
    doc_name = spec.get("name", name)
    if not isinstance(doc_name, str) or not NAME_RE.match(doc_name):
        p.fail("/name", "required: lowercase letters, digits, '_', '-', '.' (at most 63)")
    elif name is not None and doc_name != name:
        p.fail("/name", f"the document is named {doc_name!r}, the URL {name!r}")
    on = spec.get("on")
    types: list[str] = []
    schedule = None
    if isinstance(on, dict) and "schedule" in on:
        try:
            schedule = parse_schedule(on)
        except _PathError as exc:
            p.fail(exc.path, exc.message)
    else:
        raw = [on] if isinstance(on, str) else on
        if not isinstance(raw, list) or not raw or len(raw) > MAX_TRIGGER_TYPES:
            p.fail(
                "/on", f"required: an event type, a glob, or a list of at most {MAX_TRIGGER_TYPES}"
            )
        else:
            for i, t in enumerate(raw):
                if (ok := p.event_type(t, f"/on/{i}", glob=True)) is not None:
                    types.append(ok)
    flt = p.pattern(spec["filter"], "/filter") if spec.get("filter") is not None else None
    p.steps(spec.get("steps"), "/steps", 0)
    if len(p.ops) > MAX_STEPS:
        p.fail("/steps", f"more than {MAX_STEPS} steps in one automation")
    cancel: list[Correlation] = []
    raw_cancel = spec.get("cancel_on", [])
    if not isinstance(raw_cancel, list) or len(raw_cancel) > MAX_CANCEL_ON:
        p.fail("/cancel_on", f"a list of at most {MAX_CANCEL_ON} {{type, match}} objects")
    else:
        for i, c in enumerate(raw_cancel):
            corr = p.correlation(c, f"/cancel_on/{i}", with_filter=False)
            if corr is not None and not corr.paths:
                p.fail(f"/cancel_on/{i}/match", "required: which values tie the event to a run")
            elif corr is not None:
                cancel.append(corr)
    dedupe_path, window = None, 0
    if spec.get("dedupe") is not None:
        d = spec["dedupe"]
        if not isinstance(d, dict):
            p.fail("/dedupe", "an object with 'key' and 'window'")
        else:
            for key in d:
                if key not in ("key", "window"):
                    p.fail(f"/dedupe/{key}", "unknown field")
            dedupe_path = p.dotted(d.get("key"), "/dedupe/key")
            window = p.duration(d.get("window"), "/dedupe/window")
    debounce = None
    if spec.get("debounce") is not None:
        debounce = _debounce(p, spec["debounce"])
    starts_with_digest = bool(p.ops) and p.ops[0].kind == "digest"
    held = [
        name
        for name, present in (
            ("dedupe", spec.get("dedupe") is not None),
            ("debounce", debounce is not None),
            ("digest", starts_with_digest),
            ("schedule", schedule is not None),
        )
        if present
    ]
    if len(held) > 1:
        p.fail("/", f"{' and '.join(held)} cannot be combined in one automation")
    consent = _purposes(spec.get("requires_consent", []), p)
    if p.problems:
        raise AutomationError(p.problems)
    return Automation(
        name=str(doc_name),
        types=tuple(types),
        filter=flt,
        ops=tuple(p.ops),
        cancel_on=tuple(cancel),
        dedupe_path=dedupe_path,
        dedupe_window_us=window,
        version=version,
        spec=spec,
        schedule=schedule,
        debounce=debounce,
        requires_consent=tuple(consent),
    )


def _debounce(p: _Parser, d: Any) -> Debounce | None:
    if not isinstance(d, dict):
        p.fail("/debounce", "an object with 'period' (and 'key', 'max_wait')")
        return None
    for key in d:
        if key not in ("key", "period", "max_wait"):
            p.fail(f"/debounce/{key}", "unknown field (key, period, max_wait)")
    path = p.dotted(d["key"], "/debounce/key") if d.get("key") is not None else None
    period = p.duration(d.get("period"), "/debounce/period")
    if d.get("max_wait") is None:
        max_wait = min(period * 10, MAX_DURATION_US)
    else:
        max_wait = p.duration(d["max_wait"], "/debounce/max_wait")
        if period and max_wait and max_wait < period:
            p.fail("/debounce/max_wait", "must be at least the period")
    return Debounce(path, period, max_wait)
