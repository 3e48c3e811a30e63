"""Running the hub: `serve`, `worker`, `migrate`, and `quickstart` (what `make run` does)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from switchboard import catalog as cat
from switchboard import logs
from switchboard.auth import mint_key
from switchboard.cli.common import (
    err,
    fail,
    settings,
    shown_url,
    with_store,
)
from switchboard.config import Settings
from switchboard.envelope import now_us
from switchboard.errors import Conflict, SwitchboardError
from switchboard.registry import SHARED, Registry
from switchboard.resources import shipped
from switchboard.store import Store, Tenant
from switchboard.store import migrate as migrations

QUICKSTART_KEY = "quickstart"  # the name of the demo tenant's key, found again on a second run
QUICKSTART_SCOPES = "ingest,read,manage"


def load_catalog(path: Path) -> cat.CatalogSpec:
    try:
        return cat.load_catalog_dir(path)
    except cat.CatalogError as exc:
        for p in exc.problems:
            err.print(f"  {p}")
        fail(str(exc))


def serve(
    host: Annotated[str | None, typer.Option(help="Overrides SWITCHBOARD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides SWITCHBOARD_PORT.")] = None,
) -> None:
    """Run the HTTP API and a delivery worker (migrating the database first)."""
    import uvicorn

    from switchboard.api import create_app
    from switchboard.server import server_config

    s = settings()
    if host is not None or port is not None:
        s = Settings.from_env(host=host or s.host, port=port if port is not None else s.port)
    logs.setup(s.log_level)
    uvicorn.Server(server_config(create_app(s, freeze=True), s)).run()


def worker() -> None:
    """Run a delivery worker without the API (any number can run against PostgreSQL)."""
    import signal

    from switchboard.hub import Hub, tune_gc

    s = settings()
    logs.setup(s.log_level)

    async def run() -> None:
        hub = Hub(s)
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


def migrate() -> None:
    """Bring the database's schema to the current revision."""
    from sqlalchemy.exc import SQLAlchemyError

    s = settings()
    try:
        migrations.upgrade_sync(s.database_url)
    except (SwitchboardError, SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        fail(f"cannot migrate {shown_url(s.database_url)}: {reason} — set SWITCHBOARD_DATABASE_URL")
    print(f"{shown_url(s.database_url)} is at revision {migrations.head()}")


LOCAL_DEMO_EGRESS = "127.0.0.0/8"


def quickstart(
    catalogs: Annotated[
        Path | None,
        typer.Option(
            help="Folder of catalog folders; default: SWITCHBOARD_CATALOGS_DIR, else the "
            "example catalogs shipped with the package."
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="The demo tenant's id.")] = "demo",
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards.")
    ] = True,
) -> None:
    """Migrate, apply the example catalogs, create a demo tenant and key, then serve.

    Run again, it reuses the demo tenant and mints no second key (the first run showed it)."""
    # The local demo delivers to receivers on this machine, which `serve` refuses (egress.py).
    os.environ["SWITCHBOARD_EGRESS_ALLOW"] = ",".join(
        filter(None, [os.environ.get("SWITCHBOARD_EGRESS_ALLOW", ""), LOCAL_DEMO_EGRESS])
    )
    err.print(
        f"[yellow]egress: this demo lets deliveries reach {LOCAL_DEMO_EGRESS} (this machine); "
        "`switchboard serve` and `worker` refuse loopback and private addresses[/yellow]"
    )
    s = settings()
    root = catalogs or (Path(s.catalogs_dir) if s.catalogs_dir else shipped("catalogs"))
    dirs = (
        sorted(p for p in root.iterdir() if (p / "catalog.yaml").exists()) if root.exists() else []
    )

    async def run(store: Store, _: Settings) -> tuple[str | None, bool, dict[str, Any] | None]:
        registry = Registry(store)
        example: dict[str, Any] | None = None
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("applying the example catalogs", total=len(dirs))
            for d in dirs:
                spec = load_catalog(d)
                try:
                    await registry.apply(SHARED, spec)
                except Conflict as exc:
                    err.print(f"[yellow]skipped {d.name}: {exc}[/yellow]")
                for t in spec.types:
                    if example is None and t.name == "lead.created" and t.latest().examples:
                        example = {"type": t.name, "data": t.latest().examples[0]}
                progress.advance(task)
        existed = await store.get_tenant(tenant) is not None
        if not existed:
            await store.create_tenant(Tenant(tenant, "Demo tenant", "reject", now_us()))
        keys = await store.list_keys(tenant)
        if any(k.name == QUICKSTART_KEY and k.revoked_us is None for k in keys):
            return None, existed, example
        secret, record = mint_key(tenant, QUICKSTART_KEY, QUICKSTART_SCOPES.split(","))
        await store.create_key(record)
        return secret, existed, example

    secret, existed, example = with_store(run)
    base = f"http://{'127.0.0.1' if s.host in ('0.0.0.0', '::') else s.host}:{s.port}"  # noqa: S104
    event = example or {"type": "lead.created", "data": {}}
    err.print(
        f"\n[bold green]Switchboard is ready[/bold green] — {len(dirs)} example catalogs applied "
        f"to {shown_url(s.database_url)}",
        soft_wrap=True,
    )
    if secret is not None:
        what = "reusing" if existed else "created"
        err.print(f"{what} tenant [bold]{tenant}[/bold]; its API key (shown once) is below.")
        err.print("Point the CLI at this hub (paste into the shell where you run `switchboard`):")
        print(f"export SWITCHBOARD_URL={base} SWITCHBOARD_API_KEY={secret}", flush=True)
    else:
        err.print(
            f"reusing tenant [bold]{tenant}[/bold] from an earlier run: its quickstart key was "
            "shown then and is not shown again. Mint another with:"
        )
        err.print(
            f"  switchboard keys create --tenant {tenant} --scopes {QUICKSTART_SCOPES}",
            soft_wrap=True,
        )
        err.print("Point the CLI at this hub:")
        print(f"export SWITCHBOARD_URL={base} SWITCHBOARD_API_KEY=<that key>", flush=True)
    err.print("\nSend a first event, then read it back:")
    err.print(
        f"  switchboard emit {event['type']} "
        + shlex.quote(json.dumps(event["data"], ensure_ascii=False))
        + " --subject patient-42",
        soft_wrap=True,
    )
    err.print("  switchboard events list --subject patient-42")
    err.print(
        f"Example routes and automations to start from: {shipped('examples')}", soft_wrap=True
    )
    err.print(f"Dashboard: {base}/ui (sign in with the tenant's key)")
    err.print(f"API reference: {base}/docs    Every command: switchboard --help\n")
    sys.stderr.flush()
    if serve_after:
        serve(None, None)
