"""What every command shares: the consoles, settings, the database and hub connections, time
and type options, and the two output styles (tables for people, JSON lines with `--json`)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import typer
from rich.console import Console
from rich.table import Table

from switchboard.config import Settings
from switchboard.errors import SwitchboardError
from switchboard.store import Store
from switchboard.store.backends import open_store

T = TypeVar("T")

# Piped output is read by scripts and tests, not a terminal: a very wide console there, so Rich
# never folds or cuts an id to fit 80 columns.
out = Console(width=None if sys.stdout.isatty() else 100_000, highlight=False)
err = Console(stderr=True, highlight=False)

DATABASE_PANEL = "Database commands (open SWITCHBOARD_DATABASE_URL directly)"
HUB_PANEL = "Hub commands (call a running hub: SWITCHBOARD_URL, SWITCHBOARD_API_KEY)"
SERVER_PANEL = "Run the hub"
DB_HELP = (
    "Opens the database named by SWITCHBOARD_DATABASE_URL "
    "(default sqlite:///./data/switchboard.db) directly; no hub needs to run."
)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and a non-zero exit: the way every command reports a problem."""
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return Settings.from_env()
    except SwitchboardError as exc:
        fail(f"configuration: {exc}", 2)


# -- the database --------------------------------------------------------------------------


def shown_url(url: str) -> str:
    """A database URL fit to print: the password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_store(fn: Callable[[Store, Settings], Awaitable[T]]) -> T:
    """Run `fn` on the store at SWITCHBOARD_DATABASE_URL; an error names that database."""
    s = settings()

    async def run() -> T:
        store = open_store(s)
        await store.open()
        try:
            return await fn(store, s)
        finally:
            await store.close()

    where = shown_url(s.database_url)
    try:
        return asyncio.run(run())
    except SwitchboardError as exc:
        for d in getattr(exc, "details", []):
            err.print(f"  {d.get('path')}: {d.get('message')}")
        fail(f"{exc} in {where} — set SWITCHBOARD_DATABASE_URL to use another database")
    except OSError as exc:
        fail(f"cannot open {where}: {exc} — set SWITCHBOARD_DATABASE_URL")


# -- the hub over HTTP ---------------------------------------------------------------------


def default_url() -> str:
    """The hub the server would listen on: SWITCHBOARD_HOST and SWITCHBOARD_PORT."""
    s = settings()
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host  # noqa: S104 (a wildcard)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{s.port}"


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="SWITCHBOARD_URL",
        show_envvar=True,
        help="The hub's base URL; default: http://SWITCHBOARD_HOST:SWITCHBOARD_PORT, as `serve`.",
        rich_help_panel="Connection",
    ),
]
KeyOpt = Annotated[
    str,
    typer.Option(
        "--api-key",
        envvar="SWITCHBOARD_API_KEY",
        show_envvar=True,
        show_default=False,
        help="An API key of the tenant (`quickstart` prints one; `keys create` makes more).",
        rich_help_panel="Connection",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (one object per line for listings), not a table."),
]


class Hub:
    """A running hub, as one base URL and key. Every call is synchronous for the command that
    makes it; an unreachable hub or an error answer ends the command with one line."""

    def __init__(self, url: str | None, key: str) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.variable = (
            "SWITCHBOARD_URL" if url else "SWITCHBOARD_URL (or SWITCHBOARD_HOST/SWITCHBOARD_PORT)"
        )
        if not key:
            fail("no API key: set SWITCHBOARD_API_KEY or pass --api-key", 2)
        self.key = key

    async def call(
        self, method: str, path: str, body: Any = None, params: Any = None
    ) -> tuple[int, Any]:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
                session.request(
                    method,
                    self.url + path,
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {self.key}"},
                ) as resp,
            ):
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = str(exc) or exc.__class__.__name__
            if isinstance(exc, aiohttp.ClientConnectorError):
                reason = (
                    "connection refused"
                    if isinstance(exc.os_error, ConnectionRefusedError)
                    else exc.os_error.strerror or str(exc.os_error)
                )
            fail(
                f"cannot reach the hub at {self.url} ({reason}): is it running? "
                f"Set {self.variable} to where it listens."
            )
        try:
            return resp.status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return resp.status, {"error": {"message": text[:200]}}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Any = None,
        what: str = "",
    ) -> Any:
        """The answer of a 2xx; anything else ends the command with the hub's message."""
        status, answer = asyncio.run(self.call(method, path, body, params))
        if 200 <= status < 300:
            return answer
        fail((f"{what}: " if what else "") + describe_error(status, answer))

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    def pages(self, path: str, params: list[tuple[str, str]], most: int) -> list[dict[str, Any]]:
        """Up to `most` rows of a cursor-paged listing."""
        rows: list[dict[str, Any]] = []
        cursor = None
        while len(rows) < most:
            page = self.get(path, [*params, *([("cursor", cursor)] if cursor else [])])
            rows += page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return rows[:most]

    def destination_names(self) -> dict[str, str]:
        """Destination id → name, to show names where the API answers ids."""
        return {d["id"]: d["name"] for d in self.get("/v1/destinations")["data"]}

    def route_names(self) -> dict[str, str]:
        return {r["id"]: r.get("name", r["id"]) for r in self.get("/v1/routes")["data"]}


def describe_error(status: int, answer: Any) -> str:
    """The hub's error answer as one line, with each detail's path."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status}: {json.dumps(answer, ensure_ascii=False)[:300]}"
    line = f"{error.get('message') or error.get('code')} (HTTP {status})"
    details = [
        f"{d.get('path')}: {d.get('message')}"
        for d in error.get("details") or []
        if isinstance(d, dict) and d.get("message") and str(d.get("message")) not in line
    ]
    return line + ("; " + "; ".join(details) if details else "")


# -- times and types -------------------------------------------------------------------------

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
TIME_EXAMPLE = "e.g. 30m, 1h, 2d (that long ago) or 2026-12-01T09:00:00Z"


def parse_when(value: str, option: str, now: datetime | None = None) -> str:
    """A time option → ISO 8601 in UTC. Relative forms count back from now (`1h`, `2d`);
    ISO 8601 without a timezone is UTC; a date alone is its midnight, UTC."""
    text = value.strip()
    if match := _RELATIVE.fullmatch(text):
        seconds = float(match[1]) * _UNITS[match[2].lower()]
        when = (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            fail(f"{option}: {value!r} is not a time; use {TIME_EXAMPLE}", 2)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when_param(value: str | None, name: str, option: str) -> list[tuple[str, str]]:
    return [(name, parse_when(value, option))] if value else []


FromOpt = Annotated[
    str | None,
    typer.Option("--from", "--since", help=f"Only from this time on: {TIME_EXAMPLE}."),
]
ToOpt = Annotated[str | None, typer.Option("--to", help=f"Only up to this time: {TIME_EXAMPLE}.")]
TypesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--type",
        help="An event type or glob ('billing.*', 'switchboard.delivery_*'); repeat for more.",
    ),
]


def type_params(types: Sequence[str] | None) -> list[tuple[str, str]]:
    return [("type", t) for t in types or ()]


# -- output --------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def print_rows(rows: Iterable[Any]) -> None:
    """JSON lines: one object per line, so `jq` and `grep` read a listing as it comes."""
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    sys.stdout.flush()


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], cut: Sequence[str] = ()) -> Table:
    """A table whose columns never fold or cut: ids are copied from it. Only the columns
    named in `cut` (free text, like an error) may be shortened, with an ellipsis."""
    t = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for i, column in enumerate(t.columns):
        column.no_wrap = True
        if column.header in cut:
            column.max_width = 60
            column.overflow = "ellipsis"
        else:
            column.min_width = max([len(str(column.header)), *(len(r[i]) for r in rows)])
    for row in rows:
        t.add_row(*row)
    return t


def short_time(iso: str | None) -> str:
    """'2026-12-03T09:01:02.345678Z' → '2026-12-03 09:01:02' (UTC, as stored)."""
    if not iso:
        return ""
    return iso.replace("T", " ")[:19]
