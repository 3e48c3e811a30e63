"""Automation state: versioned documents, runs (each run's timer is its `due_us`), and waits.

Written once for both backends on the stores' generic SQL (`?` and `?j` placeholders), like
store/deliveries.py. Runs start, and waiting runs are woken, inside the group commit that stores
their trigger (`RunStart`: the stores run its statements for each new event, as they insert its
routed deliveries; `Wake`: the stores wake for all the commit's new events at once). Claims use
`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer already serialises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson

from switchboard import patterns
from switchboard.automation_runs import NOT_LOADED, Run, stored_run
from switchboard.automations import (
    MAX_DIGEST_BYTES,
    Correlation,
    correlation_key,
    hold_key,
    parse_schedule,
)
from switchboard.records import Wake
from switchboard.store.deliveries import DELIVERY_COLUMNS, pattern_fragment
from switchboard.store.queries import EVENT_COLUMNS, Sql, dumps, event_from_row, load_json

Statement = tuple[str, tuple[Any, ...]]

_INSERT_RUN = (
    "INSERT INTO automation_runs (id, tenant_id, automation, version, trigger_seq, status, "
    "reason, state, dedupe_key, rev, due_us, created_us, updated_us, ended_us) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?j, ?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
# A digest or debounce run holds its key (`hold:…` in dedupe_key) until the engine releases it.
# A trigger with the same key updates the holding run instead of starting one; the update locks
# the run's row until the trigger commits, so the release waits for it (PostgreSQL) and a
# trigger either joined the run before its release or starts a new run after it.
_UPSERT_HELD = _INSERT_RUN.replace(
    "ON CONFLICT DO NOTHING",
    "ON CONFLICT (tenant_id, automation, dedupe_key) WHERE dedupe_key IS NOT NULL DO UPDATE SET ",
)
_JOIN_DIGEST = _UPSERT_HELD + (
    "updated_us = excluded.updated_us WHERE automation_runs.status = 'running'"
)
# debounce: the newest trigger becomes the run's trigger, due one period after it, but never
# later than max_wait after the first (created_us)
_JOIN_DEBOUNCE = _UPSERT_HELD + (
    "trigger_seq = excluded.trigger_seq, rev = automation_runs.rev + 1, "
    "updated_us = excluded.updated_us, due_us = CASE WHEN excluded.due_us < "
    "automation_runs.created_us + CAST(? AS BIGINT) THEN excluded.due_us "
    "ELSE automation_runs.created_us + CAST(? AS BIGINT) END "
    "WHERE automation_runs.status = 'running'"
)
# the event joins the digest that holds its key (the run it started, or the one it updated);
# one past the limit is kept, so the digest knows it was cut
_DIGEST_ITEM = (
    "INSERT INTO automation_digest_items (run_id, event_seq, tenant_id) "
    "SELECT r.id, CAST(? AS BIGINT), r.tenant_id FROM automation_runs r "
    "WHERE r.tenant_id = ? AND r.automation = ? AND r.dedupe_key = ? AND r.status = 'running' "
    "AND (SELECT count(*) FROM automation_digest_items i WHERE i.run_id = r.id) "
    "<= CAST(? AS INTEGER) ON CONFLICT DO NOTHING"
)
# A send step at the very start of a program is planned into its trigger's commit, as a route's
# delivery is: an ordinary pending delivery, made only if the run was made (not a dedupe's
# second trigger), at most once per (run, step).
_LEADING_SEND = (
    f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) SELECT ?, ?, CAST(? AS BIGINT), ?, ?, "
    "'pending', CAST(? AS INTEGER), 0, CAST(? AS BIGINT), NULL, NULL, NULL, NULL, "
    "CAST(? AS BIGINT), CAST(? AS BIGINT), 0 WHERE EXISTS (SELECT 1 FROM automation_runs "
    "WHERE id = ? AND status IN ('running', 'completed')) ON CONFLICT (id) DO NOTHING"
)
HOLD_PREFIX = "hold:"
_RELEASED_IF_ENDED = (
    "dedupe_key = CASE WHEN CAST(? AS INTEGER) = 1 AND dedupe_key LIKE 'hold:%' THEN NULL "
    "ELSE dedupe_key END"
)
# a run's save after its advance: only if nobody changed it since its claim (`rev`)
_SAVE_RUN = (
    "UPDATE automation_runs SET status = ?, reason = ?, state = ?j, due_us = ?, "
    "rev = rev + 1, updated_us = ?, ended_us = ? WHERE id = ? AND rev = ?"
)
# … and of an ended run that may hold its key: the key goes. (Only then: setting dedupe_key
# makes SQLite maintain its unique index on every save, ~1,800 instructions per fired timer.)
_SAVE_ENDED_HOLDING = (
    "UPDATE automation_runs SET status = ?, reason = ?, state = ?j, due_us = ?, "
    f"rev = rev + 1, updated_us = ?, ended_us = ?, {_RELEASED_IF_ENDED} "
    "WHERE id = ? AND rev = ?"
)
# … and its wait and digest rows, once it is saved (the rev its save gave it)
_MINE = "EXISTS (SELECT 1 FROM automation_runs WHERE id = ? AND rev = ?)"
_DELETE_WAITS = f"DELETE FROM automation_waits WHERE run_id = ? AND {_MINE}"
_DELETE_DIGEST_ITEMS = f"DELETE FROM automation_digest_items WHERE run_id = ? AND {_MINE}"
_DELETE_STEP_WAIT = f"DELETE FROM automation_waits WHERE run_id = ? AND slot = 'step' AND {_MINE}"
_INSERT_WAIT_IF_RUN = (
    "INSERT INTO automation_waits (run_id, slot, tenant_id, type, match_key) "
    "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM automation_runs WHERE id = ?)"
)
# Wake-ups: the runs waiting on (tenant, type, key) of an event stored as new are made due at
# its arrival, in its commit. Waking bumps `rev`: an engine that claimed the run before this
# event was stored must not save over the wake-up (its save checks the rev it claimed), so the
# run is looked at again. A group commit wakes for all its events together (`Wake` records),
# since one UPDATE per event cost as much as the rest of the event's commit: on SQLite each such
# UPDATE (an IN subquery: a temporary b-tree, and write cursors on every index of the runs)
# took 41,000 instructions even when nothing waited, against 7,000 per key for one indexed
# look-up of the commit's keys; on PostgreSQL, one statement over arrays is one plan and one
# round trip for the whole commit.
WAKE_RUN = (
    "UPDATE automation_runs SET due_us = ?, rev = rev + 1 "
    "WHERE id = ? AND due_us IS NOT NULL AND due_us > ?"
)
# The keys arrive as one JSON parameter (`wake_json`: an array of arrays, no object to build per
# key), not as four arrays: asyncpg checks every element of an array parameter against three
# abstract base classes in Python, which cost more than the rest of the wake-up (callgrind,
# 2026-12-04: ~15,000 instructions per woken event).
# Each key is one probe of the waits' index (the LATERAL subquery with OFFSET 0 is not
# flattened into a join the planner could answer with a scan of every wait). The parameter is
# read as jsonb, parsed once: on json, each `->>` parses its element's text again, and a
# 50-event commit's wake-up took 0.20 ms more than its INSERT alone, against 0.04 ms as jsonb
# (PostgreSQL 15, 100,000 waiting runs, medians of 70 commits, 2026-12-06).
WAKE_ALL_POSTGRES = (
    "UPDATE automation_runs r SET due_us = w.at, rev = r.rev + 1 FROM (SELECT a.run_id, "
    "min(k.at) AS at FROM (SELECT j->>0 AS tenant_id, j->>1 AS type, j->>2 AS match_key, "
    "(j->>3)::bigint AS at FROM jsonb_array_elements($1::jsonb) AS j) k CROSS JOIN LATERAL "
    "(SELECT run_id FROM automation_waits WHERE tenant_id = k.tenant_id AND type = k.type "
    "AND match_key = k.match_key OFFSET 0) a GROUP BY a.run_id) w "
    "WHERE r.id = w.run_id AND r.due_us IS NOT NULL AND r.due_us > w.at"
)
# The same wake-up as a data-modifying CTE of the group commit's events INSERT (postgres.py),
# for a commit whose only plans are wake-ups: one statement, so one round trip, not two. Its
# keys ($2: one [tenant_id, source, id, type, match_key, at] array per wake-up) name their
# event, and only the events the INSERT stored (its CTE `k`, the keys that went in) wake
# anything: a duplicate wakes nothing. It reads the statement's snapshot, so it must not be
# used when the commit itself starts runs or registers waits (the separate statement after
# them sees those; this one would not).
WAKE_INSERTED_POSTGRES = (
    "UPDATE automation_runs r SET due_us = w.at, rev = r.rev + 1 FROM (SELECT a.run_id, "
    "min(x.at) AS at FROM (SELECT j->>0 AS tenant_id, j->>1 AS source, j->>2 AS id, "
    "j->>3 AS type, j->>4 AS match_key, (j->>5)::bigint AS at "
    "FROM jsonb_array_elements($2::jsonb) AS j) x "
    "JOIN k ON k.tenant_id = x.tenant_id AND k.source = x.source AND k.id = x.id "
    "CROSS JOIN LATERAL (SELECT run_id FROM automation_waits WHERE tenant_id = x.tenant_id "
    "AND type = x.type AND match_key = x.match_key OFFSET 0) a GROUP BY a.run_id) w "
    "WHERE r.id = w.run_id AND r.due_us IS NOT NULL AND r.due_us > w.at RETURNING r.id"
)
# keys per look-up, padded up to one of these sizes so a handful of statements are prepared
_PROBE_SIZES = (1, 4, 16, 64, 256)
_RUN_COLUMNS = (
    "r.id, r.tenant_id, r.automation, r.version, r.trigger_seq, r.status, r.reason, r.state, "
    "r.rev, r.due_us, r.created_us, r.ended_us"
)
# what a claim returns of each run: not its reason, due_us and ended_us, which a claimed run
# has by construction (None, the claim's lease, None: only an ended run has a reason or an
# end, and an ended run has no due_us to be claimed by); each column fetched cost ~1,000
# instructions per run on SQLite
_CLAIMED = "id, tenant_id, automation, version, trigger_seq, status, state, rev, created_us"
_E = ", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))
FIND_PAGE = 100  # candidate events read per query of a look-back
FIND_MAX = 2_000  # a look-back reads at most this many candidates (beyond: not found)


def cancel_runs(
    tenant_id: str, condition: str, params: Sequence[Any], reason: str, now_us: int
) -> list[Statement]:
    """Cancel the running runs of `tenant_id` for which the SQL `condition` (over
    automation_runs' columns, with `params`) holds, in the caller's transaction: their waits and
    digest items go first (found through the runs still running), and the update releases a
    held digest/debounce key, as a cancel by id does."""
    where = f"tenant_id = ? AND status = 'running' AND {condition}"
    return [
        *(
            (
                f"DELETE FROM {table} WHERE tenant_id = ? AND run_id IN "
                f"(SELECT id FROM automation_runs WHERE {where})",
                (tenant_id, tenant_id, *params),
            )
            for table in ("automation_waits", "automation_digest_items")
        ),
        (
            "UPDATE automation_runs SET status = 'cancelled', reason = ?, due_us = NULL, "
            f"rev = rev + 1, updated_us = ?, ended_us = ?, {_RELEASED_IF_ENDED} WHERE {where}",
            (reason, now_us, now_us, 1, tenant_id, *params),
        ),
    ]


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
    condition = (
        f"automation IN ({names}) "
        "AND trigger_seq IN (SELECT seq FROM events WHERE tenant_id = ? AND subject = ?)"
    )
    params: tuple[Any, ...] = (*automations, tenant_id, subject)
    if unless[0]:
        condition += f" AND NOT ({unless[0]})"
        params += tuple(unless[1])
    return cancel_runs(tenant_id, condition, params, reason, now_us)


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
    digest_limit: int = 0  # a digest run: `dedupe_key` is the held key, events join it
    debounce: tuple[int, int] | None = None  # (period, max_wait) µs: `dedupe_key` is held
    # the program's leading send steps, made in this commit: (step id, delivery id,
    # destination name, destination id, route id of the step's transform or None)
    sends: tuple[tuple[str, str, str, str, str | None], ...] = ()
    # the program is those sends and nothing else (no cancel_on): the run is stored completed,
    # and the engine never has to claim it (it was claimed, and saved, once per trigger)
    completes: bool = False

    @property
    def delivers(self) -> bool:
        """Whether its statements make deliveries (the leading sends of a run not refused):
        the commit then wakes the delivery workers of other processes, as a route's does."""
        return bool(self.sends) and self.refused is None

    @property
    def ends(self) -> bool:
        """Whether the run ends in its trigger's commit (refused, or completed by its sends):
        the engine has nothing to do for it."""
        return self.refused is not None or self.completes

    def statements(self, seq: int, received_us: int) -> list[Statement]:
        failed = self.refused is not None
        held = not failed and self.dedupe_key is not None
        sql, extra = _INSERT_RUN, cast(tuple[Any, ...], ())
        due_us: int | None = received_us
        done = not failed and self.completes
        if failed or done:
            due_us = None
        if held and self.digest_limit:
            sql = _JOIN_DIGEST
        elif held and self.debounce is not None:
            sql, extra = _JOIN_DEBOUNCE, (self.debounce[1], self.debounce[1])
            due_us = received_us + self.debounce[0]
        out: list[Statement] = [
            (
                sql,
                (
                    self.run_id,
                    self.tenant_id,
                    self.automation,
                    self.version,
                    seq,
                    "failed" if failed else "completed" if done else "running",
                    self.refused,
                    dumps(
                        {
                            "pc": len(self.sends),
                            "matched": {},
                            "history": [
                                {
                                    "step": step,
                                    "kind": "send",
                                    "at_us": received_us,
                                    "destination": name,
                                    "delivery_id": delivery_id,
                                }
                                for step, delivery_id, name, _, _ in self.sends
                            ],
                        }
                    ),
                    None if failed and self.digest_limit + bool(self.debounce) else self.dedupe_key,
                    due_us,
                    received_us,
                    received_us,
                    received_us if failed or done else None,
                    *extra,
                ),
            )
        ]
        for _, delivery_id, _, dest_id, route_id in () if failed else self.sends:
            out.append(
                (
                    _LEADING_SEND,
                    (
                        delivery_id,
                        self.tenant_id,
                        seq,
                        dest_id,
                        route_id,
                        1,
                        received_us,
                        received_us,
                        received_us,
                        self.run_id,
                    ),
                )
            )
        if held and self.digest_limit:
            out.append(
                (
                    _DIGEST_ITEM,
                    (seq, self.tenant_id, self.automation, self.dedupe_key, self.digest_limit),
                )
            )
        for n, (etype, key) in enumerate(() if failed or done else self.cancel_waits):
            out.append(
                (
                    _INSERT_WAIT_IF_RUN,
                    (self.run_id, f"cancel.{n}", self.tenant_id, etype, key, self.run_id),
                )
            )
        return out


WakeTargets = dict[tuple[str, str], dict[str, int]]


def wake_targets(wakes: Sequence[tuple[Wake, int]]) -> WakeTargets:
    """A commit's wake-ups (each with its event's arrival) as (tenant, type) → key → the
    earliest arrival of an event with that key: the time its runs become due."""
    out: WakeTargets = {}
    for (tenant_id, etype, key), at in wakes:
        keys = out.get((tenant_id, etype))
        if keys is None:
            keys = out[tenant_id, etype] = {}
        if at < keys.get(key, at + 1):
            keys[key] = at
    return out


def _probe_sql(size: int) -> str:
    return (
        "SELECT run_id, match_key FROM automation_waits WHERE tenant_id = ? AND type = ? "
        f"AND match_key IN ({', '.join('?' * size)})"
    )


# each padded size's look-up, and the size a chunk of n keys is padded to
_PROBES = {size: _probe_sql(size) for size in _PROBE_SIZES}
_PADDED = [next(s for s in _PROBE_SIZES if s >= n) for n in range(_PROBE_SIZES[-1] + 1)]


def wake_probes(targets: WakeTargets) -> list[tuple[dict[str, int], Statement]]:
    """The look-ups of the runs waiting on a commit's keys (each SELECTs run_id, match_key),
    with the keys each one covers, for `woken`."""
    out = []
    top = _PROBE_SIZES[-1]
    for (tenant_id, etype), keys in targets.items():
        listed = list(keys)
        for start in range(0, len(listed), top):
            chunk = listed[start : start + top]
            size = _PADDED[len(chunk)]
            chunk += [chunk[-1]] * (size - len(chunk))
            out.append((keys, (_PROBES[size], (tenant_id, etype, *chunk))))
    return out


def woken(found: dict[str, int], keys: dict[str, int], rows: Sequence[Sequence[Any]]) -> None:
    """Add the runs a look-up found to `found` (run → when it becomes due, the earliest)."""
    for run_id, key in rows:
        at = keys[key]
        if at < found.get(run_id, at + 1):
            found[run_id] = at


def wake_rows(found: dict[str, int]) -> list[tuple[int, str, int]]:
    """`WAKE_RUN` parameters for the runs found."""
    return [(at, run_id, at) for run_id, at in found.items()]


def wake_json(targets: WakeTargets) -> str:
    """`WAKE_ALL_POSTGRES`'s parameter: the commit's keys as one JSON array of
    [tenant_id, type, match_key, at] arrays (no object per key to build)."""
    return dumps(
        [
            (tenant_id, etype, key, at)
            for (tenant_id, etype), by_key in targets.items()
            for key, at in by_key.items()
        ]
    )


def run_from_row(r: Sequence[Any], trigger: dict[str, Any]) -> Run:
    """A `_RUN_COLUMNS` row → Run."""
    state = r[7]
    return stored_run(
        r[0], r[1], r[2], r[3], trigger, r[4], r[5], r[6],
        # a tuple, not `str | bytes`, which builds a union object per call
        (orjson.loads(state) if isinstance(state, (str, bytes)) else state) or {},
        r[8], r[9], r[10], r[11],
    )  # fmt: skip


def claimed_run(r: Sequence[Any], due_us: int) -> Run:
    """A `_CLAIMED` row → Run (its trigger not loaded), `due_us` the claim's lease."""
    state = r[6]
    return stored_run(
        r[0], r[1], r[2], r[3], NOT_LOADED, r[4], r[5], None,
        (orjson.loads(state) if isinstance(state, (str, bytes)) else state) or {},
        r[7], due_us, r[8], None,
    )  # fmt: skip


def _correlation_pattern(corr: Correlation, key: str) -> patterns.Pattern | None:
    """The correlation as a filter pattern, so the store narrows the look-back in SQL."""
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
                version = int(rows[0][0])
                await self.set_schedule(tenant_id, name, spec, now_us)
                return version
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
        counts = await self.sql.batch(
            [
                (
                    "UPDATE automations SET deleted_us = ? WHERE tenant_id = ? AND name = ? "
                    "AND deleted_us IS NULL",
                    (now_us, tenant_id, name),
                ),
                (
                    "DELETE FROM automation_schedules WHERE tenant_id = ? AND automation = ?",
                    (tenant_id, name),
                ),
            ]
        )
        return counts[0] > 0

    # -- schedules --------------------------------------------------------------------------

    async def set_schedule(
        self, tenant_id: str, name: str, spec: dict[str, Any], now_us: int
    ) -> int | None:
        """Keep the automation's schedule row in step with its new version: its next fire
        after now (a changed schedule starts afresh), or no row when it has no schedule."""
        on = spec.get("on")
        next_us = None
        if isinstance(on, dict) and "schedule" in on:
            try:
                next_us = parse_schedule(on).next_after(now_us)
            except ValueError:  # validated before it was stored; a later limit may refuse it
                next_us = None
        if next_us is None:
            await self.sql.execute(
                "DELETE FROM automation_schedules WHERE tenant_id = ? AND automation = ?",
                (tenant_id, name),
            )
            return None
        await self.sql.execute(
            "INSERT INTO automation_schedules (tenant_id, automation, next_us, updated_us) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, automation) DO UPDATE SET "
            "next_us = excluded.next_us, updated_us = excluded.updated_us",
            (tenant_id, name, next_us, now_us),
        )
        return next_us

    async def due_schedules(self, now_us: int, limit: int) -> list[tuple[str, str, int]]:
        """(tenant, automation, fire time) of the schedules due now, earliest first."""
        rows = await self.sql.fetch(
            "SELECT tenant_id, automation, next_us FROM automation_schedules WHERE next_us <= ? "
            f"ORDER BY next_us LIMIT {int(limit)}",
            (now_us,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def schedule_fired(
        self, tenant_id: str, name: str, fired_us: int, next_us: int, now_us: int
    ) -> bool:
        """Move a schedule past the fire it made (only if nobody moved it first)."""
        n = await self.sql.execute(
            "UPDATE automation_schedules SET next_us = ?, updated_us = ? WHERE tenant_id = ? "
            "AND automation = ? AND next_us = ?",
            (next_us, now_us, tenant_id, name, fired_us),
        )
        return n == 1

    async def count_schedules(self, tenant_id: str) -> int:
        rows = await self.sql.fetch(
            "SELECT count(*) FROM automation_schedules WHERE tenant_id = ?", (tenant_id,)
        )
        return int(rows[0][0])

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

    async def claim_runs(
        self, now_us: int, lease_us: int, limit: int, trace: bool = False
    ) -> list[tuple[Run, tuple[str, str] | None]]:
        """`claim`, returning the claimed runs whole (one statement: no second read of the
        rows), their trigger not loaded (`NOT_LOADED`: see `triggers`). With `trace`, each run
        comes with its trigger's (id, trace_id), for the engine's logs."""
        lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
        ids = (
            ", (SELECT e.id FROM events e WHERE e.seq = automation_runs.trigger_seq), "
            "(SELECT e.trace_id FROM events e WHERE e.seq = automation_runs.trigger_seq)"
            if trace
            else ""
        )
        rows = await self.sql.fetch_write(
            "UPDATE automation_runs SET due_us = ?, rev = rev + 1 WHERE id IN (SELECT id FROM "
            f"automation_runs WHERE due_us <= ? ORDER BY due_us LIMIT ?{lock}) "
            f"RETURNING {_CLAIMED}{ids}",
            (now_us + lease_us, now_us, limit),
        )
        due = now_us + lease_us
        return [(claimed_run(r, due), (r[9], r[10]) if trace else None) for r in rows]

    async def triggers(self, seqs: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Trigger events by seq, as their match_doc(), in one query."""
        if not seqs:
            return {}
        marks = ", ".join("?" * len(seqs))
        rows = await self.sql.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN ({marks})", list(seqs)
        )
        return {r[0]: event_from_row(r).match_doc() for r in rows}

    async def next_due_us(self) -> int | None:
        rows = await self.sql.fetch(
            "SELECT min(due_us) FROM automation_runs WHERE due_us IS NOT NULL"
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def _docs(self, rows: list[Any], offset: int) -> list[dict[str, Any]]:
        """The match documents of the events in `rows` from column `offset`, PII opened."""
        events = await self.sql.subject_keys.open([event_from_row(r[offset:]) for r in rows])
        return [e.match_doc() for e in events]

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
        docs = await self._docs(rows, 12)
        return {r[0]: run_from_row(r, doc) for r, doc in zip(rows, docs, strict=True)}

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
        return run_from_row(rows[0], (await self._docs(rows, 12))[0])

    async def save(self, run: Run, claimed_rev: int, now_us: int, waiting: bool) -> bool:
        return (await self.save_many([(run, claimed_rev, waiting, True)], now_us))[0]

    async def save_many(
        self,
        runs: list[tuple[Run, int, bool, bool]],
        now_us: int,
        effects: list[list[tuple[str, tuple[Any, ...]]]] | None = None,
        holds: Sequence[bool] | None = None,
    ) -> list[bool]:
        """Write advanced runs, in one transaction, each only if nobody changed it since its
        claim (a wake-up, a cancel, a second engine); a run's step wait row follows it (kept
        while it waits for an event, gone otherwise), and an ended run's waits and digest rows
        are all gone (and its held key, if a cancel ended it while holding one). The last flag
        says whether the run may have wait rows at all (an automation without cancel_on or
        wait_for or digest has none to delete). For each run: False when it had changed, and the
        caller's result is dropped. `effects[i]` are statements of the run's steps (send steps'
        deliveries), written first in the same transaction; each must check itself that the
        run still has its claimed rev. `holds[i]`: whether the run's automation may hold a key
        (`Automation.holds_key`; None: any may), which an ended run lets go of."""
        if not runs:
            return []
        statements: list[tuple[str, Sequence[Any]]] = []
        updates = []  # where each run's UPDATE is in `statements`
        for n, (run, claimed_rev, waiting, has_waits) in enumerate(runs):
            if effects and effects[n]:
                statements += effects[n]
            updates.append(len(statements))
            ended = run.status != "running"
            state = {
                "pc": run.pc,
                "until_us": run.until_us,
                "deadline_us": run.deadline_us,
                "matched": run.matched,
                "history": run.history,
            }  # Run.state(), inlined: this loop runs once per advanced run
            # a plain str: the interpreter's Status members are a str subclass, which sqlite3
            # binds through its adapter protocol (failed look-ups)
            status, encoded = str(run.status), orjson.dumps(state).decode()
            reason, due, end = run.reason, run.due_us, run.ended_us
            if ended and (holds is None or holds[n]):
                held = (status, reason, encoded, due, now_us, end, 1, run.id, claimed_rev)
                statements.append((_SAVE_ENDED_HOLDING, held))
            else:
                saved = (status, reason, encoded, due, now_us, end, run.id, claimed_rev)
                statements.append((_SAVE_RUN, saved))
            if not has_waits:
                continue
            # the deletes only touch the run's own rows, and only once it is saved
            mine = (run.id, run.id, claimed_rev + 1)
            if ended:
                statements += [(_DELETE_WAITS, mine), (_DELETE_DIGEST_ITEMS, mine)]
            elif not waiting:
                statements.append((_DELETE_STEP_WAIT, mine))
        counts = await self.sql.batch(statements)
        return [counts[at] == 1 for at in updates]

    async def release(self, run: Run) -> bool:
        """Let go of a digest's or debounce's key (the next trigger starts a new run); False
        when the run changed since its claim. Waits for triggers that are joining the run."""
        n = await self.sql.execute(
            "UPDATE automation_runs SET dedupe_key = NULL WHERE id = ? AND rev = ?",
            (run.id, run.rev),
        )
        return n == 1

    async def digest(self, run: Run, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The events a digest run collected, oldest first, as compact documents; and whether
        any were left out (over `limit`, or over MAX_DIGEST_BYTES of JSON together)."""
        rows = await self.sql.fetch(
            f"SELECT {_E} FROM automation_digest_items i JOIN events e ON e.seq = i.event_seq "
            f"WHERE i.run_id = ? AND i.tenant_id = ? ORDER BY i.event_seq LIMIT {int(limit) + 1}",
            (run.id, run.tenant_id),
        )
        return digest_docs(await self._docs(rows, 0), limit)

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
            for doc in await self._docs(rows, 0):
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
                    f"rev = rev + 1, updated_us = ?, ended_us = ?, {_RELEASED_IF_ENDED} "
                    "WHERE id = ? AND tenant_id = ? AND status = 'running'",
                    (reason, now_us, now_us, 1, run_id, tenant_id),
                ),
                (
                    "DELETE FROM automation_waits WHERE run_id = ? AND tenant_id = ?",
                    (run_id, tenant_id),
                ),
                (
                    "DELETE FROM automation_digest_items WHERE run_id = ? AND tenant_id = ?",
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
        docs = await self._docs(rows, 12)
        return [run_from_row(r, doc) for r, doc in zip(rows, docs, strict=True)]

    async def run_of_delivery(self, tenant_id: str, event_seq: int, delivery_id: str) -> str | None:
        """The run whose send step made `delivery_id` (a delivery's event is its run's trigger),
        or None: the runs of that one trigger event are few, and their history names it."""
        found = await self.sender_of_delivery(tenant_id, event_seq, delivery_id)
        return None if found is None else found[0]

    async def sender_of_delivery(
        self, tenant_id: str, event_seq: int, delivery_id: str
    ) -> tuple[str, str] | None:
        """(run id, automation name) of the send step that made `delivery_id`, or None."""
        rows = await self.sql.fetch(
            "SELECT id, state, automation FROM automation_runs "
            "WHERE tenant_id = ? AND trigger_seq = ? ORDER BY created_us LIMIT 100",
            (tenant_id, event_seq),
        )
        for run_id, raw, automation in rows:
            state = load_json(raw) or {}
            for entry in state.get("history") or ():
                if isinstance(entry, dict) and entry.get("delivery_id") == delivery_id:
                    return str(run_id), str(automation)
        return None

    async def count_running(self, tenant_id: str) -> int:
        rows = await self.sql.fetch(
            "SELECT count(*) FROM automation_runs WHERE tenant_id = ? AND status = 'running'",
            (tenant_id,),
        )
        return int(rows[0][0])


def dedupe_key(value_doc: dict[str, Any], path: str, window_us: int, at_us: int) -> str | None:
    """One run per (value at `path`, window): windows are fixed, `window_us` long."""
    key = hold_key(value_doc, path)
    return None if key is None else f"{key}@{at_us // window_us}"


def held_key(value_doc: dict[str, Any], path: str | None) -> str | None:
    """The key a digest or debounce run holds while open (None: the trigger has no value)."""
    key = hold_key(value_doc, path)
    return None if key is None else HOLD_PREFIX + key


def digest_docs(docs: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The compact documents of a digest's events (at most `limit`, and MAX_DIGEST_BYTES of
    JSON together), and whether any were left out."""
    out: list[dict[str, Any]] = []
    size = 0
    for doc in docs[:limit]:
        item = {k: doc.get(k) for k in ("id", "type", "subject", "time", "data")}
        size += len(dumps(item))
        if size > MAX_DIGEST_BYTES:
            return out, True
        out.append(item)
    return out, len(docs) > limit
