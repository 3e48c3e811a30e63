"""The `switchboard` command: serve, migrate, quickstart, catalog, tenants, keys, emit, events."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import aiohttp
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from switchboard import catalog as cat
from switchboard import logs
from switchboard.auth import mint_key
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.errors import Conflict, SwitchboardError
from switchboard.registry import SHARED, Registry
from switchboard.store import Store, Tenant, open_store
from switchboard.store import migrate as migrations

T = TypeVar("T")
app = typer.Typer(help="Switchboard: a self-hosted, multi-tenant event hub.", no_args_is_help=True)
catalog_app = typer.Typer(help="Apply, lint and document event catalogs.", no_args_is_help=True)
tenants_app = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
events_app = typer.Typer(help="Read events.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")
app.add_typer(__import__("switchboard.cli_automations").cli_automations.app, name="automations")
out = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str, typer.Option(envvar="SWITCHBOARD_URL", help="The hub's base URL.")]
KeyOpt = Annotated[str, typer.Option(envvar="SWITCHBOARD_API_KEY", help="An API key.")]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SwitchboardError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _with_store(fn: Callable[[Store, Settings], Awaitable[T]]) -> T:
    settings = _settings()

    async def run() -> T:
        store = open_store(settings)
        await store.open()
        try:
            return await fn(store, settings)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except SwitchboardError as exc:
        err.print(f"[red]error:[/red] {exc}")
        for d in getattr(exc, "details", []):
            err.print(f"  {d.get('path')}: {d.get('message')}")
        raise typer.Exit(1) from None


def _load(path: Path) -> cat.CatalogSpec:
    try:
        return cat.load_catalog_dir(path)
    except cat.CatalogError as exc:
        err.print(f"[red]{exc}[/red]")
        for p in exc.problems:
            err.print(f"  {p}")
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides SWITCHBOARD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides SWITCHBOARD_PORT.")] = None,
) -> None:
    """Run the HTTP API (migrating the store first)."""
    import uvicorn

    from switchboard.api import create_app

    settings = _settings()
    if host is not None or port is not None:
        settings = Settings.from_env(
            host=host or settings.host, port=port if port is not None else settings.port
        )
    logs.setup(settings.log_level)
    uvicorn.run(
        create_app(settings, freeze=True),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker() -> None:
    """Run a delivery worker without the API (any number can run against PostgreSQL)."""
    import signal

    from switchboard.hub import Hub, tune_gc

    settings = _settings()
    logs.setup(settings.log_level)

    async def run() -> None:
        hub = Hub(settings)
        await hub.open(worker=True)
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        err.print("worker running; SIGTERM or Ctrl-C stops it gracefully")
        await stop.wait()
        await hub.close()

    import uvloop

    uvloop.install()  # the same loop `serve` runs on: cheaper socket writes per delivery
    asyncio.run(run())


@app.command()
def migrate() -> None:
    """Bring the store's schema to the current revision."""
    settings = _settings()
    migrations.upgrade_sync(settings.database_url)
    out.print(f"migrated to revision {migrations.head()}")


async def _apply_dir(store: Store, path: Path, scope: str) -> dict[str, Any]:
    return await Registry(store).apply(scope, _load(path))


@catalog_app.command("apply")
def catalog_apply(
    directory: Path,
    tenant: Annotated[
        str | None, typer.Option(help="Apply to this tenant; default: the shared catalog.")
    ] = None,
) -> None:
    """Apply a catalog folder (checked for compatibility with what is stored)."""

    async def run(store: Store, _: Settings) -> dict[str, Any]:
        if tenant is not None and await store.get_tenant(tenant) is None:
            raise SwitchboardError(f"no tenant {tenant!r}")
        return await _apply_dir(store, directory, tenant or SHARED)

    report = _with_store(run)
    out.print(
        f"applied catalog [bold]{report['catalog']}[/bold]: {report['types']} types"
        + (f", indexed {', '.join(report['indexed'])}" if report["indexed"] else "")
    )


@catalog_app.command("lint")
def catalog_lint(directories: list[Path]) -> None:
    """Check names against the naming convention and validate every example."""
    errors = 0
    for directory in directories:
        spec = _load(directory)
        problems = cat.lint(spec)
        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            out.print(f"[{colour}]{p.severity}[/{colour}] {spec.name} {p.type}: {p.message}")
        errors += sum(p.severity == "error" for p in problems)
        out.print(f"{spec.name}: {len(spec.types)} types, {len(problems)} problems")
    raise typer.Exit(1 if errors else 0)


@catalog_app.command("docs")
def catalog_docs(
    directory: Path, out_dir: Annotated[Path, typer.Option("--out")] = Path("docs/catalog")
) -> None:
    """Write the catalog as readable Markdown."""
    spec = _load(directory)
    files = cat.render_docs(spec)
    for name, text in files.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    out.print(f"wrote {len(files)} files to {out_dir}")


@tenants_app.command("create")
def tenants_create(
    tenant_id: str,
    name: Annotated[str | None, typer.Option()] = None,
    unknown_types: Annotated[str, typer.Option(help="reject | accept")] = "reject",
) -> None:
    """Create a tenant."""
    from switchboard.api.admin import TENANT_ID_RE

    if not TENANT_ID_RE.match(tenant_id) or unknown_types not in ("reject", "accept"):
        err.print(
            "[red]tenant id: lowercase letters, digits, - and _; unknown-types: reject|accept"
        )
        raise typer.Exit(2)

    async def run(store: Store, _: Settings) -> Tenant:
        return await store.create_tenant(
            Tenant(tenant_id, name or tenant_id, unknown_types, now_us())
        )

    _with_store(run)
    out.print(f"created tenant {tenant_id}")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants."""

    async def run(store: Store, _: Settings) -> list[Tenant]:
        return await store.list_tenants()

    table = Table("id", "name", "unknown types")
    for t in _with_store(run):
        table.add_row(t.id, t.name, t.unknown_types)
    out.print(table)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str | None, typer.Option(help="The key's tenant.")] = None,
    scopes: Annotated[str, typer.Option(help="Comma-separated: ingest,read,manage")] = "ingest",
    name: Annotated[str, typer.Option()] = "key",
    source: Annotated[str | None, typer.Option(help="Default event source.")] = None,
    admin: Annotated[bool, typer.Option(help="An admin key (no tenant, every scope).")] = False,
) -> None:
    """Create an API key; the key is printed once and stored only hashed."""
    if admin == (tenant is not None):
        err.print("[red]give either --tenant or --admin[/red]")
        raise typer.Exit(2)
    try:
        secret, record = mint_key(tenant, name, ["admin"] if admin else scopes.split(","), source)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    async def run(store: Store, _: Settings) -> None:
        if tenant is not None and await store.get_tenant(tenant) is None:
            raise SwitchboardError(f"no tenant {tenant!r}")
        await store.create_key(record)

    _with_store(run)
    out.print(f"key id {record.id} ({', '.join(record.scopes)}); shown once:")
    print(secret)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """List keys (prefixes only)."""

    async def run(store: Store, _: Settings) -> list[Any]:
        return await store.list_keys(tenant)

    table = Table("id", "tenant", "name", "prefix", "scopes", "revoked")
    for k in _with_store(run):
        table.add_row(
            k.id,
            k.tenant_id or "(admin)",
            k.name,
            k.prefix + "…",
            ",".join(k.scopes),
            "yes" if k.revoked_us else "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """Revoke a key (effective on every node within 5 seconds)."""

    async def run(store: Store, _: Settings) -> bool:
        return await store.revoke_key(tenant, key_id, now_us())

    if not _with_store(run):
        err.print("[red]no active key with that id[/red]")
        raise typer.Exit(1)
    out.print(f"revoked {key_id}")


async def _request(
    method: str, url: str, key: str, body: Any = None, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            url,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {key}"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@app.command()
def emit(
    event_type: str,
    data: Annotated[str, typer.Argument(help="The data object, as JSON.")] = "{}",
    subject: Annotated[str | None, typer.Option()] = None,
    source: Annotated[str | None, typer.Option()] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
) -> None:
    """Send one event and print the hub's answer."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        err.print(f"[red]data is not JSON: {exc}[/red]")
        raise typer.Exit(2) from None
    event: dict[str, Any] = {"type": event_type, "data": payload}
    if subject:
        event["subject"] = subject
    if source:
        event["source"] = source
    status, body = asyncio.run(_request("POST", url + "/v1/events", api_key, event))
    out.print_json(json.dumps(body))
    raise typer.Exit(0 if status == 202 else 1)


@events_app.command("tail")
def events_tail(
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    type_: Annotated[str | None, typer.Option("--type", help="Type or glob.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    max_seconds: Annotated[float, typer.Option(help="Stop after this long (0 = never).")] = 0,
) -> None:
    """Follow new events live (oldest first), like `tail -f`."""
    params = {"limit": "200"}
    if type_:
        params["type"] = type_
    seen: deque[str] = deque(maxlen=5000)
    seen_set: set[str] = set()
    started = time.monotonic()

    async def loop() -> None:
        first = True
        while not max_seconds or time.monotonic() - started < max_seconds:
            status, body = await _request("GET", url + "/v1/events", api_key, params=params)
            if status != 200:
                err.print(f"[red]{status}: {body}[/red]")
                raise typer.Exit(1)
            for e in reversed(body["data"]):
                ident = f"{e['source']}\x00{e['id']}"
                if ident in seen_set:
                    continue
                if len(seen) == seen.maxlen:
                    seen_set.discard(seen[0])
                seen.append(ident)
                seen_set.add(ident)
                if not first:
                    print(json.dumps(e, ensure_ascii=False), flush=True)
            first = False
            await asyncio.sleep(interval)

    asyncio.run(loop())


@events_app.command("list")
def events_list(
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    limit: int = 20,
    type_: Annotated[str | None, typer.Option("--type")] = None,
) -> None:
    """Print the newest events."""
    params = {"limit": str(limit)}
    if type_:
        params["type"] = type_
    status, body = asyncio.run(_request("GET", url + "/v1/events", api_key, params=params))
    out.print_json(json.dumps(body))
    raise typer.Exit(0 if status == 200 else 1)


@app.command()
def quickstart(
    catalogs: Annotated[Path | None, typer.Option(help="Folder of catalog folders.")] = None,
    tenant: Annotated[str, typer.Option(help="The demo tenant.")] = "demo",
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Migrate, apply the example catalogs, create a demo tenant and key, then serve."""
    settings = _settings()
    root = catalogs or Path(settings.catalogs_dir)
    dirs = (
        sorted(p for p in root.iterdir() if (p / "catalog.yaml").exists()) if root.exists() else []
    )

    async def run(store: Store, _: Settings) -> tuple[str, dict[str, Any] | None]:
        registry = Registry(store)
        example: dict[str, Any] | None = None
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("applying example catalogs", total=len(dirs))
            for d in dirs:
                spec = _load(d)
                try:
                    await registry.apply(SHARED, spec)
                except Conflict as exc:
                    err.print(f"[yellow]skipped {d.name}: {exc}[/yellow]")
                for t in spec.types:
                    if example is None and t.name == "lead.created" and t.latest().examples:
                        example = {"type": t.name, "data": t.latest().examples[0]}
                progress.advance(task)
        if await store.get_tenant(tenant) is None:
            await store.create_tenant(Tenant(tenant, "Demo tenant", "reject", now_us()))
        secret, record = mint_key(tenant, "quickstart", ["ingest", "read", "manage"])
        await store.create_key(record)
        return secret, example

    secret, example = _with_store(run)
    base = f"http://{settings.host}:{settings.port}"
    event = example or {"type": "lead.created", "data": {}}
    event = {**event, "subject": "patient-42"}
    err.print(
        f"\n[bold green]Switchboard is ready[/bold green] — {len(dirs)} example catalogs applied"
    )
    err.print(f"tenant [bold]{tenant}[/bold], API key (shown once): [bold]{secret}[/bold]\n")
    err.print("Send a first event:")
    err.print(
        f"  curl -s -X POST {base}/v1/events -H 'Authorization: Bearer {secret}' "
        "-H 'Content-Type: application/json' -d "
        + shlex.quote(json.dumps(event, ensure_ascii=False)),
        soft_wrap=True,
    )
    err.print("Then read its subject's timeline:")
    err.print(
        f"  curl -s {base}/v1/subjects/patient-42/timeline -H 'Authorization: Bearer {secret}'\n",
        soft_wrap=True,
    )
    sys.stderr.flush()
    if serve_after:
        serve(None, None)


routes_app = typer.Typer(help="Apply routing files.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and retry dead deliveries.", no_args_is_help=True)
app.add_typer(routes_app, name="routes")
app.add_typer(dlq_app, name="dlq")


def _api(
    method: str,
    url: str,
    key: str,
    path: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    ok: tuple[int, ...] = (200, 201, 202),
) -> Any:
    status, answer = asyncio.run(_request(method, url + path, key, body, params))
    if status not in ok:
        err.print(f"[red]{status}[/red] {json.dumps(answer, ensure_ascii=False)}")
        raise typer.Exit(1)
    return answer


@routes_app.command("apply")
def routes_apply(file: Path, url: UrlOpt = "http://127.0.0.1:8080", api_key: KeyOpt = "") -> None:
    """Apply a YAML file of `destinations:` and `routes:` (by name: re-applying updates)."""
    import yaml

    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]{file}: {exc}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(doc, dict):
        err.print(f"[red]{file}: expected a mapping with destinations: and routes:[/red]")
        raise typer.Exit(2)
    existing = {d["name"] for d in _api("GET", url, api_key, "/v1/destinations")["data"]}
    for dest in doc.get("destinations") or []:
        if dest.get("name") in existing:
            body = {k: v for k, v in dest.items() if k != "kind"}
            _api("PATCH", url, api_key, f"/v1/destinations/{dest['name']}", body)
            out.print(f"updated destination {dest['name']}")
        else:
            _api("POST", url, api_key, "/v1/destinations", dest)
            out.print(f"created destination {dest['name']}")
    routes = doc.get("routes") or []
    if routes:
        _api("POST", url, api_key, "/v1/routes", {"routes": routes})
        out.print(f"applied {len(routes)} routes")


@dlq_app.command("list")
def dlq_list(
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    destination: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str | None, typer.Option("--type")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="A pattern, as JSON.")] = None,
    limit: int = 100,
) -> None:
    """List dead deliveries."""
    params = {"limit": str(limit)}
    for k, v in (("destination", destination), ("type", type_), ("filter", filter_)):
        if v:
            params[k] = v
    body = _api("GET", url, api_key, "/v1/dlq", params=params)
    table = Table("delivery", "event", "type", "destination", "attempts", "last error")
    for d in body["data"]:
        table.add_row(
            d["id"],
            d["event"]["id"],
            d["event"]["type"],
            d["destination_id"],
            str(d["attempts"]),
            (d["last_error"] or "")[:60],
        )
    out.print(table)


@dlq_app.command("stats")
def dlq_stats(url: UrlOpt = "http://127.0.0.1:8080", api_key: KeyOpt = "") -> None:
    """Dead deliveries by event type and destination."""
    out.print_json(json.dumps(_api("GET", url, api_key, "/v1/dlq/stats")))


@dlq_app.command("retry")
def dlq_retry(
    ids: Annotated[list[str] | None, typer.Argument(help="Delivery ids; none: all listed.")] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    destination: Annotated[str | None, typer.Option()] = None,
    type_: Annotated[str | None, typer.Option("--type")] = None,
) -> None:
    """Retry dead deliveries: the given ids, or every one matching the filters."""
    if not ids:
        params = {"limit": "1000"}
        for k, v in (("destination", destination), ("type", type_)):
            if v:
                params[k] = v
        ids = [d["id"] for d in _api("GET", url, api_key, "/v1/dlq", params=params)["data"]]
    body = _api("POST", url, api_key, "/v1/dlq/retry", {"ids": ids})
    out.print(f"requeued {body['requeued']}")


@dlq_app.command("archive")
def dlq_archive(
    ids: list[str], url: UrlOpt = "http://127.0.0.1:8080", api_key: KeyOpt = ""
) -> None:
    """Archive dead deliveries (they leave the DLQ listing)."""
    body = _api("POST", url, api_key, "/v1/dlq/archive", {"ids": ids})
    out.print(f"archived {body['archived']}")


@app.command()
def replay(
    url: UrlOpt = "http://127.0.0.1:8080",
    api_key: KeyOpt = "",
    type_: Annotated[list[str] | None, typer.Option("--type", help="Type or glob.")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="A pattern, as JSON.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="ISO 8601 start.")] = None,
    to: Annotated[str | None, typer.Option(help="ISO 8601 end.")] = None,
    route: Annotated[list[str] | None, typer.Option(help="Only these routes.")] = None,
    destination: Annotated[list[str] | None, typer.Option(help="Only/directly to these.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Re-route stored events; shows a progress bar until the job is done."""
    body: dict[str, Any] = {"dry_run": dry_run}
    if type_:
        body["types"] = type_
    if filter_:
        try:
            body["filter"] = json.loads(filter_)
        except json.JSONDecodeError as exc:
            err.print(f"[red]--filter is not JSON: {exc}[/red]")
            raise typer.Exit(2) from None
    for k, v in (("from", from_), ("to", to), ("routes", route), ("destinations", destination)):
        if v:
            body[k] = v
    job = _api("POST", url, api_key, "/v1/replays", body)
    if dry_run:
        out.print_json(json.dumps(job, ensure_ascii=False))
        return
    with Progress(console=err) as progress:
        task = progress.add_task(f"replay {job['id']}", total=job.get("total") or 0)
        while True:
            job = _api("GET", url, api_key, f"/v1/replays/{job['id']}")
            progress.update(task, completed=job["scanned"])
            if job["status"] != "running":
                break
            time.sleep(0.5)
    out.print(f"{job['status']}: {job['events']} events, {job['deliveries']} deliveries")
    raise typer.Exit(0 if job["status"] == "done" else 1)


def main() -> None:
    app()
