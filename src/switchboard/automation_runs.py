"""A run of an automation, and the interpreter that advances it.

`advance(automation, run, now_us, env)` executes operations from the run's position until the run
must wait (a delay, an awaited event) or ends, and returns the changed run. Every effect goes
through `env` (look back over stored events, register a wait, create a delivery, emit an event),
so the engine (`automation_engine.py`, over the store) and the simulator (`automation_sim.py`,
in memory, on a fake clock) share this one implementation of the steps' semantics.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from switchboard import patterns, templates
from switchboard.automations import (
    DELIVERY_STATUSES,
    MAX_DURATION_US,
    Automation,
    Correlation,
    Op,
    correlation_key,
    hold_key,
    lookup,
)
from switchboard.envelope import EnvelopeError, parse_time

MAX_EMIT_DEPTH = 8  # an emitted event that starts a run that emits …: at most this many links
DELIVERY_POLL_US = 30_000_000  # a wait on a delivery's status looks again this often


class Status(StrEnum):
    RUNNING = "running"  # waiting for its next step (a delay, an event, or its turn)
    COMPLETED = "completed"  # every step ran
    STOPPED = "stopped"  # a wait_for's on_event/on_timeout said stop
    CANCELLED = "cancelled"  # a cancel_on event arrived, or POST /v1/runs/{id}/cancel
    FAILED = "failed"  # a step could not run (the reason says why)


class StepFailed(Exception):
    """A step cannot run; the run ends `failed` with this message as its reason."""


class Superseded(Exception):
    """The run changed in the store since it was claimed (a newer trigger of a debounce): this
    advance is dropped, and the run is looked at again when it is next due."""


class Run(msgspec.Struct, frozen=True):
    """A run as the engine and the simulator hold it; copies are made with `replace` (a
    msgspec Struct: building and copying one cost a fifth of a frozen dataclass's, and the
    engine makes two per fired timer)."""

    id: str
    tenant_id: str
    automation: str
    version: int
    trigger: dict[str, Any]  # the trigger event's match_doc()
    trigger_seq: int
    status: str = Status.RUNNING
    reason: str | None = None
    pc: int = 0  # the next operation of the pinned version's program
    until_us: int | None = None  # a `wait` in progress ends then
    deadline_us: int | None = None  # a `wait_for` in progress times out then
    matched: dict[str, Any] = msgspec.field(default_factory=dict)  # step id → event matched
    history: list[dict[str, Any]] = msgspec.field(default_factory=list)  # each step, when
    due_us: int | None = None  # when the engine must look at the run again (None: ended)
    rev: int = 0
    created_us: int = 0
    ended_us: int | None = None

    @property
    def ended(self) -> bool:
        return self.status != Status.RUNNING

    def state(self) -> dict[str, Any]:
        """What the store keeps in the run's `state` column."""
        return {
            "pc": self.pc,
            "until_us": self.until_us,
            "deadline_us": self.deadline_us,
            "matched": self.matched,
            "history": self.history,
        }


replace = msgspec.structs.replace  # a changed copy of a run (unknown fields: TypeError)
_RUNNING = Status.RUNNING  # an enum member read from the class costs more than a global
_COMPLETED = Status.COMPLETED


class TriggerNotLoaded(dict[str, Any]):
    """A run's `trigger` when the engine did not load it: its pinned version never reads the
    trigger (`Automation.reads_trigger`). Reading it anyway is a bug, and fails loudly rather
    than seeing an empty event."""

    def _refuse(self, *_: Any) -> Any:
        raise AssertionError("the run's trigger was not loaded (Automation.reads_trigger)")

    __getitem__ = __iter__ = __contains__ = get = keys = items = values = _refuse


NOT_LOADED: dict[str, Any] = TriggerNotLoaded()


def stored_run(
    run_id: str,
    tenant_id: str,
    automation: str,
    version: int,
    trigger: dict[str, Any],
    trigger_seq: int,
    status: str,
    reason: str | None,
    state: dict[str, Any],
    rev: int,
    due_us: int | None,
    created_us: int,
    ended_us: int | None,
) -> Run:
    """A run as the store keeps it (`state` its state column)."""
    get = state.get
    return Run(
        run_id, tenant_id, automation, version, trigger, trigger_seq, status, reason,
        get("pc", 0), get("until_us"), get("deadline_us"), get("matched", {}),
        get("history", []), due_us, rev, created_us, ended_us,
    )  # fmt: skip


class Env(Protocol):
    """The effects a run's steps have; the engine and the simulator implement it."""

    async def watch(self, run: Run, awaited: Correlation, key: str) -> None:
        """Register the run's wait for (tenant, type, key): an arriving event wakes the run."""

    async def find(self, run: Run, awaited: Correlation, key: str) -> dict[str, Any] | None:
        """The first stored event since the trigger of the awaited type whose values at the
        correlation paths give `key` (and that matches the filter), as its match_doc()."""

    async def send(self, run: Run, op: Op) -> str:
        """Create the delivery of a send step (idempotent per (run, step)); its id."""

    async def emit(self, run: Run, op: Op, event: dict[str, Any]) -> str:
        """Ingest an emitted event (idempotent: its id is deterministic); its id, or
        StepFailed when the catalog rejects it."""

    async def delivery_status(self, run: Run, delivery_id: str) -> str | None:
        """The status of one of the run's deliveries (None when there is none)."""

    async def release(self, run: Run) -> bool:
        """Let go of the run's digest or debounce key, so the next matching event starts a new
        run; False when the run changed since it was claimed (then nothing was released)."""

    async def digest(self, run: Run, op: Op) -> tuple[list[dict[str, Any]], bool]:
        """The events the run's digest collected, oldest first (id, type, subject, time, data),
        and whether some were left out by the limits."""


def with_trigger(run: Run, trigger: dict[str, Any]) -> Run:
    """The run with its trigger event loaded (its match_doc())."""
    return replace(run, trigger=trigger)


def effect_id(run_id: str, op_id: str, prefix: str) -> str:
    """A deterministic id for a step's effect, so a step run twice makes one effect."""
    digest = hashlib.sha256(f"{run_id}\x00{op_id}".encode()).hexdigest()[:32]
    return f"{prefix}_{digest}"


def _end(run: Run, status: Status, reason: str | None, now_us: int) -> Run:
    return replace(
        run,
        status=status,
        reason=reason,
        due_us=None,
        until_us=None,
        deadline_us=None,
        ended_us=now_us,
    )


def _log(run: Run, op: Op, now_us: int, **what: Any) -> list[dict[str, Any]]:
    return [*run.history, {"step": op.id, "kind": op.kind, "at_us": now_us, **what}]


def step_doc(run: Run) -> dict[str, Any]:
    """What an `if` pattern matches: the trigger, the last matched event, all matched events."""
    last = None
    for entry in reversed(run.history):
        if entry.get("matched"):
            last = run.matched.get(entry["step"])
            break
    return {"trigger": run.trigger, "event": last, "steps": run.matched}


def emitted_event(run: Run, op: Op) -> dict[str, Any]:
    """The envelope an emit step ingests: built from the trigger by the step's templates, with
    a deterministic id, the trigger as its cause and the trigger's trace."""
    scope = {**run.trigger, "steps": run.matched}
    try:
        data = templates.render_json(op.emit_data or "{}", scope)
        subject = (
            templates.render(op.emit_subject, scope)
            if op.emit_subject
            else run.trigger.get("subject")
        )
    except templates.TemplateProblem as exc:
        raise StepFailed(f"step {op.id}: {exc}") from exc
    if not isinstance(data, dict):
        raise StepFailed(f"step {op.id}: the data template must produce a JSON object")
    depth = int((run.trigger.get("context") or {}).get("automation_depth", 0)) + 1
    if depth > MAX_EMIT_DEPTH:
        raise StepFailed(
            f"step {op.id}: {depth} automations in a chain of emitted events "
            f"(the limit is {MAX_EMIT_DEPTH})"
        )
    event: dict[str, Any] = {
        "id": effect_id(run.id, op.id, "evt"),
        "type": op.emit_type,
        "data": data,
        "causation_id": run.trigger.get("id"),
        "trace_id": run.trigger.get("trace_id"),
        "correlation_id": run.trigger.get("correlation_id"),
        "actor": {"id": f"automation:{run.automation}", "type": "system"},
        "context": {"automation": run.automation, "run_id": run.id, "automation_depth": depth},
    }
    if subject:
        event["subject"] = str(subject)
    return event


async def check_cancel(automation: Automation, run: Run, now_us: int, env: Env) -> Run | None:
    """The run cancelled, if a cancel_on event has been stored since its trigger."""
    for corr in automation.cancel_on:
        key = correlation_key(run.trigger, corr.paths)
        if key is None:
            continue
        found = await env.find(run, corr, key)
        if found is not None:
            return _end(run, Status.CANCELLED, f"cancel_on {corr.type} {found.get('id')}", now_us)
    return None


async def advance(automation: Automation, run: Run, now_us: int, env: Env) -> Run:
    """Run operations from `run.pc` until the run waits or ends; the changed run."""
    if run.status != _RUNNING:
        return run
    # a debounce's quiet period is over (or max_wait reached): from now on a new trigger starts
    # a new run; if one arrived since the claim, it moved this run and the engine comes back
    debounced = automation.debounce is not None and run.pc == 0 and not run.history
    if debounced and not await env.release(run):
        return run
    if automation.cancel_on:
        cancelled = await check_cancel(automation, run, now_us, env)
        if cancelled is not None:
            return cancelled
    ops = automation.ops
    end = len(ops)
    for _ in range(end + 1):  # no backward jumps: each operation runs at most once
        if run.pc >= end:
            return _end(run, Status.COMPLETED, None, now_us)
        op = ops[run.pc]
        until = run.until_us
        if op.kind == "wait" and run.pc + 1 == end and until is not None and until <= now_us:
            # the last step is a wait whose time has come: the run completes, in one copy (the
            # commonest timer of all; the same outcome as the wait, then the end)
            return replace(
                run,
                pc=end,
                history=_log(run, op, now_us),
                status=_COMPLETED,
                reason=None,
                due_us=None,
                until_us=None,
                deadline_us=None,
                ended_us=now_us,
            )
        try:
            run = await _execute(op, run, now_us, env)
        except Superseded:
            return run
        except StepFailed as exc:
            return _end(
                replace(run, history=_log(run, op, now_us, error=str(exc))),
                Status.FAILED,
                str(exc),
                now_us,
            )
        if run.due_us is not None or run.status != _RUNNING:
            return run
    raise AssertionError("the program jumped backwards")


async def _execute(op: Op, run: Run, now_us: int, env: Env) -> Run:
    """One operation: the run moved past it (due_us None), waiting in it (due_us set), or
    ended. (A run's first operation after its claim still has the claim's due_us: each
    outcome sets it, and a wait, the commonest step, in the same copy.)"""
    if op.kind == "wait":
        until = run.until_us
        if until is None:
            until = _wait_until(op, run, now_us)
        if until > now_us:
            return replace(run, until_us=until, due_us=until)
        history = _log(run, op, now_us)
        return replace(run, until_us=None, pc=run.pc + 1, history=history, due_us=None)
    if run.due_us is not None:
        run = replace(run, due_us=None)
    if op.kind == "wait_for":
        return await _wait_for(op, run, now_us, env)
    if op.kind == "digest":
        return await _digest(op, run, now_us, env)
    if op.kind == "send":
        delivery = await env.send(run, op)
        history = _log(run, op, now_us, destination=op.destination, delivery_id=delivery)
        return replace(run, pc=run.pc + 1, history=history)
    if op.kind == "emit":
        event = emitted_event(run, op)
        event_id = await env.emit(run, op, event)
        history = _log(run, op, now_us, type=op.emit_type, event_id=event_id)
        return replace(run, pc=run.pc + 1, history=history)
    if op.kind == "branch":
        assert op.condition is not None
        taken = patterns.match(op.condition, step_doc(run))
        history = _log(run, op, now_us, branch="then" if taken else "else")
        return replace(run, pc=run.pc + 1 if taken else op.target, history=history)
    assert op.kind == "jump"
    return replace(run, pc=op.target)


async def _digest(op: Op, run: Run, now_us: int, env: Env) -> Run:
    """Collect for the window from the first event, then continue once with all of them."""
    if hold_key(run.trigger, op.key_path) is None:
        raise StepFailed(f"step {op.id}: the trigger has no value at {op.key_path} to group by")
    assert op.duration_us is not None
    until = run.until_us if run.until_us is not None else run.created_us + op.duration_us
    if until > now_us:
        return replace(run, until_us=until, due_us=until)
    if not await env.release(run):
        raise Superseded
    events, truncated = await env.digest(run, op)
    collected = {"count": len(events), "truncated": truncated, "events": events}
    history = _log(run, op, now_us, collected=len(events), truncated=truncated)
    return replace(
        run,
        until_us=None,
        pc=run.pc + 1,
        matched={**run.matched, op.id: collected},
        history=history,
    )


def _wait_until(op: Op, run: Run, now_us: int) -> int:
    if op.duration_us is not None:
        return now_us + op.duration_us
    assert op.until_path is not None
    raw = lookup(run.trigger, op.until_path)
    if raw is None:
        raise StepFailed(f"step {op.id}: the trigger has no {op.until_path}")
    try:
        until = parse_time(raw, op.until_path)
    except EnvelopeError as exc:
        raise StepFailed(f"step {op.id}: {op.until_path} {exc.errors[0]['message']}") from None
    if until - now_us > MAX_DURATION_US:
        raise StepFailed(f"step {op.id}: {op.until_path} is more than a year ahead")
    return until


async def _wait_for_delivery(op: Op, run: Run, now_us: int, env: Env) -> Run:
    assert op.delivery_step is not None and op.delivery_status is not None
    deadline = run.deadline_us if run.deadline_us is not None else now_us + op.within_us
    delivery_id = effect_id(run.id, op.delivery_step, "dlv")
    status = await env.delivery_status(run, delivery_id)
    if status in DELIVERY_STATUSES[op.delivery_status]:
        run = replace(
            run,
            deadline_us=None,
            history=_log(run, op, now_us, delivery_id=delivery_id, status=status),
        )
        if op.on_event == "stop":
            return _end(run, Status.STOPPED, f"delivery {op.delivery_step} is {status}", now_us)
        return replace(run, pc=run.pc + 1)
    if now_us >= deadline:
        run = replace(run, deadline_us=None, history=_log(run, op, now_us, timed_out=True))
        if op.on_timeout == "stop":
            return _end(
                run,
                Status.STOPPED,
                f"delivery {op.delivery_step} not {op.delivery_status} in the time allowed",
                now_us,
            )
        return replace(run, pc=run.pc + 1)
    # provider statuses do not wake runs: look again shortly (or at the deadline)
    return replace(run, deadline_us=deadline, due_us=min(deadline, now_us + DELIVERY_POLL_US))


async def _wait_for(op: Op, run: Run, now_us: int, env: Env) -> Run:
    if op.delivery_step is not None:
        return await _wait_for_delivery(op, run, now_us, env)
    awaited = op.awaited
    assert awaited is not None
    key = correlation_key(run.trigger, awaited.paths)
    if key is None:
        raise StepFailed(
            f"step {op.id}: the trigger has no value at {', '.join(awaited.paths)} to match"
        )
    deadline = run.deadline_us
    if deadline is None:
        # register first, then look back: an event stored after the look-back wakes the run
        deadline = now_us + op.within_us
        await env.watch(run, awaited, key)
    found = await env.find(run, awaited, key)
    if found is not None:
        run = replace(
            run,
            deadline_us=None,
            matched={**run.matched, op.id: found},
            history=_log(run, op, now_us, matched=found.get("id")),
        )
        if op.on_event == "stop":
            return _end(run, Status.STOPPED, f"{awaited.type} {found.get('id')} arrived", now_us)
        return replace(run, pc=run.pc + 1)
    if now_us >= deadline:
        run = replace(run, deadline_us=None, history=_log(run, op, now_us, timed_out=True))
        if op.on_timeout == "stop":
            return _end(run, Status.STOPPED, f"no {awaited.type} within the time allowed", now_us)
        return replace(run, pc=run.pc + 1)
    return replace(run, deadline_us=deadline, due_us=deadline)


def waiting_on(automation: Automation, run: Run) -> tuple[Correlation, str] | None:
    """The (correlation, key) of the wait_for the run is in, if any (its wait row)."""
    if run.ended or run.deadline_us is None or run.pc >= len(automation.ops):
        return None
    awaited = automation.ops[run.pc].awaited
    if awaited is None:
        return None
    key = correlation_key(run.trigger, awaited.paths)
    return (awaited, key) if key is not None else None
