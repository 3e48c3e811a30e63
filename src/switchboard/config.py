"""Settings: one typed object, built once from SWITCHBOARD_* variables and passed in."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from switchboard.errors import ConfigError

T = TypeVar("T")
# processes one `serve` supervises of each kind: each holds SWITCHBOARD_DB_POOL_SIZE connections,
# and PostgreSQL's default max_connections is 100
MAX_PROCESSES = 64


def _int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _fraction(name: str, raw: str) -> float:
    value = _float(name, raw)
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must be more than 0 and at most 1, got {value}")
    return value


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw.upper() not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return raw.upper()

    return parse


def _str(name: str, raw: str) -> str:
    if not raw:
        raise ConfigError(f"{name} must not be empty")
    return raw


def _plain(name: str, raw: str) -> str:
    return raw


def _cidrs(name: str, raw: str) -> str:
    """Comma-separated IP networks; each checked, the text kept as written."""
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP network (CIDR)") from None
    return raw


def _egress_list(name: str, raw: str) -> str:
    from switchboard.egress import Policy  # the parser lives beside the policy it feeds

    Policy.parse(**{name.removeprefix("SWITCHBOARD_EGRESS_").lower(): raw})
    return raw


def _setting(default: Any, parse: Callable[[str, str], Any], doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every knob of the hub. The README's configuration table is generated from these docs."""

    database_url: str = _setting(
        "sqlite:///./data/switchboard.db",
        _str,
        "Store location: `sqlite:///path.db` (embedded, default) or `postgresql://user@host/db`.",
    )
    host: str = _setting("127.0.0.1", _str, "Address the API listens on.")
    port: int = _setting(8080, _int, "Port the API listens on.")
    max_batch_events: int = _setting(1000, _int, "Most events accepted in one ingest request.")
    max_body_bytes: int = _setting(1_048_576, _int, "Largest ingest request body, in bytes.")
    key_rate: float = _setting(1000.0, _float, "Events per second one API key may send (0 = off).")
    key_burst: float = _setting(2000.0, _float, "Token-bucket burst size per API key, in events.")
    tenant_rate: float = _setting(
        5000.0, _float, "Events per second one tenant may send, all keys together (0 = off)."
    )
    tenant_burst: float = _setting(10000.0, _float, "Token-bucket burst size per tenant.")
    max_header_bytes: int = _setting(
        16384,
        _int,
        "Largest request line plus headers of one request, in bytes; over it the answer is 431 "
        "(0 = off).",
    )
    header_timeout: float = _setting(
        10.0,
        _float,
        "Seconds a client has to send a request's line and headers, from its connection or the "
        "request's first byte; then 408 and the connection closes (0 = off).",
    )
    body_timeout: float = _setting(
        30.0,
        _float,
        "Seconds a client has to send a request's body once its headers are in; then 408 and the "
        "connection closes (0 = off).",
    )
    trusted_proxies: str = _setting(
        "",
        _cidrs,
        "Comma-separated networks (CIDRs) of reverse proxies whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` are believed; empty: none, the client is the TCP peer.",
    )
    source_rate: float = _setting(
        50.0, _float, "Requests per second one source's webhook URL accepts (0 = off)."
    )
    source_burst: float = _setting(500.0, _float, "Token-bucket burst per source, in requests.")
    source_ip_rate: float = _setting(
        20.0,
        _float,
        "Requests per second one client address may send to source webhook URLs (0 = off).",
    )
    source_ip_burst: float = _setting(
        200.0, _float, "Token-bucket burst per client address on source URLs, in requests."
    )
    ingest_timeout: float = _setting(
        10.0,
        _float,
        "Seconds an ingest request may wait on the store before it answers 503 (retry safely).",
    )
    idempotency_ttl: int = _setting(
        86400, _int, "Seconds an `Idempotency-Key` response is replayed for."
    )
    sqlite_synchronous: str = _setting(
        "FULL", _choice("FULL", "NORMAL"), "SQLite `synchronous` pragma (FULL survives power loss)."
    )
    db_pool_size: int = _setting(10, _int, "PostgreSQL connections per process.")
    commit_max_events: int = _setting(
        5000, _int, "Most events one group commit writes in a transaction."
    )
    log_level: str = _setting(
        "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Log level of the JSON log lines."
    )
    run_worker: int = _setting(
        1, _int, "1: `serve` also runs the delivery worker in its process; 0: API only."
    )
    processes: int = _setting(
        1,
        _int,
        "API processes `serve` runs on one port (PostgreSQL only, at most 64): above 1, `serve` "
        "supervises them and SWITCHBOARD_WORKER_PROCESSES delivery workers, restarting any that "
        "dies.",
    )
    worker_processes: int = _setting(
        1,
        _int,
        "With SWITCHBOARD_PROCESSES above 1: `switchboard worker` processes `serve` runs beside "
        "the API processes (at most 64; 0, or SWITCHBOARD_RUN_WORKER=0: none).",
    )
    worker_concurrency: int = _setting(
        512, _int, "Most deliveries a worker holds at once: claimed, waiting in line or being sent."
    )
    worker_tenant_share: float = _setting(
        0.75,
        _fraction,
        "Largest part (0-1) of SWITCHBOARD_WORKER_CONCURRENCY one tenant may hold, even alone: the "
        "rest stays free for other tenants. With several tenants due, each gets an equal share.",
    )
    max_destination_concurrency: int = _setting(
        100, _int, "Largest `concurrency` a destination may ask for (more is refused with 422)."
    )
    max_destination_timeout: float = _setting(
        30.0, _float, "Largest `timeout` (seconds) a destination may ask for (more is refused)."
    )
    worker_poll: float = _setting(
        0.5, _float, "Seconds an idle worker waits before looking for due deliveries again."
    )
    lease_seconds: float = _setting(
        120.0, _float, "A claimed delivery returns to the queue if its worker is silent this long."
    )
    disable_after: float = _setting(
        432000.0,
        _float,
        "Seconds a destination may fail without a success before it is disabled (5 days).",
    )
    internal_events: str = _setting(
        "succeeded,failed,dead",
        _plain,
        "Which `switchboard.delivery_*` events to publish (comma-separated; empty for none).",
    )
    replay_rate: float = _setting(
        500.0, _float, "Events per second a replay job re-routes (its own lane and limit)."
    )
    source_unverified_kept: int = _setting(
        100,
        _int,
        "Requests failing verification (or reaching a disabled source) kept per source in its "
        "request log, newest first; each keeps headers, size, SHA-256 and the first KiB.",
    )
    egress_allow: str = _setting(
        "",
        _egress_list,
        "CIDRs and host names (`*.corp.example` for a whole domain) deliveries may reach although "
        "they are in a denied range; comma-separated. `quickstart` adds `127.0.0.0/8`.",
    )
    egress_deny: str = _setting(
        "",
        _egress_list,
        "CIDRs and host names deliveries may never reach, on top of the built-in loopback, "
        "private, link-local, CGNAT, multicast and reserved ranges; wins over the allow list.",
    )
    public_url: str = _setting(
        "",
        _plain,
        "The hub's address as recipients and providers reach it, for unsubscribe links, the "
        "URL Twilio signs and the webhook URL a gateway channel is given (empty: http://HOST:PORT; "
        "for the webhook, the address the request came to).",
    )
    unsubscribe_secret: str = _setting(
        "",
        _plain,
        "Key that signs one-click unsubscribe links (at least 32 characters; empty: no links).",
    )
    tracking_secret: str = _setting(
        "",
        _plain,
        "Key that signs email open pixels and tracked links, for destinations with "
        "`config.tracking` (at least 32 characters; empty: messages go out untracked).",
    )
    master_key: str = _setting(
        "",
        _plain,
        "Master key sealing destination and source credentials at rest (AES-256-GCM): base64 "
        "of 32 random bytes, from `switchboard crypto new-key`. Empty (and no key file): "
        "stored in clear, and a hub holding sealed values refuses to start.",
    )
    master_key_file: str = _setting(
        "",
        _plain,
        "A file holding the master key (used when SWITCHBOARD_MASTER_KEY is empty); "
        "`quickstart` creates `./data/master.key`.",
    )
    master_key_previous: str = _setting(
        "",
        _plain,
        "Earlier master keys, comma-separated, still accepted for reading while "
        "`switchboard crypto rotate-master` re-seals everything under the current one.",
    )
    catalogs_dir: str = _setting(
        "",
        _plain,
        "Folder of catalog folders applied by `switchboard quickstart` (empty: the example "
        "catalogs shipped with the package).",
    )
    tenant_max_indexes: int = _setting(
        3,
        _int,
        "Most `index` data paths one tenant's own event types may declare (each is an index on "
        "the shared events table in PostgreSQL); 0 reserves indexes to admin keys.",
    )
    template_max_output: int = _setting(
        262_144,
        _int,
        "Most characters one template render may produce (or build in one step); over it the "
        "delivery is dead with `template_error`.",
    )
    template_timeout: float = _setting(
        1.0,
        _float,
        "Seconds of work one template render may take (it runs off the event loop); over it "
        "the delivery is dead with `template_error`.",
    )
    automation_max_running: int = _setting(
        100_000,
        _int,
        "Most automation runs one tenant may have running; a trigger past it records its run "
        "as `failed` with the reason.",
    )

    otel_exporter: str = _setting(
        "",
        _choice("", "otlp", "console"),
        "OpenTelemetry spans for ingest, routing and attempts: `otlp` (OTLP over HTTP) or "
        "`console`; empty: off. Needs `pip install 'switchboard[otel]'`.",
    )
    otel_endpoint: str = _setting(
        "",
        _plain,
        "OTLP traces URL (e.g. `http://127.0.0.1:4318/v1/traces`); empty: the standard "
        "`OTEL_EXPORTER_OTLP_*` variables decide.",
    )
    otel_service_name: str = _setting("switchboard", _str, "The `service.name` of the hub's spans.")
    metrics: int = _setting(
        1,
        _int,
        "1: count ingest, requests and attempts for `/metrics`; 0: count nothing (`/metrics` "
        "still gives the gauges read from the store).",
    )
    metrics_token: str = _setting(
        "",
        _plain,
        "Bearer token that may read `/metrics` and `/status` besides admin keys (empty: admin "
        "keys only).",
    )
    metrics_tenant_labels: int = _setting(
        0,
        _int,
        "1: `/metrics` labels ingest, delivery and backlog figures by tenant (one series per "
        "tenant each); 0: totals only.",
    )
    heartbeat_seconds: float = _setting(
        10.0,
        _float,
        "Seconds between a worker's heartbeats; `/status` counts a worker alive for three of them.",
    )
    status_max_backlog_age: float = _setting(
        600.0,
        _float,
        "Seconds the oldest due delivery may wait before `/status` answers 503.",
    )
    alert_interval: float = _setting(
        30.0,
        _float,
        "Seconds between checks of the built-in alerts (`switchboard.alert.*` events); 0: off.",
    )
    alert_window: float = _setting(
        300.0,
        _float,
        "Seconds over which DLQ growth and the attempt error rate are measured.",
    )
    alert_backlog: int = _setting(
        1000,
        _int,
        "Due deliveries of one tenant that open a `switchboard.alert.backlog_high` episode.",
    )
    alert_dlq_growth: int = _setting(
        10,
        _int,
        "Deliveries of one tenant gone dead within the window that open a "
        "`switchboard.alert.dlq_growth` episode (and make `/status` answer 503).",
    )
    alert_error_rate: float = _setting(
        0.5,
        _fraction,
        "Share (0-1) of failed attempts of one tenant within the window that opens a "
        "`switchboard.alert.error_rate` episode.",
    )
    alert_min_attempts: int = _setting(
        20,
        _int,
        "Fewest attempts within the window before the error rate is judged at all.",
    )
    audit_retention_days: int = _setting(
        400,
        _int,
        "Days an audit log entry is kept before the retention job deletes it (0 = forever).",
    )
    retention_floor_days: int = _setting(
        0,
        _int,
        "The shortest event retention, in days: a catalog type's shorter `retention` is raised "
        "to it, a tenant default under it is refused (0 = no floor).",
    )
    attempt_retention_days: int = _setting(
        30, _int, "Days delivery attempts are kept (0 = forever)."
    )
    inbound_retention_days: int = _setting(
        30, _int, "Days the inbound request log of sources is kept (0 = forever)."
    )
    retention_interval: float = _setting(
        3600.0,
        _float,
        "Seconds between two runs of the worker's retention job (0 = the job does not run).",
    )
    retention_chunk: int = _setting(
        500,
        _int,
        "Most rows one retention delete removes in one transaction (on SQLite the job makes "
        "its chunks smaller to keep to SWITCHBOARD_RETENTION_CHUNK_MS).",
    )
    retention_chunk_ms: float = _setting(
        10.0,
        _float,
        "SQLite: milliseconds one retention chunk should hold the writer; chunks are halved "
        "(down to 50 rows) when one takes longer, and the job waits as long as a chunk took "
        "before the next "
        "(0 = chunks of SWITCHBOARD_RETENTION_CHUNK rows, as on PostgreSQL).",
    )
    ui_secret: str = _setting(
        "",
        _plain,
        "Key that signs the dashboard's session cookies (at least 32 characters). Empty: a "
        "random key per process, so sessions end when it restarts and do not carry between "
        "processes; set it when several processes serve `/ui`.",
    )
    ui_session_hours: int = _setting(
        8, _int, "Hours a dashboard sign-in lasts before the key must be entered again."
    )
    ui_cookie_secure: str = _setting(
        "AUTO",
        _choice("AUTO", "ON", "OFF"),
        "The dashboard cookie's `Secure` flag: `AUTO` sets it when the request came over HTTPS "
        "(behind a trusted proxy, by its `X-Forwarded-Proto`), `ON` always, `OFF` never.",
    )

    def __post_init__(self) -> None:
        for name, value in (
            ("PROCESSES", self.processes),
            ("WORKER_PROCESSES", self.worker_processes),
        ):
            if value > MAX_PROCESSES:
                raise ConfigError(
                    f"SWITCHBOARD_{name} must be at most {MAX_PROCESSES}, got {value}"
                )
        if self.processes < 1:
            raise ConfigError("SWITCHBOARD_PROCESSES must be at least 1")
        if 0 < len(self.ui_secret) < 32:
            raise ConfigError("SWITCHBOARD_UI_SECRET must be at least 32 characters (or empty)")
        if self.ui_session_hours < 1:
            raise ConfigError("SWITCHBOARD_UI_SESSION_HOURS must be at least 1")
        if 0 < len(self.unsubscribe_secret) < 32:
            raise ConfigError(
                "SWITCHBOARD_UNSUBSCRIBE_SECRET must be at least 32 characters (or empty)"
            )
        if 0 < len(self.tracking_secret) < 32:
            raise ConfigError(
                "SWITCHBOARD_TRACKING_SECRET must be at least 32 characters (or empty)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read SWITCHBOARD_<FIELD> for every field; a bad value names its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f"SWITCHBOARD_{f.name.upper()}"
            if var in env:
                values[f.name] = f.metadata["parse"](var, env[var].strip())
        values.update(overrides)
        return cls(**values)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for each setting, for the README and `--help`."""
        return [
            (f"SWITCHBOARD_{f.name.upper()}", str(f.default), f.metadata["doc"])
            for f in fields(cls)
        ]
