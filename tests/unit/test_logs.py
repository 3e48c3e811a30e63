"""The JSON log writer: every record becomes one JSON line, in order, secrets masked."""

from __future__ import annotations

import io
import logging
import queue
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given
from hypothesis import strategies as st

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
