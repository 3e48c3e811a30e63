"""The PostgreSQL events INSERT's one JSON parameter: every column the statement reads is
there, with the value the column gets on SQLite (`insert_row`), and a value JSON cannot carry is
a StoreError (so the group commit retries its callers one by one)."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from switchboard.envelope import Event, build_event
from switchboard.errors import StoreError
from switchboard.store.postgres import batch_json
from switchboard.store.queries import INSERT_COLUMNS, insert_row

NAMES = [c.strip() for c in INSERT_COLUMNS.split(",")]
JSON_COLUMNS = {"errors", "context", "data"}


def _event(**fields: object) -> Event:
    raw = {
        "id": "e-1",
        "type": "order.paid",
        "time": "2026-12-04T10:00:00.5+02:00",
        "subject": "cust-1",
        "actor": {"id": "u-1", "type": "user"},
        "correlation_id": "c-1",
        "context": {"ip": "203.0.113.9"},
        "data": {"total": 12.5, "items": [{"sku": "a", "qty": 1}], "note": "çã ✓"},
        **fields,
    }
    return build_event(raw, tenant_id="t1", default_source="app", received_us=1_800_000_000)


@pytest.mark.parametrize("errors", [[], [{"path": "/data/x", "message": "warned"}]])
def test_every_inserted_column_travels_with_the_value_sqlite_stores(
    errors: list[dict[str, str]],
) -> None:
    status = "warned" if errors else "accepted"
    event = msgspec.structs.replace(_event(), errors=errors, status=status)
    [doc] = orjson.loads(batch_json([event]))
    for name, expected in zip(NAMES, insert_row(event), strict=True):
        assert name in doc, name  # json_to_recordset would read a missing key as NULL
        got = doc[name]
        if name in JSON_COLUMNS:
            # SQLite stores no errors as NULL; the statement turns the encoder's [] into NULL
            expected = orjson.loads(expected) if expected is not None else []
        assert got == expected, name


def test_a_value_json_cannot_carry_is_a_store_error() -> None:
    event = _event(subject="bad \ud800 subject")
    with pytest.raises(StoreError, match="cannot be written"):
        batch_json([event])
