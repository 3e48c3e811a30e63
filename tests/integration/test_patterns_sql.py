"""to_sql selects exactly the events match() accepts, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from switchboard.patterns import Pattern, PatternError, compile_pattern, match, to_sql

PG_URL = os.environ.get("SWITCHBOARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """Skip when PostgreSQL is down, but fail when SWITCHBOARD_REQUIRE_SERVICES=1 (CI)."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return PG_URL
    except OSError:
        reason = "PostgreSQL is not reachable on 127.0.0.1:5432"
        if os.environ.get("SWITCHBOARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and SWITCHBOARD_REQUIRE_SERVICES=1 makes it required")
        pytest.skip(reason)


def _doc(
    i: int,
    type_: str,
    data: dict[str, Any],
    *,
    context: dict[str, Any] | None = None,
    subject: str | None = None,
    actor: tuple[str | None, str | None] = (None, None),
    source: str = "app",
    version: str | None = "1",
) -> dict[str, Any]:
    """A document shaped like Event.match_doc()."""
    return {
        "id": f"evt-{i:02d}",
        "type": type_,
        "version": version,
        "source": source,
        "subject": subject,
        "time": "2025-01-01T00:00:00Z",
        "actor": {"id": actor[0], "type": actor[1]},
        "trace_id": f"trace-{i}",
        "correlation_id": None if i % 3 else f"corr-{i}",
        "causation_id": None,
        "context": context if context is not None else {},
        "data": data,
    }


DOCS: list[dict[str, Any]] = [
    _doc(1, "payment_processed", {"method": "pix", "status": "failed", "amount": 100}),
    _doc(2, "payment_processed", {"method": "card", "status": "success", "amount": 5000.5}),
    _doc(3, "payment_processed", {"method": "pix", "status": "success", "amount": 0}),
    _doc(4, "payment_processed", {"method": "PIX", "status": "FAILED", "amount": -3}),
    _doc(5, "payment_processed", {"method": None, "status": "failed"}),
    _doc(6, "lead.created", {"name": "Ana"}, context={"utm_source": "google_ads"}),
    _doc(7, "lead.created", {"name": "Bia"}, context={"utm_source": "Google"}),
    _doc(8, "lead.created", {"name": "Caio"}, context={"utm_source": "facebook"}),
    _doc(9, "lead.created", {"name": "Davi"}, context={"utm": {"source": "google"}}),
    _doc(10, "billing.payment_received", {"amount": 15000, "currency": "BRL"}, source="stripe"),
    _doc(11, "billing.payment_received", {"amount": 10000, "currency": "BRL"}, source="stripe"),
    _doc(12, "billing.payment_failed", {"amount": 10000.01, "currency": "USD"}, source="stripe"),
    _doc(13, "billing.payment_refunded", {"amount": "20000"}, source="stripe"),
    _doc(14, "billing.invoice.overdue", {"amount": True, "days": 7}, source="asaas"),
    _doc(15, "billing.invoice.pre_due", {"amount": 5, "days": 5.0}, source="asaas"),
    _doc(16, "purchase_made", {"value": 5, "items": [{"sku": "A1", "qty": 2}, {"sku": "B7"}]}),
    _doc(17, "purchase_made", {"value": 5.0, "items": [{"sku": "C3", "qty": 1}]}),
    _doc(18, "purchase_made", {"value": 12, "items": []}),
    _doc(19, "purchase_made", {"value": 1, "items": [[{"sku": "A1"}], "A1", 3]}),
    _doc(20, "purchase_made", {"tags": ["vip", "new", 7, None, True]}),
    _doc(21, "purchase_made", {"tags": "vip"}),
    _doc(22, "purchase_made", {"tags": []}),
    _doc(23, "purchase_made", {"tags": [["vip"]]}),
    _doc(24, "auth.user_signed_up", {"email": "ana@clinic.com", "ok": True}, subject="u-1"),
    _doc(25, "auth.user_signed_up", {"email": "bob@example.COM", "ok": False}, subject="u-2"),
    _doc(26, "auth.user_signed_up", {"email": "x@clinic.com.br", "ok": 1}, subject="u-3"),
    _doc(27, "auth.user_signed_up", {"email": None, "ok": 0}, actor=("u-9", "user")),
    _doc(28, "reward_offered", {"customer": {"id": "c-1", "tier": "gold"}}, actor=("ai-1", "ai")),
    _doc(29, "reward_offered", {"customer": {"id": 1, "tier": None}}, actor=("sys", "system")),
    _doc(30, "reward_offered", {"customer": "c-1"}, actor=("sys", "system")),
    _doc(31, "reward_offered", {"customer": {"id": ["c-1", "c-2"]}}, version=None),
    _doc(32, "consentimento_registrado", {"tipo": "São Paulo", "ação": "aceite"}, source="clínica"),
    _doc(33, "consentimento_registrado", {"tipo": "sÃo paulo", "a*b": "lit*star%_"}),
    _doc(34, "consentimento_registrado", {"tipo": "percent%under_score", "x.y": 1}),
    _doc(35, "message.sent", {"text": "line1\nline2*", "ip": "10.1.2.3"}),
    _doc(36, "message.sent", {"text": "", "ip": "192.168.0.1"}),
    _doc(37, "message.sent", {"text": "*", "n": 1e20}),
    _doc(38, "message.sent", {"n": 12345678901234}),
    _doc(39, "message.sent", {"n": -0.5, "nested": {"deep": {"deeper": {"x": "y"}}}}),
    _doc(40, "message.sent", {"nested": [{"deep": [{"deeper": {"x": "y"}}]}]}),
    _doc(41, "message.sent", {"nested": {"deep": None}}),
    _doc(42, "message.sent", {}, context={"env": "prod", "locale": "pt-BR"}),
]

PATTERNS: list[dict[str, Any]] = [
    {},
    {"type": ["payment_processed"], "data": {"method": ["pix"], "status": ["failed"]}},
    {"type": [{"prefix": "billing."}], "data.amount": [{"numeric": [">", 10000]}]},
    {"type": [{"wildcard": "billing.*"}], "data": {"amount": [{"numeric": [">=", 10000]}]}},
    {"type": ["lead.created"], "context": {"utm_source": [{"prefix": "google"}]}},
    {"context.utm_source": [{"equals-ignore-case": "GOOGLE"}]},
    {"context.utm.source": ["google"]},
    {"data.method": [{"equals-ignore-case": "pix"}], "data.status": [{"suffix": "ED"}]},
    {"data.method": [{"anything-but": "pix"}]},
    {"data.method": [{"anything-but": ["pix", None]}]},
    {"data.method": [{"exists": False}]},
    {"data.method": [None]},
    {"data.amount": [100, 5000.5, "20000"]},
    {"data.amount": [True]},
    {"data.amount": [{"numeric": ["=", 10000]}]},
    {"data.amount": [{"numeric": ["!=", 10000, "<", 20000]}]},
    {"data.days": [5]},
    {"data.value": [5]},
    {"data.value": [{"numeric": ["<=", 5, ">", 0]}]},
    {"data.items.sku": ["A1"]},
    {"data.items.sku": [{"prefix": "B"}], "data.items.qty": [2]},
    {"data.items": [{"exists": True}]},
    {"data.items.qty": [{"exists": False}], "type": ["purchase_made"]},
    {"data.items": ["A1", 3]},
    {"data.tags": ["vip"]},
    {"data.tags": [None, 7]},
    {"data.tags": [True]},
    {"data.tags": [{"anything-but": "vip"}]},
    {"data.tags": [{"exists": True}], "type": ["purchase_made"]},
    {"data.ok": [True]},
    {"data.ok": [False]},
    {"data.ok": [1]},
    {"data.ok": [{"numeric": [">=", 0]}]},
    {"data.email": [{"suffix": ".com"}]},
    {"data.email": [{"anything-but": {"suffix": ".com"}}]},
    {"data.email": [{"equals-ignore-case": "BOB@EXAMPLE.com"}]},
    {"data.customer.id": ["c-1"]},
    {"data": {"customer": {"id": [1], "tier": [{"exists": True}]}}},
    {"data.customer.tier": [None]},
    {"data.customer": [{"exists": True}], "data.customer.id": [{"exists": False}]},
    {"actor.type": ["system", "ai"]},
    {"actor.id": [None]},
    {"actor.id": [{"anything-but": ["sys"]}]},
    {"subject": [{"prefix": "u-"}], "actor": {"id": [{"exists": True}]}},
    {"subject": [None], "type": [{"prefix": "auth."}]},
    {"version": [None]},
    {"correlation_id": [{"exists": False}]},
    {"source": ["clínica"], "data.ação": ["aceite"]},
    {"data.tipo": [{"equals-ignore-case": "são paulo"}]},
    {"data.tipo": [{"wildcard": "*%*_*"}]},
    {"data.a*b": [{"wildcard": "lit\\*star%_"}]},
    {"data.a*b": [{"wildcard": "lit*"}], "data.tipo": [{"wildcard": "s*"}]},
    {"data.text": [{"wildcard": "line1*"}]},
    {"data.text": [{"wildcard": "*"}]},
    {"data.text": [{"wildcard": "\\*"}, {"prefix": ""}]},
    {"data.text": [{"suffix": ""}], "data.ip": [{"prefix": "10."}]},
    {"data.n": [{"numeric": [">", 1e15]}]},
    {"data.n": [12345678901234, -0.5]},
    {"data.n": [{"numeric": ["<", 0]}, {"anything-but": [1e20]}]},
    {"data.nested.deep.deeper.x": ["y"]},
    {"data.nested.deep": [None]},
    {"data.nested.deep": [{"exists": True}]},
    {"data.x.y": [1]},
    {"context": {"env": ["prod"], "locale": [{"prefix": "pt"}]}},
    {"$or": [{"data.method": ["pix"]}, {"data.amount": [{"numeric": [">", 10000]}]}]},
    {
        "type": [{"prefix": "billing."}],
        "data": {"$or": [{"currency": ["USD"]}, {"amount": [{"numeric": ["<", 10000.5]}]}]},
    },
    {"$or": [{"type": ["message.sent"], "$or": [{"data.n": [1e20]}, {"data.ip": ["10.1.2.3"]}]}]},
]


def _row(seq: int, doc: dict[str, Any]) -> tuple[Any, ...]:
    return (
        seq,
        "t-1",
        doc["source"],
        doc["id"],
        doc["type"],
        doc["version"],
        1_735_689_600_000_000,
        1_735_689_600_000_000,
        doc["subject"],
        doc["actor"]["id"],
        doc["actor"]["type"],
        doc["trace_id"],
        doc["correlation_id"],
        doc["causation_id"],
        "accepted",
        json.dumps(doc["context"], ensure_ascii=False),
        json.dumps(doc["data"], ensure_ascii=False),
    )


COLUMNS = (
    "seq, tenant_id, source, id, type, version, time_us, received_us, subject, actor_id, "
    "actor_type, trace_id, correlation_id, causation_id, status, context, data"
)


def _expected(pattern: Pattern) -> set[int]:
    return {seq for seq, doc in enumerate(DOCS, start=1) if match(pattern, doc)}


def _ids(spec: dict[str, Any]) -> str:
    return json.dumps(spec, ensure_ascii=False)[:60]


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, tenant_id TEXT, source TEXT, id TEXT, "
        "type TEXT, version TEXT, time_us BIGINT, received_us BIGINT, subject TEXT, "
        "actor_id TEXT, actor_type TEXT, trace_id TEXT, correlation_id TEXT, causation_id TEXT, "
        "status TEXT, context TEXT NOT NULL, data TEXT NOT NULL)"
    )
    db.executemany(
        f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join('?' * 17)})",
        [_row(seq, doc) for seq, doc in enumerate(DOCS, start=1)],
    )
    yield db
    db.close()


def test_the_fixture_patterns_select_varied_subsets() -> None:
    sizes = {len(_expected(compile_pattern(spec))) for spec in PATTERNS}
    assert len(sizes) > 8  # the patterns are not all trivially empty or full


@pytest.mark.parametrize("spec", PATTERNS, ids=_ids)
def test_sqlite_selects_what_match_accepts(
    sqlite_db: sqlite3.Connection, spec: dict[str, Any]
) -> None:
    pattern = compile_pattern(spec)
    fragment = to_sql(pattern, "sqlite")
    rows = sqlite_db.execute(f"SELECT seq FROM events WHERE {fragment.sql}", fragment.params)
    assert {seq for (seq,) in rows} == _expected(pattern)


def test_sqlite_fragment_works_with_a_table_alias_and_a_join(
    sqlite_db: sqlite3.Connection,
) -> None:
    pattern = compile_pattern({"type": ["purchase_made"], "data.items.sku": ["A1"]})
    fragment = to_sql(pattern, "sqlite", table="e")
    rows = sqlite_db.execute(
        f"SELECT e.seq FROM events AS e JOIN events AS data ON data.seq = e.seq "
        f"WHERE {fragment.sql}",
        fragment.params,
    )
    assert {seq for (seq,) in rows} == _expected(pattern) == {16}


@pytest.fixture
async def pg() -> AsyncIterator[Any]:
    url = require_postgres()
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # A TEMP table lives in this session's own schema and shadows any real `events` table.
        await conn.execute(
            "CREATE TEMP TABLE events (seq BIGINT PRIMARY KEY, tenant_id TEXT, source TEXT, "
            "id TEXT, type TEXT, version TEXT, time_us BIGINT, received_us BIGINT, "
            "subject TEXT, actor_id TEXT, actor_type TEXT, trace_id TEXT, correlation_id TEXT, "
            "causation_id TEXT, status TEXT, context JSONB NOT NULL, data JSONB NOT NULL)"
        )
        placeholders = ", ".join(f"${i}" for i in range(1, 16))
        await conn.executemany(
            f"INSERT INTO events ({COLUMNS}) VALUES ({placeholders}, $16::jsonb, $17::jsonb)",
            [_row(seq, doc) for seq, doc in enumerate(DOCS, start=1)],
        )
        yield conn
    finally:
        await conn.execute("DROP TABLE IF EXISTS pg_temp.events")
        await conn.close()


@pytest.mark.postgres
async def test_postgres_selects_what_match_accepts(pg: Any) -> None:
    failures = []
    for spec in PATTERNS:
        pattern = compile_pattern(spec)
        fragment = to_sql(pattern, "postgres", start=2)
        rows = await pg.fetch(
            f"SELECT seq FROM events WHERE tenant_id = $1 AND {fragment.sql}",
            "t-1",
            *fragment.params,
        )
        got = {r["seq"] for r in rows}
        if got != _expected(pattern):
            failures.append((spec, sorted(got), sorted(_expected(pattern))))
    assert failures == []


@pytest.mark.postgres
async def test_postgres_fragment_works_with_a_table_alias(pg: Any) -> None:
    pattern = compile_pattern({"data.customer.id": ["c-1"], "actor.type": ["ai"]})
    fragment = to_sql(pattern, "postgres", table="e")
    rows = await pg.fetch(f"SELECT e.seq FROM events AS e WHERE {fragment.sql}", *fragment.params)
    assert {r["seq"] for r in rows} == _expected(pattern) == {28}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"time": [{"prefix": "2025"}]}, "time: filter time with from/to"),
        ({"data.ip": [{"cidr": "10.0.0.0/8"}]}, "data.ip: cidr"),
        ({"received_at": ["x"]}, "received_at: not an event field"),
        ({"actor.name": ["x"]}, "actor.name: not an event field"),
    ],
)
def test_to_sql_refuses_what_it_cannot_answer_exactly(spec: dict[str, Any], message: str) -> None:
    pattern = compile_pattern(spec)
    with pytest.raises(PatternError, match=re.escape(message)):
        to_sql(pattern, "sqlite")
    with pytest.raises(PatternError, match=re.escape(message)):
        to_sql(pattern, "postgres")


def test_sqlite_refuses_keys_it_cannot_quote() -> None:
    pattern = compile_pattern({"data": {'we"ird': [1]}})
    with pytest.raises(PatternError, match="cannot be queried"):
        to_sql(pattern, "sqlite")
    assert to_sql(pattern, "postgres").params == ['we"ird', 1]
