"""The JSON log writer: every record becomes one JSON line, in order, secrets masked."""

from __future__ import annotations

import io
import logging
import queue
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard import logs
from switchboard.logs import _QueueHandler, _timestamp, _Writer


def test_records_become_json_lines_in_order_with_secrets_masked() -> None:
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    out = io.StringIO()
    writer = _Writer(records, out)
    logger = logging.getLogger("switchboard.test_logs")
    logger.propagate = False
    logger.handlers[:] = [_QueueHandler(records)]
    logger.setLevel(logging.INFO)
    try:
        writer.start()
        for n in range(2500):  # more than one batch
            logger.info("ingest", extra={"action": "ingest", "n": n, "api_key": "sb_live_x"})
        logger.debug("not at this level")
    finally:
        writer.stop()
        logger.handlers.clear()
    lines = out.getvalue().splitlines()
    docs = [orjson.loads(line) for line in lines]
    assert [d["n"] for d in docs] == list(range(2500))
    assert {d["api_key"] for d in docs} == {"***"}
    assert {(d["level"], d["msg"], d["action"]) for d in docs} == {("info", "ingest", "ingest")}
    assert not writer.is_alive()


def test_a_record_that_cannot_be_formatted_does_not_stop_logging() -> None:
    records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
    out = io.StringIO()
    writer = _Writer(records, out)
    writer.start()
    bad = logging.makeLogRecord({"msg": "%d", "args": ("not a number",)})
    records.put(bad)
    records.put(logging.makeLogRecord({"msg": "after"}))
    writer.stop()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["msg"] == "unformattable log record"
    assert lines[1]["msg"] == "after"


@given(st.floats(min_value=0, max_value=253_402_300_799, allow_nan=False))
def test_timestamps_match_isoformat_to_the_millisecond(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    # the float's own rounding may put the two a millisecond apart; never more
    got = datetime.fromisoformat(_timestamp(created))
    assert abs(got - datetime.fromisoformat(expected)) <= timedelta(milliseconds=1)
    assert len(_timestamp(created)) == len(expected)


def test_a_timestamp_in_its_second() -> None:
    assert _timestamp(1_795_479_579.8541) == "2026-11-24T00:19:39.854+00:00"
    assert _timestamp(1_795_479_580.0) == "2026-11-24T00:19:40.000+00:00"


def test_the_direct_lane_writes_the_line_the_logging_module_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records: queue.SimpleQueue[logging.LogRecord | logs.Fields | None] = queue.SimpleQueue()
    out = io.StringIO()
    writer = _Writer(records, out)
    handler = _QueueHandler(records)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])  # as setup() leaves it
    monkeypatch.setattr(root, "level", logging.INFO)
    monkeypatch.setattr(logs, "_LANE", (handler, records))
    logger = logging.getLogger("switchboard.test_lane")
    extra = {"action": "ingest", "tenant_id": "t1", "event_ids": ["e1", "e2"], "api_key": "sb_x"}
    quiet = logging.getLogger("switchboard.test_lane.quiet")
    quiet.setLevel(logging.WARNING)
    logs.info(logger, "ingested", extra)
    first = records.get()
    assert isinstance(first, logs.Fields)  # the direct lane: no LogRecord made
    records.put(first)
    writer.start()
    try:
        logger.info("ingested", extra=extra)  # the same through the logging module
        logs.info(quiet, "not at this level", extra)
    finally:
        writer.stop()
        quiet.setLevel(logging.NOTSET)
    direct, logged = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert direct.pop("ts")[:19] == logged.pop("ts")[:19]
    assert direct == logged
    assert direct == {
        "level": "info",
        "logger": "switchboard.test_lane",
        "msg": "ingested",
        "action": "ingest",
        "tenant_id": "t1",
        "event_ids": ["e1", "e2"],
        "api_key": "***",
    }


def test_the_direct_lane_steps_aside_for_any_other_handler_or_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records: queue.SimpleQueue[logging.LogRecord | logs.Fields | None] = queue.SimpleQueue()
    handler = _QueueHandler(records)
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    monkeypatch.setattr(logs, "_LANE", (handler, records))
    parent = logging.getLogger("switchboard.test_aside")
    logger = logging.getLogger("switchboard.test_aside.child")
    for configure in (
        lambda: monkeypatch.setattr(root, "handlers", [handler, Collect()]),  # e.g. caplog's
        lambda: monkeypatch.setattr(parent, "handlers", [Collect()]),
        lambda: monkeypatch.setattr(logger, "filters", [logging.Filter("other")]),
        lambda: monkeypatch.setattr(parent, "propagate", False),
    ):
        monkeypatch.setattr(root, "handlers", [handler])
        configure()
        logs.info(logger, "ingested", {"n": 1})
        monkeypatch.undo()
        monkeypatch.setattr(root, "level", logging.INFO)
        monkeypatch.setattr(logs, "_LANE", (handler, records))
    queued = []
    while not records.empty():
        queued.append(records.get())
    # never the direct lane: a LogRecord went through logging (to the queue, the collector, or
    # nowhere when filtered out or not propagated), never Fields
    assert not any(isinstance(r, logs.Fields) for r in queued)
    assert len(seen) == 2 and all(r.n == 1 for r in seen)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"action": "ingest", "tenant_id": "t1", "event_ids": ["é1"], "n": 2, "ok": None},
        {"ts": "mine", "level": "x", "action": "a"},  # a head field's name: overwritten in place
        {"when": datetime(2026, 1, 1, tzinfo=UTC)},  # not JSON: written as its str()
        {"_private": 1, "password": "p", "n": 1},
    ],
)
def test_a_direct_line_is_the_line_the_formatter_writes(extra: dict[str, object]) -> None:
    record = logging.makeLogRecord(
        {"name": "switchboard.x", "msg": "said", "levelname": "INFO", "created": 1.5, **extra}
    )
    fields = logs.Fields(1.5, "switchboard.x", "said", extra)
    expected = logs.JsonFormatter().format(record).encode() + b"\n"
    assert fields.line() == expected
