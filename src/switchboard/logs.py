"""Structured logs: one JSON object per line, with the `extra` fields a call site passes."""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("secret", "password", "token", "authorization", "api_key")


def _clean(key: str, value: Any) -> Any:
    if any(w in key.lower() for w in _SECRET_WORDS):
        return "***"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = _clean(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class _QueueHandler(QueueHandler):
    """Hands the record over as it is: the listener thread formats it (the stock handler
    formats on the caller's thread, which is the event loop)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def setup(level: str = "INFO") -> None:
    """JSON lines on stderr, written by a thread: the event loop only enqueues records, so a
    slow terminal or pipe never stalls requests."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, stream, respect_handler_level=False)
    listener.start()
    atexit.register(listener.stop)
    root = logging.getLogger()
    root.handlers[:] = [_QueueHandler(records)]
    root.setLevel(level)
    # uvicorn's access log is one line per request: too much at ingest rates
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
