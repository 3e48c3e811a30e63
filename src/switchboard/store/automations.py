"""Automation state: versioned documents, runs (each run's timer is its `due_us`), and waits.

Written once for both backends on the stores' generic SQL (`?` and `?j` placeholders), like
store/deliveries.py. Runs start, and waiting runs are woken, inside the group commit that stores
their trigger (`RunStart`, `Wake`: the stores run their statements for each new event, as they
insert its routed deliveries). Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single
writer already serialises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from switchboard import patterns
from switchboard.automation_runs import Run
from switchboard.automations import Correlation, correlation_key, lookup
from switchboard.envelope import format_us
from switchboard.store.deliveries import pattern_fragment
from switchboard.store.queries import EVENT_COLUMNS, Sql, dumps, event_from_row, load_json

Statement = tuple[str, tuple[Any, ...]]

_INSERT_RUN = (
    "INSERT INTO automation_runs (id, tenant_id, automation, version, trigger_seq, status, "
    "reason, state, dedupe_key, rev, due_us, created_us, updated_us, ended_us) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?j, ?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_INSERT_WAIT_IF_RUN = (
    "INSERT INTO automation_waits (run_id, slot, tenant_id, type, match_key) "
    "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM automation_runs WHERE id = ?)"
)
# Waking bumps `rev`: an engine that claimed the run before this event was stored must not
# save over the wake-up (its save checks the rev it claimed), so the run is looked at again.
_WAKE = (
    "UPDATE automation_runs SET due_us = ?, rev = rev + 1 "
    "WHERE due_us IS NOT NULL AND due_us > ? AND id IN (SELECT run_id FROM automation_waits "
    "WHERE tenant_id = ? AND type = ? AND match_key = ?)"
)
_RUN_COLUMNS = (
    "r.id, r.tenant_id, r.automation, r.version, r.trigger_seq, r.status, r.reason, r.state, "
    "r.rev, r.due_us, r.created_us, r.ended_us"
)
_E = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))
FIND_PAGE = 100  # candidate events read per query of a look-back
FIND_MAX = 2_000  # a look-back reads at most this many candidates (beyond: not found)


def cancel_subject_runs(
    tenant_id: str,
    subject: str,
    automations: Sequence[str],
    reason: str,
    now_us: int,
    unless: Statement = ("", ()),
) -> list[Statement]:
    """Cancel the running runs of `automations` whose trigger is about `subject` (a consent
    withdrawal: the automations that require the purpose), unless the SQL condition `unless`
    holds; their waits go with them. Run in the withdrawal's own transaction."""
    if not automations:
        return []
    names = ", ".join("?" for _ in automations)
    where = (
        f"tenant_id = ? AND status = 'running' AND automation IN ({names}) "
        "AND trigger_seq IN (SELECT seq FROM events WHERE tenant_id = ? AND subject = ?)"
    )
    params = (tenant_id, *automations, tenant_id, subject)
    guard, guard_params = (f" AND NOT ({unless[0]})", unless[1]) if unless[0] else ("", ())
    return [
        (
            "DELETE FROM automation_waits WHERE tenant_id = ? AND run_id IN "
            f"(SELECT id FROM automation_runs WHERE {where}{guard})",
            (tenant_id, *params, *guard_params),
        ),
        (
            "UPDATE automation_runs SET status = 'cancelled', reason = ?, due_us = NULL, "
            f"rev = rev + 1, updated_us = ?, ended_us = ? WHERE {where}{guard}",
            (reason, now_us, now_us, *params, *guard_params),
        ),
    ]


@dataclass(frozen=True)
class RunStart:
    """A run to start if (and only if) its trigger event is stored as new."""

    run_id: str
    tenant_id: str
    automation: str
    version: int
    dedupe_key: str | None
    cancel_waits: tuple[tuple[str, str], ...]  # (type, key) of each cancel_on
    refused: str | None = None  # a limit refused the run: it is recorded `failed`, this reason

    def statements(self, seq: int, received_us: int) -> list[Statement]:
        failed = self.refused is not None
        out: list[Statement] = [
            (
                _INSERT_RUN,
                (
                    self.run_id,
                    self.tenant_id,
                    self.automation,
                    self.version,
                    seq,
                    "failed" if failed else "running",
                    self.refused,
                    dumps({"pc": 0, "matched": {}, "history": []}),
                    self.dedupe_key,
                    None if failed else received_us,
                    received_us,
                    received_us,
                    received_us if failed else None,
                ),
            )
        ]
        for n, (etype, key) in enumerate(() if failed else self.cancel_waits):
            out.append(
                (
                    _INSERT_WAIT_IF_RUN,
                    (self.run_id, f"cancel.{n}", self.tenant_id, etype, key, self.run_id),
                )
            )
        return out


@dataclass(frozen=True)
class Wake:
    """Make the runs waiting on (tenant, type, key) due now, if the event is stored as new."""

    tenant_id: str
    type: str
    key: str

    def statements(self, seq: int, received_us: int) -> list[Statement]:
        return [(_WAKE, (received_us, received_us, self.tenant_id, self.type, self.key))]


def run_from_row(r: Sequence[Any], trigger: dict[str, Any]) -> Run:
    state = load_json(r[7]) or {}
    return Run(
        id=r[0],
        tenant_id=r[1],
        automation=r[2],
        version=r[3],
        trigger=trigger,
        trigger_seq=r[4],
        status=r[5],
        reason=r[6],
        pc=state.get("pc", 0),
        until_us=state.get("until_us"),
        deadline_us=state.get("deadline_us"),
        matched=state.get("matched", {}),
        history=state.get("history", []),
        due_us=r[9],
        rev=r[8],
        created_us=r[10],
        ended_us=r[11],
    )


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "automation": run.automation,
        "version": run.version,
        "status": run.status,
        "reason": run.reason,
        "trigger": {
            "id": run.trigger.get("id"),
            "type": run.trigger.get("type"),
            "subject": run.trigger.get("subject"),
        },
        "next_step_at": format_us(run.due_us) if run.due_us is not None else None,
        "waiting_until": format_us(until) if (until := run.deadline_us or run.until_us) else None,
        "steps": [
            {**{k: v for k, v in h.items() if k != "at_us"}, "at": format_us(h["at_us"])}
            for h in run.history
        ],
        "matched": run.matched,
        "created_at": format_us(run.created_us),
        "ended_at": format_us(run.ended_us) if run.ended_us is not None else None,
    }


def _correlation_pattern(corr: Correlation, key: str) -> patterns.Pattern | None:
    """The correlation as a filter pattern, so the store narrows the look-back in SQL."""
    import orjson

    spec: dict[str, Any] = {}
    for path, value in zip(corr.paths, orjson.loads(key), strict=True):
        node = spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return None
        node[parts[-1]] = [value]
    try:
        return patterns.compile_pattern(spec) if spec else None
    except patterns.PatternError:
        return None


class AutomationStore:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self.pg = sql.dialect == "postgres"

    # -- documents --------------------------------------------------------------------------

    async def put(self, tenant_id: str, name: str, spec: dict[str, Any], now_us: int) -> int:
        """Store a new version; its number."""
        for _ in range(3):  # two concurrent PUTs may pick the same number: the loser retries
            try:
                rows = await self.sql.fetch_write(
                    "INSERT INTO automations (tenant_id, name, version, spec, created_us) "
                    "SELECT ?, ?, coalesce(max(version), 0) + 1, ?j, ? FROM automations "
                    "WHERE tenant_id = ? AND name = ? RETURNING version",
                    (tenant_id, name, dumps(spec), now_us, tenant_id, name),
                )
                return int(rows[0][0])
            except Exception as exc:  # a unique violation, translated by the store
                if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
                    raise
        raise RuntimeError("could not number the new version")

    async def get(
        self, tenant_id: str, name: str, version: int | None = None
    ) -> tuple[int, dict[str, Any], int] | None:
        """(version, spec, created_us) of a version, or of the current one."""
        if version is None:
            rows = await self.sql.fetch(
                "SELECT version, spec, created_us FROM automations WHERE tenant_id = ? "
                "AND name = ? AND deleted_us IS NULL ORDER BY version DESC LIMIT 1",
                (tenant_id, name),
            )
        else:
            rows = await self.sql.fetch(
                "SELECT version, spec, created_us FROM automations "
                "WHERE tenant_id = ? AND name = ? AND version = ?",
                (tenant_id, name, version),
            )
        return (rows[0][0], load_json(rows[0][1]), rows[0][2]) if rows else None

    async def current(self, tenant_id: str) -> list[tuple[str, int, dict[str, Any], int]]:
        """(name, version, spec, created_us) of the tenant's current automations."""
        rows = await self.sql.fetch(
            "SELECT a.name, a.version, a.spec, a.created_us FROM automations a "
            "WHERE a.tenant_id = ? AND a.deleted_us IS NULL AND a.version = "
            "(SELECT max(b.version) FROM automations b WHERE b.tenant_id = a.tenant_id "
            "AND b.name = a.name) ORDER BY a.name",
            (tenant_id,),
        )
        return [(r[0], r[1], load_json(r[2]), r[3]) for r in rows]

    async def versions(self, tenant_id: str) -> list[tuple[str, int, dict[str, Any]]]:
        """(name, version, spec) of every version of the tenant's automations, deleted ones
        too (their runs may still be waiting)."""
        rows = await self.sql.fetch(
            "SELECT name, version, spec FROM automations WHERE tenant_id = ? "
            "ORDER BY name, version",
            (tenant_id,),
        )
        return [(r[0], r[1], load_json(r[2])) for r in rows]

    async def delete(self, tenant_id: str, name: str, now_us: int) -> bool:
        """No new runs start; the runs already started finish on the version they pinned."""
        n = await self.sql.execute(
            "UPDATE automations SET deleted_us = ? WHERE tenant_id = ? AND name = ? "
            "AND deleted_us IS NULL",
            (now_us, tenant_id, name),
        )
        return n > 0

    # -- runs -------------------------------------------------------------------------------

    async def claim(self, now_us: int, lease_us: int, limit: int) -> list[tuple[str, int]]:
        """Due runs, each pushed one lease ahead (a crashed engine's claims come due again);
        (id, rev) of each: the rev its save must still find."""
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        rows = await self.sql.fetch_write(
            "UPDATE automation_runs SET due_us = ?, rev = rev + 1 WHERE id IN (SELECT id FROM "
            f"automation_runs WHERE due_us <= ? ORDER BY due_us LIMIT ?{lock}) RETURNING id, rev",
            (now_us + lease_us, now_us, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def next_due_us(self) -> int | None:
        rows = await self.sql.fetch(
            "SELECT min(due_us) FROM automation_runs WHERE due_us IS NOT NULL"
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def load_many(self, run_ids: list[str]) -> dict[str, Run]:
        """Runs by id, with their trigger events, in one query."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = await self.sql.fetch(
            f"SELECT {_RUN_COLUMNS}, {_E} FROM automation_runs r "
            f"JOIN events e ON e.seq = r.trigger_seq WHERE r.id IN ({marks})",
            run_ids,
        )
        return {r[0]: run_from_row(r, event_from_row(r[12:]).match_doc()) for r in rows}

    async def load(self, run_id: str, tenant_id: str | None = None) -> Run | None:
        """A run with its trigger event (None when not found, or not in `tenant_id`)."""
        sql = (
            f"SELECT {_RUN_COLUMNS}, {_E} FROM automation_runs r "
            "JOIN events e ON e.seq = r.trigger_seq WHERE r.id = ?"
        )
        params: list[Any] = [run_id]
        if tenant_id is not None:
            sql += " AND r.tenant_id = ?"
            params.append(tenant_id)
        rows = await self.sql.fetch(sql, params)
        if not rows:
            return None
        return run_from_row(rows[0], event_from_row(rows[0][12:]).match_doc())

    async def save(self, run: Run, claimed_rev: int, now_us: int, waiting: bool) -> bool:
        return (await self.save_many([(run, claimed_rev, waiting, True)], now_us))[0]

    async def save_many(self, runs: list[tuple[Run, int, bool, bool]], now_us: int) -> list[bool]:
        """Write advanced runs, in one transaction, each only if nobody changed it since its
        claim (a wake-up, a cancel, a second engine); a run's step wait row follows it (kept
        while it waits for an event, gone otherwise), and an ended run's waits are all gone.
        The last flag says whether the run may have wait rows at all (an automation without
        cancel_on or wait_for has none to delete). For each run: False when it had changed,
        and the caller's result is dropped."""
        if not runs:
            return []
        statements: list[tuple[str, Sequence[Any]]] = []
        deletes = []
        for run, claimed_rev, waiting, has_waits in runs:
            statements.append(
                (
                    "UPDATE automation_runs SET status = ?, reason = ?, state = ?j, due_us = ?, "
                    "rev = rev + 1, updated_us = ?, ended_us = ? WHERE id = ? AND rev = ?",
                    (
                        run.status,
                        run.reason,
                        dumps(run.state()),
                        run.due_us,
                        now_us,
                        run.ended_us,
                        run.id,
                        claimed_rev,
                    ),
                )
            )
            # the deletes only touch the run's own rows, and only once it is saved
            deletes.append(has_waits and (run.ended or not waiting))
            if not deletes[-1]:
                continue
            if run.ended:
                statements.append(
                    (
                        "DELETE FROM automation_waits WHERE run_id = ? AND EXISTS (SELECT 1 "
                        "FROM automation_runs WHERE id = ? AND rev = ?)",
                        (run.id, run.id, claimed_rev + 1),
                    )
                )
            else:
                statements.append(
                    (
                        "DELETE FROM automation_waits WHERE run_id = ? AND slot = 'step' AND "
                        "EXISTS (SELECT 1 FROM automation_runs WHERE id = ? AND rev = ?)",
                        (run.id, run.id, claimed_rev + 1),
                    )
                )
        counts = iter(await self.sql.batch(statements))
        saved = []
        for deleted in deletes:
            saved.append(next(counts) == 1)
            if deleted:
                next(counts)
        return saved

    async def watch(self, run: Run, corr: Correlation, key: str) -> None:
        await self.sql.execute(
            "INSERT INTO automation_waits (run_id, slot, tenant_id, type, match_key) "
            "VALUES (?, 'step', ?, ?, ?) ON CONFLICT (run_id, slot) DO UPDATE SET "
            "type = excluded.type, match_key = excluded.match_key",
            (run.id, run.tenant_id, corr.type, key),
        )

    async def find(
        self, tenant_id: str, after_seq: int, corr: Correlation, key: str
    ) -> dict[str, Any] | None:
        """The first event of the tenant stored after `after_seq` of the awaited type with the
        correlation values `key` and matching the correlation's filter; its match_doc()."""
        params: list[Any] = [tenant_id, corr.type]
        where = "e.tenant_id = ? AND e.type = ? AND e.status <> 'quarantined'"
        narrowed = _correlation_pattern(corr, key)
        if narrowed is not None:
            frag_params: list[Any] = []
            try:
                frag = pattern_fragment(narrowed, self.sql.dialect, frag_params)
            except patterns.PatternError:  # not an event column (e.g. `time`): Python only
                frag, frag_params = "TRUE", []
            where += f" AND ({frag})"
            params += frag_params
        cursor, read = after_seq, 0
        while read < FIND_MAX:
            rows = await self.sql.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events e WHERE {where} AND e.seq > ? "
                f"ORDER BY e.seq LIMIT {FIND_PAGE}",
                [*params, cursor],
            )
            for row in rows:
                doc = event_from_row(row).match_doc()
                if correlation_key(doc, corr.paths) != key:
                    continue
                if corr.filter is None or patterns.match(corr.filter, doc):
                    return doc
            if len(rows) < FIND_PAGE:
                return None
            cursor, read = rows[-1][0], read + len(rows)
        return None

    async def cancel(self, tenant_id: str, run_id: str, reason: str, now_us: int) -> bool:
        counts = await self.sql.batch(
            [
                (
                    "UPDATE automation_runs SET status = 'cancelled', reason = ?, due_us = NULL, "
                    "rev = rev + 1, updated_us = ?, ended_us = ? "
                    "WHERE id = ? AND tenant_id = ? AND status = 'running'",
                    (reason, now_us, now_us, run_id, tenant_id),
                ),
                (
                    "DELETE FROM automation_waits WHERE run_id = ? AND tenant_id = ?",
                    (run_id, tenant_id),
                ),
            ]
        )
        return counts[0] == 1

    async def runs(
        self, tenant_id: str, automation: str, status: str | None, limit: int
    ) -> list[Run]:
        sql = (
            f"SELECT {_RUN_COLUMNS}, {_E} FROM automation_runs r "
            "JOIN events e ON e.seq = r.trigger_seq "
            "WHERE r.tenant_id = ? AND r.automation = ?"
        )
        params: list[Any] = [tenant_id, automation]
        if status is not None:
            sql += " AND r.status = ?"
            params.append(status)
        rows = await self.sql.fetch(sql + f" ORDER BY r.created_us DESC LIMIT {int(limit)}", params)
        return [run_from_row(r, event_from_row(r[12:]).match_doc()) for r in rows]

    async def count_running(self, tenant_id: str) -> int:
        rows = await self.sql.fetch(
            "SELECT count(*) FROM automation_runs WHERE tenant_id = ? AND status = 'running'",
            (tenant_id,),
        )
        return int(rows[0][0])


def dedupe_key(value_doc: dict[str, Any], path: str, window_us: int, at_us: int) -> str | None:
    """One run per (value at `path`, window): windows are fixed, `window_us` long."""
    value = lookup(value_doc, path)
    if value is None or isinstance(value, dict | list):
        return None
    return f"{dumps(value)}@{at_us // window_us}"
