"""Recipients, the consent ledger and preferences, written once for both backends on the stores'
generic SQL (`?` and `?j` placeholders).

Writes that follow from an accepted event (a profile kept current, a consent recorded, the
deliveries a withdrawal cancels) are `Effect`s: statements the store runs inside the event's own
append transaction, and only if the event is new, so they are exactly as durable as the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.envelope import format_us, new_id
from switchboard.people import PROFILE_FIELDS, ConsentRecord, Preference
from switchboard.store import Store
from switchboard.store.automations import cancel_subject_runs
from switchboard.store.queries import dumps, load_json


@dataclass(frozen=True)
class Effect:
    """A statement to run in the append transaction of the event it follows from (only when
    that event is accepted, not when it is a duplicate)."""

    sql: str
    params: tuple[Any, ...]

    def statements(self, seq: int, received_us: int) -> list[tuple[str, tuple[Any, ...]]]:
        """As a CommitHook: the one statement, whatever the event's seq."""
        return [(self.sql, self.params)]


AUTOMATION_ROUTE = "automation:"  # route ids of automations' send steps (automation_engine.py)
_FIELDS = ", ".join(PROFILE_FIELDS)
_RECIPIENT_COLUMNS = f"tenant_id, id, {_FIELDS}, attributes, created_us, updated_us"
_MERGE_ATTRIBUTES = {
    "sqlite": "json_patch(recipients.attributes, excluded.attributes)",
    "postgres": "recipients.attributes || excluded.attributes",
}
_CONSENT_COLUMNS = (
    "id, tenant_id, recipient_id, purpose, action, at_us, terms_version, legal_basis, origin, "
    "ip, user_agent, event_id, recorded_us"
)
_ENSURE_RECIPIENT = (
    f"INSERT INTO recipients ({_RECIPIENT_COLUMNS}) "
    f"VALUES (?, ?, {', '.join('NULL' for _ in PROFILE_FIELDS)}, ?j, ?, ?) "
    "ON CONFLICT (tenant_id, id) DO NOTHING"
)
# A withdrawal cancels what is still waiting to go out to that person through a route that
# requires the purpose, unless a later grant is already recorded. Deliveries being sent right
# now passed the worker's check before the withdrawal and are not recalled.
_LATER_GRANT = (
    "EXISTS (SELECT 1 FROM consents WHERE tenant_id = ? AND recipient_id = ? "
    "AND purpose = ? AND action = 'grant' AND at_us > ?)"
)
_CANCEL_WITHDRAWN = (
    "UPDATE deliveries SET status = 'cancelled', last_error = ?, lease_until_us = NULL, "
    "updated_us = ? WHERE tenant_id = ? AND status IN ('pending', 'retrying') "
    "AND route_id IN ({routes}) "
    "AND event_seq IN (SELECT seq FROM events WHERE tenant_id = ? AND subject = ?) "
    f"AND NOT {_LATER_GRANT}"
)
SUPPRESS = (
    "UPDATE deliveries SET status = 'suppressed', last_error = ?, lease_until_us = NULL, "
    "updated_us = ? WHERE id = ? AND status = 'sending'"
)


def upsert_profile(
    dialect: str,
    tenant_id: str,
    recipient_id: str,
    fields: dict[str, str],
    attributes: dict[str, Any],
    now_us: int,
    *,
    replace: bool = False,
) -> Effect:
    """Create the recipient or update it: given fields overwrite, absent ones are kept (all are
    overwritten with `replace`); attributes are merged (or replaced)."""
    values = tuple(fields.get(f) for f in PROFILE_FIELDS)
    if replace:
        sets = ", ".join(f"{f} = excluded.{f}" for f in PROFILE_FIELDS)
        attrs = "excluded.attributes"
    else:
        sets = ", ".join(f"{f} = COALESCE(excluded.{f}, recipients.{f})" for f in PROFILE_FIELDS)
        attrs = _MERGE_ATTRIBUTES["postgres" if dialect == "postgres" else "sqlite"]
    sql = (
        f"INSERT INTO recipients ({_RECIPIENT_COLUMNS}) "
        f"VALUES (?, ?, {', '.join('?' for _ in PROFILE_FIELDS)}, ?j, ?, ?) "
        f"ON CONFLICT (tenant_id, id) DO UPDATE SET {sets}, attributes = {attrs}, "
        "updated_us = excluded.updated_us"
    )
    return Effect(sql, (tenant_id, recipient_id, *values, dumps(attributes), now_us, now_us))


def record_consent(
    tenant_id: str,
    recipient_id: str,
    record: ConsentRecord,
    now_us: int,
    *,
    event_id: str | None = None,
    cancel_routes: Sequence[str] = (),
) -> list[Effect]:
    """The ledger row (and the recipient, if new); for a withdrawal, the cancellation of the
    deliveries still waiting in `cancel_routes` (the routes that require the purpose) and of
    the running runs of the automations among them (their send steps' routes)."""
    v = record.values
    out = [
        Effect(_ENSURE_RECIPIENT, (tenant_id, recipient_id, "{}", now_us, now_us)),
        Effect(
            f"INSERT INTO consents ({_CONSENT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id(),
                tenant_id,
                recipient_id,
                record.purpose,
                record.action,
                record.at_us,
                v.get("terms_version"),
                v.get("legal_basis"),
                v.get("origin"),
                v.get("ip"),
                v.get("user_agent"),
                event_id,
                now_us,
            ),
        ),
    ]
    if record.action == "withdraw" and cancel_routes:
        routes = ", ".join("?" for _ in cancel_routes)
        out.append(
            Effect(
                _CANCEL_WITHDRAWN.format(routes=routes),
                (
                    f"consent:{record.purpose}",
                    now_us,
                    tenant_id,
                    *cancel_routes,
                    tenant_id,
                    recipient_id,
                    tenant_id,
                    recipient_id,
                    record.purpose,
                    record.at_us,
                ),
            )
        )
        later_grant = (_LATER_GRANT, (tenant_id, recipient_id, record.purpose, record.at_us))
        automations = sorted(
            {r.split(":")[1] for r in cancel_routes if r.startswith(AUTOMATION_ROUTE)}
        )
        out += [
            Effect(sql, params)
            for sql, params in cancel_subject_runs(
                tenant_id,
                recipient_id,
                automations,
                f"consent:{record.purpose}",
                now_us,
                unless=later_grant,
            )
        ]
    return out


def recipient_json(row: Sequence[Any]) -> dict[str, Any]:
    n = len(PROFILE_FIELDS)
    return {
        "id": row[1],
        **dict(zip(PROFILE_FIELDS, row[2 : 2 + n], strict=True)),
        "attributes": load_json(row[2 + n]) or {},
        "created_at": format_us(row[3 + n]),
        "updated_at": format_us(row[4 + n]),
    }


def consent_json(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": row[0],
        "purpose": row[3],
        "action": row[4],
        "at": format_us(row[5]),
        "terms_version": row[6],
        "legal_basis": row[7],
        "origin": row[8],
        "ip": row[9],
        "user_agent": row[10],
        "event_id": row[11],
        "recorded_at": format_us(row[12]),
    }


class PeopleStore:
    """Recipients, consents and preferences of every tenant; every query names the tenant."""

    def __init__(self, store: Store) -> None:
        self.sql = store

    async def run(self, effects: Iterable[Effect]) -> None:
        await self.sql.batch([(e.sql, e.params) for e in effects])

    async def get(self, tenant_id: str, recipient_id: str) -> dict[str, Any] | None:
        rows = await self.sql.fetch(
            f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE tenant_id = ? AND id = ?",
            (tenant_id, recipient_id),
        )
        return recipient_json(rows[0]) if rows else None

    async def delete(self, tenant_id: str, recipient_id: str) -> bool:
        """The profile and preferences go; the consent ledger stays (it is the proof of what
        the person agreed to, which the controller must keep)."""
        counts = await self.sql.batch(
            [
                (
                    "DELETE FROM recipients WHERE tenant_id = ? AND id = ?",
                    (tenant_id, recipient_id),
                ),
                (
                    "DELETE FROM preferences WHERE tenant_id = ? AND recipient_id = ?",
                    (tenant_id, recipient_id),
                ),
            ]
        )
        return counts[0] > 0

    async def consents(self, tenant_id: str, recipient_id: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.sql.fetch(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE tenant_id = ? AND recipient_id = ? "
            "ORDER BY at_us DESC, id DESC LIMIT ?",
            (tenant_id, recipient_id, limit),
        )
        return [consent_json(r) for r in rows]

    async def consent_state(
        self, tenant_id: str, recipient_id: str, purposes: Sequence[str]
    ) -> dict[str, str]:
        """Each purpose's latest action (grant | withdraw); a purpose never recorded is absent."""
        marks = ", ".join("?" for _ in purposes)
        rows = await self.sql.fetch(
            "SELECT purpose, action FROM consents WHERE tenant_id = ? AND recipient_id = ? "
            f"AND purpose IN ({marks}) ORDER BY at_us DESC, id DESC",
            (tenant_id, recipient_id, *purposes),
        )
        state: dict[str, str] = {}
        for purpose, action in rows:
            state.setdefault(purpose, action)
        return state

    async def preferences(self, tenant_id: str, recipient_id: str) -> list[Preference]:
        rows = await self.sql.fetch(
            "SELECT topic, channel, enabled FROM preferences WHERE tenant_id = ? "
            "AND recipient_id = ? ORDER BY topic, channel",
            (tenant_id, recipient_id),
        )
        return [Preference(t, c, bool(e)) for t, c, e in rows]

    async def put_preferences(
        self, tenant_id: str, recipient_id: str, prefs: Sequence[Preference], now_us: int
    ) -> None:
        """Replace the recipient's preferences with `prefs` (creating the recipient if new)."""
        statements: list[tuple[str, Sequence[Any]]] = [
            (_ENSURE_RECIPIENT, (tenant_id, recipient_id, "{}", now_us, now_us)),
            (
                "DELETE FROM preferences WHERE tenant_id = ? AND recipient_id = ?",
                (tenant_id, recipient_id),
            ),
        ]
        statements += [
            (
                "INSERT INTO preferences (tenant_id, recipient_id, topic, channel, enabled, "
                "updated_us) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant_id, recipient_id, p.topic, p.channel, p.enabled, now_us),
            )
            for p in prefs
        ]
        await self.sql.batch(statements)

    async def set_preference(
        self, tenant_id: str, recipient_id: str, pref: Preference, now_us: int
    ) -> None:
        """Set one (topic, channel) preference, leaving the others (one-click unsubscribe)."""
        await self.sql.batch(
            [
                (_ENSURE_RECIPIENT, (tenant_id, recipient_id, "{}", now_us, now_us)),
                (
                    "INSERT INTO preferences (tenant_id, recipient_id, topic, channel, enabled, "
                    "updated_us) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, recipient_id, "
                    "topic, channel) DO UPDATE SET enabled = excluded.enabled, "
                    "updated_us = excluded.updated_us",
                    (tenant_id, recipient_id, pref.topic, pref.channel, pref.enabled, now_us),
                ),
            ]
        )

    # -- consent purposes ------------------------------------------------------------------------

    async def purposes(self, tenant_id: str) -> list[dict[str, Any]]:
        """The purposes the tenant declared (none: it has not closed its list)."""
        rows = await self.sql.fetch(
            "SELECT name, description, created_us, updated_us FROM consent_purposes "
            "WHERE tenant_id = ? ORDER BY name",
            (tenant_id,),
        )
        return [
            {
                "name": r[0],
                "description": r[1],
                "created_at": format_us(r[2]),
                "updated_at": format_us(r[3]),
            }
            for r in rows
        ]

    async def put_purpose(self, tenant_id: str, name: str, description: str, now_us: int) -> bool:
        """Declare (or describe again) a purpose; whether it is new."""
        existed = await self.sql.fetch(
            "SELECT 1 FROM consent_purposes WHERE tenant_id = ? AND name = ?", (tenant_id, name)
        )
        await self.sql.execute(
            "INSERT INTO consent_purposes (tenant_id, name, description, created_us, updated_us) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET "
            "description = excluded.description, updated_us = excluded.updated_us",
            (tenant_id, name, description, now_us, now_us),
        )
        return not existed

    async def delete_purpose(self, tenant_id: str, name: str) -> bool:
        """Undeclare a purpose; the ledger keeps its records (they are proof)."""
        deleted = await self.sql.execute(
            "DELETE FROM consent_purposes WHERE tenant_id = ? AND name = ?", (tenant_id, name)
        )
        return deleted > 0

    async def undeclared(self, tenant_id: str, purposes: Sequence[str]) -> list[str]:
        """The purposes among `purposes` the tenant has not declared; none while it has declared
        no purpose at all (an open list)."""
        if not purposes:
            return []
        declared = {p["name"] for p in await self.purposes(tenant_id)}
        return [p for p in purposes if declared and p not in declared]

    # -- message templates ---------------------------------------------------------------------

    async def template(
        self, tenant_id: str, name: str, version: int | None = None
    ) -> tuple[int, dict[str, Any], int] | None:
        """(version, spec, created_us) of the latest version, or of `version`."""
        sql = "SELECT version, spec, created_us FROM message_templates WHERE tenant_id = ? "
        if version is None:
            rows = await self.sql.fetch(
                sql + "AND name = ? ORDER BY version DESC LIMIT 1", (tenant_id, name)
            )
        else:
            rows = await self.sql.fetch(
                sql + "AND name = ? AND version = ?", (tenant_id, name, version)
            )
        if not rows:
            return None
        return int(rows[0][0]), load_json(rows[0][1]), int(rows[0][2])

    async def template_names(self, tenant_id: str) -> list[tuple[str, int]]:
        rows = await self.sql.fetch(
            "SELECT name, max(version) FROM message_templates WHERE tenant_id = ? "
            "GROUP BY name ORDER BY name",
            (tenant_id,),
        )
        return [(r[0], int(r[1])) for r in rows]

    async def put_template(
        self, tenant_id: str, name: str, spec: dict[str, Any], now_us: int
    ) -> tuple[int, bool]:
        """Store `spec` as the next version unless it equals the latest: (version, changed)."""
        latest = await self.template(tenant_id, name)
        if latest is not None and latest[1] == spec:
            return latest[0], False
        version = 1 if latest is None else latest[0] + 1
        await self.sql.execute(
            "INSERT INTO message_templates (tenant_id, name, version, spec, created_us) "
            "VALUES (?, ?, ?, ?j, ?)",
            (tenant_id, name, version, dumps(spec), now_us),
        )
        return version, True

    async def suppress(self, delivery_id: str, reason: str, now_us: int) -> None:
        """A claimed delivery that must not go out: recorded 'suppressed' with its reason."""
        await self.sql.execute(SUPPRESS, (reason, now_us, delivery_id))
