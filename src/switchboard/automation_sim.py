"""The simulator behind `switchboard automations test`: runs automations over an event stream on a
fake clock, in memory, with the engine's own interpreter (`automation_runs.advance`), and writes
the timeline of what the hub would do ("+2h00m send wpp-feedback to patient-42 (feedback)").

A stream is JSON lines, one event each: the native envelope (`type`, `data`, `subject`, `id`, …)
plus `at`, an offset from the stream's start (`"+2h"`, `"+1d3h"`; default: the previous event's).
Scheduled automations fire from the stream's start until its last event.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchboard import patterns
from switchboard.automation_runs import Run, Status, advance, effect_id, replace
from switchboard.automations import (
    SCHEDULE_EVENT_TYPE,
    Automation,
    Correlation,
    Op,
    correlation_key,
    format_duration,
    parse_duration,
)
from switchboard.envelope import format_us
from switchboard.store.automations import dedupe_key, digest_docs, held_key

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: the stream's "+0"
HORIZON_US = 400 * 86_400_000_000  # after the last event, runs are followed this far at most
MAX_EVENTS = 10_000  # a stream (with emitted events) is cut at this many events


class StreamError(ValueError):
    """A line of the stream is not a usable event; the message names the line."""


@dataclass
class _SimEvent:
    seq: int
    at_us: int
    doc: dict[str, Any]


@dataclass
class Simulation:
    automations: list[Automation]
    events: list[_SimEvent] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    waits: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (type, key) → runs
    timeline: list[tuple[int, str]] = field(default_factory=list)
    now_us: int = START_US
    _due: list[tuple[int, int, str]] = field(default_factory=list)
    _tick: int = 0
    _ids: set[str] = field(default_factory=set)
    _deduped: set[tuple[str, str]] = field(default_factory=set)
    _sent: set[str] = field(default_factory=set)
    _holds: dict[tuple[str, str], str] = field(default_factory=dict)  # (automation, key) → run
    _items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # digest run → events

    # -- the interpreter's effects (automation_runs.Env) ------------------------------------

    async def watch(self, run: Run, awaited: Correlation, key: str) -> None:
        self.waits.setdefault((awaited.type, key), set()).add(run.id)

    async def find(self, run: Run, awaited: Correlation, key: str) -> dict[str, Any] | None:
        for e in self.events:
            if e.seq <= run.trigger_seq or e.doc.get("type") != awaited.type:
                continue
            if correlation_key(e.doc, awaited.paths) != key:
                continue
            if awaited.filter is None or patterns.match(awaited.filter, e.doc):
                return e.doc
        return None

    async def send(self, run: Run, op: Op) -> str:
        to = run.trigger.get("subject") or "-"
        self.say(f"send {op.destination} to {to} ({run.automation})")
        delivery_id = effect_id(run.id, op.id, "dlv")
        self._sent.add(delivery_id)
        return delivery_id

    async def emit(self, run: Run, op: Op, event: dict[str, Any]) -> str:
        self.say(f"emit {op.emit_type} for {event.get('subject') or '-'} ({run.automation})")
        self.add_event(event)
        return str(event["id"])

    async def delivery_status(self, run: Run, delivery_id: str) -> str | None:
        # no provider here: a sent message is accepted, and never reported delivered or read
        return "succeeded" if delivery_id in self._sent else None

    async def release(self, run: Run) -> bool:
        for hold in [k for k, v in self._holds.items() if v == run.id]:
            del self._holds[hold]
        return True

    async def digest(self, run: Run, op: Op) -> tuple[list[dict[str, Any]], bool]:
        events, truncated = digest_docs(self._items.get(run.id, []), op.max_events)
        who = run.trigger.get("subject") or "-"
        plural = "" if len(events) == 1 else "s"
        self.say(f"digest of {len(events)} event{plural} for {who} ({run.automation})")
        return events, truncated

    # -- the simulation ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.timeline.append((self.now_us, text))

    def _schedule(self, run: Run) -> None:
        self.runs[run.id] = run
        if run.due_us is not None:
            self._tick += 1
            heapq.heappush(self._due, (run.due_us, self._tick, run.id))

    def add_event(self, raw: dict[str, Any], only: Automation | None = None) -> None:
        """Store an event at the current time: it starts runs and wakes waiting ones (`only`:
        a schedule's event, which starts a run of its automation alone)."""
        if len(self.events) >= MAX_EVENTS:
            raise StreamError(f"more than {MAX_EVENTS} events (emitted ones included)")
        event_id = str(raw.get("id") or f"evt-{len(self.events) + 1}")
        if event_id in self._ids:
            self.say(f"duplicate {raw.get('type')} {event_id}: starts nothing")
            return
        self._ids.add(event_id)
        doc = {
            "id": event_id,
            "type": raw.get("type"),
            "source": raw.get("source", "simulator"),
            "subject": raw.get("subject"),
            "trace_id": raw.get("trace_id"),
            "correlation_id": raw.get("correlation_id"),
            "causation_id": raw.get("causation_id"),
            "actor": raw.get("actor") or {"id": None, "type": None},
            "context": raw.get("context") or {},
            "data": raw.get("data") or {},
        }
        seq = len(self.events) + 1
        self.events.append(_SimEvent(seq, self.now_us, doc))
        for auto in [only] if only is not None else self.automations:
            if only is None and not auto.triggered_by(doc):
                continue
            if self._joined(auto, doc, seq):
                continue
            if auto.dedupe_path is not None:
                key = dedupe_key(doc, auto.dedupe_path, auto.dedupe_window_us, self.now_us)
                if key is not None and (auto.name, key) in self._deduped:
                    self.say(f"dedupe: no new run of {auto.name} for {doc['subject'] or '-'}")
                    continue
                if key is not None:
                    self._deduped.add((auto.name, key))
            run = Run(
                id=f"run-{len(self.runs) + 1}",
                tenant_id="simulator",
                automation=auto.name,
                version=auto.version,
                trigger=doc,
                trigger_seq=seq,
                due_us=self.now_us + (auto.debounce.period_us if auto.debounce else 0),
                created_us=self.now_us,
            )
            held = self._held(auto, doc)
            if held is not None:
                self._holds[(auto.name, held)] = run.id
                if auto.digest is not None:
                    self._items[run.id] = [doc]
            for corr in auto.cancel_on:
                if (k := correlation_key(doc, corr.paths)) is not None:
                    self.waits.setdefault((corr.type, k), set()).add(run.id)
            self._schedule(run)
        for (etype, key), run_ids in self.waits.items():
            if etype != doc["type"]:
                continue
            for run_id in run_ids:
                run = self.runs[run_id]
                auto = self._automation(run)
                keys = {correlation_key(doc, c.paths) for c in auto.awaited() if c.type == etype}
                if key in keys and not run.ended:
                    self._schedule(replace(run, due_us=self.now_us))

    def _held(self, auto: Automation, doc: dict[str, Any]) -> str | None:
        if auto.digest is not None:
            return held_key(doc, auto.digest.key_path)
        if auto.debounce is not None:
            return held_key(doc, auto.debounce.path)
        return None

    def _joined(self, auto: Automation, doc: dict[str, Any], seq: int) -> bool:
        """The event joined an open digest, or moved a debouncing run (as the store does)."""
        held = self._held(auto, doc)
        run_id = self._holds.get((auto.name, held)) if held is not None else None
        if run_id is None or self.runs[run_id].ended:
            return False
        run = self.runs[run_id]
        who = doc.get("subject") or "-"
        if auto.digest is not None:
            items = self._items.setdefault(run_id, [])
            if len(items) <= auto.digest.max_events:
                items.append(doc)
            self.say(f"digest {auto.name}: {doc['type']} for {who} joins ({len(items)})")
        elif auto.debounce is not None:
            due = min(
                self.now_us + auto.debounce.period_us, run.created_us + auto.debounce.max_wait_us
            )
            self.say(f"debounce {auto.name}: {doc['type']} for {who} moves the run")
            self._schedule(replace(run, trigger=doc, trigger_seq=seq, due_us=due))
        return True

    def fire_schedules(self, from_us: int, until_us: int) -> list[tuple[int, Automation]]:
        """(time, automation) of each schedule fire in (from_us, until_us], in order."""
        fires: list[tuple[int, Automation]] = []
        for auto in self.automations:
            if auto.schedule is None:
                continue
            at = auto.schedule.next_after(from_us)
            while at <= until_us and len(fires) < MAX_EVENTS:
                fires.append((at, auto))
                at = auto.schedule.next_after(at)
        return sorted(fires, key=lambda f: f[0])

    def _automation(self, run: Run) -> Automation:
        return next(a for a in self.automations if a.name == run.automation)

    async def run_until(self, until_us: int) -> None:
        """Advance every run due up to `until_us`, moving the clock to each due time."""
        while self._due and self._due[0][0] <= until_us:
            due, _, run_id = heapq.heappop(self._due)
            run = self.runs[run_id]
            if run.ended or run.due_us != due:
                continue  # superseded by a later schedule of the same run
            self.now_us = max(self.now_us, due)
            advanced = await advance(self._automation(run), run, self.now_us, self)
            if advanced.ended:
                await self.release(advanced)
                self._report_end(advanced)
            self._schedule(advanced)

    def _report_end(self, run: Run) -> None:
        who = run.trigger.get("subject") or "-"
        if run.status == Status.COMPLETED:
            self.say(f"completed {run.automation} for {who}")
        else:
            self.say(f"{run.status} {run.automation} for {who}: {run.reason}")

    def lines(self) -> list[str]:
        return [f"+{format_duration(at - START_US)} {text}" for at, text in self.timeline]


def read_stream(text: str) -> list[tuple[int, dict[str, Any]]]:
    """(offset µs, event) of each non-empty line of a JSON-lines stream."""
    out: list[tuple[int, dict[str, Any]]] = []
    offset = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise StreamError(f"line {n}: not JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise StreamError(f"line {n}: an event object with a 'type'")
        at = raw.pop("at", None)
        if at is not None:
            try:
                text_at = str(at).lstrip("+")
                offset = 0 if text_at in ("0", "") else parse_duration(text_at)
            except ValueError as exc:
                raise StreamError(f"line {n}: at: {exc}") from None
        out.append((offset, raw))
        if len(out) > MAX_EVENTS:
            raise StreamError(f"more than {MAX_EVENTS} events")
    return sorted(out, key=lambda item: item[0])


async def simulate(
    automations: list[Automation], stream: list[tuple[int, dict[str, Any]]]
) -> Simulation:
    """Run the automations over the stream; the finished simulation (see `lines()`)."""
    sim = Simulation(automations)
    end = START_US + (stream[-1][0] if stream else 0)
    fires = sim.fire_schedules(START_US - 1, end)
    items: list[tuple[int, int, dict[str, Any], Automation | None]] = [
        (START_US + offset, 1, raw, None) for offset, raw in stream
    ]
    for at, auto in fires:
        assert auto.schedule is not None
        raw = {
            "id": f"sched-{auto.name}-{at}",
            "type": SCHEDULE_EVENT_TYPE,
            "subject": auto.name,
            "source": "switchboard",
            "data": {
                "automation": auto.name,
                "scheduled_at": format_us(at),
                "schedule": auto.schedule.cron,
                "timezone": auto.schedule.timezone,
            },
        }
        items.append((at, 0, raw, auto))
    items.sort(key=lambda item: (item[0], item[1]))
    for at, _, raw, only in items:
        await sim.run_until(at - 1)
        sim.now_us = at
        if only is not None:
            sim.say(f"schedule {only.name} fires")
        sim.add_event(raw, only)
        await sim.run_until(sim.now_us)
    last = sim.now_us
    await sim.run_until(last + HORIZON_US)
    return sim
