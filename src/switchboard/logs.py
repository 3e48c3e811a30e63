"""Structured logs: one JSON object per line, with the `extra` fields a call site passes."""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import sys
import threading
import time
from logging.handlers import QueueHandler
from typing import Any, NamedTuple, TextIO

import orjson

from switchboard.envelope import utc_second

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("secret", "password", "token", "authorization", "api_key")
_GATHER_SECONDS = 0.02  # how long the writer lets records gather before it formats them


@functools.lru_cache(maxsize=1024)  # extra field names repeat: decide once per name
def _secret(key: str) -> bool:
    lowered = key.lower()
    return any(w in lowered for w in _SECRET_WORDS)


# ".000+00:00" … ".999+00:00": an index instead of formatting an int with "03d" per line
_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))


def _timestamp(created: float) -> str:
    """`created` as ISO 8601 in UTC with milliseconds, e.g. 2026-11-24T00:19:39.854+00:00."""
    seconds = int(created)
    ms = int((created - seconds) * 1000)
    # (a fraction a hair under 1 can round up to 1000 ms once multiplied)
    return utc_second(seconds) + _MILLIS[ms if ms < 1000 else 999]


# the fields a line begins with: an extra field of one of these names goes the slow way, which
# overwrites the field in place (as JsonFormatter does), instead of being spliced in after it
_HEAD = frozenset({"ts", "level", "logger", "msg"})
_PLAIN: set[str] = set()  # extra field names known to be written as they are


def _plain(extra: dict[str, Any]) -> bool:
    """Whether every one of these extra fields is written as it is (none is a record attribute,
    private, masked as a secret, or one of the fields a line begins with). Call sites pass the
    same names on every line: those are known after the first, and checked in one step."""
    if _PLAIN.issuperset(extra):
        return True
    plain = [k for k in extra if not (k in _STANDARD or k in _HEAD or k[0] == "_" or _secret(k))]
    if len(_PLAIN) < 1024:
        _PLAIN.update(plain)
    return len(plain) == len(extra)


@functools.lru_cache(maxsize=256)
def _head(logger: str, msg: str) -> bytes:
    """The encoded `"level":"info","logger":…,"msg":…` of a logger's message (a call site logs
    the same one on every line)."""
    return b'","level":"info","logger":' + orjson.dumps(logger) + b',"msg":' + orjson.dumps(msg)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for key in fields:
            if key not in _STANDARD and key[0] != "_":
                out[key] = "***" if _secret(key) else fields[key]
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class Fields(NamedTuple):
    """An INFO line handed to the writer thread as its fields (`info`'s direct lane): the thread
    writes exactly what JsonFormatter would write for the record `logger.info` would make."""

    created: float
    logger: str
    msg: str
    extra: dict[str, Any]

    def line(self) -> bytes:
        """The JSON line, newline included, as bytes (what the writer writes)."""
        if not self.extra:
            extra = b"}\n"
        elif _plain(self.extra):
            # the usual case: the fields as they are, after the line's head, in one encoding
            extra = b"," + orjson.dumps(self.extra, default=str, option=_NEWLINE)[1:]
        else:
            out: dict[str, Any] = {
                "ts": _timestamp(self.created),
                "level": "info",
                "logger": self.logger,
                "msg": self.msg,
            }
            for key, value in self.extra.items():
                if key not in _STANDARD and key[0] != "_":
                    out[key] = "***" if _secret(key) else value
            return orjson.dumps(out, default=str, option=_NEWLINE)
        ts = _timestamp(self.created).encode()
        return b"".join((b'{"ts":"', ts, _head(self.logger, self.msg), extra))


_NEWLINE = orjson.OPT_APPEND_NEWLINE
_new_fields = tuple.__new__


class _QueueHandler(QueueHandler):
    """Hands the record over as it is: the writer thread formats it (the stock handler formats
    on the caller's thread, which is the event loop)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _Writer(threading.Thread):
    """Formats queued records and writes whatever has piled up in one write and one flush: at a
    thousand requests a second that is a few writes instead of a thousand."""

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord | Fields | None], stream: TextIO
    ):
        super().__init__(name="switchboard-logs", daemon=True)
        self.records = records
        self.stream = stream
        self.formatter = JsonFormatter()
        # the lines are UTF-8 already: a UTF-8 text stream (stderr's, as a rule) gets them on
        # its byte stream, without decoding them to encode them again
        encoding = str(getattr(stream, "encoding", None) or "").lower().replace("_", "-")
        self._bytes = getattr(stream, "buffer", None) if encoding in ("utf-8", "utf8") else None

    def run(self) -> None:
        while True:
            batch = [self.records.get()]
            # let a busy second's records pile up for a moment: one wake-up, one format loop
            # and one write for all of them, instead of taking the GIL from the event loop for
            # every record
            if batch[0] is not None:
                time.sleep(_GATHER_SECONDS)
            while not self.records.empty() and len(batch) < 1000:
                batch.append(self.records.get_nowait())
            lines: list[bytes] = []
            for record in batch:
                if record is None:  # stop(): write what came before, then end
                    self._write(lines)
                    return
                try:
                    if isinstance(record, Fields):
                        lines.append(record.line())
                    else:
                        lines.append(self.formatter.format(record).encode() + b"\n")
                except Exception:  # a record that cannot be formatted must not end logging
                    lines.append(orjson.dumps({"msg": "unformattable log record"}) + b"\n")
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        try:
            buffer = self._bytes
            if buffer is not None:
                self.stream.flush()  # after whatever text the stream still holds
                buffer.write(data)
                buffer.flush()
            else:
                self.stream.write(data.decode())
                self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nowhere left to log
            pass

    def stop(self) -> None:
        self.records.put(None)
        self.join(timeout=5)


def setup(level: str = "INFO") -> None:
    """JSON lines on stderr, written by a thread: the event loop only enqueues records, so a
    slow terminal or pipe never stalls requests."""
    # The lines carry no file, line, thread or process fields, so the logging module need not
    # find them for every record (the logging HOWTO's "Optimization" section): the caller's
    # frame walk alone is a few microseconds per request on the event loop.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _LANE
    records: queue.SimpleQueue[logging.LogRecord | Fields | None] = queue.SimpleQueue()
    writer = _Writer(records, sys.stderr)
    writer.start()
    atexit.register(writer.stop)
    root = logging.getLogger()
    handler = _QueueHandler(records)
    root.handlers[:] = [handler]
    _LANE = (handler, records)
    root.setLevel(level)
    # uvicorn's access log is one line per request: too much at ingest rates
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


# setup()'s handler and its queue: `info` hands a line straight to the queue while that handler
# is the only place an INFO record of the logger would go
_LANE: tuple[QueueHandler, queue.SimpleQueue[Any]] | None = None


def info(logger: logging.Logger, msg: str, extra: dict[str, Any]) -> None:
    """`logger.info(msg, extra=extra)`, for a line per request on the event loop. When the
    record would only reach setup()'s writer (no other handler or filter on the way, the level
    enabled), its fields go to the writer thread as they are, which writes the same line: the
    record, the handler chain and their locks (about 5 µs per request) are skipped. Otherwise
    (another handler, e.g. a test's, or a filter) the record goes through logging as usual."""
    if not logger.isEnabledFor(logging.INFO):
        return
    lane = _LANE
    if lane is not None and _only_to(logger, lane[0]):
        # (the tuple made directly: a namedtuple's __new__ is a Python function)
        lane[1].put(_new_fields(Fields, (time.time(), logger.name, msg, extra)))
    else:
        logger.info(msg, extra=extra)


def _only_to(logger: logging.Logger, handler: QueueHandler) -> bool:
    """Whether an INFO record of `logger` would reach `handler` and nothing else."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return False
        if node.parent is None:  # the root
            return node.handlers == [handler] and not handler.filters and handler.level <= 20
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return False
